"""``yitong departments``, ``admins``, ``registration-tokens`` and ``clients approve|disable``:
the same service layer as the admin API, audited with the actor ``cli`` (issue 11)."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.storage.models import AdminRole, AuditEvent, Client, RegistrationToken, User
from idp.storage.repo import digest
from tests.test_cli import _citizen_args, db, run  # noqa: F401 - fixtures

METADATA = {
    "client_name": "Pension service",
    "redirect_uris": ["https://pension.gov.example/cb"],
}


def test_department_admin_and_registration_token_lifecycle(run, db):  # noqa: F811
    assert run("departments", "add", "social", "--name", "人社厅").exit_code == 0
    refused = run("departments", "add", "Bad ID", "--name", "x")
    assert refused.exit_code == 2 and "department id" in refused.output
    added = run("users", "add", *_citizen_args(0), "--json")
    assert added.exit_code == 0, added.output
    user_id = json.loads(added.output)["id"]

    no_dept = run("admins", "grant", user_id, "department-admin")
    assert no_dept.exit_code == 2
    granted = run(
        "admins", "grant", user_id, "department-admin", "--department", "social", "--json"
    )
    assert granted.exit_code == 0, granted.output
    assert json.loads(granted.output)["departments"] == ["social"]

    issued = run("registration-tokens", "issue", "--department", "social", "--uses", "2", "--json")
    assert issued.exit_code == 0, issued.output
    token = json.loads(issued.output)["token"]
    assert len(token) >= 43
    assert run("registration-tokens", "issue", "--department", "nowhere").exit_code == 2
    assert (
        run("registration-tokens", "issue", "--department", "social", "--uses", "0").exit_code == 2
    )

    with Session(db) as session:
        row = session.scalars(select(RegistrationToken)).one()
        assert row.digest == digest(token) and row.uses_left == 2  # only the digest is kept
        roles = session.scalars(select(AdminRole).where(AdminRole.user_id == user_id)).all()
        assert [(r.role, r.department_id) for r in roles] == [("department-admin", "social")]
        user = session.get(User, user_id)
        assert user is not None and "department-admin" in user.roles
        actions = {
            e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.actor == "cli"))
        }
        assert {"department.create", "admin.grant", "registration_token.issue"} <= actions

    revoked = run("admins", "revoke", user_id, "department-admin", "--json")
    assert revoked.exit_code == 0 and json.loads(revoked.output)["roles"] == []


def test_clients_approve_and_disable(run, db):  # noqa: F811
    added = run(
        "clients", "add", "--name", "Tax", "--redirect-uri", "https://tax.gov.example/cb", "--json"
    )
    client_id = json.loads(added.output)["client_id"]
    with Session(db) as session:
        row = session.get(Client, client_id)
        assert row is not None
        row.status = "pending"
        session.commit()
    approved = run("clients", "approve", client_id, "--json")
    assert approved.exit_code == 0 and json.loads(approved.output)["status"] == "approved"
    disabled = run("clients", "disable", client_id, "--json")
    assert disabled.exit_code == 0 and json.loads(disabled.output)["status"] == "disabled"
    shown = run("clients", "show", client_id, "--json")
    assert json.loads(shown.output)["status"] == "disabled"
    assert run("clients", "approve", "no-such-client").exit_code == 2
