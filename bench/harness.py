"""Shared benchmark machinery: pinned servers, a lean HTTP client, CPU-second accounting.

Method (ARCHITECTURE.md, "Performance habits"): every server under test runs pinned to CPU 0
(``taskset -c 0``), Python apps under gunicorn with one sync worker; the load generator runs
in this process pinned to CPU 1.  A measurement reads the server's CPU time (user + system,
``/proc/<pid>/stat``, summed over the server's processes) before and after a fixed wall-clock
window, and reports work done per CPU-second of the server, which stays comparable even when
the load generator cannot saturate the server.

The HTTP client speaks just enough HTTP/1.1 over raw sockets (one connection per request,
``Connection: close``, as gunicorn's sync worker does anyway) to cost far less per request
than the servers it drives.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
CLIENT_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ CPU accounting
def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn: the arbiter and its workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(process_tree(int(child)))
    return out


def tree_cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += process_cpu(pid)
    return total


def pin_self(cpu: int = CLIENT_CPU) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


# ------------------------------------------------------------------ HTTP
@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def location(self) -> str:
        loc = self.header("location")
        if loc is None:
            raise BenchError(f"expected a redirect, got {self.status}: {self.body[:300]!r}")
        return loc

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class BenchError(RuntimeError):
    """A request did not answer as the scenario expects."""


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


#: Clients keep connections open between requests (HTTP/1.1 keep-alive) when True; set by a
#: bench's ``--keepalive``.  A server that answers ``Connection: close`` (gunicorn's sync
#: worker always does) still gets a new connection for each request.
KEEPALIVE = False
_conns = threading.local()


def _read_response(sock: socket.socket) -> tuple[bytes, bytes, bool]:
    """(head, body, server closes) of one response on a kept-alive connection."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("connection closed before the response")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    low = head.lower()
    closes = b"\r\nconnection: close" in low
    length = None
    for line in low.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length is not None:
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("connection closed in the body")
            rest += data
        return head, rest[:length], closes
    if b"\r\ntransfer-encoding: chunked" in low:
        while not rest.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return head, rest, closes
    while True:  # no length: the body ends with the connection
        data = sock.recv(65536)
        if not data:
            return head, rest, True
        rest += data


def _exchange_keepalive(host: str, port: int, request: bytes, timeout: float) -> bytes:
    pool: dict[tuple[str, int], socket.socket] = _conns.__dict__.setdefault("pool", {})
    for attempt in (0, 1):
        sock = pool.pop((host, port), None)
        fresh = sock is None
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(request)
            head, body, closes = _read_response(sock)
        except OSError:
            sock.close()
            if fresh or attempt:
                raise
            continue  # the server closed an idle connection: once more on a new one
        if closes:
            sock.close()
        else:
            pool[(host, port)] = sock
        return head + b"\r\n\r\n" + body
    raise AssertionError("unreachable")


def http(
    port: int,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> Response:
    """One request on a fresh connection; ``body`` as a dict is sent form-encoded."""
    hdrs = {"Host": f"{host}:{port}", "User-Agent": "yitong-bench"}
    if not KEEPALIVE:
        hdrs["Connection"] = "close"
    if isinstance(body, Mapping):
        body = urllib.parse.urlencode(body).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    hdrs.update(headers or {})
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    wire = head.encode("latin-1") + b"\r\n" + (body or b"")
    if KEEPALIVE:
        raw = _exchange_keepalive(host, port, wire, timeout)
    else:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(wire)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        raw = b"".join(chunks)
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise BenchError(f"no HTTP response from {host}:{port}{target}")
    status = int(lines[0].split()[1])
    parsed = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        parsed.append((k.strip(), v.strip()))
    resp = Response(status, parsed, payload)
    if (resp.header("transfer-encoding") or "").lower() == "chunked":
        resp.body = _dechunk(payload)
    return resp


@dataclass
class Browser:
    """A cookie jar and a port: just enough of a user agent for the flows (one host)."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, target: str, **kwargs: Any) -> Response:
        parts = urllib.parse.urlsplit(target)
        if parts.netloc:
            target = parts.path + ("?" + parts.query if parts.query else "")
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        resp = http(self.port, method, target, headers=headers, **kwargs)
        for name, value in resp.headers:
            if name.lower() == "set-cookie":
                pair, _, attrs = value.partition(";")
                k, _, v = pair.partition("=")
                low = attrs.lower()
                if "max-age=0" in low or "expires=thu, 01 jan 1970" in low or not v:
                    self.cookies.pop(k.strip(), None)
                else:
                    self.cookies[k.strip()] = v.strip()
        return resp

    def get(self, target: str, **kwargs: Any) -> Response:
        return self.request("GET", target, **kwargs)

    def post(self, target: str, form: Mapping[str, str], **kwargs: Any) -> Response:
        return self.request("POST", target, body=form, **kwargs)


def query_param(url: str, name: str) -> str:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get(name)
    if not values:
        raise BenchError(f"no {name} in {url}")
    return values[0]


# ------------------------------------------------------------------ servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server on port {port} exited with status {proc.returncode}")
        try:
            if http(port, "GET", path, timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"server on port {port} did not answer {path} within {timeout:.0f} s")


class Server:
    """A server process pinned to :data:`SERVER_CPU`; ``cpu()`` sums its process tree."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
        ready_path: str = "/",
        log: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        taskset = shutil.which("taskset")
        if taskset and (os.cpu_count() or 1) > SERVER_CPU:
            argv = [taskset, "-c", str(SERVER_CPU), *argv]
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._out = out
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_http(port, ready_path, self.proc, timeout=180.0)  # a busy machine boots slowly
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def cpu(self) -> float:
        return tree_cpu(self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._out is not subprocess.DEVNULL:
            self._out.close()  # type: ignore[union-attr]


#: WSGI servers a bench can serve Python apps with (``--server``), one worker each.
SERVERS = ("sync", "gthread", "granian")
#: The one the benches use unless told otherwise (chosen by measurement, docs/benchmarks.md).
DEFAULT_SERVER = "sync"


def server_argv(kind: str, app: str, port: int) -> list[str]:
    """The command line serving ``app`` with one worker of the ``kind`` of WSGI server."""
    if kind == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--blocking-threads",
            "4",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backlog",
            "256",
            "--no-ws",
            "--log-level",
            "warning",
            app,
        ]
    worker = ["-k", "sync"] if kind == "sync" else ["-k", "gthread", "--threads", "4"]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        *worker,
        "-b",
        f"127.0.0.1:{port}",
        "--backlog",
        "256",
        "--timeout",
        "60",
        "--log-level",
        "warning",
        app,
    ]


def gunicorn(
    name: str,
    app: str,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    ready_path: str = "/",
    log: Path | None = None,
    kind: str = DEFAULT_SERVER,
) -> Server:
    """One worker of the ``kind`` of WSGI server (gunicorn sync by default), pinned to CPU 0."""
    port = port or free_port()
    return Server(name, server_argv(kind, app, port), port, env=env, ready_path=ready_path, log=log)


def process_memory_mb(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process in MB, from ``/proc/<pid>/smaps_rollup``.

    RSS counts every resident page the process maps, shared ones in full; PSS divides each
    shared page by the number of processes sharing it (what the process costs the machine,
    summable over a node); USS counts only its private pages (what its exit would free).
    """
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])  # kB
    return {
        "rss": fields["Rss"] / 1024,
        "pss": fields["Pss"] / 1024,
        "uss": (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024,
    }


def server_workers(server: Server) -> list[int]:
    """The worker processes of a server: the root's descendants, or the root if it has none."""
    return server.pids()[1:] or server.pids()


def worker_memory_mb(server: Server) -> dict[str, float]:
    """RSS, PSS and USS (MB) of the server's largest worker (by RSS)."""
    found = []
    for pid in server_workers(server):
        with contextlib.suppress(OSError):
            found.append(process_memory_mb(pid))
    return max(found, key=lambda m: m["rss"])


# ------------------------------------------------------------------ measuring
@dataclass
class Result:
    name: str
    units: int
    requests: int
    errors: int
    wall: float
    server_cpu: float
    unit_name: str = "req"
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.units / self.wall if self.wall else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.units / self.server_cpu if self.server_cpu else float("nan")

    @property
    def server_ms(self) -> float:
        return self.server_cpu / self.units * 1000 if self.units else float("nan")

    @property
    def utilization(self) -> float:
        return self.server_cpu / self.wall if self.wall else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit_name,
            "units": self.units,
            "requests": self.requests,
            "errors": self.errors,
            "wall_s": round(self.wall, 3),
            "server_cpu_s": round(self.server_cpu, 3),
            "per_second": round(self.per_second, 1),
            "per_cpu_second": round(self.per_cpu_second, 1),
            "server_ms_per_unit": round(self.server_ms, 3),
            "server_utilization": round(self.utilization, 3),
            "note": self.note,
        }


class Exhausted(Exception):
    """The unit has no more work (e.g. the prepared codes ran out): stop measuring."""


Unit = Callable[[], int]  # does one unit of work, returns the number of HTTP requests it made


def measure(
    name: str,
    unit_factory: Callable[[], Unit],
    server: Server,
    *,
    seconds: float,
    threads: int = 4,
    warmup: float = 1.0,
    unit_name: str = "req",
    note: str = "",
) -> Result:
    """Run ``threads`` loops of units for ``seconds`` (after ``warmup``); count server CPU."""
    units = [unit_factory() for _ in range(threads)]
    if warmup:
        _loop(units, warmup)
    before = server.cpu()
    started = time.perf_counter()
    done, reqs, errors = _loop(units, seconds)
    wall = time.perf_counter() - started
    cpu = server.cpu() - before
    return Result(name, done, reqs, errors, wall, cpu, unit_name, note)


def _loop(units: list[Unit], seconds: float) -> tuple[int, int, int]:
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    totals = [0, 0, 0]
    first_error: list[BaseException] = []

    def worker(unit: Unit) -> None:
        n = r = e = 0
        while time.perf_counter() < deadline:
            try:
                r += unit()
                n += 1
            except Exhausted:
                break
            except (BenchError, OSError) as exc:
                e += 1
                if not first_error:
                    first_error.append(exc)
                if e > 20 and e > n:
                    break
        with lock:
            totals[0] += n
            totals[1] += r
            totals[2] += e

    pool = [threading.Thread(target=worker, args=(u,), daemon=True) for u in units]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if first_error and totals[2] > totals[0] * 0.01:
        raise BenchError(f"{totals[2]} errors out of {totals[0] + totals[2]}: {first_error[0]}")
    return totals[0], totals[1], totals[2]


def get_unit(port: int, path: str) -> Callable[[], Unit]:
    """A unit of work that GETs ``path`` and expects 200 (hello world, discovery)."""

    def factory() -> Unit:
        def unit() -> int:
            r = http(port, "GET", path)
            if r.status != 200:
                raise BenchError(f"GET {path}: {r.status}")
            return 1

        return unit

    return factory
