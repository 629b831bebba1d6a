"""The SSO session's activity clock in Redis, the row as its durable fallback (issue 12 item 2;
checklist 64, 66, 117).

Time moves through the ``now`` parameters of :func:`touch` and :func:`timed_out`, or by
writing old clocks into the row and Redis; nothing sleeps.  Two app objects on one database
and one Redis stand for two nodes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.interaction.sessions import (
    CLOCK,
    SessionTimeouts,
    last_seen,
    observe,
    start_session,
    timed_out,
    touch,
)
from idp.storage.hot import RedisStore
from idp.storage.models import SsoSession, User
from tests.helpers import Citizen, csrf_token

pytestmark = pytest.mark.redis

DEAD_REDIS = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
LIMITS = SessionTimeouts(idle=1800, absolute=43200)
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def services(app: Flask) -> Any:
    return app.extensions["yitong"]


def new_session(app: Flask, now: dt.datetime = T0) -> SsoSession:
    citizen = Citizen.create(app)
    with services(app).db.transaction() as session:
        user = session.get(User, citizen.id)
        _, row = start_session(session, user, LIMITS, amr=["pwd"], now=now)
    return row


def sign_in(app: Flask) -> tuple[FlaskClient, Citizen]:
    citizen = Citizen.create(app)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "login": citizen.email, "password": citizen.password}
    assert client.post("/login", data=data).status_code == 303
    return client, citizen


def row_of(app: Flask, user_id: str) -> SsoSession:
    with services(app).db.session() as session:
        row = session.scalars(select(SsoSession).where(SsoSession.user_id == user_id)).one()
        session.expunge(row)
        return row


def set_row_clock(app: Flask, user_id: str, when: dt.datetime) -> None:
    with services(app).db.transaction() as session:
        session.execute(
            update(SsoSession).where(SsoSession.user_id == user_id).values(last_seen_at=when)
        )


def set_redis_clock(hot: RedisStore, sid: str, when: dt.datetime) -> None:
    hot.put(CLOCK, sid, b"%d" % (when.timestamp() * 1000), 3600)


# ------------------------------------------------------------------ one node, moving `now`
def test_item2_touch_writes_redis_every_time_and_the_row_rarely(
    make_app: Any, redis_url: str
) -> None:
    app = make_app(redis_url=redis_url)
    hot = services(app).hot
    row = new_session(app)
    touch(row, LIMITS, T0 + 4 * MINUTE, observe(row, LIMITS, T0 + 4 * MINUTE, hot))
    assert row.last_seen_at == T0  # four minutes behind: the row is left alone
    assert last_seen(row, hot) == T0 + 4 * MINUTE
    ttl = hot.client.ttl(hot.key(CLOCK, row.id))
    assert LIMITS.idle - 5 < ttl <= LIMITS.idle + 1  # dies with the idle timeout
    # Idle is judged by the Redis clock: 29 minutes after the last request the session lives,
    # though the row's clock alone (no Redis) would say 33 minutes.
    later = T0 + 33 * MINUTE
    assert not timed_out(row, LIMITS, later, hot)
    assert timed_out(row, LIMITS, later, None)
    # ... and it still ends once idle longer than allowed.
    assert timed_out(row, LIMITS, T0 + 4 * MINUTE + dt.timedelta(seconds=1801), hot)
    # More than five minutes behind: the row is written too (the durable fallback).
    activity = observe(row, LIMITS, T0 + 6 * MINUTE, hot)
    assert activity.seen == T0 + 4 * MINUTE  # the request before this one, read as it is set
    assert last_seen(row, hot) == T0 + 6 * MINUTE
    touch(row, LIMITS, T0 + 6 * MINUTE, activity)
    assert row.last_seen_at == T0 + 6 * MINUTE


def test_item2_the_clock_lives_no_longer_than_the_session(make_app: Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url)
    hot = services(app).hot
    row = new_session(app)
    row.expires_at = T0 + dt.timedelta(seconds=100)  # absolute expiry before the idle one
    touch(row, LIMITS, T0, observe(row, LIMITS, T0, hot))
    assert 0 < hot.client.ttl(hot.key(CLOCK, row.id)) <= 101
    assert timed_out(row, LIMITS, T0 + dt.timedelta(seconds=100), hot)


def test_item2_without_its_redis_key_the_row_clock_decides(make_app: Any, redis_url: str) -> None:
    # Redis restarted empty: the row's (older) clock applies; never more lenient.
    app = make_app(redis_url=redis_url)
    hot = services(app).hot
    row = new_session(app)
    touch(row, LIMITS, T0 + 4 * MINUTE, observe(row, LIMITS, T0 + 4 * MINUTE, hot))
    hot.client.flushdb()
    assert last_seen(row, hot) == T0
    assert not timed_out(row, LIMITS, T0 + 29 * MINUTE, hot)
    assert timed_out(row, LIMITS, T0 + 31 * MINUTE, hot)


def test_item117_with_redis_down_the_row_clock_is_used_and_written(make_app: Any) -> None:
    app = make_app(redis_url=DEAD_REDIS)
    hot = services(app).hot
    row = new_session(app)
    assert last_seen(row, hot) == T0
    assert timed_out(row, LIMITS, T0 + 31 * MINUTE, hot)
    touch(
        row, LIMITS, T0 + MINUTE, observe(row, LIMITS, T0 + MINUTE, hot)
    )  # every 30 s, as without Redis
    assert row.last_seen_at == T0 + MINUTE


# ------------------------------------------------------------------ through the app
def test_item66_idle_timeout_is_enforced_by_the_redis_clock(make_app: Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url)
    hot = services(app).hot
    client, citizen = sign_in(app)
    assert client.get("/account").status_code == 200
    sid = row_of(app, citizen.id).id
    assert hot.peek(CLOCK, sid) is not None
    now = dt.datetime.now(dt.UTC)
    # The row not written for 40 minutes, Redis saw the browser a minute ago: it lives on.
    set_row_clock(app, citizen.id, now - 40 * MINUTE)
    set_redis_clock(hot, sid, now - MINUTE)
    assert client.get("/account").status_code == 200
    assert row_of(app, citizen.id).last_seen_at > now - MINUTE  # far behind: written back
    # Both clocks past the idle timeout: it ends.
    set_row_clock(app, citizen.id, now - 40 * MINUTE)
    set_redis_clock(hot, sid, now - 31 * MINUTE)
    assert client.get("/account").status_code == 302
    assert row_of(app, citizen.id).ended_at is not None


def test_item64_logout_on_one_node_ends_the_session_on_the_other(
    make_app: Any, redis_url: str
) -> None:
    a, b = make_app(redis_url=redis_url), make_app(redis_url=redis_url)
    on_a, _ = sign_in(a)
    on_b = b.test_client()
    on_b.set_cookie("yitong_sso", on_a.get_cookie("yitong_sso").value, domain="localhost")
    assert on_b.get("/account").status_code == 200
    page = on_a.get("/account").get_data(as_text=True)
    assert on_a.post("/logout", data={"csrf_token": csrf_token(page)}).status_code == 303
    assert on_b.get("/account").status_code == 302


def test_item117_sessions_keep_working_on_the_row_clock_while_redis_is_down(
    make_app: Any, redis_url: str
) -> None:
    up, down = make_app(redis_url=redis_url), make_app(redis_url=DEAD_REDIS)
    on_up, citizen = sign_in(up)  # signing in needs Redis (its counters fail closed)
    assert on_up.get("/account").status_code == 200
    browser = down.test_client()
    browser.set_cookie("yitong_sso", on_up.get_cookie("yitong_sso").value, domain="localhost")
    now = dt.datetime.now(dt.UTC)
    set_row_clock(up, citizen.id, now - 10 * MINUTE)
    page = browser.get("/account")
    assert page.status_code == 200  # no 503: the row's clock stands in, and is written
    assert row_of(up, citizen.id).last_seen_at > now - MINUTE
    # Never a silent bypass: idle past the timeout by the row's clock ends the session,
    # whatever the unreachable Redis might have said.
    set_row_clock(up, citizen.id, now - 31 * MINUTE)
    assert browser.get("/account").status_code == 302
    assert on_up.get("/account").status_code == 302  # ended for every node
    # Logging out needs no Redis either.
    again, _ = sign_in(up)
    browser.set_cookie("yitong_sso", again.get_cookie("yitong_sso").value, domain="localhost")
    page = browser.get("/account")
    assert page.status_code == 200
    logout = browser.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert logout.status_code == 303 and again.get("/account").status_code == 302
