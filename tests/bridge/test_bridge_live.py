"""The ticket bridge end to end through a live server, driven by the reference client
(clients/yitong_bridge.py) as a legacy system would: signed login redirect, ticket on the
callback, ticket → token → user info, and logout heard by every system over the back
channel (logout tokens verified by the reference client against our published keys)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from clients.yitong_bridge import BridgeClient, BridgeError
from tests.bridge.conftest import LegacySystem, register_system
from tests.helpers import Citizen
from tests.oauth.test_rp_pyoidc import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def live(make_app: Any, legacy: LegacySystem) -> Iterator[LiveServer]:
    server = LiveServer(make_app, outbound_test_allowlist=(legacy.host,))
    yield server
    server.stop()


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no field {name}"
    return m.group(1).replace("&amp;", "&")


def _browse(browser: requests.Session, url: str, citizen: Citizen) -> requests.Response:
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


def test_reference_client_end_to_end(live: LiveServer, legacy: LegacySystem) -> None:
    citizen = Citizen.create(live.app)
    first = register_system(
        live.app,
        legacy.url("/first/callback"),
        attributes=["name", "phone_number"],
        backchannel=legacy.url("/first/logout"),
    )
    second = register_system(
        live.app,
        legacy.url("/second/callback"),
        attributes=["email"],
        backchannel=legacy.url("/second/logout"),
        name="Second system",
    )
    bridge = BridgeClient(live.url, first.system_id, first.secret)
    browser = requests.Session()

    landed = _browse(browser, bridge.login_url(state="return-to-/home"), citizen)
    assert landed.text == "legacy system"
    callback = legacy.callbacks[-1]
    assert callback["state"] == "return-to-/home"
    token = bridge.exchange(callback["ticket"])
    person = bridge.user_info(token["access_token"])
    assert person["sub"] == citizen.id
    assert person["attributes"] == {"name": citizen.name, "phone_number": citizen.phone}
    with pytest.raises(BridgeError) as reused:
        bridge.exchange(callback["ticket"])
    assert reused.value.code == "invalid_ticket" and reused.value.status == 400

    # The second system: single sign-on, its own credentials, its own allow-list.
    other = BridgeClient(live.url, second.system_id, second.secret)
    assert browser.get(other.login_url()).text == "legacy system"
    other_token = other.exchange(legacy.callbacks[-1]["ticket"])
    assert other.user_info(other_token["access_token"])["attributes"] == {"email": citizen.email}
    with pytest.raises(BridgeError) as foreign:
        other.user_info(token["access_token"])
    assert foreign.value.code == "invalid_token" and foreign.value.status == 401
    with pytest.raises(BridgeError) as wrong:
        BridgeClient(live.url, first.system_id, second.secret).exchange("BT-x")
    assert wrong.value.code == "invalid_client"

    # Logout from the first system: the SSO session ends, both systems hear of it
    # (checklist 64, 69: grants revoked, back-channel logout to every system of the session).
    assert bridge.logout(token["access_token"]) is True
    live.app.extensions["yitong"].logout.wait()
    assert len(legacy.logout_tokens) == 2
    audiences = set()
    for raw in legacy.logout_tokens:
        for system in (bridge, other):  # each system verifies its own (aud is checked)
            try:
                claims = system.verify_logout_token(raw)
            except BridgeError:
                continue
            assert claims["sid"] == person["sid"] and claims["aud"] == system.system_id
            audiences.add(claims["aud"])
    assert audiences == {first.system_id, second.system_id}
    with pytest.raises(BridgeError):
        other.user_info(other_token["access_token"])
    assert 'id="login-form"' in browser.get(bridge.login_url()).text  # signed out


def test_front_channel_logout_through_the_reference_client(
    live: LiveServer, legacy: LegacySystem
) -> None:
    citizen = Citizen.create(live.app)
    reg = register_system(live.app, legacy.url("/callback"), backchannel=legacy.url("/logout"))
    bridge = BridgeClient(live.url, reg.system_id, reg.secret)
    browser = requests.Session()
    _browse(browser, bridge.login_url(), citizen)
    back = browser.get(bridge.logout_url(return_to=reg.callback))
    assert back.url.startswith(reg.callback) and back.text == "legacy system"
    live.app.extensions["yitong"].logout.wait()
    [raw] = legacy.logout_tokens
    assert bridge.verify_logout_token(raw)["aud"] == reg.system_id
    assert 'id="login-form"' in browser.get(bridge.login_url()).text


def test_the_reference_client_recipe_in_the_docs_works(
    live: LiveServer, legacy: LegacySystem
) -> None:
    """docs/integrating.md "Ticket bridge": its Python code, run as written."""
    from tests.oauth.test_id_token import docs_recipe

    recipe = docs_recipe("### Python (reference client)")
    citizen = Citizen.create(live.app)
    reg = register_system(live.app, legacy.url("/cb"), backchannel=legacy.url("/logout"))
    bridge = recipe["bridge_client"](live.url, reg.system_id, reg.secret)
    browser = requests.Session()
    _browse(browser, recipe["login_redirect"](bridge, "next"), citizen)
    sub, attributes, access_token = recipe["on_callback"](bridge, legacy.callbacks[-1])
    assert sub == citizen.id and attributes == {"name": citizen.name, "email": citizen.email}
    sessions = {bridge.user_info(access_token)["sid"]: "local-session"}
    assert bridge.logout(access_token)
    live.app.extensions["yitong"].logout.wait()
    [raw] = legacy.logout_tokens
    assert recipe["on_logout_token"](bridge, {"logout_token": raw}, sessions) == "local-session"
    with pytest.raises(PermissionError, match="invalid_ticket"):  # a ticket works once
        recipe["on_callback"](bridge, legacy.callbacks[-1])
    with pytest.raises(PermissionError, match="access_denied"):
        recipe["on_callback"](bridge, {"error": "access_denied"})


def test_the_signature_example_in_the_docs() -> None:
    from pathlib import Path

    from clients.yitong_bridge import sign
    from idp.bridge.protocol import signature_of

    text = (Path(__file__).parents[2] / "docs" / "integrating.md").read_text("utf-8")
    section = text.split("## Ticket bridge (protocol v1)", 1)[1]
    params = {
        "version": "1",
        "system_id": "bridge-3f9c2a7d10b4e865",
        "timestamp": "1764763200",
        "nonce": "q8Zk2mV0rT6yLw1pXc4nHs",
        "state": "/办事/申报",
        "acting": "self",
    }
    expected = sign("s3cr3t-example-only-8Hq2", "/bridge/v1/login", params)
    assert f"signature={expected}" in section
    assert signature_of(b"s3cr3t-example-only-8Hq2", "/bridge/v1/login", params) == expected
