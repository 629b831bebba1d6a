"""Ticket-bridge fixtures: a legacy system (a real HTTP server on loopback that receives
tickets on its callback and logout tokens on its back-channel URL), its registration, and a
signed-request helper built on the reference client (clients/yitong_bridge.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from clients.yitong_bridge import BridgeClient
from idp.bridge.registry import BridgeSystemSpec, create_system


@dataclass
class LegacySystem:
    """A department system: records what reaches its callback and its logout URL."""

    callbacks: list[dict[str, str]] = field(default_factory=list)
    logout_tokens: list[str] = field(default_factory=list)

    def start(self) -> LegacySystem:
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                system.callbacks.append({k: v[0] for k, v in query.items()})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"legacy system")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                system.logout_tokens.extend(parse_qs(body).get("logout_token", []))
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

    def url(self, path: str = "/callback") -> str:
        return f"http://{self.host}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def legacy() -> Iterator[LegacySystem]:
    system = LegacySystem().start()
    yield system
    system.stop()


@dataclass(frozen=True)
class Registered:
    system_id: str
    secret: str
    callback: str

    def client(self, server: str = "http://localhost", **kwargs: Any) -> BridgeClient:
        return BridgeClient(server, self.system_id, self.secret, **kwargs)


def register_system(
    app: Flask,
    callback: str,
    *,
    attributes: list[str] | None = None,
    backchannel: str | None = None,
    frontchannel: str | None = None,
    name: str = "社保旧系统",
) -> Registered:
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        row, secret = create_system(
            session,
            BridgeSystemSpec(
                name=name,
                callback=callback,
                attributes=attributes if attributes is not None else ["name", "email"],
                backchannel_logout_uri=backchannel,
                frontchannel_logout_uri=frontchannel,
            ),
            actor="test",
            kek=services.kek,
        )
        return Registered(row.client_id, secret, callback)
