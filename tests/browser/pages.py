"""Every page a person can reach, for the page-wide checks (accessibility, language, layout).

A page is a path on the live IdP, opened signed out or signed in as the test citizen; a
``{placeholder}`` is filled from :class:`Site` (``{authorize}`` is the query of a valid
authorization request of the test service, so ``/authorize?{authorize}`` lands on the login
page signed out and on the consent page signed in).  A state no URL reaches (a form sent with
mistakes, a login half done, a page a button leads to) names a ``reach`` step run after the
page loaded; it may read the development outbox (``Site.mail``) for a link.  Pages are
checked signed out first, then signed in as the test citizen, then as an administrator
(password and authenticator-app code: the console's level).  A new page is one line here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Site:
    """What paths are filled from."""

    url: str
    values: dict[str, str]
    #: The development outbox: the messages sent to an address or number, oldest first.
    mail: Callable[[str], list[str]] = field(default=lambda _to: [])


def _register_with_mistakes(driver: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "id_number").send_keys("210202197806263287")
    driver.find_element(By.ID, "phone").send_keys("12345")
    driver.find_element(By.ID, "password").send_keys("short")
    _press(driver, driver.find_element(By.CSS_SELECTOR, "#register-form button[type=submit]"))


def _press(driver: Any, button: Any) -> None:
    """Click and wait for the next page: a click returns before the form's answer arrives."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def gone(_driver: Any) -> bool:
        try:  # Chromium reports a node of the page left behind as stale or as not found
            button.is_enabled()
        except WebDriverException:
            return True
        return False

    button.click()
    WebDriverWait(driver, 20).until(gone)


def _submit(driver: Any, form: str, **fields: str) -> None:
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        box = driver.find_element(By.CSS_SELECTOR, f"#{form} [name={name}]")
        box.clear()
        box.send_keys(value)
    _press(driver, driver.find_element(By.CSS_SELECTOR, f"#{form} button[type=submit]"))


def _password_login(who: str) -> Callable[[Any, Site], None]:
    """The login form sent with the password of ``who`` (the next step is the page)."""

    def reach(driver: Any, site: Site) -> None:
        from selenium.webdriver.common.by import By

        driver.find_element(By.ID, "login").send_keys(site.values[f"{who}_login"])
        driver.find_element(By.ID, "password").send_keys(site.values["password"])
        _press(driver, driver.find_element(By.ID, "submit"))

    return reach


def _follow_mailed_link(driver: Any, site: Site, to: str, path: str) -> None:
    sent = site.mail(to)
    found = re.search(rf"https?://[^\s/]+({path}\S+)", sent[-1]) if sent else None
    assert found, f"no {path} link mailed to {to}; at {driver.current_url}: {driver.title}"
    driver.get(site.url + found.group(1))


def _reset_by_link(driver: Any, site: Site) -> None:
    to = site.values["login"]
    _submit(driver, "forgot-form", login=to, id_number=site.values["id_number"])
    _follow_mailed_link(driver, site, to, "/password/reset/")


def _email_confirmation(driver: Any, site: Site) -> None:
    to = f"new-{len(site.mail(''))}@example.cn"
    _submit(driver, "email-form", email=to)
    _follow_mailed_link(driver, site, to, "/account/email/confirm/")


def _click(button: str) -> Callable[[Any, Site], None]:
    def reach(driver: Any, site: Site) -> None:
        from selenium.webdriver.common.by import By

        _press(driver, driver.find_element(By.ID, button))

    return reach


def _phone_code(driver: Any, site: Site) -> None:
    _submit(driver, "phone-form", phone="13900009876")


def _through_consent(driver: Any, site: Site) -> None:
    """The company picker comes after the consent page (the first time)."""
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.ID, "approve"):
        _press(driver, driver.find_element(By.ID, "approve"))


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    signed_in: bool = False
    #: Screenshots in both modes go to docs/screenshots (the main pages only).
    shot: bool = False
    reach: Callable[[Any, Site], None] | None = None
    #: Checked signed in as an administrator (after every citizen page).
    admin: bool = False
    #: Where a ``reach`` step must have led (the start of the path), so that a state page
    #: that silently failed to appear is not checked in its place.
    lands: str | None = None

    def url(self, site: Site) -> str:
        return site.url + self.path.format(**site.values)


PAGES: tuple[Page, ...] = (
    # Signed out.
    Page("login", "/login", shot=True),
    Page("login-for-service", "/authorize?{authorize}"),
    Page("login-entity", "/login?mode=entity"),
    Page("login-sms", "/login/sms/code"),
    Page("register", "/register", shot=True),
    Page("register-mistakes", "/register", shot=True, reach=_register_with_mistakes),
    Page("password-forgot", "/password/forgot"),
    Page("password-forgot-sent", "/password/forgot/sent"),
    Page("password-forgot-code", "/password/forgot/code"),
    Page("password-done", "/password/done"),
    Page("not-found", "/no-such-page", shot=True),
    Page("protocol-error", "/authorize?client_id=nobody&response_type=code", shot=True),
    Page("logged-out", "/logged-out"),
    Page("qr-opened-by-camera", "/qr/not-a-code"),
    Page("sms-password-step", "/login/sms/password"),
    Page("second-factor", "/login", reach=_password_login("mfa"), lands="/login/mfa"),
    Page("closing-cancel", "/login", reach=_password_login("closing")),
    Page("reset-by-link", "/password/forgot", reach=_reset_by_link, lands="/password/reset"),
    # Signed in as the test citizen.
    Page("consent", "/authorize?{authorize}", signed_in=True, shot=True),
    Page("account", "/account", signed_in=True, shot=True),
    Page("security", "/account/security", signed_in=True),
    Page("password-change", "/account/security/password", signed_in=True),
    Page("reauth", "/account/security/reauth", signed_in=True),
    Page("companies", "/account/companies", signed_in=True),
    Page("my-data", "/account/data", signed_in=True),
    Page("account-close", "/account/close", signed_in=True),
    Page(
        "totp-setup",
        "/account/security",
        signed_in=True,
        reach=_click("totp-setup"),
        lands="/account/security/totp",
    ),
    Page(
        "recovery-codes",
        "/account/security",
        signed_in=True,
        reach=_click("recovery-generate"),
        lands="/account/security/recovery",
    ),
    # With recovery codes (just made) the citizen can step up to two factors.
    Page(
        "step-up", "/login/step-up?acr=urn:yitong:acr:mfa", signed_in=True, lands="/login/step-up"
    ),
    Page(
        "phone-code",
        "/account/security",
        signed_in=True,
        reach=_phone_code,
        lands="/account/security/phone",
    ),
    Page(
        "email-confirmation",
        "/account/data",
        signed_in=True,
        reach=_email_confirmation,
        lands="/account/email/confirm/",
    ),
    Page(
        "company-picker",
        "/authorize?{authorize_entity}",
        signed_in=True,
        reach=_through_consent,
        lands="/entities/choose",
    ),
    Page("logout", "/logout", signed_in=True),
    Page("device", "/device", signed_in=True),
    Page("device-code-to-check", "/device?user_code=BCDF-GHJK", signed_in=True),
    # The admin console, signed in as an administrator holding every role.
    Page("console", "/admin/", signed_in=True, admin=True),
    Page("console-clients", "/admin/clients", signed_in=True, admin=True),
    Page("console-client-new", "/admin/clients/new", signed_in=True, admin=True),
    Page("console-client", "/admin/clients/{client_id}", signed_in=True, admin=True),
    Page("console-departments", "/admin/departments", signed_in=True, admin=True),
    Page("console-department", "/admin/departments/social", signed_in=True, admin=True),
    Page("console-people", "/admin/people?q={id_number}", signed_in=True, admin=True),
    Page("console-person", "/admin/people/{user_id}", signed_in=True, admin=True),
    Page("console-companies", "/admin/companies", signed_in=True, admin=True),
    Page("console-keys", "/admin/keys", signed_in=True, admin=True),
    Page("console-policies", "/admin/policies", signed_in=True, admin=True),
    Page("console-directories", "/admin/directories", signed_in=True, admin=True),
    Page("console-audit", "/admin/audit", signed_in=True, admin=True),
)
