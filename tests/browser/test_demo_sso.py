"""The demo's single sign-on in a real browser (issue 2, item 11).

The IdP, the portal and the service run as the separate processes ``yitong demo`` starts
(same code: :mod:`examples.launcher`), on ephemeral ports, with a temporary instance directory and
the run's test database.  Headless Chromium signs in at the portal, opens the service and
must arrive there signed in as the same ``sub`` without seeing a password field; logging out
of one relying party then signs the browser out of the other (back-channel logout).
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.launcher import DemoProcesses, start
from idp.demo import DemoLayout, DemoState, setup
from tests.conftest import _truncate
from tests.helpers import make_settings
from tests.services.browser import reset_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT = 20  # seconds for any page to arrive


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class LiveDemo:
    layout: DemoLayout
    state: DemoState
    procs: DemoProcesses

    def discovery(self) -> dict[str, Any]:
        url = self.layout.idp_url + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(60)}" for p in self.procs.all())


@pytest.fixture
def live_demo(database_url: str, tmp_path: Path, browser: Any) -> Iterator[LiveDemo]:
    """IdP + portal + service as live servers (browser first: no servers without Chromium)."""
    _truncate(database_url)
    idp_port, portal_port, service_port = _free_ports(3)
    layout = DemoLayout(idp_port=idp_port, portal_port=portal_port, service_port=service_port)
    settings = make_settings(
        database_url, tmp_path / "instance", env="development", issuer=layout.idp_url
    )
    state = setup(settings, layout)
    procs = start(settings, layout, state, echo=None, timeout=60)
    demo = LiveDemo(layout, state, procs)
    try:
        yield demo
    finally:
        procs.stop()


def _wait(browser: Any, predicate: Any, what: str, demo: LiveDemo) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT).until(predicate)
    except TimeoutException:
        raise AssertionError(
            f"timed out waiting for {what}; at {browser.current_url}\n"
            f"{browser.page_source[:2000]}\n{demo.logs()}"
        ) from None


def _present(css: str) -> Any:
    from selenium.webdriver.common.by import By

    def check(driver: Any) -> Any:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found else False

    return check


def _password_fields(browser: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, "input[type=password]"))


def _sign_in_at_portal(browser: Any, demo: LiveDemo) -> str:
    from selenium.webdriver.common.by import By

    browser.get(demo.state.portal.url + "/")
    _wait(browser, _present("#login-link"), "the portal's sign-in link", demo).click()
    _wait(browser, _present("#login-form"), "the IdP login page", demo)
    assert browser.current_url.startswith(demo.layout.idp_url + "/login")
    browser.find_element(By.ID, "login").send_keys(demo.state.citizen_login["email"])
    browser.find_element(By.ID, "password").send_keys(demo.state.password)
    browser.find_element(By.ID, "submit").click()
    # First-party portal: no consent page, straight back to the portal.
    _wait(browser, _present("#signed-in"), "the portal signed in", demo)
    assert browser.current_url.startswith(demo.state.portal.url)
    sub: str = browser.find_element(By.ID, "sub").text
    assert sub
    name = browser.find_element(By.ID, "user-name").text
    assert name == "王小明"
    return sub


def _open_service(browser: Any, demo: LiveDemo) -> str:
    """Follow the portal's link to the service; consent once if asked, never a password."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "peer-link").click()

    def arrived(driver: Any) -> str | bool:
        url = driver.current_url
        if url.startswith(demo.state.service.url) and driver.find_elements(By.ID, "signed-in"):
            return "service"
        if url.startswith(demo.layout.idp_url + "/consent") and driver.find_elements(
            By.ID, "approve"
        ):
            return "consent"
        if url.startswith(demo.layout.idp_url + "/login"):
            return "login"
        return False

    where = _wait(browser, arrived, "the service or the consent page", demo)
    assert where != "login", "the IdP asked for the password again"
    assert not _password_fields(browser)
    if where == "consent":
        browser.find_element(By.ID, "approve").click()
        _wait(browser, _present("#signed-in"), "the service signed in", demo)
    assert browser.current_url.startswith(demo.state.service.url)
    assert not _password_fields(browser)
    return str(browser.find_element(By.ID, "sub").text)


def test_sign_in_at_portal_then_service_without_password(browser: Any, live_demo: LiveDemo) -> None:
    reset_browser(browser)
    portal_sub = _sign_in_at_portal(browser, live_demo)
    service_sub = _open_service(browser, live_demo)
    assert service_sub == portal_sub

    # Consent is remembered: the service's next sign-in asks nothing at all.
    from selenium.webdriver.common.by import By

    # Cookies ignore ports, so the IdP's cookies live on this host too: drop only the service's.
    browser.delete_cookie("rp_service_session")
    browser.get(live_demo.state.service.url + "/login")
    _wait(browser, _present("#signed-in"), "the service signed in again", live_demo)
    assert browser.find_element(By.ID, "sub").text == portal_sub

    _qr_login_with_the_simulated_app(browser, live_demo, portal_sub)


def _qr_login_with_the_simulated_app(browser: Any, demo: LiveDemo, sub: str) -> None:
    """QR login (issue 13): Chromium, signed in at the portal, plays the government app
    (``/app``); a second, scripted browser shows the service's login page with the QR code
    and takes the session once the app approved."""
    import re

    import requests
    from selenium.webdriver.common.by import By

    desk = requests.Session()
    login = desk.get(demo.state.service.url + "/login", timeout=10)
    assert login.url.startswith(demo.layout.idp_url + "/login"), login.url
    # Reading the login page stores no QR request; its "Show a QR code" button does (the
    # path without script; the page's script posts the same form to /qr/new).
    form = {
        name: re.search(rf'name="{name}" value="([^"]*)"', login.text).group(1)  # type: ignore[union-attr]
        for name in ("csrf_token", "ix")
    }
    page = desk.post(demo.layout.idp_url + "/login/qr", data=form, timeout=10)
    link = re.search(r'href="([^"]+)" id="qr-link"', page.text)
    number = re.search(r'id="qr-number">(\d+)<', page.text)
    qr_id = re.search(r'name="qr_id" value="([^"]+)"', page.text)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    ix = re.search(r'name="ix" value="([^"]*)"', page.text)
    assert link and number and qr_id and csrf and ix, "no QR code on the login page"

    browser.get(demo.state.portal.url + "/app")
    _wait(browser, _present("#qr-link"), "the simulated app", demo).send_keys(link.group(1))
    browser.find_element(By.ID, "scan").click()
    _wait(browser, _present("#app-number"), "the app's approval screen", demo)
    assert browser.find_element(By.ID, "app-number").text == number.group(1)
    assert browser.find_element(By.ID, "app-warning").text
    browser.find_element(By.ID, "approve").click()
    assert _wait(browser, _present("#app-result"), "the app's answer", demo).text == "approved"

    status = desk.get(f"{demo.layout.idp_url}/qr/status/{qr_id.group(1)}", timeout=10).json()
    assert status["status"] == "approved"
    done = desk.post(
        demo.layout.idp_url + "/qr/complete",
        data={
            "csrf_token": csrf.group(1),
            "ix": ix.group(1).replace("&amp;", "&"),
            "qr_id": qr_id.group(1),
        },
        timeout=10,
    )
    # on to the service, signed in as the person who approved in the app
    assert done.url.startswith(demo.state.service.url), done.url
    assert f'id="sub">{sub}<' in done.text


def test_logout_at_service_signs_out_of_portal(browser: Any, live_demo: LiveDemo) -> None:
    if "end_session_endpoint" not in live_demo.discovery():
        pytest.skip("the IdP does not offer RP-initiated logout (end_session_endpoint) yet")
    from selenium.webdriver.common.by import By

    reset_browser(browser)
    _sign_in_at_portal(browser, live_demo)
    _open_service(browser, live_demo)

    browser.find_element(By.ID, "logout-link").click()

    def logged_out(driver: Any) -> bool:
        if driver.current_url.startswith(live_demo.state.service.url + "/logged-out"):
            return True
        # The IdP may ask to confirm the logout: confirm it.
        if driver.current_url.startswith(live_demo.layout.idp_url):
            buttons = driver.find_elements(
                By.CSS_SELECTOR,
                "form button[type=submit][value=yes], form#logout-form button[type=submit]",
            )
            if buttons:
                buttons[0].click()
        return False

    _wait(browser, logged_out, "the service's logged-out page", live_demo)

    # Back-channel logout reached the portal: its session is gone.
    def portal_signed_out(driver: Any) -> bool:
        driver.get(live_demo.state.portal.url + "/")
        return bool(driver.find_elements(By.ID, "signed-out"))

    _wait(browser, portal_signed_out, "the portal signed out", live_demo)
    # And the IdP's SSO session too: signing in at the portal asks for the password again.
    browser.find_element(By.ID, "login-link").click()
    _wait(browser, _present("#login-form"), "the IdP login page", live_demo)


def test_legal_person_login_at_the_service(browser: Any, live_demo: LiveDemo) -> None:
    """法人登录 in Chromium (issue 10): the agent names the demo company by its credit code,
    signs in with their own account and arrives at the service acting for the company."""
    from selenium.webdriver.common.by import By

    company = live_demo.state.company
    assert company is not None
    reset_browser(browser)
    browser.get(live_demo.state.service.url + "/")
    _wait(browser, _present("#login-link"), "the service's sign-in link", live_demo).click()
    _wait(browser, _present("#login-form"), "the IdP login page", live_demo)
    assert browser.find_element(By.ID, "mode-person").text == "个人登录"
    entry = browser.find_element(By.ID, "mode-entity")
    assert entry.text == "法人登录"
    entry.click()
    _wait(browser, _present("#entity-login-form"), "the legal-person login", live_demo)
    assert not browser.find_elements(By.ID, "login-form")  # one entry at a time

    def submit(code: str) -> None:
        for field, value in (
            ("credit_code", code),
            ("entity-login", company.agent.login["email"]),
            ("entity-password", company.agent.password),
        ):
            element = browser.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        browser.find_element(By.ID, "entity-submit").click()

    # A company the agent holds no mandate from: refused on the same page, no session.
    submit("91210202T1KLDHN475")
    error = _wait(browser, _present("#login-error"), "the refusal", live_demo)
    assert "法定代表人" in error.text
    assert browser.find_elements(By.ID, "entity-login-form")
    # The demo company: in, acting for it (consent first: the service is not first-party).
    submit(company.credit_code)

    def arrived(driver: Any) -> str | bool:
        if driver.find_elements(By.ID, "approve"):
            return "consent"
        if driver.current_url.startswith(live_demo.state.service.url) and driver.find_elements(
            By.ID, "signed-in"
        ):
            return "service"
        return False

    if _wait(browser, arrived, "the consent page or the service", live_demo) == "consent":
        released = browser.find_element(By.CSS_SELECTOR, '#released [data-claim="authority"]')
        assert company.name in released.text
        browser.find_element(By.ID, "approve").click()
        _wait(browser, _present("#signed-in"), "the service signed in", live_demo)
    authority = json.loads(
        browser.find_element(By.CSS_SELECTOR, '#id-claims td[data-claim="authority"]').text
    )
    assert authority["applies_to"] == {
        "registration_number": company.credit_code,
        "name": company.name,
    }
    assert authority["permission"]["role"] == company.role
    assert browser.find_element(By.ID, "sub").text  # the person is the subject
