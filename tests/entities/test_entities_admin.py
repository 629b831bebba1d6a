"""``yitong entities`` / ``yitong mandates`` and the admin API for the same (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import select

from idp.cli import main
from idp.storage.models import AuditEvent, LegalEntity, Mandate
from tests.entities.kit import ACTIVE, admin_bearer, company, person
from tests.helpers import TEST_KEK


@pytest.fixture
def cli(app: Flask, database_url: str, instance_dir: Path) -> Any:
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(instance_dir),
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
        "YITONG_SECRET_KEY": app.config["SECRET_KEY"],
    }
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_cli_entities_add_json(app: Flask, cli: Any) -> None:
    record = ACTIVE[0]
    rep = person(app, record["representative_id_number"])
    result = cli(
        "entities",
        "add",
        "--credit-code",
        record["credit_code"],
        "--name",
        "示例公司",
        "--representative",
        rep.phone,
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "示例公司" and data["representative"] == rep.id
    assert record["credit_code"] not in result.stdout  # masked
    with app.extensions["yitong"].db.session() as session:
        assert session.get(LegalEntity, data["id"]) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--credit-code", "91210202T1KLDHN476"], "check character"),
        (["--credit-code", "12345"], "18 characters"),
        (["--representative", "nobody@example.cn"], "no account"),
        (["--representative", "SOMEONE_ELSE"], "someone else"),
    ],
)
def test_cli_entities_add_refuses_bad_input(
    app: Flask, cli: Any, args: list[str], message: str
) -> None:
    record = ACTIVE[0]
    rep = person(app, record["representative_id_number"])
    other = person(app)
    values = {"--credit-code": record["credit_code"], "--representative": rep.email}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        values[flag] = other.email if value == "SOMEONE_ELSE" else value
    result = cli("entities", "add", *[p for kv in values.items() for p in kv])
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""


def test_cli_mandates_grant_and_revoke(app: Flask, cli: Any) -> None:
    entity, _rep, code = company(app)
    agent = person(app)
    from tests.helpers import RegisteredClient

    rp = RegisteredClient.create(app, scopes=["openid", "entity"])
    result = cli(
        "mandates",
        "grant",
        code,
        agent.id_number,
        "--role",
        "finance",
        "--client",
        rp.client_id,
        "--until",
        "2099-12-31",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["role"] == "finance" and data["clients"] == [rp.client_id]
    assert data["accepted"] is False  # the agent accepts it
    assert data["valid_until"].startswith("2099-12-31T16:00:00")  # midnight in China, in UTC
    result = cli("mandates", "revoke", entity.id, agent.email)
    assert result.exit_code == 0, result.output
    with app.extensions["yitong"].db.session() as session:
        row = session.get(Mandate, data["id"])
        assert row.ended_at is not None and row.ended_by == "cli"
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "cli")))
        assert actions == ["mandate.grant", "mandate.end"]
    again = cli("mandates", "revoke", entity.id, agent.email)
    assert again.exit_code == 2 and "no mandate" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "boss", "--until", "2099-01-01"], "role must be one of"),
        (["--role", "agent", "--until", "31/12/2099"], "YYYY-MM-DD"),
        (["--role", "agent", "--until", "2001-01-01"], "end in the future"),
        (["--role", "agent", "--until", "2099-01-01", "--client", "nope"], "unknown client"),
    ],
)
def test_cli_mandates_grant_refuses_bad_input(
    app: Flask, cli: Any, args: list[str], message: str
) -> None:
    entity, _rep, _code = company(app)
    agent = person(app)
    result = cli("mandates", "grant", entity.id, agent.id, *args)
    assert result.exit_code == 2 and message in result.stderr
    unknown = cli(
        "mandates",
        "grant",
        "91350100M000100Y43",
        agent.id,
        "--role",
        "agent",
        "--until",
        "2099-01-01",
    )
    assert unknown.exit_code == 2 and "no company" in unknown.stderr


def test_admin_api_entities_and_mandates(app: Flask, client: Any) -> None:
    record = ACTIVE[1]
    rep = person(app, record["representative_id_number"])
    agent, outsider = person(app), person(app)
    dept = admin_bearer(app, ["department-admin"])
    sec = admin_bearer(app, ["security-admin"])
    refused = client.post(
        "/admin/api/entities",
        json={"credit_code": record["credit_code"], "representative": outsider.id},
        headers=dept,
    )
    assert refused.status_code == 400 and "someone else" in refused.get_json()["error_description"]
    created = client.post(
        "/admin/api/entities",
        json={"credit_code": record["credit_code"], "representative": rep.id},
        headers=dept,
    )
    assert created.status_code == 201, created.get_json()
    entity_id = created.get_json()["id"]
    granted = client.post(
        "/admin/api/mandates",
        json={
            "entity": entity_id,
            "user": agent.email,
            "role": "agent",
            "until": "2099-06-30",
            "accepted": True,
        },
        headers=dept,
    )
    assert granted.status_code == 201 and granted.get_json()["accepted"] is True
    # Suspension is a security-admin's call.
    assert (
        client.post(
            f"/admin/api/entities/{entity_id}/status", json={"status": "suspended"}, headers=dept
        ).status_code
        == 403
    )
    suspended = client.post(
        f"/admin/api/entities/{entity_id}/status", json={"status": "suspended"}, headers=sec
    )
    assert suspended.status_code == 200 and suspended.get_json()["status"] == "suspended"
    gone = client.delete(f"/admin/api/entities/{entity_id}/mandates/{agent.id}", headers=dept)
    assert gone.status_code == 404  # suspension already ended it
    with app.extensions["yitong"].db.session() as session:
        failures = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "entity.register", AuditEvent.outcome == "failure"
            )
        ).all()
        assert [f.target for f in failures] == [outsider.id]


def test_admin_api_needs_the_role(app: Flask, client: Any) -> None:
    weak = admin_bearer(app, ["client-admin"])
    assert client.post("/admin/api/entities", json={}, headers=weak).status_code == 403
    assert client.post("/admin/api/mandates", json={}, headers=weak).status_code == 403
