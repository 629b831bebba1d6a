"""Each thread's own autocommit connection, :meth:`idp.storage.db.Database.hot` (issue 12).

The client-credentials token is stored by one statement on it instead of a pool checkout and
return per statement; it must keep what a pooled connection guarantees: checked before use
(a connection the server ended is replaced, so a restart costs no request, checklist 114),
never used again once lost, never used in a forked child, statements heard by the engine's
listeners, driver errors raised as SQLAlchemy's with bound values hidden.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from idp.oauth.tokens import _insert_grant_and_token
from idp.storage.db import Database, HotConnection
from idp.storage.prepared import _execute
from tests.oauth import tokenkit as kit


@pytest.fixture
def pg(database_url: str) -> Iterator[Database]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (SQLite stores these rows in the request's session)")
    db = Database(database_url)
    yield db
    db.dispose()


def _backend(hot: HotConnection) -> int:
    row = hot.cursor.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _end(url: str, backend: int) -> None:
    """End ``backend`` from another connection, as a restart or an operator would."""
    other = Database(url)
    try:
        with other.reads() as session:
            ended = session.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend}
            ).scalar()
        assert ended is True  # waited (up to 5 s) until the backend had exited
    finally:
        other.dispose()


def test_one_connection_per_thread_in_autocommit_reused_without_a_ping(pg: Database) -> None:
    hot = pg.hot()
    assert hot.driver.autocommit
    seen: list[str] = []
    for engine in pg.engines:
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    assert pg.hot() is hot and _backend(pg.hot()) == _backend(hot)
    assert seen == []  # the check before use sends nothing
    theirs: list[int] = []
    worker = threading.Thread(target=lambda: theirs.append(_backend(pg.hot())))
    worker.start()
    worker.join()
    assert theirs and theirs[0] != _backend(hot)


def test_checklist_114_connection_ended_by_the_server_is_replaced_before_use(
    pg: Database,
) -> None:
    hot = pg.hot()
    first = _backend(hot)
    _end(pg.url, first)
    again = pg.hot()
    assert again is not hot and hot.driver.closed  # the dead one was closed, not kept
    assert _backend(again) != first


def test_connection_lost_during_a_statement_is_never_used_again(pg: Database) -> None:
    hot = pg.hot()
    _end(pg.url, _backend(hot))
    # The statement is sent without the check before use, as when the server goes away
    # between the check and the statement.
    with pytest.raises(DBAPIError) as caught:
        _execute(pg.autocommit_engine, hot.driver, "SELECT 1", [], pg.drop_hot, cursor=hot.cursor)
    assert caught.value.connection_invalidated
    assert hot.driver.closed
    assert pg.hot() is not hot


def test_connection_made_before_a_fork_is_neither_used_nor_closed_in_the_child(
    pg: Database,
) -> None:
    inherited = pg.hot()
    parent_pid = inherited.pid
    inherited.pid = parent_pid + 1  # as seen from a child: made by another process
    try:
        mine = pg.hot()
        assert mine is not inherited
        assert not inherited.driver.closed  # the parent's session with the server lives on
        assert inherited.driver.execute("SELECT 1").fetchone() == (1,)
    finally:
        inherited.pid = parent_pid
        inherited.close()


def test_dispose_closes_every_threads_connection(pg: Database) -> None:
    kept: list[HotConnection] = []
    worker = threading.Thread(target=lambda: kept.append(pg.hot()))
    worker.start()
    worker.join()
    ours = pg.hot()
    pg.dispose()
    assert ours.driver.closed and kept[0].driver.closed


def _rows(app: Flask) -> list[dict[str, Any]]:
    api = kit.api_client(app)
    now = dt.datetime.now(dt.UTC)
    grant = {
        "id": f"g-{now.timestamp()}",
        "client_id": api.client_id,
        "scope": "hr:read",
        "resources": [],
        "offline": False,
        "amr": [],
        "created_at": now,
        "expires_at": now + dt.timedelta(hours=1),
    }
    token = {
        "id": f"t-{now.timestamp()}",
        "digest": "secret-digest-value",
        "kind": "access",
        "grant_id": grant["id"],
        "client_id": api.client_id,
        "scope": "hr:read",
        "audience": [api.client_id],
        "created_at": now,
        "expires_at": now + dt.timedelta(hours=1),
    }
    return [grant, token]


def test_token_rows_stored_on_it_are_heard_and_errors_hide_their_values(
    app: Flask, pg: Database
) -> None:
    db: Database = app.extensions["yitong"].db
    if db.is_sqlite:
        pytest.skip("PostgreSQL only")
    rows = _rows(app)
    seen: list[str] = []
    for engine in db.engines:
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    _insert_grant_and_token.run(db, rows)
    assert len(seen) == 1 and seen[0].startswith("WITH r0 AS (INSERT INTO grants")
    hot = db.hot()
    with db.reads() as session:
        stored = session.execute(
            text("SELECT kind, audience FROM tokens WHERE digest = 'secret-digest-value'")
        ).one()
    assert tuple(stored) == ("access", rows[1]["audience"])
    with pytest.raises(DBAPIError) as caught:
        _insert_grant_and_token.run(db, rows)  # the same primary keys again
    assert "secret-digest-value" not in str(caught.value)
    assert "parameters hidden" in str(caught.value)
    assert not caught.value.connection_invalidated
    assert db.hot() is hot  # a refused row does not cost the connection
