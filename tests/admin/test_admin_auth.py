"""Who may call the admin API (checklist 95): roles come from the account, not the token."""

from __future__ import annotations

from tests.helpers import admin_token, bearer


def test_no_token_is_401(client):
    resp = client.get("/admin/api/clients")
    assert resp.status_code == 401
    assert "Bearer" in resp.headers["WWW-Authenticate"]


def test_garbage_token_is_401(client):
    assert client.get("/admin/api/clients", headers=bearer("garbage")).status_code == 401


def test_citizen_token_with_admin_scope_but_no_role_is_403(client, app):
    token, _ = admin_token(app, roles=[])
    resp = client.get("/admin/api/clients", headers=bearer(token))
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "insufficient_scope"


def test_role_without_admin_scope_is_403(client, app):
    token, _ = admin_token(app, roles=["client-admin"], scope="openid profile")
    resp = client.get("/admin/api/clients", headers=bearer(token))
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "insufficient_scope"


def test_sensitive_endpoints_need_fresh_mfa(client, app):
    stale, _ = admin_token(app, roles=["security-admin"], minutes_ago=20)
    password_only, _ = admin_token(app, roles=["security-admin"], acr="urn:yitong:acr:pwd")
    body = {
        "display_name": "X",
        "urls": ["ldap://127.0.0.1:1"],
        "allow_plaintext": True,
        "user_base": "dc=x",
        "login_attribute": "uid",
    }
    for token in (stale, password_only):
        resp = client.put("/admin/api/directories/x", json=body, headers=bearer(token))
        assert resp.status_code == 403
        assert resp.get_json()["error"] == "insufficient_user_authentication"


def test_client_admin_can_list_and_register_pending_client(client, app):
    token, _ = admin_token(app, roles=["client-admin"])
    resp = client.post(
        "/admin/api/clients",
        json={
            "client_name": "Tax service",
            "redirect_uris": ["https://tax.gov.example/cb"],
            "scope": "openid profile",
        },
        headers=bearer(token),
    )
    assert resp.status_code == 201, resp.get_json()
    data = resp.get_json()
    assert data["status"] == "pending" and data["client_secret"]
    listed = client.get("/admin/api/clients", headers=bearer(token)).get_json()
    assert any(c["client_id"] == data["client_id"] for c in listed)
    assert all("secret" not in k for c in listed for k in c)
    # A pending client cannot start a flow until a security admin approves it.
    resp = client.get(f"/authorize?client_id={data['client_id']}&response_type=code")
    assert resp.status_code == 400 and "Location" not in resp.headers
    # ...and a client admin cannot approve it.
    resp = client.post(f"/admin/api/clients/{data['client_id']}/approve", headers=bearer(token))
    assert resp.status_code == 403
    sec, _ = admin_token(app, roles=["security-admin"])
    resp = client.post(f"/admin/api/clients/{data['client_id']}/approve", headers=bearer(sec))
    assert resp.status_code == 200 and resp.get_json()["status"] == "approved"


def test_admin_api_rejects_bad_client_metadata(client, app):
    token, _ = admin_token(app, roles=["client-admin"])
    for body, error in [
        ({"client_name": "x", "redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
        (
            {"client_name": "x", "redirect_uris": ["https://a.example/cb#frag"]},
            "invalid_redirect_uri",
        ),
        ({"client_name": "x", "grant_types": ["password"]}, "invalid_client_metadata"),
        ({"client_name": "x", "bogus": 1}, "invalid_client_metadata"),
    ]:
        resp = client.post("/admin/api/clients", json=body, headers=bearer(token))
        assert resp.status_code == 400, body
        assert resp.get_json()["error"] == error, (body, resp.get_json())
    resp = client.post("/admin/api/clients", data="not json", headers=bearer(token))
    assert resp.status_code == 400
