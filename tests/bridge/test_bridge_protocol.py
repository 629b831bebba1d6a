"""The ticket bridge, protocol v1 (issue 13 item 2), through the Flask test client: the
happy path, the company switch, logout, and every negative case in the protocol's own form."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from clients.yitong_bridge import BridgeClient, sign
from idp.bridge import protocol
from idp.storage.models import AuditEvent, Grant, SsoSession, Token, utcnow
from tests.bridge.conftest import Registered, register_system
from tests.cas.conftest import follow_to_service, sign_in
from tests.entities.kit import company
from tests.helpers import Citizen, csrf_token, query_of

CALLBACK = "https://legacy.gov.example/sso/callback"


@pytest.fixture
def system(app: Flask) -> Registered:
    return register_system(app, CALLBACK, attributes=["name", "email"])


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def _login(http: FlaskClient, bridge: BridgeClient, citizen: Citizen | None, **kw: Any) -> str:
    """Follow a signed login through our pages; return the callback URL reached."""
    resp = http.get(_path(bridge.login_url(**kw)))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    resp = http.get(resp.headers["Location"])
    if citizen is not None and "/login?" in resp.headers.get("Location", ""):
        resp = sign_in(http, resp, citizen.email, citizen.password)
    return follow_to_service(http, resp, CALLBACK)


def _ticket(http: FlaskClient, system: Registered, citizen: Citizen, **kw: Any) -> str:
    location = _login(http, system.client(), citizen, **kw)
    return query_of(location)["ticket"]


def _basic(system: Registered, secret: str | None = None) -> dict[str, str]:
    raw = f"{system.system_id}:{secret or system.secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _post(http: FlaskClient, path: str, system: Registered, **form: str) -> Any:
    return http.post(f"/bridge/v1/{path}", data=form, headers=_basic(system))


def _refusal(resp: Any) -> str:
    """The bridge error code on an error page (the browser side)."""
    html = resp.get_data(as_text=True)
    m = re.search(r'<code[^>]* id="error-code">([a-z_]+)</code>', html)
    assert m, (resp.status_code, html[html.find("<main") :][:600])
    return m.group(1)


def test_login_ticket_token_userinfo(app: Flask, client: FlaskClient, system: Registered) -> None:
    citizen = Citizen.create(app)
    location = _login(client, system.client(), citizen, state="s-1")
    params = query_of(location)
    assert params["state"] == "s-1" and params["ticket"].startswith("BT-")
    assert len(params["ticket"]) >= 3 + 43  # 256 random bits, base64url (>= 128 required)

    answer = _post(client, "token", system, ticket=params["ticket"])
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    token = answer.get_json()
    assert token["version"] == "1" and token["token_type"] == "Bearer"

    info = _post(client, "userinfo", system, access_token=token["access_token"]).get_json()
    assert info["sub"] == citizen.id
    # Only the allow-list: name and email; never phone_number, although the account has one.
    assert info["attributes"] == {"name": citizen.name, "email": citizen.email}
    assert info["acting_for"] is None and info["acr"] == "urn:yitong:acr:pwd"

    # Single sign-on: the next signed login needs no password.
    again = _login(client, system.client(), None)
    assert query_of(again)["ticket"] != params["ticket"]

    # Every call is audited.
    with app.extensions["yitong"].db.session() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {"bridge.ticket.issue", "bridge.token", "bridge.userinfo"} <= actions


def test_reused_ticket_is_refused_and_revokes_the_token(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    ticket = _ticket(client, system, Citizen.create(app))
    token = _post(client, "token", system, ticket=ticket).get_json()["access_token"]
    again = _post(client, "token", system, ticket=ticket)
    assert again.status_code == 400
    assert again.get_json() == {
        "version": "1",
        "error": "invalid_ticket",
        "error_description": "ticket already used; what it gave is revoked",
    }
    gone = _post(client, "userinfo", system, access_token=token)
    assert gone.status_code == 401 and gone.get_json()["error"] == "invalid_token"


def test_foreign_expired_and_unknown_tickets(app: Flask, client: FlaskClient) -> None:
    mine = register_system(app, CALLBACK)
    other = register_system(app, "https://other.gov.example/cb", name="Other system")
    citizen = Citizen.create(app)
    ticket = _ticket(client, mine, citizen)
    foreign = _post(client, "token", other, ticket=ticket)
    assert foreign.get_json()["error"] == "invalid_ticket"
    assert "another system" in foreign.get_json()["error_description"]
    # The leaked ticket is spent: its own system cannot use it either.
    assert _post(client, "token", mine, ticket=ticket).get_json()["error"] == "invalid_ticket"

    late = _ticket(client, mine, citizen)
    services = app.extensions["yitong"]
    with services.db.session() as session:
        system_row = protocol.find_system(session, mine.system_id)
        with pytest.raises(protocol.BridgeInvalidTicketError, match="expired"):
            protocol.exchange_ticket(
                session, services, system_row, late, now=utcnow() + dt.timedelta(seconds=31)
            )
    for bad in ("BT-unknown", "ST-" + "a" * 43, "", "BT-" + "x" * 300):
        resp = _post(client, "token", mine, ticket=bad)
        assert resp.status_code == 400
        assert resp.get_json()["error"] in ("invalid_ticket", "invalid_request")


def test_wrong_credentials_and_unknown_system(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    ticket = _ticket(client, system, Citizen.create(app))
    for headers in (
        _basic(system, "wrong-secret"),
        {"Authorization": "Basic " + base64.b64encode(b"bridge-nobody:x").decode()},
        {"Authorization": "Basic !!"},
        {},
    ):
        resp = client.post("/bridge/v1/token", data={"ticket": ticket}, headers=headers)
        assert resp.status_code == 401, headers
        assert resp.get_json()["error"] == "invalid_client"
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    # A refused call does not spend the ticket: the right credentials still work.
    assert _post(client, "token", system, ticket=ticket).status_code == 200
    # Credentials as form fields work too, but not both at once.
    both = client.post(
        "/bridge/v1/userinfo",
        data={"system_id": system.system_id, "system_secret": system.secret, "access_token": "x"},
        headers=_basic(system),
    )
    assert both.get_json()["error"] == "invalid_request"
    as_form = client.post(
        "/bridge/v1/userinfo",
        data={"system_id": system.system_id, "system_secret": system.secret, "access_token": "x"},
    )
    assert as_form.status_code == 401 and as_form.get_json()["error"] == "invalid_token"
    # JSON bodies and repeated parameters are refused in the protocol's form.
    as_json = client.post("/bridge/v1/token", json={"ticket": ticket}, headers=_basic(system))
    assert as_json.get_json()["error"] == "invalid_request"
    twice = client.post(
        "/bridge/v1/token",
        data=MultiDict([("ticket", "a"), ("ticket", "b")]),
        headers=_basic(system),
    )
    assert twice.get_json()["error"] == "invalid_request"
    with app.extensions["yitong"].db.session() as session:
        refused = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "bridge.token", AuditEvent.outcome == "failure"
            )
        ).all()
    assert {e.details["error"] for e in refused} >= {"invalid_client", "invalid_request"}


def test_token_of_another_system_is_refused(app: Flask, client: FlaskClient) -> None:
    mine = register_system(app, CALLBACK)
    other = register_system(app, "https://other.gov.example/cb", name="Other system")
    token = _post(client, "token", mine, ticket=_ticket(client, mine, Citizen.create(app)))
    raw = token.get_json()["access_token"]
    resp = _post(client, "userinfo", other, access_token=raw)
    assert resp.status_code == 401
    assert resp.get_json()["error_description"] == "access token was issued to another system"


def test_signed_request_negative_cases(app: Flask, client: FlaskClient, system: Registered) -> None:
    bridge = system.client()
    path = "/bridge/v1/login"

    def attempt(params: dict[str, str]) -> Any:
        return client.get(path, query_string=params)

    good = bridge.signed_params(path, {"state": "x"})
    tampered = {**good, "state": "y"}
    assert _refusal(attempt(tampered)) == "invalid_signature"
    wrong_key = {**good, "signature": sign("not-the-secret", path, good)}
    assert _refusal(attempt(wrong_key)) == "invalid_signature"
    other_path = {**good, "signature": sign(system.secret, "/bridge/v1/logout", good)}
    assert _refusal(attempt(other_path)) == "invalid_signature"
    assert attempt(good).status_code == 302
    replay = attempt(good)
    assert replay.status_code == 400 and _refusal(replay) == "replayed_request"
    stale = bridge.signed_params(path, {}, now=int(time.time()) - 3600)
    assert _refusal(attempt(stale)) == "stale_request"
    future = bridge.signed_params(path, {}, now=int(time.time()) + 3600)
    assert _refusal(attempt(future)) == "stale_request"
    unknown = BridgeClient("http://localhost", "bridge-0000000000000000", system.secret)
    assert _refusal(attempt(unknown.signed_params(path, {}))) == "unknown_system"
    v2 = {**bridge.signed_params(path, {}), "version": "2"}
    assert _refusal(attempt(v2)) == "invalid_request"
    missing = {k: v for k, v in bridge.signed_params(path, {}).items() if k != "nonce"}
    assert _refusal(attempt(missing)) == "invalid_request"
    short_nonce = bridge.signed_params(path, {})
    short_nonce["nonce"] = "abc"
    short_nonce["signature"] = sign(system.secret, path, short_nonce)
    assert _refusal(attempt(short_nonce)) == "invalid_request"
    repeated = client.get(path + "?" + urlsplit(bridge.login_url()).query + "&acting=company")
    assert _refusal(repeated) == "invalid_request"
    bad_acting = bridge.signed_params(path, {"acting": "someone-else"})
    assert _refusal(attempt(bad_acting)) == "invalid_request"
    # A refused request never redirects, and is audited.
    with app.extensions["yitong"].db.session() as session:
        errors = [
            e.details["error"]
            for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "bridge.login"))
        ]
    assert {"invalid_signature", "replayed_request", "stale_request", "unknown_system"} <= set(
        errors
    )


def test_cancel_on_the_login_page_tells_the_system(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    resp = client.get(_path(system.client().login_url(state="abc")))
    page = client.get(client.get(resp.headers["Location"]).headers["Location"])
    html = page.get_data(as_text=True)
    assert "社保旧系统" in html  # the login page names the system
    ix = re.search(r'name="ix" value="([^"]+)"', html)
    assert ix
    resp = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "ix": ix.group(1).replace("&amp;", "&"),
            "action": "cancel",
        },
    )
    location = follow_to_service(client, resp, CALLBACK)
    assert query_of(location) == {"error": "access_denied", "state": "abc"}


def test_oauth_endpoints_refuse_a_bridge_system(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    """A system's credentials work at /bridge/v1 only: no OAuth grant, no authorization."""
    resp = client.post("/token", data={"grant_type": "client_credentials"}, headers=_basic(system))
    assert resp.status_code in (400, 401) and resp.get_json()["error"] in (
        "unauthorized_client",
        "invalid_client",
        "unsupported_grant_type",
    )
    ticket = _ticket(client, system, Citizen.create(app))
    as_code = client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": ticket, "redirect_uri": CALLBACK},
        headers=_basic(system),
    )
    assert as_code.status_code in (400, 401)
    # The ticket was not spent by the refused OAuth request.
    assert _post(client, "token", system, ticket=ticket).status_code == 200


def test_company_switch_for_a_legal_person(app: Flask, client: FlaskClient) -> None:
    system = register_system(app, CALLBACK, attributes=["name"])
    entity, rep, credit_code = company(app)
    # Acting for themselves first.
    location = _login(client, system.client(), rep)
    token = _post(client, "token", system, ticket=query_of(location)["ticket"]).get_json()
    info = _post(client, "userinfo", system, access_token=token["access_token"]).get_json()
    assert info["acting_for"] is None

    # Switching company: a new signed login with acting=company shows the picker (no password).
    resp = client.get(_path(system.client().login_url(acting="company")))
    resp = client.get(resp.headers["Location"])
    assert "/entities/choose?" in resp.headers["Location"]
    page = client.get(resp.headers["Location"])
    html = page.get_data(as_text=True)
    assert entity.name in html
    ix = re.search(r'name="ix" value="([^"]+)"', html)
    assert ix
    chosen = client.post(
        "/entities/choose",
        data={
            "csrf_token": csrf_token(html),
            "ix": ix.group(1).replace("&amp;", "&"),
            "acting_for": entity.id,
        },
    )
    location = follow_to_service(client, chosen, CALLBACK)
    token = _post(client, "token", system, ticket=query_of(location)["ticket"]).get_json()
    info = _post(client, "userinfo", system, access_token=token["access_token"]).get_json()
    assert info["acting_for"]["applies_to"] == {
        "registration_number": credit_code,
        "name": entity.name,
    }
    assert info["acting_for"]["permission"]["role"] == "legal-representative"
    with app.extensions["yitong"].db.session() as session:
        grants = session.scalars(select(Grant).where(Grant.client_id == system.system_id)).all()
    assert sorted(g.entity_id or "" for g in grants) == ["", entity.id]


def test_server_logout_ends_the_session_everywhere(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    citizen = Citizen.create(app)
    token = _post(client, "token", system, ticket=_ticket(client, system, citizen)).get_json()
    raw = token["access_token"]
    ended = _post(client, "logout", system, access_token=raw)
    assert ended.get_json() == {"version": "1", "ended": True}
    with app.extensions["yitong"].db.session() as session:
        live = session.scalars(
            select(SsoSession).where(
                SsoSession.user_id == citizen.id, SsoSession.ended_at.is_(None)
            )
        ).all()
        tokens = session.scalars(select(Token).where(Token.client_id == system.system_id)).all()
    assert live == [] and all(t.revoked_at is not None for t in tokens)
    assert _post(client, "userinfo", system, access_token=raw).status_code == 401
    # Asked again (a retry): answered, nothing more to end.
    assert _post(client, "logout", system, access_token=raw).get_json()["ended"] is False
    # The browser must sign in again.
    resp = client.get(_path(system.client().login_url()))
    assert "/login?" in client.get(resp.headers["Location"]).headers["Location"]
    unknown = _post(client, "logout", system, access_token="not-a-token")
    assert unknown.status_code == 401 and unknown.get_json()["error"] == "invalid_token"


def test_browser_logout_signed_by_the_system(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    citizen = Citizen.create(app)
    _ticket(client, system, citizen)
    bridge = system.client()
    resp = client.get(_path(bridge.logout_url(return_to=CALLBACK)))
    assert resp.status_code == 302 and resp.headers["Location"] == CALLBACK
    with app.extensions["yitong"].db.session() as session:
        assert (
            session.scalars(
                select(SsoSession).where(
                    SsoSession.user_id == citizen.id, SsoSession.ended_at.is_(None)
                )
            ).all()
            == []
        )
    # A return_to other than the callback is refused; so is a replayed logout request.
    evil = client.get(_path(bridge.logout_url(return_to="https://evil.example/")))
    assert _refusal(evil) == "invalid_request"
    url = _path(bridge.logout_url())
    client.get(url)
    assert _refusal(client.get(url)) == "replayed_request"


def test_browser_logout_of_a_system_not_used_in_this_session_asks(
    app: Flask, client: FlaskClient
) -> None:
    used = register_system(app, CALLBACK)
    other = register_system(app, "https://other.gov.example/cb", name="Other")
    _ticket(client, used, Citizen.create(app))
    resp = client.get(_path(other.client().logout_url()))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/logout")


def test_the_jwt_form_of_a_signed_request(
    app: Flask, client: FlaskClient, system: Registered
) -> None:
    """The same request as a ``request`` JWT (HS256 with the system's secret)."""
    from joserfc import jwt
    from joserfc.jwk import OctKey

    citizen = Citizen.create(app)
    bridge = system.client(signing="jwt")
    location = _login(client, bridge, citizen, state="via-jwt")
    params = query_of(location)
    assert params["state"] == "via-jwt" and params["ticket"].startswith("BT-")
    assert _post(client, "token", system, ticket=params["ticket"]).status_code == 200

    path = "/bridge/v1/login"

    def attempt(claims: dict[str, Any], key: str = system.secret, **header: Any) -> Any:
        token = jwt.encode(
            {"alg": "HS256", "typ": "bridge-request+jwt", **header},
            claims,
            OctKey.import_key(key),
        )
        return client.get(path, query_string={"system_id": system.system_id, "request": token})

    def claims(**overrides: Any) -> dict[str, Any]:
        base = {
            "version": "1",
            "iss": system.system_id,
            "aud": "http://localhost" + path,
            "iat": int(time.time()),
            "jti": secrets.token_urlsafe(18),
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    assert _refusal(attempt(claims(), key="another-secret-of-enough-length-123456")) == (
        "invalid_signature"
    )
    assert _refusal(attempt(claims(aud="http://localhost/bridge/v1/logout"))) == "invalid_signature"
    assert _refusal(attempt(claims(iss="bridge-someone-else"))) == "invalid_signature"
    assert _refusal(attempt(claims(), typ="JWT")) == "invalid_signature"
    assert _refusal(attempt(claims(iat=int(time.time()) - 3600))) == "stale_request"
    assert _refusal(attempt(claims(exp=int(time.time()) - 600))) == "stale_request"
    assert _refusal(attempt(claims(jti="short"))) == "invalid_request"
    assert _refusal(attempt(claims(state=["not", "a", "string"]))) == "invalid_request"
    once = claims()
    assert attempt(once).status_code == 302
    assert _refusal(attempt(once)) == "replayed_request"
    unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiYnJpZGdlLXJlcXVlc3Qrand0In0.e30."
    resp = client.get(path, query_string={"system_id": system.system_id, "request": unsigned})
    assert _refusal(resp) == "invalid_signature"
    mixed = client.get(
        path,
        query_string={"system_id": system.system_id, "request": unsigned, "state": "x"},
    )
    assert _refusal(mixed) == "invalid_request"


def test_rate_limits_answer_in_each_side_s_form(make_app: Any) -> None:
    app = make_app(rate_limit_authorize_per_minute=2, rate_limit_token_per_minute=2)
    http = app.test_client()
    system = register_system(app, CALLBACK)
    bridge = system.client()
    answers = [http.get(_path(bridge.login_url())) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [302, 302]
    assert answers[2].status_code == 429 and _refusal(answers[2]) == "slow_down"
    assert answers[2].headers["Retry-After"]
    server = [_post(http, "token", system, ticket="BT-x") for _ in range(3)]
    assert server[2].status_code == 429
    assert server[2].get_json()["error"] == "slow_down" and server[2].headers["Retry-After"]
