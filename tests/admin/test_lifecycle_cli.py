"""``yitong clients show|update|approve|disable|delete|rotate-secret`` and ``yitong users
list|show|enable|disable|reset-password``: the console's lifecycle on the command line,
through the same service layer (issue 11, item 6); contradictory options are refused."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.storage.models import AuditEvent, Client
from tests.test_cli import _citizen_args, db, run  # noqa: F401 - fixtures


def _client(run, *extra: str) -> dict:  # noqa: F811
    made = run(
        "clients", "add", "--name", "Pension", "--redirect-uri", "https://p.gov.example/cb",
        "--scope", "openid profile", *extra, "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return dict(json.loads(made.output))


def test_clients_add_refuses_contradictions_unknown_scopes_and_silent_machine_clients(run):  # noqa: F811
    both = run("clients", "add", "--name", "X", "--public", "--confidential",
               "--redirect-uri", "https://x.gov.example/cb")  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.output
    unknown = run("clients", "add", "--name", "X", "--scope", "openid everything",
                  "--redirect-uri", "https://x.gov.example/cb")  # fmt: skip
    assert unknown.exit_code == 2 and "everything" in unknown.output
    bare = run("clients", "add", "--name", "X")
    assert bare.exit_code == 2 and "client_credentials" in bare.output
    machine = run("clients", "add", "--name", "Batch", "--grant-type", "client_credentials",
                  "--scope", "hr:read", "--json")  # fmt: skip
    assert machine.exit_code == 0, machine.output


def test_client_lifecycle_on_the_command_line(run, db):  # noqa: F811
    made = _client(run)
    cid = made["client_id"]
    shown = run("clients", "show", cid, "--json")
    assert shown.exit_code == 0 and json.loads(shown.output)["client_name"] == "Pension"
    assert made["client_secret"] not in shown.output

    updated = run("clients", "update", cid, "--name", "养老金", "--json")
    assert json.loads(updated.output)["client_name"] == "养老金"
    assert json.loads(updated.output)["status"] == "approved"
    widened = run("clients", "update", cid, "--scope", "openid profile email", "--json")
    assert json.loads(widened.output)["status"] == "pending"
    assert run("clients", "update", cid).exit_code == 2  # nothing to change
    bad = run("clients", "update", cid, "--redirect-uri", "http://p.gov.example/cb")
    assert bad.exit_code == 2 and "https" in bad.output

    assert json.loads(run("clients", "approve", cid, "--json").output)["status"] == "approved"
    rotated = run("clients", "rotate-secret", cid, "--grace", "600", "--json")
    assert rotated.exit_code == 0, rotated.output
    data = json.loads(rotated.output)
    assert data["client_secret"] != made["client_secret"] and data["previous_secret_expires_at"]
    assert run("clients", "rotate-secret", cid, "--grace", "-5").exit_code == 2
    assert json.loads(run("clients", "disable", cid, "--json").output)["status"] == "disabled"
    assert run("clients", "delete", cid, "--yes").exit_code == 0
    assert run("clients", "show", cid).exit_code == 2
    with Session(db) as session:
        assert session.get(Client, cid) is None
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == cid).order_by(AuditEvent.seq)
        ).all()
    assert "client.secret_rotated" in actions and actions[-1] == "client.delete"


def test_user_lifecycle_on_the_command_line(run, db):  # noqa: F811
    added = run("users", "add", *_citizen_args(0), "--json")
    user_id = json.loads(added.output)["id"]
    listed = json.loads(run("users", "list", "--json").output)
    assert [p["id"] for p in listed] == [user_id]
    assert "*" in listed[0]["id_number"]  # masked
    shown = json.loads(run("users", "show", user_id, "--json").output)
    assert shown["totp"] is False and shown["status"] == "active"
    assert run("users", "disable", user_id).exit_code == 0
    assert json.loads(run("users", "show", user_id, "--json").output)["status"] == "disabled"
    assert json.loads(run("users", "enable", user_id, "--json").output)["status"] == "active"
    reset = run("users", "reset-password", user_id, "--json")
    assert reset.exit_code == 0, reset.output
    assert len(json.loads(reset.output)["password"]) >= 16
    assert run("users", "show", "nobody@nowhere.example").exit_code == 2
    with Session(db) as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == user_id).order_by(AuditEvent.seq)
        ).all()
    assert "user.enable" in actions and "user.password_reset" in actions


def test_exchange_targets_on_the_command_line(run):  # noqa: F811
    """``clients update --exchange-target`` (RFC 8693): a new target sends the client back
    to pending; a bad URI or contradictory options are refused with a non-zero exit."""
    cid = _client(run)["client_id"]
    assert json.loads(run("clients", "show", cid, "--json").output)["exchange_targets"] == []
    tax = "https://api.tax.gov.example/"
    set_ = run("clients", "update", cid, "--exchange-target", tax, "--json")
    assert set_.exit_code == 0, set_.output
    data = json.loads(set_.output)
    assert data["exchange_targets"] == [tax] and data["status"] == "pending"
    bad = run("clients", "update", cid, "--exchange-target", "tax api")
    assert bad.exit_code == 2 and "absolute URI" in bad.output
    both = run("clients", "update", cid, "--exchange-target", tax, "--no-exchange-targets")
    assert both.exit_code == 2 and "not both" in both.output
    assert json.loads(run("clients", "approve", cid, "--json").output)["status"] == "approved"
    cleared = json.loads(run("clients", "update", cid, "--no-exchange-targets", "--json").output)
    assert cleared["exchange_targets"] == [] and cleared["status"] == "approved"
