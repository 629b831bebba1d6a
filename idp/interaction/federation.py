"""Signing in through the upstream provider (the national platform): the person's side.

Issue 13 item 3; the protocol client is :mod:`idp.oauth.upstream`.  The decisions:

- **state, nonce and PKCE** live in the browser's signed session cookie between the redirect
  and the callback, for one attempt (:func:`start`, :func:`finish`); a callback without the
  matching ``state`` is refused before anything is fetched.
- **Linking** (:func:`finish`, :func:`decide_link`): an upstream subject already linked signs
  its account in.  Otherwise the upstream must assert a *verified* identity number
  (``verified_claims`` at ``upstream_min_identity_level`` or above); the citizen account with
  that number is offered on a consent page, and only "link" links (audited either way).
  E-mail and phone are never used.  No account with that number: nothing is created.
- **The level** is the upstream's asserted ``acr`` mapped to ours, never more; the session's
  factors are ``fed`` only, so nothing local lifts it without a local step-up.
- **Upstream logout** (:func:`upstream_logout`): a verified logout token (``jti`` spent once)
  ends the sessions that began with that upstream session (or subject) through
  :func:`~idp.interaction.sessions.end_sessions`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from flask import session as cookie
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import audit
from idp.accounts.identifiers import IdentifierError, normalize_resident_id
from idp.interaction.sessions import end_sessions, session_by_token
from idp.oauth.upstream import UpstreamIdentity, UpstreamOIDC, UpstreamRejected
from idp.services import Services
from idp.storage import repo
from idp.storage.models import SsoSession, UpstreamLink, UpstreamSession, User, utcnow

PENDING_KEY = "yt_upstream"
LINK_KEY = "yt_upstream_link"
PENDING_TTL = 600  # seconds for the person to sign in upstream, or to decide on linking


@dataclass(frozen=True)
class Finished:
    """What the callback led to: ``sign_in`` (``user``), ``consent`` (``user`` to link),
    ``no_account``, ``unverified`` or ``already_linked``."""

    kind: str
    identity: UpstreamIdentity
    ix: str
    user: User | None = None


def start(upstream: UpstreamOIDC, redirect_uri: str, ix: str) -> str:
    """The upstream authorization URL; state, nonce and PKCE verifier kept for the callback."""
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    url = upstream.authorization_url(redirect_uri, state, nonce, verifier)
    cookie[PENDING_KEY] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "ix": ix,
        "at": int(utcnow().timestamp()),
    }
    return url


def finish(
    session: Session,
    services: Services,
    upstream: UpstreamOIDC,
    redirect_uri: str,
    args: dict[str, str],
    now: dt.datetime,
) -> Finished:
    """Check the callback, redeem the code, verify the ID token and find the account.

    Raises :class:`~idp.oauth.upstream.UpstreamRejected` for a state mismatch, an error
    from the upstream or a token that does not verify, and
    :class:`~idp.oauth.upstream.UpstreamUnavailable` for an outage.
    """
    pending = cookie.pop(PENDING_KEY, None)
    if not isinstance(pending, dict) or not isinstance(pending.get("state"), str):
        raise UpstreamRejected("no upstream login is in progress in this browser")
    state = args.get("state") or ""
    if not secrets.compare_digest(state.encode(), pending["state"].encode()):
        raise UpstreamRejected("state does not match")
    if now.timestamp() - int(pending.get("at", 0)) > PENDING_TTL:
        raise UpstreamRejected("the upstream login took too long")
    if args.get("error"):
        raise UpstreamRejected(f"the upstream answered {args['error'][:60]}")
    code = args.get("code")
    if not code:
        raise UpstreamRejected("code is missing")
    tokens = upstream.exchange(code, redirect_uri, pending["verifier"])
    claims = upstream.verify_id_token(tokens["id_token"], pending["nonce"], now)
    identity = upstream.identity(claims)
    ix = str(pending.get("ix") or "")
    issuer = upstream.config.issuer
    link = session.scalars(
        select(UpstreamLink).where(
            UpstreamLink.issuer == issuer, UpstreamLink.subject == identity.subject
        )
    ).first()
    if link is not None:
        user = session.get(User, link.user_id)
        if user is not None and user.is_active:
            return Finished("sign_in", identity, ix, user)
    if identity.id_number is None:
        return Finished("unverified", identity, ix)
    try:
        number = normalize_resident_id(identity.id_number)
    except IdentifierError:
        return Finished("unverified", identity, ix)
    user = session.scalars(
        select(User).where(
            User.id_number_digest == services.vault.digest(number), User.kind == "citizen"
        )
    ).first()
    if user is None or not user.is_active:
        return Finished("no_account", identity, ix)
    taken = session.scalars(
        select(UpstreamLink).where(UpstreamLink.issuer == issuer, UpstreamLink.user_id == user.id)
    ).first()
    if taken is not None:
        return Finished("already_linked", identity, ix, user)
    cookie[LINK_KEY] = {
        "pid": secrets.token_urlsafe(16),
        "user": user.id,
        "sub": identity.subject,
        "sid": identity.sid,
        "acr": identity.acr,
        "ix": ix,
        "at": int(now.timestamp()),
    }
    return Finished("consent", identity, ix, user)


def pending_link() -> dict[str, Any] | None:
    value = cookie.get(LINK_KEY)
    return value if isinstance(value, dict) else None


def decide_link(
    session: Session, issuer: str, approve: bool, *, ip: str | None, now: dt.datetime
) -> Finished | None:
    """The person's answer on the consent page; None when nothing (or a spent one) is pending.

    On "link" the account is linked and returned for sign-in; on "cancel" nothing changes.
    Audited either way.
    """
    pending = cookie.pop(LINK_KEY, None)
    if not isinstance(pending, dict) or now.timestamp() - int(pending.get("at", 0)) > PENDING_TTL:
        return None
    expires = now + dt.timedelta(seconds=PENDING_TTL)
    if not repo.consume_once(session, "upstream-link", str(pending.get("pid")), expires):
        return None  # a replayed cookie links nothing twice
    user = session.get(User, str(pending.get("user")))
    if user is None or not user.is_active:
        return None
    identity = UpstreamIdentity(
        subject=str(pending["sub"]),
        sid=pending.get("sid") if isinstance(pending.get("sid"), str) else None,
        id_number=None,
        name=None,
        acr=str(pending.get("acr")),
    )
    details = {"issuer": issuer, "subject": identity.subject}
    if not approve:
        audit.record(session, "upstream.link.refused", actor=user.id, ip=ip, details=details)
        session.commit()
        return Finished("refused", identity, str(pending.get("ix") or ""), user)
    session.add(UpstreamLink(issuer=issuer, subject=identity.subject, user_id=user.id))
    audit.record(session, "upstream.link", actor=user.id, ip=ip, details=details)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return Finished("sign_in", identity, str(pending.get("ix") or ""), user)


def remember_upstream_session(
    session: Session, cookie_value: str, issuer: str, identity: UpstreamIdentity
) -> None:
    """Note which upstream session our new SSO session began with (the caller commits)."""
    row = session_by_token(session, cookie_value)
    if row is None:
        return
    session.add(
        UpstreamSession(
            sid=row.id, issuer=issuer, subject=identity.subject, upstream_sid=identity.sid
        )
    )
    audit.record(
        session,
        "upstream.login",
        actor=row.user_id,
        details={"issuer": issuer, "sid": row.id, "acr": row.acr},
    )


def upstream_logout(
    session: Session,
    services: Services,
    upstream: UpstreamOIDC,
    token: str | None,
    now: dt.datetime,
) -> int:
    """End our sessions that began with the upstream session a logout token names.

    Raises :class:`~idp.oauth.upstream.UpstreamRejected` for a token that does not verify
    or was seen before; returns how many sessions ended.
    """
    if not token:
        raise UpstreamRejected("logout_token is required")
    claims = upstream.verify_logout_token(token, now)
    expires = now + dt.timedelta(seconds=900)
    if not repo.consume_once(session, "upstream-logout", str(claims["jti"]), expires):
        raise UpstreamRejected("logout token replayed")
    issuer = upstream.config.issuer
    stmt = select(UpstreamSession.sid).where(UpstreamSession.issuer == issuer)
    if isinstance(claims.get("sid"), str):
        stmt = stmt.where(UpstreamSession.upstream_sid == claims["sid"])
    else:
        stmt = stmt.where(UpstreamSession.subject == claims["sub"])
    sids = list(session.scalars(stmt))
    rows = [
        r
        for r in (session.get(SsoSession, sid) for sid in sids)
        if r is not None and r.ended_at is None
    ]
    ended = end_sessions(session, services, rows, reason="upstream_logout", now=now)
    audit.record(
        session,
        "upstream.logout",
        actor=f"upstream:{issuer[:150]}",
        details={"sessions": len(rows), "sid": claims.get("sid")},
    )
    session.commit()
    ended.kick()
    return len(rows)
