"""Hardening of every inbound JWT: SECURITY-CHECKLIST item 53 (and 33, 48).

:func:`idp.oauth.jose_inbound.verify_jws` is tested directly (it serves client assertions,
request objects, ``id_token_hint`` and logout tokens alike) and through the token endpoint.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import tracemalloc
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwe
from joserfc.jwk import ECKey, OctKey, RSAKey

from idp.oauth import client_auth
from idp.oauth.jose_inbound import (
    InboundJwtError,
    audience_matches,
    check_times,
    verify_jws,
)
from tests.oauth import tokenkit as kit

NOW = int(time.time())
CLAIMS = {"iss": "c1", "sub": "c1", "aud": "https://idp.example", "exp": NOW + 60, "iat": NOW}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def ec() -> ECKey:
    return kit.ec_key()


@pytest.fixture(scope="module")
def rsa() -> RSAKey:
    return kit.rsa_key()


def verify(token: str | bytes, key: Any, algs: tuple[str, ...] = ("ES256",), **kw: Any) -> Any:
    return verify_jws(token, algorithms=algs, resolve_key=lambda _h: [key], **kw)


def refused(token: str | bytes, key: Any, algs: tuple[str, ...] = ("ES256",), **kw: Any) -> str:
    with pytest.raises(InboundJwtError) as info:
        verify(token, key, algs, **kw)
    return str(info.value)


def test_a_good_token_verifies(ec):
    token = kit.sign_raw({"alg": "ES256", "kid": ec.kid}, CLAIMS, ec)
    result = verify(token, ec)
    assert result.claims == CLAIMS and result.header["kid"] == ec.kid and result.key is ec


# ------------------------------------------------------------------ crit (Authlib CVE-2025-59420)
def test_unknown_crit_is_refused(ec):
    token = kit.sign_raw({"alg": "ES256", "crit": ["foo"], "foo": 1}, CLAIMS, ec)
    assert "critical" in refused(token, ec)


def test_crit_understood_by_the_caller_is_accepted(ec):
    token = kit.sign_raw({"alg": "ES256", "crit": ["urn:x:ext"], "urn:x:ext": 1}, CLAIMS, ec)
    assert verify(token, ec, crit=("urn:x:ext",)).header["urn:x:ext"] == 1


@pytest.mark.parametrize("crit", [[], "foo", ["foo", "foo"], [1], ["absent"]])
def test_malformed_crit_is_refused(ec, crit):
    token = kit.sign_raw({"alg": "ES256", "crit": crit, "foo": 1}, CLAIMS, ec)
    refused(token, ec, crit=("foo", "absent"))


# ------------------------------------------------------------------ embedded keys (CVE-2026-27962)
@pytest.mark.parametrize("name", ["jwk", "jku", "x5u", "x5c"])
def test_key_bearing_headers_are_refused(ec, name):
    attacker = kit.ec_key()
    value: Any = attacker.as_dict(private=False) if name == "jwk" else "https://evil.example/k"
    if name == "x5c":
        value = ["MIIB"]
    token = kit.sign_raw({"alg": "ES256", name: value}, CLAIMS, attacker)
    # Even a resolver that (wrongly) trusts the attacker's key never gets asked.
    assert "key-bearing" in refused(token, attacker)


# ------------------------------------------------------------------ serializations
def test_json_serialization_without_signature_is_refused(ec):
    """Authlib CVE-2026-96760: JWS JSON serialization with no signature."""
    flattened = json.dumps(
        {"payload": b64(json.dumps(CLAIMS).encode()), "protected": b64(b'{"alg":"ES256"}')}
    )
    general = json.dumps({"payload": b64(json.dumps(CLAIMS).encode()), "signatures": []})
    for token in (flattened, general):
        assert "compact" in refused(token, ec)


def test_jwe_with_deflate_bomb_is_refused_fast(rsa):
    """python-jose CVE-2024-33664 / Authlib CVE-2025-62706: zip:DEF inflating beyond 250 KB."""
    bomb = json.dumps({"pad": "A" * 2_000_000}).encode()
    token = jwe.encrypt_compact(
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "zip": "DEF"},
        bomb,
        rsa,
        algorithms=["RSA-OAEP-256", "A256GCM", "DEF"],
    )
    assert len(token) < 8192  # it compresses very well: that is the point
    # Refused without inflating it: memory is the evidence (the bomb inflates to 2 MB).
    tracemalloc.start()
    refused(token, rsa, ("RS256",))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024 * 1024, peak


def test_rsa1_5_is_not_in_our_allowlist(rsa):
    header = {"alg": "RSA1_5", "enc": "A128CBC-HS256"}
    token = ".".join([b64(json.dumps(header).encode()), "a", "b", "c", "d"])
    refused(token, rsa, ("RS256",))
    assert "not allowed" in refused(kit.raw_jws({"alg": "RSA1_5"}, CLAIMS), rsa, ("RS256",))


# ------------------------------------------------------------------ algorithms (48, 33)
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused_even_if_listed(ec, alg):
    refused(kit.raw_jws({"alg": alg}, CLAIMS, b""), ec, ("ES256", "none", alg))
    with_sig = kit.raw_jws({"alg": alg}, CLAIMS, b"x")
    assert "not allowed" in refused(with_sig, ec, ("ES256", "none", alg))


def test_alg_outside_the_allowlist_is_refused(rsa):
    token = kit.sign_raw({"alg": "PS256"}, CLAIMS, rsa)
    assert "not allowed" in refused(token, rsa, ("RS256",))


@pytest.mark.parametrize("form", ["pem", "openssh", "der", "jwk-json"])
def test_hmac_keyed_with_our_public_key_is_refused(rsa, form):
    """Authlib CVE-2024-37568, python-jose CVE-2024-33663 (+ #414 DER): algorithm confusion.

    Even a caller that (wrongly) allows HS256 next to RS256 cannot be fooled: the resolver's
    key is an RSA key, and an RSA key is never used as an HMAC secret.
    """
    public = rsa.raw_value.public_key()
    secret = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(rsa.as_dict(private=False)).encode(),
    }[form]
    token = kit.hs256_raw({"alg": "HS256"}, CLAIMS, secret)
    public_key = RSAKey.import_key(rsa.as_dict(private=False))
    assert "signature" in refused(token, public_key, ("HS256", "RS256"))


def test_hmac_verifies_only_with_an_oct_key():
    secret = OctKey.import_key(b"s" * 32)
    token = kit.sign_raw({"alg": "HS256"}, CLAIMS, secret)
    assert verify(token, secret, ("HS256",)).claims == CLAIMS


def test_ec_key_of_the_wrong_curve_is_not_tried():
    p384 = ECKey.generate_key("P-384", private=True)
    token = kit.sign_raw({"alg": "ES384"}, CLAIMS, p384)
    refused(token, p384, ("ES256",))


# ------------------------------------------------------------------ size (CVE-2025-61920)
@pytest.mark.parametrize("part", ["header", "payload", "signature"])
def test_one_megabyte_segments_are_refused_fast_without_memory(ec, part):
    big = "A" * (1024 * 1024)
    good = kit.sign_raw({"alg": "ES256"}, CLAIMS, ec).split(".")
    index = {"header": 0, "payload": 1, "signature": 2}[part]
    good[index] = big
    token = ".".join(good)
    tracemalloc.start()
    assert "too large" in refused(token, ec)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 3 * 1024 * 1024  # the input itself, encoded once


def test_oversized_assertion_at_the_token_endpoint_is_refused_unread(client, app, monkeypatch):
    api = kit.api_client(app, auth_method="private_key_jwt", jwks=kit.public_jwks(kit.ec_key()))
    token = b64(b'{"alg":"ES256","x":"' + b"A" * 150_000 + b'"}') + ".e30.AA"
    peeked: list[int] = []
    real_peek = client_auth._peek_subject

    def spy(assertion: str) -> str | None:
        peeked.append(len(assertion))
        return real_peek(assertion)

    monkeypatch.setattr(client_auth, "_peek_subject", spy)
    resp = client.post(
        "/token",
        data=kit.assertion_form(token, grant_type="client_credentials", client_id=api.client_id),
    )
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    assert peeked == []  # refused by its size, before any decoding


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "....",
        "é.é.é",
        "!!!.e30.AA",
        "e30.e30.AA",
        b64(b"[1]") + ".e30.AA",
        b64(b'{"alg":"ES256"}') + "." + b64(b"[1]") + ".AA",
        b64(b'{"alg":"ES256","alg":"none"}') + ".e30.AA",
        b64(b'{"alg":"ES256","kid":{"a":1}}') + ".e30.AA",
        b64(b'{"alg":"ES256","b64":false}') + ".e30.AA",
        b64(b'{"alg":"ES256","enc":"A128GCM"}') + ".e30.AA",
        b64(b"\xff\xfe") + ".e30.AA",
        b64(b"[" * 100_0) + ".e30.AA",
    ],
)
def test_malformed_tokens_are_refused_not_crashing(ec, token):
    refused(token, ec)


def test_duplicate_claims_are_refused(ec):
    header = b64(b'{"alg":"ES256"}')
    payload = b64(b'{"sub":"a","sub":"b"}')
    message = f"{header}.{payload}"
    from joserfc.jws import JWSRegistry

    sig = JWSRegistry.algorithms["ES256"].sign(message.encode(), ec)
    assert "duplicate" in refused(f"{message}.{b64(sig)}", ec)


# ------------------------------------------------------------------ typ (RFC 8725 §3.11)
def test_typ_is_checked_when_asked(ec):
    logout = kit.sign_raw({"alg": "ES256", "typ": "application/logout+jwt"}, CLAIMS, ec)
    assert verify(logout, ec, typ=("logout+jwt",))
    plain = kit.sign_raw({"alg": "ES256", "typ": "JWT"}, CLAIMS, ec)
    refused(plain, ec, typ=("logout+jwt",))
    untyped = kit.sign_raw({"alg": "ES256"}, CLAIMS, ec)
    refused(untyped, ec, typ=("logout+jwt",))
    assert verify(untyped, ec, typ=(None, "JWT"))
    at = kit.sign_raw({"alg": "ES256", "typ": "at+jwt"}, CLAIMS, ec)
    refused(at, ec, typ=(None, "JWT"))  # an access token is not an ID token (checklist 51)


def test_resolver_is_asked_only_after_header_checks(ec):
    asked: list[Any] = []

    def resolver(header: Any) -> list[Any]:
        asked.append(header)
        return [ec]

    token = kit.sign_raw({"alg": "ES256", "jku": "https://evil.example"}, CLAIMS, ec)
    with pytest.raises(InboundJwtError):
        verify_jws(token, algorithms=["ES256"], resolve_key=resolver)
    assert asked == []


# ------------------------------------------------------------------ time claims
def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(NOW + seconds, dt.UTC)


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"exp": NOW + 60}, True),
        ({}, False),
        ({"exp": NOW - 300}, False),
        ({"exp": NOW + 60, "iat": NOW + 8, "nbf": NOW + 8}, True),
        ({"exp": NOW + 120, "iat": NOW + 61}, False),
        ({"exp": NOW + 120, "nbf": NOW + 61}, False),
        ({"exp": True}, False),
        ({"exp": "soon"}, False),
        ({"exp": NOW + 7200}, False),
    ],
)
def test_check_times(claims, ok):
    if ok:
        check_times(claims, now=at(0), max_lifetime=3600)
    else:
        with pytest.raises(InboundJwtError):
            check_times(claims, now=at(0), max_lifetime=3600)


def test_check_times_max_age():
    with pytest.raises(InboundJwtError):
        check_times({"exp": NOW + 60, "iat": NOW - 4000}, now=at(0), max_age=3600)


def test_audience_matches():
    assert audience_matches("a", {"a"}) and audience_matches(["x", "a"], {"a"})
    assert not audience_matches(["x"], {"a"}) and not audience_matches([], {"a"})
    assert not audience_matches(None, {"a"}) and not audience_matches([1], {"a"})
