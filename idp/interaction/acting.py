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
from idp.oauth.release import ActingLabel, account_type, serves
from idp.storage.models import Client, LegalEntity, Mandate, User

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


def options(session: Session, user: User, client: Client, now: dt.datetime) -> list[ActingOption]:
    """ "Myself", then each active company the person represents, then each live mandate
    covering the client (of an active company); only the account types the client serves
    (issue 10 item 7): no "myself" at a company-only service, no company at one that serves
    people only."""
    client_id = client.client_id
    found = [ActingOption(MYSELF)] if serves(client, account_type(user)) else []
    if not serves(client, "company"):
        return found
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


def served_as(user: User, option: ActingOption) -> str:
    """The account type the login is, once chosen: ``company`` when acting for one."""
    return "company" if option.entity is not None else account_type(user)


def login_offered(multi: dict[str, list[str]] | None, client: Client | None) -> bool:
    """Show the legal-person entry (法人登录) next to the personal one: on the account login
    (no authorization under way), or for a client that asked for ``entity`` and serves
    companies."""
    if multi is None:
        return True
    scopes = (multi.get("scope") or [""])[0].split()
    return client is not None and wanted(scopes) and serves(client, "company")


def for_company(
    session: Session, user: User, entity: LegalEntity, client: Client | None, now: dt.datetime
) -> ActingOption | None:
    """How ``user`` may act for ``entity`` (the 法人登录 entry), or None if they may not.

    For a client: one of the picker's options (:func:`options`), the representative's office
    before a mandate.  Without one (the account login): the representative of the active
    company, or the holder of a live mandate from it.
    """
    if client is not None:
        found = [o for o in options(session, user, client, now) if o.entity_id == entity.id]
        return found[0] if found else None
    if entity.status != "active":
        return None
    if entity.representative_id == user.id:
        return ActingOption(entity.id, entity)
    for mandate in live_mandates_of(session, user.id, now):
        if mandate.entity_id == entity.id:
            return ActingOption(f"{entity.id}:{mandate.id}", entity, mandate)
    return None


def label(option: ActingOption | None) -> ActingLabel | None:
    """How the consent page names the company acted for (None: acting for oneself)."""
    if option is None or option.entity is None or option.role is None:
        return None
    entity = option.entity
    return ActingLabel(entity.id, entity.name, entity.credit_code_masked, option.role)


def resolve(
    session: Session, user: User, client: Client, key: str | None, now: dt.datetime
) -> ActingOption | None:
    """The option ``key`` names, if it is still one of the person's options (else None)."""
    if not key:
        return None
    for option in options(session, user, client, now):
        if option.key == key:
            return option
    return None


def _key(client_id: str, started: dt.datetime | None) -> str | None:
    return f"{client_id}|{started.timestamp():.6f}" if started is not None else None


def chosen(
    available: list[ActingOption], client_id: str, started: dt.datetime | None
) -> ActingOption | None:
    """Whom the person acts for in this interaction, among ``available`` (:func:`options`);
    None: the picker must ask (or, with nothing available, the client serves no one here).

    A person with one option only is not asked (no company: they act for themselves).
    """
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
