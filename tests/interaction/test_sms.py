"""SMS one-time codes: the gateway adapter against a local HTTP server standing in for the
gateway, the development outbox, and SMS as a restricted second factor (single use, expiry,
rate limits per number and per address).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from adapters.base import AdapterConfigError, AdapterError, AdapterUnavailable
from adapters.sms import HttpSmsSender, OutboxSender
from idp.interaction.outbox import read_outbox
from idp.storage.models import AuditEvent, OneTimeCode, User
from tests.helpers import Flow, csrf_token
from tests.interaction.mfa_kit import (
    ACR_MFA,
    login_page_post,
    make_admin,
    page,
    services,
    session_row,
    set_policy,
    submit,
)


# ----------------------------------------------------------------------------- the gateway
class Gateway:
    """A local HTTP server standing in for the SMS gateway; records what it receives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.location: str | None = None
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                gateway.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                time.sleep(gateway.delay)
                self.send_response(gateway.status)
                if gateway.location:
                    self.send_header("Location", gateway.location)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def test_gateway_sender_posts_json_with_basic_credentials(gateway: Gateway) -> None:
    sender = HttpSmsSender(url=gateway.url, username="yt", password="pw", sender="YITONG")
    sender.send("+8613800000001", "Yitong code 123456")
    (got,) = gateway.received
    assert got["body"] == {"to": "+8613800000001", "text": "Yitong code 123456", "sender": "YITONG"}
    assert got["headers"]["Authorization"] == "Basic " + base64.b64encode(b"yt:pw").decode()


def test_gateway_sender_bearer_key(gateway: Gateway) -> None:
    HttpSmsSender(url=gateway.url, api_key="k-123").send("+8613800000001", "x")
    assert gateway.received[0]["headers"]["Authorization"] == "Bearer k-123"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, AdapterUnavailable),
        (503, AdapterUnavailable),
        (429, AdapterUnavailable),
        (400, AdapterError),
        (401, AdapterError),
    ],
)
def test_gateway_errors_map_to_adapter_errors(gateway: Gateway, status: int, error: type) -> None:
    gateway.status = status
    with pytest.raises(error):
        HttpSmsSender(url=gateway.url).send("+8613800000001", "x")


def test_gateway_redirects_are_not_followed(gateway: Gateway) -> None:
    gateway.status, gateway.location = 302, "http://evil.example/steal"
    with pytest.raises(AdapterError) as info:
        HttpSmsSender(url=gateway.url, username="yt", password="pw").send("+8613800000001", "x")
    assert not isinstance(info.value, AdapterUnavailable)
    assert len(gateway.received) == 1


def test_gateway_timeouts_are_bounded(gateway: Gateway) -> None:
    # The gateway answers after 2 s: only the 0.3 s read timeout makes this fail.
    gateway.delay = 2.0
    with pytest.raises(AdapterUnavailable):
        HttpSmsSender(url=gateway.url, connect_timeout=0.5, read_timeout=0.3).send(
            "+8613800000001", "x"
        )


def test_gateway_down_is_unavailable() -> None:
    with pytest.raises(AdapterUnavailable):
        HttpSmsSender(url="http://127.0.0.1:9/send", connect_timeout=0.5).send(
            "+8613800000001", "x"
        )


def test_gateway_configuration_is_checked() -> None:
    with pytest.raises(AdapterConfigError):
        HttpSmsSender.from_config({})
    with pytest.raises(AdapterConfigError):
        HttpSmsSender(url="ftp://gateway")
    with pytest.raises(AdapterError):
        HttpSmsSender(url="http://127.0.0.1:9/").send("not a number", "x")


def test_settings_choose_the_gateway_with_its_timeouts(make_app: Any, gateway: Gateway) -> None:
    app = make_app(
        sms_gateway_url=gateway.url,
        sms_gateway_username="u",
        sms_gateway_password="p",
        sms_connect_timeout_ms=700,
        sms_read_timeout_ms=900,
    )
    sender = services(app).sms_sender
    assert isinstance(sender, HttpSmsSender)
    assert (sender.url, sender.connect_timeout, sender.read_timeout) == (gateway.url, 0.7, 0.9)
    assert isinstance(services(make_app()).sms_sender, OutboxSender)


# ----------------------------------------------------------------------------- SMS as a factor
def _verified_phone(app: Flask, user_id: str) -> str:
    with services(app).db.transaction() as s:
        user = s.get(User, user_id)
        assert user is not None and user.phone
        user.phone_verified = True
        return user.phone


def _latest_code(app: Flask, phone: str) -> str:
    messages = read_outbox(services(app).db, destination=phone)
    assert messages, "no message in the outbox"
    m = re.search(r"\b(\d{6})\b", messages[-1].body)
    assert m
    return m.group(1)


def _sms_challenge(app: Flask, citizen: Any, rp: Any) -> tuple[Flow, str]:
    set_policy(app, "mfa.required_for", ["everyone"])
    flow = Flow(app.test_client(), rp)
    resp = flow.login(flow.authorize(), citizen.email, citizen.password)
    html = page(flow.http, resp)
    assert 'id="sms-section"' in html and 'id="totp-form"' not in html
    return flow, html


def test_sms_code_as_second_factor_single_use(app: Flask, citizen: Any, rp: Any) -> None:
    phone = _verified_phone(app, citizen.id)
    flow, html = _sms_challenge(app, citizen, rp)
    sent = submit(flow.http, html, "sms_send")
    assert sent.status_code == 200 and "****" in sent.get_data(as_text=True)
    the_code = _latest_code(app, phone)
    with services(app).db.session() as s:
        row = s.scalars(select(OneTimeCode).where(OneTimeCode.destination == phone)).first()
        assert row is not None and the_code not in row.digest  # stored as a keyed digest
        assert not any(the_code in str(e.details) for e in s.scalars(select(AuditEvent)))
    params = flow.follow_to_code(submit(flow.http, sent.get_data(as_text=True), "sms", the_code))
    assert "code" in params
    sso = session_row(app, citizen.id)
    assert sso is not None and sso.acr == ACR_MFA and sorted(sso.amr) == ["mfa", "pwd", "sms"]
    # Used once: a second login cannot reuse it.
    again = Flow(app.test_client(), rp)
    resp = again.login(again.authorize(), citizen.email, citizen.password)
    assert submit(again.http, page(again.http, resp), "sms", the_code).status_code == 401


def test_sms_codes_expire_and_burn_after_five_wrong_guesses(
    app: Flask, citizen: Any, rp: Any
) -> None:
    set_policy(app, "sms.interval", 0)
    set_policy(app, "mfa.max_attempts", 10)
    phone = _verified_phone(app, citizen.id)
    flow, html = _sms_challenge(app, citizen, rp)
    html = submit(flow.http, html, "sms_send").get_data(as_text=True)
    the_code = _latest_code(app, phone)
    with services(app).db.transaction() as s:
        s.execute(
            update(OneTimeCode).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    assert submit(flow.http, html, "sms", the_code).status_code == 401  # expired

    html = submit(flow.http, html, "sms_send").get_data(as_text=True)
    fresh = _latest_code(app, phone)
    wrong = f"{(int(fresh) + 1) % 1_000_000:06d}"
    for _ in range(5):
        html = submit(flow.http, html, "sms", wrong).get_data(as_text=True)
    assert submit(flow.http, html, "sms", fresh).status_code in (401, 429)  # burnt


def test_sms_sending_is_limited_per_number_and_per_address(
    app: Flask, citizen: Any, rp: Any
) -> None:
    _verified_phone(app, citizen.id)
    flow, html = _sms_challenge(app, citizen, rp)
    assert submit(flow.http, html, "sms_send").status_code == 200
    too_soon = submit(flow.http, html, "sms_send")
    assert too_soon.status_code == 429 and int(too_soon.headers["Retry-After"]) >= 50
    set_policy(app, "sms.interval", 0)
    set_policy(app, "sms.per_phone_per_hour", 2)
    assert submit(flow.http, html, "sms_send").status_code == 200
    per_hour = submit(flow.http, html, "sms_send")
    assert per_hour.status_code == 429 and int(per_hour.headers["Retry-After"]) > 60
    set_policy(app, "sms.per_phone_per_hour", 100)
    set_policy(app, "sms.per_ip_per_hour", 1)
    services(app).rate_limiter._local.clear()
    assert submit(flow.http, html, "sms_send").status_code == 200
    assert submit(flow.http, html, "sms_send").status_code == 429


def test_sms_is_not_a_factor_for_admins(app: Flask, citizen: Any, rp: Any) -> None:
    _verified_phone(app, citizen.id)
    make_admin(app, citizen.id, "security-admin")
    flow = Flow(app.test_client(), rp)
    resp = flow.login(flow.authorize(), citizen.email, citizen.password)
    html = page(flow.http, resp)
    assert 'id="sms-section"' not in html and 'id="enrol-required"' in html


def test_gateway_failure_at_send_is_a_clean_message(
    make_app: Any, citizen_factory: Any = None
) -> None:
    from tests.helpers import Citizen, RegisteredClient

    app = make_app(sms_gateway_url="http://127.0.0.1:9/send", sms_connect_timeout_ms=300)
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app)
    _verified_phone(app, citizen.id)
    flow, html = _sms_challenge(app, citizen, rp)
    resp = submit(flow.http, html, "sms_send")
    assert resp.status_code == 503 and 'id="mfa-error"' in resp.get_data(as_text=True)


# ----------------------------------------------------------------------------- item 68: phone
def test_item68_changing_the_phone_needs_recent_authentication_and_a_code(
    app: Flask, citizen: Any
) -> None:
    client = app.test_client()
    login_page_post(client, citizen.email, citizen.password)
    with services(app).db.transaction() as s:  # the session is now 20 minutes old
        sso = session_row(app, citizen.id)
        assert sso is not None
        from idp.storage.models import SsoSession

        s.execute(
            update(SsoSession)
            .where(SsoSession.id == sso.id)
            .values(auth_time=sso.auth_time - dt.timedelta(minutes=20))
        )
    html = client.get("/account/security").get_data(as_text=True)
    resp = client.post(
        "/account/security/phone", data={"csrf_token": csrf_token(html), "phone": "13912345678"}
    )
    assert resp.status_code == 303 and "/account/security/reauth" in resp.headers["Location"]
    assert not read_outbox(services(app).db, destination="+8613912345678")

    reauth = client.get(resp.headers["Location"]).get_data(as_text=True)
    ok = client.post(
        "/account/security/reauth",
        data={
            "csrf_token": csrf_token(reauth),
            "password": citizen.password,
            "next": "/account/security",
        },
    )
    assert ok.status_code == 303
    sent = client.post(
        "/account/security/phone", data={"csrf_token": csrf_token(html), "phone": "13912345678"}
    )
    assert sent.status_code == 200
    the_code = _latest_code(app, "+8613912345678")
    done = client.post(
        "/account/security/phone/verify", data={"csrf_token": csrf_token(html), "code": the_code}
    )
    assert done.status_code == 303
    with services(app).db.session() as s:
        user = s.get(User, citizen.id)
        assert user is not None and user.phone == "+8613912345678" and user.phone_verified
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.phone_change")
        ).first()
        assert event is not None and "13912345678" not in json.dumps(event.details)
