"""DPoP: sender-constrained tokens by proof of possession (RFC 9449).

https://www.rfc-editor.org/rfc/rfc9449

A DPoP proof is a JWT the client signs for one HTTP request with a key it keeps; its public
half travels in the ``jwk`` header.  Tokens issued against a proof are bound to the key's
SHA-256 JWK thumbprint (RFC 7638), ``jkt``: the access token carries ``cnf.jkt`` (JWT access
tokens and introspection, §6), and a public client's refresh token is bound too (§5).  Using a
bound token needs a fresh proof by the same key.

:func:`verify_proof` checks a proof as §4.3 lists, through the one hardened JWS verifier
(:func:`idp.oauth.jose_inbound.verify_jws`):

1. exactly one ``DPoP`` header, a compact JWS, at most 8 KiB;
2. ``typ`` ``dpop+jwt``; ``alg`` asymmetric and in :data:`DPOP_ALGS` (never ``none``, never HMAC);
3. ``jwk`` a public key (no private members) that verifies the signature;
4. ``jti``, ``htm``, ``htu`` and ``iat`` present; ``htm`` the request's method; ``htu`` the
   request's URL without query and fragment (compared as scheme, host and path);
5. ``iat`` no older than ``dpop_proof_max_age`` and no more than 60 s ahead;
6. ``nonce`` one we issued in the last two periods when ``dpop_nonce_required`` (§8, §9):
   nonces are stateless HMACs of the time period, so every worker accepts every other's;
7. ``ath`` the base64url SHA-256 of the access token when one is presented (§4.3 step 10);
8. ``jti`` not seen before for this key: :func:`idp.storage.repo.consume_once` (§11.1).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key
from sqlalchemy.orm import Session

from idp.errors import InvalidDpopProofError, UseDpopNonceError
from idp.oauth.jose_inbound import InboundJwtError, check_times, verify_jws
from idp.storage import repo
from idp.storage.hot import RedisStore

#: Algorithms a proof may use (discovery: ``dpop_signing_alg_values_supported``).
DPOP_ALGS = ("ES256", "EdDSA", "PS256", "RS256")
PROOF_TYPE = "dpop+jwt"
MAX_PROOF_BYTES = 8192
MAX_FUTURE_SECONDS = 60
#: A nonce is valid in the period it was issued and the next one.
NONCE_PERIOD = 300
_JKT_LENGTH = 43  # base64url of 32 bytes, unpadded


@dataclass(frozen=True)
class Proof:
    """A verified proof: the thumbprint of its key, and its ``jti``."""

    jkt: str
    jti: str


def b64url_sha256(value: str) -> str:
    """``ath`` of an access token, or the form of a thumbprint (RFC 9449 §4.2, RFC 7638)."""
    raw = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def valid_jkt(value: str | None) -> bool:
    """A syntactically possible JWK SHA-256 thumbprint (``dpop_jkt``, RFC 9449 §10)."""
    if not value or len(value) != _JKT_LENGTH:
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in value)


# ------------------------------------------------------------------ server nonces (§8, §9)
def _nonce_mac(secret: str, period: int) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"dpop-nonce:{period}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode("ascii")


def current_nonce(secret: str, now: dt.datetime) -> str:
    """The nonce to hand out now (``DPoP-Nonce``); the same for every worker in a period."""
    period = int(now.timestamp()) // NONCE_PERIOD
    return f"{period:x}.{_nonce_mac(secret, period)}"


def nonce_is_fresh(secret: str, nonce: Any, now: dt.datetime) -> bool:
    """Issued by us in this period or the previous one."""
    if not isinstance(nonce, str) or len(nonce) > 64 or "." not in nonce:
        return False
    head, _, mac = nonce.partition(".")
    try:
        period = int(head, 16)
    except ValueError:
        return False
    current = int(now.timestamp()) // NONCE_PERIOD
    if period not in (current, current - 1):
        return False
    return hmac.compare_digest(mac, _nonce_mac(secret, period))


# ------------------------------------------------------------------ the proof (§4.3)
def _public_key(header: Mapping[str, Any]) -> list[Key]:
    """The key in the proof's ``jwk`` header (public only: checked by verify_jws)."""
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA", "OKP"):
        return []
    try:
        return [JWKRegistry.import_key(dict(jwk))]
    except (JoseError, ValueError, TypeError):
        return []


def thumbprint(key: Key) -> str:
    """RFC 7638 SHA-256 thumbprint of the proof key (``jkt``)."""
    return str(key.thumbprint())


def _same_url(htu: Any, expected: str) -> bool:
    """RFC 9449 §4.3 step 9: the URI without query and fragment, scheme and host caseless."""
    if not isinstance(htu, str) or len(htu) > 2048:
        return False
    try:
        got, want = urlsplit(htu), urlsplit(expected)
    except ValueError:
        return False
    return (
        got.scheme.lower() == want.scheme.lower()
        and got.netloc.lower() == want.netloc.lower()
        and (got.path or "/") == (want.path or "/")
    )


def verify_proof(
    headers: Sequence[str],
    *,
    method: str,
    url: str,
    session: Session,
    secret: str,
    now: dt.datetime,
    max_age: int,
    nonce_required: bool,
    access_token: str | None = None,
    hot: RedisStore | None = None,
) -> Proof:
    """Check the request's DPoP proof (module docstring, steps 1-8) and return its key's
    thumbprint; raise :class:`InvalidDpopProofError` or :class:`UseDpopNonceError`.

    The ``jti`` is recorded (and ``session`` committed) only once everything else holds, so
    a proof refused for a stale nonce can be retried with a new one.
    """
    if len(headers) != 1:
        raise InvalidDpopProofError("exactly one DPoP header is required")
    try:
        verified = verify_jws(
            headers[0],
            algorithms=DPOP_ALGS,
            resolve_key=_public_key,
            typ=(PROOF_TYPE,),
            max_size=MAX_PROOF_BYTES,
            embedded_jwk=True,
        )
        check_times(
            verified.claims,
            now=now,
            require_exp=False,
            require_iat=True,
            max_future=MAX_FUTURE_SECONDS,
            max_age=max_age,
        )
    except InboundJwtError as exc:
        raise InvalidDpopProofError(f"the DPoP proof is invalid: {exc}") from None
    claims = verified.claims
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise InvalidDpopProofError("the DPoP proof needs a jti")
    if claims.get("htm") != method:
        raise InvalidDpopProofError("htm does not match the request method")
    if not _same_url(claims.get("htu"), url):
        raise InvalidDpopProofError("htu does not match the request URL")
    if nonce_required and not nonce_is_fresh(secret, claims.get("nonce"), now):
        raise UseDpopNonceError("use the DPoP-Nonce the server provided")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, b64url_sha256(access_token)):
            raise InvalidDpopProofError("ath does not match the access token")
    jkt = thumbprint(verified.key)
    # check_times required iat to be a finite number; the record outlives the proof's window.
    expires = dt.datetime.fromtimestamp(int(claims["iat"]), dt.UTC) + dt.timedelta(
        seconds=max_age + MAX_FUTURE_SECONDS
    )
    # In Redis when configured (issue 12: a replay cache every node sees; Redis down fails
    # closed with temporarily_unavailable), else a seen_jtis row.
    if not repo.consume_once_shared(session, hot, "dpop", f"{jkt}\x00{jti}", max(expires, now)):
        raise InvalidDpopProofError("the DPoP proof was already used")
    return Proof(jkt=jkt, jti=jti)


def challenge(error: Exception | None, algs: Sequence[str] = DPOP_ALGS) -> str:
    """The ``WWW-Authenticate: DPoP`` challenge of a protected resource (RFC 9449 §7.1)."""
    parts = [f'algs="{" ".join(algs)}"']
    code = getattr(error, "error", None)
    if code:
        parts.insert(0, f'error="{code}"')
    return "DPoP " + ", ".join(parts)
