"""The KeyStore protocol: what the protocol layer needs from signing keys, and nothing more.

Implementations: :class:`keys.sql.SqlKeyStore` (database, encrypted at rest),
``keys.pkcs11`` (hardware module) and :class:`keys.static.StaticKeyStore` (development and
tests).  The same contract suite (``tests/keys/test_contract.py``) runs against each.

Signing goes through the key object (``SigningKey.sign_jwt``) rather than handing out key
material, so a hardware-held key never leaves its module.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Protocol, runtime_checkable

from joserfc.jwk import Key


class KeyState(enum.StrEnum):
    """Lifecycle: NEXT (published, not signing) -> ACTIVE -> RETIRED (published for verification
    until what it signed has expired) -> removed; REVOKED is the emergency exit."""

    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


SUPPORTED_ALGS = ("RS256", "PS256", "ES256", "EdDSA")


class KeyStoreError(Exception):
    """The key store cannot serve the request (no key for an algorithm, a bad KEK, …)."""


@runtime_checkable
class SigningKey(Protocol):
    kid: str
    alg: str

    def sign_jwt(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """Return a compact JWS of ``claims`` with ``alg`` and ``kid`` set in the header."""
        ...


@runtime_checkable
class KeyStore(Protocol):
    def signing_key(self, alg: str) -> SigningKey:
        """The active key for ``alg``; raises :class:`KeyStoreError` when there is none."""
        ...

    def public_jwks(self) -> dict[str, Any]:
        """Public JWK set of every published key (next, active, retired), no private members."""
        ...

    def find(self, kid: str) -> Key | None:
        """The public key that verifies tokens signed with ``kid``; None if unknown or revoked."""
        ...

    def rotate(self, now: dt.datetime | None = None) -> list[str]:
        """Advance the lifecycle; return the kids that changed state."""
        ...

    def revoke(self, kid: str) -> None:
        """Emergency: stop publishing ``kid`` and stop accepting what it signed."""
        ...
