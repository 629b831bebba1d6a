"""Registering ticket-bridge systems: the CLI (``yitong bridge systems add --json``), what
admins see in the admin API, and the registration rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from idp.bridge.protocol import find_system
from idp.bridge.registry import BridgeSystemError, BridgeSystemSpec, check_spec, system_secret
from idp.errors import BridgeUnknownSystemError
from idp.storage.models import AuditEvent, Client
from tests.helpers import TEST_KEK, admin_token, bearer


@pytest.mark.parametrize(
    "spec",
    [
        BridgeSystemSpec(name="x", callback="http://legacy.gov.example/cb"),  # http off loopback
        BridgeSystemSpec(name="x", callback="https://legacy.gov.example/cb#frag"),
        BridgeSystemSpec(name="x", callback="https://user@legacy.gov.example/cb"),
        BridgeSystemSpec(name="", callback="https://legacy.gov.example/cb"),
        BridgeSystemSpec(name="x", callback="https://a.example/", attributes=["id_number"]),
        BridgeSystemSpec(name="x", callback="https://a.example/", attributes=["authority"]),
        BridgeSystemSpec(
            name="x", callback="https://a.example/", backchannel_logout_uri="ftp://a.example/"
        ),
    ],
)
def test_bad_registrations_are_refused(spec: BridgeSystemSpec) -> None:
    with pytest.raises(BridgeSystemError):
        check_spec(spec)


def test_cli_add_and_list_and_admin_api(
    app, client, database_url, instance_dir, monkeypatch
) -> None:
    from idp.cli import main

    for key, value in {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(instance_dir),
        "YITONG_SECRET_KEY": "test-secret-key-" + "x" * 32,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "bridge", "systems", "add", "--name", "公积金 legacy",
            "--callback", "https://gjj.gov.example/sso",
            "--attribute", "name", "--attribute", "phone_number",
            "--backchannel-logout", "https://gjj.gov.example/logout", "--json",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["system_id"].startswith("bridge-") and len(data["system_secret"]) >= 43
    assert data["attributes"] == ["name", "phone_number"]
    assert data["protocol"] == "yitong-bridge/1"
    refused = runner.invoke(
        main, ["bridge", "systems", "add", "--name", "x", "--callback", "http://a.example/"]
    )
    assert refused.exit_code == 2 and "callback" in refused.output
    listed = runner.invoke(main, ["bridge", "systems", "list", "--json"], catch_exceptions=False)
    [row] = json.loads(listed.stdout)
    assert row["system_id"] == data["system_id"] and "system_secret" not in row

    services = app.extensions["yitong"]
    with services.db.session() as session:
        stored = session.get(Client, data["system_id"])
        assert stored is not None and stored.secret_digest != data["system_secret"]
        # The secret is kept encrypted (it keys the HMAC), never in the clear.
        assert data["system_secret"].encode() not in (stored.secret_ciphertext or b"")
        assert system_secret(stored, services.kek) == data["system_secret"].encode()
        assert find_system(session, data["system_id"]).client_id == data["system_id"]
        actions = list(session.scalars(select(AuditEvent.action)))
    assert "bridge.system.create" in actions

    # A system is a client row: the clients commands rotate its secret (the HMAC key with it)
    # and disable it (then it is unknown to the bridge).
    rotated = runner.invoke(
        main, ["clients", "rotate-secret", data["system_id"], "--grace", "0", "--json"]
    )
    assert rotated.exit_code == 0, rotated.output
    new_secret = json.loads(rotated.stdout)["client_secret"]
    with services.db.session() as session:
        stored = session.get(Client, data["system_id"])
        assert stored is not None
        assert system_secret(stored, services.kek) == new_secret.encode()
    disabled = runner.invoke(main, ["clients", "disable", data["system_id"]])
    assert disabled.exit_code == 0, disabled.output
    with services.db.session() as session, pytest.raises(BridgeUnknownSystemError):
        find_system(session, data["system_id"])

    token, _ = admin_token(app, ["client-admin"])
    seen = client.get("/admin/api/bridge/systems", headers=bearer(token))
    assert seen.status_code == 200
    assert [(s["system_id"], s["status"]) for s in seen.get_json()] == [
        (data["system_id"], "disabled")
    ]
    assert "secret" not in json.dumps(seen.get_json())
    nobody, _ = admin_token(app, [])
    assert client.get("/admin/api/bridge/systems", headers=bearer(nobody)).status_code == 403


def test_an_oidc_client_is_not_a_bridge_system(app: Any) -> None:
    from tests.helpers import RegisteredClient

    rp = RegisteredClient.create(app, name="An OIDC client")
    with app.extensions["yitong"].db.session() as session, pytest.raises(BridgeUnknownSystemError):
        find_system(session, rp.client_id)
