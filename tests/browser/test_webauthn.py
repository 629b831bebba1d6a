"""WebAuthn in a real browser: headless Chromium with its virtual authenticator (DevTools
``WebAuthn`` domain), against the IdP served on an ephemeral port (issue 5, item 3).

The authenticator is a CTAP2 "USB security key" with resident keys and user verification, so
the same credential serves as a second factor after the password and as a passkey alone.
``http://localhost`` is a secure context, so no TLS is needed.  The IdP runs in this process
(werkzeug's threaded server) with issuer ``http://localhost:<port>``; tokens are redeemed with
the Flask test client of the same app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.helpers import Citizen, Flow, RegisteredClient
from tests.services.browser import reset_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT = 20


@dataclass
class LiveIdp:
    app: Flask
    url: str
    server: BaseWSGIServer


@pytest.fixture
def live_idp(make_app: Any) -> Iterator[LiveIdp]:
    """The app on 127.0.0.1:<ephemeral>, its issuer ``http://localhost:<port>``."""
    server = make_server("127.0.0.1", 0, lambda environ, start: [], threaded=True)
    port = server.server_port
    app = make_app(issuer=f"http://localhost:{port}", rate_limit_login_per_minute=1000)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveIdp(app, f"http://localhost:{port}", server)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def authenticator(browser: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A virtual CTAP2 authenticator with resident keys and user verification: a USB security
    key by default, or (indirect parameter ``"internal"``) a platform authenticator."""
    transport = getattr(request, "param", "usb")
    reset_browser(browser)
    browser.execute_cdp_cmd("WebAuthn.enable", {"enableUI": False})
    created = browser.execute_cdp_cmd(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": transport,
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    auth_id = created["authenticatorId"]
    try:
        yield auth_id
    finally:
        browser.execute_cdp_cmd("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": auth_id})
        browser.execute_cdp_cmd("WebAuthn.disable", {})


def _wait(browser: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT).until(condition)
    except TimeoutException:
        status = browser.execute_script(
            "var e=document.getElementById('webauthn-status');return e?e.textContent:'';"
        )
        raise AssertionError(
            f"timed out waiting for {what}; at {browser.current_url}; status={status!r}"
        ) from None


def _password_login(browser: Any, citizen: Citizen) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "login").send_keys(citizen.email)
    browser.find_element(By.ID, "password").send_keys(citizen.password)
    browser.find_element(By.ID, "submit").click()


def _code_from(browser: Any, rp: RegisteredClient) -> dict[str, str]:
    _wait(
        browser, lambda d: d.current_url.startswith(rp.redirect_uri), "the redirect to the client"
    )
    return {k: v[0] for k, v in parse_qs(urlsplit(browser.current_url).query).items()}


def _id_token(live: LiveIdp, flow: Flow, code: str) -> dict[str, Any]:
    from jose import jwt as jose_jwt

    resp = flow.token(code)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    jwks = flow.http.get("/jwks").get_json()
    header = jose_jwt.get_unverified_header(body["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jose_jwt.decode(
        body["id_token"],
        key,
        algorithms=[header["alg"]],
        audience=flow.rp.client_id,
        issuer=live.url,
        access_token=body["access_token"],
    )


def _register_key(browser: Any, live: LiveIdp, citizen: Citizen) -> None:
    from selenium.webdriver.common.by import By

    browser.get(live.url + "/login")
    _password_login(browser, citizen)
    _wait(browser, lambda d: "/account" in d.current_url, "the account page")
    browser.get(live.url + "/account/security")
    name = browser.find_element(By.ID, "webauthn-name")
    name.clear()
    name.send_keys("Test key")
    browser.find_element(By.ID, "webauthn-register").click()
    _wait(browser, lambda d: "done=1" in d.current_url, "the registration to finish")
    listed = browser.find_element(By.ID, "webauthn-list").text
    assert "Test key" in listed


def test_register_a_key_then_use_it_as_second_factor_and_as_a_passkey(
    browser: Any, authenticator: str, live_idp: LiveIdp
) -> None:
    from selenium.webdriver.common.by import By

    app = live_idp.app
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app, redirect_uris=[live_idp.url + "/cb"])
    _register_key(browser, live_idp, citizen)
    creds = browser.execute_cdp_cmd("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(creds["credentials"]) == 1 and creds["credentials"][0]["isResidentCredential"]

    # Second factor: password, then the key; the RP asked for phishing resistance.
    reset_browser(browser)
    flow = Flow(app.test_client(), rp)
    params = flow.params(acr_values="urn:yitong:acr:phr")
    browser.get(live_idp.url + "/authorize?" + "&".join(f"{k}={v}" for k, v in params.items()))
    _wait(browser, lambda d: "/login" in d.current_url, "the login page")
    _password_login(browser, citizen)
    _wait(browser, lambda d: "/login/mfa" in d.current_url, "the second-factor page")
    assert not browser.find_elements(By.ID, "totp-form")  # phr: only the key is offered
    browser.find_element(By.ID, "webauthn-mfa").click()
    _wait(browser, lambda d: "/consent" in d.current_url, "the consent page")
    browser.find_element(By.ID, "approve").click()
    got = _code_from(browser, rp)
    assert got["state"] == flow.state
    claims = _id_token(live_idp, flow, got["code"])
    assert claims["acr"] == "urn:yitong:acr:phr"
    assert sorted(claims["amr"]) == ["hwk", "mfa", "pwd"]

    # Passkey alone: no password at all, user verification on the key.
    reset_browser(browser)
    flow = Flow(app.test_client(), rp)
    browser.get(
        live_idp.url + "/authorize?" + "&".join(f"{k}={v}" for k, v in flow.params().items())
    )
    _wait(browser, lambda d: "/login" in d.current_url, "the login page")
    browser.find_element(By.ID, "passkey-login").click()
    got = _code_from(browser, rp)
    claims = _id_token(live_idp, flow, got["code"])
    assert claims["sub"] == citizen.id
    assert claims["acr"] == "urn:yitong:acr:phr" and sorted(claims["amr"]) == ["hwk", "mfa"]
    counts = browser.execute_cdp_cmd("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert counts["credentials"][0]["signCount"] >= 2


def test_the_key_does_not_work_for_another_origin(
    browser: Any, authenticator: str, live_idp: LiveIdp
) -> None:
    """Phishing resistance: the same server under another origin gets nothing from the key."""
    from selenium.webdriver.common.by import By

    citizen = Citizen.create(live_idp.app)
    _register_key(browser, live_idp, citizen)
    reset_browser(browser)
    port = live_idp.server.server_port
    browser.get(f"http://127.0.0.1:{port}/login")  # another origin, same server
    browser.find_element(By.ID, "passkey-login").click()
    _wait(
        browser,
        lambda d: (
            d.execute_script(
                "var e=document.getElementById('webauthn-status');return e&&e.getAttribute('data-done');"
            )
            == "error"
        ),
        "the refusal",
    )
    assert "/login" in browser.current_url
    assert browser.get_cookie("yitong_sso") is None


@pytest.mark.parametrize("authenticator", ["internal"], indirect=True)
def test_a_platform_authenticator_registers_and_signs_in_as_a_passkey(
    browser: Any, authenticator: str, live_idp: LiveIdp
) -> None:
    from selenium.webdriver.common.by import By
    from sqlalchemy import select

    from idp.storage.models import WebAuthnCredential

    app = live_idp.app
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app, redirect_uris=[live_idp.url + "/cb"], first_party=True)
    _register_key(browser, live_idp, citizen)
    with app.extensions["yitong"].db.session() as s:
        row = s.scalars(select(WebAuthnCredential)).one()
        assert row.user_id == citizen.id and "internal" in row.transports
    reset_browser(browser)
    flow = Flow(app.test_client(), rp)
    browser.get(
        live_idp.url + "/authorize?" + "&".join(f"{k}={v}" for k, v in flow.params().items())
    )
    _wait(browser, lambda d: "/login" in d.current_url, "the login page")
    browser.find_element(By.ID, "passkey-login").click()
    claims = _id_token(live_idp, flow, _code_from(browser, rp)["code"])
    assert claims["sub"] == citizen.id and claims["acr"] == "urn:yitong:acr:phr"
