"""The one token lookup, :func:`idp.oauth.tokens.find_token` (issue 12).

It reads plain rows (:mod:`idp.storage.rows`) with a prepared statement on the driver, not
ORM entities; liveness, introspection, userinfo, the bridge, refresh and token exchange all
take what it returns.  So every value must be what the ORM reads (type and time zone too),
and the statement must still behave like any other: seen by the engine's listeners, its
driver errors raised as SQLAlchemy's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from idp.oauth.tokens import find_token
from idp.storage.models import Grant, Token, User
from idp.storage.prepared import PreparedSelect
from tests.oauth import tokenkit as kit


def test_found_rows_hold_what_the_orm_reads(app: Any, client: Any, citizen: Any, rp: Any) -> None:
    body = kit.code_tokens(client, rp, citizen, scope="openid profile offline_access")
    changed = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    kit.set_columns(
        app, User, citizen.id, attributes={"title": "x"}, groups=["g"], password_changed_at=changed
    )
    db = app.extensions["yitong"].db
    cases = [(body["access_token"], "access"), (body["refresh_token"], "refresh")]
    for raw, kind in [*cases, (body["access_token"], None)]:
        with db.reads() as session:
            found = find_token(session, raw, kind)
        assert found is not None and found.user is not None
        assert found.token.kind == (kind or "access")
        with db.session() as session:
            entities = (
                session.get(Token, found.token.id),
                session.get(Grant, found.grant.id),
                session.get(User, found.user.id),
            )
        for row, entity in zip(found, entities, strict=True):
            for name in row._fields:
                value, expected = getattr(row, name), getattr(entity, name)
                assert value == expected and type(value) is type(expected), name
                if isinstance(value, dt.datetime):
                    assert value.utcoffset() == dt.timedelta(0), name
        assert found.user.id_number_ciphertext  # verified claims are opened from the row
        assert found.user.is_active


def test_unknown_token_or_other_kind_is_not_found(
    app: Any, client: Any, citizen: Any, rp: Any
) -> None:
    at = kit.code_tokens(client, rp, citizen)["access_token"]
    with app.extensions["yitong"].db.reads() as session:
        assert find_token(session, at, "refresh") is None
        for raw in ("", "garbage", "x" * 5000):
            assert find_token(session, raw) is None


def test_the_lookup_is_one_statement_the_engine_listeners_see(
    app: Any, client: Any, citizen: Any, rp: Any
) -> None:
    at = kit.code_tokens(client, rp, citizen)["access_token"]
    db = app.extensions["yitong"].db
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    for engine in db.engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        with db.reads() as session:
            assert find_token(session, at, "access") is not None
    finally:
        for engine in db.engines:
            event.remove(engine, "before_cursor_execute", count)
    assert len(seen) == 1 and "FROM tokens JOIN grants" in seen[0]


def test_a_driver_error_is_raised_as_sqlalchemys(app: Any) -> None:
    """As SQLAlchemy raises it: the same classes (``is_outage`` reads them), and bound values
    hidden from the message like every other statement's (ASVS 16.2.5)."""
    broken = PreparedSelect(
        select(Token.__table__.c.id).where(text("no_such_column = 1"), Token.digest == "secret")
    )
    with app.extensions["yitong"].db.reads() as session, pytest.raises(DBAPIError) as caught:
        broken.first(session, {"digest_1": "the-bound-value"})
    assert "no_such_column" in str(caught.value.orig)
    assert "the-bound-value" not in str(caught.value)
