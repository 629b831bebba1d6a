"""Numbers in inbound JWTs must be finite (issue 14 items 1 and 6; checklist 33, 53, 22).

``NaN`` compares false with everything: a request object with ``"exp": NaN`` passed every
time check and never expired, and a client assertion with ``exp`` NaN or Infinity reached
``int()`` and became a 500.  The payload parser (``idp.untrusted_json``) refuses them, and
the time checks refuse any non-finite number they are handed.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from idp.oauth.jose_inbound import InboundJwtError, check_times
from tests.helpers import ISSUER, RegisteredClient, pkce_pair
from tests.oauth import tokenkit as kit

NON_FINITE = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_client_assertion_with_non_finite_time_is_invalid_client(client, app, claim, value):
    # checklist 33: exp NaN/Infinity was a 500 (int(NaN)); now the usual invalid_client.
    key = kit.ec_key()
    api = kit.api_client(app, auth_method="private_key_jwt", jwks=kit.public_jwks(key))
    token = kit.assertion(api.client_id, key, **{claim: value})
    resp = client.post(
        "/token", data={"grant_type": "client_credentials", **kit.assertion_form(token)}
    )
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("value", NON_FINITE)
def test_check_times_refuses_non_finite_numbers(value):
    # Whoever parsed the claims, the time check itself refuses NaN and the infinities.
    with pytest.raises(InboundJwtError):
        check_times({"exp": value}, now=kit.utc())


def _request_object(rp: RegisteredClient, key: Any, **claims: Any) -> str:
    _, challenge = pkce_pair()
    now = int(time.time())
    body = {
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "response_type": "code",
        "scope": "openid",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "iss": rp.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 300,
    }
    body.update(claims)
    return kit.sign_raw({"alg": "ES256", "kid": key.kid}, body, key)


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_request_object_with_non_finite_time_is_refused(client, app, claim, value):
    # Issue 14 item 6 (checklist 22): "exp": NaN was accepted and never expired.
    key = kit.ec_key()
    rp = RegisteredClient.create(app, name="Signed requests", jwks=kit.public_jwks(key))
    token = _request_object(rp, key, **{claim: value})
    payload = token.split(".")[1]
    assert b"NaN" in base64.urlsafe_b64decode(payload + "==") or b"Infinity" in (
        base64.urlsafe_b64decode(payload + "==")
    )
    resp = client.get("/authorize?" + urlencode({"client_id": rp.client_id, "request": token}))
    assert resp.status_code == 400
    assert "Location" not in resp.headers


def test_request_object_with_finite_exp_still_works(client, app):
    key = kit.ec_key()
    rp = RegisteredClient.create(app, name="Signed requests", jwks=kit.public_jwks(key))
    token = _request_object(rp, key)
    resp = client.get("/authorize?" + urlencode({"client_id": rp.client_id, "request": token}))
    assert resp.status_code in (302, 303)
    assert "/login" in resp.headers["Location"]


def test_json_dumps_really_emits_nan():
    # The tests above rely on the standard library writing NaN (it does, allow_nan=True).
    assert json.dumps({"exp": float("nan")}) == '{"exp": NaN}'
