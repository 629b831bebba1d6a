"""One recording HTTP service on loopback for every test that needs a relying party, a legacy
system or a CAS service to talk to: it records each request's path and form fields and answers
with a chosen status, optionally after a delay or a gate (to prove the IdP never waits on it).

The bridge's legacy system, the CAS service and the back-channel logout receiver are thin
views of this one server (the duplicate servers they replaced differed only in what they
recorded).  A registry service (the enterprise registry) is one too: ``answer`` gives each POST
its status and JSON body, and ``tls`` serves it over HTTPS (with client certificates when the
context asks for them)."""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request as the service saw it."""

    method: str
    path: str
    form: dict[str, list[str]]
    body: bytes = b""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}


@dataclass
class Recorder:
    """A loopback HTTP service. ``on_get`` runs for each GET before the answer (the CAS
    service validates its ticket there); POSTs wait ``delay`` seconds and then for ``gate``
    (at most 30 s) before being recorded and answered with ``status``, or with the status
    and body ``answer`` returns for them."""

    status: int = 200
    delay: float = 0.0
    gate: threading.Event | None = None
    body: bytes = b"ok"
    on_get: Callable[[Recorded], None] | None = None
    answer: Callable[[Recorded], tuple[int, bytes]] | None = None
    tls: ssl.SSLContext | None = None
    requests: list[Recorded] = field(default_factory=list)

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen = Recorded("GET", self.path, {})
                recorder.requests.append(seen)
                if recorder.on_get is not None:
                    recorder.on_get(seen)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(recorder.body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                form = parse_qs(body.decode(errors="replace"))
                time.sleep(recorder.delay)
                if recorder.gate is not None:
                    recorder.gate.wait(30)
                seen = Recorded("POST", self.path, form, body)
                recorder.requests.append(seen)
                if recorder.answer is not None:
                    status, answer = recorder.answer(seen)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                self.send_response(recorder.status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}{path}"

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def gets(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET"]

    def posted(self, name: str) -> list[str]:
        """Every value of form field ``name`` POSTed so far, in arrival order."""
        return [v for r in self.requests if r.method == "POST" for v in r.form.get(name, [])]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class QuietServer(ThreadingHTTPServer):
    """Keeps the broken pipe of a client that gave up (a timeout test) and a refused TLS
    handshake off the shared stderr; other handler errors are still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


@contextmanager
def running(recorder: Recorder) -> Iterator[Recorder]:
    """Start ``recorder`` for the block (a fixture's ``with running(X()) as x: yield x``)."""
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.stop()
