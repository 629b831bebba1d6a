"""The SSO session: created at login, found by cookie digest, ended at logout or timeout.

**One way to end sessions** (:func:`end_sessions`): logout, a replaced browser session, a
time-out (of the settings or of the user's class), "sign out my other sessions", an account
disabled by an administrator, the CLI or directory sync — all go through it, so the grants
made in each session are revoked and every client with a grant in it is queued for
back-channel logout in the same transaction (checklist 64, 67, 69), and so is every CAS
service that validated a ticket of it (CAS single logout, :mod:`idp.cas.tickets`).  The caller commits, then
calls :meth:`Ended.kick` to start delivery off the request.

The cookie holds 256 random bits; the database holds only their digest (checklist 62).  A
fresh reference is issued at every (re)authentication and any previous one is ended, so a
planted cookie never becomes a logged-in session (session fixation, checklist 61).  Idle and
absolute timeouts are enforced here, server-side, on every request (checklist 66).

**The activity clock lives in Redis when there is one** (issue 12 item 2).  :func:`observe`
writes "last seen" to ``<ns>:sso:<sid>`` on every request that uses the session and reads the
previous value in the same command (``SET … GET``), with a time-to-live of the idle timeout
(capped at the absolute expiry); :func:`touch` writes the row's ``last_seen_at`` only when that
is a quarter of the idle timeout (at most 5 minutes) behind:
the database stays the durable fallback without a write per request.  :func:`timed_out`
judges idleness by the freshest of the two clocks (:func:`last_seen`).  A missing key (Redis
restarted empty, or the session idle past the key's lifetime) or a Redis that does not answer
falls back to the row's clock, which is only ever *older* than the truth: a session may end
up to that quarter of its idle time early, never late, and nothing is refused with a 503 for
it; while Redis is down :func:`touch` writes the row every 30 s, as without Redis.

Only the clock moves.  The session itself is still read from the database on every request,
so a session ended on one node is dead on every node at the commit of :func:`end_sessions`:
no cache to invalidate, no stale copy that could resurrect a logged-out session (a reader
repopulating it while a logout commits) or an old cookie value rotated at step-up
(``login.raise_session``), and logout needs no Redis.  Measured (``bench.profile``, sso): the
lookup is one indexed query of the eleven an SSO authorization and its token request make,
about 0.55 ms of their ~11 ms of CPU; a Redis copy would cost ~0.15 ms to read and decode,
so it would save about 4 % for a second place to revoke in.  An ended session's clock is
left to expire: the row decides.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from idp.cas.tickets import queue_single_logout
from idp.errors import StateStoreUnavailable
from idp.oauth.logout import FrontChannelFrame, LogoutDispatcher, end_sso_session
from idp.services import Services
from idp.storage import repo
from idp.storage.hot import RedisStore
from idp.storage.models import SsoSession, User, utcnow
from idp.storage.prepared import PreparedInsert
from idp.storage.repo import digest, new_id, new_secret

ACR_PASSWORD = "urn:yitong:acr:pwd"
ACR_MFA = "urn:yitong:acr:mfa"
ACR_PHISHING_RESISTANT = "urn:yitong:acr:phr"
ACR_LADDER = (ACR_PASSWORD, ACR_MFA, ACR_PHISHING_RESISTANT)

log = logging.getLogger(__name__)

# Without Redis, touch last_seen_at at most this often, to keep most requests read-only.
_TOUCH_EVERY = dt.timedelta(seconds=30)
# With Redis, the row's clock is written when this far behind (or a quarter of the idle
# timeout, if shorter): how early a session may end if Redis loses its clock.
_DB_EVERY = dt.timedelta(minutes=5)
#: The key kind of the activity clock in Redis (``<ns>:sso:<sid>``; the value: epoch ms).
CLOCK = "sso"


@dataclass(frozen=True)
class SessionTimeouts:
    idle: int
    absolute: int


def acr_rank(acr: str | None) -> int:
    return ACR_LADDER.index(acr) if acr in ACR_LADDER else -1


def start_session(
    session: Session,
    user: User,
    timeouts: SessionTimeouts,
    *,
    amr: list[str],
    acr: str = ACR_PASSWORD,
    ip: str | None = None,
    user_agent: str | None = None,
    factors: dict[str, int] | None = None,
    now: dt.datetime | None = None,
) -> tuple[str, SsoSession]:
    """Create a session and return (cookie value, row); ``factors``: the level and time of
    each factor (issue 5), by default each of ``amr`` now.

    The row is stored by a prepared INSERT in the caller's transaction and returned
    *detached*: changing it stores nothing (nothing in the signing-in request changes it).  The browser's previous session is ended
    by the caller through :func:`end_sessions` (:func:`session_by_token` finds it), so its
    clients hear of it.
    """
    now = now or utcnow()
    token = new_secret(32)
    values = {
        "id": new_id(),
        "token_digest": digest(token),
        "user_id": user.id,
        "created_at": now,
        "last_seen_at": now,
        "auth_time": now,
        "acr": acr,
        "amr": list(amr),
        "factors": dict(factors) if factors else {f: int(now.timestamp()) for f in amr},
        "expires_at": now + dt.timedelta(seconds=timeouts.absolute),
        "ended_at": None,
        "ip": ip,
        "user_agent": (user_agent or "")[:300],
    }
    _insert_session(session, values)
    return token, SsoSession(**values)


_insert_session = PreparedInsert(cast(Table, SsoSession.__table__))


def session_by_token(session: Session, token: str | None) -> SsoSession | None:
    """The live (not ended) session a cookie value names, or None; no time-out applied."""
    found = session_and_user(session, token)
    return found[0] if found is not None else None


def session_and_user(session: Session, token: str | None) -> tuple[SsoSession, User] | None:
    """The live session a cookie value names and its account, read by one statement (every
    request that carries the cookie reads both)."""
    if not token or len(token) > 200:
        return None
    found = session.execute(_BY_DIGEST, {"digest": digest(token)}).first()
    if found is None or found[0].ended_at is not None:
        return None
    return found[0], found[1]


# Read on every request that carries the cookie: built once.
_BY_DIGEST = (
    select(SsoSession, User)
    .join(User, User.id == SsoSession.user_id)
    .where(SsoSession.token_digest == bindparam("digest"))
)


def last_seen(row: SsoSession, hot: RedisStore | None) -> dt.datetime:
    """The session's freshest activity clock: Redis's, or the row's when Redis has none or
    does not answer (the row's is never fresher than the truth, so never too lenient)."""
    if hot is None:
        return row.last_seen_at
    try:
        raw = hot.peek(CLOCK, row.id)
    except StateStoreUnavailable as exc:
        log.warning("session clock of the database used: %s", exc)
        return row.last_seen_at
    return _fresher(row, raw)


def _fresher(row: SsoSession, raw: bytes | None) -> dt.datetime:
    """The fresher of the row's clock and Redis's (epoch ms, None when Redis has none)."""
    if raw is None:
        return row.last_seen_at
    return max(dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC), row.last_seen_at)


@dataclass(frozen=True)
class Activity:
    """What :func:`observe` found: the last activity before this request, and whether this
    request's was kept in Redis (then the row is written only when far behind)."""

    seen: dt.datetime
    in_redis: bool


def observe(
    row: SsoSession, timeouts: SessionTimeouts, now: dt.datetime, hot: RedisStore | None
) -> Activity:
    """Record this request's activity in Redis and read the one before it, in one round trip
    (``SET … GET``).  The row's clock when there is no Redis, no key, or no answer."""
    if hot is None:
        return Activity(row.last_seen_at, in_redis=False)
    end = min(row.expires_at, row.auth_time + dt.timedelta(seconds=timeouts.absolute))
    ttl = min(timeouts.idle, int((end - now).total_seconds())) + 1
    try:
        raw = hot.swap(CLOCK, row.id, b"%d" % (now.timestamp() * 1000), ttl)
    except StateStoreUnavailable as exc:
        log.warning("session clock kept in the database: %s", exc)
        return Activity(row.last_seen_at, in_redis=False)
    return Activity(_fresher(row, raw), in_redis=True)


def timed_out(
    row: SsoSession,
    timeouts: SessionTimeouts,
    now: dt.datetime,
    hot: RedisStore | None,
    *,
    seen: dt.datetime | None = None,
) -> bool:
    """Past its absolute lifetime, or idle longer than allowed (checklist 66), judged by
    ``seen`` (what :func:`observe` returned) or else the freshest clock there is."""
    if now >= row.expires_at or (now - row.auth_time).total_seconds() > timeouts.absolute:
        return True
    last = seen if seen is not None else last_seen(row, hot)
    return (now - last).total_seconds() > timeouts.idle


def touch(row: SsoSession, timeouts: SessionTimeouts, now: dt.datetime, activity: Activity) -> None:
    """Write the row's clock when it is far behind (the caller commits if the row changed):
    every 30 s without Redis, a quarter of the idle timeout (at most 5 min) with it."""
    every = _TOUCH_EVERY
    if activity.in_redis:
        every = max(_TOUCH_EVERY, min(_DB_EVERY, dt.timedelta(seconds=timeouts.idle / 4)))
    if now - row.last_seen_at > every:
        row.last_seen_at = now


def live_sessions_of(session: Session, user_id: str) -> list[SsoSession]:
    return list(
        session.scalars(
            select(SsoSession).where(SsoSession.user_id == user_id, SsoSession.ended_at.is_(None))
        )
    )


@dataclass
class Ended:
    """What :func:`end_sessions` did; :meth:`kick` after the commit starts delivery."""

    dispatcher: LogoutDispatcher
    sids: list[str] = field(default_factory=list)
    frames: list[FrontChannelFrame] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    revoked_grants: list[str] = field(default_factory=list)

    def kick(self) -> None:
        """Deliver the queued back-channel logout tokens (call after the commit)."""
        if self.deliveries:
            self.dispatcher.kick(self.deliveries)


def end_sessions(
    session: Session,
    services: Services,
    rows: Iterable[SsoSession],
    *,
    reason: str,
    now: dt.datetime | None = None,
) -> Ended:
    """End each session, revoke the grants made in it, queue its clients' (and its CAS
    services') logout.

    The one way a session ends (see the module docstring).  ``reason`` is recorded on the
    revoked grants (``logout``, ``timeout``, ``replaced``, ``password_change``, ``disabled``…).
    """
    now = now or utcnow()
    ended = Ended(services.logout)
    for row in rows:
        outcome = end_sso_session(
            session,
            row,
            issuer=services.settings.issuer,
            keys=services.keys,
            pairwise_secret=services.pairwise_secret,
            reason=reason,
            now=now,
        )
        ended.sids.append(row.id)
        ended.frames.extend(outcome.frames)
        ended.deliveries.extend(outcome.deliveries)
        cas = queue_single_logout(session, row.id, now)  # CAS services of the session too
        if cas:
            session.flush()
            ended.deliveries.extend(d.id for d in cas)
        ended.revoked_grants.extend(outcome.revoked_grants)
    return ended


def end_user_sessions(
    session: Session,
    services: Services,
    user_id: str,
    *,
    reason: str,
    keep_sid: str | None = None,
    include_offline: bool = False,
) -> Ended:
    """End every live session of a user (but ``keep_sid``) and revoke the grants not made in
    the kept session (offline ones too when ``include_offline``: a disabled account)."""
    rows = [r for r in live_sessions_of(session, user_id) if r.id != keep_sid]
    ended = end_sessions(session, services, rows, reason=reason)
    ended.revoked_grants.extend(
        repo.revoke_user_grants(
            session, user_id, reason, include_offline=include_offline, except_sid=keep_sid
        )
    )
    return ended
