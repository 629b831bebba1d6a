"""Ending everything an account holds: sessions, grants, tokens, and telling the clients.

Used when an account is disabled or an administrator terminates its sessions (checklist 42,
67): every SSO session ends through :func:`idp.interaction.sessions.end_sessions`, so clients
registered for back-channel logout hear of it; then every remaining grant (offline ones too,
when the account is disabled) is revoked.  The caller commits, then calls ``kick()`` on the
result to start delivery.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from idp import audit
from idp.interaction.sessions import Ended, end_user_sessions
from idp.services import Services
from idp.storage.models import User


def end_all_sessions(
    session: Session,
    services: Services,
    user: User,
    *,
    actor: str,
    reason: str,
    include_offline: bool,
) -> Ended:
    """End every live SSO session of ``user`` and revoke its grants, audited."""
    ended = end_user_sessions(
        session, services, user.id, reason=reason, include_offline=include_offline
    )
    audit.record(
        session,
        f"user.{reason}",
        actor=actor,
        target=user.id,
        details={
            "sessions": len(ended.sids),
            "grants": len(ended.revoked_grants),
            "backchannel": len(ended.deliveries),
        },
    )
    return ended


def disable_account(session: Session, services: Services, user: User, *, actor: str) -> Ended:
    """Disable ``user``: no new login, every session and token (offline too) ends at once."""
    user.status = "disabled"
    return end_all_sessions(
        session, services, user, actor=actor, reason="disabled", include_offline=True
    )
