"""RFC 8628 device authorization grant (issue 13): a device shows a user code, the person
approves at ``/device`` in a browser, the device polls the token endpoint.

The device is a Flask test client posting as the client would; the person's browser another
one, signed in through the real login page.  Every polling error of RFC 8628 §3.5
(``authorization_pending``, ``slow_down``, ``access_denied``, ``expired_token``), a device
code polled by another client, code guessing, single use, step-up, discovery and registration.
Time moves with a fake clock patched into the modules that read it, never with sleeps.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.oauth.clients import DEVICE_CODE, ClientRegistrationError, ClientSpec, create_client
from tests.helpers import Citizen, RegisteredClient, csrf_token, hidden
from tests.interaction.mfa_kit import ACR_MFA, code, enrol_totp, set_policy, submit
from tests.oauth import tokenkit as kit

USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


class FakeClock:
    """``utcnow`` for the device grant's modules: the test decides what time it is."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    import idp.blueprints.device as device_pages
    import idp.oauth.device as device_grant

    fake = FakeClock()
    for module in (device_grant, device_pages):
        monkeypatch.setattr(module, "utcnow", fake)
    return fake


@pytest.fixture
def tv(app: Flask) -> RegisteredClient:
    """A public client (a television app) registered for the device grant."""
    return kit.create_client(
        app,
        name="Provincial TV service",
        public=True,
        grant_types=[DEVICE_CODE, "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
    )


def start(http: FlaskClient, rp: RegisteredClient, **form: Any) -> Any:
    return kit.post(http, "/device_authorization", rp, form)


def poll(http: FlaskClient, rp: RegisteredClient, device_code: str) -> Any:
    return kit.post(http, "/token", rp, {"grant_type": DEVICE_CODE, "device_code": device_code})


def sign_in(app: Flask, citizen: Citizen, path: str = "/device") -> tuple[FlaskClient, Any]:
    """A browser opening ``path`` and signing in on the way; returns it and the last answer."""
    http = app.test_client()
    resp = http.get(path)
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]
    html = http.get(resp.headers["Location"]).get_data(as_text=True)
    resp = http.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "login": citizen.email,
            "password": citizen.password,
        },
    )
    for _ in range(4):
        if resp.status_code not in (302, 303):
            break
        resp = http.get(resp.headers["Location"])
    return http, resp


def enter(http: FlaskClient, user_code: str) -> Any:
    html = http.get("/device").get_data(as_text=True)
    return http.post("/device", data={"csrf_token": csrf_token(html), "user_code": user_code})


def decide(http: FlaskClient, resp: Any, action: str) -> Any:
    """From the answer to a typed code: the confirm page, then the decision."""
    assert resp.status_code in (302, 303) and "/device/confirm" in resp.headers["Location"], (
        resp.status_code,
        resp.get_data(as_text=True)[:400],
    )
    page = http.get(resp.headers["Location"])
    assert page.status_code == 200, page.get_data(as_text=True)[:400]
    html = page.get_data(as_text=True)
    return http.post(
        "/device/confirm",
        data={"csrf_token": csrf_token(html), "ix": hidden(html, "ix"), "action": action},
    )


def audit(app: Flask, action: str) -> list[Any]:
    from idp.storage.models import AuditEvent

    with app.extensions["yitong"].db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# ------------------------------------------------------------------ the whole flow
def test_full_flow_user_code_approval_then_tokens_once(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    started = start(client, tv, scope="openid profile offline_access")
    assert started.status_code == 200, started.get_json()
    body = started.get_json()
    assert started.headers["Cache-Control"] == "no-store"
    assert USER_CODE.match(body["user_code"])
    assert len(body["device_code"]) >= 43  # 256 bits in base64url (at least 128 required)
    assert body["verification_uri"].endswith("/device")
    assert body["verification_uri_complete"] == (
        f"{body['verification_uri']}?user_code={body['user_code']}"
    )
    assert body["expires_in"] == 600 and body["interval"] == 5

    assert poll(client, tv, body["device_code"]).get_json()["error"] == "authorization_pending"

    # the person: verification_uri_complete, sign in, the code filled in to check, confirm
    complete = body["verification_uri_complete"].split("/device", 1)[1]
    browser, page = sign_in(app, citizen, "/device" + complete)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="device-check"' in html
    assert body["user_code"] in html and 'id="device-warning"' in html
    entered = browser.post(
        "/device", data={"csrf_token": csrf_token(html), "user_code": body["user_code"].lower()}
    )
    confirm = browser.get(entered.headers["Location"]).get_data(as_text=True)
    assert "Provincial TV service" in confirm and 'id="device-warning"' in confirm
    assert 'id="device-location"' in confirm
    done = decide(browser, entered, "approve")
    assert done.status_code == 200
    assert 'data-outcome="approved"' in done.get_data(as_text=True)
    [event] = audit(app, "device.approved")
    assert event.actor == f"user:{citizen.id}"

    tokens = poll(client, tv, body["device_code"])
    assert tokens.status_code == 200, tokens.get_json()
    got = tokens.get_json()
    assert got["token_type"] == "Bearer" and got["scope"] == "openid profile offline_access"
    assert got["refresh_token"] and got["access_token"]
    claims = jose_jwt.get_unverified_claims(got["id_token"])
    assert claims["aud"] == tv.client_id and claims["acr"] and "pwd" in claims["amr"]
    assert audit(app, "device.completed")
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {got['access_token']}"})
    assert info.status_code == 200 and info.get_json()["name"] == citizen.name
    refreshed = kit.refresh(client, tv, got["refresh_token"])
    assert refreshed.status_code == 200

    # replay: no second token set, and what the first one produced is revoked
    again = poll(client, tv, body["device_code"])
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    after = client.get("/userinfo", headers={"Authorization": f"Bearer {got['access_token']}"})
    assert after.status_code == 401
    assert kit.refresh(client, tv, refreshed.get_json()["refresh_token"]).status_code == 400


def test_deny_gives_access_denied_and_no_tokens(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)
    done = decide(browser, enter(browser, body["user_code"]), "deny")
    assert 'data-outcome="denied"' in done.get_data(as_text=True)
    assert audit(app, "device.denied")
    denied = poll(client, tv, body["device_code"])
    assert denied.status_code == 400 and denied.get_json()["error"] == "access_denied"
    # a decided request cannot be decided again
    assert enter(browser, body["user_code"]).status_code == 400


def test_slow_down_adds_five_seconds_each_time(
    app: Flask, client: FlaskClient, tv: RegisteredClient, clock: FakeClock
) -> None:
    body = start(client, tv).get_json()
    code = body["device_code"]
    assert poll(client, tv, code).get_json()["error"] == "authorization_pending"
    clock.advance(seconds=2)
    fast = poll(client, tv, code)
    assert fast.status_code == 400 and fast.get_json()["error"] == "slow_down"
    clock.advance(seconds=6)  # 6 s < the interval of 10 s now
    assert poll(client, tv, code).get_json()["error"] == "slow_down"
    clock.advance(seconds=15)  # the interval is 15 s now
    assert poll(client, tv, code).get_json()["error"] == "authorization_pending"
    from idp.storage.models import DeviceRequest

    with app.extensions["yitong"].db.session() as session:
        row = session.scalars(select(DeviceRequest).where(DeviceRequest.kind == "device")).one()
        assert row.interval == 15


def test_expired_code_gives_expired_token_and_cannot_be_entered(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen, clock: FakeClock
) -> None:
    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)
    clock.advance(seconds=601)
    expired = poll(client, tv, body["device_code"])
    assert expired.status_code == 400 and expired.get_json()["error"] == "expired_token"
    late = enter(browser, body["user_code"])
    assert late.status_code == 400 and 'id="device-error"' in late.get_data(as_text=True)


def test_expiry_between_approval_and_poll(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen, clock: FakeClock
) -> None:
    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)
    assert decide(browser, enter(browser, body["user_code"]), "approve").status_code == 200
    clock.advance(seconds=601)
    assert poll(client, tv, body["device_code"]).get_json()["error"] == "expired_token"


def test_another_client_polling_gets_invalid_grant(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    other = kit.create_client(app, name="Other TV", public=True, grant_types=[DEVICE_CODE])
    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)
    decide(browser, enter(browser, body["user_code"]), "approve")
    stolen = poll(client, other, body["device_code"])
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    # the rightful device still gets its tokens
    assert poll(client, tv, body["device_code"]).status_code == 200


def test_endpoint_refusals(app: Flask, client: FlaskClient, tv: RegisteredClient, rp) -> None:
    # a client not registered for the grant
    no = start(client, rp, scope="openid")
    assert no.status_code == 400 and no.get_json()["error"] == "unauthorized_client"
    assert poll(client, rp, "x" * 43).get_json()["error"] == "unauthorized_client"
    # unknown client, wrong secret
    bad = client.post("/device_authorization", data={"client_id": "nobody"})
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_client"
    confidential = kit.create_client(app, name="Kiosk", grant_types=[DEVICE_CODE])
    wrong = client.post(
        "/device_authorization",
        data={"client_id": confidential.client_id, "client_secret": "wrong"},
    )
    assert wrong.status_code == 401
    assert start(client, confidential, scope="openid").status_code == 200  # its own secret
    # scope not registered; acting for a company; JSON body; repeated parameter
    assert start(client, tv, scope="openid email").get_json()["error"] == "invalid_scope"
    json_body = client.post("/device_authorization", json={"client_id": tv.client_id})
    assert json_body.status_code == 400
    twice = client.post(
        "/device_authorization", data={"client_id": tv.client_id, "scope": ["openid", "profile"]}
    )
    assert twice.get_json()["error"] == "invalid_request"
    # polling without or with an unknown device code
    assert kit.post(client, "/token", tv, {"grant_type": DEVICE_CODE}).status_code == 400
    unknown = poll(client, tv, "nope")
    assert unknown.get_json()["error"] == "invalid_grant"


# ------------------------------------------------------------------ the person's page
def test_page_needs_sign_in_and_csrf(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    body = start(client, tv).get_json()
    anonymous = app.test_client()
    resp = anonymous.get("/device")
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]
    browser, page = sign_in(app, citizen)
    assert page.status_code == 200 and 'id="user-code"' in page.get_data(as_text=True)
    no_csrf = browser.post("/device", data={"user_code": body["user_code"]})
    assert no_csrf.status_code == 400
    no_choice = browser.post("/device/confirm", data={"action": "approve"})
    assert no_choice.status_code == 400
    # an approval form whose ix is forged
    html = browser.get("/device").get_data(as_text=True)
    forged = browser.post(
        "/device/confirm",
        data={"csrf_token": csrf_token(html), "ix": "forged", "action": "approve"},
    )
    assert forged.status_code == 400
    assert poll(client, tv, body["device_code"]).get_json()["error"] == "authorization_pending"


def test_page_in_chinese_and_english(app: Flask, citizen: Citizen) -> None:
    browser, _ = sign_in(app, citizen)
    zh = browser.get("/device", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    en = browser.get("/device?ui_locales=en").get_data(as_text=True)
    assert 'lang="zh-CN"' in zh and "设备" in zh
    assert 'for="user-code"' in zh and 'aria-describedby="user-code-help"' in zh
    assert 'lang="en"' in en and "Enter the code shown on your device" in en


def test_code_guessing_is_limited_per_account(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)
    limit = app.extensions["yitong"].settings.device_code_attempts_per_minute
    statuses = [enter(browser, "BBBB-BBBB").status_code for _ in range(limit)]
    assert statuses == [400] * limit
    # past the limit even the right code is refused for now
    blocked = enter(browser, body["user_code"])
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # another account (same address, under the address limit) is not blocked
    other, _ = sign_in(app, Citizen.create(app))
    assert enter(other, body["user_code"]).status_code == 303


def test_code_claimed_by_one_account_is_unknown_to_another(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    body = start(client, tv).get_json()
    first, _ = sign_in(app, citizen)
    entered = enter(first, body["user_code"])
    assert entered.status_code == 303
    second, _ = sign_in(app, Citizen.create(app))
    assert enter(second, body["user_code"]).status_code == 400
    # nor can the second browser use the first one's confirm link (another browser's ix)
    assert second.get(entered.headers["Location"]).status_code == 400
    assert decide(first, entered, "approve").status_code == 200


def test_mfa_policy_steps_up_before_the_approval(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    set_policy(app, "mfa.always_when_enrolled", False)
    secret = enrol_totp(app, citizen.id)
    set_policy(app, "mfa.required_clients", [tv.client_id])
    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)  # the password only: this client needs more
    entered = enter(browser, body["user_code"])
    step = browser.get(entered.headers["Location"])
    assert step.status_code == 303 and "/login/step-up" in step.headers["Location"]
    # approving straight away skips nothing
    html = browser.get("/device").get_data(as_text=True)
    ix = entered.headers["Location"].split("ix=", 1)[1]
    from urllib.parse import unquote

    skipped = browser.post(
        "/device/confirm",
        data={"csrf_token": csrf_token(html), "ix": unquote(ix), "action": "approve"},
    )
    assert skipped.status_code == 303 and "/login/step-up" in skipped.headers["Location"]
    assert poll(client, tv, body["device_code"]).get_json()["error"] == "authorization_pending"
    challenge = browser.get(step.headers["Location"]).get_data(as_text=True)
    resp = submit(browser, challenge, "totp", code(secret))
    while resp.status_code in (302, 303) and "/device/confirm" not in resp.headers["Location"]:
        resp = browser.get(resp.headers["Location"])
    assert decide(browser, resp, "approve").status_code == 200
    tokens = poll(client, tv, body["device_code"]).get_json()
    assert jose_jwt.get_unverified_claims(tokens["id_token"])["acr"] == ACR_MFA


# ------------------------------------------------------------------ metadata and registration
def test_discovery_lists_the_endpoint_and_grant(client: FlaskClient) -> None:
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["device_authorization_endpoint"].endswith("/device_authorization")
    assert DEVICE_CODE in doc["grant_types_supported"]


def test_registration_accepts_the_grant(app: Flask) -> None:
    with app.extensions["yitong"].db.transaction() as session:
        row, _ = create_client(
            session,
            ClientSpec(name="Kiosk", public=True, grant_types=[DEVICE_CODE, "refresh_token"]),
            actor="test",
        )
        assert row.grant_types == [DEVICE_CODE, "refresh_token"] and row.response_types == []
        with pytest.raises(ClientRegistrationError):
            create_client(
                session, ClientSpec(name="x", grant_types=["refresh_token"]), actor="test"
            )


def test_checklist_25_device_code_redeemed_once_under_a_race(
    app: Flask, client: FlaskClient, tv: RegisteredClient, citizen: Citizen
) -> None:
    """Two polls that both found the request approved: the compare-and-set lets one through
    (a device code never gives two token sets, checklist 25 for device codes)."""
    from idp.interaction import decoupled
    from idp.storage.models import DeviceRequest, utcnow

    body = start(client, tv).get_json()
    browser, _ = sign_in(app, citizen)
    decide(browser, enter(browser, body["user_code"]), "approve")
    db = app.extensions["yitong"].db
    with app.app_context(), db.session() as first, db.session() as second:
        rows = [
            s.scalars(select(DeviceRequest).where(DeviceRequest.kind == "device")).one()
            for s in (first, second)
        ]
        assert all(r.status == "approved" for r in rows)  # both read it before either wrote
        assert decoupled.redeem_device(first, rows[0], utcnow()) is True
        first.commit()
        assert decoupled.redeem_device(second, rows[1], utcnow()) is False
        second.rollback()
    # and through the endpoint: the request is spent, nothing more is issued
    assert poll(client, tv, body["device_code"]).get_json()["error"] == "invalid_grant"
