"""Pooled PostgreSQL connections are checked at checkout without a round trip (issue 12).

``idp.storage.db._idle_connection_alive`` replaced ``pool_pre_ping``: a connection the server
ended while it sat in the pool (restart, ``pg_terminate_backend``) is dropped at checkout and
replaced, so the request that draws it still succeeds (checklist 114: a database restart
costs no request) — and a healthy connection is handed out without any query.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from idp.storage.db import Database


@pytest.fixture
def pg(database_url: str) -> Database:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (SQLite has no server to lose)")
    db = Database(database_url)
    yield db
    db.dispose()


def _statements(db: Database) -> list[str]:
    seen: list[str] = []
    for engine in db.engines:
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_checklist_114_healthy_pooled_connection_costs_no_extra_statement(pg: Database) -> None:
    with pg.reads() as session:
        session.execute(text("SELECT 1"))
    seen = _statements(pg)
    with pg.reads() as session:
        assert session.execute(text("SELECT 2")).scalar() == 2
    assert seen == ["SELECT 2"]  # no ping before it


def test_checklist_114_connection_ended_by_the_server_is_replaced_at_checkout(
    pg: Database,
) -> None:
    with pg.reads() as session:
        first_pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
    assert pg.autocommit_engine.pool.checkedin() == 1  # reads() pool
    other = Database(pg.url)
    try:
        with other.reads() as session:
            ended = session.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": first_pid}
            ).scalar()
        assert ended is True  # waited (up to 5 s) until the backend had exited
    finally:
        other.dispose()
    with pg.reads() as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
    assert pid != first_pid
    assert pg.autocommit_engine.pool.checkedin() == 1  # reads() pool
