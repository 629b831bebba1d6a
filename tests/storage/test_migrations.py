"""Alembic migrations and the models agree, on the backend this run uses."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from idp.storage.models import Base


def test_migrations_match_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": False, "render_as_batch": True}
        )
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], (
        f"models and migrations differ; run scripts/regen-initial-migration.sh: {diff}"
    )


def test_upgrade_is_idempotent(database_url):
    from idp.storage.migrate import upgrade

    upgrade(database_url)  # already at head: a no-op, no error
