"""One recording HTTP service on loopback for every test that needs a relying party, a legacy
system or a CAS service to talk to: it records each request's path and form fields and answers
with a chosen status, optionally after a delay or a gate (to prove the IdP never waits on it).

The bridge's legacy system, the CAS service and the back-channel logout receiver are thin
views of this one server (the duplicate servers they replaced differed only in what they
recorded)."""

from __future__ import annotations

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

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}


@dataclass
class Recorder:
    """A loopback HTTP service. ``on_get`` runs for each GET before the answer (the CAS
    service validates its ticket there); POSTs wait ``delay`` seconds and then for ``gate``
    (at most 30 s) before being recorded and answered with ``status``."""

    status: int = 200
    delay: float = 0.0
    gate: threading.Event | None = None
    body: bytes = b"ok"
    on_get: Callable[[Recorded], None] | None = None
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
                form = parse_qs(self.rfile.read(length).decode())
                time.sleep(recorder.delay)
                if recorder.gate is not None:
                    recorder.gate.wait(30)
                recorder.requests.append(Recorded("POST", self.path, form))
                self.send_response(recorder.status)
                self.send_header("Cache-Control", "no-store")
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

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

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


@contextmanager
def running(recorder: Recorder) -> Iterator[Recorder]:
    """Start ``recorder`` for the block (a fixture's ``with running(X()) as x: yield x``)."""
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.stop()
