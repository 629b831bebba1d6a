"""The SSO session: created at login, found by cookie digest, ended at logout or timeout.

The cookie holds 256 random bits; the database holds only their digest (checklist 62).  A
fresh reference is issued at every (re)authentication and any previous one is ended, so a
planted cookie never becomes a logged-in session (session fixation, checklist 61).  Idle and
absolute timeouts are enforced here, server-side, on every request (checklist 66).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

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
    previous_token: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[str, SsoSession]:
    """Create a session and return (cookie value, row); any previous session is ended."""
    now = now or utcnow()
    if previous_token:
        session.execute(
            update(SsoSession)
            .where(SsoSession.token_digest == digest(previous_token), SsoSession.ended_at.is_(None))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
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


def load_session(
    session: Session, token: str | None, timeouts: SessionTimeouts, now: dt.datetime | None = None
) -> SsoSession | None:
    """The live session for a cookie value, or None (unknown, ended, idle or too old)."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    row = session.query(SsoSession).filter(SsoSession.token_digest == digest(token)).first()
    if row is None or row.ended_at is not None:
        return None
    if now >= row.expires_at or now - row.last_seen_at > dt.timedelta(seconds=timeouts.idle):
        row.ended_at = now
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        row.last_seen_at = now
    return row


def end_session(session: Session, row: SsoSession, now: dt.datetime | None = None) -> None:
    if row.ended_at is None:
        row.ended_at = now or utcnow()
