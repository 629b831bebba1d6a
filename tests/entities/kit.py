"""Companies and agents for the issue 10 tests, registered against the synthetic registry.

People are made with ID numbers chosen so they never collide with other accounts of the test
(the registry names fixed ID numbers as representatives, so a representative is the citizen
holding one of those; an agent holds any other unused number).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from flask import Flask
from sqlalchemy import select

from idp.accounts.entities import MandateOffer, accept_mandate, grant_mandate, register_entity
from idp.app import SYNTHETIC_ENTERPRISES
from idp.storage.models import LegalEntity, Mandate, User, utcnow
from tests.helpers import IDS, PASSWORD, Citizen

RECORDS = json.loads(SYNTHETIC_ENTERPRISES.read_text("utf-8"))
ACTIVE = [r for r in RECORDS if r["status"] == "active"]
REPRESENTED = {r["representative_id_number"] for r in RECORDS}


def _used(app: Flask) -> set[str]:
    services = app.extensions["yitong"]
    with services.db.session() as session:
        digests = set(session.scalars(select(User.id_number_digest)))
    return {n for n in IDS["resident_ids"] if services.vault.digest(n) in digests}


def person(app: Flask, id_number: str | None = None, name: str = "王五") -> Citizen:
    """A citizen with a fresh phone and e-mail; an unused, unrepresenting ID number by default."""
    from idp.accounts.people import NewCitizen, register_citizen

    if id_number is None:
        used = _used(app)
        id_number = next(n for n in IDS["resident_ids"] if n not in used and n not in REPRESENTED)
    services = app.extensions["yitong"]
    tag = secrets.randbelow(10**8)
    phone = f"139{tag:08d}"
    email = f"p{tag}@example.cn"
    with services.db.transaction() as session:
        user = register_citizen(
            session,
            NewCitizen(name=name, id_number=id_number, phone=phone, email=email, password=PASSWORD),
            vault=services.vault,
            passwords=services.passwords,
        )
        user.email_verified = True  # the link was followed: the e-mail is a login name
    return Citizen(user.id, id_number, "+86" + phone, email, PASSWORD, name)


def company(app: Flask, index: int = 0) -> tuple[LegalEntity, Citizen, str]:
    """An active company of the registry, registered by its representative (made here)."""
    record = ACTIVE[index]
    rep = person(app, record["representative_id_number"], name="赵六")
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        entity = register_entity(
            session,
            vault=services.vault,
            registry=services.enterprises,
            credit_code=record["credit_code"],
            representative=session.get(User, rep.id),
            actor=rep.id,
        )
        session.expunge(entity)
    return entity, rep, record["credit_code"]


def mandate(
    app: Flask,
    entity_id: str,
    granter_id: str,
    agent_id: str,
    *,
    role: str = "agent",
    clients: tuple[str, ...] | None = None,
    days: int = 30,
    accept: bool = True,
) -> str:
    """A mandate offered by ``granter_id`` (and accepted by the agent unless told not to)."""
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        entity = session.get(LegalEntity, entity_id)
        assert entity is not None
        row = grant_mandate(
            session,
            entity,
            session.get(User, agent_id),
            MandateOffer(role, utcnow() + dt.timedelta(days=days), client_ids=clients),
            roles=services.settings.mandate_roles,
            granter=session.get(User, granter_id),
            actor=granter_id,
        )
        if accept:
            accept_mandate(session, row, session.get(User, agent_id))
        return row.id


def set_mandate(app: Flask, mandate_id: str, **values: Any) -> None:
    """Change a mandate row directly (to move its validity into the past)."""
    with app.extensions["yitong"].db.transaction() as session:
        row = session.get(Mandate, mandate_id)
        assert row is not None
        for k, v in values.items():
            setattr(row, k, v)


def admin_bearer(app: Flask, roles: list[str]) -> dict[str, str]:
    """A bearer header for a new admin account holding ``roles`` (tests.helpers.admin_token,
    for an account made with :func:`person` so its ID number never collides with a
    representative's)."""
    from tests.helpers import admin_token, bearer

    token, _actor = admin_token(app, roles, user_id=person(app, name="管理员").id)
    return bearer(token)
