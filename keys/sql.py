"""SqlKeyStore: software signing keys in ``signing_keys``, encrypted at rest under the KEK.

The private key lives in the row, AES-GCM-encrypted under the key-encryption key (KEK) named
by ``kek_id`` (:mod:`keys.crypto`).  Everything else (the lifecycle, the lock that makes a
rotation happen once, audit, the per-worker cache) is :class:`keys.lifecycle.DatabaseKeyStore`,
which the PKCS#11 store shares.  ``DatabaseKeyStore``, ``NewKey`` and ``SYSTEM_ACTOR`` are
re-exported here for callers that imported them from this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from idp import audit
from idp.storage.db import Database
from idp.storage.models import SigningKey as SigningKeyRow
from keys.crypto import Kek, KekError
from keys.lifecycle import SYSTEM_ACTOR, DatabaseKeyStore, NewKey, Txn
from keys.rotation import RotationPolicy
from keys.software import (
    SoftwareSigningKey,
    check_rsa_bits,
    generate_key,
    import_private_pem,
    public_jwk,
)
from keys.store import KeyStoreError, SigningKey

if TYPE_CHECKING:
    from idp.config import Settings

__all__ = ["SYSTEM_ACTOR", "DatabaseKeyStore", "NewKey", "SqlKeyStore"]

#: Digests of ciphertexts whose plaintext this process has already imported as a usable key.
#: The same ciphertext, authenticated again by AES-GCM, yields the same PEM, so importing it
#: again proves nothing new; it only costs ~36 ms an RSA key at every app start.  Holds no
#: key material.
_PROVEN: set[bytes] = set()


class SqlKeyStore(DatabaseKeyStore):
    """Software keys in the database, the private part AES-GCM-encrypted under the KEK.

    ``kek`` seals new keys; ``previous_keks`` only open old ones, so a KEK can be replaced
    while workers still run with the old one (see docs/keys.md, "Changing the KEK").
    ``kek=None`` stores plaintext PEM and is for development only: production refuses it.
    """

    backend = "sql"

    def __init__(
        self,
        db: Database,
        kek: Kek | None,
        *,
        previous_keks: Sequence[Kek] = (),
        algorithms: Sequence[str] = ("RS256", "ES256"),
        rsa_bits: int = 3072,
        policy: RotationPolicy | None = None,
        refresh_seconds: float = 5.0,
        production: bool = False,
    ) -> None:
        if kek is None and production:
            raise KeyStoreError(
                "production refuses plaintext private keys: set YITONG_KEY_ENCRYPTION_KEY "
                "or YITONG_KEY_ENCRYPTION_KEY_FILE"
            )
        check_rsa_bits(rsa_bits)
        super().__init__(
            db,
            algorithms=algorithms,
            policy=policy,
            refresh_seconds=refresh_seconds,
            production=production,
        )
        self.kek = kek
        self.previous_keks = tuple(previous_keks)
        self.rsa_bits = rsa_bits

    @classmethod
    def from_settings(
        cls, settings: Settings, db: Database, kek: Kek | None, *, refresh_seconds: float = 5.0
    ) -> SqlKeyStore:
        """The store the app factory builds; call :meth:`check` then :meth:`ensure_keys`."""
        return cls(
            db,
            kek,
            algorithms=settings.signing_algorithms,
            policy=RotationPolicy.from_settings(settings, refresh_seconds),
            refresh_seconds=refresh_seconds,
            production=settings.is_production,
        )

    # -- sealing ----------------------------------------------------------------------------
    def _keks(self) -> dict[str, Kek]:
        ring = {k.id: k for k in self.previous_keks}
        if self.kek is not None:
            ring[self.kek.id] = self.kek
        return ring

    def _open(self, row: SigningKeyRow, ring: dict[str, Kek] | None = None) -> bytes:
        if row.private_ciphertext is None:
            raise KeyStoreError(f"key {row.kid} has no private part (state {row.state})")
        if row.kek_id is None:
            if self.production:
                raise KeyStoreError(
                    f"key {row.kid} is stored in plaintext; production refuses plaintext keys "
                    "(run `yitong keys rewrap --new-kek-file ...` to encrypt it)"
                )
            return row.private_ciphertext
        kek = (ring or self._keks()).get(row.kek_id)
        if kek is None:
            configured = self.kek.id if self.kek else "none"
            raise KeyStoreError(
                f"signing key {row.kid} is sealed with key-encryption key {row.kek_id}, "
                f"but the configured key-encryption key is {configured}: set "
                "YITONG_KEY_ENCRYPTION_KEY (or _FILE) to the key the signing keys were sealed "
                "with, or move them with `yitong keys rewrap`"
            )
        try:
            return kek.decrypt(row.private_ciphertext, row.kid.encode())
        except KekError as exc:
            raise KeyStoreError(f"signing key {row.kid}: {exc}") from None

    def _seal(self, kid: str, pem: bytes) -> tuple[bytes, str | None]:
        if self.kek is None:
            return pem, None
        return self.kek.encrypt(pem, kid.encode()), self.kek.id

    # -- hooks ------------------------------------------------------------------------------
    def _create(self, alg: str) -> NewKey:
        key = generate_key(alg, rsa_bits=self.rsa_bits)
        assert key.kid is not None
        ciphertext, kek_id = self._seal(key.kid, key.as_pem(private=True))
        return NewKey(key.kid, public_jwk(key, alg), ciphertext, kek_id)

    def _load_signer(self, row: SigningKeyRow) -> SigningKey:
        key = import_private_pem(self._open(row), row.alg, row.kid)
        if key.thumbprint() != row.kid:
            raise KeyStoreError(f"key {row.kid}: the private key does not match its kid")
        return SoftwareSigningKey(key, row.alg)

    def _destroy(self, txn: Txn, row: SigningKeyRow) -> None:
        row.private_ciphertext = None
        row.kek_id = None

    def _on_retire(self, txn: Txn, row: SigningKeyRow) -> None:
        # A retired key never signs again, so its ciphertext is only a liability.  Workers
        # still signing with it for up to refresh_seconds hold it decrypted in memory; one
        # that had not loaded it yet catches up instead (signing_key, _Stale).
        self._destroy(txn, row)

    # -- operations -------------------------------------------------------------------------
    def check(self) -> None:
        """Open every private key, and import one per KEK id; in production refuse plaintext.

        Run at start-up so a wrong or missing KEK stops the process with a message that says
        which KEK is needed, instead of failing at the first token.  Authenticating every
        ciphertext costs microseconds (AES-GCM); importing is the slow part (~36 ms for an
        RSA PEM), so one import per KEK proves the KEK yields usable keys.
        """
        super().check()
        with self.db.session() as session:
            rows = session.scalars(
                select(SigningKeyRow).where(
                    SigningKeyRow.backend == self.backend,
                    SigningKeyRow.private_ciphertext.is_not(None),
                )
            ).all()
            imported: set[str | None] = set()
            for row in rows:
                pem = self._open(row)  # authenticates every ciphertext, every time
                if row.kek_id not in imported:
                    imported.add(row.kek_id)
                    proof = hashlib.sha256(bytes(row.private_ciphertext or b"")).digest()
                    if proof not in _PROVEN:
                        import_private_pem(pem, row.alg, row.kid)
                        _PROVEN.add(proof)

    def rewrap(
        self,
        new_kek: Kek,
        *,
        old_keks: Sequence[Kek] = (),
        actor: str = SYSTEM_ACTOR,
    ) -> list[str]:
        """Re-seal every private key under ``new_kek`` in one transaction; return the kids.

        Every row is opened first (with the configured KEK, the previous ones or
        ``old_keks``): if any cannot be, nothing changes.  Plaintext rows are encrypted.
        Afterwards this store seals with ``new_kek`` and still opens with the old KEKs.
        """
        ring = {**self._keks(), **{k.id: k for k in old_keks}}

        def work(txn: Txn) -> list[str]:
            rows = txn.session.scalars(
                select(SigningKeyRow).where(
                    SigningKeyRow.backend == self.backend,
                    SigningKeyRow.private_ciphertext.is_not(None),
                )
            ).all()
            opened = [(row, self._open(row, ring)) for row in rows]
            moved: list[str] = []
            for row, pem in opened:
                old_id = row.kek_id
                if old_id == new_kek.id:
                    continue
                row.private_ciphertext = new_kek.encrypt(pem, row.kid.encode())
                row.kek_id = new_kek.id
                txn.session.flush()
                audit.record(
                    txn.session,
                    "key.rewrap",
                    actor=txn.actor,
                    target=row.kid,
                    details={"alg": row.alg, "from_kek": old_id, "to_kek": new_kek.id},
                )
                moved.append(row.kid)
            return moved

        moved = self._locked(actor, work)
        old = [k for k in ring.values() if k.id != new_kek.id]
        self.previous_keks = tuple(old)
        self.kek = new_kek
        return moved
