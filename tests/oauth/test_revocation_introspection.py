"""Revocation (RFC 7009) and introspection (RFC 7662): SECURITY-CHECKLIST items 43 and 44.

A client may revoke and see only its own tokens (and a resource server the tokens addressed
to it); garbage, expired, revoked and other clients' tokens are ``{"active": false}`` and
nothing else, and revoking them is a silent no-op.
"""

from __future__ import annotations

from typing import Any

import pytest

from idp.storage.models import Token, User
from tests.helpers import RegisteredClient
from tests.oauth import tokenkit as kit


@pytest.fixture
def rp2(app: Any) -> RegisteredClient:
    return RegisteredClient.create(
        app, name="Other service", redirect_uris=["https://c2.gov.example/cb"]
    )


# ------------------------------------------------------------------ revocation (43)
def test_revoking_refresh_token_kills_grant(client, citizen, rp):
    """Checklist 43: revoking the RT -> refresh fails and the derived ATs are active:false."""
    body = kit.code_tokens(client, rp, citizen)
    at2 = kit.refresh(client, rp, body["refresh_token"]).get_json()["access_token"]
    resp = kit.revoke(client, rp, body["refresh_token"], token_type_hint="refresh_token")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    assert kit.refresh(client, rp, body["refresh_token"]).get_json()["error"] == "invalid_grant"
    for at in (body["access_token"], at2):
        assert kit.introspect(client, rp, at).get_json() == {"active": False}
        assert kit.userinfo_status(client, at) == 401


def test_revoking_access_token_leaves_refresh_token(client, citizen, rp):
    body = kit.code_tokens(client, rp, citizen)
    assert kit.revoke(client, rp, body["access_token"]).status_code == 200
    assert kit.userinfo_status(client, body["access_token"]) == 401
    assert kit.introspect(client, rp, body["refresh_token"]).get_json()["active"] is True
    assert kit.refresh(client, rp, body["refresh_token"]).status_code == 200


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token", "bogus"])
def test_a_wrong_or_unknown_hint_does_not_matter(client, citizen, rp, hint):
    """RFC 7009 §2.1: the server extends its search when the hint does not find the token."""
    body = kit.code_tokens(client, rp, citizen)
    assert kit.revoke(client, rp, body["access_token"], token_type_hint=hint).status_code == 200
    assert kit.userinfo_status(client, body["access_token"]) == 401


def test_revocation_needs_client_authentication(client, citizen, rp):
    """Checklist 43: revocation without client auth -> invalid_client."""
    body = kit.code_tokens(client, rp, citizen)
    for data in (
        {"token": body["access_token"]},
        {"token": body["access_token"], "client_id": rp.client_id},
    ):
        resp = client.post("/revoke", data=data)
        assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    wrong = RegisteredClient(rp.client_id, "not-the-secret", [])
    assert kit.revoke(client, wrong, body["access_token"]).status_code == 401
    assert kit.userinfo_status(client, body["access_token"]) == 200


def test_another_clients_token_is_neither_revoked_nor_revealed(client, citizen, rp, rp2):
    """Checklist 43: C2 revoking C1's token is refused silently; the token stays active for C1."""
    body = kit.code_tokens(client, rp, citizen)
    unknown = kit.revoke(client, rp2, "no-such-token")
    foreign = kit.revoke(client, rp2, body["refresh_token"])
    assert foreign.status_code == unknown.status_code == 200
    assert foreign.get_data() == unknown.get_data()
    assert kit.introspect(client, rp, body["refresh_token"]).get_json()["active"] is True
    assert kit.introspect(client, rp, body["access_token"]).get_json()["active"] is True


def test_public_client_revokes_its_own_token(client, citizen, public_rp):
    body = kit.code_tokens(client, public_rp, citizen)
    assert kit.revoke(client, public_rp, body["refresh_token"]).status_code == 200
    assert (
        kit.refresh(client, public_rp, body["refresh_token"]).get_json()["error"] == "invalid_grant"
    )
    assert kit.userinfo_status(client, body["access_token"]) == 401


@pytest.mark.parametrize("data", [{}, {"token": ["a", "b"]}])
def test_revocation_bad_requests(client, rp, data):
    resp = kit.post(client, "/revoke", rp, data)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("value", ["", "garbage", "x" * 10_000, "a.b.c"])
def test_revoking_garbage_is_200(client, rp, value):
    assert kit.revoke(client, rp, value).status_code == 200


# ------------------------------------------------------------------ introspection (44)
def test_introspection_of_live_tokens(client, citizen, rp):
    body = kit.code_tokens(client, rp, citizen, scope="openid profile offline_access")
    resp = kit.introspect(client, rp, body["access_token"])
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    info = resp.get_json()
    assert info["active"] is True and info["token_type"] == "Bearer"
    assert info["client_id"] == rp.client_id and info["sub"] == citizen.id
    assert info["scope"] == "openid profile offline_access" and info["aud"] == rp.client_id
    assert info["iss"] == kit.ISSUER and info["exp"] > info["iat"] and "auth_time" in info
    rt = kit.introspect(client, rp, body["refresh_token"]).get_json()
    assert rt["active"] is True and rt["token_type"] == "refresh_token"


def test_introspection_requires_authentication(client, citizen, rp, public_rp):
    """Checklist 44: unauthenticated -> 401; public clients cannot introspect."""
    at = kit.code_tokens(client, rp, citizen)["access_token"]
    resp = client.post("/introspect", data={"token": at})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in resp.headers
    resp = kit.introspect(client, public_rp, at)
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "state", ["expired", "revoked", "garbage", "empty", "id_token", "disabled_user"]
)
def test_dead_tokens_are_only_active_false(client, app, citizen, rp, state):
    """Checklist 44: expired, revoked or garbage -> {"active": false} with no other fields."""
    body = kit.code_tokens(client, rp, citizen)
    token = body["access_token"]
    if state == "expired":
        kit.set_columns(app, Token, kit.token_row(app, token).id, expires_at=kit.utc(-1))
    elif state == "revoked":
        kit.revoke(client, rp, token)
    elif state == "garbage":
        token = "garbage-" + "x" * 40
    elif state == "empty":
        token = ""
    elif state == "id_token":
        token = body["id_token"]
    else:
        kit.set_columns(app, User, citizen.id, status="disabled")
    resp = kit.introspect(client, rp, token)
    assert resp.status_code == 200
    assert resp.get_json() == {"active": False}


def test_another_clients_token_is_inactive_to_it(client, citizen, rp, rp2):
    body = kit.code_tokens(client, rp, citizen)
    assert kit.introspect(client, rp2, body["access_token"]).get_json() == {"active": False}
    assert kit.introspect(client, rp2, body["refresh_token"]).get_json() == {"active": False}


def test_rotated_refresh_token_is_inactive(client, app, citizen, rp, monkeypatch):
    from idp.oauth.grants import RefreshTokenGrant

    monkeypatch.setattr(RefreshTokenGrant, "ROTATE_CONFIDENTIAL", True)
    body = kit.code_tokens(client, rp, citizen)
    new = kit.refresh(client, rp, body["refresh_token"]).get_json()
    assert kit.introspect(client, rp, body["refresh_token"]).get_json() == {"active": False}
    assert kit.introspect(client, rp, new["refresh_token"]).get_json()["active"] is True


def test_resource_server_introspects_tokens_addressed_to_it(client, app):
    """A resource server (a client registering the resource) sees tokens whose aud names it."""
    api = kit.api_client(app)
    rs = kit.create_client(
        app,
        name="HR API",
        grant_types=["client_credentials"],
        scopes=["introspect"],
        resources=["https://api.hr.gov.example/"],
    )
    to_hr = kit.post(
        client,
        "/token",
        api,
        {"grant_type": "client_credentials", "resource": "https://api.hr.gov.example/"},
    ).get_json()
    to_tax = kit.post(
        client,
        "/token",
        api,
        {"grant_type": "client_credentials", "resource": "https://api.tax.gov.example/"},
    ).get_json()
    assert kit.introspect(client, rs, to_hr["access_token"]).get_json()["active"] is True
    assert kit.introspect(client, rs, to_tax["access_token"]).get_json() == {"active": False}


def test_introspection_bad_requests(client, rp):
    for data in ({}, {"token": ["a", "b"]}):
        resp = kit.post(client, "/introspect", rp, data)
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert client.get("/introspect").status_code == 405
