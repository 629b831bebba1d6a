"""CAS test fixtures: a CAS service (a real HTTP server on loopback using python-cas) and
helpers that walk our login pages with the Flask test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.cas.registry import CasServiceSpec, create_service
from tests.helpers import csrf_token, hidden


@dataclass
class CasServiceApp:
    """A department system speaking CAS: it validates the tickets it receives with python-cas
    (when ``server_url`` is set) and records the single-logout requests POSTed to it."""

    server_url: str | None = None
    version: int = 3
    logins: list[tuple[Any, Any]] = field(default_factory=list)
    logout_requests: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def start(self) -> CasServiceApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                app.paths.append(self.path)
                ticket = parse_qs(urlsplit(self.path).query).get("ticket", [None])[0]
                if ticket and app.server_url:
                    from cas import CASClient

                    client = CASClient(
                        version=app.version, service_url=app.url(), server_url=app.server_url
                    )
                    user, attributes, _pgtiou = client.verify_ticket(ticket)
                    app.logins.append((user, attributes))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"department system")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                app.logout_requests.extend(parse_qs(body).get("logoutRequest", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/app/") -> str:
        return f"http://{self.host}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def cas_service_app() -> Iterator[CasServiceApp]:
    svc = CasServiceApp().start()
    yield svc
    svc.stop()


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
