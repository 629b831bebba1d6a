"""Admin JSON of the wrong shape is ``invalid_request`` 400, never a 500 (issue 14 item 1;
checklist 111)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import admin_token, bearer

DEEP = "[" * 1000 + "]" * 1000

BAD_BODIES = [
    '{"force": [{}]}',
    '{"force": [[]]}',
    '{"force": "RS256"}',
    "[]",
    '["RS256"]',
    "5",
    '"text"',
    DEEP,
    '{"force": ' + DEEP + "}",
    '{"force": [NaN]}',
    '{"reason": {"a": 1}}',
    '{"reason": "a\\u0000b"}',
]

ENDPOINTS = [
    ("POST", "/admin/api/keys/rotate"),
    ("POST", "/admin/api/keys/no-such-kid/revoke"),
    ("POST", "/admin/api/keys"),
    ("PUT", "/admin/api/policies"),
    ("PUT", "/admin/api/directories/x"),
    ("POST", "/admin/api/clients"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_wrong_shapes_are_400(client, app, body):
    token, _ = admin_token(app, roles=["security-admin", "client-admin"])
    for method, path in ENDPOINTS:
        resp = client.open(
            path,
            method=method,
            data=body,
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert resp.status_code < 500, (method, path, body, resp.status_code)
        if resp.status_code >= 400:
            assert resp.get_json()["error"] != "server_error"


@pytest.mark.parametrize("body", ['{"force": [{}]}', "[]", '["RS256"]', DEEP, '{"force": [NaN]}'])
def test_rotate_refuses_wrong_shapes(client, app, body):
    # Before: {"force":[{}]} was a TypeError (unhashable) and a list body had no .get: 500s.
    token, _ = admin_token(app, roles=["security-admin"])
    resp = client.post(
        "/admin/api/keys/rotate",
        data=body,
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"


def test_policy_values_of_the_wrong_shape_are_400(client, app):
    token, _ = admin_token(app, roles=["security-admin"])
    for changes in (
        {"password.min_length": [{}]},
        {"password.min_length": {"a": 1}},
        {"password.min_length": "1e400"},
        {"password.min_length": "[" * 100 + "]" * 100},
        {"mfa.required_for": [{}]},
        {"mfa.required_for": [[]]},
    ):
        resp = client.put(
            "/admin/api/policies",
            data=json.dumps(changes),
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert resp.status_code == 400, (changes, resp.status_code, resp.get_data(as_text=True))
