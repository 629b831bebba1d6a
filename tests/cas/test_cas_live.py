"""CAS end to end through a live server: a department system using python-cas (CAS 1.0, 2.0
and 3.0 clients) validates the tickets our server issues, over HTTP, and receives single
logout when the citizen signs out.  The browser is a ``requests`` session on our pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from cas import CASClient

from tests.cas.conftest import CasServiceApp, register
from tests.helpers import Citizen
from tests.oauth.test_id_token import docs_recipe
from tests.oauth.test_rp_pyoidc import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def live(make_app: Any, cas_service_app: CasServiceApp) -> Iterator[LiveServer]:
    server = LiveServer(make_app, outbound_test_allowlist=(cas_service_app.host,))
    cas_service_app.server_url = server.url + "/cas/"
    yield server
    server.stop()


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no field {name}"
    return m.group(1).replace("&amp;", "&")


def _browse(browser: requests.Session, url: str, citizen: Citizen) -> requests.Response:
    """Open ``url``; sign in on our login page if it appears; end wherever the redirects end."""
    resp = browser.get(url)
    if 'id="login-form"' in resp.text:
        resp = browser.post(
            urljoin(resp.url, "/login"),
            data={
                "csrf_token": _field(resp.text, "csrf_token"),
                "ix": _field(resp.text, "ix"),
                "login": citizen.email,
                "password": citizen.password,
                "action": "login",
            },
        )
    return resp


@pytest.mark.parametrize("version", [1, 2, 3])
def test_python_cas_client_end_to_end(
    live: LiveServer, cas_service_app: CasServiceApp, version: int
) -> None:
    citizen = Citizen.create(live.app)
    cas_service_app.version = version
    service = cas_service_app.url()
    register(live.app, url=service, attributes=["name", "email"])
    client = CASClient(version=version, service_url=service, server_url=live.url + "/cas/")
    browser = requests.Session()

    landed = _browse(browser, client.get_login_url(), citizen)
    assert landed.status_code == 200 and landed.text == "department system"
    user, attributes = cas_service_app.logins[-1]
    assert user == citizen.id
    if version == 3:
        assert attributes["email"] == citizen.email and attributes["name"] == citizen.name
    # Single sign-on: the second visit needs no password.
    again = browser.get(client.get_login_url())
    assert again.text == "department system"
    assert [r.status_code for r in again.history] == [302]  # /cas/login -> the service
    assert [u for u, _ in cas_service_app.logins] == [citizen.id, citizen.id]

    # Signing out at our server notifies the system over the back channel (CAS SLO).
    confirm = browser.get(urljoin(live.url, client.get_logout_url()))
    browser.post(
        live.url + "/logout",
        data={"csrf_token": _field(confirm.text, "csrf_token"), "lr": _field(confirm.text, "lr")},
    )
    live.app.extensions["yitong"].logout.wait()
    assert len(cas_service_app.logout_requests) == 2  # one per validated ticket
    assert all("<samlp:SessionIndex>ST-" in r for r in cas_service_app.logout_requests)
    # Signed out: the next visit asks for the password again.
    assert 'id="login-form"' in browser.get(client.get_login_url()).text


def test_python_cas_client_gateway_and_renew(
    live: LiveServer, cas_service_app: CasServiceApp
) -> None:
    citizen = Citizen.create(live.app)
    service = cas_service_app.url()
    register(live.app, url=service)
    browser = requests.Session()
    gateway = CASClient(
        version=3,
        service_url=service,
        server_url=live.url + "/cas/",
        extra_login_params={"gateway": "true"},
    )
    resp = browser.get(gateway.get_login_url())
    assert resp.url == service and cas_service_app.logins == []  # back, without a ticket
    _browse(
        browser,
        CASClient(version=3, service_url=service, server_url=live.url + "/cas/").get_login_url(),
        citizen,
    )
    renew = CASClient(version=3, service_url=service, server_url=live.url + "/cas/", renew=True)
    assert 'id="login-form"' in browser.get(renew.get_login_url()).text  # credentials again


def test_the_python_cas_recipe_in_the_docs_works(
    live: LiveServer, cas_service_app: CasServiceApp
) -> None:
    """docs/integrating.md "CAS": its python-cas code, run as written against a live server."""
    recipe = docs_recipe("### Python (python-cas)")
    cas_service_app.server_url = None  # the recipe validates, not the receiving server
    citizen = Citizen.create(live.app)
    service = cas_service_app.url()
    register(live.app, url=service, attributes=["email"])
    client = recipe["cas_client"](service, live.url)
    browser = requests.Session()
    landed = _browse(browser, recipe["login_redirect"](client), citizen)
    ticket = parse_qs(urlsplit(landed.url).query)["ticket"][0]
    sessions: dict[str, str] = {}
    user, attributes = recipe["on_callback"](client, ticket, sessions)
    assert user == citizen.id and attributes["email"] == citizen.email
    with pytest.raises(PermissionError):  # single use
        recipe["on_callback"](client, ticket, {})
    confirm = browser.get(live.url + "/cas/logout")
    browser.post(
        live.url + "/logout",
        data={"csrf_token": _field(confirm.text, "csrf_token"), "lr": _field(confirm.text, "lr")},
    )
    live.app.extensions["yitong"].logout.wait()
    [request] = cas_service_app.logout_requests
    assert recipe["on_logout_request"](client, {"logoutRequest": request}, sessions) == user
    assert sessions == {}
