"""Companies registered and re-verified through the HTTP enterprise registry (issue 10
item 5): the app is configured with ``enterprise_registry_url`` pointing at a stub registry
service on loopback (tests/services/enterprise_registry.py).

A registry that is down, slow or answers unusably changes nothing (no registration, no
withdrawal, no suspension) and people and operators are told to try later; a registry that
no longer backs a company suspends or deregisters it exactly as the local one does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from adapters.enterprise import HttpEnterpriseRegistry
from idp.accounts.entities import EntityError, RegistryUnavailableError, register_entity
from idp.storage.models import AuditEvent, EntityVerification, LegalEntity, User
from tests.entities.kit import ACTIVE, RECORDS, admin_bearer, company, person
from tests.helpers import Flow, RegisteredClient, csrf_token
from tests.services.enterprise_registry import EnterpriseRegistryStub
from tests.services.recorder import running


@pytest.fixture
def registry() -> Iterator[EnterpriseRegistryStub]:
    with running(EnterpriseRegistryStub(RECORDS)) as service:
        yield service


@pytest.fixture
def app(make_app: Any, registry: EnterpriseRegistryStub) -> Flask:
    made: Flask = make_app(
        enterprise_registry_url=registry.url(""), enterprise_registry_read_timeout_ms=300
    )
    return made


def _register(app: Flask, credit_code: str, rep_id: str) -> str:
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        entity = register_entity(
            session,
            vault=services.vault,
            registry=services.enterprises,
            credit_code=credit_code,
            representative=session.get(User, rep_id),
            actor="test",
        )
        return entity.id


def _rows(app: Flask, entity_id: str) -> list[EntityVerification]:
    with app.extensions["yitong"].db.session() as session:
        return list(
            session.scalars(
                select(EntityVerification)
                .where(EntityVerification.entity_id == entity_id)
                .order_by(EntityVerification.id)
            )
        )


def _status(app: Flask, entity_id: str) -> str:
    with app.extensions["yitong"].db.session() as session:
        row = session.get(LegalEntity, entity_id)
        assert row is not None
        return row.status


def _verify(app: Flask, headers: dict[str, str], entity_id: str) -> Any:
    return app.test_client().post(
        f"/admin/api/entities/{entity_id}/verify", json={"method": "registry"}, headers=headers
    )


def test_registration_asks_the_http_registry(app: Flask, registry: EnterpriseRegistryStub) -> None:
    assert isinstance(app.extensions["yitong"].enterprises, HttpEnterpriseRegistry)
    entity, _rep, code = company(app)
    assert registry.asked == [code]
    [row] = _rows(app, entity.id)
    assert row.level == "L3"
    [check] = row.evidence[0]["check_details"]
    # The registry's own reference and source are the evidence (the txn of verified_claims).
    assert check["txn"] == "ER-000001" and check["organization"] == "enterprise-registry"
    assert row.evidence[0]["record"]["source"]["name"] == "enterprise-registry"


def test_registration_refusals_through_the_http_registry(
    app: Flask, registry: EnterpriseRegistryStub
) -> None:
    someone = person(app)
    with pytest.raises(EntityError, match="someone else"):  # another legal representative
        _register(app, ACTIVE[1]["credit_code"], someone.id)
    for status in ("revoked", "deregistered"):
        record = next(r for r in RECORDS if r["status"] == status)
        rep = person(app, record["representative_id_number"])
        with pytest.raises(EntityError, match=status):
            _register(app, record["credit_code"], rep.id)
    with pytest.raises(EntityError, match="does not know"):
        _register(app, "91350100M000100Y43", someone.id)
    # An outage or an unusable answer is "try later", never "does not know".
    rep = person(app, ACTIVE[2]["representative_id_number"])
    for answer in [(503, b"{}"), (404, b'{"found": false}'), (200, b"<html>")]:
        registry.override = answer
        with pytest.raises(RegistryUnavailableError):
            _register(app, ACTIVE[2]["credit_code"], rep.id)
    registry.override = None
    with app.extensions["yitong"].db.session() as session:
        assert session.scalars(select(LegalEntity)).first() is None
    assert len(registry.asked) == 7


def test_reverification_the_registry_cannot_answer_changes_nothing(
    app: Flask, registry: EnterpriseRegistryStub
) -> None:
    entity, _rep, code = company(app)
    sec = admin_bearer(app, ["security-admin"])
    other = ACTIVE[1]["credit_code"]
    unusable = [
        (503, b"{}"),
        (429, b"{}"),
        (404, b'{"found": false}'),
        (200, b"not json"),
        (200, json.dumps({"found": True, **ACTIVE[1], "reference": "R"}).encode()),  # other
        (200, b'{"found": false}'),  # no reference: not a usable "unknown"
        (200, b'{"found": true, "reference": "R"}' + b" " * 70_000),  # oversized
    ]
    for answer in unusable:
        registry.override = answer
        resp = _verify(app, sec, entity.id)
        assert resp.status_code == 503, (answer, resp.get_json())
        assert resp.get_json()["error"] == "temporarily_unavailable"
    registry.override = None
    gate = threading.Event()
    registry.gate = gate  # slower than enterprise_registry_read_timeout_ms
    try:
        assert _verify(app, sec, entity.id).status_code == 503
    finally:
        gate.set()
        registry.gate = None
    assert other not in registry.asked
    assert _status(app, entity.id) == "active"
    rows = _rows(app, entity.id)
    assert len(rows) == 1 and rows[0].withdrawn_at is None
    with app.extensions["yitong"].db.session() as session:
        failures = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "entity.verify", AuditEvent.outcome == "failure"
            )
        ).all()
    assert failures == []
    # The registry is back and still backs the company: a new L3 record.
    again = _verify(app, sec, entity.id)
    assert again.status_code == 201 and again.get_json()["assurance"]["level"] == "L3"
    rows = _rows(app, entity.id)
    assert len(rows) == 2
    assert rows[1].evidence[0]["check_details"][0]["txn"] == f"ER-{len(registry.requests):06d}"
    assert registry.asked.count(code) == len(unusable) + 3


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"status": "revoked"}, "suspended"),
        ({"status": "deregistered"}, "deregistered"),
        ({"representative_id_number": "110101199003077777"}, "suspended"),
        (None, "suspended"),  # the registry says it no longer knows the code
    ],
)
def test_reverification_the_http_registry_no_longer_backs(
    app: Flask, registry: EnterpriseRegistryStub, change: dict[str, str] | None, status: str
) -> None:
    entity, _rep, code = company(app)
    if change is None:
        del registry.records[code]
    else:
        registry.records[code].update(change)
    sec = admin_bearer(app, ["security-admin"])
    resp = _verify(app, sec, entity.id)
    assert resp.status_code == 409, resp.get_json()
    assert _status(app, entity.id) == status
    assert all(r.withdrawn_at is not None for r in _rows(app, entity.id))


def test_company_page_says_try_later_when_the_registry_is_down(
    app: Flask, registry: EnterpriseRegistryStub
) -> None:
    entity, rep, _code = company(app)
    rp = RegisteredClient.create(app, name="Tax service", scopes=["openid", "profile", "entity"])
    http = app.test_client()
    Flow(http, rp, scope="openid").run(rep)
    html = http.get("/account/companies").get_data(as_text=True)
    registry.override = (502, b"{}")
    resp = http.post(
        f"/account/companies/{entity.id}/verify",
        data={"csrf_token": csrf_token(html), "method": "registry"},
    )
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert 'id="companies-error"' in page and "核验服务暂时不可用" in page
    assert _status(app, entity.id) == "active" and len(_rows(app, entity.id)) == 1
