"""Hardened verification of every JWT we *receive* (RFC 7515 JWS, RFC 7519 JWT, RFC 8725 BCP).

One function, :func:`verify_jws`, checks a compact JWS before and while verifying it; every
inbound JWT goes through it (client assertions, request objects, ``id_token_hint``, logout
tokens, DPoP proofs).  Its callers then check the claims that matter to them, with
:func:`check_times` for the time claims.  What it refuses, and why (checklist 33, 48, 53):

- anything longer than ``max_size`` before a single byte is decoded (Authlib CVE-2025-61920:
  a 1 MB header must cost nothing);
- anything but the compact serialization: JWS JSON serialization (Authlib CVE-2026-96760)
  and JWE (5 segments: ``zip:DEF`` bombs, python-jose CVE-2024-33664; RSA1_5);
- ``alg`` outside the caller's allowlist, and ``none`` always (RFC 8725 §3.1, §3.2);
- ``crit`` unless every listed name is one the caller declared it understands and is present
  (RFC 7515 §4.1.11; Authlib CVE-2025-59420, PyJWT CVE-2026-32597);
- ``jwk``, ``jku``, ``x5u``, ``x5c`` headers: keys come from the caller's resolver, never from
  the token (Authlib CVE-2026-27962).  The one exception is a DPoP proof (RFC 9449 §4.2),
  whose ``jwk`` *is* the key being proven: with ``embedded_jwk=True`` a ``jwk`` header is
  required, must be a public key, and is handed to the resolver like any other header;
- a key whose type does not match ``alg``: HS256 keyed with an RSA/EC public key (in any form:
  PEM, OpenSSH, DER) can never be attempted, because HMAC needs an ``oct`` key and resolvers
  for asymmetric algorithms only return asymmetric keys (CVE-2024-37568, CVE-2024-33663);
- headers or payloads that are not a JSON object or repeat a member name (RFC 7515 §5.2 lets
  us refuse duplicates; a duplicate ``alg`` is a classic parser-differential trick);
- a ``typ`` other than the expected one (RFC 8725 §3.11, explicit typing).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key

from idp import untrusted_json
from keys.software import JwsRegistry

#: Every JWS algorithm we can verify. Callers pass a subset; ``none`` is never in it.
KNOWN_ALGS = ("RS256", "PS256", "ES256", "EdDSA", "HS256", "HS384", "HS512")
ASYMMETRIC_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
HMAC_ALGS = ("HS256", "HS384", "HS512")

#: Header parameters that would let the token choose its own verification key.
KEY_BEARING_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
#: JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})

DEFAULT_MAX_SIZE = 8192
_B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")
_REGISTRY = JwsRegistry(algorithms=list(KNOWN_ALGS))

#: ``resolve_key(header) -> candidate keys``: the caller's trusted keys for this token.
KeyResolver = Callable[[Mapping[str, Any]], Iterable[Key]]


class InboundJwtError(ValueError):
    """The token is refused. ``str(exc)`` is safe to log; never echo it to an attacker verbatim
    unless it is generic (callers answer with their own protocol error)."""


@dataclass(frozen=True)
class VerifiedJws:
    """A verified compact JWS: its protected header and JSON payload, and the key that verified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    key: Key


def _b64decode(segment: bytes) -> bytes:
    if not _B64URL.match(segment):
        raise InboundJwtError("segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InboundJwtError("segment is not base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise InboundJwtError(f"duplicate member {name!r}")
        out[name] = value
    return out


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = untrusted_json.loads(raw, object_pairs_hook=_no_duplicates)
    except InboundJwtError:
        raise
    except ValueError:
        raise InboundJwtError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise InboundJwtError(f"{what} is not a JSON object")
    return value


def _typ_matches(actual: Any, expected: Collection[str | None]) -> bool:
    if actual is None:
        return None in expected
    if not isinstance(actual, str):
        return False
    # RFC 7515 §4.1.9: "application/" may be omitted; media types compare case-insensitively.
    value = actual.lower()
    value = value.removeprefix("application/")
    return any(e is not None and e.lower().removeprefix("application/") == value for e in expected)


def verify_jws(
    token: str | bytes,
    *,
    algorithms: Collection[str],
    resolve_key: KeyResolver,
    typ: Collection[str | None] | None = None,
    crit: Collection[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    embedded_jwk: bool = False,
) -> VerifiedJws:
    """Verify a compact JWS and return its header and claims, or raise :class:`InboundJwtError`.

    ``algorithms``: the accepted ``alg`` values (``none`` is refused whatever is passed).
    ``resolve_key``: given the (untrusted, but already sanity-checked) header, the keys that may
    have signed this token; each candidate must match ``alg`` in type and curve.
    ``typ``: accepted ``typ`` values (``None`` in the collection: ``typ`` may be absent); when
    ``typ`` is None the header's ``typ`` is not checked.
    ``crit``: extension header names the caller understands and processes itself.
    ``max_size``: refuse longer input before decoding anything.
    ``embedded_jwk``: a DPoP proof; its ``jwk`` header (a public JWK object) is required.
    Claims are *not* checked here except that the payload is a JSON object: use
    :func:`check_times` and compare ``iss``/``aud``/``sub`` in the caller.
    """
    if isinstance(token, str):
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InboundJwtError("token is not ASCII") from None
    else:
        raw = token
    if not raw or len(raw) > max_size:
        raise InboundJwtError("token is empty or too large")
    if raw.count(b".") != 2:
        # JWE (4 dots), JWS JSON serialization ('{'), detached or nested forms: not accepted.
        raise InboundJwtError("not a compact JWS")
    head_b64, body_b64, sig_b64 = raw.split(b".")
    if not head_b64 or not sig_b64:
        raise InboundJwtError("missing header or signature")
    header = _json_object(_b64decode(head_b64), "header")

    alg = header.get("alg")
    allowed = {a for a in algorithms if a in KNOWN_ALGS}
    if not isinstance(alg, str) or alg.lower() == "none" or alg not in allowed:
        raise InboundJwtError(f"alg {alg!r} is not allowed")
    embedded = KEY_BEARING_HEADERS.intersection(header) - ({"jwk"} if embedded_jwk else set())
    if embedded:
        raise InboundJwtError(f"key-bearing header {sorted(embedded)} refused")
    if embedded_jwk:
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or PRIVATE_MEMBERS.intersection(jwk):
            raise InboundJwtError("jwk header must be a public JWK")
    if "crit" in header:
        names = header["crit"]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)
        ):
            raise InboundJwtError("crit must be a non-empty list of distinct names")
        for name in names:
            if name not in crit or name not in header:
                raise InboundJwtError(f"critical header {name!r} is not understood")
    if "b64" in header:
        raise InboundJwtError("unencoded payloads (RFC 7797) are refused")
    if "enc" in header or "zip" in header:
        raise InboundJwtError("JWE headers in a JWS are refused")
    if typ is not None and not _typ_matches(header.get("typ"), typ):
        raise InboundJwtError(f"typ {header.get('typ')!r} is not accepted here")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise InboundJwtError("kid must be a short string")

    signature = _b64decode(sig_b64)
    model = _REGISTRY.algorithms[alg]
    message = head_b64 + b"." + body_b64
    verified_by: Key | None = None
    for key in resolve_key(header):
        try:
            model.check_key(key)
        except (JoseError, ValueError, AttributeError):
            continue  # wrong type, curve, use or alg for this token: never tried
        try:
            if model.verify(message, signature, key):
                verified_by = key
                break
        except (JoseError, ValueError, TypeError):
            continue
    if verified_by is None:
        raise InboundJwtError("signature does not verify with any trusted key")
    claims = _json_object(_b64decode(body_b64), "payload")
    return VerifiedJws(header=header, claims=claims, key=verified_by)


def _numeric(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    # NaN and the infinities compare false with everything (an exp of NaN never expires)
    # and int() of them raises: refused like any other non-number.
    if not untrusted_json.is_finite_number(value):
        raise InboundJwtError(f"{name} must be a NumericDate")
    return int(value)


def check_times(
    claims: Mapping[str, Any],
    *,
    now: dt.datetime,
    require_exp: bool = True,
    require_iat: bool = False,
    exp_leeway: int = 10,
    max_future: int = 60,
    max_lifetime: int | None = None,
    max_age: int | None = None,
) -> None:
    """Check ``exp``, ``iat`` and ``nbf`` (RFC 7519 §4.1.4-4.1.6).

    ``max_future``: how far ahead of our clock ``iat``/``nbf`` may be (FAPI 2.0: up to 10 s
    must be accepted, beyond 60 s refused).  ``max_lifetime``: refuse ``exp`` further than
    this from now.  ``max_age``: refuse an ``iat`` older than this.
    """
    ts = int(now.timestamp())
    exp = _numeric(claims, "exp")
    iat = _numeric(claims, "iat")
    nbf = _numeric(claims, "nbf")
    if exp is None and require_exp:
        raise InboundJwtError("exp is required")
    if iat is None and require_iat:
        raise InboundJwtError("iat is required")
    if exp is not None:
        if exp + exp_leeway <= ts:
            raise InboundJwtError("token has expired")
        if max_lifetime is not None and exp - ts > max_lifetime:
            raise InboundJwtError("exp is too far in the future")
    for name, value in (("iat", iat), ("nbf", nbf)):
        if value is not None and value - ts > max_future:
            raise InboundJwtError(f"{name} is in the future")
    if max_age is not None and iat is not None and ts - iat > max_age:
        raise InboundJwtError("token is too old")


def audience_matches(aud: Any, accepted: Collection[str]) -> bool:
    """``aud`` (a string or a list of strings) names one of ``accepted`` (RFC 7519 §4.1.3)."""
    if isinstance(aud, str):
        return aud in accepted
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return any(a in accepted for a in aud)
    return False
