"""Memory of one Yitong node: each gunicorn worker's RSS, PSS and USS, loaded per worker and
preloaded in the arbiter (issue 12 item 5; docs/benchmarks.md, "Memory").

``python -m bench.memory [--workers 4] [--seconds 2] [--db postgres|sqlite] [--redis URL]``
from the repository root.

The node is the production one (``examples/gunicorn_conf.py``, sync workers, Prometheus in
multiprocess mode), started twice on the same instance: once with ``preload_app`` off (each
worker imports and builds the app itself) and once on (the arbiter does, before forking).
After start and again after mixed traffic (discovery, JWKS, client credentials, introspection,
userinfo, a signed-in authorization, password logins) spread over the workers, it reads
``/proc/<pid>/smaps_rollup`` of the arbiter and every worker.

RSS counts every page a process maps in full, so preloading cannot lower it; PSS divides a
shared page among its sharers (the node's PSS sum is the memory it really uses); USS is a
process's private pages.  The figure that answers "what does one more worker cost" is a
worker's PSS (or, marginally, its USS).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Runner, basic, database, get_bearer_unit, post_unit, redis_server
from bench.harness import (
    BenchError,
    Server,
    get_unit,
    http,
    pin_self,
    process_memory_mb,
    server_workers,
)
from bench.targets import Yitong


def start_node(y: Yitong, workdir: Path, workers: int, preload: bool) -> Server:
    """The production gunicorn command on ``y``'s port, with ``preload_app`` as asked."""
    conf = workdir / f"gunicorn-preload-{preload}.py"
    conf.write_text(f"from examples.gunicorn_conf import *\npreload_app = {preload}\n")
    metrics = workdir / f"metrics-{preload}"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir()
    argv = [sys.executable, "-m", "gunicorn", "--config", str(conf), "--workers", str(workers)]
    argv += ["--bind", f"127.0.0.1:{y.port}", "wsgi:app"]
    env = {**y.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    server = Server(
        f"node preload={preload}",
        argv,
        y.port,
        env=env,
        ready_path="/.well-known/openid-configuration",
        log=workdir / f"node-{preload}.log",
    )
    settle(server, workers)
    return server


def settle(server: Server, workers: int, timeout: float = 180.0) -> None:
    """Wait until ``workers`` workers run and have finished loading (their memory is steady):
    the first one answering says nothing of the others, which build the app on one core."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        pids = server_workers(server)
        total = sum(process_memory_mb(pid)["rss"] for pid in pids)
        if len(pids) == workers and abs(total - last) < 1.0:
            return
        last = total
        time.sleep(1.0)
    raise BenchError(f"{server.name}: {workers} workers not settled in {timeout:.0f} s")


def traffic(y: Yitong, runner: Runner, server: Server) -> None:
    """One round of every kind of request the benches measure (threads spread them out)."""
    cc = basic(*y.cc_opaque)  # type: ignore[arg-type]
    form = {"grant_type": "client_credentials", "scope": "api:read"}
    token = json.loads(http(y.port, "POST", "/token", headers=cc, body=form).body)
    intro = {"token": token["access_token"]}
    at = y.mint(y.portal, 1, "access")[0]
    units: list[tuple[str, Callable[[], Any]]] = [
        ("discovery", get_unit(y.port, "/.well-known/openid-configuration")),
        ("jwks", get_unit(y.port, "/jwks")),
        ("cc opaque", post_unit(y.port, "/token", cc, lambda: form, b"access_token")),
        ("introspection", post_unit(y.port, "/introspect", cc, lambda: intro, b"true")),
        ("userinfo", get_bearer_unit(y.port, "/userinfo", at, b"sub")),
        ("sso flow", y.sso_flow_factory(y.portal)),
        ("password login", y.login_unit),
    ]
    for name, factory in units:
        runner.run(name, factory, server)


def snapshot(server: Server) -> dict[str, Any]:
    """The arbiter's and each worker's memory (MB), and the node's PSS sum."""
    arbiter = process_memory_mb(server.proc.pid)
    workers = [process_memory_mb(pid) for pid in server_workers(server)]
    return {
        "arbiter": arbiter,
        "workers": workers,
        "node_pss": arbiter["pss"] + sum(w["pss"] for w in workers),
    }


def describe(mode: str, when: str, snap: dict[str, Any]) -> str:
    rows = []
    for figure in ("rss", "pss", "uss"):
        values = [w[figure] for w in snap["workers"]]
        rows.append(f"{statistics.mean(values):.1f} (max {max(values):.1f})")
    arbiter = snap["arbiter"]
    return (
        f"| {mode} | {when} | {' | '.join(rows)} | "
        f"{arbiter['rss']:.1f} / {arbiter['pss']:.1f} | {snap['node_pss']:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="per kind of request")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--redis", default=None, help="Redis URL, or 'none'; default: its own")
    args = parser.parse_args(argv)
    pin_self()
    runner = Runner(args.seconds, threads=args.workers)
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-memory-"))
    results: dict[str, Any] = {}
    lines = []
    try:
        with database(args.db) as url, redis_server(args.redis) as redis_url:
            y = Yitong(workdir, url, redis_url)
            try:
                for preload in (False, True):
                    mode = "preloaded" if preload else "per worker"
                    server = start_node(y, workdir, args.workers, preload)
                    try:
                        start = snapshot(server)
                        traffic(y, runner, server)
                        after = snapshot(server)
                    finally:
                        server.stop()
                    results[mode] = {"at_start": start, "after": after}
                    lines += [describe(mode, "start", start), describe(mode, "after", after)]
            finally:
                y.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{args.workers} sync workers, {args.db}; MB per worker: mean (max)\n")
    print(
        "| app loaded | when | worker RSS | worker PSS | worker USS | arbiter RSS / PSS | node PSS |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    runner.notes.update(workers=args.workers, db=args.db)
    runner.write("memory", memory=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
