"""The admin console in real headless Chromium (issue 11): each administrator signs in with a
password and an authenticator-app code (the admin level), then works through their task:

- the department admin registers a client and receives its secret once;
- the security admin sees it pending on the dashboard, approves it and reads the audit trail;
- the helpdesk agent finds a person by the masked ID number and resets their second factor,
  and is refused the keys page.

Screenshots of the pages are written to ``docs/images/console-*.png``, which
``docs/admin.md`` shows: `make screenshots` regenerates them.  Browser pages are not
storage-specific, so this runs on SQLite only (the same flows run on both databases through
the Flask test client in ``tests/admin/test_console_flows.py``).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.admin.console_support import admin_account
from tests.helpers import PASSWORD, Citizen
from tests.interaction.mfa_kit import code, enrol_totp
from tests.services.browser import reset_browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("YITONG_TEST_DB") == "postgres",
        reason="browser pages are not storage-specific; these run on SQLite",
    ),
]

WAIT = 20
DOCS = Path(__file__).resolve().parents[2] / "docs"
# `make screenshots` refreshes docs/images; a plain run writes aside (tracked files stay put).
SHOTS = (
    DOCS / "images"
    if os.environ.get("YITONG_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "yitong-console-images"
)


@dataclass
class Live:
    app: Flask
    url: str
    server: BaseWSGIServer


@pytest.fixture
def live(make_app: Any) -> Iterator[Live]:
    server = make_server("127.0.0.1", 0, lambda environ, start: [], threaded=True)
    app = make_app(
        issuer=f"http://localhost:{server.server_port}", rate_limit_login_per_minute=1000
    )
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(app, f"http://localhost:{server.server_port}", server)
    finally:
        server.shutdown()
        server.server_close()


def _wait(browser: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; at {browser.current_url}") from None


def _sign_in(browser: Any, live: Live, email: str, totp_secret: str) -> None:
    """Password, then the authenticator-app code: the admin level."""
    from selenium.webdriver.common.by import By

    reset_browser(browser)
    browser.get(live.url + "/login")
    browser.find_element(By.ID, "login").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "submit").click()
    box = _wait(browser, lambda d: d.find_elements(By.ID, "totp-code"), "the code step")[0]
    box.send_keys(code(totp_secret))
    browser.find_element(By.ID, "totp-submit").click()
    _wait(browser, lambda d: "/account" in d.current_url, "the account page")
    browser.get(live.url + "/admin/")
    _wait(browser, lambda d: d.find_elements(By.ID, "console-who"), "the console")


def _shot(browser: Any, name: str) -> None:
    """A screenshot of the whole page for docs/admin.md."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(700, min(int(height) + 40, 2400)))
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SHOTS / f"console-{name}.png"))
    browser.set_window_size(1280, 900)


def _admin(app: Flask, roles: list[str], departments: tuple[str, ...] = ()) -> tuple[str, str]:
    from idp.storage.models import User

    user_id = admin_account(app, roles, departments)
    with app.extensions["yitong"].db.session() as session:
        user = session.get(User, user_id)
        assert user is not None and user.email
        email = user.email
    return email, enrol_totp(app, user_id)


def test_console_tasks_of_three_administrators(browser: Any, live: Live) -> None:
    from selenium.webdriver.common.by import By

    app = live.app
    department = _admin(app, ["department-admin"], ("social",))
    security = _admin(app, ["security-admin"])
    helpdesk = _admin(app, ["helpdesk"])
    person = Citizen.create(app)

    # The department admin registers a client: pending, its secret shown once.
    _sign_in(browser, live, *department)
    browser.get(live.url + "/admin/clients/new")
    form = browser.find_element(By.ID, "client-form")
    form.find_element(By.NAME, "client_name").send_keys("养老金查询")
    form.find_element(By.NAME, "client_name_en").send_keys("Pension enquiry")
    form.find_element(By.NAME, "purpose").send_keys("退休人员查询养老金发放记录")
    form.find_element(By.NAME, "redirect_uris").send_keys("https://pension.social.gov.example/cb")
    form.find_element(By.CSS_SELECTOR, "input[name=claims][value=name]").click()
    _shot(browser, "register")
    browser.find_element(By.ID, "client-submit").click()
    secret = _wait(browser, lambda d: d.find_elements(By.ID, "client-secret"), "the secret")[0]
    assert len(secret.text) >= 43
    client_id = browser.find_element(By.ID, "client-id").text
    _shot(browser, "secret")

    # The security admin approves it from the dashboard.
    _sign_in(browser, live, *security)
    pending = browser.find_element(By.ID, "pending")
    assert "养老金查询" in pending.text
    _shot(browser, "dashboard")
    pending.find_element(By.LINK_TEXT, "养老金查询").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "approve"), "the client page")
    assert "Pension enquiry" in browser.page_source and client_id in browser.page_source
    _shot(browser, "approve")
    browser.find_element(By.ID, "approve").click()
    notice = _wait(browser, lambda d: d.find_elements(By.ID, "notice"), "the notice")[0]
    assert notice.text == "客户端已批准。"
    assert browser.find_element(By.ID, "client-status").text == "已批准"
    browser.get(live.url + "/admin/audit?action=client.")
    assert browser.find_element(By.ID, "chain").get_attribute("class") == "ok"
    assert "client.status" in browser.find_element(By.ID, "audit-events").text
    _shot(browser, "audit")

    # The helpdesk agent finds the caller by the masked ID number and resets the factor.
    _sign_in(browser, live, *helpdesk)
    masked = person.id_number[:4] + "*" * 10 + person.id_number[-4:]
    browser.get(live.url + "/admin/people")
    box = browser.find_element(By.NAME, "q")
    box.send_keys(masked)
    box.submit()
    row = _wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-user="{person.id}"]'),
        "the person",
    )[0]
    assert person.id_number not in browser.page_source
    _shot(browser, "people")
    row.find_element(By.TAG_NAME, "a").click()
    reason = _wait(browser, lambda d: d.find_elements(By.NAME, "reason"), "the person page")[0]
    reason.send_keys("本人持身份证到窗口办理")
    browser.find_element(By.ID, "reset-mfa").click()
    notice = _wait(browser, lambda d: d.find_elements(By.ID, "notice"), "the notice")[0]
    assert "原因已记录" in notice.text
    browser.get(live.url + "/admin/keys")
    assert browser.find_element(By.ID, "console-error").text == "您的角色或所属部门不允许此操作。"
    assert not browser.find_elements(By.ID, "nav-keys")

    # docs/admin.md shows every screenshot this test takes.
    guide = (DOCS / "admin.md").read_text(encoding="utf-8")
    for name in ("register", "secret", "dashboard", "approve", "audit", "people"):
        assert f"(images/console-{name}.png)" in guide, name
