"""Every page in real headless Chromium: WCAG 2.1 AA by axe-core, language, phone layout,
elder-friendly mode (issue 15 items 6 and 7; docs/accessibility.md).

One browser, one live IdP; each page of :data:`tests.browser.pages.PAGES` is loaded in three
modes that together show each language (Chinese, English) at both widths (desktop 1280 px,
phone 360 px) and each display (standard, elder-friendly) in Chinese.  axe-core is put into
every document by the browser itself (``Page.addScriptToEvaluateOnNewDocument``), so it is
sent once, not per load.  After each load, in one script round each: axe-core (``tests/data/axe-core/axe.min.js``, WCAG 2.0/2.1 A and AA rules) must
find no serious or critical violation; a Chinese page must show no English (the rule of
``tests/test_page_language.py``); at 360 px the page must not scroll sideways; every input's
text is at least 16 px; the elder-mode switch is on the page and the mode is the one asked
for.  The main pages are photographed in both modes into ``docs/screenshots``.

Not storage specific, so it runs on SQLite only.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from werkzeug.serving import make_server

from idp.storage.models import utcnow
from tests.browser.pages import PAGES, Page, Site
from tests.helpers import Citizen, RegisteredClient, pkce_pair
from tests.services.browser import reset_browser
from tests.test_page_language import english_words

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("YITONG_TEST_DB", "sqlite") != "sqlite",
        reason="pages are not storage specific: checked once, on SQLite",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "data" / "axe-core" / "axe.min.js"
# `make screenshots` refreshes the documentation's pictures; a plain run writes them aside, so
# running the tests never changes tracked files.
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("YITONG_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "yitong-screenshots"
)
WAIT = 20
PHONE = 360
DESKTOP = 1280
#: (language cookie, display cookie, width): both languages at both widths, both displays in
#: Chinese, the elder mode at the narrowest width (its larger text is likeliest to overflow).
MODES = (
    ("zh_CN", "standard", DESKTOP),
    ("zh_CN", "elder", PHONE),
    ("en", "standard", PHONE),
)
#: The mode photographed for each display: Chinese, standard on a desktop, elder on a phone.
PHOTOGRAPHED = {("zh_CN", "standard", DESKTOP): "standard", ("zh_CN", "elder", PHONE): "elder"}

AXE_RUN = """
var done = arguments[arguments.length - 1];
axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
  resultTypes: ['violations']
}).then(function (r) {
  done(r.violations.filter(function (v) {
    return v.impact === 'serious' || v.impact === 'critical';
  }).map(function (v) {
    return v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
      v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); }).join(', ');
  }));
}).catch(function (e) { done(['axe failed: ' + e]); });
"""

PROBE = """
var skip = '[lang^="en"],[translate="no"],script,style,code,noscript,template';
var texts = [document.title];
var walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walk.nextNode()) {
  var parent = walk.currentNode.parentElement;
  if (parent && !parent.closest(skip)) { texts.push(walk.currentNode.nodeValue); }
}
document.querySelectorAll('[aria-label],[title],[placeholder],[alt]').forEach(function (e) {
  if (e.closest(skip)) { return; }
  ['aria-label', 'title', 'placeholder', 'alt'].forEach(function (a) {
    if (e.hasAttribute(a)) { texts.push(e.getAttribute(a)); }
  });
});
var small = [];
document.querySelectorAll('input:not([type=hidden]),select,textarea').forEach(function (e) {
  var size = parseFloat(getComputedStyle(e).fontSize);
  if (e.getClientRects().length && size < 16) { small.push((e.id || e.name) + ': ' + size + 'px'); }
});
return {
  text: texts.join('\\n'),
  lang: document.documentElement.lang,
  elder: document.documentElement.classList.contains('elder'),
  switch: !!document.getElementById('display-switch'),
  scrollWidth: document.documentElement.scrollWidth,
  small: small,
  path: location.pathname
};
"""


def _states(app: Any, citizen: Citizen) -> dict[str, str]:
    """The accounts and objects the state pages need; the values their paths are filled from."""
    from admin.services import OPERATOR, add_department
    from idp.storage.models import User
    from tests.admin.console_support import admin_account
    from tests.entities import kit
    from tests.interaction.mfa_kit import enrol_totp

    with_totp = Citizen.create(app, name="李四")  # signs in with a second factor
    enrol_totp(app, with_totp.id)
    closing = Citizen.create(app, name="王五")  # being closed, with a second factor
    enrol_totp(app, closing.id)
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        row = session.get(User, closing.id)
        assert row is not None
        row.status = "closing"
        row.close_after = utcnow() + dt.timedelta(days=3)
    entity, rep, _code = kit.company(app)  # the citizen holds a mandate of a company
    kit.mandate(app, entity.id, rep.id, citizen.id)
    with services.db.transaction() as session:  # a department named as a real one is
        add_department(session, "social", "社会保障局", OPERATOR)
    admin_id = admin_account(
        app, ["security-admin", "helpdesk", "auditor", "department-admin"], ("social",)
    )
    with services.db.session() as session:
        admin = session.get(User, admin_id)
        assert admin is not None and admin.email
        admin_email = admin.email
    return {
        "mfa_login": with_totp.email,
        "closing_login": closing.email,
        "admin_login": admin_email,
        "admin_totp": enrol_totp(app, admin_id),
        "id_number": citizen.id_number,
        "user_id": citizen.id,
    }


def _authorize_query(rp: RegisteredClient, scope: str) -> str:
    _verifier, challenge = pkce_pair()
    return urlencode(
        {
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": rp.redirect_uri,
            "scope": scope,
            "state": "s",
            "nonce": "n",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )


@pytest.fixture
def site(make_app: Any) -> Iterator[Site]:
    """The IdP on 127.0.0.1:<ephemeral> as ``http://localhost:<port>``, a citizen, a service,
    and what the state pages need (:func:`_states`)."""
    from idp.interaction.outbox import read_outbox

    server = make_server("127.0.0.1", 0, lambda environ, start: [], threaded=True)
    port = server.server_port
    app = make_app(issuer=f"http://localhost:{port}", rate_limit_login_per_minute=1000)
    server.app = app
    citizen = Citizen.create(app, name="张三")
    rp = RegisteredClient.create(app, name="社会保障服务", scopes=["openid", "profile", "phone"])
    firms = RegisteredClient.create(
        app, name="企业办事服务", scopes=["openid", "profile", "entity"]
    )
    db = app.extensions["yitong"].db
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(
            f"http://localhost:{port}",
            {
                "authorize": _authorize_query(rp, "openid profile phone"),
                "authorize_entity": _authorize_query(firms, "openid profile entity"),
                "client_id": rp.client_id,
                "login": citizen.email,
                "password": citizen.password,
                **_states(app, citizen),
            },
            mail=lambda to: [m.body for m in read_outbox(db, destination=to or None, limit=500)],
        )
    finally:
        server.shutdown()
        server.server_close()


def _mode(browser: Any, site: Site, lang: str, display: str, width: int) -> None:
    for name, value in (("yitong_lang", lang), ("yitong_display", display)):
        browser.execute_cdp_cmd(
            "Network.setCookie", {"name": name, "value": value, "url": site.url, "path": "/"}
        )
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width == PHONE},
    )


def _sign_in(browser: Any, site: Site, *, admin: bool = False) -> None:
    """The test citizen with a password; the administrator with its authenticator code too."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.interaction.mfa_kit import code

    reset_browser(browser)
    browser.get(site.url + "/login")
    browser.find_element(By.ID, "login").send_keys(site.values["admin_login" if admin else "login"])
    browser.find_element(By.ID, "password").send_keys(site.values["password"])
    browser.find_element(By.ID, "submit").click()
    if admin:
        box = WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "totp-code"))
        box[0].send_keys(code(site.values["admin_totp"]))
        browser.find_element(By.ID, "totp-submit").click()
    WebDriverWait(browser, WAIT).until(lambda d: "/account" in d.current_url)


def _photograph(browser: Any, page: Page, display: str) -> None:
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{page.name}-{display}.png").write_bytes(base64.b64decode(shot["data"]))


def _check(browser: Any, site: Site, page: Page) -> list[str]:
    """Load ``page`` in every mode; the problems found, each naming page and mode."""
    problems: list[str] = []
    for lang, display, width in MODES:
        where = f"{page.name} [{lang}, {display}, {width}px]"
        _mode(browser, site, lang, display, width)
        browser.get(page.url(site))
        if page.reach is not None:
            page.reach(browser, site)
        problems += [f"{where}: {v}" for v in browser.execute_async_script(AXE_RUN)]
        seen = browser.execute_script(PROBE)
        if page.lands is not None and not seen["path"].startswith(page.lands):
            problems.append(f"{where}: reached {seen['path']}, not {page.lands}")
        if lang == "zh_CN":
            words = english_words(seen["text"])
            if seen["lang"] != "zh-CN" or words:
                problems.append(f"{where}: English on a Chinese page: {words[:12]}")
        elif seen["lang"] != "en":
            problems.append(f"{where}: lang={seen['lang']!r} on an English page")
        if width == PHONE and seen["scrollWidth"] > PHONE:
            problems.append(f"{where}: scrolls sideways ({seen['scrollWidth']}px wide)")
        if seen["small"]:
            problems.append(f"{where}: input text under 16px: {seen['small']}")
        if not seen["switch"] or seen["elder"] != (display == "elder"):
            problems.append(f"{where}: elder-mode switch missing or mode not applied")
        if page.shot and (lang, display, width) in PHOTOGRAPHED:
            _photograph(browser, page, PHOTOGRAPHED[(lang, display, width)])
    return problems


def test_every_page_is_accessible_in_both_languages_and_modes(browser: Any, site: Site) -> None:
    reset_browser(browser)
    injected = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": AXE.read_text("utf-8")}
    )
    problems: list[str] = []
    who = "nobody"
    for page in sorted(PAGES, key=lambda p: (p.signed_in, p.admin)):
        wanted = "admin" if page.admin else "citizen" if page.signed_in else "nobody"
        if wanted != who:
            _sign_in(browser, site, admin=page.admin)
            who = wanted
        problems += _check(browser, site, page)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.execute_cdp_cmd(
        "Page.removeScriptToEvaluateOnNewDocument", {"identifier": injected["identifier"]}
    )
    assert not problems, "\n".join(problems)


def test_elder_mode_switch_and_translated_passkey_errors(browser: Any, site: Site) -> None:
    """The switch turns the mode on and the browser remembers it; a passkey the person
    cancels is explained in the page's language, never in the browser's English."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reset_browser(browser)
    browser.get(site.url + "/login")
    assert browser.execute_script("return document.documentElement.className") == ""
    browser.find_element(By.ID, "display-switch").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return document.documentElement.classList.contains('elder')")
    )
    browser.get(site.url + "/register")  # remembered by this browser (cookie)
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("class") == "elder"
    assert browser.find_element(By.ID, "display-switch").get_attribute("aria-pressed") == "true"
    size = browser.execute_script(
        "return parseFloat(getComputedStyle(document.getElementById('name')).fontSize)"
    )
    assert size >= 20  # larger text than the standard 16 px

    browser.get(site.url + "/login")
    browser.execute_script(
        "navigator.credentials.get = function () {"
        "  return Promise.reject(new DOMException('The operation either timed out or was "
        "not allowed.', 'NotAllowedError')); };"
    )
    browser.find_element(By.ID, "passkey-login").click()
    status = WebDriverWait(browser, WAIT).until(
        lambda d: (
            d.find_element(By.ID, "webauthn-status").get_attribute("data-done") == "error"
            and d.find_element(By.ID, "webauthn-status").text
        )
    )
    assert "取消" in status and not english_words(status), status
