"""SqlKeyStore: signing keys in the database, private parts AES-GCM-encrypted under the KEK.

Keys are decrypted and imported once per kid and cached; the set of active kids is re-read
at most every ``refresh_seconds`` so that every worker signs with a newly activated key
within that bound, without a restart.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from joserfc.jwk import Key, import_key
from sqlalchemy import select

from keys.crypto import Kek
from keys.software import SoftwareSigningKey, generate_key, public_jwk
from keys.store import KeyState, KeyStoreError
from idp.storage.db import Database
from idp.storage.models import SigningKey as SigningKeyRow
from idp.storage.models import utcnow


class SqlKeyStore:
    """Keys in the ``signing_keys`` table; see :class:`keys.store.KeyStore`."""

    def __init__(
        self,
        db: Database,
        kek: Kek,
        *,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        rsa_bits: int = 3072,
        refresh_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.kek = kek
        self.algorithms = algorithms
        self.rsa_bits = rsa_bits
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._private: dict[str, SoftwareSigningKey] = {}
        self._public: dict[str, Key | None] = {}
        self._active: dict[str, str] = {}
        self._jwks: dict[str, Any] = {"keys": []}
        self._loaded_at = 0.0

    # -- loading ----------------------------------------------------------------------
    def _reload(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < self.refresh_seconds:
            return
        with self._lock, self.db.session() as session:
            rows = session.scalars(
                select(SigningKeyRow).where(
                    SigningKeyRow.state.in_([KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED])
                )
            ).all()
            active: dict[str, tuple[dt.datetime, str]] = {}
            published = []
            for row in rows:
                published.append(row.public_jwk)
                if row.state == KeyState.ACTIVE:
                    when = row.activated_at or row.created_at
                    if row.alg not in active or when > active[row.alg][0]:
                        active[row.alg] = (when, row.kid)
            self._active = {alg: kid for alg, (_, kid) in active.items()}
            self._jwks = {"keys": published}
            live = {row.kid for row in rows}
            self._public = {k: v for k, v in self._public.items() if k in live}
            self._private = {k: v for k, v in self._private.items() if k in live}
            self._loaded_at = time.monotonic()

    def _private_key(self, kid: str) -> SoftwareSigningKey:
        cached = self._private.get(kid)
        if cached is not None:
            return cached
        with self.db.session() as session:
            row = session.get(SigningKeyRow, kid)
            if row is None or row.private_ciphertext is None:
                raise KeyStoreError(f"no private key for {kid}")
            pem = self.kek.decrypt(row.private_ciphertext, kid.encode())
            key = import_key(pem.decode(), parameters={"kid": kid})  # type: ignore[arg-type]
            signer = SoftwareSigningKey(key, row.alg)
        self._private[kid] = signer
        return signer

    # -- KeyStore ---------------------------------------------------------------------
    def signing_key(self, alg: str) -> SoftwareSigningKey:
        self._reload()
        kid = self._active.get(alg)
        if kid is None:
            self._reload(force=True)
            kid = self._active.get(alg)
        if kid is None:
            raise KeyStoreError(f"no active signing key for {alg}")
        return self._private_key(kid)

    def public_jwks(self) -> dict[str, Any]:
        self._reload()
        return self._jwks

    def find(self, kid: str) -> Key | None:
        self._reload()
        if kid in self._public:
            return self._public[kid]
        with self.db.session() as session:
            row = session.get(SigningKeyRow, kid)
            key = None
            if row is not None and row.state != KeyState.REVOKED:
                key = import_key(dict(row.public_jwk))  # type: ignore[arg-type]
        self._public[kid] = key
        return key

    def generate(self, alg: str, state: KeyState = KeyState.ACTIVE) -> str:
        key = generate_key(alg, rsa_bits=self.rsa_bits)
        assert key.kid is not None
        pem = key.as_pem(private=True)
        now = utcnow()
        with self.db.transaction() as session:
            session.add(
                SigningKeyRow(
                    kid=key.kid,
                    alg=alg,
                    state=state,
                    public_jwk=public_jwk(key, alg),
                    private_ciphertext=self.kek.encrypt(pem, key.kid.encode()),
                    kek_id=self.kek.id,
                    created_at=now,
                    activated_at=now if state == KeyState.ACTIVE else None,
                )
            )
        self._reload(force=True)
        return key.kid

    def ensure_keys(self) -> list[str]:
        """Generate an active key for every configured algorithm that has none."""
        self._reload(force=True)
        made = [self.generate(alg) for alg in self.algorithms if alg not in self._active]
        return made

    def rotate(self, now: dt.datetime | None = None) -> list[str]:
        raise NotImplementedError("rotation: see issue 4")

    def revoke(self, kid: str) -> None:
        raise NotImplementedError("revocation: see issue 4")
