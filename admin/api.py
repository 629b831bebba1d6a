"""The admin API (JSON), mounted at ``/admin/api``.  Handlers validate input and call
:mod:`admin.services`, the only writers, each of which records an audit event.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from admin import operations, services
from admin.auth import principal, require_role
from idp import context
from idp.blueprints.responses import json_error
from keys.store import SUPPORTED_ALGS, KeyState, KeyStoreError, ManagedKeyStore

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")


def json_body() -> dict[str, Any]:
    """The body as a JSON object, or ``invalid_request`` 400.

    Bodies are parsed by :mod:`idp.untrusted_json` (Flask's JSON provider): NaN, deep nesting
    and NUL are refused there, and arrive here as None.
    """
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise services.AdminInputError("the request body must be a JSON object")
    return data


def optional_json_body() -> dict[str, Any]:
    """Like :func:`json_body`, but an empty body is an empty object."""
    if not request.get_data(cache=True):
        return {}
    return json_body()


def string_list(value: Any, what: str, choices: tuple[str, ...] | None = None) -> list[str]:
    """``value`` as a list of strings (from ``choices``, if given), else ``invalid_request``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise services.AdminInputError(f"{what} must be a list of strings")
    if choices is not None and not set(value) <= set(choices):
        raise services.AdminInputError(f"{what} must be a list of {', '.join(choices)}")
    return value


@bp.errorhandler(services.AdminInputError)
def _bad_input(exc: services.AdminInputError) -> Response:
    return json_error(exc.as_error(), status=exc.status)


def caller() -> services.Caller:
    """The signed-in admin's roles and departments, read from the account at this call."""
    return services.caller_of(context.db_session(), principal())


# ------------------------------------------------------------------ clients and departments (issue 11)
# Every admin role may read clients; which ones is the service layer's call (a department
# admin sees its departments' only).  Approval is a security admin's alone.
READERS = ("security-admin", "client-admin", "department-admin", "auditor")
WRITERS = ("security-admin", "client-admin", "department-admin")


@bp.route("/clients", methods=["GET"])
@require_role(*READERS)
def list_clients() -> Response:
    return jsonify(services.list_clients(context.db_session(), caller()))


@bp.route("/clients", methods=["POST"])
@require_role(*WRITERS)
def create_client() -> tuple[Response, int]:
    """Body: RFC 7591 client metadata, and ``department`` (a department admin's by default)."""
    result = services.create_client(context.db_session(), json_body(), caller())
    return jsonify(result), 201


@bp.route("/clients/<client_id>", methods=["GET"])
@require_role(*READERS)
def show_client(client_id: str) -> Response:
    return jsonify(services.show_client(context.db_session(), client_id, caller()))


@bp.route("/clients/<client_id>", methods=["DELETE"])
@require_role(*WRITERS)
def delete_client(client_id: str) -> Response:
    return jsonify(services.delete_client(context.db_session(), client_id, caller()))


@bp.route("/clients/<client_id>/approve", methods=["POST"])
@require_role("security-admin")
def approve_client(client_id: str) -> Response:
    return jsonify(
        services.set_client_status(context.db_session(), client_id, "approved", caller())
    )


@bp.route("/clients/<client_id>/disable", methods=["POST"])
@require_role(*WRITERS)
def disable_client(client_id: str) -> Response:
    return jsonify(
        services.set_client_status(context.db_session(), client_id, "disabled", caller())
    )


@bp.route("/departments", methods=["GET"])
@require_role(*READERS)
def list_departments() -> Response:
    return jsonify(services.list_departments(context.db_session(), caller()))


@bp.route("/departments", methods=["POST"])
@require_role("security-admin")
def add_department() -> tuple[Response, int]:
    """Body: ``{"id", "name"}``."""
    body = json_body()
    result = services.add_department(
        context.db_session(), body.get("id"), body.get("name"), caller()
    )
    return jsonify(result), 201


@bp.route("/admins", methods=["POST", "DELETE"])
@require_role("security-admin")
def admins() -> Response:
    """Grant (POST) or revoke (DELETE) ``{"user", "role", "department"?}``."""
    body = json_body()
    change = services.grant_role if request.method == "POST" else services.revoke_role
    return jsonify(
        change(
            context.db_session(),
            context.services(),
            str(body.get("user", "")),
            body.get("role"),
            body.get("department"),
            caller(),
        )
    )


@bp.route("/registration-tokens", methods=["POST"])
@require_role("security-admin", "department-admin")
def issue_registration_token() -> tuple[Response, int]:
    """Body: ``{"department", "uses"?: 1, "expires_in"?: 86400}``; the token is shown once."""
    body = json_body()
    result = services.issue_registration_token(
        context.db_session(),
        body.get("department"),
        body.get("uses", 1),
        body.get("expires_in", 86400),
        caller(),
    )
    resp = jsonify(result)
    resp.headers["Cache-Control"] = "no-store"
    return resp, 201


@bp.route("/audit/verify", methods=["GET"])
@require_role("auditor")
def audit_verify() -> Response:
    from idp import audit

    result = audit.verify(context.db_session())
    return jsonify({"ok": result.ok, "count": result.count, "problem": result.problem})


# ------------------------------------------------------------------ signing keys (issue 4)
# The key store is the writer here: it changes the keys and records the audit event (actor,
# kid, old -> new state) in one transaction.  Never any key material in or out; KEK rewrap
# stays on the command line (`yitong keys rewrap`), as a KEK must not travel over HTTP.
def _keystore() -> ManagedKeyStore:
    return operations.managed_keys(caller())


_key_error = operations.key_error


@bp.route("/keys", methods=["GET"])
@require_role("security-admin")
def list_keys() -> Response:
    store = _keystore()
    infos = store.list_keys(include_removed=request.args.get("all") == "1")
    return jsonify(
        {"keys": [k.as_dict() for k in infos], "next_change": store.next_change().isoformat()}
    )


@bp.route("/keys", methods=["POST"])
@require_role("security-admin", fresh_mfa=True)
def generate_key() -> tuple[Response, int]:
    body = json_body()
    alg, activate = body.get("alg"), body.get("activate", False)
    if alg not in SUPPORTED_ALGS or not isinstance(activate, bool):
        raise services.AdminInputError(
            f"alg must be one of {', '.join(SUPPORTED_ALGS)}; activate a boolean"
        )
    state = KeyState.ACTIVE if activate else KeyState.NEXT
    try:
        kid = _keystore().generate(alg, state, actor=principal().actor)
    except KeyStoreError as exc:
        raise _key_error(exc) from None
    return jsonify({"kid": kid, "alg": alg, "state": str(state)}), 201


@bp.route("/keys/rotate", methods=["POST"])
@require_role("security-admin", fresh_mfa=True)
def rotate_keys() -> Response:
    force = string_list(optional_json_body().get("force", []), "force", tuple(SUPPORTED_ALGS))
    try:
        changed = _keystore().rotate(actor=principal().actor, force=force)
    except KeyStoreError as exc:
        raise _key_error(exc) from None
    return jsonify({"changed": changed})


@bp.route("/keys/<kid>/revoke", methods=["POST"])
@require_role("security-admin", fresh_mfa=True)
def revoke_key(kid: str) -> Response:
    reason = optional_json_body().get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise services.AdminInputError("reason must be text of at most 500 characters")
    store = _keystore()
    try:
        store.revoke(kid, actor=principal().actor, reason=reason)
    except KeyStoreError as exc:
        raise _key_error(exc) from None
    active = {k.alg: k.kid for k in store.list_keys() if k.state == KeyState.ACTIVE}
    return jsonify({"revoked": kid, "active": active})


@bp.route("/directories", methods=["GET"])
@require_role("security-admin")
def list_directories() -> Response:
    return jsonify(services.list_directories(context.db_session(), context.services().directories))


@bp.route("/directories/<directory_id>", methods=["PUT"])
@require_role("security-admin", fresh_mfa=True)
def put_directory(directory_id: str) -> Response:
    result = services.put_directory(context.db_session(), directory_id, json_body(), principal())
    context.services().directories.reload(force=True)
    return jsonify(result)


@bp.route("/directories/<directory_id>", methods=["DELETE"])
@require_role("security-admin", fresh_mfa=True)
def delete_directory(directory_id: str) -> Response:
    services.delete_directory(context.db_session(), directory_id, principal())
    context.services().directories.reload(force=True)
    return jsonify({"deleted": directory_id})


# ------------------------------------------------------------------ security policies (issue 5)
@bp.route("/policies", methods=["GET"])
@require_role("security-admin", fresh_mfa=True)
def list_policies() -> Response:
    return jsonify(services.list_policies())


@bp.route("/policies", methods=["PUT"])
@require_role("security-admin", fresh_mfa=True)
def put_policies() -> Response:
    """Body: ``{"<policy name>": <value>, …}``; all are validated before any is stored."""
    changes = json_body()
    return jsonify(
        services.set_policies(context.db_session(), changes, principal(), context.client_ip())
    )


@bp.route("/users/<user_id>/sessions", methods=["DELETE"])
@require_role("security-admin")
def terminate_sessions(user_id: str) -> Response:
    """End every session and session-bound token of an account (checklist 67, ASVS 7.4.5)."""
    return jsonify(services.terminate_sessions(context.db_session(), user_id, principal()))


@bp.route("/users/<user_id>/disable", methods=["POST"])
@require_role("security-admin")
def disable_user(user_id: str) -> Response:
    return jsonify(services.disable_user(context.db_session(), user_id, principal()))


# ------------------------------------------------------------------ companies and mandates (issue 10)
# Registering companies and recording mandates is account administration (department-admin);
# suspending or deregistering one ends people's sessions, so it is a security-admin's call.
@bp.route("/entities", methods=["POST"])
@require_role("department-admin")
def add_entity() -> tuple[Response, int]:
    """Body: ``{"credit_code", "representative", "name"?, "kind"?}``."""
    who = principal()
    result = services.add_entity(context.db_session(), context.services(), json_body(), who.actor)
    return jsonify(result), 201


@bp.route("/entities/<ref>/status", methods=["POST"])
@require_role("security-admin")
def entity_status(ref: str) -> Response:
    """Body: ``{"status": "active" | "suspended" | "deregistered"}``."""
    status = str(json_body().get("status", ""))
    return jsonify(
        services.change_entity_status(
            context.db_session(), context.services(), ref, status, principal().actor
        )
    )


@bp.route("/mandates", methods=["POST"])
@require_role("department-admin")
def grant_mandate() -> tuple[Response, int]:
    """Body: ``{"entity", "user", "role", "until": "YYYY-MM-DD", "clients"?, "accepted"?}``."""
    who = principal()
    result = services.grant_mandate(
        context.db_session(), context.services(), json_body(), who.actor
    )
    return jsonify(result), 201


@bp.route("/entities/<ref>/mandates/<user>", methods=["DELETE"])
@require_role("department-admin")
def revoke_mandate(ref: str, user: str) -> Response:
    return jsonify(
        services.revoke_mandate(
            context.db_session(), context.services(), ref, user, principal().actor
        )
    )


# ------------------------------------------------------------------ CAS services (issue 13)
@bp.route("/cas/services", methods=["GET"])
@require_role("client-admin")
def list_cas_services() -> Response:
    return jsonify(services.list_cas_services(context.db_session()))


@bp.route("/cas/services", methods=["POST"])
@require_role("security-admin", fresh_mfa=True)
def create_cas_service() -> tuple[Response, int]:
    """Body: ``{"name", "service" | "pattern", "attributes": [claim, …]}``."""
    result = services.create_cas_service(context.db_session(), json_body(), principal())
    return jsonify(result), 201


# ------------------------------------------------------------------ ticket-bridge systems (issue 13)
@bp.route("/bridge/systems", methods=["GET"])
@require_role("client-admin")
def list_bridge_systems() -> Response:
    return jsonify(services.list_bridge_systems(context.db_session()))


def register(app: Any, csrf: Any) -> None:
    """Mount the admin API (bearer-token authenticated, so exempt from form CSRF)."""
    app.register_blueprint(bp)
    csrf.exempt(bp)
