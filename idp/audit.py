"""Append-only, hash-chained audit trail.

Each entry's digest is SHA-256 over a canonical JSON of its fields and the previous entry's
digest, so editing, deleting or reordering any entry breaks every digest after it and
``yitong audit verify`` names the first entry that no longer matches.  Entries are numbered
densely from 1; the next number is taken under the same transaction that inserts the row
(the primary key makes a concurrent duplicate fail and retry), so the chain never forks.

Never record secrets, tokens, key material or full identity numbers here: ``details`` is
checked against a list of forbidden keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import metrics
from idp.storage.db import Database
from idp.storage.models import AuditEvent, utcnow

log = logging.getLogger("yitong.audit")

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x59_41_55_44  # "YAUD"
FORBIDDEN_KEYS = frozenset(
    {
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
    }
)


#: The stored columns the digest covers, in the canonical JSON (keys sorted there).  Together
#: with ``CHAIN_FIELDS`` this must name every column of ``audit_events``:
#: ``tests/test_audit.py`` tampers each column of the model in turn and fails for a column
#: that is in neither, so a new column cannot be added without being hashed.  Adding a name
#: here changes the digest of every existing entry: that needs a chain version, not an edit.
HASHED_FIELDS: tuple[str, ...] = (
    "seq",
    "at",
    "actor",
    "action",
    "target",
    "outcome",
    "ip",
    "details",
)
#: Covered by the chain itself: ``prev_digest`` is hashed as the prefix and compared with the
#: previous entry's digest; ``digest`` is recomputed and compared.
CHAIN_FIELDS: tuple[str, ...] = ("prev_digest", "digest")


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return value


def _canonical(event: AuditEvent, prev_digest: str) -> bytes:
    """The bytes the digest is taken over: the previous digest, then the entry as sorted JSON.

    The instant is fixed to UTC with microseconds so the same entry hashes alike whichever
    database returned it.
    """
    fields = {name: _json_value(getattr(event, name)) for name in HASHED_FIELDS}
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return (prev_digest + payload).encode("utf-8")


def _digest(event: AuditEvent, prev_digest: str) -> str:
    return hashlib.sha256(_canonical(event, prev_digest)).hexdigest()


# Run for every audited event: built once (building costs more than running the cached form).
_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_LAST = select(AuditEvent.seq, AuditEvent.digest).order_by(AuditEvent.seq.desc()).limit(1)
_INSERT = insert(cast(Table, AuditEvent.__table__))
_COLUMNS = (*HASHED_FIELDS, *CHAIN_FIELDS)


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    target: str | None = None,
    outcome: str = "success",
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event inside the caller's transaction (it commits with the change it records)."""
    details = dict(details or {})
    leaked = FORBIDDEN_KEYS.intersection(details)
    if leaked:
        raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
    if session.get_bind().dialect.name == "postgresql":
        # One appender at a time until commit, so two transactions never take the same
        # number (SQLite's single writer gives the same guarantee by itself).
        session.execute(_LOCK, {"k": AUDIT_LOCK_KEY})
    last = session.execute(_LAST).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    event = AuditEvent(
        seq=seq,
        at=utcnow(),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        ip=ip,
        details=details,
        prev_digest=prev,
    )
    event.digest = _digest(event, prev)
    # A plain table INSERT in the caller's transaction: the unit of work's bookkeeping for
    # one append-only row cost as much as the statement.  The returned event is not
    # attached to the session.
    session.execute(_INSERT, {name: getattr(event, name) for name in _COLUMNS})
    log.info("audit %s actor=%s target=%s outcome=%s", action, actor, target, outcome)
    metrics.audited(action, outcome, target, details)
    return event


def record_now(db: Database, action: str, **kwargs: Any) -> None:
    """Record in a transaction of its own, retrying when a concurrent writer took the number."""
    for _attempt in range(20):
        try:
            with db.transaction() as session:
                record(session, action, **kwargs)
            return
        except IntegrityError:
            continue
    raise RuntimeError("could not append to the audit trail")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    problem: str | None = None
    seq: int | None = None


def verify(session: Session) -> VerifyResult:
    """Walk the chain; report the first missing, reordered or edited entry."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)):
        if event.seq != expected_seq:
            return VerifyResult(False, count, f"entry {expected_seq} is missing", expected_seq)
        if event.prev_digest != prev:
            return VerifyResult(
                False, count, f"entry {event.seq} does not follow entry {event.seq - 1}", event.seq
            )
        if _digest(event, prev) != event.digest:
            return VerifyResult(False, count, f"entry {event.seq} was altered", event.seq)
        prev = event.digest
        expected_seq += 1
        count += 1
    return VerifyResult(True, count)


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
