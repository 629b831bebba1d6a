"""Registering CAS services: the CLI, the admin API, and the service URL / pattern rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from idp.cas.registry import CasServiceError, CasServiceSpec, check_spec
from idp.storage.models import AuditEvent, CasService
from tests.helpers import admin_token, bearer


@pytest.mark.parametrize(
    "pattern",
    [
        "^.*$",
        ".*",
        "^https://.*$",
        "^https?://.*$",
        r"^https://[a-z]+\.gov\.example/.*$",
        r"^https://portal\.gov\.example.*$",  # no slash after the host: .evil.example
        r"^https://portal.gov.example/.*$",  # unescaped dots match any character
        r"^https://portal\.gov\.example/.*",  # not anchored at the end
        r"https://portal\.gov\.example/.*$",  # not anchored at the start
        r"^https://portal\.gov\.example/(.*$",  # not a regular expression
    ],
)
def test_wildcards_and_unanchored_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(CasServiceError):
        check_spec(CasServiceSpec(name="x", service_pattern=pattern))


@pytest.mark.parametrize(
    "spec",
    [
        CasServiceSpec(name="x"),  # neither
        CasServiceSpec(name="x", service_url="https://a.example/", service_pattern="^x$"),
        CasServiceSpec(name="x", service_url="http://portal.gov.example/"),  # http off loopback
        CasServiceSpec(name="x", service_url="https://a.example/#frag"),
        CasServiceSpec(name="x", service_url="https://a.example/*"),
        CasServiceSpec(name="", service_url="https://a.example/"),
        CasServiceSpec(name="x", service_url="https://a.example/", attributes=["id_number"]),
    ],
)
def test_bad_registrations_are_refused(spec: CasServiceSpec) -> None:
    with pytest.raises(CasServiceError):
        check_spec(spec)


def test_anchored_pattern_with_literal_host_is_accepted() -> None:
    spec = check_spec(
        CasServiceSpec(
            name=" Tax ",
            service_pattern=r"^https://portal\.gov\.example:8443/tax/.*$",
            attributes=["email", "email", "name"],
        )
    )
    assert spec.name == "Tax" and spec.attributes == ["email", "name"]


def test_cli_add_and_list(app, database_url, instance_dir, monkeypatch) -> None:
    from idp.cli import main
    from tests.helpers import TEST_KEK

    for key, value in {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(instance_dir),
        "YITONG_SECRET_KEY": "cli-test-secret-key-" + "s" * 32,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "cas", "services", "add", "--name", "门户 Portal",
            "--service", "https://portal.gov.example/cas",
            "--attribute", "email", "--attribute", "name", "--json",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["service"] == "https://portal.gov.example/cas"
    assert data["attributes"] == ["email", "name"] and data["name"] == "门户 Portal"
    control = runner.invoke(
        main, ["cas", "services", "add", "--name", "P\x1b[31m", "--service", "https://a.example/"]
    )
    assert control.exit_code == 2 and "\x1b" not in control.output  # refused, echoed escaped
    refused = runner.invoke(main, ["cas", "services", "add", "--name", "Any", "--pattern", "^.*$"])
    assert refused.exit_code == 2 and "error: service pattern" in refused.output
    listed = runner.invoke(main, ["cas", "services", "list", "--json"], catch_exceptions=False)
    assert [r["id"] for r in json.loads(listed.stdout)] == [data["id"]]
    with app.extensions["yitong"].db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action)))
    assert "cas.service.create" in actions


def test_admin_api_registers_services(app, client) -> None:
    token, actor = admin_token(app, ["security-admin", "client-admin"])
    body: dict[str, Any] = {
        "name": "Permits",
        "pattern": r"^https://permits\.gov\.example/.*$",
        "attributes": ["email"],
    }
    resp = client.post("/admin/api/cas/services", json=body, headers=bearer(token))
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["pattern"] == body["pattern"]
    bad = client.post(
        "/admin/api/cas/services",
        json={"name": "Any", "pattern": "^https://.*$"},
        headers=bearer(token),
    )
    assert bad.status_code == 400, bad.data
    assert bad.get_json()["error"] == "invalid_request", bad.data
    extra = client.post(
        "/admin/api/cas/services",
        json={"name": "X", "service": "https://x.example/", "enabled": False},
        headers=bearer(token),
    )
    assert extra.status_code == 400
    listed = client.get("/admin/api/cas/services", headers=bearer(token))
    assert [s["name"] for s in listed.get_json()] == ["Permits"]
    with app.extensions["yitong"].db.session() as session:
        assert session.scalars(select(CasService.created_by)).one() == actor


def test_admin_api_needs_security_admin(app, client) -> None:
    token, _ = admin_token(app, ["client-admin"])
    resp = client.post(
        "/admin/api/cas/services",
        json={"name": "X", "service": "https://x.example/"},
        headers=bearer(token),
    )
    assert resp.status_code == 403
