"""Request objects: authorization requests as signed JWTs (RFC 9101, OIDC Core §6).

https://www.rfc-editor.org/rfc/rfc9101

What we accept, and why:
- signed with a key the client registered (``jwks`` by value or ``jwks_uri``) using RS256,
  PS256, ES256 or EdDSA; ``alg: none``, HMAC and encrypted (JWE) request objects are refused
  (FAPI 2.0; checklist 22), as are ``crit`` and key-carrying headers (``jwk``, ``jku``,
  ``x5u``, ``x5c``: RFC 7515 §4.1.11 and ASVS 9.1.3, checklist 53);
- ``iss`` and ``client_id`` equal to the client, ``aud`` naming our issuer, ``exp`` in the
  future and a lifetime of at most an hour (RFC 9101 §4, §10.2; FAPI 2.0 §5.3.2.1);
- by value (``request``) or through our own PAR endpoint; a ``request_uri`` pointing
  anywhere else is never fetched (``request_uri_not_supported``, ASVS 1.3.6).

Only the request object's parameters count (RFC 9101 §5), returned as the multi-dict the
authorization checks read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from idp.oauth.authorize import RequestResolutionError
from idp.oauth.jose_inbound import InboundJwtError, verify_jws
from idp.oauth.outbound import OutboundError, OutboundPolicy, fetch_json
from idp.storage.models import Client
from idp.untrusted_json import is_finite_number

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
MAX_LENGTH = 32 * 1024
MAX_LIFETIME = 3600
CLOCK_SKEW = 60
JWT_CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "jti", "sub")
TYPES = (None, "JWT", "oauth-authz-req+jwt")


def _bad(message: str) -> RequestResolutionError:
    return RequestResolutionError(message, "invalid_request_object")


def client_keys(client: Client, policy: OutboundPolicy) -> KeySet:
    """The client's registered public keys (by value, else fetched from ``jwks_uri``)."""
    data: Any = client.jwks
    if data is None and client.jwks_uri:
        try:
            data = fetch_json(client.jwks_uri, policy)
        except OutboundError as exc:
            raise _bad(f"the client's keys cannot be fetched: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise _bad("the client has no registered keys to verify a request object")
    public = [
        {k: v for k, v in key.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
        for key in data["keys"]
        if isinstance(key, dict)
        and key.get("kty") in ("RSA", "EC", "OKP")
        and key.get("use", "sig") == "sig"
    ]
    try:
        return KeySet.import_key_set({"keys": public})
    except (JoseError, ValueError, TypeError):
        raise _bad("the client's registered keys cannot be used") from None


def verify_request_jws(token: str, keys: KeySet) -> dict[str, Any]:
    """Verify a client's compact JWS with the shared hardened verifier; return its claims."""
    if token.count(".") == 4:
        raise _bad("encrypted request objects are not supported")

    def resolve(header: Mapping[str, Any]) -> list[Key]:
        kid = header.get("kid")
        return [k for k in keys.keys if kid is None or k.kid == kid]

    try:
        verified = verify_jws(
            token, algorithms=ALGORITHMS, resolve_key=resolve, typ=TYPES, max_size=MAX_LENGTH
        )
    except InboundJwtError as exc:
        raise _bad(f"request object refused: {exc}") from None
    return verified.claims


def _as_multi(claims: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in claims.items():
        if name in JWT_CLAIMS or name.startswith("_yitong"):
            continue
        if name in ("request", "request_uri"):
            raise _bad("request objects cannot be nested")
        if isinstance(value, str):
            out[name] = [value]
        elif isinstance(value, bool):
            out[name] = ["true" if value else "false"]
        elif isinstance(value, int):
            out[name] = [str(value)]
        elif isinstance(value, (dict, list)) and name == "claims":
            out[name] = [json.dumps(value, separators=(",", ":"), ensure_ascii=False)]
        elif value is None:
            continue
        else:
            raise _bad(f"request object parameter {name} has an unexpected type")
    return out


def open_request_object(
    token: str,
    client: Client,
    *,
    issuer: str,
    audiences: tuple[str, ...] = (),
    policy: OutboundPolicy | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, list[str]]:
    """Verify ``token`` as ``client``'s request object and return its parameters."""
    claims = verify_request_jws(token, client_keys(client, policy or OutboundPolicy()))
    # RFC 9101 §4 / FAPI 2.0: iss is the client, aud is us, exp bounds the lifetime.
    if claims.get("iss") != client.client_id:
        raise _bad("request object iss must be the client_id")
    if "client_id" in claims and claims["client_id"] != client.client_id:
        raise _bad("request object client_id does not match")
    aud = claims.get("aud")
    audience = aud if isinstance(aud, list) else [aud]
    if not any(a in (issuer, *audiences) for a in audience):
        raise _bad("request object aud must be this provider's issuer")
    t = now()
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    for name, value in (("exp", exp), ("nbf", nbf), ("iat", iat)):
        # A NaN exp compares false with everything and would never expire: finite numbers only.
        if value is not None and not is_finite_number(value):
            raise _bad(f"request object {name} must be a finite number")
    if not isinstance(exp, (int, float)) or exp <= t:
        raise _bad("request object has expired or has no exp")
    if isinstance(nbf, (int, float)) and nbf > t + CLOCK_SKEW:
        raise _bad("request object is not valid yet")
    if isinstance(iat, (int, float)) and iat > t + CLOCK_SKEW:
        raise _bad("request object was issued in the future")
    start = nbf if isinstance(nbf, (int, float)) else iat if isinstance(iat, (int, float)) else t
    if exp - start > MAX_LIFETIME:
        raise _bad("request object lives longer than an hour")
    return _as_multi(claims)
