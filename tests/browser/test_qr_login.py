"""QR-code login in real headless Chromium (issue 13 item 4): the login page shows the code,
a scripted government app decides, the page follows without reloading (its status line is an
``aria-live`` region) and, once approved, continues the authorization request.

Not storage-specific (the HTTP tests in tests/interaction/test_qr_login.py cover both
databases), so it runs on SQLite only.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.browser.test_webauthn import LiveIdp, _code_from, _wait, live_idp  # noqa: F401
from tests.helpers import Citizen, Flow, RegisteredClient
from tests.interaction.test_qr_login import app_token, decide, scan
from tests.services.browser import reset_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _page_state(browser: Any) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    link = browser.find_element(By.ID, "qr-link").get_attribute("href")
    return {
        "code": link.rsplit("/", 1)[1],
        "number": browser.find_element(By.ID, "qr-number").text,
    }


@pytest.mark.skipif(
    os.environ.get("YITONG_TEST_DB", "sqlite") != "sqlite",
    reason="browser behaviour is not storage-specific; run on SQLite only",
)
def test_qr_login_denied_then_approved(browser: Any, live_idp: LiveIdp) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    app = live_idp.app
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app, redirect_uris=[live_idp.url + "/cb"], first_party=True)
    reset_browser(browser)
    flow = Flow(app.test_client(), rp)
    query = "&".join(f"{k}={v}" for k, v in flow.params().items())
    browser.get(f"{live_idp.url}/authorize?{query}")
    _wait(browser, lambda d: "/login" in d.current_url, "the login page")

    # Reading the page stored nothing: its script asked for the code (POST /qr/new).
    # What a screen reader and a keyboard meet: a labelled image, a polite live status line,
    # and the continue button next in the tab order after the phone link.
    figure = _wait(browser, lambda d: d.find_element(By.ID, "qr-image"), "the QR code")
    assert figure.get_attribute("role") == "img" and figure.get_attribute("aria-label")
    assert figure.find_elements(By.CSS_SELECTOR, "svg path")
    status = browser.find_element(By.ID, "qr-status")
    assert status.get_attribute("aria-live") == "polite"
    assert status.get_attribute("role") == "status"
    browser.find_element(By.ID, "qr-link").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "qr-continue"

    phone, token = app.test_client(), app_token(app, citizen)
    first = _page_state(browser)
    assert scan(phone, token, first["code"]).get_json()["matching_number"] == first["number"]
    assert decide(phone, token, first["code"], "deny", None).status_code == 200
    _wait(
        browser,
        lambda d: d.find_element(By.ID, "qr-status").get_attribute("data-state") == "denied",
        "the page to hear of the denial",
    )
    assert "/login" in browser.current_url  # no reload, no session
    # focus moves to "show a new code"; Enter there shows a fresh code
    assert browser.switch_to.active_element.get_attribute("id") == "qr-refresh"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    _wait(
        browser,
        lambda d: _page_state(d)["code"] != first["code"],
        "a new QR code",
    )

    second = _page_state(browser)
    assert scan(phone, token, second["code"]).status_code == 200
    assert decide(phone, token, second["code"], "approve", second["number"]).status_code == 200
    params = _code_from(browser, rp)  # the page continued the authorization by itself
    assert params["state"] == flow.state
    tokens = flow.token(params["code"]).get_json()
    assert "id_token" in tokens, tokens
