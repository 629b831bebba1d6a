"""Companies' own identity assurance (issue 10; docs/identity-assurance.md "Companies").

Registration matched against the enterprise registry is the company's L3 verification; an
electronic business licence checked by the licence service raises it to L5; records expire,
a re-verification the registry no longer backs withdraws them and suspends the company; a
company that is not active has no level.  The level is released as ``verified_claims`` in
``authority.applies_to`` only to clients allowed ``entity.*`` verified claims, with the
OIDC4IDA omission rules; the admin API, the console, the CLI and the company page show it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from jose import jwt as jose_jwt
from sqlalchemy import select

from adapters.enterprise import DEMO_PRESENTATION
from idp.cli import main
from idp.storage.models import AuditEvent, EntityVerification, LegalEntity, utcnow
from tests.admin.console_support import console_client, post_form
from tests.entities.kit import admin_bearer, company
from tests.helpers import TEST_KEK, Flow, RegisteredClient, csrf_token

SCOPE = "openid profile entity"
ENTITY_CLAIMS = ["entity.name", "entity.registration_number"]


def _rows(app: Flask, entity_id: str) -> list[EntityVerification]:
    with app.extensions["yitong"].db.session() as session:
        return list(
            session.scalars(
                select(EntityVerification)
                .where(EntityVerification.entity_id == entity_id)
                .order_by(EntityVerification.id)
            )
        )


def _audit(app: Flask, action: str, target: str) -> list[AuditEvent]:
    with app.extensions["yitong"].db.session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target)
            )
        )


def _verify(client: Any, headers: dict[str, str], ref: str, **body: Any) -> Any:
    return client.post(f"/admin/api/entities/{ref}/verify", json=body, headers=headers)


def test_registration_is_the_companys_l3_verification(app: Flask) -> None:
    entity, rep, _code = company(app)
    [row] = _rows(app, entity.id)
    assert (row.level, row.method, row.verifier) == ("L3", "registry", rep.id)
    [evidence] = row.evidence
    assert evidence["type"] == "electronic_record"
    assert evidence["record"]["type"] == "enterprise_register"
    check = evidence["check_details"][0]
    assert check["check_method"] == "data" and check["txn"].startswith("local-")
    days = (row.expires_at - row.verified_at).days
    assert days == app.extensions["yitong"].settings.entity_verification_valid_days
    assert [e.details["level"] for e in _audit(app, "entity.verify", entity.id)] == ["L3"]


def test_electronic_business_licence_raises_to_l5(app: Flask, client: Any) -> None:
    entity, _rep, code = company(app)
    sec = admin_bearer(app, ["security-admin"])
    resp = _verify(
        client, sec, entity.id, method="e-licence", presentation=DEMO_PRESENTATION + code
    )
    assert resp.status_code == 201, resp.get_json()
    assurance = resp.get_json()["assurance"]
    assert assurance["level"] == "L5"
    assert [v["level"] for v in assurance["verifications"]] == ["L5", "L3"]
    row = _rows(app, entity.id)[-1]
    assert row.method == "e-licence" and row.evidence[0]["check_details"][0]["check_method"] == (
        "vcrypt"
    )
    assert row.evidence[0]["record"]["type"] == "electronic_business_licence"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"method": "e-licence", "presentation": "forged"}, 400),
        ({"method": "e-licence", "presentation": DEMO_PRESENTATION + "91210603A5Y2EXPB06"}, 400),
        ({"method": "e-licence"}, 400),
        ({"method": "e-licence", "presentation": ""}, 400),
        ({"method": "face"}, 400),
        ({"method": "registry", "level": "L5"}, 400),
    ],
)
def test_licence_and_method_refusals(app: Flask, client: Any, body: dict, status: int) -> None:
    """Another company's licence, a forged one, none, or an unknown method: nothing recorded."""
    entity, _rep, _code = company(app)
    sec = admin_bearer(app, ["security-admin"])
    resp = _verify(client, sec, entity.id, **body)
    assert resp.status_code == status, resp.get_json()
    assert [r.level for r in _rows(app, entity.id)] == ["L3"]


def test_verify_needs_the_role_and_a_company(app: Flask, client: Any) -> None:
    entity, _rep, _code = company(app)
    for roles in (["department-admin"], ["auditor"], ["helpdesk"]):
        resp = _verify(client, admin_bearer(app, roles), entity.id, method="registry")
        assert resp.status_code == 403
    sec = admin_bearer(app, ["security-admin"])
    assert _verify(client, sec, "no-such-company", method="registry").status_code == 404
    assert client.post(f"/admin/api/entities/{entity.id}/verify", json={}).status_code == 401


def test_expiry_and_reverification(app: Flask, client: Any) -> None:
    entity, _rep, _code = company(app)
    with app.extensions["yitong"].db.transaction() as session:
        for row in session.scalars(
            select(EntityVerification).where(EntityVerification.entity_id == entity.id)
        ):
            row.expires_at = utcnow() - dt.timedelta(seconds=1)
    sec = admin_bearer(app, ["security-admin"])
    listed = client.get(f"/admin/api/companies?q={entity.id}", headers=sec).get_json()
    [shown] = listed["companies"] if isinstance(listed, dict) else listed
    assert shown["assurance"]["level"] is None
    assert shown["assurance"]["verifications"][0]["state"] == "expired"
    again = _verify(client, sec, entity.id, method="registry")
    assert again.status_code == 201 and again.get_json()["assurance"]["level"] == "L3"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"status": "revoked"}, "suspended"),
        ({"status": "deregistered"}, "deregistered"),
        ({"representative_id_number": "110101199003077777"}, "suspended"),
    ],
)
def test_reverification_the_registry_no_longer_backs(
    app: Flask, client: Any, monkeypatch: pytest.MonkeyPatch, change: dict, status: str
) -> None:
    """The registry lists the company as revoked or deregistered, or names another legal
    representative: its records are withdrawn and it stops being active here (mandates and
    acting sessions end through the status change)."""
    entity, _rep, code = company(app)
    registry = app.extensions["yitong"].enterprises
    old = registry._by_code[code]
    monkeypatch.setitem(registry._by_code, code, dataclasses.replace(old, **change))
    sec = admin_bearer(app, ["security-admin"])
    resp = _verify(client, sec, entity.id, method="registry")
    assert resp.status_code == 409, resp.get_json()
    with app.extensions["yitong"].db.session() as session:
        row = session.get(LegalEntity, entity.id)
        assert row is not None and row.status == status
    assert all(r.withdrawn_at is not None for r in _rows(app, entity.id))
    failures = [e for e in _audit(app, "entity.verify", entity.id) if e.outcome == "failure"]
    assert len(failures) == 1
    # Not active any more: nothing more to verify.
    assert _verify(client, sec, entity.id, method="registry").status_code == 400


def test_suspended_company_has_no_level(app: Flask, client: Any) -> None:
    entity, _rep, _code = company(app)
    sec = admin_bearer(app, ["security-admin"])
    client.post(
        f"/admin/api/entities/{entity.id}/status", json={"status": "suspended"}, headers=sec
    )
    listed = client.get(f"/admin/api/companies?q={entity.id}", headers=sec).get_json()
    [shown] = listed["companies"] if isinstance(listed, dict) else listed
    assert shown["assurance"]["level"] is None and shown["assurance"]["verifications"]


# ------------------------------------------------------------------ verified_claims released
def _ida_client(app: Flask, allowed: list[str] | None) -> RegisteredClient:
    rp = RegisteredClient.create(app, name="Customs", scopes=["openid", "profile", "entity"])
    if allowed is not None:
        with app.extensions["yitong"].db.transaction() as session:
            from idp.storage.models import Client

            row = session.get(Client, rp.client_id)
            assert row is not None
            row.allowed_verified_claims = allowed
    return rp


def _request(verification: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    element = {
        "verification": verification,
        "claims": claims or {"name": None, "registration_number": None},
    }
    wanted = {"authority": {"applies_to": {"verified_claims": element}}}
    return json.dumps({"id_token": wanted, "userinfo": wanted})


def _acting(app: Flask, rp: RegisteredClient, who: Any, entity_id: str, claims: str) -> dict:
    http = app.test_client()
    flow = Flow(http, rp, scope=SCOPE, acting_for=entity_id)
    params = flow.run(who, claims=claims)
    body = flow.token(params["code"]).get_json()
    id_authority = jose_jwt.get_unverified_claims(body["id_token"]).get("authority")
    info = http.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    return {"id_token": id_authority, "userinfo": info.get_json().get("authority")}


FULL = {
    "trust_framework": None,
    "assurance_level": None,
    "time": None,
    "evidence": [{"type": None}],
}


def test_company_verified_claims_in_authority(app: Flask) -> None:
    entity, rep, code = company(app)
    rp = _ida_client(app, ["name", *ENTITY_CLAIMS])
    got = _acting(app, rp, rep, entity.id, _request(FULL))
    for where in ("id_token", "userinfo"):
        vc = got[where]["applies_to"]["verified_claims"]
        assert vc["verification"]["trust_framework"] == "cn_gov_rnv"
        assert vc["verification"]["assurance_level"] == "L3"
        assert vc["verification"]["evidence"][0]["type"] == "electronic_record"
        assert vc["claims"] == {"name": entity.name, "registration_number": code}
        assert got[where]["applies_to"]["registration_number"] == code
    releases = [
        e
        for e in _audit(app, "claims.release", rep.id)
        if "entity.registration_number" in e.details["claims"]
    ]
    assert {e.details["via"] for e in releases} == {"id_token", "userinfo"}


@pytest.mark.parametrize(
    ("verification", "claims"),
    [
        ({"trust_framework": None, "assurance_level": {"value": "L5"}}, None),  # unmet level
        ({"trust_framework": {"value": "eidas"}}, None),  # another framework
        ({"trust_framework": None, "evidence": [{"type": {"value": "document"}}]}, None),
        ({"trust_framework": None}, {"tax_number": None}),  # unknown claim only
        ({"trust_framework": None}, {"name": {"value": "Another company"}}),  # value unmet
    ],
)
def test_unmet_company_requests_are_omitted(app: Flask, verification: dict, claims: Any) -> None:
    entity, rep, _code = company(app)
    rp = _ida_client(app, ENTITY_CLAIMS)
    got = _acting(app, rp, rep, entity.id, _request(verification, claims))
    for where in ("id_token", "userinfo"):
        assert got[where] is not None and "verified_claims" not in got[where]["applies_to"]


def test_max_age_and_l5_after_the_licence(app: Flask, client: Any) -> None:
    entity, rep, code = company(app)
    rp = _ida_client(app, ENTITY_CLAIMS)
    with app.extensions["yitong"].db.transaction() as session:
        for row in session.scalars(
            select(EntityVerification).where(EntityVerification.entity_id == entity.id)
        ):
            row.verified_at = utcnow() - dt.timedelta(days=40)
    recent = {"trust_framework": None, "assurance_level": None, "time": {"max_age": 86400}}
    got = _acting(app, rp, rep, entity.id, _request(recent))
    assert "verified_claims" not in got["userinfo"]["applies_to"]  # 40 days old: unmet
    sec = admin_bearer(app, ["security-admin"])
    _verify(client, sec, entity.id, method="e-licence", presentation=DEMO_PRESENTATION + code)
    got = _acting(app, rp, rep, entity.id, _request(recent))
    assert (
        got["userinfo"]["applies_to"]["verified_claims"]["verification"]["assurance_level"] == "L5"
    )


def test_release_policy_decides_whatever_the_client_asks(app: Flask) -> None:
    """Not allowed ``entity.*``: nothing; allowed only the name: the name only."""
    entity, rep, _code = company(app)
    for allowed, expected in ((None, None), (["name"], None), (["entity.name"], {"name"})):
        rp = _ida_client(app, allowed)
        got = _acting(app, rp, rep, entity.id, _request(FULL))
        vc = got["userinfo"]["applies_to"].get("verified_claims")
        assert (set(vc["claims"]) if vc else None) == expected, allowed


def test_policy_names_are_checked(app: Flask, client: Any) -> None:
    rp = _ida_client(app, None)
    sec = admin_bearer(app, ["security-admin"])
    url = f"/admin/api/clients/{rp.client_id}/release"
    ok = client.put(url, json={"verified_claims": ENTITY_CLAIMS}, headers=sec)
    assert ok.status_code == 200 and ok.get_json()["verified_claims"] == ENTITY_CLAIMS
    bad = client.put(url, json={"verified_claims": ["entity.tax_number"]}, headers=sec)
    assert bad.status_code == 400


def test_malformed_company_request_is_invalid_request(app: Flask) -> None:
    rp = _ida_client(app, ENTITY_CLAIMS)
    http = app.test_client()
    bad = json.dumps({"userinfo": {"authority": {"applies_to": {"verified_claims": "all"}}}})
    resp = Flow(http, rp, scope=SCOPE).authorize(claims=bad)
    assert resp.status_code in (302, 303) and "error=invalid_request" in resp.headers["Location"]


# ------------------------------------------------------------------ pages and the command line
def test_company_page_shows_the_level_and_verifies(app: Flask) -> None:
    entity, rep, code = company(app)
    rp = RegisteredClient.create(app, name="Tax service", scopes=["openid", "profile", "entity"])
    http = app.test_client()
    Flow(http, rp, scope="openid").run(rep)
    html = http.get("/account/companies").get_data(as_text=True)
    assert f'id="assurance-{entity.id}"' in html and "L3" in html
    data = {"csrf_token": csrf_token(html), "method": "e-licence", "presentation": "forged"}
    refused = http.post(f"/account/companies/{entity.id}/verify", data=data)
    assert refused.status_code == 400 and 'id="companies-error"' in refused.get_data(as_text=True)
    data["presentation"] = DEMO_PRESENTATION + code
    done = http.post(f"/account/companies/{entity.id}/verify", data=data)
    assert done.status_code == 303
    page = http.get(done.headers["Location"]).get_data(as_text=True)
    assert 'id="licence-verified"' in page and "L5" in page
    data["method"] = "registry"
    assert http.post(f"/account/companies/{entity.id}/verify", data=data).status_code == 303
    # Without the CSRF token nothing happens; someone else may not verify it.
    assert (
        http.post(f"/account/companies/{entity.id}/verify", data={"method": "registry"}).status_code
        == 400
    )
    other = app.test_client()
    _other_entity, other_rep, _ = company(app, 1)
    Flow(other, rp, scope="openid").run(other_rep)
    other_html = other.get("/account/companies").get_data(as_text=True)
    resp = other.post(
        f"/account/companies/{entity.id}/verify",
        data={"csrf_token": csrf_token(other_html), "method": "registry"},
    )
    assert resp.status_code == 400
    assert [r.level for r in _rows(app, entity.id)] == ["L3", "L5", "L3"]
    assert app.test_client().post(f"/account/companies/{entity.id}/verify").status_code in (
        303,
        400,
    )


def test_console_shows_and_verifies(app: Flask) -> None:
    entity, _rep, code = company(app)
    sec, _ = console_client(app, ["security-admin"])
    page = f"/admin/companies?q={entity.id}"
    html = sec.get(page).get_data(as_text=True)
    assert f'id="company-level-{entity.id}">L3' in html
    post_form(
        sec,
        page,
        f"/admin/companies/{entity.id}/verify",
        method="e-licence",
        presentation=DEMO_PRESENTATION + code,
    )
    assert f'id="company-level-{entity.id}">L5' in sec.get(page).get_data(as_text=True)
    bad = post_form(
        sec, page, f"/admin/companies/{entity.id}/verify", method="e-licence", presentation="x"
    )
    assert bad.status_code == 400


def test_cli_entities_verify(app: Flask, database_url: str, instance_dir: Path) -> None:
    entity, _rep, code = company(app)
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(instance_dir),
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
        "YITONG_SECRET_KEY": app.config["SECRET_KEY"],
    }
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    ok = run("entities", "verify", code, "--method", "e-licence", "--presentation",
             DEMO_PRESENTATION + code, "--json")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["assurance"]["level"] == "L5"
    assert code not in ok.stdout  # the credit code stays masked
    bad = run("entities", "verify", entity.id, "--method", "e-licence", "--presentation", "x")
    assert bad.exit_code == 2 and "licence" in bad.output
    assert run("entities", "verify", "nothing", "--method", "registry").exit_code == 2
    assert run("entities", "verify", entity.id, "--method", "face").exit_code == 2
    again = run("entities", "verify", entity.id, "--method", "registry")
    assert again.exit_code == 0 and "level L5" in again.output
