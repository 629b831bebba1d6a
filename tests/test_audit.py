"""The hash-chained audit trail (issue 2 item 8): any edit, deletion or reordering is found."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

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


def test_secrets_are_refused_in_details(services):
    with services.db.transaction() as session, pytest.raises(ValueError, match="secrets"):
        audit.record(session, "x", actor="a", details={"password": "hunter2"})


def test_logins_and_client_changes_are_recorded(services, rp, citizen):
    with services.db.session() as session:
        actions = [e.action for e in session.query(AuditEvent).order_by(AuditEvent.seq)]
    assert "client.create" in actions and "user.register" in actions
