"""Population-registry adapters (issue 10 item 5): the local dataset and the HTTP client.

The HTTP client is tested against a stub registry served from this process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from adapters.base import (
    AdapterConfigError,
    AdapterError,
    AdapterUnavailable,
    IdentityVerifier,
)
from adapters.identity import HttpRegistry, LocalRegistry
from idp.accounts.assurance import SYNTHETIC_REGISTRY
from tests.helpers import IDS

NUMBER = IDS["resident_ids"][3]
FACE = b"synthetic reference photo"


def test_local_registry_matches_name_and_number_only_together():
    registry = LocalRegistry.from_records(
        [{"name": "张三", "id_number": NUMBER, "face_sha256": hashlib.sha256(FACE).hexdigest()}]
    )
    assert isinstance(registry, IdentityVerifier)
    assert registry.check_identity("张三", NUMBER).matched
    assert registry.check_identity(" 张三 ", NUMBER.lower()).matched
    assert not registry.check_identity("李四", NUMBER).matched
    assert not registry.check_identity("张三", IDS["resident_ids"][4]).matched
    assert registry.check_face(NUMBER, FACE).matched
    assert not registry.check_face(NUMBER, b"someone else").matched
    assert not registry.check_face(IDS["resident_ids"][4], FACE).matched
    check = registry.check_identity("张三", NUMBER)
    assert check.reference and NUMBER not in check.reference


def test_bundled_dataset_is_the_synthetic_ids():
    registry = LocalRegistry.from_file(SYNTHETIC_REGISTRY)
    assert set(registry.records) == set(IDS["resident_ids"])


def test_local_dataset_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}', "utf-8")
    with pytest.raises(AdapterConfigError, match="records"):
        LocalRegistry.from_file(bad)
    with pytest.raises(AdapterConfigError, match="cannot read"):
        LocalRegistry.from_file(tmp_path / "missing.json")
    with pytest.raises(AdapterConfigError, match="name"):
        LocalRegistry.from_records([{"id_number": NUMBER}])


class StubRegistry(BaseHTTPRequestHandler):
    """Answers as the real registry would; ``behaviour`` switches to failure modes."""

    behaviour: ClassVar[str] = "ok"
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StubRegistry.seen.append({"path": self.path, "body": body})
        mode = StubRegistry.behaviour
        if mode == "slow":
            time.sleep(1.5)
        if mode == "down":
            self._send(503, b"{}")
            return
        if mode == "garbage":
            self._send(200, b"not json")
            return
        if mode == "no-reference":
            self._send(200, b'{"matched": true}')
            return
        if self.path == "/identity/check":
            matched = body == {"name": "张三", "id_number": NUMBER}
        else:
            matched = body.get("id_number") == NUMBER and body.get("image") == "c3ludGhldGlj"
        answer = {"matched": matched, "reference": "R-123", "checked_at": "2026-12-03T08:00:00Z"}
        self._send(200, json.dumps(answer).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


class QuietServer(ThreadingHTTPServer):
    """Joins its handler threads on close (a slow answer ends inside its own test) and
    keeps the broken pipe of a client that gave up off the shared stderr."""

    daemon_threads = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


@pytest.fixture
def stub() -> Iterator[str]:
    StubRegistry.behaviour = "ok"
    StubRegistry.seen = []
    server = QuietServer(("127.0.0.1", 0), StubRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_registry_asks_the_service(stub):
    registry = HttpRegistry(url=stub)
    assert isinstance(registry, IdentityVerifier)
    check = registry.check_identity("张三", NUMBER)
    assert check.matched and check.reference == "R-123" and check.source == "population-registry"
    assert not registry.check_identity("李四", NUMBER).matched
    assert registry.check_face(NUMBER, b"synthetic").matched
    assert [s["path"] for s in StubRegistry.seen] == [
        "/identity/check",
        "/identity/check",
        "/face/check",
    ]


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [("down", AdapterUnavailable), ("garbage", AdapterError), ("no-reference", AdapterError)],
)
def test_http_registry_failures(stub, behaviour, error):
    StubRegistry.behaviour = behaviour
    with pytest.raises(error):
        HttpRegistry(url=stub).check_identity("张三", NUMBER)


def test_http_registry_read_timeout_is_unavailable(stub):
    StubRegistry.behaviour = "slow"
    with pytest.raises(AdapterUnavailable):
        HttpRegistry(url=stub, read_timeout=0.2).check_identity("张三", NUMBER)


def test_http_registry_unreachable_is_unavailable():
    with pytest.raises(AdapterUnavailable):
        HttpRegistry(url="http://127.0.0.1:9", connect_timeout=0.5).check_identity("张三", NUMBER)


def test_http_registry_presents_its_client_certificate(stub, monkeypatch):
    sent: dict[str, Any] = {}
    registry = HttpRegistry(
        url=stub, client_cert="/etc/yt/c.pem", client_key="/etc/yt/k.pem", ca_file="/etc/yt/ca.pem"
    )
    real_post = registry.session.post

    def spy(url: str, **kwargs: Any) -> Any:
        sent.update(kwargs)
        kwargs.pop("cert")
        kwargs.pop("verify")
        return real_post(url, **kwargs)

    monkeypatch.setattr(registry.session, "post", spy)
    assert registry.check_identity("张三", NUMBER).matched
    assert sent["cert"] == ("/etc/yt/c.pem", "/etc/yt/k.pem")
    assert sent["verify"] == "/etc/yt/ca.pem"
    assert sent["timeout"] == (3.0, 5.0)
    assert sent["allow_redirects"] is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"url": "https://r.example", "read_timeout": 0}, "timeouts"),
        ({"url": "https://r.example", "client_key": "k.pem"}, "client_key"),
    ],
)
def test_http_registry_config_errors(config, message):
    with pytest.raises(AdapterConfigError, match=message):
        HttpRegistry.from_config(config)
