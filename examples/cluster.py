"""Two Yitong nodes behind a round-robin load balancer, on PostgreSQL and Redis (issue 12).

``make cluster`` (``python -m examples.cluster``) runs the production shape on one machine:

    browser ─▶ balancer :5000 ─┬─▶ node A (gunicorn, N workers) :5010 ─┐
                               └─▶ node B (gunicorn, N workers) :5011 ─┴─▶ PostgreSQL, Redis

plus the two demo relying parties (:mod:`examples.launcher`) registered against the balancer's
address, the issuer.  The fault drills (tests/test_fault_drills.py) and the soak
(scripts/soak.py) start the same pieces through :func:`start_nodes` and :class:`Balancer`.

The balancer is deliberately tiny: a threaded TCP proxy that hands each new connection to the
next node, skipping a node that refuses the connection (a stopped node costs no request),
and no more.  In production a real proxy does this with TLS and health checks on
``/readyz`` (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from examples.launcher import DemoProcess, _sigterm_as_interrupt, start_rps
from idp.config import Settings
from idp.demo import (
    REPO_ROOT,
    DemoError,
    DemoLayout,
    DemoState,
    demo_settings,
    describe,
    settings_environment,
    setup,
)

GUNICORN_CONF = REPO_ROOT / "examples" / "gunicorn_conf.py"


class Balancer:
    """Round-robin TCP proxy on ``host:port`` over ``backends`` (each ``(host, port)``)."""

    def __init__(self, port: int, backends: list[tuple[str, int]], host: str = "127.0.0.1") -> None:
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self._lock = threading.Lock()
        self.listener = socket.create_server((host, port), reuse_port=False, backlog=512)
        self.port = self.listener.getsockname()[1]
        self.refused = 0  # connections no node accepted
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="balancer", daemon=True)
        self._thread.start()

    def _connect(self) -> socket.socket | None:
        # One starting point per connection, then every node once from there: drawing each
        # attempt from the shared cycle let concurrent connections interleave so that one
        # connection tried the dead node twice and never the live one.
        with self._lock:
            start = next(self._next)
        for offset in range(len(self.backends)):
            target = self.backends[(start + offset) % len(self.backends)]
            try:
                return socket.create_connection(target, timeout=2)
            except OSError:
                continue  # that node is down: the next one
        return None

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            self.refused += 1
            with contextlib.suppress(OSError):
                client.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Retry-After: 1\r\nConnection: close\r\n\r\n"
                )
            client.close()
            return
        upstream.settimeout(None)
        pair = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(pair), [], [], 60)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


@dataclass
class Node:
    """One gunicorn master with its workers, serving ``wsgi:app`` on a port of its own."""

    name: str
    port: int
    process: DemoProcess
    metrics_dir: Path
    log_file: Path | None = None
    log_handle: TextIO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The master's children (the workers), from /proc."""
        master = self.process.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(entry.name))
        return pids

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            for pid in self.worker_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.process.stop(timeout=10)
        if self.log_handle is not None:
            self.log_handle.close()
            self.log_handle = None

    def log_lines(self) -> list[str]:
        """Everything the node wrote (its whole log when it has a ``log_file``, else the
        last lines kept in memory): the drills print a failing request's part of it."""
        if self.log_file is not None and self.log_file.exists():
            return self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        return list(self.process.lines)


def node_environment(
    settings: Settings, metrics_dir: Path, config_file: Path | None = None
) -> dict[str, str]:
    """The node's environment: ``settings`` as ``YITONG_*`` variables, plus ``config_file``
    as ``YITONG_CONFIG`` for what variables cannot carry (the ``[directories.*]`` tables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("YITONG_", "RP_"))}
    base["PYTHONUNBUFFERED"] = "1"
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), base.get("PYTHONPATH")) if p)
    base["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if config_file is not None:
        base["YITONG_CONFIG"] = str(config_file)
    return {**base, **settings_environment(settings)}


def spawn_node(
    name: str,
    settings: Settings,
    port: int,
    workers: int,
    workdir: Path,
    *,
    echo: bool = False,
    keep_log: bool = False,
    config_file: Path | None = None,
) -> Node:
    """Start one node (not waiting).  Call from the thread that will outlive it: the child is
    told to stop when its creating thread ends (``PR_SET_DEATHSIG``).  ``keep_log`` writes its
    whole output to ``workdir/node-NAME.log`` (the fault drills read it back)."""
    metrics_dir = workdir / f"metrics-{name}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(GUNICORN_CONF),
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--name",
        f"yitong-{name}",
        "--control-socket",
        str(workdir / f"gunicorn-{name}.ctl"),
        "wsgi:app",
    ]
    log_file = workdir / f"node-{name}.log" if keep_log else None
    log = log_file.open("w", encoding="utf-8") if log_file is not None else None
    process = DemoProcess(
        f"node-{name}",
        argv,
        node_environment(settings, metrics_dir, config_file),
        f"http://127.0.0.1:{port}/readyz",
        echo=sys.stdout if echo else log,
    )
    return Node(name, port, process, metrics_dir, log_file, log)


def start_node(
    name: str, settings: Settings, port: int, workers: int, workdir: Path, *, echo: bool = False
) -> Node:
    """Start one node and wait until it is ready (``/readyz`` answers 200)."""
    node = spawn_node(name, settings, port, workers, workdir, echo=echo)
    try:
        node.process.wait_ready(180)
    except BaseException:
        node.stop()
        raise
    return node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    balancer: Balancer
    nodes: list[Node]
    settings: Settings
    others: list[DemoProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.balancer.port}"

    def stop(self) -> None:
        for p in self.others:
            p.stop()
        self.balancer.close()
        for node in self.nodes:
            node.stop()


def start_nodes(
    settings: Settings,
    *,
    balancer_port: int,
    node_ports: list[int],
    workers: int,
    workdir: Path,
    echo: bool = False,
    keep_log: bool = False,
    config_file: Path | None = None,
) -> Cluster:
    """The nodes (booting side by side) and the balancer in front of them."""
    nodes = [
        spawn_node(
            "AB"[i] if i < 2 else str(i),
            settings,
            port,
            workers,
            workdir,
            echo=echo,
            keep_log=keep_log,
            config_file=config_file,
        )
        for i, port in enumerate(node_ports)
    ]
    try:
        for node in nodes:
            node.process.wait_ready(180)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    balancer = Balancer(balancer_port, [("127.0.0.1", p) for p in node_ports])
    return Cluster(balancer, nodes, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "YITONG_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/yitong_cluster"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("YITONG_REDIS_URL", "redis://127.0.0.1:6379/1")
    )
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers per node")
    parser.add_argument("--port", type=int, default=5000, help="the balancer (the issuer)")
    args = parser.parse_args(argv)
    ensure_postgres_database(args.database_url)
    layout = DemoLayout(idp_port=args.port)
    workdir = Path(tempfile.mkdtemp(prefix="yitong-cluster-"))
    settings = demo_settings(
        layout,
        database_url=args.database_url,
        redis_url=args.redis_url,
        instance_dir=str(REPO_ROOT / ".cluster"),
    )
    state = setup(settings, layout)
    cluster = start_nodes(
        settings,
        balancer_port=args.port,
        node_ports=[args.port + 10, args.port + 11],
        workers=args.workers,
        workdir=workdir,
        echo=True,
    )
    try:
        with _sigterm_as_interrupt():  # SIGTERM stops everything as Ctrl-C does
            return _serve(cluster, state)
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _serve(cluster: Cluster, state: DemoState) -> int:
    """Start the relying parties, print the banner, run until a node dies."""
    cluster.others = start_rps(state, echo=sys.stdout)
    print("\n".join(describe(state)))
    print(f"  nodes: {', '.join(n.url for n in cluster.nodes)} behind {cluster.url}")
    print("  metrics: <node>/metrics   readiness: <node>/readyz   Ctrl-C stops everything\n")
    while all(n.process.alive() for n in cluster.nodes):
        time.sleep(0.5)
    return 1


def ensure_postgres_database(url: str) -> None:
    """Create the cluster's database when the server lacks it (``make cluster`` stays one step)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("postgresql"):
        return
    import psycopg

    admin = parsed.set(drivername="postgresql", database="postgres")
    try:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{parsed.database}"')
    except psycopg.Error as exc:
        raise DemoError(f"PostgreSQL at {parsed.host}:{parsed.port or 5432}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
