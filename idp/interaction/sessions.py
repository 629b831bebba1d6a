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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from idp.cas.tickets import queue_single_logout
from idp.oauth.logout import FrontChannelFrame, LogoutDispatcher, end_sso_session
from idp.services import Services
from idp.storage import repo
from idp.storage.models import SsoSession, User, utcnow
from idp.storage.repo import digest, new_id, new_secret

ACR_PASSWORD = "urn:yitong:acr:pwd"
ACR_MFA = "urn:yitong:acr:mfa"
ACR_PHISHING_RESISTANT = "urn:yitong:acr:phr"
ACR_LADDER = (ACR_PASSWORD, ACR_MFA, ACR_PHISHING_RESISTANT)

# Touch last_seen_at at most this often, to keep most requests read-only.
_TOUCH_EVERY = dt.timedelta(seconds=30)


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
    now: dt.datetime | None = None,
) -> tuple[str, SsoSession]:
    """Create a session and return (cookie value, row).

    The browser's previous session is ended by the caller through :func:`end_sessions`
    (:func:`session_by_token` finds it), so its clients hear of it.
    """
    now = now or utcnow()
    token = new_secret(32)
    row = SsoSession(
        id=new_id(),
        token_digest=digest(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        auth_time=now,
        acr=acr,
        amr=list(amr),
        factors={f: int(now.timestamp()) for f in amr},
        expires_at=now + dt.timedelta(seconds=timeouts.absolute),
        ip=ip,
        user_agent=(user_agent or "")[:300],
    )
    session.add(row)
    session.flush()
    return token, row


def session_by_token(session: Session, token: str | None) -> SsoSession | None:
    """The live (not ended) session a cookie value names, or None; no time-out applied."""
    if not token or len(token) > 200:
        return None
    row = session.scalars(_BY_DIGEST, {"digest": digest(token)}).first()
    if row is None or row.ended_at is not None:
        return None
    return row


# Read on every request that carries the cookie: built once.
_BY_DIGEST = select(SsoSession).where(SsoSession.token_digest == bindparam("digest"))


def timed_out(row: SsoSession, timeouts: SessionTimeouts, now: dt.datetime) -> bool:
    """Past its absolute lifetime, or idle longer than allowed (checklist 66)."""
    if now >= row.expires_at or (now - row.auth_time).total_seconds() > timeouts.absolute:
        return True
    return (now - row.last_seen_at).total_seconds() > timeouts.idle


def touch(row: SsoSession, now: dt.datetime) -> None:
    """Record activity, at most every 30 s (most requests stay read-only)."""
    if now - row.last_seen_at > _TOUCH_EVERY:
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
