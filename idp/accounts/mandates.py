"""Who may act for a company, and what a token acting for one says (issue 10).

The legal representative acts for the company by office; anyone else needs a **mandate**
(经办人): offered by the representative or a company admin, accepted by the agent, limited to
a role, optionally to some clients, and to a validity period.  This module holds the reading
side only (storage, no Flask, no sessions), so the token checks can use it:

- :func:`acting_problem` is what :func:`idp.oauth.tokens.check_live` asks for a grant made
  "acting for" a company: the company still active, the person still its representative or
  the mandate still live and covering the client.  An expired or revoked mandate therefore
  stops working at the next refresh, introspection or userinfo call.
- :func:`authority_claim` is the ``authority`` claim (OpenID Authority Claims Extension form)
  that ID tokens, userinfo and introspection carry; see docs/integrating.md.

The writing side (registration, status changes, granting and ending mandates) is
:mod:`idp.accounts.entities`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.accounts.privacy import IdentityVault
from idp.storage.models import Grant, LegalEntity, Mandate
from idp.storage.rows import GrantRow

#: The role of a legal representative in the ``authority`` claim (not a mandate role).
REPRESENTATIVE = "legal-representative"
#: The mandate role that may also grant and end mandates.
COMPANY_ADMIN = "company-admin"
#: The scope a client asks for to let the person act for a company.
ENTITY_SCOPE = "entity"


def mandate_is_live(mandate: Mandate, now: dt.datetime) -> bool:
    """Accepted, not ended, and inside its validity period."""
    return (
        mandate.accepted_at is not None
        and mandate.ended_at is None
        and mandate.valid_from <= now < mandate.valid_until
    )


def mandate_covers(mandate: Mandate, client_id: str) -> bool:
    """A mandate without a client list covers every client."""
    return mandate.client_ids is None or client_id in mandate.client_ids


def live_mandates_of(session: Session, user_id: str, now: dt.datetime) -> list[Mandate]:
    """The person's live mandates (any client), oldest first."""
    rows = session.scalars(
        select(Mandate)
        .where(
            Mandate.user_id == user_id,
            Mandate.accepted_at.is_not(None),
            Mandate.ended_at.is_(None),
        )
        .order_by(Mandate.created_at)
    )
    return [m for m in rows if mandate_is_live(m, now)]


def acting_problem(
    session: Session,
    grant: Grant | GrantRow,
    now: dt.datetime,
    entity: LegalEntity | None = None,
) -> str | None:
    """Why ``grant`` may no longer act for its company (None: it may, or it acts for no one)."""
    if grant.entity_id is None:
        return None
    entity = entity or session.get(LegalEntity, grant.entity_id)
    if entity is None or entity.status != "active":
        return "company not active"
    if grant.mandate_id is None:
        if entity.representative_id != grant.user_id:
            return "no longer the legal representative"
        return None
    mandate = session.get(Mandate, grant.mandate_id)
    if mandate is None or mandate.entity_id != entity.id or mandate.user_id != grant.user_id:
        return "mandate gone"
    if not mandate_is_live(mandate, now):
        return "mandate expired or ended"
    if not mandate_covers(mandate, grant.client_id):
        return "mandate does not cover the client"
    return None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def authority_claim(
    session: Session,
    vault: IdentityVault,
    grant: Grant | GrantRow,
    scopes: list[str] | set[str],
) -> dict[str, Any] | None:
    """The ``authority`` claim for a grant acting for a company, else None.

    Released only while the token's ``scopes`` hold ``entity`` (a refresh that narrows the
    scope drops it).

    Shape (documented in docs/integrating.md, "Acting for a company")::

        {"applies_to": {"registration_number": "<credit code>", "name": "<company>"},
         "permission": {"role": "<role>", "valid_from": "<ISO 8601>", "valid_until": "..."},
         "granted_by": "legal-representative" | "company-admin" | "operator" | "registry"}

    A representative's permission has no validity period (it lasts while the office does)
    and is ``granted_by`` the enterprise registry that names them.
    """
    if grant.entity_id is None or ENTITY_SCOPE not in scopes:
        return None
    entity = session.get(LegalEntity, grant.entity_id)
    if entity is None:
        return None
    applies_to = {
        "registration_number": vault.open(entity.credit_code_ciphertext),
        "name": entity.name,
    }
    if grant.mandate_id is None:
        return {
            "applies_to": applies_to,
            "permission": {"role": REPRESENTATIVE},
            "granted_by": "registry",
        }
    mandate = session.get(Mandate, grant.mandate_id)
    if mandate is None:
        return None
    permission: dict[str, Any] = {
        "role": mandate.role,
        "valid_from": _iso(mandate.valid_from),
        "valid_until": _iso(mandate.valid_until),
    }
    if mandate.client_ids is not None:
        permission["clients"] = list(mandate.client_ids)
    return {
        "applies_to": applies_to,
        "permission": permission,
        "granted_by": mandate.granted_as,
    }
