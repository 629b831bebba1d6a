"""CAS test fixtures: a CAS service (a real HTTP server on loopback using python-cas) and
helpers that walk our login pages with the Flask test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cas import CASClient
from flask import Flask
from flask.testing import FlaskClient

from idp.cas.registry import CasServiceSpec, create_service
from tests.helpers import csrf_token, hidden
from tests.services.recorder import Recorded, Recorder, running


class CasServiceApp(Recorder):
    """A department system speaking CAS: it validates the tickets it receives with python-cas
    (when ``server_url`` is set) and records the single-logout requests POSTed to it."""

    def __init__(self, server_url: str | None = None, version: int = 3) -> None:
        super().__init__(body=b"department system", on_get=self._validate)
        self.server_url = server_url
        self.version = version
        self.logins: list[tuple[Any, Any]] = []

    def _validate(self, seen: Recorded) -> None:
        ticket = seen.query.get("ticket")
        if ticket and self.server_url:
            client = CASClient(
                version=self.version, service_url=self.url(), server_url=self.server_url
            )
            user, attributes, _pgtiou = client.verify_ticket(ticket)
            self.logins.append((user, attributes))

    @property
    def logout_requests(self) -> list[str]:
        return self.posted("logoutRequest")

    def url(self, path: str = "/app/") -> str:
        return super().url(path)


@pytest.fixture
def cas_service_app() -> Iterator[CasServiceApp]:
    with running(CasServiceApp()) as svc:
        yield svc


@pytest.fixture
def cas_app(make_app: Any, cas_service_app: CasServiceApp) -> Flask:
    """The IdP, allowed to deliver single logout to the service on loopback."""
    return make_app(outbound_test_allowlist=(cas_service_app.host,))  # type: ignore[no-any-return]


def register(
    app: Flask,
    *,
    url: str | None = None,
    pattern: str | None = None,
    attributes: list[str] | None = None,
    name: str = "Department portal",
) -> str:
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        row = create_service(
            session,
            CasServiceSpec(
                name=name, service_url=url, service_pattern=pattern, attributes=attributes or []
            ),
            actor="test",
        )
        return row.id


def sign_in(http: FlaskClient, resp: Any, login: str, password: str) -> Any:
    """On a redirect to our login page: fill it in; return the answer to the POST."""
    assert resp.status_code == 302, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert "/login?" in resp.headers["Location"], resp.headers["Location"]
    page = http.get(resp.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return http.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "login": login,
            "password": password,
            "action": "login",
        },
    )


def follow_to_service(http: FlaskClient, resp: Any, service: str) -> str:
    """Follow our redirects until one leaves for ``service``; return that URL."""
    for _ in range(6):
        assert resp.status_code in (302, 303), (
            resp.status_code,
            resp.get_data(as_text=True)[:300],
        )
        location = resp.headers["Location"]
        if location.startswith(service):
            return location
        resp = http.get(location)
    raise AssertionError("never reached the service")


def ticket_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["ticket"][0]
