"""Error descriptions that quote the request stay RFC 6749-safe: a 4xx, never a 500.

Issue 14 item 1 (checklist 111): Authlib refuses ``error_description`` text outside
``%x20-21 / %x23-5B / %x5D-7E`` with a ValueError, so a Chinese scope name, a backslash in
``prompt`` or a Chinese ``display`` turned a bad request into a 500 at ``/authorize`` and
``/par``.  The classes in ``idp.errors`` write such characters as ``U+XXXX``.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from idp.errors import InvalidRequestError, InvalidScopeError, ascii_safe
from tests.helpers import pkce_pair, query_of

ALLOWED = {chr(c) for c in range(0x20, 0x7F)} - {'"', "\\"}

BAD_PARAMS = [
    {"scope": "openid 社保"},
    {"scope": 'openid a"b'},
    {"prompt": "a\\b"},
    {"prompt": "登录"},
    {"display": "页面"},
    {"claims": json.dumps({"id_token": {"名字": 5}}, ensure_ascii=False)},
    {"claims": json.dumps({"userinfo": {"a\\b": {"essential": "是"}}}, ensure_ascii=False)},
]


def _params(rp, **overrides):
    _, challenge = pkce_pair()
    params = {
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "response_type": "code",
        "scope": "openid",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


def test_ascii_safe_writes_code_points():
    assert ascii_safe('社 "a\\b"\n') == "U+793E U+0022aU+005CbU+0022U+000A"
    assert set(ascii_safe("".join(map(chr, range(0x3000))))) <= ALLOWED
    assert len(ascii_safe("社" * 10_000)) <= 500


@pytest.mark.parametrize("cls", [InvalidRequestError, InvalidScopeError])
def test_error_classes_accept_any_description(cls):
    error = cls('bad value: 社保 \\ "x"')
    assert set(error.description) <= ALLOWED
    assert "U+793E" in error.description


@pytest.mark.parametrize("overrides", BAD_PARAMS)
def test_authorize_redirects_an_error_not_a_500(client, rp, overrides):
    # checklist 111 (and 12: the error goes back with state and iss).
    resp = client.get("/authorize?" + urlencode(_params(rp, **overrides)))
    assert resp.status_code == 302, resp.status_code
    answer = query_of(resp.headers["Location"])
    assert answer["error"] in ("invalid_request", "invalid_scope")
    assert set(answer.get("error_description", "")) <= ALLOWED
    assert answer["state"] == "s1"


@pytest.mark.parametrize("overrides", BAD_PARAMS)
def test_par_answers_400_not_500(client, rp, overrides):
    # checklist 111, 23.
    resp = client.post("/par", data=_params(rp, **overrides), headers=rp.basic())
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] in ("invalid_request", "invalid_scope")
    assert set(body.get("error_description", "")) <= ALLOWED
