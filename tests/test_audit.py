"""The hash-chained audit trail (issue 2 item 8): any edit, deletion or reordering is found."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.storage.models import AuditEvent


def fill(services, n=5) -> int:
    """Append n events; return the sequence number of the first (others may exist already)."""
    with services.db.transaction() as session:
        first = audit.count(session) + 1
        for i in range(n):
            audit.record(session, "test.event", actor=f"user{i}", target="t", details={"i": i})
    return first


def test_intact_chain_verifies(services):
    first = fill(services)
    with services.db.session() as session:
        result = audit.verify(session)
        assert audit.count(session) == result.count
    assert result.ok and result.count == first + 4


def test_edited_entry_is_named(services):
    first = fill(services)
    with services.db.transaction() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == first + 2).values(actor="mallory")
        )
    with services.db.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.seq == first + 2 and "altered" in result.problem


def test_deleted_entry_is_named(services):
    first = fill(services)
    with services.db.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == first + 1))
    with services.db.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.seq == first + 1 and "missing" in result.problem


def test_reordered_entries_are_found(services):
    first = fill(services)
    with services.db.transaction() as session:
        a = session.get(AuditEvent, first + 1)
        b = session.get(AuditEvent, first + 3)
        fields = ("at", "actor", "action", "target", "details", "prev_digest", "digest")
        va = {f: getattr(a, f) for f in fields}
        vb = {f: getattr(b, f) for f in fields}
        for f in fields:
            setattr(a, f, vb[f])
            setattr(b, f, va[f])
    with services.db.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.seq == first + 1


#: The contract, written out rather than read from ``audit.FORBIDDEN_KEYS``: dropping any of
#: these from the module's list must fail a test (one did survive a mutation run).
SECRET_KEYS = [
    "password",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "code",
    "id_number",
    "private_key",
    "d",
    "totp_secret",
    "otp",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secrets_are_refused_in_details(services, key):
    with services.db.transaction() as session, pytest.raises(ValueError, match="secrets"):
        audit.record(session, "x", actor="a", details={"scopes": ["openid"], key: "hunter2"})
    with services.db.session() as session:
        assert session.query(AuditEvent).filter_by(action="x").count() == 0


def test_logins_and_client_changes_are_recorded(services, rp, citizen):
    with services.db.session() as session:
        actions = [e.action for e in session.query(AuditEvent).order_by(AuditEvent.seq)]
    assert "client.create" in actions and "user.register" in actions


# ------------------------------------------------------------ every stored field (issue 14 12b)
#: The columns of the model, not a hand-kept list: a column added to ``audit_events`` joins
#: the parametrization below and fails it unless ``idp.audit`` hashes it.
COLUMNS = [column.name for column in AuditEvent.__table__.columns]


def _fill_every_field(services, n=4) -> int:
    """Append n entries with every nullable field set, so tampering always changes a value."""
    with services.db.transaction() as session:
        first = audit.count(session) + 1
        for i in range(n):
            event = audit.record(
                session,
                "test.event",
                actor=f"user{i}",
                target=f"target{i}",
                outcome="success",
                ip=f"203.0.113.{i + 1}",
                details={"i": i, "scopes": ["openid"]},
            )
            assert event.seq == first + i
    return first


def _tampered(value: Any, column: str) -> Any:
    """A different value of the same type and size (digests stay 64 characters)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 10_000  # seq: the entry moves away, leaving a gap
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(microseconds=1)
    if isinstance(value, dict):
        return {**value, "i": "tampered"}
    raise AssertionError(
        f"no way to tamper audit column {column!r} ({type(value).__name__}): teach _tampered "
        "and make sure idp.audit hashes the column"
    )


def test_hashed_and_chain_fields_name_every_column():
    assert sorted(COLUMNS) == sorted(audit.HASHED_FIELDS + audit.CHAIN_FIELDS)


@pytest.mark.parametrize("column", COLUMNS)
def test_tampering_any_stored_field_is_named(services, column):
    """Edit one column of one entry straight in the database: verify names that entry."""
    first = _fill_every_field(services)
    victim = first + 2
    with services.db.transaction() as session:
        before = getattr(session.get(AuditEvent, victim), column)
        assert before is not None, f"fill left {column} empty: the test would prove nothing"
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.seq == victim)
            .values({column: _tampered(before, column)})
        )
    with services.db.session() as session:
        result = audit.verify(session)
    assert not result.ok, f"an edited {column} went unnoticed"
    assert result.seq == victim, result
    assert result.count == victim - 1
    assert result.problem == {
        "seq": f"entry {victim} is missing",
        "prev_digest": f"entry {victim} does not follow entry {victim - 1}",
    }.get(column, f"entry {victim} was altered")


def test_canonical_form_is_unchanged():
    """Chains written before HASHED_FIELDS existed still verify: the digest is byte-identical."""
    event = AuditEvent(
        seq=7,
        at=dt.datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=dt.UTC),
        actor="user:42",
        action="consent.grant",
        target="client-一通",
        outcome="success",
        ip="203.0.113.9",
        details={"scopes": ["openid", "profile"], "n": 3},
    )
    assert audit.GENESIS == "0" * 64  # what the first entry of every existing chain follows
    prev = "ab" * 32
    assert audit._digest(event, prev) == (
        "a95017f4c1f22e914a4c306a35236742c39607017338a47a22adca2c01d2e1ca"
    )
    event.target, event.ip, event.details = None, None, {}
    assert audit._digest(event, prev) == (
        "6a1d0e58e793678a5328dc3d3448255fa23992f85bd7b0f15feecbf19ce6360c"
    )


# ------------------------------------------------------------ concurrent appenders (PostgreSQL)
def test_a_second_appender_waits_for_the_first_instead_of_failing(services):
    """PostgreSQL: ``record`` takes an advisory lock so a concurrent writer waits and follows.

    Without the lock the second transaction reads the same last entry, takes the same number
    and fails on the primary key when the first commits: a consent or login recorded inside a
    request would then fail with a 500 under load.  (A mutation run found no test for this.)
    SQLite serialises writers by itself (``BEGIN IMMEDIATE``); there the test has nothing to
    show.
    """
    db = services.db
    if db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has a single writer")
    from sqlalchemy import text

    outcome: list[object] = []

    def second() -> None:
        try:
            with db.transaction() as session:
                outcome.append(audit.record(session, "test.second", actor="b").seq)
        except Exception as exc:  # reported below, not swallowed
            outcome.append(exc)

    with db.transaction() as first:
        first_seq = audit.record(first, "test.first", actor="a").seq
        worker = threading.Thread(target=second)
        worker.start()
        # Wait (not sleep-and-hope) until the second writer is blocked on a lock we hold.
        with db.engine.connect() as probe:
            for _ in range(2000):
                waiting = probe.execute(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ).scalar_one()
                if waiting:
                    break
                worker.join(0.005)
            else:
                raise AssertionError("the second writer never waited for the first")
    worker.join(30)
    assert outcome == [first_seq + 1]
    with db.session() as session:
        assert audit.verify(session).ok


# ------------------------------------------------------------ record_now (own transaction)
def test_record_now_retries_when_the_number_was_taken(services, monkeypatch):
    """A concurrent writer took the number: record_now tries again in a fresh transaction."""
    real = audit.record
    calls: list[str] = []

    def taken_once(session, action, **kwargs):
        calls.append(action)
        if len(calls) == 1:
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return real(session, action, **kwargs)

    monkeypatch.setattr(audit, "record", taken_once)
    audit.record_now(services.db, "test.retry", actor="a", details={"n": 1})
    assert calls == ["test.retry", "test.retry"]
    with services.db.session() as session:
        stored = session.query(AuditEvent).filter_by(action="test.retry").one()
        assert stored.details == {"n": 1} and audit.verify(session).ok


def test_record_now_gives_up_loudly(services, monkeypatch):
    """Never drop an audit entry silently: after the retries it raises."""

    def always_taken(session, action, **kwargs):
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(audit, "record", always_taken)
    with pytest.raises(RuntimeError, match="audit trail"):
        audit.record_now(services.db, "test.lost", actor="a")
