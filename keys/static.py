"""StaticKeyStore: keys held in memory, given in code or in a private JWK set file.

For development and tests only: the private keys are plaintext, so a production app refuses
this store.  It follows the same lifecycle as the database stores (:mod:`keys.rotation`),
in memory and for this process alone, so the contract suite (``tests/keys``) runs against it
unchanged and a developer sees rotation behave as it will in production.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from joserfc.jwk import Key

from idp.storage.models import utcnow
from keys.rotation import RotationPolicy, Step, next_due, next_key_ready, plan
from keys.software import (
    KEY_CLASSES,
    AsymmetricKey,
    SoftwareSigningKey,
    check_alg,
    check_rsa_bits,
    generate_key,
    import_public_jwk,
    public_jwk,
)
from keys.store import (
    PUBLISHED_STATES,
    KeyInfo,
    KeyNotFoundError,
    KeyState,
    KeyStoreError,
    publication_order,
)


@dataclasses.dataclass
class _Entry:
    info: KeyInfo
    key: AsymmetricKey | None  # None once removed or revoked
    public: Key
    jwk: dict[str, Any]
    signer: SoftwareSigningKey | None = None


class StaticKeyStore:
    """In-memory keys with the full lifecycle; implements :class:`keys.store.ManagedKeyStore`."""

    backend = "static"

    def __init__(
        self,
        keys: Sequence[tuple[AsymmetricKey, str]] = (),
        *,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        rsa_bits: int = 3072,
        policy: RotationPolicy | None = None,
        production: bool = False,
    ) -> None:
        if production:
            raise KeyStoreError(
                "production refuses plaintext keys: the static key store is for development "
                "and tests; use the database store with a key-encryption key, or an HSM"
            )
        for alg in algorithms:
            check_alg(alg)
        check_rsa_bits(rsa_bits)
        self.algorithms = tuple(algorithms)
        self.rsa_bits = rsa_bits
        self.policy = policy or RotationPolicy()
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        now = utcnow()
        for key, alg in keys:
            has_active = any(
                e.info.alg == alg and e.info.state == KeyState.ACTIVE
                for e in self._entries.values()
            )
            self._add(key, alg, KeyState.NEXT if has_active else KeyState.ACTIVE, now)

    @classmethod
    def from_jwks_file(
        cls, path: str | Path, *, production: bool = False, **kwargs: Any
    ) -> StaticKeyStore:
        """Load private JWKs (each with ``alg``); the first per algorithm is active."""
        if production:
            raise KeyStoreError(f"production refuses plaintext keys ({path})")
        try:
            document = json.loads(Path(path).read_text("utf-8"))
            items = document["keys"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"{path}: not a JWK set: {exc}") from None
        keys: list[tuple[AsymmetricKey, str]] = []
        for item in items:
            alg = item.get("alg")
            if not isinstance(alg, str):
                raise KeyStoreError(f"{path}: every key needs an 'alg'")
            check_alg(alg)
            key = KEY_CLASSES[alg].import_key(item)
            if not key.is_private:
                raise KeyStoreError(f"{path}: key {key.kid or '?'} has no private part")
            keys.append((key, alg))
        return cls(keys, **kwargs)

    # -- internals --------------------------------------------------------------------------
    def _add(self, key: AsymmetricKey, alg: str, state: KeyState, now: dt.datetime) -> str:
        check_alg(alg)
        kid = key.kid or key.thumbprint()
        if key.kid is None:
            key = type(key).import_key(key.as_dict(private=True), parameters={"kid": kid})
        if kid in self._entries:
            raise KeyStoreError(f"duplicate kid {kid}")
        jwk = public_jwk(key, alg)
        self._entries[kid] = _Entry(
            info=KeyInfo(
                kid=kid,
                alg=alg,
                state=state,
                backend=self.backend,
                created_at=now,
                activated_at=now if state == KeyState.ACTIVE else None,
            ),
            key=key,
            public=import_public_jwk(jwk),
            jwk=jwk,
        )
        return kid

    def _set(self, kid: str, **changes: Any) -> None:
        entry = self._entries[kid]
        entry.info = dataclasses.replace(entry.info, **changes)
        if entry.info.state not in PUBLISHED_STATES:
            entry.key = None
            entry.signer = None

    def _apply(self, step: Step, now: dt.datetime) -> str:
        if step.kind == "generate_active":
            return self._add(
                generate_key(step.alg, rsa_bits=self.rsa_bits), step.alg, KeyState.ACTIVE, now
            )
        if step.kind == "generate_next":
            return self._add(
                generate_key(step.alg, rsa_bits=self.rsa_bits), step.alg, KeyState.NEXT, now
            )
        assert step.kid is not None
        if step.kind == "retire":
            self._set(
                step.kid,
                state=KeyState.RETIRED,
                retired_at=now,
                remove_after=now + self.policy.retention,
            )
        elif step.kind == "activate":
            self._set(step.kid, state=KeyState.ACTIVE, activated_at=now)
        else:
            self._set(step.kid, state=KeyState.REMOVED)
        return step.kid

    def _published(self) -> list[_Entry]:
        entries = {kid: e for kid, e in self._entries.items() if e.info.state in PUBLISHED_STATES}
        infos = publication_order((e.info for e in entries.values()), self.algorithms)
        return [entries[info.kid] for info in infos]

    # -- KeyStore ---------------------------------------------------------------------------
    def signing_key(self, alg: str) -> SoftwareSigningKey:
        with self._lock:
            for entry in self._entries.values():
                if entry.info.alg == alg and entry.info.state == KeyState.ACTIVE:
                    assert entry.key is not None
                    if entry.signer is None:
                        entry.signer = SoftwareSigningKey(entry.key, alg)
                    return entry.signer
        raise KeyStoreError(f"no active signing key for {alg}")

    def public_jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [dict(e.jwk) for e in self._published()]}

    def find(self, kid: str) -> Key | None:
        entry = self._entries.get(kid)
        if entry is None or entry.info.state not in PUBLISHED_STATES:
            return None
        return entry.public

    def rotate(
        self,
        now: dt.datetime | None = None,
        *,
        actor: str = "system",
        force: Sequence[str] = (),
    ) -> list[str]:
        now = now or utcnow()
        with self._lock:
            infos = [e.info for e in self._entries.values()]
            steps = plan(infos, self.algorithms, now, self.policy, force)
            return [self._apply(step, now) for step in steps]

    def revoke(self, kid: str, *, actor: str = "system", reason: str = "") -> None:
        now = utcnow()
        with self._lock:
            entry = self._entries.get(kid)
            if entry is None:
                raise KeyNotFoundError(f"no key {kid}")
            if entry.info.state not in PUBLISHED_STATES:
                raise KeyNotFoundError(f"key {kid} is already {entry.info.state}")
            self._set(kid, state=KeyState.REVOKED, revoked_at=now)
            self.rotate(now)

    def jwks_max_age(self) -> int:
        return self.policy.jwks_cache_seconds

    # -- ManagedKeyStore --------------------------------------------------------------------
    def list_keys(self, *, include_removed: bool = False) -> list[KeyInfo]:
        with self._lock:
            infos = [
                e.info
                for e in self._entries.values()
                if include_removed or e.info.state != KeyState.REMOVED
            ]
        return sorted(infos, key=lambda k: k.created_at, reverse=True)

    def generate(self, alg: str, state: KeyState = KeyState.NEXT, *, actor: str = "system") -> str:
        check_alg(alg)
        if state not in (KeyState.NEXT, KeyState.ACTIVE):
            raise KeyStoreError("a new key is either next or active")
        now = utcnow()
        with self._lock:
            if state == KeyState.ACTIVE:
                for entry in list(self._entries.values()):
                    if entry.info.alg == alg and entry.info.state == KeyState.ACTIVE:
                        self._apply(Step("retire", alg, entry.info.kid), now)
            return self._add(generate_key(alg, rsa_bits=self.rsa_bits), alg, state, now)

    def maybe_rotate(self, now: dt.datetime | None = None) -> list[str]:
        now = now or utcnow()
        infos = [e.info for e in self._entries.values()]
        if now < next_due(infos, self.algorithms, self.policy):
            return []
        return self.rotate(now)

    def next_change(self) -> dt.datetime:
        return next_due([e.info for e in self._entries.values()], self.algorithms, self.policy)

    def next_key_ready(self, alg: str) -> dt.datetime | None:
        return next_key_ready([e.info for e in self._entries.values()], alg, self.policy)

    def ensure_keys(self, *, actor: str = "system") -> list[str]:
        return self.rotate(utcnow())

    def check(self) -> None:
        """Nothing is sealed, so nothing can fail to open."""
