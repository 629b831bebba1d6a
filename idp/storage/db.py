"""Engine and sessions: one :class:`Database` per app, one SQLAlchemy session per request.

The same code runs on SQLite (the embedded default) and PostgreSQL.  SQLite gets WAL mode
and a busy timeout so that parallel requests (the races the checklist asks about) serialize
instead of failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg import Connection, RawCursor
from psycopg import OperationalError as psycopg_OperationalError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN, so compare-and-set updates never deadlock on upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _idle_connection_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling without a round trip (PostgreSQL, at pool checkout).

    ``pool_pre_ping`` sent a query and waited for its answer before every request: one round
    trip and about a tenth of the CPU of an introspection.  A pooled connection is idle, and
    the server never speaks on an idle connection of ours (we do not LISTEN), so a socket
    with something to read means the server ended it: a restart or ``pg_terminate_backend``
    sends a FATAL message and closes it, a killed server's kernel closes it.  Such a
    connection is dropped here (``DisconnectionError`` makes the pool open a fresh one for
    the same checkout), so a database restart still costs no request.  What this cannot see
    (a peer that vanished without closing: a host gone, a silent network partition) would
    also have stalled the ping; that request fails as a 503 and the pool reconnects.
    """
    if dbapi_connection.closed or getattr(dbapi_connection, "broken", False):
        raise DisconnectionError("connection closed")
    try:
        poller = select.poll()  # not select.select: it refuses descriptors above 1023
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
        readable = poller.poll(0)
    except (OSError, ValueError) as exc:
        raise DisconnectionError("connection socket unusable") from exc
    if readable:
        raise DisconnectionError("the server closed or spoke on an idle connection")


class HotConnection:
    """One thread's own autocommit driver connection (see :meth:`Database.hot`).

    Taken from the autocommit engine's pool and detached from it, so it was opened exactly
    as the pool opens its connections (the engine's URL and connect arguments, its connect
    events, the dialect's autocommit set-up) and closing it goes through the pool's close.
    ``cursor`` is kept for its life: a psycopg ``RawCursor`` (``$1`` placeholders, taken as
    they are, where a ``%(name)s`` query is parsed and its parameters reordered per call),
    and no cursor made and closed per statement.
    """

    __slots__ = ("__weakref__", "closed", "cursor", "driver", "fairy", "pid")

    def __init__(self, engine: Engine) -> None:
        self.fairy = engine.raw_connection()  # the checkout runs _idle_connection_alive
        driver = self.fairy.driver_connection  # before detach(), which clears it
        assert isinstance(driver, Connection)
        self.driver: Connection[Any] = driver
        self.fairy.detach()  # the pool opens another for its own users when it needs one
        self.cursor = RawCursor(self.driver)
        self.pid = os.getpid()
        self.closed = False

    def close(self) -> None:
        """Close it, unless it was inherited through a fork: that socket is the parent's,
        and closing it here would end the parent's session with the server."""
        if getattr(self, "closed", True):  # closed, or its __init__ failed
            return
        self.closed = True
        # A lost connection may fail to say goodbye; at interpreter exit (``__del__``) even
        # the os module may be gone.
        with contextlib.suppress(Exception):
            if self.pid == os.getpid():
                self.fairy.close()

    def __del__(self) -> None:  # the thread ended: its connection goes with it
        self.close()


class Database:
    """Owns the engine and hands out sessions; kept in ``app.extensions['yitong.db']``."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # hide_parameters: bound values (password hashes, phones, e-mails) never appear in
        # SQLAlchemy's exception messages or echo output, so never in a log (ASVS 16.2.5).
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "hide_parameters": True}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
            # Pooled: opening a SQLite connection (file, WAL index, schema, pragmas) costs
            # ~0.5 ms and closing the last one checkpoints the WAL, per request without a pool.
            # Unbounded overflow: idle connections hold no locks, waiting for one helps nobody.
            kwargs.update(poolclass=QueuePool, pool_size=5, max_overflow=-1)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_timeout=5)
        self.engine: Engine = create_engine(url, **kwargs)
        if not self.is_sqlite:
            event.listen(self.engine, "checkout", _idle_connection_alive)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is turned off so BEGIN is ours.
            event.listen(
                self.engine,
                "connect",
                lambda c, _r: setattr(c, "isolation_level", None),
            )
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._local = threading.local()
        # Side reads (key store, caches) inside a request must not queue behind the request's
        # own write lock on SQLite, so they use an engine whose transactions begin deferred.
        self.read_engine: Engine = self.engine
        if self.is_sqlite:
            self.read_engine = create_engine(url, **kwargs)
            event.listen(self.read_engine, "connect", _sqlite_pragmas)
        self.readmaker = sessionmaker(self.read_engine, expire_on_commit=False)
        # PostgreSQL: statements of a read-only request each run on their own (autocommit),
        # which saves the BEGIN and ROLLBACK round trips around a single SELECT.  A pool of
        # its own, whose connections stay in autocommit: no isolation switch at each checkout
        # and no ROLLBACK at each return (on the token-side requests that was about a seventh
        # of their Python work), and the one-statement token inserts run there too.
        self.autocommit_engine: Engine = self.read_engine
        if not self.is_sqlite:
            self.autocommit_engine = create_engine(
                url,
                **{**kwargs, "pool_size": 5, "max_overflow": 10},
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
            )
            event.listen(self.autocommit_engine, "checkout", _idle_connection_alive)
        self.autocommit_readmaker = sessionmaker(self.autocommit_engine, expire_on_commit=False)
        self._hot = threading.local()
        self._hot_all: weakref.WeakSet[HotConnection] = weakref.WeakSet()  # for dispose()
        self._hot_lock = threading.Lock()

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine (pool) of this database, each once: for listeners and disposal."""
        return tuple(
            {id(e): e for e in (self.engine, self.read_engine, self.autocommit_engine)}.values()
        )

    def session(self) -> Session:
        """A session whose transactions begin deferred (on SQLite: no write lock until a write).

        Use it for reads, in particular side reads made while a request holds its writer.
        """
        return self.readmaker()

    def reads(self) -> Session:
        """A session for lookups that need no transaction: each statement sees the latest
        committed state on its own (PostgreSQL autocommit; SQLite: :meth:`session`).

        For a request that reads one token and answers (introspection, userinfo); never for
        read-then-write sequences, which need :meth:`writer`.
        """
        return self.autocommit_readmaker()

    def writer(self) -> Session:
        """A session that takes the write lock when its transaction begins (SQLite
        ``BEGIN IMMEDIATE``), so read-then-write sequences never fail half-way."""
        return self.sessionmaker()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error.

        SQLite has one writer at a time: a second write transaction opened while this thread's
        request session holds the write lock would wait for itself.  So on SQLite, inside a
        request, the work runs in a savepoint of the request's session, which is then committed
        (what the request wrote so far is committed with it).
        """
        shared = getattr(self._local, "request_session", None) if self.is_sqlite else None
        if shared is not None:
            with shared.begin_nested():
                yield shared
            shared.commit()
            return
        with self.sessionmaker() as session, session.begin():
            yield session

    def bind_request_session(self, session: Session | None) -> None:
        """Tell :meth:`transaction` which session this thread's request writes through."""
        self._local.request_session = session

    def hot(self) -> HotConnection:
        """This thread's own driver (psycopg) connection in autocommit (PostgreSQL only).

        For the token endpoint's one-statement writes (:class:`idp.storage.prepared.
        PreparedInsertChain`): a pool checkout and return, with its listeners and
        bookkeeping, cost about a third of such a statement's Python work.  The guarantees
        of a pooled connection stay: before each use it is checked as the pool checks a
        connection at checkout (:func:`_idle_connection_alive`: one the server ended during
        a restart is replaced first, so a restart costs no request); one that failed is
        dropped by :meth:`drop_hot` and a new one opened by the next call; one made
        before a fork is never used (nor closed) in the child; :meth:`dispose` closes them.
        """
        assert not self.is_sqlite, "SQLite has no server connection to keep"
        mine: HotConnection | None = getattr(self._hot, "conn", None)
        if mine is not None:
            if mine.pid == os.getpid() and not mine.closed:
                try:
                    _idle_connection_alive(mine.driver, None, None)
                    return mine
                except DisconnectionError:
                    pass
            self.drop_hot()
        mine = HotConnection(self.autocommit_engine)
        with self._hot_lock:
            self._hot_all.add(mine)
        self._hot.conn = mine
        return mine

    def drop_hot(self, _reason: BaseException | None = None) -> None:
        """Close this thread's hot connection (lost or failed: it is never used again);
        the next :meth:`hot` opens a new one.  Takes the reason, as an invalidation
        handler does."""
        mine: HotConnection | None = getattr(self._hot, "conn", None)
        self._hot.conn = None
        if mine is not None:
            mine.close()

    def dispose(self) -> None:
        """Close every connection: the pools' and each thread's hot one (the arbiter does
        this before it forks the workers, wsgi.py)."""
        with self._hot_lock:
            hot = list(self._hot_all)
        for each in hot:
            each.close()
        for engine in self.engines:
            engine.dispose()


#: Failures that mean "the database did not answer", not "our code is wrong".
_OUTAGES = (OperationalError, InterfaceError, PoolTimeout, PendingRollbackError)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc``, or anything it was raised from, is the database being unreachable.

    During a restart the first sign is not always an ``OperationalError`` at the top: a flush
    that lost its connection leaves the session's next statement a ``PendingRollbackError``,
    a library may wrap the driver's error in its own, and a connection SQLAlchemy marked
    invalidated surfaces as a ``DBAPIError``.  Each is an outage (503), never a 500.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (*_OUTAGES, psycopg_OperationalError)):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
