"""Companies as accounts and mandates (issue 10): registration against the enterprise
registry, status changes, and the mandate lifecycle (grant, accept, end), all audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from adapters.base import AdapterConfigError, EnterpriseRecord, EnterpriseRegistry
from adapters.enterprise import LocalEnterpriseRegistry
from idp.accounts.entities import (
    EntityError,
    MandateOffer,
    RegistryUnavailableError,
    accept_mandate,
    end_mandate,
    find_entity,
    grant_mandate,
    register_entity,
    set_entity_status,
)
from idp.accounts.mandates import mandate_is_live
from idp.storage.models import AuditEvent, LegalEntity, Mandate, User, utcnow
from tests.entities.kit import ACTIVE, RECORDS, company, mandate, person


def _register(app: Flask, credit_code: str, rep_id: str, registry: Any = "default") -> Any:
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        return register_entity(
            session,
            vault=services.vault,
            registry=services.enterprises if registry == "default" else registry,
            credit_code=credit_code,
            representative=session.get(User, rep_id),
            actor="test",
        ).id


def _audit(app: Flask, action: str) -> list[AuditEvent]:
    with app.extensions["yitong"].db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# ------------------------------------------------------------------ the registry adapter
def test_local_registry_is_an_enterprise_registry() -> None:
    registry = LocalEnterpriseRegistry([EnterpriseRecord("X", "n", "1")])
    assert isinstance(registry, EnterpriseRegistry)
    found = registry.lookup(" x ")
    assert found is not None
    assert (found.credit_code, found.name, found.representative_id_number) == ("X", "n", "1")
    assert found.reference.startswith("local-") and found.checked_at  # kept as evidence
    assert registry.lookup(" x ").reference != found.reference  # one per answer
    assert registry.lookup("Y") is None


def test_fake_licence_service_accepts_only_its_demo_presentation() -> None:
    from adapters.base import BusinessLicenceVerifier
    from adapters.enterprise import DEMO_PRESENTATION, FakeLicenceVerifier

    registry = LocalEnterpriseRegistry(
        [EnterpriseRecord("X", "n", "1"), EnterpriseRecord("Z", "m", "2", status="revoked")]
    )
    fake = FakeLicenceVerifier(registry)
    assert isinstance(fake, BusinessLicenceVerifier)
    assert fake.check_licence("x", DEMO_PRESENTATION + "X").valid
    assert not fake.check_licence("X", DEMO_PRESENTATION + "Z").valid  # another company's
    assert not fake.check_licence("Z", DEMO_PRESENTATION + "Z").valid  # revoked
    assert not fake.check_licence("Y", DEMO_PRESENTATION + "Y").valid  # unknown


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("{}", "expected a JSON list"),
        ('[{"name": "n", "representative_id_number": "1"}]', "[0].credit_code"),
        (
            '[{"credit_code": "C", "name": "n", "representative_id_number": "1", '
            '"status": "closed"}]',
            "[0].status",
        ),
        ("not json", "enterprise_registry_file"),
    ],
)
def test_malformed_registry_file_is_refused(tmp_path: Any, content: str, where: str) -> None:
    path = tmp_path / "records.json"
    path.write_text(content, "utf-8")
    with pytest.raises(AdapterConfigError, match=where.replace("[", r"\[")):
        LocalEnterpriseRegistry.from_file(path)


# ------------------------------------------------------------------ registration
def test_representative_registers_company(app: Flask) -> None:
    entity, rep, code = company(app)
    services = app.extensions["yitong"]
    with services.db.session() as session:
        row = session.get(LegalEntity, entity.id)
        assert row.representative_id == rep.id and row.status == "active"
        assert row.name == ACTIVE[0]["name"]  # the registry's name when none is given
        assert row.region == code[2:8]
        assert code.encode() not in row.credit_code_ciphertext  # encrypted at rest
        assert row.credit_code_masked == code[:4] + "*" * 10 + code[-4:]
        assert services.vault.open(row.credit_code_ciphertext) == code
        # Found by credit code (in any form people type it) and by id.
        for ref in (code.lower(), f" {code} ", entity.id):
            found = find_entity(session, services.vault, ref)
            assert found is not None and found.id == entity.id
        assert find_entity(session, services.vault, "91350100M000100Y43") is None
    [event] = _audit(app, "entity.register")
    assert event.target == entity.id and code not in str(event.details)


def test_non_representative_is_refused_and_audited(app: Flask) -> None:
    someone = person(app)
    with pytest.raises(EntityError, match="someone else"):
        _register(app, ACTIVE[0]["credit_code"], someone.id)
    with app.extensions["yitong"].db.session() as session:
        assert session.scalars(select(LegalEntity)).first() is None
    # The refusal is recorded (in the caller's transaction, committed by admin services).


@pytest.mark.parametrize("status", ["revoked", "deregistered"])
def test_company_not_active_at_the_registry_is_refused(app: Flask, status: str) -> None:
    record = next(r for r in RECORDS if r["status"] == status)
    rep = person(app, record["representative_id_number"])
    with pytest.raises(EntityError, match=status):
        _register(app, record["credit_code"], rep.id)


def test_unknown_malformed_duplicate_and_no_registry(app: Flask) -> None:
    _entity, rep, code = company(app)
    with pytest.raises(EntityError, match="already registered"):
        _register(app, code, rep.id)
    with pytest.raises(EntityError, match="check character"):
        _register(app, code[:17] + ("0" if code[17] != "0" else "1"), rep.id)
    with pytest.raises(RegistryUnavailableError):
        _register(app, ACTIVE[1]["credit_code"], rep.id, registry=None)
    empty = LocalEnterpriseRegistry([])
    with pytest.raises(EntityError, match="does not know"):
        _register(app, ACTIVE[1]["credit_code"], rep.id, registry=empty)


# ------------------------------------------------------------------ mandates
def _offer(days: int = 30, role: str = "agent", **kw: Any) -> MandateOffer:
    return MandateOffer(role, utcnow() + dt.timedelta(days=days), **kw)


def _grant(app: Flask, entity_id: str, granter: str | None, agent: str, offer: MandateOffer) -> str:
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        return grant_mandate(
            session,
            session.get(LegalEntity, entity_id),
            session.get(User, agent),
            offer,
            roles=services.settings.mandate_roles,
            granter=session.get(User, granter) if granter else None,
            actor=granter or "cli",
        ).id


def test_mandate_lifecycle_grant_accept_end(app: Flask) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    services = app.extensions["yitong"]
    mid = _grant(app, entity.id, rep.id, agent.id, _offer())
    with services.db.transaction() as session:
        row = session.get(Mandate, mid)
        assert not mandate_is_live(row, utcnow())  # offered, not yet accepted
        assert row.granted_as == "legal-representative"
        with pytest.raises(EntityError, match="someone else"):
            accept_mandate(session, row, session.get(User, rep.id))
        accept_mandate(session, row, session.get(User, agent.id))
        assert mandate_is_live(row, utcnow())
    with services.db.transaction() as session:
        row = session.get(Mandate, mid)
        end_mandate(session, row, by=session.get(User, agent.id), actor=agent.id)  # agent's side
        assert row.ended_at is not None and not mandate_is_live(row, utcnow())
    assert [e.target for e in _audit(app, "mandate.grant")] == [mid]
    assert [e.actor for e in _audit(app, "mandate.accept")] == [agent.id]
    assert [e.actor for e in _audit(app, "mandate.end")] == [agent.id]


def test_representative_ends_a_mandate_outsider_cannot(app: Flask) -> None:
    entity, rep, _code = company(app)
    agent, outsider = person(app), person(app)
    mid = mandate(app, entity.id, rep.id, agent.id)
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        row = session.get(Mandate, mid)
        with pytest.raises(EntityError, match="only the agent"):
            end_mandate(session, row, by=session.get(User, outsider.id), actor=outsider.id)
        end_mandate(session, row, by=session.get(User, rep.id), actor=rep.id)
        assert row.ended_by == rep.id


def test_company_admin_may_grant_plain_agent_may_not(app: Flask) -> None:
    entity, rep, _code = company(app)
    admin, plain, newcomer = person(app), person(app), person(app)
    mandate(app, entity.id, rep.id, admin.id, role="company-admin")
    mandate(app, entity.id, rep.id, plain.id, role="agent")
    with pytest.raises(EntityError, match="representative or a company admin"):
        _grant(app, entity.id, plain.id, newcomer.id, _offer())
    mid = _grant(app, entity.id, admin.id, newcomer.id, _offer(role="social-security"))
    with app.extensions["yitong"].db.session() as session:
        assert session.get(Mandate, mid).granted_as == "company-admin"


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        (MandateOffer("director", utcnow() + dt.timedelta(days=1)), "role must be one of"),
        (MandateOffer("agent", utcnow() - dt.timedelta(days=1)), "end in the future"),
        (MandateOffer("agent", utcnow() + dt.timedelta(days=1), client_ids=()), "at least one"),
    ],
)
def test_bad_mandates_are_refused(app: Flask, offer: MandateOffer, message: str) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    with pytest.raises(EntityError, match=message):
        _grant(app, entity.id, rep.id, agent.id, offer)


def test_representative_needs_no_mandate(app: Flask) -> None:
    entity, rep, _code = company(app)
    with pytest.raises(EntityError, match="needs no mandate"):
        _grant(app, entity.id, None, rep.id, _offer())


def test_new_mandate_replaces_the_standing_one(app: Flask) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    first = mandate(app, entity.id, rep.id, agent.id)
    second = _grant(app, entity.id, rep.id, agent.id, _offer(role="finance"))
    with app.extensions["yitong"].db.session() as session:
        assert session.get(Mandate, first).end_reason == "replaced"
        assert session.get(Mandate, second).ended_at is None


@pytest.mark.parametrize("status", ["suspended", "deregistered"])
def test_suspension_and_deregistration_end_every_mandate(app: Flask, status: str) -> None:
    entity, rep, _code = company(app)
    agents = [person(app), person(app)]
    ids = [mandate(app, entity.id, rep.id, a.id) for a in agents]
    services = app.extensions["yitong"]
    with app.app_context(), services.db.transaction() as session:
        set_entity_status(
            session, services, session.get(LegalEntity, entity.id), status, actor="test"
        )
    with services.db.session() as session:
        rows = [session.get(Mandate, i) for i in ids]
        assert all(r.ended_at is not None and r.end_reason == f"entity_{status}" for r in rows)
    [event] = _audit(app, f"entity.{status}")
    assert event.details["mandates"] == 2
    with services.db.transaction() as session, pytest.raises(EntityError):
        # No new mandates for a company that is not active.
        grant_mandate(
            session,
            session.get(LegalEntity, entity.id),
            session.get(User, agents[0].id),
            _offer(),
            roles=services.settings.mandate_roles,
            granter=None,
            actor="cli",
        )


def test_deregistered_company_stays_deregistered(app: Flask) -> None:
    entity, _rep, _code = company(app)
    services = app.extensions["yitong"]
    with app.app_context(), services.db.transaction() as session:
        row = session.get(LegalEntity, entity.id)
        set_entity_status(session, services, row, "deregistered", actor="test")
        with pytest.raises(EntityError, match="cannot be reactivated"):
            set_entity_status(session, services, row, "active", actor="test")
