"""Bad input and odd requests never produce a 500 or a stack trace (checklist 104, 109-111)."""

from __future__ import annotations

import pytest


def test_oversized_query_is_refused_fast(client):
    # checklist 110: a 64 KB query on /authorize.
    resp = client.get("/authorize?state=" + "a" * 65536)
    assert resp.status_code == 414
    assert "Traceback" not in resp.get_data(as_text=True)


def test_oversized_form_is_refused(client):
    # checklist 110: a 1 MB form to /token.
    resp = client.post(
        "/token", data={"grant_type": "authorization_code", "code": "x" * (1024 * 1024)}
    )
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE"])
def test_unsupported_methods_are_405(client, method):
    # checklist 109: TRACE -> 405.
    resp = client.open("/token", method=method)
    assert resp.status_code == 405


def test_unknown_path_is_a_friendly_404(client):
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert "<html" in resp.get_data(as_text=True)
    assert client.get("/.well-known/nope").get_json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "query",
    [
        "client_id=%ff%fe",
        "client_id=%00",
        "client_id=abc%",
        "client_id=%2525",
        "client_id=a&client_id=b",
    ],
)
def test_malformed_authorize_input_is_a_400_page(client, query):
    # checklist 111: invalid UTF-8, %00, % at the end, double encoding, repeats.
    resp = client.get("/authorize?" + query)
    assert resp.status_code == 400
    assert "Location" not in resp.headers


def test_health_probes(client):
    assert client.get("/healthz").get_json() == {"status": "alive"}
    assert client.get("/readyz").status_code == 200


def test_json_endpoints_are_json_and_nosniff(client):
    # checklist 104.
    for path in ("/.well-known/openid-configuration", "/jwks"):
        resp = client.get(path)
        assert resp.mimetype == "application/json"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_host_header_does_not_change_the_issuer(client):
    # checklist 108: discovery uses the configured issuer, never the Host header.
    doc = client.get(
        "/.well-known/openid-configuration",
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    ).get_json()
    assert doc["issuer"] == "http://localhost"
    assert all("evil" not in str(v) for v in doc.values())
