"""What the account page shows and lets a person do: the services that received their data
(by name, what and when), withdrawing a consent, and their active sign-in sessions.

The page (:mod:`idp.blueprints.account`) only draws these.  Ending another session goes
through :func:`~idp.interaction.sessions.end_sessions`, so the services signed in through it
hear of it by back-channel logout; a withdrawn consent revokes the service's grants and tokens
(:func:`~idp.interaction.consent.withdraw_consent`).  Both are audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from flask_babel import gettext as _
from sqlalchemy import func, select

from idp import audit, context
from idp.interaction.consent import withdraw_consent
from idp.interaction.sessions import end_sessions, end_user_sessions, last_seen, live_sessions_of
from idp.storage.models import Client, Consent, Grant, SsoSession, User


def scope_labels() -> dict[str, str]:
    """Plain words for what a scope releases (the page's language)."""
    return {
        "openid": _("an identifier for your account"),
        "profile": _("your name"),
        "email": _("your e-mail address"),
        "phone": _("your mobile number"),
        "groups": _("your groups and roles"),
        "staff": _("your department, staff number and title"),
        "entity": _("your authority to act for a company"),
        "offline_access": _("access while you are away"),
    }


def end_all_other_sessions(user: User, current: SsoSession) -> int:
    """End every session of the person but this one (their services told); how many."""
    db_session = context.db_session()
    ended = end_user_sessions(
        db_session, context.services(), user.id, reason="ended_by_user", keep_sid=current.id
    )
    audit.record(
        db_session,
        "session.end_others",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"sessions": len(ended.sids), "grants_revoked": len(ended.revoked_grants)},
    )
    db_session.commit()
    ended.kick()
    return len(ended.sids)


@dataclasses.dataclass(frozen=True)
class ServiceView:
    client_id: str
    name: str
    received: tuple[str, ...]  # plain-language labels
    agreed_at: dt.datetime | None  # when the consent was given
    last_at: dt.datetime | None  # when the service last received a grant


@dataclasses.dataclass(frozen=True)
class SessionView:
    id: str
    started: dt.datetime
    last_seen: dt.datetime
    ip: str | None
    device: str
    current: bool


def _labels(scopes: list[str] | set[str]) -> tuple[str, ...]:
    labels = scope_labels()
    return tuple(labels.get(s, s) for s in sorted(scopes) if s)


def services_of(user: User) -> list[ServiceView]:
    """Every service with a consent or a live grant of this person, newest first."""
    db_session = context.db_session()
    consents = {
        c.client_id: c
        for c in db_session.scalars(select(Consent).where(Consent.user_id == user.id))
    }
    grants: dict[str, tuple[dt.datetime, set[str]]] = {}
    rows = db_session.execute(
        select(Grant.client_id, func.max(Grant.created_at), Grant.scope)
        .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .group_by(Grant.client_id, Grant.scope)
    )
    for client_id, created, scope in rows:
        newest, seen = grants.get(client_id, (created, set()))
        grants[client_id] = (max(newest, created), seen | set((scope or "").split()))
    ids = set(consents) | set(grants)
    named = select(Client.client_id, Client.name).where(Client.client_id.in_(ids))
    names: dict[str, str] = {row.client_id: row.name for row in db_session.execute(named)}
    out = []
    for client_id in ids:
        consent = consents.get(client_id)
        last: dt.datetime | None = None
        granted: set[str] = set()
        if client_id in grants:
            last, granted = grants[client_id]
        scopes = set(consent.scopes if consent else []) | granted
        out.append(
            ServiceView(
                client_id=client_id,
                name=names.get(client_id) or client_id,
                received=_labels(scopes),
                agreed_at=consent.granted_at if consent else None,
                last_at=last,
            )
        )
    newest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(out, key=lambda s: s.last_at or s.agreed_at or newest, reverse=True)


def withdraw(user: User, client_id: str) -> bool:
    """Withdraw the consent given to ``client_id`` (revoking its tokens); False if none."""
    db_session = context.db_session()
    revoked = withdraw_consent(db_session, user, client_id[:64])
    db_session.commit()
    return revoked is not None


def _device(user_agent: str | None) -> str:
    ua = user_agent or ""
    for needle, name in (
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ):
        if needle in ua:
            system = next(
                (s for s in ("Android", "iPhone", "iPad", "Windows", "Mac OS", "Linux") if s in ua),
                "",
            )
            return f"{name} · {system}" if system else name
    return ua[:60] or str(_("Unknown device"))


def sessions_of(user: User, current: SsoSession | None) -> list[SessionView]:
    """The person's live sign-in sessions, the current one first."""
    hot = context.services().hot
    views = [
        SessionView(
            r.id,
            r.created_at,
            last_seen(r, hot),
            r.ip,
            _device(r.user_agent),
            current is not None and r.id == current.id,
        )
        for r in live_sessions_of(context.db_session(), user.id)
    ]
    return sorted(views, key=lambda v: (not v.current, -v.last_seen.timestamp()))


def end_other_session(user: User, current: SsoSession, sid: str) -> bool:
    """End one of the person's other sessions (its services told); False if not theirs/live."""
    if sid == current.id or len(sid) > 64:
        return False
    db_session = context.db_session()
    row = db_session.get(SsoSession, sid)
    if row is None or row.user_id != user.id or row.ended_at is not None:
        return False
    ended = end_sessions(db_session, context.services(), [row], reason="ended_by_user")
    audit.record(
        db_session,
        "session.end_other",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"sid": sid, "grants_revoked": len(ended.revoked_grants)},
    )
    db_session.commit()
    ended.kick()
    return True
