"""Headers and caching (issue 3 item 10): SECURITY-CHECKLIST items 35, 101, 104, 107.

CORS only on the token, userinfo, JWKS, discovery (and revocation) endpoints, only for a
registered web origin, never ``*`` and never with credentials; none on /authorize or
/introspect.  Frame protection everywhere; ``nosniff`` and real JSON on JSON endpoints.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Flow
from tests.oauth import tokenkit as kit

SPA = "https://spa.gov.example"
EVIL = "https://evil.example"
CORS_PATHS = [
    ("POST", "/token"),
    ("GET", "/userinfo"),
    ("GET", "/jwks"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("POST", "/revoke"),
]


@pytest.fixture
def spa(app: Any) -> Any:
    return kit.create_client(
        app,
        name="Citizen SPA",
        public=True,
        redirect_uris=["https://spa.gov.example/cb"],
        web_origins=[SPA],
    )


def send(http: Any, method: str, path: str, origin: str | None, **kw: Any) -> Any:
    headers = {"Origin": origin} if origin else {}
    headers.update(kw.pop("headers", {}))
    return http.open(path, method=method, headers=headers, **kw)


def assert_no_cors(resp: Any) -> None:
    for name, value in resp.headers.items():
        assert not name.lower().startswith("access-control-"), (name, value)


@pytest.mark.parametrize(("method", "path"), CORS_PATHS)
def test_registered_origin_gets_cors(client, spa, method, path):
    """Checklist 107: answer CORS for an allow-listed SPA origin, exactly that origin."""
    resp = send(client, method, path, SPA)
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    assert "Origin" in resp.headers.get("Vary", "")
    assert "Access-Control-Allow-Credentials" not in resp.headers


@pytest.mark.parametrize(("method", "path"), CORS_PATHS)
def test_preflight_for_registered_origin(client, spa, method, path):
    resp = send(
        client,
        "OPTIONS",
        path,
        SPA,
        headers={
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    assert method in resp.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in resp.headers


@pytest.mark.parametrize(("method", "path"), CORS_PATHS)
@pytest.mark.parametrize(
    "origin", [EVIL, "null", SPA + ".evil.example", "https://SPA.gov.example", "*"]
)
def test_other_origins_get_no_cors(client, spa, method, path, origin):
    resp = send(client, method, path, origin)
    assert_no_cors(resp)
    pre = send(client, "OPTIONS", path, origin, headers={"Access-Control-Request-Method": method})
    assert_no_cors(pre)


@pytest.mark.parametrize("method", ["GET", "OPTIONS", "POST"])
def test_authorize_never_sends_cors(client, spa, method):
    """Checklist 107 / 21: /authorize sends no CORS headers, even to a registered origin."""
    resp = send(client, method, "/authorize?client_id=" + spa.client_id, SPA)
    assert_no_cors(resp)


def test_introspection_never_sends_cors(client, app, spa):
    api = kit.api_client(app)
    resp = kit.post(client, "/introspect", api, {"token": "x"}, headers={"Origin": SPA})
    assert resp.status_code == 200
    assert_no_cors(resp)


def test_never_wildcard_with_credentials(client, spa):
    for method, path in CORS_PATHS:
        for origin in (SPA, EVIL, None):
            resp = send(client, method, path, origin)
            allow = resp.headers.get("Access-Control-Allow-Origin")
            assert allow != "*"
            assert resp.headers.get("Access-Control-Allow-Credentials") != "true"


def test_spa_code_flow_token_request_cross_origin(client, app, citizen, spa):
    """A browser app redeems its code cross-origin and gets CORS on the token response."""
    flow = Flow(client, spa)
    code = flow.run(citizen)["code"]
    resp = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": spa.redirect_uri,
            "code_verifier": flow.verifier,
            "client_id": spa.client_id,
        },
        headers={"Origin": SPA},
    )
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    error = client.post("/token", data={"grant_type": "x"}, headers={"Origin": SPA})
    assert error.headers["Access-Control-Allow-Origin"] == SPA  # errors are readable too


# ------------------------------------------------------------------ caching (35) and nosniff (104)
@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_token_side_responses_are_no_store(client, app, path):
    api = kit.api_client(app)
    for resp in (
        client.post(path, data={}),
        kit.post(client, path, api, {"token": "x", **kit.CC_FORM}),
    ):
        assert resp.headers["Cache-Control"] == "no-store", (path, resp.status_code)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/token"),
        ("GET", "/userinfo"),
        ("GET", "/jwks"),
        ("POST", "/revoke"),
        ("POST", "/introspect"),
        ("GET", "/.well-known/openid-configuration"),
    ],
)
def test_json_endpoints_are_json_with_nosniff_and_no_jsonp(client, method, path):
    """Checklist 104: application/json, X-Content-Type-Options: nosniff, no JSONP."""
    resp = client.open(path + "?callback=evil", method=method)
    assert resp.mimetype == "application/json"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert not resp.get_data(as_text=True).lstrip().startswith("evil")


def test_jwks_and_discovery_may_be_cached_and_refetched(client):
    for path in ("/jwks", "/.well-known/openid-configuration"):
        cache = client.get(path).headers["Cache-Control"]
        assert "max-age=" in cache and "no-store" not in cache


# ------------------------------------------------------------------ frame protection (101)
@pytest.mark.parametrize(
    "path",
    [
        "/login",
        "/authorize?client_id=unknown",
        "/token",
        "/userinfo",
        "/jwks",
        "/logout",
        "/no-such-page",
    ],
)
def test_frame_protection_everywhere(client, path):
    """Checklist 101: X-Frame-Options DENY and CSP frame-ancestors 'none' on every response."""
    resp = client.get(path)
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
