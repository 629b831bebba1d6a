"""What a person agreed to share with a client, and for how long.

A consent covers the scopes the client may have (requested ∩ registered) and the **released
set**: the claims, verified claims and the company acted for that the consent page listed
(:func:`idp.oauth.release.release_labels`).  It lasts ``consent_lifetime`` seconds; a new
consent for a live one adds to both, an expired one is replaced.  The prompt decision
(:mod:`idp.interaction.prompts`) asks again when the scopes or the released set grow (issue
10 item 7: a client that starts asking for a verified ID number, or a person now acting for
a company, is asked about); the consent page records it here, and the account page
withdraws it here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from idp import audit, context
from idp.interaction import acting
from idp.oauth.release import release_labels, released_keys
from idp.storage import repo
from idp.storage.models import Client, Consent, Grant, User, utcnow


def consent_of(session: Session, user: User | None, client_id: str) -> Consent | None:
    if user is None:
        return None
    return session.scalars(_CONSENT, {"user_id": user.id, "client_id": client_id}).first()


# Read on every authorization: built once.
_CONSENT = select(Consent).where(
    Consent.user_id == bindparam("user_id"), Consent.client_id == bindparam("client_id")
)


def release_for(
    client: Client,
    scopes: Iterable[str],
    claims_request: Mapping[str, Any] | None,
    acting_for: acting.ActingOption | None,
) -> list[dict[str, Any]]:
    """What this authorization would release (the consent page's list)."""
    return release_labels(client, scopes, claims_request, acting.label(acting_for))


def pending_release(
    session: Session,
    user: User,
    client: Client,
    scopes: list[str],
    claims_request: Mapping[str, Any] | None,
    started: dt.datetime | None,
) -> list[dict[str, Any]]:
    """What the authorization at the consent page would release, with the company chosen at
    the picker in this interaction (if any)."""
    acting_for = None
    if acting.wanted(scopes):
        available = acting.options(session, user, client, utcnow())
        acting_for = acting.chosen(available, client.client_id, started)
    return release_for(client, scopes, claims_request, acting_for)


def unconsented(consent: Consent | None, labels: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The released items ``consent`` does not cover (all of them without a consent).

    A consent recorded before the released set was kept covers its scopes' plain claims.
    """
    keys = frozenset(released_keys(labels))
    if consent is None:
        return keys
    if consent.released is None:
        return frozenset(k for k in keys if ":" in k)
    return keys - set(consent.released)


def record_consent(
    session: Session,
    user: User,
    client: Client,
    requested: list[str],
    released: Iterable[str] = (),
) -> None:
    """Record (and audit) consent to the scopes of ``requested`` the client may have and to
    the ``released`` items (:func:`idp.oauth.release.released_keys`)."""
    scopes = sorted(set(requested) & set(client.scopes))
    items = sorted(set(released))
    now = utcnow()
    expires = now + dt.timedelta(seconds=context.settings().consent_lifetime)
    row = consent_of(session, user, client.client_id)
    if row is None:
        session.add(
            Consent(
                user_id=user.id,
                client_id=client.client_id,
                scopes=scopes,
                released=items,
                granted_at=now,
                expires_at=expires,
            )
        )
    else:
        live = row.expires_at > now
        row.scopes = sorted(set(row.scopes) | set(scopes)) if live else scopes
        row.released = sorted(set(row.released or ()) | set(items)) if live else items
        row.granted_at, row.expires_at = now, expires
    audit.record(
        session,
        "consent.grant",
        actor=user.id,
        target=client.client_id,
        ip=context.client_ip(),
        details={"scopes": scopes, "released": items},
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
