"""Discovery and the JWKS served as cached bytes before Flask (idp/published.py): the same
document and headers as through Flask, and the JWKS follows the key set."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

PATHS = ("/jwks", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")
SAME = (
    "Content-Type",
    "Cache-Control",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Content-Security-Policy",
)


@pytest.fixture
def through_flask(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths that reached the Flask app behind the middleware."""
    published = app.extensions["yitong.published"]
    inner = published.app
    seen: list[str] = []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    monkeypatch.setattr(published, "app", counting)
    return seen


def test_plain_gets_skip_flask_and_match_what_flask_sends(
    client: FlaskClient, through_flask: list[str]
) -> None:
    for path in PATHS:
        fast = client.get(path)
        assert through_flask == [], path  # answered before Flask
        slow = client.get(path + "?x=1")  # a query string goes through Flask
        assert through_flask == [path]
        through_flask.clear()
        assert fast.status_code == slow.status_code == 200
        assert fast.data == slow.data and fast.is_json
        for name in SAME:
            assert fast.headers[name] == slow.headers[name], (path, name)
        assert "Origin" in fast.headers["Vary"] and "Origin" in slow.headers["Vary"]
        assert "Set-Cookie" not in fast.headers
        assert int(fast.headers["Content-Length"]) == len(fast.data)
        assert fast.headers["X-Request-Id"] and slow.headers["X-Request-Id"]
    traced = client.get("/jwks", headers={"X-Request-Id": "proxy-7.a_b"})
    assert traced.headers["X-Request-Id"] == "proxy-7.a_b"  # the proxy's id is kept


def test_other_requests_go_through_flask(client: FlaskClient, through_flask: list[str]) -> None:
    head = client.head("/jwks")
    assert head.status_code == 200
    post = client.post("/jwks")
    assert post.status_code == 405 and post.is_json  # the API error shape, from Flask
    cors = client.get("/jwks", headers={"Origin": "https://unknown.example"})
    assert cors.status_code == 200 and "Access-Control-Allow-Origin" not in cors.headers
    assert through_flask == ["/jwks"] * 3


def test_jwks_bytes_follow_the_key_set(app: Flask, client: FlaskClient) -> None:
    store = app.extensions["yitong"].keys
    before = client.get("/jwks").get_json()
    kid = next(k["kid"] for k in before["keys"] if k["alg"] == "ES256")
    store.revoke(kid, actor="test", reason="cached JWKS bytes must not outlive a key")
    after = client.get("/jwks").get_json()
    kids = {k["kid"] for k in after["keys"]}
    assert kid not in kids and kids  # a replacement is published at once
    assert client.get("/jwks").get_json() == after == client.get("/jwks?x=1").get_json()
