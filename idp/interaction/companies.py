"""The "my companies" page's decisions (issue 10 items 1 and 2), apart from its HTML.

Both sides of a mandate see it here: the representative (or a company admin) the mandates
their companies gave, with a form to grant one; the agent the mandates offered to them, to
accept or end.  A citizen who is a company's legal representative registers it here too,
checked against the enterprise registry.  The writing is :mod:`idp.accounts.entities` (each
change audited there); this module turns form fields into its calls and its refusals into
sentences for people.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.accounts.entities import (
    CHINA_TIME,
    EntityChangedError,
    EntityError,
    MandateOffer,
    RegistryUnavailableError,
    end_of_day,
    grant_mandate,
    managed_by,
    register_entity,
    reverify_entity,
    verify_entity_licence,
)
from idp.accounts.entity_assurance import assurance_summary
from idp.accounts.identifiers import IdentifierError, normalize_credit_code
from idp.accounts.people import find_account
from idp.interaction.sessions import Ended
from idp.services import Services
from idp.storage.models import Client, LegalEntity, Mandate, User, utcnow

MAX_CLIENTS = 20


@dataclass
class Overview:
    """What the page shows."""

    represented: list[LegalEntity]
    managed: list[LegalEntity]
    given: list[Mandate]
    held: list[Mandate]
    names: dict[str, str] = field(default_factory=dict)  # entity id -> name
    agents: dict[str, User] = field(default_factory=dict)  # user id -> agent
    assurance: dict[str, dict[str, Any]] = field(default_factory=dict)  # entity id -> summary


def overview(session: Session, user: User, now: dt.datetime) -> Overview:
    represented = list(
        session.scalars(
            select(LegalEntity)
            .where(LegalEntity.representative_id == user.id)
            .order_by(LegalEntity.name)
        )
    )
    managed = managed_by(session, user, now)
    given = list(
        session.scalars(
            select(Mandate)
            .where(
                Mandate.entity_id.in_([e.id for e in managed]),
                Mandate.ended_at.is_(None),
            )
            .order_by(Mandate.created_at)
        )
    )
    held = list(
        session.scalars(
            select(Mandate)
            .where(Mandate.user_id == user.id, Mandate.ended_at.is_(None))
            .order_by(Mandate.created_at)
        )
    )
    entity_ids = {m.entity_id for m in held} | {m.entity_id for m in given}
    names = {
        e.id: e.name
        for e in session.scalars(select(LegalEntity).where(LegalEntity.id.in_(entity_ids)))
    }
    agents = {
        u.id: u
        for u in session.scalars(select(User).where(User.id.in_({m.user_id for m in given})))
    }
    assurance = {e.id: assurance_summary(session, e, now) for e in represented}
    return Overview(represented, managed, given, held, names, agents, assurance)


class FormRefused(ValueError):
    """A form refused; the message is translated for the person.  ``ended``: sessions the
    refusal ended (a company suspended), to be told after the caller commits."""

    ended: Ended | None = None


def _client_ids(raw: str) -> tuple[str, ...] | None:
    ids = tuple(dict.fromkeys(c for c in re.split(r"[\s,，、]+", raw.strip()) if c))
    if len(ids) > MAX_CLIENTS:
        raise FormRefused(_("Name at most %(n)d services.", n=MAX_CLIENTS))
    return ids or None


_GRANT_REFUSALS = {
    "role": lambda: _("Choose one of the listed roles."),
    "valid_until": lambda: _("The last day must be today or later."),
    "user": lambda: _(
        "The agent must be an active citizen account other than the legal representative."
    ),
    "client": lambda: _("A service named there is unknown; check the client IDs."),
}


def grant_from_form(
    session: Session,
    services: Services,
    granter: User,
    entity: LegalEntity,
    form: dict[str, str],
    ip: str | None,
) -> Mandate:
    """The representative or a company admin offers a mandate; raises :class:`FormRefused`."""
    agent = find_account(session, form.get("agent", "").strip()[:320], vault=services.vault)
    if agent is None:
        raise FormRefused(_("No account matches this ID number, phone or e-mail."))
    try:
        day = dt.date.fromisoformat(form.get("until", "").strip()[:10])
    except ValueError:
        raise FormRefused(_("Give the last day as a date.")) from None
    offer = MandateOffer(
        role=form.get("role", "")[:64],
        valid_until=end_of_day(day),
        client_ids=_client_ids(form.get("clients", "")[:2000]),
    )
    try:
        return grant_mandate(
            session,
            entity,
            agent,
            offer,
            roles=services.settings.mandate_roles,
            granter=granter,
            actor=granter.id,
            known_client=lambda cid: session.get(Client, cid) is not None,
            ip=ip,
        )
    except EntityError as exc:
        refusal = _GRANT_REFUSALS.get(exc.field)
        if refusal is None:  # "entity": not (or no longer) allowed to manage this company
            raise FormRefused(
                _("Only the legal representative or a company admin may grant mandates.")
            ) from None
        raise FormRefused(refusal()) from None


def register_from_form(
    session: Session, services: Services, user: User, form: dict[str, str], ip: str | None
) -> LegalEntity:
    """A citizen registers the company whose legal representative they are."""
    try:
        code = normalize_credit_code(form.get("credit_code", "")[:64])
    except IdentifierError:
        raise FormRefused(_("The unified social credit code is not valid.")) from None
    try:
        return register_entity(
            session,
            vault=services.vault,
            registry=services.enterprises,
            credit_code=code,
            representative=user,
            actor=user.id,
            ip=ip,
            valid_days=services.settings.entity_verification_valid_days,
        )
    except RegistryUnavailableError:
        raise FormRefused(_("The enterprise registry is unavailable; try again later.")) from None
    except EntityError as exc:
        if exc.field == "representative":
            raise FormRefused(
                _("The enterprise registry does not name you as the legal representative.")
            ) from None
        raise FormRefused(
            _(
                "This company cannot be registered: the enterprise registry does not list it "
                "as active, or it is registered already."
            )
        ) from None


def verify_from_form(
    session: Session,
    services: Services,
    user: User,
    entity: LegalEntity,
    form: dict[str, str],
    ip: str | None,
) -> str:
    """The representative has the company verified again (registry, L3) or presents its
    electronic business licence (L5).  Returns the notice; raises :class:`FormRefused`
    (after a failed re-verification the company is suspended: the caller commits)."""
    if entity.representative_id != user.id:
        raise FormRefused(_("Only the legal representative may have the company verified."))
    try:
        if form.get("method") == "registry":
            reverify_entity(session, services, entity, actor=user.id, ip=ip)
            return "reverified"
        if form.get("method") == "e-licence":
            verify_entity_licence(
                session, services, entity, form.get("presentation", "")[:8192], actor=user.id, ip=ip
            )
            return "licence"
    except EntityChangedError as exc:
        refused = FormRefused(
            _(
                "The enterprise registry no longer confirms this company with you as its "
                "legal representative. The company is suspended; contact the service desk."
            )
        )
        refused.ended = exc.ended
        raise refused from None
    except RegistryUnavailableError:
        raise FormRefused(_("The verification service is unavailable; try again later.")) from None
    except EntityError as exc:
        if exc.field == "presentation":
            raise FormRefused(
                _("The electronic business licence could not be verified for this company.")
            ) from None
        raise FormRefused(_("This company is not active.")) from None
    raise FormRefused(_("Unknown action."))


def today_in_china() -> dt.date:
    """Today where the people are (the grant form's dates are China dates)."""
    return utcnow().astimezone(CHINA_TIME).date()


def last_day(mandate: Mandate) -> str:
    """The last day a mandate is valid, as people gave it (China date, inclusive)."""
    return (
        (mandate.valid_until.astimezone(CHINA_TIME) - dt.timedelta(microseconds=1))
        .date()
        .isoformat()
    )
