"""Departments and their admins (issue 11): who may see, register, approve and disable what.

Roles come from the account and departments from ``admin_roles``, at every call (checklist
95); a department admin is confined to its departments' clients, an auditor only reads, and
a token with the admin scope but no role (a citizen's) gets 403.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from admin.services import OPERATOR, add_department, grant_role
from idp.storage.models import AdminRole, AuditEvent, Grant
from tests.helpers import Citizen, Flow, RegisteredClient, admin_token, bearer

TAX_CLIENT = {
    "client_name": "Tax service",
    "redirect_uris": ["https://tax.gov.example/cb"],
    "scope": "openid profile email offline_access",
}


def make_department(app: Flask, dept_id: str) -> None:
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        add_department(session, dept_id, f"Department {dept_id}", OPERATOR)


def department_admin(app: Flask, *departments: str) -> str:
    """An admin token for a new account that is department-admin of ``departments``."""
    token, actor = admin_token(app, roles=[])
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        for dept in departments:
            grant_role(
                session, services, actor.removeprefix("user:"), "department-admin", dept, OPERATOR
            )
    return token


@pytest.fixture
def depts(app: Flask) -> dict[str, str]:
    """Two departments, each with its own department admin."""
    make_department(app, "tax")
    make_department(app, "health")
    return {"tax": department_admin(app, "tax"), "health": department_admin(app, "health")}


def register(http: Any, token: str, **extra: Any) -> Any:
    return http.post("/admin/api/clients", json={**TAX_CLIENT, **extra}, headers=bearer(token))


def test_department_admin_registers_pending_client_of_its_department(client, app, depts):
    resp = register(client, depts["tax"])
    assert resp.status_code == 201, resp.get_json()
    data = resp.get_json()
    assert data["status"] == "pending" and data["department"] == "tax"
    assert len(data["client_secret"]) >= 43  # 256 bits, base64url
    # It cannot approve its own client.
    resp = client.post(
        f"/admin/api/clients/{data['client_id']}/approve", headers=bearer(depts["tax"])
    )
    assert resp.status_code == 403
    # It cannot register a client for another department.
    resp = register(client, depts["tax"], department="health")
    assert resp.status_code == 403 and resp.get_json()["error"] == "insufficient_scope"
    assert (
        client.get("/admin/api/clients", headers=bearer(depts["tax"])).get_json()[0]["client_id"]
        == data["client_id"]
    )


def test_department_admin_cannot_see_or_change_another_departments_client(client, app, depts):
    created = register(client, depts["tax"]).get_json()
    cid = created["client_id"]
    other = bearer(depts["health"])
    assert client.get("/admin/api/clients", headers=other).get_json() == []
    assert client.get(f"/admin/api/clients/{cid}", headers=other).status_code == 403
    assert client.post(f"/admin/api/clients/{cid}/disable", headers=other).status_code == 403
    assert client.delete(f"/admin/api/clients/{cid}", headers=other).status_code == 403
    resp = client.post("/admin/api/registration-tokens", json={"department": "tax"}, headers=other)
    assert resp.status_code == 403
    # Its own admin can do all of that.
    mine = bearer(depts["tax"])
    assert client.get(f"/admin/api/clients/{cid}", headers=mine).status_code == 200
    resp = client.post(f"/admin/api/clients/{cid}/disable", headers=mine)
    assert resp.status_code == 200 and resp.get_json()["status"] == "disabled"


def test_department_admin_without_a_department_sees_nothing(client, app, depts):
    register(client, depts["tax"])
    token, _ = admin_token(app, roles=["department-admin"])  # role, but no admin_roles row
    assert client.get("/admin/api/clients", headers=bearer(token)).get_json() == []
    resp = register(client, token)
    assert resp.status_code == 400  # must name a department, and may name none


def test_auditor_reads_everything_and_changes_nothing(client, app, depts):
    cid = register(client, depts["tax"]).get_json()["client_id"]
    auditor, _ = admin_token(app, roles=["auditor"])
    h = bearer(auditor)
    # Every department's clients (the admin tokens' own console clients too).
    assert cid in [c["client_id"] for c in client.get("/admin/api/clients", headers=h).get_json()]
    assert client.get(f"/admin/api/clients/{cid}", headers=h).status_code == 200
    for resp in (
        register(client, auditor),
        client.post(f"/admin/api/clients/{cid}/approve", headers=h),
        client.post(f"/admin/api/clients/{cid}/disable", headers=h),
        client.delete(f"/admin/api/clients/{cid}", headers=h),
        client.post("/admin/api/departments", json={"id": "x", "name": "X"}, headers=h),
        client.post("/admin/api/registration-tokens", json={"department": "tax"}, headers=h),
        client.post("/admin/api/admins", json={"user": "x", "role": "auditor"}, headers=h),
    ):
        assert resp.status_code == 403, resp.get_json()


def test_citizen_token_with_forged_admin_scope_is_403_everywhere(client, app, depts):
    cid = register(client, depts["tax"]).get_json()["client_id"]
    citizen_token, _ = admin_token(app, roles=[], scope="openid admin")
    h = bearer(citizen_token)
    for method, path in [
        ("get", "/admin/api/clients"),
        ("post", "/admin/api/clients"),
        ("get", f"/admin/api/clients/{cid}"),
        ("post", f"/admin/api/clients/{cid}/approve"),
        ("post", f"/admin/api/clients/{cid}/disable"),
        ("get", "/admin/api/departments"),
        ("post", "/admin/api/departments"),
        ("post", "/admin/api/registration-tokens"),
        ("post", "/admin/api/admins"),
    ]:
        resp = getattr(client, method)(path, json={}, headers=h)
        assert resp.status_code == 403, (method, path)


def test_security_admin_approves_and_the_client_logs_a_citizen_in(client, app, depts):
    data = register(client, depts["tax"]).get_json()
    rp = RegisteredClient(data["client_id"], data["client_secret"], TAX_CLIENT["redirect_uris"], [])
    flow = Flow(client, rp)
    assert flow.authorize().status_code == 400  # pending: no flow at all
    sec, sec_actor = admin_token(app, roles=["security-admin"])
    resp = client.post(f"/admin/api/clients/{rp.client_id}/approve", headers=bearer(sec))
    assert resp.status_code == 200 and resp.get_json()["status"] == "approved"
    code = flow.run(Citizen.create(app))["code"]
    assert flow.token(code).status_code == 200
    services = app.extensions["yitong"]
    with services.db.session() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "client.status", AuditEvent.target == rp.client_id
            )
        ).one()
        assert event.actor == sec_actor and event.details["new"] == "approved"


def test_disabling_revokes_every_grant(client, app, depts, citizen):
    data = register(client, depts["tax"]).get_json()
    rp = RegisteredClient(data["client_id"], data["client_secret"], TAX_CLIENT["redirect_uris"])
    sec, _ = admin_token(app, roles=["security-admin"])
    client.post(f"/admin/api/clients/{rp.client_id}/approve", headers=bearer(sec))
    flow = Flow(client, rp)
    tokens = flow.token(flow.run(citizen)["code"]).get_json()
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    resp = client.post(f"/admin/api/clients/{rp.client_id}/disable", headers=bearer(depts["tax"]))
    assert resp.status_code == 200
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    services = app.extensions["yitong"]
    with services.db.session() as session:
        grants = session.scalars(select(Grant).where(Grant.client_id == rp.client_id)).all()
        assert grants and all(g.revoked_at is not None for g in grants)
    assert flow.authorize().status_code == 400


def test_grant_and_revoke_through_the_api(client, app, depts):
    sec, _ = admin_token(app, roles=["security-admin"])
    someone = Citizen.create(app)
    body = {"user": someone.id, "role": "department-admin", "department": "health"}
    resp = client.post("/admin/api/admins", json=body, headers=bearer(sec))
    assert resp.status_code == 200
    assert resp.get_json() == {
        "user": someone.id,
        "roles": ["department-admin"],
        "departments": ["health"],
    }
    for bad in (
        {"user": someone.id, "role": "department-admin"},  # no department
        {"user": someone.id, "role": "department-admin", "department": "nowhere"},
        {"user": someone.id, "role": "auditor", "department": "tax"},  # not scoped
        {"user": someone.id, "role": "king"},
    ):
        assert client.post("/admin/api/admins", json=bad, headers=bearer(sec)).status_code == 400
    resp = client.delete("/admin/api/admins", json=body, headers=bearer(sec))
    assert resp.get_json()["roles"] == []
    services = app.extensions["yitong"]
    with services.db.session() as session:
        assert session.scalars(select(AdminRole).where(AdminRole.user_id == someone.id)).all() == []
    # A department admin may not hand out roles.
    resp = client.post("/admin/api/admins", json=body, headers=bearer(depts["tax"]))
    assert resp.status_code == 403


def test_departments_api(client, app, depts):
    sec, _ = admin_token(app, roles=["security-admin"])
    resp = client.post(
        "/admin/api/departments", json={"id": "edu", "name": "教育厅"}, headers=bearer(sec)
    )
    assert resp.status_code == 201 and resp.get_json() == {"id": "edu", "name": "教育厅"}
    again = client.post(
        "/admin/api/departments", json={"id": "edu", "name": "x"}, headers=bearer(sec)
    )
    assert again.status_code == 409
    bad = client.post(
        "/admin/api/departments", json={"id": "Bad ID", "name": "x"}, headers=bearer(sec)
    )
    assert bad.status_code == 400
    assert [
        d["id"] for d in client.get("/admin/api/departments", headers=bearer(sec)).get_json()
    ] == [
        "edu",
        "health",
        "tax",
    ]
    mine = client.get("/admin/api/departments", headers=bearer(depts["tax"])).get_json()
    assert [d["id"] for d in mine] == ["tax"]
