"""RFC 7591 dynamic registration and RFC 7592 management at ``/connect/register`` (issue 11).

Initial access tokens are issued to a department (single or limited use, expiring); a
registered client is pending until a security admin approves it.  Redirect URIs follow the
registration rules (checklist 54-55), a ``jwks_uri`` is fetched through the SSRF guard
(checklist 59), and errors are RFC 7591's.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from admin.services import OPERATOR, add_department, issue_registration_token
from idp.storage.models import Client, RegistrationToken, utcnow
from tests.helpers import Citizen, Flow, RegisteredClient, admin_token, bearer

ENDPOINT = "/connect/register"
METADATA = {
    "client_name": "Pension service",
    "redirect_uris": ["https://pension.gov.example/cb"],
    "scope": "openid profile email",
    "grant_types": ["authorization_code", "refresh_token"],
    "token_endpoint_auth_method": "client_secret_basic",
}


def issue(app: Flask, department: str = "social", uses: int = 1) -> str:
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        return str(issue_registration_token(session, department, uses, 3600, OPERATOR)["token"])


@pytest.fixture
def department(app: Flask) -> str:
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        add_department(session, "social", "Social security", OPERATOR)
    return "social"


def register(http: Any, token: str | None, body: dict[str, Any] | None = None) -> Any:
    headers = bearer(token) if token else {}
    return http.post(ENDPOINT, json=METADATA if body is None else body, headers=headers)


def test_discovery_advertises_the_registration_endpoint(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["registration_endpoint"].endswith(ENDPOINT)


def test_registration_answers_rfc7591_and_the_client_is_pending(client, app, department):
    resp = register(client, issue(app))
    assert resp.status_code == 201, resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"
    data = resp.get_json()
    assert data["status"] == "pending"
    assert data["redirect_uris"] == METADATA["redirect_uris"]
    assert len(data["client_secret"]) >= 43 and data["client_secret_expires_at"] == 0
    assert data["registration_client_uri"].endswith(f"{ENDPOINT}/{data['client_id']}")
    assert data["registration_access_token"]
    services = app.extensions["yitong"]
    with services.db.session() as session:
        row = session.get(Client, data["client_id"])
        assert row is not None and row.department_id == "social"
        assert data["registration_access_token"] not in (row.registration_access_digest or "")


@pytest.mark.parametrize(
    "uri",
    [
        "http://pension.gov.example/cb",  # http outside loopback
        "https://pension.gov.example/cb#frag",
        "https://*.gov.example/cb",
        "https://user:pw@pension.gov.example/cb",
        "javascript:alert(1)",
        "data:text/html,hi",
        "https://pension.gov.example:99999/cb",  # unparseable port
        "",
        "relative/cb",
    ],
)
def test_bad_redirect_uris_are_invalid_redirect_uri(client, app, department, uri):
    token = issue(app)
    resp = register(client, token, {**METADATA, "redirect_uris": [uri]})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_redirect_uri", resp.get_json()
    # A refused registration does not spend the token.
    assert register(client, token).status_code == 201


def test_loopback_http_is_allowed_for_native_clients_only(client, app, department):
    native = {
        **METADATA,
        "redirect_uris": ["http://127.0.0.1/cb"],
        "token_endpoint_auth_method": "none",
    }
    resp = register(client, issue(app), native)
    assert resp.status_code == 201 and "client_secret" not in resp.get_json()


@pytest.mark.parametrize(
    "body",
    [
        {**METADATA, "grant_types": ["password"]},
        {**METADATA, "grant_types": ["implicit"]},
        {**METADATA, "response_types": ["token"]},
        {**METADATA, "client_name": ""},
        {**METADATA, "scope": ["openid"]},
        {**METADATA, "redirect_uris": "https://pension.gov.example/cb"},
        {**METADATA, "token_endpoint_auth_method": "tls_client_auth"},
    ],
)
def test_bad_metadata_is_invalid_client_metadata(client, app, department, body):
    resp = register(client, issue(app), body)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_client_metadata", resp.get_json()


def test_a_body_that_is_not_an_object_is_refused(client, app, department):
    resp = client.post(
        ENDPOINT, data="[]", headers={**bearer(issue(app)), "Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_client_metadata"


@pytest.mark.parametrize(
    "jwks_uri",
    ["https://127.0.0.1/jwks.json", "https://169.254.169.254/latest", "https://10.1.2.3/jwks"],
)
def test_jwks_uri_is_fetched_through_the_ssrf_guard(client, app, department, jwks_uri):
    body = {**METADATA, "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri}
    resp = register(client, issue(app), body)
    assert resp.status_code == 400
    data = resp.get_json()
    assert data["error"] == "invalid_client_metadata" and "jwks_uri" in data["error_description"]


def test_missing_and_wrong_initial_access_tokens_are_401(client, app, department):
    for token in (None, "not-a-token", "x" * 600):
        resp = register(client, token)
        assert resp.status_code == 401
        assert resp.get_json()["error"] == "invalid_token"
        assert "Bearer" in resp.headers["WWW-Authenticate"]


def test_expired_initial_access_token_is_401(client, app, department):
    token = issue(app)
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        session.execute(
            update(RegistrationToken).values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    assert register(client, token).status_code == 401


def test_used_up_initial_access_token_is_401(client, app, department):
    token = issue(app, uses=2)
    assert register(client, token).status_code == 201
    assert register(client, token).status_code == 201
    resp = register(client, token)
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_token"


def test_single_use_token_registers_once_under_a_race(app, department):
    token = issue(app)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        http = app.test_client()
        barrier.wait()
        results.append(register(http, token).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(201) == 1, results
    assert set(results) <= {201, 401, 503}, results


def test_rfc7592_read_update_delete(client, app, department):
    data = register(client, issue(app)).get_json()
    uri = f"{ENDPOINT}/{data['client_id']}"
    rat = bearer(data["registration_access_token"])
    read = client.get(uri, headers=rat)
    assert read.status_code == 200 and "client_secret" not in read.get_json()
    # Narrowing (fewer scopes) keeps the status; approve first to see it stay approved.
    sec, _ = admin_token(app, roles=["security-admin"])
    client.post(f"/admin/api/clients/{data['client_id']}/approve", headers=bearer(sec))
    narrower = {**METADATA, "client_id": data["client_id"], "scope": "openid profile"}
    resp = client.put(uri, json=narrower, headers=rat)
    assert resp.status_code == 200 and resp.get_json()["status"] == "approved"
    assert resp.get_json()["scope"] == "openid profile"
    # Widening scopes or grant types sends it back to pending.
    for wider in (
        {**narrower, "scope": "openid profile phone"},
        {**narrower, "grant_types": ["authorization_code", "refresh_token", "client_credentials"]},
        {**narrower, "redirect_uris": [*METADATA["redirect_uris"], "https://other.example/cb"]},
    ):
        client.post(f"/admin/api/clients/{data['client_id']}/approve", headers=bearer(sec))
        resp = client.put(uri, json=wider, headers=rat)
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["status"] == "pending", wider
    # A forbidden grant type, a foreign client_id, a wrong secret: refused, nothing changes.
    for bad in (
        {**narrower, "grant_types": ["password"]},
        {**narrower, "client_id": "someone-else"},
        {**narrower, "client_secret": "wrong"},
        {**narrower, "registration_access_token": "mine"},
    ):
        resp = client.put(uri, json=bad, headers=rat)
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_client_metadata"
    assert client.delete(uri, headers=rat).status_code == 204
    assert client.get(uri, headers=rat).status_code == 401


def test_wrong_registration_access_token_is_401(client, app, department):
    one = register(client, issue(app)).get_json()
    two = register(client, issue(app)).get_json()
    uri = f"{ENDPOINT}/{one['client_id']}"
    for headers in ({}, bearer("nonsense"), bearer(two["registration_access_token"])):
        for method in ("get", "put", "delete"):
            resp = getattr(client, method)(
                uri, json={"client_id": one["client_id"]}, headers=headers
            )
            assert resp.status_code == 401, (method, headers)
            assert resp.get_json()["error"] == "invalid_token"
    # An unknown client answers exactly like a wrong token.
    resp = client.get(
        f"{ENDPOINT}/no-such-client", headers=bearer(one["registration_access_token"])
    )
    assert resp.status_code == 401
    # A client registered by an admin (no registration access token) cannot be managed here.
    admin_rp = RegisteredClient.create(app)
    assert client.get(f"{ENDPOINT}/{admin_rp.client_id}", headers=bearer("")).status_code == 401


def test_approval_flow_end_to_end(client, app, department):
    """Registered -> pending (cannot log in) -> approved (code flow) -> disabled (tokens dead)."""
    body = {**METADATA, "scope": "openid profile email offline_access"}
    data = register(client, issue(app), body).get_json()
    rp = RegisteredClient(data["client_id"], data["client_secret"], METADATA["redirect_uris"])
    flow = Flow(client, rp)
    pending = flow.authorize()
    assert pending.status_code == 400 and "Location" not in pending.headers
    assert (
        client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers=rp.basic(),
        ).status_code
        == 401
    )

    sec, _ = admin_token(app, roles=["security-admin"])
    resp = client.post(f"/admin/api/clients/{rp.client_id}/approve", headers=bearer(sec))
    assert resp.status_code == 200
    citizen = Citizen.create(app)
    tokens = flow.token(flow.run(citizen, scope="openid profile email offline_access")["code"])
    assert tokens.status_code == 200, tokens.get_json()
    access, refresh = tokens.get_json()["access_token"], tokens.get_json()["refresh_token"]
    assert client.get("/userinfo", headers=bearer(access)).status_code == 200

    resp = client.post(f"/admin/api/clients/{rp.client_id}/disable", headers=bearer(sec))
    assert resp.status_code == 200 and resp.get_json()["status"] == "disabled"
    assert client.get("/userinfo", headers=bearer(access)).status_code == 401
    again = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        headers=rp.basic(),
    )
    assert again.status_code in (400, 401)
    assert flow.authorize().status_code == 400


def test_checklist_45_dpop_bound_access_tokens_in_metadata(client, app, department):
    """RFC 9449 §5.2: ``dpop_bound_access_tokens`` registers, reads back, and a change back to
    bearer tokens (a weaker client) needs approval again."""
    body = {**METADATA, "dpop_bound_access_tokens": True}
    data = register(client, issue(app), body).get_json()
    assert data["dpop_bound_access_tokens"] is True
    services = app.extensions["yitong"]
    with services.db.session() as session:
        row = session.get(Client, data["client_id"])
        assert row is not None and row.dpop_bound_access_tokens is True
    uri = f"{ENDPOINT}/{data['client_id']}"
    rat = bearer(data["registration_access_token"])
    assert client.get(uri, headers=rat).get_json()["dpop_bound_access_tokens"] is True
    sec, _ = admin_token(app, roles=["security-admin"])
    client.post(f"/admin/api/clients/{data['client_id']}/approve", headers=bearer(sec))
    same = client.put(uri, json={**body, "client_id": data["client_id"]}, headers=rat)
    assert same.status_code == 200 and same.get_json()["status"] == "approved"
    weaker = {**body, "client_id": data["client_id"], "dpop_bound_access_tokens": False}
    resp = client.put(uri, json=weaker, headers=rat)
    assert resp.status_code == 200 and resp.get_json()["status"] == "pending"
    assert resp.get_json()["dpop_bound_access_tokens"] is False


@pytest.mark.parametrize("value", ["yes", 1, None, ["true"]])
def test_dpop_bound_access_tokens_must_be_a_boolean(client, app, department, value):
    resp = register(client, issue(app), {**METADATA, "dpop_bound_access_tokens": value})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_client_metadata"


def test_device_grant_registers_dynamically(client, app, department):
    body = {
        "client_name": "Lobby kiosk",
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid profile",
    }
    resp = register(client, issue(app), body)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["grant_types"] == ["urn:ietf:params:oauth:grant-type:device_code"]
