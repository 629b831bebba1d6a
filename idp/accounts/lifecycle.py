"""Ending everything an account holds: sessions, grants, tokens, and telling the clients.

Used when an account is disabled or an administrator terminates its sessions (checklist 42,
67): every SSO session ends through the same path as a logout, so clients registered for
back-channel logout hear of it; then every remaining grant (offline ones too, when the account
is disabled) is revoked.  The caller commits, then hands the delivery ids to the dispatcher.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.context import Services
from idp.storage import repo
from idp.storage.models import SsoSession, User


def end_session(
    session: Session, services: Services, sso: SsoSession, *, reason: str = "logout"
) -> Any:
    """End one SSO session through the logout path (grants revoked, clients queued)."""
    from idp.oauth.logout import end_sso_session

    return end_sso_session(
        session,
        sso,
        issuer=services.settings.issuer,
        keys=services.keys,
        pairwise_secret=services.extra["pairwise_secret"],
        reason=reason,
    )


def end_all_sessions(
    session: Session,
    services: Services,
    user: User,
    *,
    actor: str,
    reason: str,
    include_offline: bool,
) -> list[int]:
    """End every live SSO session of ``user`` and revoke grants; return logout delivery ids."""
    deliveries: list[int] = []
    live = session.scalars(
        select(SsoSession).where(SsoSession.user_id == user.id, SsoSession.ended_at.is_(None))
    ).all()
    for sso in live:
        outcome = end_session(session, services, sso, reason=reason)
        deliveries.extend(outcome.deliveries)
    revoked = repo.revoke_user_grants(session, user.id, reason, include_offline=include_offline)
    audit.record(
        session,
        f"user.{reason}",
        actor=actor,
        target=user.id,
        details={"sessions": len(live), "grants": len(revoked), "backchannel": len(deliveries)},
    )
    return deliveries


def disable_account(session: Session, services: Services, user: User, *, actor: str) -> list[int]:
    """Disable ``user``: no new login, every session and token (offline too) ends at once."""
    user.status = "disabled"
    return end_all_sessions(
        session, services, user, actor=actor, reason="disabled", include_offline=True
    )


def kick_deliveries(services: Services, deliveries: list[int]) -> None:
    """Start back-channel delivery after the commit (a no-op when nothing was queued)."""
    if deliveries:
        from idp.oauth.logout import dispatcher_for

        dispatcher_for(services).kick(deliveries)
