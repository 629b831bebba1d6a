"""Software keys: generation, thumbprint ``kid`` (RFC 7638) and signing with joserfc.

Key objects are built once per kid and reused: importing a PEM per call costs ~36 ms
(ARCHITECTURE.md, performance habits).
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from keys.store import SUPPORTED_ALGS, KeyStoreError

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


def generate_key(alg: str, *, rsa_bits: int = 3072) -> Key:
    """Generate a private key for ``alg`` with its RFC 7638 thumbprint as ``kid``."""
    if alg in ("RS256", "PS256"):
        if rsa_bits < 2048:
            raise KeyStoreError("RSA keys must have at least 2048 bits")
        key: Key = RSAKey.generate_key(rsa_bits, private=True, auto_kid=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
    else:
        raise KeyStoreError(f"unsupported algorithm {alg!r}; choose one of {', '.join(SUPPORTED_ALGS)}")
    return key


def public_jwk(key: Key, alg: str) -> dict[str, Any]:
    """The published form: public members only, with ``kid``, ``use`` and ``alg`` set."""
    data = key.as_dict(private=False)
    data = {k: v for k, v in data.items() if k not in PRIVATE_MEMBERS}
    data.update({"kid": key.kid, "use": "sig", "alg": alg})
    return data


class SoftwareSigningKey:
    """A private key held in process memory, signing with joserfc."""

    def __init__(self, key: Key, alg: str) -> None:
        if key.kid is None:
            raise KeyStoreError("a signing key needs a kid")
        self.key = key
        self.kid: str = key.kid
        self.alg = alg

    def sign_jwt(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        hdr = {"alg": self.alg, "kid": self.kid}
        if header:
            hdr.update(header)
        return jwt.encode(hdr, claims, self.key, algorithms=[self.alg])
