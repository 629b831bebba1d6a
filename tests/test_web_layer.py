"""Issue 9 (web-layer reshaping) and the web-facing items of issue 14.

- Defect 1: every path that ends a session tells the relying party by back-channel logout
  (one test per caller of ``end_sessions``).
- Defect 2: ``trusted_proxies`` decides which ``X-Forwarded-For`` hop is the client.
- Defect 3: a directory outage is ``temporarily_unavailable``, not a failed login.
- Issue 14 items 2 (``next``), 5 (pending login replay), 6 and 7 (the ``ix`` token),
  10 (``no-store`` on a signed-in ``/``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ldap3
import pytest
from flask import Flask
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.accounts.staff import sync_directory
from idp.storage.models import AuditEvent, Grant, SsoSession, Throttle
from tests.helpers import (
    Citizen,
    Flow,
    RegisteredClient,
    admin_token,
    bearer,
    csrf_token,
    query_of,
)
from tests.interaction.mfa_kit import set_policy
from tests.oauth.test_logout import (
    Receiver,
    _bcl_client,
    sign_in,
    verify_logout_token,
    wait_for,
)
from tests.services.slapd import HRSS, LdapTestCA, Slapd, hrss_table, hrss_tree


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver().start()]
    yield made
    for r in made:
        r.stop()


@pytest.fixture
def bcl_app(make_app: Callable[..., Flask], receivers: list[Receiver]) -> Flask:
    return make_app(outbound_test_allowlist=tuple(r.host for r in receivers))


def _sid_of(tokens: dict[str, Any]) -> str:
    return str(jose_jwt.get_unverified_claims(tokens["id_token"])["sid"])


def _told(app: Flask, receiver: Receiver, rp: RegisteredClient, sid: str) -> None:
    """The RP's back-channel endpoint received a valid logout token for ``sid``."""
    app.extensions["yitong"].logout.wait()
    wait_for(lambda: bool(receiver.tokens))
    claims = verify_logout_token(app.test_client(), receiver.tokens[-1], rp.client_id)
    assert claims["sid"] == sid


# ====================================================================== defect 1, per caller
def test_password_change_sign_out_others_tells_the_other_sessions_clients(bcl_app, receivers):
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    other_browser, this_browser = app.test_client(), app.test_client()
    sid = _sid_of(sign_in(other_browser, citizen, rp))
    sign_in(this_browser, citizen, rp)
    page = this_browser.get("/account/security/password")
    resp = this_browser.post(
        "/account/security/password",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "current_password": citizen.password,
            "new_password": "a brand new passphrase 2026",
            "new_password_confirm": "a brand new passphrase 2026",
            "sign_out_others": "1",
        },
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)
    _told(app, receivers[0], rp, sid)
    assert other_browser.get("/account").status_code == 302  # that session is over
    assert this_browser.get("/account").status_code == 200  # this one is kept


def test_replaced_browser_session_tells_its_clients(bcl_app, receivers):
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    browser = app.test_client()
    sid = _sid_of(sign_in(browser, citizen, rp))
    page = browser.get("/login")
    resp = browser.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "login": citizen.email,
            "password": citizen.password,
        },
    )
    assert resp.status_code == 303
    _told(app, receivers[0], rp, sid)


def test_class_time_out_tells_the_clients(bcl_app, receivers):
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    browser = app.test_client()
    sid = _sid_of(sign_in(browser, citizen, rp))
    set_policy(app, "session.idle.citizen", 300)
    with app.extensions["yitong"].db.transaction() as s:
        row = s.get(SsoSession, sid)
        assert row is not None
        row.last_seen_at = row.last_seen_at - dt.timedelta(minutes=10)
    assert browser.get("/account").status_code == 302
    _told(app, receivers[0], rp, sid)


def test_admin_disable_tells_the_clients(bcl_app, receivers):
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    sid = _sid_of(sign_in(app.test_client(), citizen, rp))
    token, _actor = admin_token(app, ["security-admin"])
    resp = app.test_client().post(f"/admin/api/users/{citizen.id}/disable", headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["backchannel_logouts"] == 1
    _told(app, receivers[0], rp, sid)


def test_admin_terminate_sessions_tells_the_clients(bcl_app, receivers):
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    sid = _sid_of(sign_in(app.test_client(), citizen, rp))
    token, _actor = admin_token(app, ["security-admin"])
    resp = app.test_client().delete(
        f"/admin/api/users/{citizen.id}/sessions", headers=bearer(token)
    )
    assert resp.status_code == 200, resp.get_json()
    _told(app, receivers[0], rp, sid)


@pytest.mark.slapd
def test_directory_sync_disable_tells_the_clients(
    make_app: Callable[..., Flask],
    make_slapd: Callable[..., Slapd],
    ldap_test_ca: LdapTestCA,
    receivers: list[Receiver],
) -> None:
    server = make_slapd("hrss-bcl", hrss_tree(), tls=True)
    app = make_app(
        directories={"hrss": hrss_table(server, ldap_test_ca)},
        outbound_test_allowlist=(receivers[0].host,),
    )
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    flow = Flow(app.test_client(), rp)
    resp = flow.login(flow.authorize(), "wang.fang@hrss", "Wf-2017-secret!")
    tokens = flow.token(flow.follow_to_code(resp)["code"]).get_json()
    admin = server.admin("hrss")
    assert isinstance(admin, ldap3.Connection)
    assert admin.delete(f"uid=wang.fang,ou=people,{HRSS}")
    admin.unbind()
    services = app.extensions["yitong"]
    services.logout.background = False
    report = sync_directory(services, services.directories["hrss"])
    assert report.sessions_ended == 1
    _told(app, receivers[0], rp, _sid_of(tokens))


# ====================================================================== defect 2: proxies
def _counted_addresses(app: Flask) -> set[str]:
    with app.extensions["yitong"].db.session() as s:
        keys = s.scalars(select(Throttle.key)).all()
    return {k.split(":", 1)[1] for k in keys if k.startswith("ip:")}


@pytest.mark.parametrize("trusted", [0, 1, 2])
def test_forwarded_for_counts_only_from_trusted_hops(make_app, trusted):
    app = make_app(trusted_proxies=trusted)
    http = app.test_client()
    page = http.get("/login")
    http.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "login": "nobody@example.cn",
            "password": "wrong password 123",
        },
        headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    expected = {0: "10.0.0.1", 1: "203.0.113.9", 2: "198.51.100.7"}[trusted]
    assert _counted_addresses(app) == {expected}
    with app.extensions["yitong"].db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "login.failure")).one()
    assert event.ip == expected


# ====================================================================== defect 3: outage
def test_directory_outage_is_temporarily_unavailable_and_counts_nothing(
    make_app: Callable[..., Flask], make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    server = make_slapd("hrss-outage", hrss_tree(), tls=True)
    app = make_app(directories={"hrss": hrss_table(server, ldap_test_ca)})
    server.stop()
    http = app.test_client()
    http.set_cookie("yitong_lang", "en")
    page = http.get("/login")
    resp = http.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "login": "wang.fang@hrss",
            "password": "Wf-2017-secret!",
        },
    )
    assert resp.status_code == 503
    assert "unavailable" in resp.get_data(as_text=True)
    with app.extensions["yitong"].db.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent))]
        counters = s.scalars(select(Throttle)).all()
    assert "directory.unavailable" in actions and "login.failure" not in actions
    assert all(c.failures == 0 for c in counters)


# ====================================================================== issue 14 item 2
@pytest.mark.parametrize(
    "target",
    [
        "/%09/evil.example/x",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/%0d%0aSet-Cookie:x=1",
        "/ok%0a",
        "javascript:alert(1)",
    ],
)
def test_item2_reauth_never_leaves_the_site(client, citizen, target):
    Flow(client, RegisteredClient.create(client.application)).run(citizen)
    page = client.get("/account/security/reauth?next=" + target)
    assert page.status_code == 200
    resp = client.post(
        "/account/security/reauth?next=" + target,
        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "password": citizen.password},
    )
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert urlsplit(location).netloc in ("", "localhost") and location.startswith("/")
    assert not location.startswith("//")


def test_item2_language_switch_never_leaves_the_site(client):
    page = client.get("/no-such-page")
    resp = client.post(
        "/locale/en",
        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "next": "/\t/evil.example/x"},
    )
    assert resp.status_code == 303 and resp.headers["Location"] == "/"


# ====================================================================== issue 14 items 6 and 7
def _ix_of(resp: Any) -> str:
    return parse_qs(urlsplit(resp.headers["Location"]).query)["ix"][0]


def test_item7_ix_does_not_carry_a_readable_login_hint(client, rp, citizen):
    resp = Flow(client, rp).authorize(login_hint=citizen.id_number)
    ix = _ix_of(resp)
    assert citizen.id_number not in ix
    import base64

    padded = ix + "=" * (-len(ix) % 4)
    assert citizen.id_number.encode() not in base64.urlsafe_b64decode(padded)
    # The page still pre-fills it for the person.
    assert citizen.id_number in client.get(resp.headers["Location"]).get_data(as_text=True)


def test_item6_an_interaction_yields_one_code(client, rp, citizen):
    flow = Flow(client, rp)
    to_consent = client.get(
        flow.login(flow.authorize(), citizen.email, citizen.password).headers["Location"]
    )
    consent_page = client.get(to_consent.headers["Location"])
    form = {
        "csrf_token": csrf_token(consent_page.get_data(as_text=True)),
        "ix": _ix_of(to_consent),
        "action": "approve",
    }
    first = client.post("/consent", data=form)
    assert "code" in query_of(first.headers["Location"])
    # The same interaction again, at the consent POST or at /authorize/resume: no new code.
    again = client.post("/consent", data=form)
    assert again.status_code == 400 and "Location" not in again.headers
    resumed = client.get(f"/authorize/resume?ix={form['ix']}")
    assert resumed.status_code == 400 and "Location" not in resumed.headers


def test_item6_an_interaction_completes_only_in_its_browser(app, rp, citizen):
    attacker, victim = app.test_client(), app.test_client()
    ix = _ix_of(Flow(attacker, rp).authorize())
    Flow(victim, RegisteredClient.create(app)).run(citizen)  # the victim is signed in
    assert victim.get(f"/authorize/resume?ix={ix}").status_code == 400
    assert victim.get(f"/login?ix={ix}").status_code == 400


# ====================================================================== issue 14 item 10
def test_item10_signed_in_home_is_not_stored(client, rp, citizen):
    Flow(client, rp).run(citizen)
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"


def test_grants_of_other_sessions_survive_a_logout(client, rp, citizen, app):
    """end_sessions revokes only what the ended session granted."""
    other = app.test_client()
    Flow(other, rp).run(citizen)
    Flow(client, rp).run(citizen)
    page = client.get("/account")
    client.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    with app.extensions["yitong"].db.session() as s:
        live = s.scalars(select(Grant).where(Grant.revoked_at.is_(None))).all()
    assert len(live) == 1
