"""What a person agreed to share with a client, and for how long.

A consent covers the scopes the client may have (requested ∩ registered) and lasts
``consent_lifetime`` seconds; a new consent for a live one adds scopes, an expired one is
replaced.  The prompt decision (:mod:`idp.interaction.prompts`) reads it; the consent page
records it here, and the account page withdraws it here.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit, context
from idp.storage import repo
from idp.storage.models import Client, Consent, Grant, User, utcnow


def consent_of(session: Session, user: User | None, client_id: str) -> Consent | None:
    if user is None:
        return None
    return session.scalars(
        select(Consent).where(Consent.user_id == user.id, Consent.client_id == client_id)
    ).first()


def record_consent(session: Session, user: User, client: Client, requested: list[str]) -> None:
    """Record (and audit) consent to the scopes of ``requested`` the client may have."""
    scopes = sorted(set(requested) & set(client.scopes))
    now = utcnow()
    expires = now + dt.timedelta(seconds=context.settings().consent_lifetime)
    row = consent_of(session, user, client.client_id)
    if row is None:
        session.add(
            Consent(
                user_id=user.id,
                client_id=client.client_id,
                scopes=scopes,
                granted_at=now,
                expires_at=expires,
            )
        )
    else:
        row.scopes = sorted(set(row.scopes) | set(scopes)) if row.expires_at > now else scopes
        row.granted_at, row.expires_at = now, expires
    audit.record(
        session,
        "consent.grant",
        actor=user.id,
        target=client.client_id,
        ip=context.client_ip(),
        details={"scopes": scopes},
    )


def withdraw_consent(session: Session, user: User, client_id: str) -> int | None:
    """Withdraw what ``user`` agreed to share with a client: the consent is deleted and every
    grant of the client for this user is revoked with its tokens (so nothing more is released
    and the service's tokens stop working).  None when there was nothing to withdraw; else the
    number of grants revoked.  Audited; the caller commits.
    """
    consents = list(
        session.scalars(
            select(Consent).where(Consent.user_id == user.id, Consent.client_id == client_id)
        )
    )
    grant_ids = list(
        session.scalars(
            select(Grant.id).where(
                Grant.user_id == user.id, Grant.client_id == client_id, Grant.revoked_at.is_(None)
            )
        )
    )
    if not consents and not grant_ids:
        return None
    for row in consents:
        session.delete(row)
    for grant_id in grant_ids:
        repo.revoke_grant(session, grant_id, "consent_withdrawn")
    audit.record(
        session,
        "consent.withdraw",
        actor=user.id,
        target=client_id,
        ip=context.client_ip(),
        details={"grants_revoked": len(grant_ids)},
    )
    return len(grant_ids)
