"""Every page a person can reach, for the page-wide checks (accessibility, language, layout).

A page is a path on the live IdP, opened signed out or signed in as the test citizen; a
``{placeholder}`` is filled from :class:`Site` (``{authorize}`` is the query of a valid
authorization request of the test service, so ``/authorize?{authorize}`` lands on the login
page signed out and on the consent page signed in).  A state no URL reaches (a form sent with
mistakes) names a ``reach`` step run after the page loaded.  A new page is one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Site:
    """What paths are filled from."""

    url: str
    values: dict[str, str]


def _register_with_mistakes(driver: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "id_number").send_keys("210202197806263287")
    driver.find_element(By.ID, "phone").send_keys("12345")
    driver.find_element(By.ID, "password").send_keys("short")
    driver.find_element(By.CSS_SELECTOR, "#register-form button[type=submit]").click()


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    signed_in: bool = False
    #: Screenshots in both modes go to docs/screenshots (the main pages only).
    shot: bool = False
    reach: Callable[[Any, Site], None] | None = None

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
    # Signed in as the test citizen.
    Page("consent", "/authorize?{authorize}", signed_in=True, shot=True),
    Page("account", "/account", signed_in=True, shot=True),
    Page("security", "/account/security", signed_in=True),
    Page("password-change", "/account/security/password", signed_in=True),
    Page("reauth", "/account/security/reauth", signed_in=True),
    Page("companies", "/account/companies", signed_in=True),
    Page("my-data", "/account/data", signed_in=True),
    Page("account-close", "/account/close", signed_in=True),
    Page("logout", "/logout", signed_in=True),
    Page("device", "/device", signed_in=True),
    Page("device-code-to-check", "/device?user_code=BCDF-GHJK", signed_in=True),
)
