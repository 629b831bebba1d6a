"""Schema management through Alembic: ``yitong init`` and the test fixtures call these.

:func:`require_current_schema` is what every command but ``init`` (and the server, before it
serves) calls first: a database that was never initialised, or whose schema is older than
this code, is refused with one clear sentence instead of SQL errors at the first query
(issue 14, item 11).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from idp.storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"

NOT_INITIALISED = (
    "the database is not initialised (or its schema is older than this version): run `yitong init`"
)


class SchemaNotCurrentError(Exception):
    """The database's schema revision is not this code's Alembic head; the message says why."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def _check(engine: Engine) -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    heads = set(script.get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current == heads:
        return
    for revision in current:
        try:
            known = script.get_revision(revision) is not None
        except CommandError:
            known = False
        if not known:
            raise SchemaNotCurrentError(
                f"the database schema (revision {revision}) is newer than this version of "
                "Yitong: run the matching version"
            )
    raise SchemaNotCurrentError(NOT_INITIALISED)


def require_current_schema(db: Database | str) -> None:
    """Raise :class:`SchemaNotCurrentError` unless the database is at this code's head revision.

    ``db`` is the app's :class:`Database` or a database URL (``wsgi.py`` checks before it
    builds the app, so that a server never starts on a database it cannot use).
    """
    if isinstance(db, Database):
        _check(db.read_engine)  # a read: on SQLite the writer engine would take the write lock
        return
    temporary = Database(db)
    try:
        _check(temporary.read_engine)
    finally:
        temporary.dispose()
