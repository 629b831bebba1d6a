"""Several processes, one database: a rotation happens once however many workers see it due.

Each worker is a separate spawned process (nothing shared but the database), released at the
same instant by a barrier, with key generation slowed down so that the race is wide open.
On PostgreSQL the lock is ``pg_advisory_xact_lock``; on SQLite, ``BEGIN IMMEDIATE``.

The tests count the keys each process generated, not only those that were kept: without the
lock PostgreSQL would still end with one key each (the audit trail's dense sequence number
makes the second transaction fail and re-plan), but the loser would have generated keys, or
HSM objects, only to throw them away.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing

import pytest
from sqlalchemy import func, select

from idp.storage.db import Database
from idp.storage.models import SigningKey, utcnow
from keys.crypto import Kek
from keys.sql import SqlKeyStore
from keys.store import KeyState
from tests.keys import _workers

ALGS = ("ES256", "EdDSA")

pytestmark = pytest.mark.slow


def race(url: str, kek: Kek, now: dt.datetime, workers: int = 2) -> list[tuple[list[str], int]]:
    """Run ``rotate(now)`` in ``workers`` processes at once; each one's (changed kids, keys it
    generated)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_workers.rotate,
            args=(url, kek.to_text(), ALGS, now.isoformat(), barrier, out),
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    errors = [r for status, r in results if status != "ok"]
    assert errors == []
    return [r for _, r in results]


def states(db: Database) -> dict[tuple[str, str], int]:
    with db.session() as session:
        rows = session.execute(
            select(SigningKey.alg, SigningKey.state, func.count()).group_by(
                SigningKey.alg, SigningKey.state
            )
        ).all()
    return {(alg, state): n for alg, state, n in rows}


def test_two_processes_bootstrapping_at_once_make_one_key_each(
    db: Database, kek: Kek, database_url: str
) -> None:
    results = race(database_url, kek, utcnow())
    assert sorted(len(r) for r, _ in results) == [0, 2 * len(ALGS)]  # one did it all
    assert sum(n for _, n in results) == 2 * len(ALGS)  # and the other generated nothing
    assert states(db) == {(a, s): 1 for a in ALGS for s in ("active", "next")}


def test_two_processes_rotating_at_once_rotate_once(
    db: Database, kek: Kek, database_url: str
) -> None:
    # checklist 96: "a rotation happens once even when many workers see it due"
    start = utcnow()
    SqlKeyStore(db, kek, algorithms=ALGS, policy=_workers.POLICY).rotate(start)
    results = race(database_url, kek, start + dt.timedelta(days=91), workers=3)
    assert sorted(len(r) for r, _ in results) == [0, 0, 3 * len(ALGS)]
    assert sum(n for _, n in results) == len(ALGS)  # one new next key per alg, no waste
    assert states(db) == {
        (a, s): 1 for a in ALGS for s in (KeyState.ACTIVE, KeyState.NEXT, KeyState.RETIRED)
    }
