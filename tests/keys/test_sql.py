"""SqlKeyStore beyond the contract: encryption at rest, KEK checks and rewrap, several workers
over one database, the audit trail.  Runs on the run's SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from idp import audit
from idp.storage.db import Database
from idp.storage.models import AuditEvent, SigningKey, utcnow
from keys.crypto import Kek, KekError
from keys.sql import NewKey, SqlKeyStore
from keys.store import KeyState, KeyStoreError
from tests.keys.conftest import POLICY, REFRESH, RSA_BITS
from tests.keys.relying_party import verify

ALGS = ("RS256", "ES256")


def make(db: Database, kek: Kek | None, **kw: object) -> SqlKeyStore:
    options: dict[str, object] = {
        "algorithms": ALGS,
        "rsa_bits": RSA_BITS,
        "policy": POLICY,
        "refresh_seconds": REFRESH,
    }
    options.update(kw)
    return SqlKeyStore(db, kek, **options)  # type: ignore[arg-type]


def rows(db: Database) -> list[SigningKey]:
    with db.session() as session:
        return list(session.scalars(select(SigningKey).order_by(SigningKey.created_at)))


def test_private_keys_are_encrypted_at_rest(db: Database, kek: Kek) -> None:
    # checklist 98: keys encrypted at rest, the KEK id kept per row
    make(db, kek).ensure_keys()
    stored = rows(db)
    assert len(stored) == 4
    for row in stored:
        assert row.kek_id == kek.id and row.backend == "sql"
        assert row.private_ciphertext is not None
        assert b"PRIVATE KEY" not in row.private_ciphertext
        pem = kek.decrypt(row.private_ciphertext, row.kid.encode())
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    # The ciphertext is bound to its row: moved under another kid it does not open.
    a, b = stored[0], stored[1]
    assert a.private_ciphertext is not None
    with pytest.raises(KekError):
        kek.decrypt(a.private_ciphertext, b.kid.encode())


def test_wrong_kek_refuses_to_start(db: Database, kek: Kek) -> None:
    make(db, kek).ensure_keys()
    wrong = make(db, Kek.generate())
    with pytest.raises(KeyStoreError) as exc:
        wrong.check()
    message = str(exc.value)
    assert kek.id in message and wrong.kek is not None and wrong.kek.id in message
    assert "YITONG_KEY_ENCRYPTION_KEY" in message
    with pytest.raises(KeyStoreError):
        wrong.signing_key("ES256")
    make(db, kek).check()  # the right one passes


def test_tampered_ciphertext_refuses_to_start(db: Database, kek: Kek) -> None:
    make(db, kek).ensure_keys()
    with db.transaction() as session:
        row = session.scalars(select(SigningKey).limit(1)).one()
        assert row.private_ciphertext is not None
        row.private_ciphertext = row.private_ciphertext[:-1] + bytes(
            [row.private_ciphertext[-1] ^ 1]
        )
    with pytest.raises(KeyStoreError, match="decryption failed"):
        make(db, kek).check()


def test_production_refuses_plaintext_keys(db: Database, kek: Kek) -> None:
    with pytest.raises(KeyStoreError, match="plaintext"):
        make(db, None, production=True)
    make(db, None).ensure_keys()  # development may keep plaintext keys ...
    assert all(r.kek_id is None for r in rows(db))
    with pytest.raises(KeyStoreError, match="plaintext"):
        make(db, kek, production=True).check()  # ... production will not use them
    # rewrap encrypts them, after which production starts.
    make(db, kek).rewrap(kek)
    make(db, kek, production=True).check()


def test_rewrap_moves_every_key_to_the_new_kek(db: Database, kek: Kek) -> None:
    store = make(db, kek)
    store.ensure_keys()
    signer = store.signing_key("ES256")
    token = signer.sign_jwt({"sub": "x"})
    new = Kek.generate()

    moved = store.rewrap(new, actor="cli:ops")

    assert sorted(moved) == sorted(r.kid for r in rows(db))
    assert {r.kek_id for r in rows(db)} == {new.id}
    with pytest.raises(KeyStoreError):
        make(db, kek).check()  # the old KEK alone no longer opens them
    fresh = make(db, new)
    fresh.check()
    assert fresh.signing_key("ES256").kid == signer.kid
    assert verify(token, fresh.public_jwks())
    store.generate("ES256")  # the store that rewrapped now seals with the new KEK
    make(db, new).check()
    with db.session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "key.rewrap")).all()
        assert len(events) == len(moved)
        for event in events:
            assert event.actor == "cli:ops"
            assert event.details["from_kek"] == kek.id and event.details["to_kek"] == new.id
            assert new.to_text() not in str(event.details)


def test_rewrap_is_all_or_nothing(db: Database, kek: Kek) -> None:
    other = Kek.generate()
    make(db, kek).ensure_keys()
    make(db, other).generate("EdDSA")  # one row sealed with another KEK
    before = {r.kid: (r.kek_id, r.private_ciphertext) for r in rows(db)}
    with pytest.raises(KeyStoreError, match=other.id):
        make(db, kek).rewrap(Kek.generate())
    assert {r.kid: (r.kek_id, r.private_ciphertext) for r in rows(db)} == before
    # With the other KEK named as an old one, it goes through.
    final = Kek.generate()
    make(db, kek).rewrap(final, old_keks=[other])
    assert {r.kek_id for r in rows(db)} == {final.id}


def test_previous_kek_still_opens_during_a_kek_change(db: Database, kek: Kek) -> None:
    make(db, kek).ensure_keys()
    new = Kek.generate()
    store = make(db, new, previous_keks=[kek])
    store.check()
    store.generate("RS256")
    assert {r.kek_id for r in rows(db)} == {kek.id, new.id}


def test_retired_and_revoked_keys_lose_their_private_part(db: Database, kek: Kek) -> None:
    store = make(db, kek)
    now = utcnow()
    store.rotate(now)
    revoked = store.signing_key("RS256").kid
    store.revoke(revoked)
    store.rotate(now + dt.timedelta(days=91))
    for row in rows(db):
        if row.state in (KeyState.RETIRED, KeyState.REVOKED):
            assert row.private_ciphertext is None and row.kek_id is None, row.state
        else:
            assert row.private_ciphertext is not None


def test_lifecycle_is_in_the_audit_trail(db: Database, kek: Kek) -> None:
    # checklist 98: every key change writes who, what, old -> new; never key material
    store = make(db, kek)
    store.ensure_keys(actor="cli:root")
    kid = store.signing_key("ES256").kid
    store.revoke(kid, actor="user:42", reason="laptop stolen")
    with db.session() as session:
        assert audit.verify(session).ok
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    actions = [(e.action, e.actor) for e in events]
    assert actions[:4] == [("key.generate", "cli:root")] * 4
    revoke = next(e for e in events if e.action == "key.revoke")
    assert revoke.actor == "user:42" and revoke.target == kid
    assert revoke.details == {
        "alg": "ES256", "backend": "sql", "from": "active", "to": "revoked",
        "reason": "laptop stolen",
    }  # fmt: skip
    assert ("key.activate", "user:42") in actions  # the replacement, by the same hand
    for event in events:
        text = str(event.details)
        assert "PRIVATE" not in text and kek.to_text() not in text


def test_every_worker_follows_within_the_refresh_bound(db: Database, kek: Kek) -> None:
    # checklist 97 and 121: workers switch without restart; no error while they do
    first, second = make(db, kek), make(db, kek)
    now = utcnow()
    first.rotate(now)
    old = second.signing_key("ES256").kid
    errors: list[BaseException] = []
    signed: list[str] = []
    stop = threading.Event()

    def sign_continuously() -> None:
        while not stop.is_set():
            try:
                signed.append(second.signing_key("ES256").sign_jwt({"sub": "x"}))
            except BaseException as exc:  # pragma: no cover - the assertion reports it
                errors.append(exc)

    worker = threading.Thread(target=sign_continuously)
    worker.start()
    try:
        first.rotate(now + dt.timedelta(days=91))
        new = first.signing_key("ES256").kid
        deadline = time.monotonic() + REFRESH + 1.0
        while second.signing_key("ES256").kid != new:
            assert time.monotonic() < deadline, "the second worker did not follow"
            time.sleep(0.02)
        first.revoke(new)
        newer = first.signing_key("ES256").kid
        deadline = time.monotonic() + REFRESH + 1.0
        while second.find(new) is not None or second.signing_key("ES256").kid != newer:
            assert time.monotonic() < deadline, "the revocation did not reach the second worker"
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join()
    assert errors == []
    assert old != new != newer and len(signed) > 10


def test_a_worker_that_missed_a_rotation_catches_up_instead_of_failing(
    db: Database, kek: Kek
) -> None:
    first = make(db, kek)
    first.rotate(utcnow())
    second = make(db, kek, refresh_seconds=3600)  # very stale on purpose
    stale = second.public_jwks()
    first.rotate(utcnow() + dt.timedelta(days=91))
    # second still believes the retired key is active, and never loaded it: it re-reads.
    key = second.signing_key("RS256")
    assert key.kid == first.signing_key("RS256").kid
    assert verify(key.sign_jwt({"sub": "x"}), stale)  # pre-published, so even stale RPs accept


def test_maybe_rotate_is_cheap_when_nothing_is_due(db: Database, kek: Kek) -> None:
    store = make(db, kek, refresh_seconds=60)
    store.ensure_keys()
    # Cheap means: no database round trip at all (counted, not timed).
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    engines = db.engines
    for engine in engines:
        sa_event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(10_000):
            assert store.maybe_rotate() == []
    finally:
        for engine in engines:
            sa_event.remove(engine, "before_cursor_execute", count)
    assert statements == []
    # The counter is live: a rotation that is due does talk to the database.
    for engine in engines:
        sa_event.listen(engine, "before_cursor_execute", count)
    try:
        store.rotate(force=("RS256",))
    finally:
        for engine in engines:
            sa_event.remove(engine, "before_cursor_execute", count)
    assert statements


class FlakyStore(SqlKeyStore):
    """A store whose key generation fails while ``broken`` (an unplugged HSM, say)."""

    broken = False
    attempts = 0

    def _create(self, alg: str) -> NewKey:
        self.attempts += 1
        if self.broken:
            raise RuntimeError("key generation failed")
        return super()._create(alg)


def test_failed_automatic_rotation_is_logged_and_backs_off(
    db: Database, kek: Kek, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(db, kek, algorithms=("ES256",), policy=POLICY, refresh_seconds=REFRESH)
    store.ensure_keys()
    store.broken, store.attempts = True, 0
    later = utcnow() + dt.timedelta(days=91)
    assert store.maybe_rotate(later) == []  # logged, not raised into the request
    assert "automatic key rotation failed" in caplog.text
    assert store.maybe_rotate(later) == []
    assert store.attempts == 1  # not retried on every request
    assert store.signing_key("ES256").sign_jwt({"sub": "x"})  # still signing with the old key
    store.broken = False
    store._rotate_retry_at = 0.0  # a minute later
    assert store.maybe_rotate(later)
