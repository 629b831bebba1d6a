"""Console flows through the Flask test client (issue 11): admin sign-in at the admin level,
the approval flow end to end, secret rotation with a grace period, the helpdesk's tasks, the
audit trail, department-scoped staff, and the rate limit on dynamic registration.
The same flows run in headless Chromium in ``tests/browser/test_console.py``."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from sqlalchemy import select

from idp.storage.models import AuditEvent, Department, User, WebAuthnCredential
from tests.admin.console_support import (
    admin_account,
    console_client,
    csrf_of,
    ensure_department,
    post_form,
    sign_in,
)
from tests.helpers import Citizen, Flow, RegisteredClient, admin_token, bearer
from tests.oauth import tokenkit as kit

PHR = "urn:yitong:acr:phr"


def _events(app: Flask, action: str) -> list[AuditEvent]:
    with app.extensions["yitong"].db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_console_sign_in_needs_an_admin_at_the_admin_level(app: Flask) -> None:
    """Checklist 95: role from the account now, the admin level, a recent login."""
    anonymous = app.test_client()
    resp = anonymous.get("/admin/clients")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]

    citizen = app.test_client()
    sign_in(app, citizen, Citizen.create(app).id)
    assert citizen.get("/admin/").status_code == 403

    password_only, _ = console_client(app, ["security-admin"], acr="urn:yitong:acr:pwd")
    resp = password_only.get("/admin/")
    assert resp.status_code == 401 and 'id="refused"' in resp.get_data(as_text=True)

    old, _ = console_client(app, ["security-admin"], minutes_ago=13 * 60)
    assert old.get("/admin/").status_code in (302, 401)  # the session timed out, or refused

    # Someone with a passkey signs in to the console with it (phishing-resistant).
    http, user_id = console_client(app, ["auditor"])
    with app.extensions["yitong"].db.transaction() as session:
        session.add(WebAuthnCredential(credential_id="cred-1", user_id=user_id, public_key=b"k"))
    assert http.get("/admin/").status_code == 401
    sign_in(app, http, user_id, acr=PHR)
    assert http.get("/admin/").status_code == 200

    # Keys, policies, directories: a second-factor login in the last 15 minutes.
    stale, _ = console_client(app, ["security-admin"], minutes_ago=20)
    assert stale.get("/admin/keys").status_code == 200
    resp = post_form(stale, "/admin/keys", "/admin/keys/rotate")
    assert resp.status_code == 401 and 'id="stale"' in resp.get_data(as_text=True)


def test_policies_page_describes_each_policy_in_the_page_language(app: Flask) -> None:
    """The policy descriptions (English in the code) are translated like the rest of the page."""
    http, _ = console_client(app, ["security-admin"])
    chinese = http.get("/admin/policies").get_data(as_text=True)
    assert "管理员会话无操作多少秒后结束。" in chinese
    assert "Seconds without activity after which an admin session ends." not in chinese
    english = http.get("/admin/policies?ui_locales=en").get_data(as_text=True)
    assert "Seconds without activity after which an admin session ends." in english


def test_approval_flow_end_to_end_in_the_console(app: Flask) -> None:
    """Registered by the department, pending (no login), approved with a release policy, a
    citizen logs in, disabled: its tokens are dead."""
    dept, _ = console_client(app, ["department-admin"], ("tax",))
    sec, _ = console_client(app, ["security-admin"])
    resp = post_form(
        dept,
        "/admin/clients/new",
        "/admin/clients/new",
        department="tax",
        client_name="电子税务局",
        client_name_en="e-Tax",
        purpose="Tax returns",
        redirect_uris="https://etax.gov.example/cb",
        scope=["openid", "profile", "email"],
        claims=["name", "email"],
        account_types=["citizen"],
        token_endpoint_auth_method="client_secret_basic",
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    client_id = re.search(r'id="client-id">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    secret = re.search(r'id="client-secret">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    assert len(secret) >= 43  # 256 bits, base64url

    rp = RegisteredClient(client_id, secret, ["https://etax.gov.example/cb"])
    person = Citizen.create(app)
    pending = Flow(app.test_client(), rp).authorize()
    assert pending.status_code != 302 or "error=" in pending.headers.get("Location", "")

    page = sec.get(f"/admin/clients/{client_id}").get_data(as_text=True)
    assert "e-Tax" in page and "Tax returns" in page and 'id="requested"' in page
    post_form(sec, f"/admin/clients/{client_id}", f"/admin/clients/{client_id}/release",
              claims="name, email", account_types=["citizen"])  # fmt: skip
    resp = post_form(sec, f"/admin/clients/{client_id}", f"/admin/clients/{client_id}/approve")
    assert resp.status_code == 303

    flow = Flow(app.test_client(), rp)
    tokens = flow.token(flow.run(person)["code"]).get_json()
    assert "access_token" in tokens, tokens
    userinfo = app.test_client().get("/userinfo", headers=bearer(tokens["access_token"]))
    assert userinfo.status_code == 200

    post_form(dept, f"/admin/clients/{client_id}", f"/admin/clients/{client_id}/disable")
    dead = app.test_client().get("/userinfo", headers=bearer(tokens["access_token"]))
    assert dead.status_code == 401
    assert [e.details["new"] for e in _events(app, "client.status")] == ["approved", "disabled"]


def test_editing_a_client_to_do_more_sends_it_back_to_pending(app: Flask) -> None:
    sec, _ = console_client(app, ["security-admin"])
    rp = RegisteredClient.create(app, name="Portal", scopes=["openid", "profile"])
    form = {"client_name": "Portal", "redirect_uris": rp.redirect_uri, "scope": "openid"}
    auditor = bearer(admin_token(app, ["auditor"])[0])

    def status() -> str:
        got = app.test_client().get(f"/admin/api/clients/{rp.client_id}", headers=auditor)
        return str(got.get_json()["status"])

    post_form(sec, f"/admin/clients/{rp.client_id}", f"/admin/clients/{rp.client_id}/edit", **form)
    assert status() == "approved"  # narrowing keeps the approval
    form["scope"] = "openid profile email"
    post_form(sec, f"/admin/clients/{rp.client_id}", f"/admin/clients/{rp.client_id}/edit", **form)
    assert status() == "pending"
    bad = post_form(
        sec,
        f"/admin/clients/{rp.client_id}",
        f"/admin/clients/{rp.client_id}/edit",
        **{**form, "redirect_uris": "javascript:alert(1)"},
    )
    assert bad.status_code == 400 and 'id="console-error"' in bad.get_data(as_text=True)


def test_console_edits_the_token_exchange_targets(app: Flask) -> None:
    """The client form names the RFC 8693 targets; a new one needs approval again."""
    sec, _ = console_client(app, ["security-admin"])
    rp = RegisteredClient.create(app, name="Portal", scopes=["openid", "profile"])
    page = f"/admin/clients/{rp.client_id}"
    form = {"client_name": "Portal", "redirect_uris": rp.redirect_uri, "scope": "openid profile"}
    tax = "https://api.tax.gov.example/"
    assert 'id="exchange-targets"' in sec.get(page).get_data(as_text=True)
    post_form(sec, page, f"{page}/edit", **form, exchange_targets=tax)
    assert tax in sec.get(page).get_data(as_text=True)
    bad = post_form(sec, page, f"{page}/edit", **form, exchange_targets="javascript:x")
    assert bad.status_code == 400 and 'id="console-error"' in bad.get_data(as_text=True)
    with app.extensions["yitong"].db.session() as session:
        from idp.storage.models import Client

        row = session.get(Client, rp.client_id)
        assert row is not None and row.exchange_targets == [tax] and row.status == "pending"


def test_secret_rotation_keeps_the_old_secret_for_the_grace_period(app: Flask) -> None:
    rp = kit.api_client(app)
    token = admin_token(app, ["security-admin"])[0]
    http = app.test_client()

    def works(secret: str) -> bool:
        creds = RegisteredClient(rp.client_id, secret, [])
        return http.post("/token", data=kit.CC_FORM, headers=creds.basic()).status_code == 200

    resp = http.post(
        f"/admin/api/clients/{rp.client_id}/rotate-secret",
        json={"grace": 3600},
        headers=bearer(token),
    )
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    new = resp.get_json()["client_secret"]
    assert new != rp.secret and works(new) and works(rp.secret)  # type: ignore[arg-type]
    again = http.post(
        f"/admin/api/clients/{rp.client_id}/rotate-secret", json={"grace": 0}, headers=bearer(token)
    ).get_json()["client_secret"]
    assert works(again) and not works(new) and not works(rp.secret)  # type: ignore[arg-type]
    for bad in (-1, "3600", 10**9, True):
        refused = http.post(
            f"/admin/api/clients/{rp.client_id}/rotate-secret",
            json={"grace": bad},
            headers=bearer(token),
        )
        assert refused.status_code == 400
    assert [e.details for e in _events(app, "client.secret_rotated")] == [
        {"grace_seconds": 3600},
        {"grace_seconds": 0},
    ]


def test_helpdesk_finds_by_masked_id_and_resets_second_factor_with_a_reason(app: Flask) -> None:
    person = Citizen.create(app)
    helpdesk, agent = console_client(app, ["helpdesk"])
    masked = person.id_number[:4] + "*" * 10 + person.id_number[-4:]
    page = helpdesk.get("/admin/people", query_string={"q": masked}).get_data(as_text=True)
    assert f'data-user="{person.id}"' in page
    assert person.id_number not in page and person.phone not in page and person.email not in page
    url = f"/admin/people/{person.id}"
    assert post_form(helpdesk, url, url + "/reset-mfa", reason="").status_code == 400
    assert (
        post_form(helpdesk, url, url + "/reset-mfa", reason="ID card shown at desk 3").status_code
        == 303
    )
    assert post_form(helpdesk, url, url + "/unlock").status_code == 303
    assert post_form(helpdesk, url, url + "/end-sessions").status_code == 303
    [reset] = _events(app, "user.mfa_reset")
    assert reset.actor == f"user:{agent}" and reset.details["reason"] == "ID card shown at desk 3"
    assert _events(app, "user.unlock")[-1].target == person.id
    # Helpdesk cannot touch keys, by page or by API.
    assert helpdesk.get("/admin/keys").status_code == 403
    token = admin_token(app, ["helpdesk"])[0]
    assert app.test_client().get("/admin/api/keys", headers=bearer(token)).status_code == 403


def test_department_admin_administers_its_directory_staff_only(app: Flask) -> None:
    """A department bound to a staff directory: its admin sees that staff, not citizens; a
    directory group granting ``department-admin`` admits to the bound department."""
    from admin.people import find_people
    from admin.services import caller_for_user

    ensure_department(app, "tax")
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        session.get(Department, "tax").directories = ["taxldap"]  # type: ignore[union-attr]
        staff = User(id="staff-1", kind="staff", name="王五", directory_id="taxldap")
        group_admin = User(
            id="staff-2",
            kind="staff",
            name="赵六",
            directory_id="taxldap",
            roles=["department-admin"],
        )
        session.add_all([staff, group_admin])
    citizen = Citizen.create(app)
    admin_id = admin_account(app, ["department-admin"], ("tax",))
    with app.app_context(), services.db.session() as session:
        who = caller_for_user(session, session.get(User, admin_id), "t")  # type: ignore[arg-type]
        assert [p["id"] for p in find_people(session, services, "staff-1", who)] == ["staff-1"]
        assert find_people(session, services, citizen.id, who) == []
        via_group = caller_for_user(session, session.get(User, "staff-2"), "t")  # type: ignore[arg-type]
        assert via_group.departments == {"tax"}


def test_audit_trail_filters_exports_csv_safely_and_reports_the_chain(app: Flask) -> None:
    from idp import audit

    with app.extensions["yitong"].db.transaction() as session:
        audit.record(session, "client.create", actor="=cmd|' /C calc'!A0", target="c1")
        audit.record(session, "user.unlock", actor="cli", target="u1")
    auditor, _ = console_client(app, ["auditor"])
    page = auditor.get("/admin/audit", query_string={"action": "client."}).get_data(as_text=True)
    assert "client.create" in page and "user.unlock" not in page
    assert 'id="chain" class="ok"' in page
    csv_resp = auditor.get("/admin/audit.csv", query_string={"target": "c1"})
    assert csv_resp.headers["Content-Type"].startswith("text/csv")
    body = csv_resp.get_data(as_text=True)
    assert "'=cmd" in body and "\n=cmd" not in body and "u1" not in body
    assert auditor.get("/admin/audit", query_string={"since": "yesterday"}).status_code == 400


def test_dynamic_registration_is_rate_limited(make_app: Any) -> None:
    """Checklist 112: past the per-address limit, 429 with Retry-After."""
    app = make_app(rate_limit_registration_per_minute=2)
    http = app.test_client()
    answers = [http.post("/connect/register", json={}).status_code for _ in range(3)]
    assert answers[:2] == [401, 401] and answers[2] == 429


def test_console_is_chinese_by_default_and_english_on_request(app: Flask) -> None:
    http, _ = console_client(app, ["security-admin"])
    assert "仪表盘" in http.get("/admin/").get_data(as_text=True)
    http.set_cookie("yitong_lang", "en")
    assert "Dashboard" in http.get("/admin/").get_data(as_text=True)
    assert csrf_of(http.get("/admin/departments").get_data(as_text=True))


def _link_upstream(app: Flask, user_id: str, subject: str = "national-sub-1") -> int:
    from idp.storage.models import UpstreamLink

    with app.extensions["yitong"].db.transaction() as session:
        row = UpstreamLink(issuer="https://national.gov.example", subject=subject, user_id=user_id)
        session.add(row)
        session.flush()
        return int(row.id)


def test_upstream_links_are_shown_and_removed_with_a_reason(app: Flask) -> None:
    """Issue 13: the person page lists upstream (national platform) links; a helpdesk agent
    removes one with a reason, audited; an auditor sees them but cannot remove them."""
    from idp.storage.models import UpstreamLink

    person, other = Citizen.create(app), Citizen.create(app)
    link = _link_upstream(app, person.id)
    foreign = _link_upstream(app, other.id, "national-sub-2")
    auditor, _ = console_client(app, ["auditor"])
    url = f"/admin/people/{person.id}"
    seen = auditor.get(url).get_data(as_text=True)
    assert 'id="upstream-links"' in seen and "national-sub-1" in seen
    assert f'id="unlink-{link}"' not in seen  # may look, not act
    denied = post_form(
        auditor, url, url + "/unlink-upstream", link_id=str(link), reason="wrong person"
    )
    assert denied.status_code == 403

    helpdesk, agent = console_client(app, ["helpdesk"])
    page = helpdesk.get(url).get_data(as_text=True)
    assert f'id="unlink-{link}"' in page
    # no reason, another account's link, garbage: refused, nothing removed
    assert post_form(helpdesk, url, url + "/unlink-upstream", link_id=str(link)).status_code == 400
    for bad in (str(foreign), "x", "999999"):
        resp = post_form(helpdesk, url, url + "/unlink-upstream", link_id=bad, reason="mistake")
        assert resp.status_code == 404, bad
    done = post_form(
        helpdesk, url, url + "/unlink-upstream", link_id=str(link), reason="linked by mistake"
    )
    assert done.status_code == 303
    [event] = _events(app, "user.upstream_unlink")
    assert event.actor == f"user:{agent}" and event.target == person.id
    assert event.details["reason"] == "linked by mistake"
    assert event.details["issuer"] == "https://national.gov.example"
    assert 'id="upstream-none"' in helpdesk.get(url).get_data(as_text=True)
    with app.extensions["yitong"].db.session() as session:
        assert session.get(UpstreamLink, link) is None
        assert session.get(UpstreamLink, foreign) is not None
