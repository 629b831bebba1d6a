"""The CAS server (issue 13 item 1): CAS 1.0, 2.0 and 3.0 with the protocol's negative cases.

The browser side runs through the Flask test client (our real login pages); the responses
are read with python-cas's own parsers, the library a department system would use.  The
end-to-end run against a live server is in ``test_cas_live.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import pytest
from cas import CASClientV2, CASClientV3
from defusedxml import ElementTree as SafeET
from flask import Flask
from sqlalchemy import select, update

from idp.storage.models import AuditEvent, CasTicket, User, utcnow
from tests.cas.conftest import (
    CasServiceApp,
    follow_to_service,
    register,
    sign_in,
    ticket_of,
)
from tests.helpers import Citizen

SERVICE = "https://portal.gov.example/cas/callback"
OTHER = "https://other.gov.example/cas/callback"
CAS_NS = "{http://www.yale.edu/tp/cas}"


def _login_url(service: str, **extra: str) -> str:
    return "/cas/login?" + urlencode({"service": service, **extra})


def _ticket(http: Any, citizen: Citizen, service: str = SERVICE, **extra: str) -> str:
    """A ticket for ``service``, signing in first when the browser has no session."""
    resp = http.get(_login_url(service, **extra))
    if "/login?" in resp.headers.get("Location", ""):
        resp = sign_in(http, resp, citizen.email, citizen.password)
    return ticket_of(follow_to_service(http, resp, service))


def _validate(http: Any, path: str, ticket: str, service: str = SERVICE, **extra: str) -> Any:
    resp = http.get(f"/cas/{path}?" + urlencode({"ticket": ticket, "service": service, **extra}))
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    return resp


def _failure_code(body: bytes) -> str | None:
    root = SafeET.fromstring(body)
    failure = root.find(f"{CAS_NS}authenticationFailure")
    return None if failure is None else failure.get("code")


@pytest.fixture
def portal(app: Flask) -> str:
    return register(app, url=SERVICE, attributes=["name", "email", "groups"])


def test_sso_session_serves_cas_after_one_login(app, client, citizen, portal) -> None:
    """The first ticket needs the password; the second comes from the same SSO session."""
    first = _ticket(client, citizen)
    assert first.startswith("ST-") and len(first) >= 3 + 43  # 256 random bits
    user, attributes, _ = CASClientV3.verify_response(
        _validate(client, "p3/serviceValidate", first).data
    )
    assert user == citizen.id
    assert attributes["email"] == citizen.email and attributes["name"] == citizen.name
    assert attributes["isFromNewLogin"] == "true"
    resp = client.get(_login_url(SERVICE))  # signed in: straight back with a ticket
    second = ticket_of(resp.headers["Location"])
    assert resp.headers["Location"].startswith(SERVICE + "?ticket=ST-")
    user2, attributes2, _ = CASClientV2.verify_response(
        _validate(client, "serviceValidate", second).data
    )
    assert user2 == citizen.id and attributes2 is None  # CAS 2.0 releases no attributes
    third = ticket_of(client.get(_login_url(SERVICE)).headers["Location"])
    v1 = _validate(client, "validate", third)
    assert v1.get_data(as_text=True) == f"yes\n{citizen.id}\n"
    assert v1.headers["Content-Type"].startswith("text/plain")


def test_sso_session_started_by_oidc_serves_cas(app, client, citizen, rp, portal) -> None:
    """A citizen signed in at the portal (OpenID Connect) is signed in at a CAS service."""
    from tests.helpers import Flow

    Flow(client, rp).run(citizen)
    resp = client.get(_login_url(SERVICE))
    assert resp.status_code == 302 and resp.headers["Location"].startswith(SERVICE + "?ticket=")


def test_only_the_digest_is_stored(app, client, citizen, portal) -> None:
    ticket = _ticket(client, citizen)
    with app.extensions["yitong"].db.session() as session:
        rows = list(session.scalars(select(CasTicket)))
    assert len(rows) == 1 and ticket not in (rows[0].digest, rows[0].session_index)
    assert rows[0].expires_at - rows[0].created_at == dt.timedelta(seconds=10)  # the default


def test_ticket_is_single_use(app, client, citizen, portal) -> None:
    ticket = _ticket(client, citizen)
    assert _failure_code(_validate(client, "serviceValidate", ticket).data) is None
    assert _failure_code(_validate(client, "serviceValidate", ticket).data) == "INVALID_TICKET"
    assert _validate(client, "validate", ticket).get_data(as_text=True) == "no\n\n"


def test_ticket_is_bound_to_its_service_and_spent_by_a_wrong_one(
    app, client, citizen, portal
) -> None:
    register(app, url=OTHER, name="Other")
    ticket = _ticket(client, citizen)
    wrong = _validate(client, "p3/serviceValidate", ticket, OTHER)
    assert _failure_code(wrong.data) == "INVALID_SERVICE"
    # §3.1.1: the attempt spent it; the rightful service cannot use it afterwards either.
    assert _failure_code(_validate(client, "serviceValidate", ticket).data) == "INVALID_TICKET"


def test_service_url_must_match_exactly(app, client, citizen, portal) -> None:
    ticket = _ticket(client, citizen)
    near = _validate(client, "serviceValidate", ticket, SERVICE + "?x=1")
    assert _failure_code(near.data) == "INVALID_SERVICE"


def test_expired_ticket_is_refused(app, client, citizen, portal) -> None:
    ticket = _ticket(client, citizen)
    with app.extensions["yitong"].db.transaction() as session:
        session.execute(update(CasTicket).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    resp = _validate(client, "serviceValidate", ticket)
    assert _failure_code(resp.data) == "INVALID_TICKET"
    assert b"expired" in resp.data


def test_unknown_service_gets_no_ticket_and_no_redirect(app, client, citizen, portal) -> None:
    _ticket(client, citizen)  # signed in
    for service in (
        "https://evil.example/steal",
        "https://portal.gov.example/cas/callback/../../x",
        "https://portal.gov.example@evil.example/cas/callback",
        "javascript:alert(1)",
    ):
        resp = client.get(_login_url(service))
        assert resp.status_code == 400 and "Location" not in resp.headers, service
        assert "此服务未登记使用统一登录" in resp.get_data(as_text=True)  # a page for people
    resp = client.get(_login_url("https://evil.example/steal", gateway="true"))
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_unknown_and_malformed_tickets(app, client, portal) -> None:
    for ticket in ("ST-" + "A" * 43, "PT-abc", "ST-" + "a" * 300):
        assert _failure_code(_validate(client, "serviceValidate", ticket).data) in (
            "INVALID_TICKET",
        ), ticket
    # A NUL never reaches CAS: the app-wide request guard refuses it (issue 14 item 1).
    nul = client.get("/cas/serviceValidate?" + urlencode({"ticket": "ST-\x00", "service": SERVICE}))
    assert nul.status_code == 400
    missing = client.get("/cas/serviceValidate?service=" + SERVICE)
    assert _failure_code(missing.data) == "INVALID_REQUEST"


def test_renew_forces_credentials_and_is_checked_at_validation(
    app, client, citizen, portal
) -> None:
    sso_ticket = _ticket(client, citizen)
    client.get(_login_url(SERVICE))  # signed in now
    # A ticket from single sign-on does not satisfy renew=true at validation (§2.5.1).
    spec = _validate(
        client,
        "serviceValidate",
        ticket_of(client.get(_login_url(SERVICE)).headers["Location"]),
        renew="true",
    )
    assert _failure_code(spec.data) == "INVALID_TICKET_SPEC"
    del sso_ticket
    # renew=true at login: the login page although signed in, gateway notwithstanding.
    resp = client.get(_login_url(SERVICE, renew="true", gateway="true"))
    assert resp.status_code == 302 and "/login?" in resp.headers["Location"]
    resp = sign_in(client, resp, citizen.email, citizen.password)
    fresh = ticket_of(follow_to_service(client, resp, SERVICE))
    user, attributes, _ = CASClientV3.verify_response(
        _validate(client, "p3/serviceValidate", fresh, renew="true").data
    )
    assert user == citizen.id and attributes["isFromNewLogin"] == "true"


def test_renew_continuation_is_not_met_by_the_old_session(app, client, citizen, portal) -> None:
    """Coming back to /cas/login with the renew continuation, without signing in again,
    leads to the login page, not to a ticket."""
    _ticket(client, citizen)
    resp = client.get(_login_url(SERVICE, renew="true"))
    login_location = resp.headers["Location"]
    ix = login_location.split("ix=", 1)[1]
    back = client.get("/cas/login?ix=" + ix)
    assert back.status_code == 302 and "/login?" in back.headers["Location"]


def test_continuation_mints_one_ticket(app, client, citizen, portal) -> None:
    resp = sign_in(client, client.get(_login_url(SERVICE)), citizen.email, citizen.password)
    resume = client.get(resp.headers["Location"])  # /authorize/resume -> /cas/login?ix=
    cas_login = resume.headers["Location"]
    assert "/cas/login?ix=" in cas_login
    assert client.get(cas_login).headers["Location"].startswith(SERVICE + "?ticket=")
    again = client.get(cas_login)
    assert again.status_code == 400 and "Location" not in again.headers


def test_gateway_without_session_returns_without_ticket(app, client, citizen, portal) -> None:
    resp = client.get(_login_url(SERVICE, gateway="true"))
    assert resp.status_code == 302 and resp.headers["Location"] == SERVICE
    _ticket(client, citizen)
    resp = client.get(_login_url(SERVICE, gateway="true"))
    assert resp.headers["Location"].startswith(SERVICE + "?ticket=ST-")


def test_attribute_values_are_escaped(app, client, portal) -> None:
    name = '</cas:name><cas:user>admin</cas:user>&amp;"\x01'
    citizen = Citizen.create(app, name="王五")
    with app.extensions["yitong"].db.transaction() as session:
        user = session.get(User, citizen.id)
        assert user is not None
        user.name = name
        user.groups = ["a<b", "c&d"]
    ticket = _ticket(client, citizen)
    body = _validate(client, "p3/serviceValidate", ticket).data
    root = SafeET.fromstring(body)  # well-formed
    users = root.findall(f".//{CAS_NS}user")
    assert [u.text for u in users] == [citizen.id]
    user_id, attributes, _ = CASClientV3.verify_response(body)
    assert user_id == citizen.id
    assert attributes["name"] == name.replace("\x01", "")  # no XML 1.0 form for U+0001
    assert attributes["groups"] == ["a<b", "c&d"]  # a multi-valued claim repeats its element


def test_service_url_with_query_gets_ticket_appended(app, client, citizen) -> None:
    service = "https://portal.gov.example/cas?next=%2Fhome"
    register(app, url=service)
    location = follow_to_service(
        client,
        sign_in(client, client.get(_login_url(service)), citizen.email, citizen.password),
        service,
    )
    assert location.startswith(service + "&ticket=ST-")
    assert (
        _failure_code(_validate(client, "serviceValidate", ticket_of(location), service).data)
        is None
    )


def test_pattern_service(app, client, citizen) -> None:
    register(app, pattern=r"^https://apps\.gov\.example/[a-z]+/login$")
    ok = "https://apps.gov.example/tax/login"
    ticket = _ticket(client, citizen, ok)
    assert _failure_code(_validate(client, "serviceValidate", ticket, ok).data) is None
    for bad in (
        "https://apps.gov.example.evil.example/tax/login",
        "https://apps.gov.example/tax/login?x=1",
        "https://apps.gov.example/TAX/login",
    ):
        assert client.get(_login_url(bad)).status_code == 400, bad


def test_proxying_is_not_offered(app, client, citizen, portal) -> None:
    ticket = _ticket(client, citizen)
    resp = _validate(client, "proxyValidate", ticket, pgtUrl="https://portal.gov.example/pgt")
    user, _, pgtiou = CASClientV2.verify_response(resp.data)
    assert user == citizen.id and pgtiou is None  # validated, no proxy-granting ticket
    proxy = client.get("/cas/proxy?pgt=PGT-1&targetService=" + SERVICE)
    assert b'code="UNAUTHORIZED_SERVICE_PROXY"' in proxy.data


def test_every_issue_and_validation_is_audited(app, client, citizen, portal) -> None:
    ticket = _ticket(client, citizen)
    _validate(client, "serviceValidate", ticket)
    _validate(client, "serviceValidate", ticket)
    with app.extensions["yitong"].db.session() as session:
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.like("cas.ticket.%"))
                .order_by(AuditEvent.seq)
            )
        )
    assert [(e.action, e.outcome) for e in events] == [
        ("cas.ticket.issue", "success"),
        ("cas.ticket.validate", "success"),
        ("cas.ticket.validate", "failure"),
    ]
    assert events[2].details["error"] == "INVALID_TICKET"
    assert all(ticket not in str(e.details) for e in events)


# ------------------------------------------------------------------ single logout
def _wait_for_logout(app: Flask) -> None:
    app.extensions["yitong"].logout.wait()


def test_logout_notifies_the_services_that_validated(
    cas_app, cas_service_app: CasServiceApp
) -> None:
    client = cas_app.test_client()
    citizen = Citizen.create(cas_app)
    service = cas_service_app.url()
    register(cas_app, url=service)
    unused = cas_service_app.url("/unused/")
    register(cas_app, url=unused, name="Never validated")
    ticket = _ticket(client, citizen, service)
    _ticket(client, citizen, unused)  # issued, never validated: nothing to tell
    assert _failure_code(_validate(client, "p3/serviceValidate", ticket, service).data) is None
    assert client.get("/cas/logout").headers["Location"].endswith("/logout")
    page = client.get("/logout")
    from tests.helpers import csrf_token, hidden

    html = page.get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(html), "lr": hidden(html, "lr")})
    _wait_for_logout(cas_app)
    assert len(cas_service_app.logout_requests) == 1
    request = cas_service_app.logout_requests[0]
    assert CASClientV3.verify_logout_request(request, ticket)
    root = SafeET.fromstring(request)
    assert root.find("{urn:oasis:names:tc:SAML:2.0:assertion}NameID").text == citizen.id
    # The spent ticket is forgotten once told; the ended session's tickets are worthless.
    with cas_app.extensions["yitong"].db.session() as session:
        assert all(t.session_index is None for t in session.scalars(select(CasTicket)))


def test_every_session_ending_path_notifies_cas(cas_app, cas_service_app) -> None:
    """An administrator ending the account's sessions (end_user_sessions) tells CAS too."""
    from idp.interaction.sessions import end_user_sessions

    client = cas_app.test_client()
    citizen = Citizen.create(cas_app)
    service = cas_service_app.url()
    register(cas_app, url=service)
    ticket = _ticket(client, citizen, service)
    _validate(client, "serviceValidate", ticket, service)
    services = cas_app.extensions["yitong"]
    with cas_app.app_context(), services.db.session() as session:
        ended = end_user_sessions(session, services, citizen.id, reason="disabled")
        session.commit()
        ended.kick()
    _wait_for_logout(cas_app)
    assert [
        CASClientV3.verify_logout_request(r, ticket) for r in cas_service_app.logout_requests
    ] == [True]
    # and a ticket minted before the session ended no longer validates
    assert client.get(_login_url(service)).headers["Location"].find("/login?") >= 0
