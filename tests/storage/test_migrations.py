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


def test_email_addresses_are_folded_unless_two_would_collide(tmp_path):
    """0005_email_lower (issue 14 item 10): stored addresses become lower case, except two
    that differ only in case, which are left for an operator."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from idp.storage.migrate import upgrade
    from idp.storage.models import User

    url = f"sqlite:///{tmp_path / 'fold.db'}"
    upgrade(url, "0004_cas")
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        # Core inserts name only the columns given (and those with defaults): columns added
        # by later revisions do not exist yet at 0004.
        for uid, email in (("a", "Li.Ming@Example.CN"), ("b", "Twin@x.cn"), ("c", "twin@X.cn")):
            session.execute(
                User.__table__.insert().values(id=uid, kind="citizen", name="n", email=email)
            )
    upgrade(url)
    with engine.connect() as conn:
        emails = dict(conn.execute(text("SELECT id, email FROM users")).all())
    engine.dispose()
    assert emails == {"a": "li.ming@example.cn", "b": "Twin@x.cn", "c": "twin@X.cn"}


def test_the_schema_check_knows_alembics_head_and_revisions():
    """``require_current_schema`` checks without Alembic (a worker need not hold it): its
    head and its list of revisions must be Alembic's own, or it would refuse a current
    database or call an older one newer."""
    from alembic.script import ScriptDirectory

    from idp.storage.migrate import HEAD, MIGRATIONS, known_revisions

    script = ScriptDirectory(str(MIGRATIONS))
    assert script.get_heads() == [HEAD]
    assert known_revisions() == {r.revision for r in script.walk_revisions()}
