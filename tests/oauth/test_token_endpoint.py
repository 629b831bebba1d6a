"""The token endpoint and access tokens: SECURITY-CHECKLIST items 24-35, 46, 51, 52, 110.

Also issue 3 item 4: opaque access tokens by default, RFC 9068 JWT access tokens per client
(verified with python-jose against the published JWKS); userinfo accepts only access tokens,
never from the query string; a JWT signed with a key revoked since is dead.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from jose import jwt as jose_jwt
from sqlalchemy import func, select

from idp.oauth import client_auth
from idp.storage import repo
from idp.storage.models import AuthorizationCode, Grant, Token
from tests.helpers import ISSUER, Flow, RegisteredClient, pkce_pair
from tests.oauth import tokenkit as kit


def fresh_code(http: Any, rp: RegisteredClient, citizen: Any, **kw: Any) -> tuple[Flow, str]:
    flow = Flow(http, rp, **kw)
    return flow, flow.run(citizen)["code"]


def assert_error(resp: Any, status: int, error: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.mimetype == "application/json"
    assert resp.get_json()["error"] == error
    assert resp.headers["Cache-Control"] == "no-store"  # checklist 35, errors too


# ------------------------------------------------------------------ code redemption (24-31)
def test_code_redeemed_twice_is_invalid_grant(client, citizen, rp):
    """Checklist 24."""
    flow, code = fresh_code(client, rp, citizen)
    assert flow.token(code).status_code == 200
    assert_error(flow.token(code), 400, "invalid_grant")


def test_code_reuse_kills_what_the_first_redemption_issued(client, app, citizen, rp):
    """Checklist 25: reuse revokes AT and RT of the first redemption (userinfo, introspection,
    refresh).  The 30-second wait of the conformance test changes nothing here: reuse is
    detected by the consumed flag, not by timing, so the test does not sleep."""
    flow, code = fresh_code(client, rp, citizen, scope="openid profile offline_access")
    first = flow.token(code).get_json()
    assert kit.userinfo_status(client, first["access_token"]) == 200
    assert_error(flow.token(code), 400, "invalid_grant")
    assert kit.userinfo_status(client, first["access_token"]) == 401
    assert kit.introspect(client, rp, first["access_token"]).get_json() == {"active": False}
    assert kit.introspect(client, rp, first["refresh_token"]).get_json() == {"active": False}
    assert_error(kit.refresh(client, rp, first["refresh_token"]), 400, "invalid_grant")


def test_twenty_parallel_code_redemptions_one_success(app, citizen, rp):
    """Checklist 26: exactly 1x200 and 19x invalid_grant; the database holds a single grant."""
    http = app.test_client()
    flow, code = fresh_code(http, rp, citizen)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": flow.verifier,
    }
    results = kit.run_parallel(
        20, lambda _i: app.test_client().post("/token", data=data, headers=rp.basic())
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 19, statuses
    assert {r.get_json()["error"] for r in results if r.status_code == 400} == {"invalid_grant"}
    with app.extensions["yitong"].db.session() as session:
        grants = session.scalar(
            select(func.count()).select_from(Grant).where(Grant.client_id == rp.client_id)
        )
        access = session.scalar(
            select(func.count())
            .select_from(Token)
            .where(Token.client_id == rp.client_id, Token.kind == "access")
        )
    assert grants == 1 and access == 1


def test_expired_code_is_invalid_grant(client, app, citizen, rp):
    """Checklist 27: a code used 61 s after issue (lifetime <= 60 s)."""
    flow, code = fresh_code(client, rp, citizen)
    now = kit.utc()
    kit.set_columns(
        app,
        AuthorizationCode,
        repo.digest(code),
        created_at=now - dt.timedelta(seconds=61),
        expires_at=now - dt.timedelta(seconds=1),
    )
    assert_error(flow.token(code), 400, "invalid_grant")


def test_code_is_bound_to_its_client(client, app, citizen, rp):
    """Checklist 28: C2 with valid credentials redeeming C1's code -> invalid_grant."""
    rp2 = RegisteredClient.create(app, name="Other", redirect_uris=[rp.redirect_uri])
    flow, code = fresh_code(client, rp, citizen)
    resp = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": flow.verifier,
        },
        headers=rp2.basic(),
    )
    assert_error(resp, 400, "invalid_grant")


@pytest.mark.parametrize("redirect_uri", ["https://c1.gov.example/other", None])
def test_redirect_uri_must_match(client, citizen, rp, redirect_uri):
    """Checklist 29: a different redirect_uri, or omitted although it was sent."""
    flow, code = fresh_code(client, rp, citizen)
    assert_error(flow.token(code, redirect_uri=redirect_uri), 400, "invalid_grant")


def test_pkce_verifier_checks(client, citizen, rp, public_rp):
    """Checklist 30: wrong -> invalid_grant; missing -> invalid_request; 42 chars -> invalid_request."""
    flow, code = fresh_code(client, rp, citizen)
    wrong, _ = pkce_pair()
    assert_error(flow.token(code, code_verifier=wrong), 400, "invalid_grant")
    flow, code = fresh_code(client, rp, citizen)
    resp = flow.token(code, code_verifier=None)
    assert resp.status_code == 400 and resp.get_json()["error"] in (
        "invalid_request",
        "invalid_grant",
    )
    flow, code = fresh_code(client, public_rp, citizen)
    assert_error(flow.token(code, code_verifier="a" * 42), 400, "invalid_request")


def test_pkce_downgrade_is_refused(client, app, citizen, rp):
    """Checklist 31: a code without code_challenge redeemed with a code_verifier -> refused
    (no client is exempt from PKCE, so the code is planted directly)."""
    flow, code = fresh_code(client, rp, citizen)
    kit.set_columns(
        app, AuthorizationCode, repo.digest(code), code_challenge=None, code_challenge_method=None
    )
    resp = flow.token(code)
    assert resp.status_code == 400 and resp.get_json()["error"] in (
        "invalid_request",
        "invalid_grant",
    )
    flow, code = fresh_code(client, rp, citizen)
    kit.set_columns(
        app, AuthorizationCode, repo.digest(code), code_challenge=None, code_challenge_method=None
    )
    assert_error(flow.token(code, code_verifier=None), 400, "invalid_grant")


# ------------------------------------------------------------------ grant types (34) and headers (35)
def test_password_grant_is_unsupported(client, rp):
    """Checklist 34: grant_type=password -> unsupported_grant_type."""
    resp = client.post(
        "/token",
        data={"grant_type": "password", "username": "u", "password": "p"},
        headers=rp.basic(),
    )
    assert_error(resp, 400, "unsupported_grant_type")
    for grant_type in ("implicit", ""):
        assert_error(
            client.post("/token", data={"grant_type": grant_type}, headers=rp.basic()),
            400,
            "unsupported_grant_type",
        )
    # The device grant exists (RFC 8628) but this client is not registered for it.
    assert_error(
        client.post(
            "/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "x"},
            headers=rp.basic(),
        ),
        400,
        "unauthorized_client",
    )


def test_grant_not_registered_for_client_is_unauthorized_client(client, rp):
    """Checklist 34: client_credentials for a citizen web app -> unauthorized_client."""
    resp = client.post("/token", data={"grant_type": "client_credentials"}, headers=rp.basic())
    assert_error(resp, 400, "unauthorized_client")


def test_success_and_errors_are_no_store_json(client, citizen, rp):
    """Checklist 35: every token response carries Cache-Control: no-store; errors are JSON."""
    flow, code = fresh_code(client, rp, citizen)
    ok = flow.token(code)
    assert ok.status_code == 200 and ok.headers["Cache-Control"] == "no-store"
    assert ok.headers["Pragma"] == "no-cache" and ok.mimetype == "application/json"
    assert_error(flow.token(code), 400, "invalid_grant")
    assert_error(
        client.post("/token", data={"grant_type": "authorization_code", "code": "x"}),
        401,
        "invalid_client",
    )
    assert_error(
        client.post("/token", data="grant_type=x", content_type="text/plain"),
        400,
        "invalid_request",
    )
    assert_error(
        client.post("/token", json={"grant_type": "client_credentials"}), 400, "invalid_request"
    )
    get = client.get("/token")
    assert get.status_code == 405 and get.headers["Cache-Control"] == "no-store"
    assert "error" in get.get_json()


def test_query_string_parameters_are_ignored(client, citizen, rp):
    """Token-endpoint parameters come from the body only (RFC 6749 §3.2)."""
    flow, code = fresh_code(client, rp, citizen)
    resp = client.post(
        f"/token?grant_type=authorization_code&code={code}&code_verifier={flow.verifier}"
        f"&redirect_uri={rp.redirect_uri}",
        data={"x": "y"},
        headers=rp.basic(),
    )
    assert_error(resp, 400, "unsupported_grant_type")


def test_repeated_parameter_is_invalid_request(client, citizen, rp):
    flow, code = fresh_code(client, rp, citizen)
    resp = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": [code, code],
            "code_verifier": flow.verifier,
            "redirect_uri": rp.redirect_uri,
        },
        headers=rp.basic(),
    )
    assert_error(resp, 400, "invalid_request")


# ------------------------------------------------------------------ oversized input (110)
def test_oversized_form_and_headers_are_refused_fast(client, rp, monkeypatch):
    """Checklist 110: a 1 MB form, 10 000 fields, a 1 MB Authorization header -> 4xx fast."""
    cases = [
        client.post("/token", data={"grant_type": "client_credentials", "x": "a" * (1024 * 1024)}),
        client.post("/token", data={f"f{i}": "1" for i in range(10_000)}),
        client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic " + "A" * (1024 * 1024)},
        ),
        client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion": "a" * 200_000,
                "client_assertion_type": kit.ASSERTION_TYPE,
            },
        ),
    ]
    for resp in cases:
        assert resp.status_code in (400, 401, 413), resp.status_code
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.get_json()["error"]
    # A 1 MB Authorization header is refused by its size, before it is decoded.
    decoded: list[int] = []
    real_parse = client_auth.parse_basic

    def spy(authorization: str) -> tuple[str, str]:
        decoded.append(len(authorization))
        return real_parse(authorization)

    monkeypatch.setattr(client_auth, "parse_basic", spy)
    resp = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + "A" * (1024 * 1024)},
    )
    assert resp.status_code in (400, 401) and resp.get_json()["error"]
    assert decoded == []


# ------------------------------------------------------------------ access tokens (issue item 4)
def test_opaque_access_token_by_default(client, citizen, rp):
    body = kit.code_tokens(client, rp, citizen)
    assert body["access_token"].count(".") == 0 and len(body["access_token"]) >= 43
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600


def test_jwt_access_token_rfc9068_verified_by_python_jose(client, app, citizen):
    """RFC 9068 §2: typ at+jwt, iss, exp, aud, sub, client_id, iat, jti (checklist 51)."""
    rp = kit.create_client(
        app,
        redirect_uris=["https://c5.gov.example/cb"],
        access_token_format="jwt",
        resources=["https://api.social.gov.example/"],
    )
    body = kit.code_tokens(client, rp, citizen, scope="openid profile")
    claims = kit.verify_jwt_access_token(client, body["access_token"], rp.client_id)
    assert claims["sub"] == citizen.id and claims["client_id"] == rp.client_id
    assert claims["scope"] == "openid profile" and claims["jti"] and claims["iat"] <= time.time()
    assert claims["exp"] - claims["iat"] == 600 and "auth_time" in claims
    assert jose_jwt.get_unverified_header(body["access_token"])["alg"] == "ES256"
    # ID tokens are not typed at+jwt (checklist 51).
    assert jose_jwt.get_unverified_header(body["id_token"]).get("typ") != "at+jwt"
    assert kit.userinfo_status(client, body["access_token"]) == 200
    # RFC 8707 at the token endpoint: a registered resource narrows the audience.
    rt = body["refresh_token"]
    narrowed = kit.refresh(client, rp, rt, resource="https://api.social.gov.example/").get_json()
    kit.verify_jwt_access_token(client, narrowed["access_token"], "https://api.social.gov.example/")
    bad = kit.refresh(client, rp, rt, resource="https://evil.example/")
    assert_error(bad, 400, "invalid_target")


def test_jwt_access_token_dies_with_its_signing_key(client, app, citizen):
    """Issue item 4: a token signed with a key revoked since must fail (keys.find(kid) is None)."""
    rp = kit.create_client(
        app, redirect_uris=["https://c6.gov.example/cb"], access_token_format="jwt"
    )
    body = kit.code_tokens(client, rp, citizen)
    kid = jose_jwt.get_unverified_header(body["access_token"])["kid"]
    assert kit.userinfo_status(client, body["access_token"]) == 200
    app.extensions["yitong"].keys.revoke(kid, reason="test")
    assert kit.userinfo_status(client, body["access_token"]) == 401
    assert kit.introspect(client, rp, body["access_token"]).get_json() == {"active": False}
    # A new token is signed with the promoted key and works.
    again = kit.refresh(client, rp, body["refresh_token"]).get_json()
    assert jose_jwt.get_unverified_header(again["access_token"])["kid"] != kid
    assert kit.userinfo_status(client, again["access_token"]) == 200


# ------------------------------------------------------------------ userinfo (51, 52)
def test_userinfo_get_and_post_header_and_body(client, citizen, rp):
    """Checklist 52: GET with header, POST with header or form body all succeed."""
    at = kit.code_tokens(client, rp, citizen)["access_token"]
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {at}"}).status_code == 200
    assert client.post("/userinfo", headers={"Authorization": f"Bearer {at}"}).status_code == 200
    assert client.post("/userinfo", data={"access_token": at}).status_code == 200
    both = client.post(
        "/userinfo", data={"access_token": at}, headers={"Authorization": f"Bearer {at}"}
    )
    assert both.status_code == 400


def test_userinfo_refuses_query_string_tokens(client, citizen, rp):
    """Checklist 52: ?access_token= -> rejected, even alongside a header."""
    at = kit.code_tokens(client, rp, citizen)["access_token"]
    assert client.get(f"/userinfo?access_token={at}").status_code == 400
    assert (
        client.get(
            f"/userinfo?access_token={at}", headers={"Authorization": f"Bearer {at}"}
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    "kind", ["id_token", "refresh_token", "expired", "revoked", "garbage", "huge"]
)
def test_userinfo_refuses_everything_but_a_live_access_token(client, app, citizen, rp, kind):
    """Checklist 51, 52: an ID token (or RT, expired/revoked AT) as Bearer -> 401 invalid_token."""
    body = kit.code_tokens(client, rp, citizen)
    token = {
        "id_token": body["id_token"],
        "refresh_token": body["refresh_token"],
        "garbage": "a.b.c",
        "huge": "x" * 100_000,
    }.get(kind, body["access_token"])
    if kind == "expired":
        kit.set_columns(app, Token, kit.token_row(app, token).id, expires_at=kit.utc(-1))
    if kind == "revoked":
        assert kit.revoke(client, rp, token).status_code == 200
    resp = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_userinfo_without_token_is_401_with_challenge(client):
    resp = client.get("/userinfo")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_id_token_verifies_with_python_jose(client, citizen, rp):
    """Checklist 46 (token-endpoint side): signature by JWKS kid, iss, aud, exp/iat, at_hash."""
    flow, code = fresh_code(client, rp, citizen)
    body = flow.token(code).get_json()
    jwks = client.get("/jwks").get_json()
    header = jose_jwt.get_unverified_header(body["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jose_jwt.decode(
        body["id_token"],
        key,
        algorithms=["RS256"],
        audience=rp.client_id,
        issuer=ISSUER,
        access_token=body["access_token"],
    )
    assert claims["nonce"] == flow.nonce and claims["exp"] > time.time() >= claims["iat"] - 1
    assert len(claims["sub"]) <= 255


# ------------------------------------------------------------------ rate limit (112)
def test_token_endpoint_rate_limit_answers_429_with_retry_after(make_app):
    """Checklist 112: past the per-address limit -> 429 JSON with Retry-After, no-store."""
    app = make_app(rate_limit_token_per_minute=3)
    http = app.test_client()
    api = kit.api_client(app)
    for _ in range(3):
        assert kit.post(http, "/token", api, kit.CC_FORM).status_code == 200
    resp = kit.post(http, "/token", api, kit.CC_FORM)
    assert_error(resp, 429, "slow_down")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    other = http.post(
        "/token", data=kit.CC_FORM, headers=api.basic(), environ_base={"REMOTE_ADDR": "10.9.8.7"}
    )
    assert other.status_code == 200  # the limit is per client address


def test_authorize_and_par_are_rate_limited_too(make_app):
    """Checklist 112: /authorize answers a 429 page (never a redirect), /par a 429 JSON."""
    app = make_app(rate_limit_authorize_per_minute=2, rate_limit_token_per_minute=2)
    http = app.test_client()
    for _ in range(2):
        assert http.get("/authorize?client_id=nobody").status_code == 400
    page = http.get("/authorize?client_id=nobody")
    assert page.status_code == 429 and "Location" not in page.headers
    assert 1 <= int(page.headers["Retry-After"]) <= 60
    api = kit.api_client(app)
    for _ in range(2):
        http.post("/par", data={"response_type": "code"}, headers=api.basic())
    resp = http.post("/par", data={"response_type": "code"}, headers=api.basic())
    assert_error(resp, 429, "slow_down")
