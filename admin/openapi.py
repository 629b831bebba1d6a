"""The OpenAPI 3.1 document of the admin API, served at ``/admin/api/openapi.json`` (issue 11).

Written out by hand, one line per operation, so that it says what each route is for; a test
(``tests/admin/test_openapi.py``) compares it with the routes the app really serves, and a
property-based run (schemathesis) checks the answers against it.  Errors are RFC 6749 §5.2
JSON objects (``error``, ``error_description``) with any status.
"""

from __future__ import annotations

from typing import Any

OBJ: dict[str, Any] = {"type": "object"}
LIST: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
CLIENT: dict[str, Any] = {
    "type": "object",
    "required": ["client_id", "status"],
    "properties": {
        "client_id": {"type": "string"},
        "client_name": {"type": "string"},
        "status": {"enum": ["pending", "approved", "disabled"]},
        "department": {"type": ["string", "null"]},
        "redirect_uris": {"type": "array", "items": {"type": "string"}},
    },
}
STR_LIST: dict[str, Any] = {"type": "array", "items": {"type": "string"}}

#: (method, path, summary, request body schema or None, success status, success schema, tag)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any] | None, int, dict[str, Any], str], ...] = (
    ("get", "/dashboard", "Sign-ins, pending approvals, keys and directories at a glance", None, 200, OBJ, "console"),
    ("get", "/clients", "Clients the caller may see", None, 200, {"type": "array", "items": CLIENT}, "clients"),
    ("post", "/clients", "Register a client (RFC 7591 metadata and department); it waits for approval", OBJ, 201, CLIENT, "clients"),
    ("get", "/clients/{client_id}", "One client's registered metadata", None, 200, CLIENT, "clients"),
    ("patch", "/clients/{client_id}", "Change metadata; widening sends the client back to pending", OBJ, 200, CLIENT, "clients"),
    ("delete", "/clients/{client_id}", "Delete a client and revoke its tokens", None, 200, OBJ, "clients"),
    ("post", "/clients/{client_id}/approve", "Approve a client (security admins)", None, 200, CLIENT, "clients"),
    ("post", "/clients/{client_id}/disable", "Disable a client: its tokens stop working", None, 200, CLIENT, "clients"),
    ("put", "/clients/{client_id}/release", "Set what the client may receive", {"type": "object", "properties": {"claims": STR_LIST, "verified_claims": STR_LIST, "min_assurance": {"type": "string"}, "account_types": STR_LIST}}, 200, OBJ, "clients"),
    ("post", "/clients/{client_id}/rotate-secret", "A new secret (shown once); the old one works for a grace period", {"type": "object", "properties": {"grace": {"type": "integer"}}}, 200, CLIENT, "clients"),
    ("get", "/departments", "Departments the caller may see", None, 200, LIST, "departments"),
    ("post", "/departments", "Add a department", {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}, 201, OBJ, "departments"),
    ("get", "/departments/{dept_id}", "A department: directories, clients, live registration tokens", None, 200, OBJ, "departments"),
    ("put", "/departments/{dept_id}/directories", "Bind a department to staff directories", {"type": "object", "properties": {"directories": STR_LIST}}, 200, OBJ, "departments"),
    ("post", "/admins", "Grant an admin role", OBJ, 200, OBJ, "departments"),
    ("delete", "/admins", "Revoke an admin role", OBJ, 200, OBJ, "departments"),
    ("post", "/registration-tokens", "Issue an RFC 7591 initial access token (shown once)", {"type": "object", "properties": {"department": {"type": "string"}, "uses": {"type": "integer"}, "expires_in": {"type": "integer"}}}, 201, OBJ, "departments"),
    ("get", "/people", "Find people by id, e-mail, phone or (masked) ID number (?q=)", None, 200, LIST, "people"),
    ("get", "/people/{user_id}", "A person, masked, with their second factors", None, 200, OBJ, "people"),
    ("post", "/people/{user_id}/unlock", "Clear failed sign-in counters", None, 200, OBJ, "people"),
    ("post", "/people/{user_id}/status", "Lock (disable) or enable an account", {"type": "object", "properties": {"status": {"enum": ["active", "disabled"]}}}, 200, OBJ, "people"),
    ("delete", "/people/{user_id}/sessions", "End every session of an account", None, 200, OBJ, "people"),
    ("post", "/people/{user_id}/reset-mfa", "Remove every second factor, with the reason recorded", {"type": "object", "properties": {"reason": {"type": "string"}}}, 200, OBJ, "people"),
    ("post", "/people/{user_id}/verify", "Record an identity verification (L3 registry, L4 face, L5 counter/in-person/certificate)", {"type": "object", "required": ["level", "method"], "properties": {"level": {"enum": ["L3", "L4", "L5"]}, "method": {"enum": ["registry", "face", "counter", "in-person", "certificate"]}, "evidence": {"type": "object"}, "face_image": {"type": "string", "contentEncoding": "base64"}}}, 201, OBJ, "people"),
    ("delete", "/users/{user_id}/sessions", "End every session and session-bound token", None, 200, OBJ, "people"),
    ("post", "/users/{user_id}/disable", "Disable an account", None, 200, OBJ, "people"),
    ("get", "/companies", "Companies and their mandates (?q=)", None, 200, LIST, "companies"),
    ("post", "/entities", "Register a company for its representative", OBJ, 201, OBJ, "companies"),
    ("post", "/entities/{ref}/status", "Suspend, deregister or reactivate a company", OBJ, 200, OBJ, "companies"),
    ("post", "/entities/{ref}/verify", "Verify a company again: registry (L3) or electronic business licence (L5)", {"type": "object", "required": ["method"], "properties": {"method": {"enum": ["registry", "e-licence"]}, "presentation": {"type": "string"}}}, 201, OBJ, "companies"),
    ("post", "/mandates", "Record a mandate", OBJ, 201, OBJ, "companies"),
    ("delete", "/entities/{ref}/mandates/{user}", "End an agent's mandate", None, 200, OBJ, "companies"),
    ("get", "/keys", "Signing keys (never key material)", None, 200, OBJ, "keys"),
    ("post", "/keys", "Generate a key", {"type": "object", "properties": {"alg": {"type": "string"}, "activate": {"type": "boolean"}}}, 201, OBJ, "keys"),
    ("post", "/keys/rotate", "Rotate keys that are due (or forced)", {"type": "object", "properties": {"force": STR_LIST}}, 200, OBJ, "keys"),
    ("post", "/keys/{kid}/revoke", "Revoke a key", {"type": "object", "properties": {"reason": {"type": "string"}}}, 200, OBJ, "keys"),
    ("get", "/policies", "Every security policy", None, 200, OBJ, "policies"),
    ("put", "/policies", "Change policies (all or none)", OBJ, 200, OBJ, "policies"),
    ("get", "/directories", "Staff directories", None, 200, LIST, "directories"),
    ("put", "/directories/{directory_id}", "Add or replace a directory", OBJ, 200, OBJ, "directories"),
    ("delete", "/directories/{directory_id}", "Remove a directory added here", None, 200, OBJ, "directories"),
    ("post", "/directories/{directory_id}/test", "Test the connection", None, 200, LIST, "directories"),
    ("post", "/directories/{directory_id}/sync", "Sync now: disable staff whose entries are gone", None, 200, OBJ, "directories"),
    ("get", "/audit/events", "Audit events (?actor= &action= &target= &since= &until=)", None, 200, LIST, "audit"),
    ("get", "/audit/events.csv", "The same as CSV", None, 200, {"type": "string"}, "audit"),
    ("get", "/audit/verify", "Verify the audit hash chain", None, 200, OBJ, "audit"),
    ("get", "/cas/services", "CAS services", None, 200, LIST, "cas"),
    ("post", "/cas/services", "Register a CAS service", OBJ, 201, OBJ, "cas"),
    ("get", "/bridge/systems", "Ticket-bridge systems", None, 200, LIST, "bridge"),
    ("get", "/openapi.json", "This document", None, 200, OBJ, "meta"),
)  # fmt: skip

QUERY = {
    "/people": ["q"],
    "/companies": ["q"],
    "/audit/events": ["actor", "action", "target", "since", "until"],
    "/audit/events.csv": ["actor", "action", "target", "since", "until"],
}


def _operation(
    method: str,
    path: str,
    summary: str,
    body: dict[str, Any] | None,
    ok: int,
    schema: Any,
    tag: str,
) -> dict[str, Any]:
    media = "text/csv" if path.endswith(".csv") else "application/json"
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('.', '_').replace('-', '_')}",
        "responses": {
            str(ok): {"description": "success", "content": {media: {"schema": schema}}},
            "default": {
                "description": "an RFC 6749 error",
                "content": {"application/json": {"schema": ERROR}},
            },
        },
    }
    params = [
        {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for part in path.split("/")
        if part.startswith("{")
    ]
    params += [
        {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
        for q in QUERY.get(path, ())
    ]
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if path == "/openapi.json":
        op["security"] = []
    return op


def document(issuer: str) -> dict[str, Any]:
    """The document, its server the admin API of this issuer."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, ok, schema, tag in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(
            method, path, summary, body, ok, schema, tag
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Yitong admin API",
            "version": "1",
            "description": "Every console action, authorized by an access token Yitong issues "
            "with the admin scope to an account holding an admin role (read from the account "
            "at every call, never from the token).",
        },
        "servers": [{"url": issuer.rstrip("/") + "/admin/api"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
