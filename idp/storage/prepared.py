"""Statements compiled once per dialect and run on the DBAPI connection: the hot paths.

The token endpoint's inserts and the token lookup are most of their requests' work, and
SQLAlchemy's per-statement machinery (compiling the cache key, a cursor description and a
processor per column, identity-mapped instances) cost more than the database did.  Each
statement here, its parameter order and each column's bind or result processor (UTC
datetimes, JSON, booleans) still come from SQLAlchemy, so what is stored and read is exactly
what the ORM or Core would store and read.

Every statement goes through :func:`_execute` (on a session's connection, or outside any
session on this thread's own autocommit connection, :meth:`Database.hot`): the engine's
``before_cursor_execute`` listeners hear of it (statement counts: bench/profile.py, the
tests), and a driver error is raised as SQLAlchemy's own (``is_outage`` sees it alike; a lost
connection is invalidated or dropped, never used again), with its parameters hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, Table, bindparam
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from idp.storage.db import Database


def _execute(
    engine: Engine,
    driver: Any,
    sql: str,
    args: Any,
    invalidate: Callable[[BaseException], None],
    connection: Connection | None = None,
    cursor: Any = None,
) -> Any:
    """Run ``sql`` on ``driver`` (the DBAPI connection), or on its ``cursor`` when given;
    the cursor.

    The engine's ``before_cursor_execute`` listeners hear of it; a driver error is raised as
    SQLAlchemy raises it, bound values hidden, and a lost connection is ``invalidate``d.
    """
    hooks = engine.dispatch.before_cursor_execute
    if hooks:
        hooks(connection, None, sql, args, None, False)
    try:
        return (cursor or driver).execute(sql, args)
    except engine.dialect.loaded_dbapi.Error as exc:
        dialect = engine.dialect
        lost = bool(dialect.is_disconnect(exc, driver, None)) or bool(
            getattr(driver, "closed", False)
        )
        if lost:
            invalidate(exc)
        raise DBAPIError.instance(
            sql,
            args,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,  # bound values never reach a log
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc


def _in_session(connection: Connection, sql: str, args: Any) -> Any:
    """:func:`_execute` on the driver of a session's connection."""
    driver = connection.connection.driver_connection
    assert driver is not None
    return _execute(connection.engine, driver, sql, args, connection.invalidate, connection)


class PreparedInsert:
    """An INSERT compiled once per dialect and run on the DBAPI connection directly.

    Minting is the hot path of the token endpoint, and SQLAlchemy's per-statement machinery
    costs about as much as SQLite's own work for these rows (bench/token_endpoints.py).  The
    statement, its parameter order and each column's bind processor (UTC datetimes, JSON) still
    come from SQLAlchemy, so the stored values are exactly what the ORM would store; the
    statement runs inside the session's transaction, which the caller commits.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = [c.name for c in table.columns]
        self._prepared: dict[str, tuple[str, Any, list[tuple[int, Any]]]] = {}

    def _prepare(self, dialect: Dialect) -> tuple[str, Any, list[tuple[int, Any]]]:
        stmt = self.table.insert().values({c: bindparam(c) for c in self.columns})
        compiled = stmt.compile(dialect=dialect)
        order = list(compiled.positiontup or []) if dialect.paramstyle == "qmark" else None
        return compiled.string, order, self.processors(dialect)

    def processors(self, dialect: Dialect) -> list[tuple[int, Any]]:
        """(position in :attr:`columns`, bind processor) of the columns that have one: most
        (strings, integers) have none, and are not looked at again per row."""
        processors = []
        for i, column in enumerate(self.table.columns):
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((i, process))
        return processors

    def prepared(self, dialect: Dialect) -> tuple[str, Any, list[tuple[int, Any]]]:
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            prepared = self._prepared[dialect.name] = self._prepare(dialect)
        return prepared

    def bind(self, processors: list[tuple[int, Any]], values: dict[str, Any]) -> list[Any]:
        """``values`` as the DBAPI takes them (each column's own bind processor), in the
        order of :attr:`columns`."""
        args = list(map(values.get, self.columns))
        for i, process in processors:
            value = args[i]
            if value is not None:
                args[i] = process(value)
        return args

    def __call__(self, session: Session, values: dict[str, Any]) -> None:
        if session.new or session.dirty:
            session.flush()  # rows this one may reference (foreign keys) go first
        connection = session.connection()  # begins the session's transaction if needed
        sql, order, processors = self.prepared(connection.dialect)
        params = dict(zip(self.columns, self.bind(processors, values), strict=True))
        args = tuple(params[name] for name in order) if order is not None else params
        _in_session(connection, sql, args).close()


#: A bound parameter of a ``pyformat`` statement, or the escaped ``%`` of a literal.
_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


class PreparedInsertChain:
    """Several rows, parents first, stored by one statement that commits itself (PostgreSQL).

    ``WITH r0 AS (INSERT …), r1 AS (INSERT …) INSERT …`` is atomic like a transaction, and
    foreign keys between the rows hold (PostgreSQL checks them at the end of the statement).
    Run in autocommit it is one round trip to the server, where a transaction of separate
    INSERTs is four or more (BEGIN, each INSERT, COMMIT): for a client-credentials token, the
    database round trips were most of the request's CPU (docs/benchmarks.md).

    It runs on this thread's own connection (:meth:`Database.hot`), its SQL written once
    with PostgreSQL's own ``$1`` placeholders for that connection's ``RawCursor``: the
    parameters are one list, each insert's columns in order, as :meth:`PreparedInsert.bind`
    makes them.  Whether the server prepares it is the connection's own setting
    (psycopg's ``prepare_threshold``, which a pooler in front of the server may need off).
    """

    def __init__(self, *inserts: PreparedInsert) -> None:
        self.inserts = inserts
        self._sql: str | None = None

    def _compile(self, dialect: Dialect) -> str:
        parts = []
        for i, insert in enumerate(self.inserts):
            stmt = insert.table.insert().values({c: bindparam(f"r{i}_{c}") for c in insert.columns})
            parts.append(str(stmt.compile(dialect=dialect)))
        ctes = ", ".join(f"r{i} AS ({sql})" for i, sql in enumerate(parts[:-1]))
        pyformat = f"WITH {ctes} {parts[-1]}"
        # $n is the place in the argument list: r0's columns, then r1's, and so on.
        position = {
            f"r{i}_{c}": n
            for n, (i, c) in enumerate(
                (i, c) for i, insert in enumerate(self.inserts) for c in insert.columns
            )
        }
        return _PYFORMAT.sub(lambda m: f"${position[m[1]] + 1}" if m[1] else "%", pyformat)

    def run(self, db: Database, rows: list[dict[str, Any]]) -> None:
        """Store ``rows`` (one per insert, in order) on this thread's autocommit connection
        (:meth:`Database.hot`: checked before use like a pooled one)."""
        engine = db.autocommit_engine
        hot = db.hot()
        try:
            dialect = engine.dialect
            if self._sql is None:
                self._sql = self._compile(dialect)
            args: list[Any] = []
            for insert, values in zip(self.inserts, rows, strict=True):
                args += insert.bind(insert.prepared(dialect)[2], values)
            _execute(engine, hot.driver, self._sql, args, db.drop_hot, cursor=hot.cursor)
        except Exception:
            if hot.driver.closed:
                db.drop_hot()  # lost before or after the statement: never used again
            raise


class PreparedSelect:
    """A SELECT compiled once per dialect and run on the session's DBAPI connection.

    The token lookup is most of an introspection's or userinfo's work, and SQLAlchemy's
    result machinery (a cursor description and a row processor per column, per query) cost
    more than the database did.  As with :class:`PreparedInsert`, the statement and each
    column's result processor (UTC datetimes, JSON, booleans) come from SQLAlchemy, so the
    values are exactly what a Core query returns.  Parameters go to the driver as given
    (strings here).  It runs inside the session's transaction, after the session's pending
    changes are flushed (as the ORM's autoflush would), tells the engine's
    ``before_cursor_execute`` listeners (statement counts, bench/profile.py) like any
    statement, and a driver error is raised as SQLAlchemy's own (``is_outage`` sees it alike;
    a lost connection is invalidated).
    """

    def __init__(self, stmt: Select[Any]) -> None:
        self.stmt = stmt
        self._prepared: dict[str, tuple[str, list[str] | None, list[tuple[int, Any]]]] = {}

    def _prepare(self, dialect: Dialect) -> tuple[str, list[str] | None, list[tuple[int, Any]]]:
        compiled = self.stmt.compile(dialect=dialect)
        order = list(compiled.positiontup or []) if dialect.paramstyle == "qmark" else None
        processors = []
        for i, column in enumerate(self.stmt.selected_columns):
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                processors.append((i, process))
        return compiled.string, order, processors

    def first(self, session: Session, params: dict[str, Any]) -> list[Any] | None:
        """The first row's values, processed; None when there is none."""
        if session.autoflush:
            session.flush()  # returns at once when there is nothing to write
        connection = session.connection()  # begins the session's transaction if needed
        dialect = connection.dialect
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            prepared = self._prepared[dialect.name] = self._prepare(dialect)
        sql, order, processors = prepared
        args: Any = [params[name] for name in order] if order is not None else params
        cursor = _in_session(connection, sql, args)
        rows = cursor.fetchall()
        cursor.close()
        if not rows:
            return None
        values = list(rows[0])
        for i, process in processors:
            if values[i] is not None:
                values[i] = process(values[i])
        return values
