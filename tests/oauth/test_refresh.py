"""Refresh tokens (issue 3 item 1): SECURITY-CHECKLIST items 36-43.

Policy under test (idp/oauth/grants.py): public clients rotate on every use and a replay of a
rotated token revokes the grant; confidential clients keep their refresh token (FAPI 2.0);
narrowing the scope is allowed, widening is ``invalid_scope``; idle and absolute lifetimes
come from the settings; logout (non-offline), password change, disable and session
termination end refresh tokens; parallel refreshes yield exactly one new live token, on
SQLite and PostgreSQL, and nothing minted after a revocation survives.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.storage.models import Grant, SsoSession, Token, User
from tests.helpers import ISSUER, RegisteredClient, csrf_token
from tests.oauth import tokenkit as kit


def rt_grant(app: Any, rt: str) -> str:
    row = kit.token_row(app, rt)
    assert row is not None and row.kind == "refresh"
    return str(row.grant_id)


# ------------------------------------------------------------------ issuance
def test_offline_access_gets_refresh_token_and_id_token_claims(client, app, citizen, public_rp):
    """Item 1: offline_access (consented) gives a refresh token bound to an offline grant."""
    body = kit.code_tokens(client, public_rp, citizen, scope="openid profile offline_access")
    assert body["refresh_token"] and body["access_token"] != body["refresh_token"]
    grant = kit.grant_row(app, rt_grant(app, body["refresh_token"]))
    assert grant.offline is True and grant.sid


def test_session_bound_grant_gets_refresh_token(client, app, citizen, public_rp):
    """Item 1: without offline_access the refresh token is bound to the SSO session."""
    body = kit.code_tokens(client, public_rp, citizen, scope="openid profile")
    grant = kit.grant_row(app, rt_grant(app, body["refresh_token"]))
    assert grant.offline is False and grant.sid


def test_no_refresh_token_for_client_without_refresh_grant(client, app, citizen):
    rp = kit.create_client(
        app, redirect_uris=["https://c9.gov.example/cb"], grant_types=["authorization_code"]
    )
    body = kit.code_tokens(client, rp, citizen)
    assert "refresh_token" not in body
    resp = kit.refresh(client, rp, "anything")
    assert resp.status_code == 400 and resp.get_json()["error"] == "unauthorized_client"


# ------------------------------------------------------------------ rotation (public clients)
def test_public_client_rotation_then_reuse_revokes_grant(client, app, citizen, public_rp):
    """Checklist 38: RT1 -> RT2; replaying RT1 revokes RT2 and every access token."""
    body = kit.code_tokens(client, public_rp, citizen)
    rt1, at1 = body["refresh_token"], body["access_token"]
    resp = kit.refresh(client, public_rp, rt1)
    assert resp.status_code == 200, resp.get_json()
    second = resp.get_json()
    rt2, at2 = second["refresh_token"], second["access_token"]
    assert rt2 != rt1 and at2 != at1
    assert resp.headers["Cache-Control"] == "no-store"
    assert kit.userinfo_status(client, at2) == 200

    replay = kit.refresh(client, public_rp, rt1)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    # The whole grant is gone: RT2 and both access tokens.
    again = kit.refresh(client, public_rp, rt2)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert kit.userinfo_status(client, at1) == 401
    assert kit.userinfo_status(client, at2) == 401
    grant = kit.grant_row(app, rt_grant(app, rt2))
    assert grant.revoked_at is not None and grant.revoked_reason == "refresh_token_reuse"


def test_refresh_returns_verifiable_id_token_with_original_auth_time(
    client, app, citizen, public_rp
):
    """OIDC Core §12.2 on refresh; verified by python-jose (checklist 46)."""
    body = kit.code_tokens(client, public_rp, citizen, scope="openid profile offline_access")
    first = jose_jwt.get_unverified_claims(body["id_token"])
    resp = kit.refresh(client, public_rp, body["refresh_token"])
    new = resp.get_json()
    jwks = client.get("/jwks").get_json()
    header = jose_jwt.get_unverified_header(new["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jose_jwt.decode(
        new["id_token"],
        key,
        algorithms=[header["alg"]],
        audience=public_rp.client_id,
        issuer=ISSUER,
        access_token=new["access_token"],
    )
    assert claims["sub"] == first["sub"] and claims["auth_time"] == first["auth_time"]
    assert "nonce" not in claims


def test_duplicate_of_the_rotating_request_is_refused_without_revoking(
    client, app, citizen, public_rp, monkeypatch
):
    """Checklist 39: a request that arrived *before* RT1 was rotated, and presents RT1 only
    after the rotation committed, is a duplicate of the winner, not a replay: refused, and
    the grant (RT2) lives on.  "Arrived earlier" is set through the request's start time, the
    same value the view records first thing, so the test needs no threads and no clock."""
    from idp.storage.models import utcnow

    body = kit.code_tokens(client, public_rp, citizen)
    rt1 = body["refresh_token"]
    second = kit.refresh(client, public_rp, rt1)
    assert second.status_code == 200, second.get_json()
    rt2 = second.get_json()["refresh_token"]
    grant_id = rt_grant(app, rt1)

    monkeypatch.setattr("idp.blueprints.oidc.utcnow", lambda: utcnow() - dt.timedelta(hours=1))
    duplicate = kit.refresh(client, public_rp, rt1)
    monkeypatch.undo()
    assert duplicate.status_code == 400 and duplicate.get_json()["error"] == "invalid_grant"
    assert kit.grant_row(app, grant_id).revoked_at is None
    assert kit.count_live_refresh_tokens(app, grant_id) == 1
    assert kit.refresh(client, public_rp, rt2).status_code == 200


# ------------------------------------------------------------------ confidential clients (no rotation)
def test_confidential_refresh_token_stays_valid_and_slides(client, app, citizen, rp):
    """Checklist 40: no rotation for confidential clients; the idle expiry slides."""
    body = kit.code_tokens(client, rp, citizen)
    rt = body["refresh_token"]
    before = kit.token_row(app, rt).expires_at
    for _ in range(3):
        resp = kit.refresh(client, rp, rt)
        assert resp.status_code == 200, resp.get_json()
        assert "refresh_token" not in resp.get_json()
        assert kit.userinfo_status(client, resp.get_json()["access_token"]) == 200
    row = kit.token_row(app, rt)
    assert row.last_used_at is not None and row.expires_at >= before
    # The very token was kept, not rotated behind the client's back (ROTATE_CONFIDENTIAL off).
    assert row.consumed_at is None and row.revoked_at is None
    assert kit.count_live_refresh_tokens(app, rt_grant(app, rt)) == 1


def test_confidential_refresh_without_client_authentication_is_invalid_client(
    client, app, citizen, rp
):
    """Checklist 40: a refresh without client authentication -> invalid_client."""
    rt = kit.code_tokens(client, rp, citizen)["refresh_token"]
    resp = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": rp.client_id},
    )
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    assert kit.refresh(client, rp, rt).status_code == 200  # and the token was not harmed


def test_rotating_confidential_clients_is_a_switch(client, app, citizen, rp, monkeypatch):
    from idp.oauth.grants import RefreshTokenGrant

    monkeypatch.setattr(RefreshTokenGrant, "ROTATE_CONFIDENTIAL", True)
    rt1 = kit.code_tokens(client, rp, citizen)["refresh_token"]
    rt2 = kit.refresh(client, rp, rt1).get_json()["refresh_token"]
    assert kit.refresh(client, rp, rt1).get_json()["error"] == "invalid_grant"
    assert kit.refresh(client, rp, rt2).get_json()["error"] == "invalid_grant"  # grant revoked


# ------------------------------------------------------------------ binding to client and scope
def test_refresh_token_of_another_client_is_invalid_grant(client, app, citizen, rp, caplog):
    """Checklist 36: C2 presents C1's RT -> invalid_grant, and C1's token is unharmed."""
    rp2 = RegisteredClient.create(
        app, name="Other service", redirect_uris=["https://c2.gov.example/cb"]
    )
    rt = kit.code_tokens(client, rp, citizen)["refresh_token"]
    caplog.set_level(logging.WARNING, logger="idp.oauth.grants")
    resp = kit.refresh(client, rp2, rt)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
    # A client holding another client's token is worth a warning (a leak, or a mix-up).
    assert any("refresh token of another client" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert kit.refresh(client, rp2, "unknown-token").get_json()["error"] == "invalid_grant"
    assert not any("another client" in r.getMessage() for r in caplog.records)
    assert kit.refresh(client, rp, rt).status_code == 200


def test_scope_can_narrow_but_not_widen(client, app, citizen, public_rp):
    """Checklist 37: wider -> invalid_scope; narrower OK; ID token only while openid is kept."""
    body = kit.code_tokens(client, public_rp, citizen, scope="openid profile offline_access")
    rt = body["refresh_token"]
    wider = kit.refresh(client, public_rp, rt, scope="openid profile email offline_access")
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_scope"
    empty = kit.refresh(client, public_rp, rt, scope=" ")
    assert empty.get_json()["error"] == "invalid_scope"

    narrow = kit.refresh(client, public_rp, rt, scope="profile offline_access")
    assert narrow.status_code == 200, narrow.get_json()
    nb = narrow.get_json()
    assert nb["scope"] == "profile offline_access" and "id_token" not in nb
    assert kit.userinfo_status(client, nb["access_token"]) == 403  # no openid in the token
    # The rotated refresh token keeps the granted scope (RFC 6749 §6): openid comes back.
    back = kit.refresh(client, public_rp, nb["refresh_token"], scope="openid profile")
    assert back.status_code == 200 and "id_token" in back.get_json()
    assert back.get_json()["scope"] == "openid profile"


# ------------------------------------------------------------------ lifetimes (checklist 41)
class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    import idp.oauth.grants as grants_module

    fake = FakeClock()
    monkeypatch.setattr(grants_module, "utcnow", fake)
    return fake


def test_absolute_lifetime_ends_refreshing_every_five_minutes(make_app, clock):
    """Checklist 41: refreshing every 5 min still fails once the absolute maximum is reached."""
    from tests.helpers import Citizen

    app = make_app(refresh_token_idle_lifetime=600, refresh_token_absolute_lifetime=3600)
    http = app.test_client()
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(
        app, public=True, redirect_uris=["http://127.0.0.1/cb"], name="Native"
    )
    rt = kit.code_tokens(http, rp, citizen)["refresh_token"]
    clock.now = kit.grant_row(app, rt_grant(app, rt)).created_at
    successes = 0
    for _ in range(20):
        clock.advance(minutes=5)
        resp = kit.refresh(http, rp, rt)
        if resp.status_code != 200:
            assert resp.get_json()["error"] == "invalid_grant"
            break
        successes += 1
        rt = resp.get_json()["refresh_token"]
    assert successes == 11  # 5, 10, ... 55 min; at 60 min the grant's hour is over


def test_idle_lifetime_expires_unused_token(make_app, clock):
    """Checklist 41: unused past the idle limit -> fails (confidential: the slide stops too)."""
    from tests.helpers import Citizen

    app = make_app(refresh_token_idle_lifetime=600, refresh_token_absolute_lifetime=86400)
    http = app.test_client()
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app)
    rt = kit.code_tokens(http, rp, citizen)["refresh_token"]
    clock.now = kit.token_row(app, rt).created_at
    clock.advance(minutes=9)
    assert kit.refresh(http, rp, rt).status_code == 200  # used: idle window restarts
    clock.advance(minutes=9)
    assert kit.refresh(http, rp, rt).status_code == 200
    clock.advance(minutes=11)
    resp = kit.refresh(http, rp, rt)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"


# ------------------------------------------------------------------ invalidation (checklist 42)
def logout(http: Any) -> None:
    page = http.get("/logout")
    resp = http.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert resp.status_code in (302, 303)


def test_logout_ends_session_bound_but_not_offline_refresh_tokens(client, app, citizen, public_rp):
    offline = kit.code_tokens(client, public_rp, citizen, scope="openid offline_access")
    online = kit.code_tokens(client, public_rp, citizen, scope="openid profile")
    logout(client)
    assert (
        kit.refresh(client, public_rp, online["refresh_token"]).get_json()["error"]
        == "invalid_grant"
    )
    assert kit.refresh(client, public_rp, offline["refresh_token"]).status_code == 200


def test_session_end_without_logout_ends_session_bound_refresh_token(
    client, app, citizen, public_rp
):
    """An SSO session that ended (timeout, admin) takes its non-offline refresh tokens along."""
    body = kit.code_tokens(client, public_rp, citizen, scope="openid profile")
    grant = kit.grant_row(app, rt_grant(app, body["refresh_token"]))
    kit.set_columns(app, SsoSession, grant.sid, ended_at=kit.utc())
    assert (
        kit.refresh(client, public_rp, body["refresh_token"]).get_json()["error"] == "invalid_grant"
    )


@pytest.mark.parametrize("event", ["password_change", "disabled", "terminate_sessions", "deleted"])
def test_account_events_end_refresh_tokens(client, app, citizen, public_rp, event):
    """Checklist 42: disable, password reset, admin 'terminate sessions' -> invalid_grant."""
    body = kit.code_tokens(client, public_rp, citizen, scope="openid offline_access")
    if event == "password_change":
        kit.set_columns(app, User, citizen.id, password_changed_at=kit.utc(1))
    elif event == "disabled":
        kit.set_columns(app, User, citizen.id, status="disabled")
    elif event == "deleted":
        with app.extensions["yitong"].db.transaction() as session:
            session.delete(session.get(User, citizen.id))
    else:
        from idp.interaction.sessions import end_user_sessions

        services = app.extensions["yitong"]
        with services.db.transaction() as session:
            end_user_sessions(
                session, services, citizen.id, reason="admin_terminate", include_offline=True
            )
    resp = kit.refresh(client, public_rp, body["refresh_token"])
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
    assert kit.userinfo_status(client, body["access_token"]) == 401


def test_disabled_client_cannot_refresh(client, app, citizen, rp):
    from idp.storage.models import Client

    body = kit.code_tokens(client, rp, citizen)
    kit.set_columns(app, Client, rp.client_id, status="disabled")
    resp = kit.refresh(client, rp, body["refresh_token"])
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    assert kit.userinfo_status(client, body["access_token"]) == 401


@pytest.mark.parametrize("value", ["", "x" * 5000, "not-a-token", "\u00e9\u00e9", "a" * 43])
def test_garbage_refresh_tokens_are_invalid_grant_not_500(client, public_rp, value):
    resp = kit.refresh(client, public_rp, value)
    assert resp.status_code == 400
    assert resp.get_json()["error"] in ("invalid_grant", "invalid_request")


def test_refresh_token_sent_twice_is_invalid_request(client, public_rp):
    resp = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": ["a", "b"],
            "client_id": public_rp.client_id,
        },
    )
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


# ------------------------------------------------------------------ races (checklist 39, 43)
def hold_grant_lock(app: Any, grant_id: str) -> Any:
    """Open a writer transaction that holds the grant row (PostgreSQL row lock; SQLite: the
    database write lock), so that requests started now queue up behind it."""
    session = app.extensions["yitong"].db.writer()
    session.execute(select(Grant).where(Grant.id == grant_id).with_for_update()).first()
    return session


def parallel_refreshes(
    app: Any, rp: RegisteredClient, rt: str, n: int, *, forced: bool
) -> list[Any]:
    holder = hold_grant_lock(app, rt_grant(app, rt)) if forced else None

    def one(_i: int) -> Any:
        return kit.refresh(app.test_client(), rp, rt)

    if holder is None:
        return kit.run_parallel(n, one)
    import threading
    import time

    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.extend(kit.run_parallel(n, one)))
    runner.start()
    time.sleep(0.5)  # every request has arrived and waits for the lock
    holder.rollback()
    holder.close()
    runner.join(60)
    return results


def test_twenty_parallel_refreshes_yield_exactly_one_live_token(app, citizen, public_rp):
    """Checklist 39: 20 refreshes of one RT, all in flight together -> exactly one new RT.

    The requests are held at the grant lock until all 20 have arrived (``forced``), which is
    what "parallel" means to the server; 19 are answered ``invalid_grant`` as duplicates and
    the grant survives with exactly one live refresh token.  Repeated with two calls in the
    same second.
    """
    http = app.test_client()
    rt = kit.code_tokens(http, public_rp, citizen)["refresh_token"]
    grant_id = rt_grant(app, rt)
    results = parallel_refreshes(app, public_rp, rt, 20, forced=True)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 19, statuses
    assert all(r.get_json()["error"] == "invalid_grant" for r in results if r.status_code == 400)
    winner = next(r for r in results if r.status_code == 200).get_json()
    assert kit.count_live_refresh_tokens(app, grant_id) == 1
    assert kit.userinfo_status(http, winner["access_token"]) == 200

    # "Repeat with two calls inside the same second" (Keycloak PR #51885).
    pair = parallel_refreshes(app, public_rp, winner["refresh_token"], 2, forced=True)
    assert sorted(r.status_code for r in pair) == [200, 400]
    newest = next(r for r in pair if r.status_code == 200).get_json()
    assert kit.count_live_refresh_tokens(app, grant_id) == 1
    assert kit.refresh(http, public_rp, newest["refresh_token"]).status_code == 200


def test_free_running_parallel_refreshes_never_leave_two_live_tokens(app, citizen, public_rp):
    """Checklist 39 without holding anything: threads race as they come.

    Exactly one request mints; a request that reaches the server only after that rotation
    committed is indistinguishable from a replay and revokes the grant.  Either way there is
    never more than one live refresh token, and a surviving one works.
    """
    http = app.test_client()
    rt = kit.code_tokens(http, public_rp, citizen)["refresh_token"]
    grant_id = rt_grant(app, rt)
    results = parallel_refreshes(app, public_rp, rt, 20, forced=False)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 19, statuses
    live = kit.count_live_refresh_tokens(app, grant_id)
    winner = next(r for r in results if r.status_code == 200).get_json()
    if live == 1:
        assert kit.refresh(http, public_rp, winner["refresh_token"]).status_code == 200
    else:
        assert live == 0
        assert kit.grant_row(app, grant_id).revoked_reason == "refresh_token_reuse"
        assert kit.userinfo_status(http, winner["access_token"]) == 401


def test_refresh_revoked_first_mints_nothing(client, app, citizen, rp):
    """Checklist 43 (ordered): a refresh after the revocation fails."""
    body = kit.code_tokens(client, rp, citizen)
    assert kit.revoke(client, rp, body["refresh_token"]).status_code == 200
    assert kit.refresh(client, rp, body["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("round_", range(4))
def test_refresh_racing_revocation_leaves_nothing_alive(app, citizen, public_rp, round_):
    """Checklist 43: revoke concurrently with a refresh -> nothing minted survives."""
    http = app.test_client()
    body = kit.code_tokens(http, public_rp, citizen)
    rt = body["refresh_token"]
    grant_id = rt_grant(app, rt)

    def act(i: int) -> Any:
        c = app.test_client()
        if i % 2 == 0:
            return kit.refresh(c, public_rp, rt)
        return kit.revoke(c, public_rp, rt)

    results = kit.run_parallel(6, act)
    revokes = [r for i, r in enumerate(results) if i % 2 == 1]
    assert all(r.status_code == 200 for r in revokes)
    minted = [r.get_json() for i, r in enumerate(results) if i % 2 == 0 and r.status_code == 200]
    with app.extensions["yitong"].db.session() as session:
        alive = session.scalars(
            select(Token).where(Token.grant_id == grant_id, Token.revoked_at.is_(None))
        ).all()
    assert alive == []
    for tokens in minted:
        assert kit.userinfo_status(http, tokens["access_token"]) == 401
        assert kit.refresh(http, public_rp, tokens["refresh_token"]).status_code == 400
