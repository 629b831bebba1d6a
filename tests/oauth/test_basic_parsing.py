"""Malformed HTTP Basic credentials are ``invalid_client`` 401, never a 500.

Issue 14 item 1 (checklist 32, 111): ``Basic `` alone or credentials that are not UTF-8 made
Authlib's parser fail with a 500 at /token, /introspect, /revoke and /par.  One parser,
``idp.oauth.client_auth.parse_basic``, serves every endpoint.
"""

from __future__ import annotations

import base64

import pytest

from idp.errors import InvalidClientError
from idp.oauth.client_auth import parse_basic

MALFORMED = [
    "Basic ",
    "Basic",
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic !!!!",
    "Basic YQ",
    "Basic " + base64.b64encode(b":secret").decode(),
    "Basic " + base64.b64encode(b"id:").decode(),
    "Basic " + base64.b64encode(b"id%00:secret").decode(),
    "Basic a b",
    "Bearer abc",
]


@pytest.mark.parametrize("header", MALFORMED)
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke", "/par"])
def test_malformed_basic_is_invalid_client(client, rp, header, path):
    resp = client.post(
        path,
        data={"grant_type": "client_credentials", "token": "x", "response_type": "code"},
        headers={"Authorization": header},
    )
    assert resp.status_code == 401, (path, header, resp.status_code)
    assert resp.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("header", MALFORMED)
def test_parse_basic_raises_invalid_client(header):
    with pytest.raises(InvalidClientError):
        parse_basic(header)


def test_parse_basic_decodes_form_encoding():
    token = base64.b64encode(b"my%20client:s%3Acret+x").decode()
    assert parse_basic(f"basic {token}") == ("my client", "s:cret x")
