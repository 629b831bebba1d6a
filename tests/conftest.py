"""Shared fixtures: a real database per run (SQLite or PostgreSQL), the app, flow helpers.

``YITONG_TEST_DB=sqlite`` (default) or ``postgres`` selects the backend; ``make test`` runs
the suite once with each.  The run creates its own database and drops it afterwards.  A test
that never touches the run's database (no ``database_url`` in its fixtures, no ``postgres``
mark) tests nothing the backend changes, so the PostgreSQL pass leaves it to the SQLite pass;
``YITONG_TEST_EVERYTHING=1`` runs it there too.  Outside
CI a missing service skips with a reason; with ``CI=true`` it fails (never skips).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import TEST_KEK, Citizen, RegisteredClient, make_settings

pytest_plugins: list[str] = [
    "tests.services.slapd",
    "tests.services.browser",
    "tests.services.redis",
]

IN_CI = os.environ.get("CI", "").lower() == "true"


def _share_url_builders() -> None:
    """Every test builds a fresh app, and Werkzeug compiles two URL-builder functions per rule
    (with ``compile()``) for each: 0.14 s of the 0.18 s ``create_app`` costs.  The generated
    code depends only on the rule's text, trace, defaults and converters, and reaches the rule
    through its bound ``self``, so one function per such key serves every app of the run.
    Production builds its app once per worker and keeps Werkzeug as it is."""
    from werkzeug.routing.rules import Rule

    compile_builder = Rule._compile_builder
    made: dict[tuple[Any, ...], Any] = {}

    def shared(self: Rule, append_unknown: bool = True) -> Any:
        key = (
            self.rule,
            tuple(self._trace),
            tuple(sorted((k, repr(v)) for k, v in (self.defaults or {}).items())),
            tuple(sorted((name, type(c)) for name, c in self._converters.items())),
            append_unknown,
        )
        if key not in made:
            made[key] = compile_builder(self, append_unknown)
        return made[key]

    Rule._compile_builder = shared  # type: ignore[method-assign]


_share_url_builders()

#: Fixtures through which a test reaches the run's database.
DATABASE_FIXTURES = frozenset({"database_url", "postgres_server"})


def uses_database(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & DATABASE_FIXTURES) or item.get_closest_marker("postgres") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass, drop the tests that the SQLite pass already ran identically."""
    if os.environ.get("YITONG_TEST_DB", "sqlite") != "postgres":
        return
    if os.environ.get("YITONG_TEST_EVERYTHING") == "1":
        return
    kept = [item for item in items if uses_database(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if not uses_database(i)])
        items[:] = kept


def missing(reason: str) -> None:
    """Skip outside CI, fail in CI (a missing component is a failure there)."""
    if IN_CI:
        pytest.fail(f"required test component missing in CI: {reason}")
    pytest.skip(reason)


def _postgres_admin_url() -> str:
    return os.environ.get("YITONG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this run (URL usable by SQLAlchemy); dropped at the end."""
    import psycopg

    admin = _postgres_admin_url()
    name = f"yitong_t_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            # The run's throwaway database need not wait for the disk at each commit (the
            # fault drills, which test durability, run on a PostgreSQL of their own).
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL unreachable at {admin}: {exc}")
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The run's database, migrated to head once."""
    from idp.storage.migrate import upgrade

    backend = os.environ.get("YITONG_TEST_DB", "sqlite")
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_server")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'yitong.db'}"
    upgrade(url)
    return url


KEEP_TABLES = {"signing_keys", "alembic_version"}


@functools.cache
def _cleaning_engine(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url, pool_pre_ping=True)  # a test may end every backend


def _truncate(url: str) -> None:
    """Empty every table but the keys (generated once per run) between tests.

    ``DELETE`` in reverse dependency order on both backends: PostgreSQL's ``TRUNCATE`` of all
    tables took about 0.4 s a test (it swaps every table's files), ``DELETE`` of a test's few
    rows about 0.01 s.  Neither resets sequences, so nothing else changes.
    """
    from sqlalchemy import text

    from idp.storage.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in KEEP_TABLES]
    with _cleaning_engine(url).begin() as conn:
        for t in tables:
            conn.execute(text(f'DELETE FROM "{t}"'))


@pytest.fixture
def instance_dir(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Tests override settings by redefining this fixture or using ``make_app``."""
    return {}


@pytest.fixture
def make_app(database_url: str, instance_dir: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        from idp.app import create_app

        app = create_app(make_settings(database_url, instance_dir, **overrides))
        app.extensions["yitong"].keys.ensure_keys()
        apps.append(app)
        return app

    _truncate(database_url)
    yield factory
    for app in apps:
        app.extensions["yitong"].db.dispose()


@pytest.fixture
def app(make_app: Any, settings_overrides: dict[str, Any]) -> Flask:
    return make_app(**settings_overrides)  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def services(app: Flask) -> Any:
    return app.extensions["yitong"]


@pytest.fixture
def citizen(app: Flask) -> Citizen:
    return Citizen.create(app)


@pytest.fixture
def rp(app: Flask) -> RegisteredClient:
    """A confidential relying party with one redirect URI and the standard scopes."""
    return RegisteredClient.create(app)


@pytest.fixture
def public_rp(app: Flask) -> RegisteredClient:
    return RegisteredClient.create(
        app, public=True, redirect_uris=["http://127.0.0.1/callback"], name="Native app"
    )


__all__ = ["TEST_KEK", "missing"]
