"""QR-code login from the government app (issue 13 item 4), the browser driven by Flask test
clients and the app by a scripted client holding the person's access token.

Negative cases from the issue: expired code, code approved from another account, second use,
another browser presenting the same code, denial; and the app's token without the scope.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.helpers import Citizen, Flow, RegisteredClient, csrf_token, hidden

APP_SCOPE = "openid qr_login"


def app_token(app: Flask, citizen: Citizen, scope: str = APP_SCOPE, jkt: str | None = None) -> str:
    """The government app's access token for ``citizen`` (how the app signed in is the code
    flow's business, tested elsewhere; here only what the token carries matters)."""
    from idp.storage.models import Grant, Token, utcnow
    from idp.storage.repo import digest, new_id, new_secret

    rp = RegisteredClient.create(
        app, name="Government app", public=True, redirect_uris=["http://127.0.0.1/app"]
    )
    now = utcnow()
    raw = new_secret()
    with app.extensions["yitong"].db.transaction() as session:
        grant = Grant(
            id=new_id(),
            user_id=citizen.id,
            client_id=rp.client_id,
            scope=scope,
            auth_time=now,
            acr="urn:yitong:acr:mfa",
            amr=["pwd", "otp"],
            created_at=now,
            expires_at=now + dt.timedelta(hours=1),
        )
        session.add(grant)
        session.flush()
        session.add(
            Token(
                id=new_id(),
                digest=digest(raw),
                kind="access",
                grant_id=grant.id,
                client_id=rp.client_id,
                user_id=citizen.id,
                scope=scope,
                created_at=now,
                expires_at=now + dt.timedelta(minutes=10),
                jkt=jkt,
            )
        )
    return raw


class Browser:
    """One browser at the login page of an authorization request."""

    def __init__(self, http: FlaskClient, flow: Flow) -> None:
        self.http = http
        self.flow = flow
        resp = flow.authorize()
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]
        login = http.get(resp.headers["Location"]).get_data(as_text=True)
        assert 'id="qr-show-form"' in login and 'id="qr-image"' not in login
        # the no-script path: the page's "Show a QR code" button
        self.page = show(http, login).get_data(as_text=True)
        self.qr_id = hidden(self.page, "qr_id")
        self.ix = hidden(self.page, "ix")
        link = re.search(r'href="([^"]+)" id="qr-link"', self.page)
        assert link and link.group(1), "no QR link in the page"
        self.code = link.group(1).rsplit("/", 1)[1]
        self.number = re.search(r'id="qr-number">(\d+)<', self.page).group(1)  # type: ignore[union-attr]

    def status(self, http: FlaskClient | None = None) -> str:
        body = (http or self.http).get(f"/qr/status/{self.qr_id}").get_json()
        return str(body["status"])

    def complete(self, http: FlaskClient | None = None) -> Any:
        """Submit the continue form (``http``: another browser, with its own CSRF token)."""
        page = self.page if http is None else http.get("/login").get_data(as_text=True)
        return (http or self.http).post(
            "/qr/complete",
            data={"csrf_token": csrf_token(page), "ix": self.ix, "qr_id": self.qr_id},
        )


def show(http: FlaskClient, login_page: str) -> Any:
    """Press "Show a QR code" on a login page (the path that works without script)."""
    return http.post(
        "/login/qr",
        data={"csrf_token": csrf_token(login_page), "ix": hidden(login_page, "ix")},
    )


def ask_script(http: FlaskClient, login_page: str) -> Any:
    """What the login page's script does: ``POST /qr/new`` with the page's form."""
    return http.post(
        "/qr/new",
        data={"csrf_token": csrf_token(login_page), "ix": hidden(login_page, "ix")},
    )


def request_rows(app: Flask) -> int:
    from sqlalchemy import func

    from idp.storage.models import DeviceRequest

    with app.extensions["yitong"].db.session() as session:
        return int(session.scalar(select(func.count()).select_from(DeviceRequest)) or 0)


def scan(http: FlaskClient, token: str, code: str) -> Any:
    return http.get(f"/qr/{code}/request", headers={"Authorization": f"Bearer {token}"})


def decide(http: FlaskClient, token: str, code: str, decision: str, number: str | None) -> Any:
    data = {"decision": decision}
    if number is not None:
        data["matching_number"] = number
    return http.post(
        f"/qr/{code}/decision", data=data, headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def browser(app: Flask, rp: RegisteredClient) -> Browser:
    http = app.test_client()
    return Browser(http, Flow(http, rp))


def _audit(app: Flask, action: str) -> list[Any]:
    from idp.storage.models import AuditEvent

    with app.extensions["yitong"].db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_approval_signs_in_the_browser_that_showed_the_code_only(
    app: Flask, browser: Browser, citizen: Citizen, rp: RegisteredClient
) -> None:
    # the page: an inline SVG QR code, the matching number, a live status region
    assert "<svg" in browser.page and 'aria-live="polite"' in browser.page
    phone = app.test_client()
    token = app_token(app, citizen)
    seen = scan(phone, token, browser.code)
    assert seen.status_code == 200, seen.get_json()
    info = seen.get_json()
    assert info["service"] == "Social security service"
    assert info["matching_number"] == browser.number
    assert info["warning"] and info["location"] and 0 < info["expires_in"] <= 120
    assert browser.status() == "pending"

    ok = decide(phone, token, browser.code, "approve", browser.number)
    assert ok.status_code == 200 and ok.get_json()["status"] == "approved"
    [event] = _audit(app, "qr_login.approved")
    assert event.actor == f"user:{citizen.id}"

    # another browser presenting the same request: learns nothing, gets nothing
    other = app.test_client()
    assert browser.status(other) == "unknown"
    stolen = browser.complete(other)
    assert "qr=unknown" in stolen.headers["Location"]
    assert not any(c.startswith("yitong_sso=") for c in stolen.headers.getlist("Set-Cookie"))

    # the browser that showed it: the session, then on to the client with a code
    assert browser.status() == "approved"
    done = browser.complete()
    assert done.status_code == 303 and "/authorize/resume" in done.headers["Location"]
    assert any(c.startswith("yitong_sso=") for c in done.headers.getlist("Set-Cookie"))
    params = browser.flow.follow_to_code(browser.http.get(done.headers["Location"]))
    assert params["code"] and params["state"] == browser.flow.state
    tokens = browser.flow.token(params["code"]).get_json()
    assert "access_token" in tokens
    assert _audit(app, "qr_login.completed")

    # second use: nothing more from the same code
    again = browser.complete()  # (the binding cookie went with the first use)
    assert "qr=unknown" in again.headers["Location"]
    assert not any(c.startswith("yitong_sso=") for c in again.headers.getlist("Set-Cookie"))
    assert decide(phone, token, browser.code, "approve", browser.number).status_code == 409


def test_denial_reaches_the_browser_and_gives_no_session(
    app: Flask, browser: Browser, citizen: Citizen
) -> None:
    phone, token = app.test_client(), app_token(app, citizen)
    denied = decide(phone, token, browser.code, "deny", None)
    assert denied.get_json()["status"] == "denied"
    assert _audit(app, "qr_login.denied")
    assert browser.status() == "denied"
    resp = browser.complete()
    assert "qr=denied" in resp.headers["Location"]
    page = browser.http.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'id="qr-outcome"' in page  # the page says why, and shows a new code
    assert decide(phone, token, browser.code, "approve", browser.number).status_code == 409


def test_expired_code(app: Flask, browser: Browser, citizen: Citizen) -> None:
    from idp.storage.models import DeviceRequest, utcnow

    with app.extensions["yitong"].db.transaction() as session:
        row = session.get(DeviceRequest, browser.qr_id)
        assert row is not None
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    phone, token = app.test_client(), app_token(app, citizen)
    assert scan(phone, token, browser.code).status_code == 410
    assert decide(phone, token, browser.code, "approve", browser.number).status_code == 410
    assert browser.status() == "expired"


def test_code_claimed_by_one_account_cannot_be_approved_by_another(
    app: Flask, browser: Browser, citizen: Citizen
) -> None:
    phone = app.test_client()
    mine, theirs = app_token(app, citizen), app_token(app, Citizen.create(app))
    assert scan(phone, mine, browser.code).status_code == 200
    other = scan(phone, theirs, browser.code)
    assert other.status_code == 409 and other.get_json()["error_description"] == "other_account"
    assert decide(phone, theirs, browser.code, "approve", browser.number).status_code == 409
    assert browser.status() == "pending"


def test_wrong_matching_number_and_bad_requests(
    app: Flask, browser: Browser, citizen: Citizen
) -> None:
    phone, token = app.test_client(), app_token(app, citizen)
    wrong = f"{(int(browser.number) + 1) % 100:02d}"
    assert decide(phone, token, browser.code, "approve", wrong).status_code == 400
    assert decide(phone, token, browser.code, "approve", None).status_code == 400
    assert decide(phone, token, browser.code, "maybe", browser.number).status_code == 400
    assert browser.status() == "pending"
    # the app's token must carry the QR-login scope; a relying party's token cannot sign in
    rp_token = app_token(app, citizen, scope="openid profile")
    assert scan(phone, rp_token, browser.code).status_code == 403
    assert phone.get(f"/qr/{browser.code}/request").status_code == 401
    assert scan(phone, token, "nonexistent").status_code == 404
    assert scan(phone, token, "x" * 500).status_code == 404
    # garbage ids at the browser side: unknown, never a 500
    assert browser.http.get("/qr/status/" + "z" * 70).get_json()["status"] == "unknown"
    # the page a camera opens explains and warns
    assert phone.get(f"/qr/{browser.code}").status_code == 200


def test_app_with_a_dpop_bound_token(app: Flask, browser: Browser, citizen: Citizen) -> None:
    from tests.oauth.test_dpop import Holder

    holder = Holder()
    token = app_token(app, citizen, jkt=holder.jkt)
    phone = app.test_client()
    url = f"http://localhost/qr/{browser.code}/request"
    # the bound token as Bearer is refused; with a proof of its key (after the nonce) it works
    assert scan(phone, token, browser.code).status_code == 401
    first = holder.get(phone, url, token)
    holder.nonce = first.headers["DPoP-Nonce"]
    resp = holder.get(phone, url, token)
    assert resp.status_code == 200, resp.get_json()


def test_qr_codes_are_rate_limited(make_app: Any) -> None:
    app = make_app(rate_limit_qr_per_minute=1)
    http = app.test_client()
    login = http.get("/login").get_data(as_text=True)
    first = ask_script(http, login)
    assert first.status_code == 200 and 'id="qr-image"' in first.get_json()["html"]
    second = ask_script(http, login)
    assert second.status_code == 429
    assert 'id="qr-busy"' in second.get_json()["html"]
    page = show(http, login).get_data(as_text=True)
    assert 'id="qr-busy"' in page and 'id="qr-image"' not in page


def test_reading_the_login_page_stores_no_request(app: Flask, rp: RegisteredClient) -> None:
    """Crawlers and bots that read the login page fill no table: only asking stores a row."""
    http = app.test_client()
    flow = Flow(http, rp)
    location = flow.authorize().headers["Location"]
    for _ in range(5):
        page = http.get(location)
        assert page.status_code == 200 and 'id="qr-image"' not in page.get_data(as_text=True)
        assert not any(c.startswith("yitong_qr=") for c in page.headers.getlist("Set-Cookie"))
    assert http.get("/login").status_code == 200
    assert request_rows(app) == 0
    # the script's request: one row, the panel for this authorization, the binding cookie
    login = http.get(location).get_data(as_text=True)
    asked = ask_script(http, login)
    assert asked.status_code == 200 and asked.headers["Cache-Control"] == "no-store"
    html = asked.get_json()["html"]
    assert 'id="qr-image"' in html and 'id="qr-number"' in html and "<svg" in html
    assert hidden(html, "ix") == hidden(login, "ix")  # the continue form keeps the request
    assert any(c.startswith("yitong_qr=") for c in asked.headers.getlist("Set-Cookie"))
    assert request_rows(app) == 1
    # without the page's CSRF token nothing is stored
    assert http.post("/qr/new", data={"ix": hidden(login, "ix")}).status_code == 400
    assert http.post("/login/qr", data={"ix": hidden(login, "ix")}).status_code == 400
    assert request_rows(app) == 1


def test_script_path_code_is_approved_like_the_no_script_one(
    app: Flask, rp: RegisteredClient, citizen: Citizen
) -> None:
    http = app.test_client()
    flow = Flow(http, rp)
    login = http.get(flow.authorize().headers["Location"]).get_data(as_text=True)
    html = ask_script(http, login).get_json()["html"]
    link = re.search(r'href="([^"]+)" id="qr-link"', html)
    number = re.search(r'id="qr-number">(\d+)<', html)
    assert link and number
    code = link.group(1).rsplit("/", 1)[1]
    phone, token = app.test_client(), app_token(app, citizen)
    assert scan(phone, token, code).get_json()["service"] == "Social security service"
    assert decide(phone, token, code, "approve", number.group(1)).status_code == 200
    done = http.post(
        "/qr/complete",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "qr_id": hidden(html, "qr_id"),
        },
    )
    assert done.status_code == 303 and "/authorize/resume" in done.headers["Location"]
