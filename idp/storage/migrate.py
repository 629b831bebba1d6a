"""Schema management: ``yitong init`` upgrades through Alembic; everything else only checks.

:func:`require_current_schema` is what every command but ``init`` (and the server, before it
serves) calls first: a database that was never initialised, or whose schema is older than
this code, is refused with one clear sentence instead of SQL errors at the first query
(issue 14, item 11).

The check reads ``alembic_version`` itself and compares it with :data:`HEAD`, without
importing Alembic: Alembic, Mako and Pygments cost a server worker about 8 MB it would hold
for nothing (issue 12 item 5).  ``tests/storage/test_migrations.py`` holds :data:`HEAD` and
:func:`known_revisions` equal to what Alembic reads from ``migrations/versions``, so they
cannot drift.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from idp.storage.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest revision in ``migrations/versions``: a new migration changes it (a test fails
#: until it does).
HEAD = "0014_device_grant"
_REVISION = re.compile(r"""^revision\b[^=\n]*=\s*["']([^"']+)["']""", re.MULTILINE)

NOT_INITIALISED = (
    "the database is not initialised (or its schema is older than this version): run `yitong init`"
)


class SchemaNotCurrentError(Exception):
    """The database's schema revision is not this code's Alembic head; the message says why."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def known_revisions() -> frozenset[str]:
    """Every revision this code has a migration for (each file's ``revision = "..."`` line)."""
    return frozenset(
        match.group(1)
        for path in (MIGRATIONS / "versions").glob("*.py")
        if (match := _REVISION.search(path.read_text("utf-8")))
    )


def _check(engine: Engine) -> None:
    with engine.connect() as conn:
        current: set[str] = set()
        if inspect(conn).has_table("alembic_version"):
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if current == {HEAD}:
        return
    unknown = sorted(current - known_revisions())
    if unknown:
        raise SchemaNotCurrentError(
            f"the database schema (revision {unknown[0]}) is newer than this version of "
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
