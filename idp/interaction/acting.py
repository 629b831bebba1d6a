"""Acting for a company: the choice a person makes after login (issue 10).

When a client asks for the ``entity`` scope, the code is issued only after the person chose
whom they act for at the company picker: "myself", a company whose legal representative they
are, or a company whose live mandate covers this client.  The picker comes before consent.
The choice is kept in the browser's signed session cookie under the client and the moment
the interaction began (which every ``ix`` of one authorization shares, through login, picker
and consent), so it counts for that one authorization only and is forgotten once the code
is issued: switching company needs no new login, only a new authorization (and so yields
new tokens).  At issuance it is checked again against the database (:func:`resolve`).

Companies' logins follow the MFA policy class ``legal-entity``: the ``entity`` scope puts the
login in that class (:func:`idp.interaction.policies.user_classes`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import session as cookie
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.accounts.mandates import (
    ENTITY_SCOPE,
    REPRESENTATIVE,
    live_mandates_of,
    mandate_covers,
)
from idp.storage.models import LegalEntity, Mandate, User

MYSELF = "self"
_COOKIE_KEY = "yt_acting"


@dataclass(frozen=True)
class ActingOption:
    """One line of the picker: ``key`` is what the form sends back."""

    key: str
    entity: LegalEntity | None = None
    mandate: Mandate | None = None

    @property
    def role(self) -> str | None:
        if self.entity is None:
            return None
        return self.mandate.role if self.mandate is not None else REPRESENTATIVE

    @property
    def entity_id(self) -> str | None:
        return self.entity.id if self.entity is not None else None

    @property
    def mandate_id(self) -> str | None:
        return self.mandate.id if self.mandate is not None else None


def wanted(scopes: list[str]) -> bool:
    """The client asked to let the person act for a company."""
    return ENTITY_SCOPE in scopes


def options(session: Session, user: User, client_id: str, now: dt.datetime) -> list[ActingOption]:
    """ "Myself", then each active company the person represents, then each live mandate
    covering ``client_id`` (of an active company)."""
    found = [ActingOption(MYSELF)]
    represented = session.scalars(
        select(LegalEntity)
        .where(LegalEntity.representative_id == user.id, LegalEntity.status == "active")
        .order_by(LegalEntity.name)
    )
    found.extend(ActingOption(entity.id, entity) for entity in represented)
    for mandate in live_mandates_of(session, user.id, now):
        if not mandate_covers(mandate, client_id):
            continue
        entity = session.get(LegalEntity, mandate.entity_id)
        if entity is not None and entity.status == "active":
            found.append(ActingOption(f"{entity.id}:{mandate.id}", entity, mandate))
    return found


def resolve(
    session: Session, user: User, client_id: str, key: str | None, now: dt.datetime
) -> ActingOption | None:
    """The option ``key`` names, if it is still one of the person's options (else None)."""
    if not key:
        return None
    for option in options(session, user, client_id, now):
        if option.key == key:
            return option
    return None


def _key(client_id: str, started: dt.datetime | None) -> str | None:
    return f"{client_id}|{started.timestamp():.6f}" if started is not None else None


def chosen(
    session: Session, user: User, client_id: str, started: dt.datetime | None, now: dt.datetime
) -> ActingOption | None:
    """Whom the person acts for in this interaction; None: the picker must ask.

    A person with no company to act for is not asked: they act for themselves.
    """
    available = options(session, user, client_id, now)
    if len(available) == 1:
        return available[0]
    key = remembered(client_id, started)
    return next((o for o in available if key is not None and o.key == key), None)


def remember(client_id: str, started: dt.datetime, key: str) -> None:
    """Keep the choice for this interaction (one at a time) in the signed session cookie."""
    cookie[_COOKIE_KEY] = {"for": _key(client_id, started), "key": key}


def remembered(client_id: str, started: dt.datetime | None) -> str | None:
    """The choice made in this interaction, if any."""
    value = cookie.get(_COOKIE_KEY)
    wanted_for = _key(client_id, started)
    if wanted_for is None or not isinstance(value, dict) or value.get("for") != wanted_for:
        return None
    key = value.get("key")
    return key if isinstance(key, str) else None


def forget() -> None:
    """The code is issued: the choice is spent."""
    cookie.pop(_COOKIE_KEY, None)
