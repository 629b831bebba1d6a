"""The ``signing_keys`` table lifecycle shared by the database-backed key stores.

:class:`DatabaseKeyStore` owns everything the backends share: the lifecycle (planned by
:mod:`keys.rotation`: next -> active -> retired -> removed, revoked in an emergency), the
database lock that makes a rotation happen once however many workers see it due, the audit
records, and the per-worker cache.  A backend only holds the secrets: :class:`keys.sql.SqlKeyStore`
keeps the private key in the row, encrypted under the key-encryption key;
:class:`keys.pkcs11.Pkcs11KeyStore` keeps only the HSM object's label.  Both subclass this and
implement the hooks (``_create``, ``_load_signer``, ``_destroy``, optionally ``_discard`` and
``_on_retire``); this module knows nothing of KEKs or tokens.

Caching and bounded staleness: each worker keeps an immutable snapshot of the published keys
(public key objects built once per kid, the JWKS, the active kid per algorithm) and re-reads
it at most every ``refresh_seconds``.  So a rotation or revocation made by one worker reaches
every other worker within ``refresh_seconds`` (default 5 s), without a restart, and the
rotation schedule (:class:`keys.rotation.RotationPolicy`) adds that bound to both the
pre-publication and the retention times.  Private keys are loaded once per kid, only for
active keys, and dropped when the key stops signing.

Locking (one rotation, however many workers): every lifecycle change runs in one transaction
that first takes a lock, then re-reads the keys and re-plans.  On PostgreSQL the lock is a
transaction-scoped advisory lock (``pg_advisory_xact_lock``): it also covers the empty table
at first start, where ``SELECT ... FOR UPDATE`` would lock nothing, it blocks only other key
changes (never logins), and it is released by commit or rollback.  On SQLite every write
transaction starts with ``BEGIN IMMEDIATE`` (``idp/storage/db.py``), which takes the database
write lock before the first read, so the re-read and the change are serialized as well.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from joserfc.jwk import Key
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import audit
from idp.storage.db import Database
from idp.storage.models import SigningKey as SigningKeyRow
from idp.storage.models import utcnow
from keys.rotation import RotationPolicy, Step, next_due, next_key_ready, plan
from keys.software import check_alg, import_public_jwk, thumbprint
from keys.store import (
    PUBLISHED_STATES,
    KeyInfo,
    KeyNotFoundError,
    KeyState,
    KeyStoreError,
    SigningKey,
    publication_order,
)

log = logging.getLogger("yitong.keys")

T = TypeVar("T")

#: pg_advisory_xact_lock key for signing-key changes (a fixed 64-bit number derived from a name
#: so that it does not collide with locks other modules might take).
ADVISORY_LOCK_ID = int.from_bytes(
    hashlib.sha256(b"yitong.signing_keys.lifecycle").digest()[:8], "big", signed=True
)

#: An unknown kid triggers at most one early re-read per this many seconds (a relying party's
#: "refetch on unknown kid", bounded so that random kids cannot turn into database load).
MISS_RELOAD_SECONDS = 1.0

#: After a failed automatic rotation, :meth:`maybe_rotate` waits this long before trying again.
ROTATE_RETRY_SECONDS = 60.0

SYSTEM_ACTOR = "system:key-rotation"


class _Busy(Exception):
    """Another worker holds the lifecycle lock (only raised when asked not to wait)."""


class _Stale(Exception):
    """The snapshot named a key active that no longer is (another worker moved it on)."""


@dataclass(frozen=True)
class NewKey:
    """Material for a new row, made by a backend; ``discard`` undoes it if the row is not kept."""

    kid: str
    public_jwk: dict[str, Any]
    private_ciphertext: bytes | None = None
    kek_id: str | None = None
    hsm_label: str | None = None


@dataclass(frozen=True)
class _Snapshot:
    """One worker's immutable view of the published keys; replaced whole on every re-read."""

    keys: tuple[KeyInfo, ...] = ()
    active: dict[str, str] = field(default_factory=dict)
    public: dict[str, Key] = field(default_factory=dict)
    jwks: tuple[dict[str, Any], ...] = ()
    due: dt.datetime = field(default_factory=lambda: dt.datetime.min.replace(tzinfo=dt.UTC))


@dataclass
class Txn:
    """A lifecycle transaction: the session, who acts, and what to undo or finish afterwards."""

    session: Session
    actor: str
    created: list[NewKey] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def _info(row: SigningKeyRow) -> KeyInfo:
    return KeyInfo(
        kid=row.kid,
        alg=row.alg,
        state=KeyState(row.state),
        backend=row.backend,
        created_at=row.created_at,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
        remove_after=row.remove_after,
        revoked_at=row.revoked_at,
        kek_id=row.kek_id,
        hsm_label=row.hsm_label,
    )


class DatabaseKeyStore(abc.ABC):
    """Lifecycle, locking, audit and caching over ``signing_keys``; backends hold the secrets.

    Implements :class:`keys.store.ManagedKeyStore`.  A store sees only the rows of its own
    ``backend``, so an HSM deployment never tries to decrypt software keys and vice versa.
    """

    backend: ClassVar[str]

    def __init__(
        self,
        db: Database,
        *,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        policy: RotationPolicy | None = None,
        refresh_seconds: float = 5.0,
        production: bool = False,
    ) -> None:
        dialect = db.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise KeyStoreError(f"signing keys need SQLite or PostgreSQL, not {dialect}")
        for alg in algorithms:
            check_alg(alg)
        self.db = db
        self.algorithms = tuple(algorithms)
        self.policy = policy or RotationPolicy()
        self.refresh_seconds = refresh_seconds
        self.production = production
        self._is_postgres = dialect == "postgresql"
        self._lock = threading.Lock()
        self._rotating = threading.Lock()
        self._snapshot = _Snapshot()
        self._loaded_at = -math.inf
        self._miss_reload_at = -math.inf
        self._rotate_retry_at = -math.inf
        self._signers: dict[str, SigningKey] = {}

    # -- backend hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _create(self, alg: str) -> NewKey:
        """Make a key pair for ``alg``; called inside the lifecycle lock."""

    def _discard(self, new: NewKey) -> None:  # noqa: B027 (optional hook)
        """Undo :meth:`_create` for a key whose row was rolled back (default: nothing)."""

    @abc.abstractmethod
    def _load_signer(self, row: SigningKeyRow) -> SigningKey:
        """Build the signer for an active row (decrypt, or find the HSM object)."""

    @abc.abstractmethod
    def _destroy(self, txn: Txn, row: SigningKeyRow) -> None:
        """Destroy a removed or revoked key's private part (now, or after commit)."""

    def _on_retire(self, txn: Txn, row: SigningKeyRow) -> None:  # noqa: B027 (optional hook)
        """A key stopped signing; a backend may destroy its private part early."""

    # -- snapshot ---------------------------------------------------------------------------
    def _fresh(self, force: bool = False) -> _Snapshot:
        if not force and time.monotonic() - self._loaded_at < self.refresh_seconds:
            return self._snapshot
        # A worker already re-reading is as good as us re-reading: do not queue behind it.
        if not self._lock.acquire(blocking=force or self._loaded_at == -math.inf):
            return self._snapshot
        try:
            self._reload()
        finally:
            self._lock.release()
        return self._snapshot

    def _reload(self) -> None:
        with self.db.session() as session:
            rows = session.scalars(
                select(SigningKeyRow).where(
                    SigningKeyRow.backend == self.backend,
                    SigningKeyRow.state.in_([str(s) for s in PUBLISHED_STATES]),
                )
            ).all()
            infos = publication_order((_info(r) for r in rows), self.algorithms)
            published = {r.kid: dict(r.public_jwk) for r in rows}
        old = self._snapshot.public
        public: dict[str, Key] = {}
        for kid, jwk in published.items():
            public[kid] = old[kid] if kid in old else import_public_jwk(jwk)
        active: dict[str, tuple[dt.datetime, str]] = {}
        for info in infos:
            if info.state == KeyState.ACTIVE:
                when = info.activated_at or info.created_at
                if info.alg not in active or when > active[info.alg][0]:
                    active[info.alg] = (when, info.kid)
        self._snapshot = _Snapshot(
            keys=tuple(infos),
            active={alg: kid for alg, (_, kid) in active.items()},
            public=public,
            jwks=tuple(published[k.kid] for k in infos),
            due=next_due(infos, self.algorithms, self.policy),
        )
        signing = set(self._snapshot.active.values())
        self._signers = {k: v for k, v in self._signers.items() if k in signing}
        self._loaded_at = time.monotonic()

    def _signer(self, kid: str) -> SigningKey:
        signer = self._signers.get(kid)
        if signer is not None:
            return signer
        with self._lock:
            signer = self._signers.get(kid)
            if signer is None:
                with self.db.session() as session:
                    row = session.get(SigningKeyRow, kid)
                    if row is None or row.state != KeyState.ACTIVE:
                        raise _Stale(kid)
                    signer = self._load_signer(row)
                self._signers[kid] = signer
        return signer

    # -- KeyStore ---------------------------------------------------------------------------
    def signing_key(self, alg: str) -> SigningKey:
        kid = self._fresh().active.get(alg)
        if kid is not None:
            try:
                return self._signer(kid)
            except _Stale:
                # Our snapshot is older than a rotation or revocation made by another worker,
                # and this key was never loaded here: catch up now rather than fail a request.
                pass
        kid = self._fresh(force=True).active.get(alg)
        if kid is None:
            raise KeyStoreError(f"no active signing key for {alg}")
        try:
            return self._signer(kid)
        except _Stale:
            raise KeyStoreError(f"the active key for {alg} changed while loading it") from None

    def public_jwks(self) -> dict[str, Any]:
        # Copies, so a caller that decorates the document cannot alter the cache.
        return {"keys": [dict(jwk) for jwk in self._fresh().jwks]}

    def find(self, kid: str) -> Key | None:
        key = self._fresh().public.get(kid)
        if key is None and time.monotonic() - self._miss_reload_at >= MISS_RELOAD_SECONDS:
            self._miss_reload_at = time.monotonic()
            key = self._fresh(force=True).public.get(kid)
        return key

    def jwks_max_age(self) -> int:
        return self.policy.jwks_cache_seconds

    def rotate(
        self,
        now: dt.datetime | None = None,
        *,
        actor: str = SYSTEM_ACTOR,
        force: Sequence[str] = (),
    ) -> list[str]:
        """Bring the lifecycle up to date; ``force`` rotates those algorithms now (if their
        next key has been published long enough, see :func:`keys.rotation.plan`)."""
        now = now or utcnow()
        return self._locked(actor, lambda txn: self._bring_up_to_date(txn, now, force=force))

    def revoke(self, kid: str, *, actor: str = SYSTEM_ACTOR, reason: str = "") -> None:
        """Emergency revocation: unpublished at once, private part destroyed, replaced.

        When ``kid`` was the active key the next key (already published, so relying parties
        with a cached JWKS accept it) is promoted in the same transaction (checklist 97).
        """
        now = utcnow()

        def work(txn: Txn) -> list[str]:
            row = txn.session.get(SigningKeyRow, kid)
            if row is None or row.backend != self.backend:
                raise KeyNotFoundError(f"no key {kid}")
            if row.state in (KeyState.REVOKED, KeyState.REMOVED):
                raise KeyNotFoundError(f"key {kid} is already {row.state}")
            before = row.state
            row.state = KeyState.REVOKED
            row.revoked_at = now
            self._destroy(txn, row)
            txn.session.flush()
            self._audit(txn, "key.revoke", row, before, {"reason": reason} if reason else {})
            return [kid, *self._bring_up_to_date(txn, now, reason="replaces revoked key")]

        self._locked(actor, work)

    # -- ManagedKeyStore --------------------------------------------------------------------
    def maybe_rotate(self, now: dt.datetime | None = None) -> list[str]:
        """Rotate if the cached schedule says something is due: two comparisons otherwise.

        Safe to call on every request or from a timer in every worker: the first to take the
        lock does the work, the others re-read and find nothing to do.  On PostgreSQL the
        others do not even wait (try-lock).  A failure is logged, not raised, and retried after
        a minute, so a broken HSM or KEK never turns every request into an error.
        """
        now = now or utcnow()
        if now < self._fresh().due or time.monotonic() < self._rotate_retry_at:
            return []
        # One thread per process is enough; the others carry on with their requests.
        if not self._rotating.acquire(blocking=False):
            return []
        try:
            return self._locked(
                SYSTEM_ACTOR, lambda txn: self._bring_up_to_date(txn, now), wait=False
            )
        except _Busy:
            return []  # another worker is rotating right now
        except Exception:
            log.exception("automatic key rotation failed; retrying in %ss", ROTATE_RETRY_SECONDS)
            self._rotate_retry_at = time.monotonic() + ROTATE_RETRY_SECONDS
            return []
        finally:
            self._rotating.release()

    def ensure_keys(self, *, actor: str = SYSTEM_ACTOR) -> list[str]:
        """Start-up: give every configured algorithm an active and a next key."""
        return self.rotate(utcnow(), actor=actor)

    def generate(
        self, alg: str, state: KeyState = KeyState.NEXT, *, actor: str = SYSTEM_ACTOR
    ) -> str:
        """A new key by hand.  ACTIVE retires the current active key for ``alg`` at once.

        Prefer NEXT: an ACTIVE key that was never pre-published makes relying parties with a
        cached JWKS refetch it (most do on an unknown kid, some do not).
        """
        check_alg(alg)
        if state not in (KeyState.NEXT, KeyState.ACTIVE):
            raise KeyStoreError("a new key is either next or active")
        now = utcnow()

        def work(txn: Txn) -> str:
            if state == KeyState.ACTIVE:
                for row in self._rows(txn.session, [KeyState.ACTIVE], alg):
                    self._retire(txn, row, now, "replaced by hand")
            return self._insert(txn, alg, state, now, "by hand")

        return self._locked(actor, work)

    def next_change(self) -> dt.datetime:
        return self._fresh(force=True).due

    def next_key_ready(self, alg: str) -> dt.datetime | None:
        return next_key_ready(self._fresh(force=True).keys, alg, self.policy)

    def list_keys(self, *, include_removed: bool = False) -> list[KeyInfo]:
        with self.db.session() as session:
            query = select(SigningKeyRow).where(SigningKeyRow.backend == self.backend)
            if not include_removed:
                query = query.where(SigningKeyRow.state != KeyState.REMOVED)
            rows = session.scalars(query.order_by(SigningKeyRow.created_at.desc())).all()
            return [_info(r) for r in rows]

    def check(self) -> None:
        """Start-up check; the base class checks the metadata, backends their secrets."""
        with self.db.session() as session:
            for row in self._rows(session, list(PUBLISHED_STATES)):
                if thumbprint(row.public_jwk) != row.kid:
                    raise KeyStoreError(f"key {row.kid}: the published key does not match its kid")

    # -- lifecycle internals ----------------------------------------------------------------
    def _rows(
        self, session: Session, states: Sequence[str], alg: str | None = None
    ) -> list[SigningKeyRow]:
        query = select(SigningKeyRow).where(
            SigningKeyRow.backend == self.backend,
            SigningKeyRow.state.in_([str(s) for s in states]),
        )
        if alg is not None:
            query = query.where(SigningKeyRow.alg == alg)
        return list(session.scalars(query.order_by(SigningKeyRow.created_at)).all())

    def _take_lock(self, session: Session, wait: bool) -> bool:
        if not self._is_postgres:
            return True  # SQLite: BEGIN IMMEDIATE already holds the write lock (module docstring)
        if wait:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_ID})
            return True
        got = session.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_ID}
        ).scalar_one()
        return bool(got)

    def _locked(self, actor: str, work: Callable[[Txn], T], *, wait: bool = True) -> T:
        """Run ``work`` under the lifecycle lock in one transaction, then refresh the cache.

        A concurrent audit writer can take the same audit sequence number (IntegrityError);
        the whole transaction is then retried, re-planned from what is committed by then.
        """
        for attempt in range(10):
            txn: Txn | None = None
            try:
                with self.db.transaction() as session:
                    txn = Txn(session, actor)
                    if not self._take_lock(session, wait):
                        raise _Busy
                    result = work(txn)
            except IntegrityError:
                self._rollback(txn)
                if attempt == 9:
                    raise
                continue
            except _Busy:
                raise
            except BaseException:
                self._rollback(txn)
                raise
            for finish in txn.after_commit:
                try:
                    finish()
                except Exception:
                    log.exception("clean-up after a key change failed")
            self._fresh(force=True)
            return result
        raise AssertionError("unreachable")

    def _rollback(self, txn: Txn | None) -> None:
        for new in txn.created if txn else ():
            try:
                self._discard(new)
            except Exception:
                log.exception("could not discard key %s after a rollback", new.kid)

    def _bring_up_to_date(
        self,
        txn: Txn,
        now: dt.datetime,
        reason: str | None = None,
        force: Sequence[str] = (),
    ) -> list[str]:
        rows = {r.kid: r for r in self._rows(txn.session, list(PUBLISHED_STATES))}
        infos = [_info(r) for r in rows.values()]
        steps = plan(infos, self.algorithms, now, self.policy, force)
        changed: list[str] = []
        for step in steps:
            why = reason or step.reason
            changed.append(self._apply(txn, rows, step, now, why))
        return changed

    def _apply(
        self, txn: Txn, rows: dict[str, SigningKeyRow], step: Step, now: dt.datetime, why: str
    ) -> str:
        if step.kind == "generate_active":
            return self._insert(txn, step.alg, KeyState.ACTIVE, now, why)
        if step.kind == "generate_next":
            return self._insert(txn, step.alg, KeyState.NEXT, now, why)
        assert step.kid is not None
        row = rows[step.kid]
        before = row.state
        if step.kind == "retire":
            self._retire(txn, row, now, why)
        elif step.kind == "activate":
            row.state = KeyState.ACTIVE
            row.activated_at = now
            txn.session.flush()
            self._audit(txn, "key.activate", row, before, {"reason": why})
        else:  # remove
            row.state = KeyState.REMOVED
            self._destroy(txn, row)
            txn.session.flush()
            self._audit(txn, "key.remove", row, before, {"reason": why})
        return row.kid

    def _retire(self, txn: Txn, row: SigningKeyRow, now: dt.datetime, why: str) -> None:
        before = row.state
        row.state = KeyState.RETIRED
        row.retired_at = now
        # Checklist 96: published for at least the longest token lifetime after it stops
        # signing (plus the workers' refresh bound and a clock-skew margin).
        row.remove_after = now + self.policy.retention
        self._on_retire(txn, row)
        txn.session.flush()
        self._audit(
            txn,
            "key.retire",
            row,
            before,
            {"reason": why, "remove_after": row.remove_after.isoformat()},
        )

    def _insert(self, txn: Txn, alg: str, state: KeyState, now: dt.datetime, why: str) -> str:
        new = self._create(alg)
        txn.created.append(new)
        row = SigningKeyRow(
            kid=new.kid,
            alg=alg,
            state=state,
            backend=self.backend,
            public_jwk=new.public_jwk,
            private_ciphertext=new.private_ciphertext,
            kek_id=new.kek_id,
            hsm_label=new.hsm_label,
            created_at=now,
            activated_at=now if state == KeyState.ACTIVE else None,
        )
        txn.session.add(row)
        txn.session.flush()
        self._audit(txn, "key.generate", row, None, {"reason": why})
        return new.kid

    def _audit(
        self,
        txn: Txn,
        action: str,
        row: SigningKeyRow,
        before: str | None,
        extra: dict[str, Any],
    ) -> None:
        # Checklist 98: who, when, what, old -> new; the kid and fingerprints, never key material.
        details: dict[str, Any] = {
            "alg": row.alg,
            "backend": row.backend,
            "from": str(before) if before else None,
            "to": str(row.state),
            **extra,
        }
        audit.record(txn.session, action, actor=txn.actor, target=row.kid, details=details)
