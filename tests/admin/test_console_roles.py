"""Role boundaries of every console page and every admin API route (issue 11; checklist 95).

Each table below says which roles may use a page or route; the tests sign in (or mint a token)
for every role and check that the others get 403 and, for pages, that those allowed see it.
A page or route missing from its table fails the test, so a new one cannot slip in unchecked.
A department admin of ``tax`` is refused the ``health`` department's client (IDOR), and a
citizen's token with a forged ``admin`` scope gets 403 everywhere.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from admin.openapi import OPERATIONS
from admin.services import OPERATOR, create_client
from idp.storage.models import Department
from tests.admin.console_support import console_client, csrf_of, ensure_department
from tests.helpers import Citizen, admin_token, bearer

SEC, CLI, DEP, AUD, HELP = (
    "security-admin",
    "client-admin",
    "department-admin",
    "auditor",
    "helpdesk",
)
ALL = (SEC, CLI, DEP, AUD, HELP)
CLIENT_READERS = (SEC, CLI, DEP, AUD)


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    """Departments tax and health, a pending client of each, a citizen; one browser per role."""
    ensure_department(app, "tax")
    ensure_department(app, "health")
    services = app.extensions["yitong"]
    ids = {}
    with app.app_context(), services.db.session() as session:
        for dept in ("tax", "health"):
            made = create_client(
                session,
                {
                    "client_name": f"{dept} service",
                    "redirect_uris": [f"https://{dept}.gov.example/cb"],
                    "department": dept,
                },
                OPERATOR,
            )
            ids[dept] = made["client_id"]
    person = Citizen.create(app)
    browsers = {role: console_client(app, [role], ("tax",))[0] for role in ALL}
    return {"tax": ids["tax"], "health": ids["health"], "person": person.id, "http": browsers}


def _pages(w: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """Every console GET page and who may open it."""
    return [
        ("/admin/", ALL),
        ("/admin/clients", CLIENT_READERS),
        ("/admin/clients/new", (SEC, CLI, DEP)),
        (f"/admin/clients/{w['tax']}", CLIENT_READERS),
        (f"/admin/clients/{w['health']}", (SEC, CLI, AUD)),
        ("/admin/departments", CLIENT_READERS),
        ("/admin/departments/tax", CLIENT_READERS),
        ("/admin/departments/health", (SEC, CLI, AUD)),
        ("/admin/people", (SEC, DEP, AUD, HELP)),
        (f"/admin/people/{w['person']}", (SEC, AUD, HELP)),
        ("/admin/companies", (SEC, DEP, AUD)),
        ("/admin/keys", (SEC,)),
        ("/admin/policies", (SEC,)),
        ("/admin/directories", (SEC,)),
        ("/admin/audit", (SEC, AUD)),
        ("/admin/audit.csv", (SEC, AUD)),
    ]


def _actions(w: dict[str, Any]) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
    """Every console POST, a form for it, and who may do it (only refusals are sent here)."""
    tax, health, person = w["tax"], w["health"], w["person"]
    return [
        ("/admin/clients/new", {"client_name": "x", "redirect_uris": "https://x.example/cb", "department": "tax"}, (SEC, CLI, DEP)),
        (f"/admin/clients/{tax}/approve", {}, (SEC,)),
        (f"/admin/clients/{health}/disable", {}, (SEC, CLI)),
        (f"/admin/clients/{health}/delete", {}, (SEC, CLI)),
        (f"/admin/clients/{health}/edit", {"client_name": "y", "redirect_uris": "https://h.gov.example/cb", "scope": "openid"}, (SEC, CLI)),
        (f"/admin/clients/{tax}/release", {"claims": "name"}, (SEC,)),
        (f"/admin/clients/{health}/rotate-secret", {"grace_hours": "1"}, (SEC, CLI)),
        ("/admin/departments", {"id": "newdept", "name": "New"}, (SEC,)),
        ("/admin/departments/tax/directories", {}, (SEC,)),
        ("/admin/departments/tax/admins", {"user": person, "action": "grant"}, (SEC,)),
        ("/admin/departments/health/tokens", {"uses": "1", "hours": "1"}, (SEC,)),
        ("/admin/departments/tax/tokens", {"uses": "1", "hours": "1"}, (SEC, DEP)),
        *[
            (f"/admin/people/{person}/{a}", {"reason": "called in"}, (SEC, HELP))
            for a in ("unlock", "disable", "enable", "end-sessions", "reset-mfa")
        ],
        (f"/admin/people/{person}/verify", {"level": "L5", "method": "counter"}, (SEC, HELP)),
        ("/admin/companies/nothing/status", {"status": "suspended"}, (SEC,)),
        ("/admin/companies/nothing/verify", {"method": "registry"}, (SEC,)),
        ("/admin/companies/nothing/mandates", {"user": person, "role": "x", "until": "2030-01-01"}, (DEP,)),
        (f"/admin/companies/nothing/mandates/{person}/revoke", {}, (DEP,)),
        ("/admin/keys/rotate", {}, (SEC,)),
        ("/admin/keys/nokid/revoke", {"reason": "test"}, (SEC,)),
        ("/admin/policies", {"name": "mfa.required_for", "value": "admin"}, (SEC,)),
        ("/admin/directories", {"id": "d1", "config": "{}"}, (SEC,)),
        ("/admin/directories/d1/test", {}, (SEC,)),
        ("/admin/directories/d1/sync", {}, (SEC,)),
    ]  # fmt: skip


def test_every_console_page_and_action_is_in_the_tables(app: Flask) -> None:
    w = {"tax": "<client_id>", "health": "<client_id>", "person": "<user_id>"}
    listed_get = {p for p, _ in _pages(w)}
    listed_post = {p for p, _, _ in _actions(w)}

    def shape(path: str) -> str:
        import re

        path = re.sub(r"<[^>]+>|(?<=/)(tax|health|nothing|nokid|d1|newdept)(?=/|$)", "<id>", path)
        return re.sub(r"^/admin/people/<id>/[a-z-]+$", "/admin/people/<id>/<id>", path)

    served = {
        (shape(r.rule), m)
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/admin") and not r.rule.startswith("/admin/api")
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    listed = {(shape(p), "GET") for p in listed_get} | {(shape(p), "POST") for p in listed_post}
    assert served == listed, (served - listed, listed - served)


def test_console_pages_by_role(world: dict[str, Any]) -> None:
    for path, allowed in _pages(world):
        for role, http in world["http"].items():
            resp = http.get(path)
            expected = 200 if role in allowed else 403
            assert resp.status_code == expected, (path, role, resp.status_code)


def test_console_actions_refused_to_other_roles(world: dict[str, Any]) -> None:
    """Nothing is changed by a role the action is not for: 403, and the state is as before."""
    for role, http in world["http"].items():
        token = csrf_of(http.get("/admin/").get_data(as_text=True))
        for path, form, allowed in _actions(world):
            if role in allowed:
                continue
            resp = http.post(path, data={"csrf_token": token, **form})
            assert resp.status_code == 403, (path, role, resp.status_code)
    # The refused department was not created, the tax client not approved.
    app = world["http"][SEC].application
    with app.app_context(), app.extensions["yitong"].db.session() as session:
        assert session.get(Department, "newdept") is None
    assert (
        world["http"][SEC]
        .get(f"/admin/clients/{world['tax']}")
        .get_data(as_text=True)
        .count('id="client-status">')
        == 1
    )


def test_console_forms_need_the_csrf_token(world: dict[str, Any]) -> None:
    """Checklist 105: a POST without the token (a cross-site form) does nothing."""
    http = world["http"][SEC]
    resp = http.post(f"/admin/clients/{world['tax']}/approve", data={})
    assert resp.status_code == 400
    page = http.get(f"/admin/clients/{world['tax']}").get_data(as_text=True)
    assert 'class="status-pending" id="client-status"' in page


# ------------------------------------------------------------------ the admin API
def _api_roles() -> dict[tuple[str, str], tuple[str, ...]]:
    """Who may call each API operation (the role check; a department's is tested apart)."""
    people = (SEC, HELP, AUD, DEP)
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    for method, path, *_ in OPERATIONS:
        key = (method.upper(), path)
        if path == "/openapi.json":
            table[key] = ALL
        elif (
            path.startswith(("/keys", "/policies", "/directories", "/users"))
            or path == "/admins"
            or path.startswith("/departments/{dept_id}/directories")
            or path.endswith(("/approve", "/release"))
            or (path == "/departments" and method == "post")
        ):
            table[key] = (SEC,)
        elif path == "/registration-tokens":
            table[key] = (SEC, DEP)
        elif path.startswith("/clients") or path.startswith("/departments"):
            table[key] = CLIENT_READERS if method == "get" else (SEC, CLI, DEP)
        elif path.startswith("/people") and path.endswith("/verify"):
            table[key] = (SEC, HELP, DEP)
        elif path.startswith("/people"):
            table[key] = people
        elif path == "/companies":
            table[key] = (SEC, DEP, AUD)
        elif path.startswith(("/entities/{ref}/status", "/entities/{ref}/verify")):
            table[key] = (SEC,)
        elif path.startswith(("/entities", "/mandates")):
            table[key] = (DEP,)
        elif path.startswith("/audit"):
            table[key] = (SEC, AUD)
        elif path == "/bridge/systems":
            table[key] = (CLI,)
        elif path == "/cas/services":
            table[key] = (CLI,) if method == "get" else (SEC,)
        elif path == "/dashboard":
            table[key] = ALL
    return table


def test_api_routes_refuse_other_roles_and_forged_tokens(app: Flask, world: dict[str, Any]) -> None:
    table = _api_roles()
    assert len(table) == len(OPERATIONS)
    tokens = {role: admin_token(app, [role])[0] for role in ALL}
    forged = admin_token(app, [])[0]  # a citizen's token carrying the admin scope
    http = app.test_client()
    fill = {"client_id": world["health"], "dept_id": "health", "user_id": world["person"]}
    for (method, path), allowed in table.items():
        url = "/admin/api" + path
        for name, value in {
            **fill,
            "ref": "x",
            "user": "x",
            "kid": "x",
            "directory_id": "x",
        }.items():
            url = url.replace("{" + name + "}", value)
        for role, token in [*tokens.items(), ("citizen", forged)]:
            if role in allowed and role != "citizen":
                continue
            resp = http.open(url, method=method, json={}, headers=bearer(token))
            if path == "/openapi.json":
                assert resp.status_code == 200
                continue
            assert resp.status_code == 403, (method, path, role, resp.status_code)
    # A department admin of tax is refused health's client (IDOR), not only by role.
    dep = tokens[DEP]
    assert http.get(f"/admin/api/clients/{world['health']}", headers=bearer(dep)).status_code == 403
    listed = http.get("/admin/api/clients", headers=bearer(dep)).get_json()
    assert listed == []  # its token's account administers no department yet
