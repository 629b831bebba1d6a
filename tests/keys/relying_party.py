"""An independent relying party: verifies our tokens against the JWKS as published.

It shares no code with ``keys/``: RS256 and ES256 go through python-jose, as a third-party
relying party would; python-jose has no PS256 or EdDSA, so those are checked with
``cryptography`` directly (RFC 7518 §3.5: MGF1-SHA-256, salt as long as the hash; RFC 8037
§3.1: Ed25519 over the signing input).  Like a real relying party it picks the key by
``kid`` and fails when the kid is not in the set it holds.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from jose import jwt as jose_jwt


class Rejected(Exception):
    """The relying party would refuse this token."""


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int(text: str) -> int:
    return int.from_bytes(_b64d(text), "big")


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims of ``token`` if a relying party holding ``jwks`` accepts it."""
    head_b64, body_b64, sig_b64 = token.split(".")
    header = json.loads(_b64d(head_b64))
    matches = [k for k in jwks["keys"] if k.get("kid") == header.get("kid")]
    if len(matches) != 1:
        raise Rejected(f"kid {header.get('kid')} not in the JWKS")
    jwk = matches[0]
    alg = header["alg"]
    if jwk.get("alg") != alg:
        raise Rejected(f"key is for {jwk.get('alg')}, token says {alg}")
    if alg in ("RS256", "ES256"):
        try:
            claims: dict[str, Any] = jose_jwt.decode(
                token, jwk, algorithms=[alg], options={"verify_aud": False}
            )
        except Exception as exc:
            raise Rejected(f"python-jose: {exc}") from None
        return claims
    message = f"{head_b64}.{body_b64}".encode("ascii")
    signature = _b64d(sig_b64)
    try:
        if alg == "PS256":
            public = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
            public.verify(
                signature,
                message,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        elif alg == "EdDSA" and jwk.get("crv") == "Ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(_b64d(jwk["x"])).verify(signature, message)
        else:
            raise Rejected(f"unsupported alg {alg}")
    except InvalidSignature:
        raise Rejected("bad signature") from None
    claims = json.loads(_b64d(body_b64))
    if "exp" in claims and claims["exp"] < time.time():
        raise Rejected("expired")
    return claims
