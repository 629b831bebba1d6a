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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from joserfc.jwk import Key


class KeyState(enum.StrEnum):
    """Lifecycle: NEXT (published, not signing) -> ACTIVE -> RETIRED (published for verification
    until what it signed has expired) -> REMOVED; REVOKED is the emergency exit.

    REMOVED and REVOKED rows are kept (public part only, private material destroyed) so that
    "which key signed this old token?" can still be answered from the audit trail and the table.
    """

    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"
    REMOVED = "removed"


#: States whose public key is in the JWKS and verifies tokens.
PUBLISHED_STATES = (KeyState.ACTIVE, KeyState.NEXT, KeyState.RETIRED)

SUPPORTED_ALGS = ("RS256", "PS256", "ES256", "EdDSA")

#: The ID-token algorithm of a client that registered none (OpenID Connect Dynamic Client
#: Registration 1.0 §2, ``id_token_signed_response_alg``).
DEFAULT_ID_TOKEN_ALG = "RS256"


@dataclass(frozen=True)
class KeyInfo:
    """A key's metadata, for listings and the lifecycle planner; never any private material."""

    kid: str
    alg: str
    state: KeyState
    backend: str
    created_at: dt.datetime
    activated_at: dt.datetime | None = None
    retired_at: dt.datetime | None = None
    remove_after: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    kek_id: str | None = None
    hsm_label: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 times) for ``yitong keys list --json`` and the admin API."""

        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "kid": self.kid,
            "alg": self.alg,
            "state": str(self.state),
            "backend": self.backend,
            "created_at": iso(self.created_at),
            "activated_at": iso(self.activated_at),
            "retired_at": iso(self.retired_at),
            "remove_after": iso(self.remove_after),
            "revoked_at": iso(self.revoked_at),
            "kek_id": self.kek_id,
            "hsm_label": self.hsm_label,
        }


_STATE_ORDER = {KeyState.ACTIVE: 0, KeyState.NEXT: 1, KeyState.RETIRED: 2}


def publication_order(keys: Iterable[KeyInfo], algorithms: Sequence[str]) -> list[KeyInfo]:
    """The published keys in the order the JWKS lists them: grouped by algorithm, the default
    ID-token algorithm's group first, then the configured ``algorithms`` in their order; within
    a group active, next, retired, newest first.

    Why the groups: python-jose, given a whole JWKS, builds every key in turn with the token's
    ``alg`` and gives up at the first key of another type (``JWKError: Incorrect key type``)
    instead of skipping it (issue 9 defect 4).  With every RS256 key, retired ones included,
    ahead of the EC and OKP keys, the ID tokens of a default deployment verify that way; other
    algorithms need selection by ``kid`` (docs/integrating.md).  Libraries that select by
    ``kid`` (PyJWT, Authlib, joserfc) do not care about the order.
    """
    groups = [DEFAULT_ID_TOKEN_ALG, *algorithms, *SUPPORTED_ALGS]
    published = [k for k in keys if k.state in _STATE_ORDER]
    return sorted(
        published,
        key=lambda k: (
            groups.index(k.alg) if k.alg in groups else len(groups),
            k.alg,
            _STATE_ORDER[k.state],
            -k.created_at.timestamp(),
        ),
    )


class KeyStoreError(Exception):
    """The key store cannot serve the request (no key for an algorithm, a bad KEK, …)."""


class KeyNotFoundError(KeyStoreError):
    """No such key (or not in a state the operation applies to), e.g. revoking it twice."""


@runtime_checkable
class SigningKey(Protocol):
    """A key that signs inside its holder (process memory or a hardware module)."""

    kid: str
    alg: str

    def sign_jwt(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """Return a compact JWS of ``claims`` with ``alg`` and ``kid`` set in the header."""
        ...


@runtime_checkable
class KeyStore(Protocol):
    """What the protocol layer needs: sign, publish, verify, rotate and revoke."""

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

    def jwks_max_age(self) -> int:
        """Seconds a relying party may cache the JWKS (``Cache-Control: max-age``).

        Never longer than the pre-publication lead of a next key, so a relying party that
        honours it has every signing key before that key signs (checklist 49, 96).
        """
        ...


@runtime_checkable
class ManagedKeyStore(KeyStore, Protocol):
    """What operations (CLI, admin API, start-up) need on top of :class:`KeyStore`."""

    def list_keys(self, *, include_removed: bool = False) -> list[KeyInfo]:
        """Metadata of every key, newest first; removed keys only when asked."""
        ...

    def generate(self, alg: str, state: KeyState = KeyState.NEXT, *, actor: str = ...) -> str:
        """Create a key for ``alg`` in ``state`` (NEXT: published, signing after rotation)."""
        ...

    def rotate(
        self,
        now: dt.datetime | None = None,
        *,
        actor: str = ...,
        force: Sequence[str] = (),
    ) -> list[str]:
        """:meth:`KeyStore.rotate`, recording ``actor``; ``force`` rotates those algorithms
        now, though never before their next key has been published for a JWKS cache lifetime."""
        ...

    def revoke(self, kid: str, *, actor: str = ..., reason: str = "") -> None:
        """:meth:`KeyStore.revoke`, recording who and why."""
        ...

    def maybe_rotate(self, now: dt.datetime | None = None) -> list[str]:
        """:meth:`KeyStore.rotate` when something is due; cheap enough for every request."""
        ...

    def next_change(self) -> dt.datetime:
        """When :meth:`maybe_rotate` will next have something to do."""
        ...

    def next_key_ready(self, alg: str) -> dt.datetime | None:
        """When ``alg``'s next key ends its pre-publication: the earliest a forced rotation
        can make it sign (:func:`keys.rotation.next_key_ready`); None without a next key."""
        ...

    def ensure_keys(self, *, actor: str = ...) -> list[str]:
        """Give every configured algorithm an active and a next key (start-up)."""
        ...

    def check(self) -> None:
        """Refuse to start (raise :class:`KeyStoreError`) when stored keys cannot be used."""
        ...
