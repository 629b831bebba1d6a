"""Client credentials (issue 3 item 2): per-client scopes, RFC 8707 audience, grant rows.

Checklist 34 (grant types per client), 43-44 (revocation and introspection of these tokens).
"""

from __future__ import annotations

from typing import Any

import pytest
from jose import jwt as jose_jwt

from tests.helpers import RegisteredClient
from tests.oauth import tokenkit as kit

HR = "https://api.hr.gov.example/"
TAX = "https://api.tax.gov.example/"


def cc(http: Any, rp: RegisteredClient, **data: Any) -> Any:
    return kit.post(http, "/token", rp, {"grant_type": "client_credentials", **data})


def test_default_scope_is_the_clients_registered_scopes(client, app):
    api = kit.api_client(app)
    resp = cc(client, api)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["scope"] == "hr:read hr:write" and body["token_type"] == "Bearer"
    assert "refresh_token" not in body and "id_token" not in body
    assert resp.headers["Cache-Control"] == "no-store"
    row = kit.token_row(app, body["access_token"])
    grant = kit.grant_row(app, row.grant_id)
    assert grant.user_id is None and row.user_id is None and grant.client_id == api.client_id


def test_requested_scope_must_be_registered(client, app):
    api = kit.api_client(app)
    assert cc(client, api, scope="hr:read").get_json()["scope"] == "hr:read"
    for scope in ("hr:admin", "hr:read hr:admin", "openid", "profile", "offline_access", " "):
        resp = cc(client, api, scope=scope)
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_scope", scope


def test_user_scopes_registered_by_the_client_are_still_not_granted(client, app):
    api = kit.api_client(app, scopes=["openid", "email", "reports:read"])
    assert cc(client, api).get_json()["scope"] == "reports:read"


def test_resource_sets_the_audience_of_a_jwt_access_token(client, app):
    """RFC 8707: the token's aud is the requested registered resource (RFC 9068, python-jose)."""
    api = kit.api_client(app, access_token_format="jwt")
    body = cc(client, api, resource=HR).get_json()
    claims = kit.verify_jwt_access_token(client, body["access_token"], HR)
    assert claims["sub"] == api.client_id and claims["client_id"] == api.client_id
    assert claims["scope"] == "hr:read hr:write" and "auth_time" not in claims
    both = cc(client, api, resource=[HR, TAX]).get_json()
    aud = jose_jwt.get_unverified_claims(both["access_token"])["aud"]
    assert aud == [HR, TAX]


@pytest.mark.parametrize(
    "resource",
    ["https://api.evil.example/", "relative/path", "https://api.hr.gov.example/#frag", ""],
)
def test_unknown_or_malformed_resource_is_invalid_target(client, app, resource):
    api = kit.api_client(app)
    resp = cc(client, api, resource=resource)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_target"


def test_opaque_token_audience_via_introspection(client, app):
    api = kit.api_client(app)
    at = cc(client, api, resource=TAX).get_json()["access_token"]
    info = kit.introspect(client, api, at).get_json()
    assert info["active"] is True and info["aud"] == TAX and info["sub"] == api.client_id
    assert info["client_id"] == api.client_id and info["token_type"] == "Bearer"


def test_client_credentials_token_is_not_a_userinfo_token(client, app):
    api = kit.api_client(app)
    at = cc(client, api).get_json()["access_token"]
    assert kit.userinfo_status(client, at) == 403


def test_revoked_client_credentials_token_is_inactive(client, app):
    api = kit.api_client(app)
    at = cc(client, api).get_json()["access_token"]
    assert kit.revoke(client, api, at).status_code == 200
    assert kit.introspect(client, api, at).get_json() == {"active": False}


def test_client_not_registered_for_client_credentials(client, app, rp, public_rp):
    """Checklist 34: unauthorized_client for a web app; a public client cannot authenticate."""
    resp = cc(client, rp)
    assert resp.status_code == 400 and resp.get_json()["error"] == "unauthorized_client"
    resp = cc(client, public_rp)
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"


def test_wrong_secret_and_unknown_client(client, app):
    api = kit.api_client(app)
    bad = RegisteredClient(api.client_id, "wrong-secret", [])
    unknown = RegisteredClient("no-such-client", "wrong-secret", [])
    for who in (bad, unknown):
        resp = cc(client, who)
        assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"


def test_each_request_gets_its_own_grant(client, app):
    api = kit.api_client(app)
    first = kit.token_row(app, cc(client, api).get_json()["access_token"])
    second = kit.token_row(app, cc(client, api).get_json()["access_token"])
    assert first.grant_id != second.grant_id


def test_jwt_format_per_resource(make_app):
    """Issue 3 item 4: a resource server that validates tokens itself gets RFC 9068 JWTs even
    from a client whose default format is opaque; other resources stay opaque."""
    app = make_app(jwt_access_token_resources=(HR,))
    client = app.test_client()
    api = kit.api_client(app)  # opaque by default
    jwt_body = cc(client, api, resource=HR).get_json()
    claims = kit.verify_jwt_access_token(client, jwt_body["access_token"], HR)
    assert jose_jwt.get_unverified_header(jwt_body["access_token"])["typ"] == "at+jwt"
    assert claims["client_id"] == api.client_id
    opaque = cc(client, api, resource=TAX).get_json()["access_token"]
    assert opaque.count(".") == 0
    # Both are revocable and introspectable the same way: the JWT's jti is its row.
    assert kit.token_row(app, jwt_body["access_token"]).id == claims["jti"]
