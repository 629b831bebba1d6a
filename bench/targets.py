"""The speed targets of issue 12 (item 5), measured side by side in one run.

``python -m bench.targets [--seconds 5] [--server sync|gthread|granian] [--keepalive]
[--db postgres|sqlite] [--no-peer] [--only NAME ...]`` from the repository root.

Same method as the other benches (:mod:`bench.harness`): every server pinned to CPU 0, one
worker, the load generator pinned to CPU 1, results per CPU-second of the server.  In one run:

* the ceiling: the hello-world Flask app (``bench/hello.py``) on the same WSGI server;
* Yitong (``wsgi:app``, PostgreSQL by default) — discovery and JWKS (against hello world);
  ``client_credentials`` with opaque and JWT (ES256) access tokens, introspection, userinfo,
  refresh with rotation (public client), and "open another service while signed in"
  (``/authorize`` with the SSO cookie, then the token request) — against the peer; the
  password login against argon2id alone on the same core; the worker's memory afterwards;
  what one SSO session keeps in Redis (``MEMORY USAGE`` of its keys, goal under 2 KB);
* the node-oidc-provider peer (``../shared/peers``) doing the same requests.

Prints one table per target (ratio, target, met or not) and writes
``bench/results/targets-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench import harness
from bench.common import (
    PEER_CC,
    PEER_WEB,
    RESOURCE,
    Instance,
    Peer,
    Runner,
    basic,
    database,
    get_bearer_unit,
    login_against_argon2,
    post_unit,
    redis_server,
)
from bench.harness import (
    DEFAULT_SERVER,
    SERVERS,
    Exhausted,
    Result,
    get_unit,
    http,
    pin_self,
    worker_memory_mb,
)


class Yitong(Instance):
    """One instance with every client the targets need."""

    def __init__(self, workdir: Path, database_url: str | None, redis_url: str | None) -> None:
        super().__init__(workdir, database_url, redis_url)
        self.cc_opaque = self.client("cc-opaque", "opaque", grant="client_credentials")
        self.cc_jwt = self.client("cc-jwt", "jwt", grant="client_credentials")
        self.portal = self.client("portal", grant="code", first_party=True)
        self.native = self.client("native", grant="code", public=True)


def measure_yitong(y: Yitong, runner: Runner, only: set[str]) -> dict[str, Any]:
    assert y.server is not None
    run, server, seconds = runner.run, y.server, runner.seconds
    extra: dict[str, Any] = {}
    if "static" in only:
        run("discovery", get_unit(y.port, "/.well-known/openid-configuration"), server)
        run("jwks", get_unit(y.port, "/jwks"), server)
    form = {"grant_type": "client_credentials", "scope": "api:read"}
    cc_headers = basic(*y.cc_opaque)  # type: ignore[arg-type]
    if "token" in only:
        run(
            "cc opaque",
            post_unit(y.port, "/token", cc_headers, lambda: form, b"access_token"),
            server,
        )
        jwt_form = {**form, "resource": RESOURCE}
        jwt_headers = basic(*y.cc_jwt)  # type: ignore[arg-type]
        run(
            "cc jwt es256",
            post_unit(y.port, "/token", jwt_headers, lambda: jwt_form, b"access_token"),
            server,
        )
        token = json.loads(http(y.port, "POST", "/token", headers=cc_headers, body=form).body)
        intro = {"token": token["access_token"]}
        run(
            "introspection",
            post_unit(y.port, "/introspect", cc_headers, lambda: intro, b"true"),
            server,
        )
        at = y.mint(y.portal, 1, "access")[0]
        run("userinfo", get_bearer_unit(y.port, "/userinfo", at, b"sub"), server)
        pool = y.mint(y.native, int(seconds * 600 + 1500), "refresh")
        lock = threading.Lock()

        def next_form() -> dict[str, str]:
            with lock:
                if not pool:
                    raise Exhausted
                rt = pool.pop()
            return {
                "grant_type": "refresh_token",
                "refresh_token": rt,
                "client_id": y.native[0],
                "scope": "profile offline_access",
            }

        run(
            "refresh rotation", post_unit(y.port, "/token", {}, next_form, b"refresh_token"), server
        )
    if "sso" in only:
        run("sso flow", y.sso_flow_factory(y.portal), server, unit_name="flow")
        extra["redis_bytes_per_sso_session"] = y.redis_bytes_per_sso_session(y.portal[0])
    if "login" in only:
        _, _, extra["login_rounds"] = login_against_argon2(y, runner, seconds / 2)
    extra["worker_mb_at_start"] = {k: round(v, 1) for k, v in y.memory_at_start.items()}
    extra["worker_mb"] = {k: round(v, 1) for k, v in worker_memory_mb(server).items()}
    return extra


# ------------------------------------------------------------------ the peer
def measure_peer(workdir: Path, runner: Runner, only: set[str]) -> None:
    peer = Peer(workdir / "peer.log", access_token_alg="ES256")
    run, server = runner.run, peer.server
    try:
        if "static" in only:
            run("peer discovery", get_unit(peer.port, "/.well-known/openid-configuration"), server)
            run("peer jwks", get_unit(peer.port, "/jwks"), server)
        if "token" in only:
            headers = basic(*PEER_CC)
            opaque = {
                "grant_type": "client_credentials",
                "scope": "api:read",
                "resource": "urn:peer:api:opaque",
            }
            run(
                "peer cc opaque",
                post_unit(peer.port, "/token", headers, lambda: opaque, b"access_token"),
                server,
            )
            jwt_form = {
                "grant_type": "client_credentials",
                "scope": "api:read",
                "resource": "urn:peer:api",
            }
            run(
                "peer cc jwt es256",
                post_unit(peer.port, "/token", headers, lambda: jwt_form, b"access_token"),
                server,
            )
            token = json.loads(http(peer.port, "POST", "/token", headers=headers, body=opaque).body)
            intro = {"token": token["access_token"]}
            run(
                "peer introspection",
                post_unit(peer.port, "/token/introspection", headers, lambda: intro, b"true"),
                server,
            )
            tokens = peer.tokens("openid offline_access", prompt="consent")
            run(
                "peer userinfo",
                get_bearer_unit(peer.port, "/me", tokens["access_token"], b"sub"),
                server,
            )
            rt = {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "scope": "offline_access",
            }
            run(
                "peer refresh",
                post_unit(peer.port, "/token", basic(*PEER_WEB), lambda: rt, b"refresh_token"),
                server,
            )
        if "sso" in only:
            run("peer sso flow", peer.sso_flow_unit, server, unit_name="flow")
    finally:
        peer.stop()


# ------------------------------------------------------------------ report
TARGETS: list[tuple[str, str, str, float, str]] = [
    # (ours, theirs, what, target, aim)
    ("cc opaque", "peer cc opaque", "client credentials, opaque token", 0.6, "1.0"),
    ("cc jwt es256", "peer cc jwt es256", "client credentials, JWT ES256", 0.6, "1.0"),
    ("refresh rotation", "peer refresh", "refresh (ours rotates; the peer's does not)", 0.6, "1.0"),
    ("introspection", "peer introspection", "introspection", 0.6, "1.0"),
    ("userinfo", "peer userinfo", "userinfo", 0.6, "1.0"),
    ("sso flow", "peer sso flow", "open another service while signed in", 0.5, ""),
    ("discovery", "hello", "discovery / hello world", 0.9, ""),
    ("jwks", "hello", "JWKS / hello world", 0.9, ""),
    ("password login", "argon2id alone", "password login / argon2id alone", 0.8, ""),
]


#: "A worker under 80 MB" (issue 12 item 5), read strictly: its resident size (RSS), every
#: page it maps counted in full.  PSS (shared pages divided among the processes sharing them)
#: and USS (its private pages) are reported beside it, not judged: with ``--preload`` the
#: workers of a node share the code the arbiter loaded, so PSS is what a worker costs the
#: machine, but a PSS under 80 MB does not make the RSS target met.
MEMORY_TARGET = 80


def report(results: dict[str, Result], extra: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for ours, theirs, what, target, _aim in TARGETS:
        if ours in results and theirs in results:
            ratio = results[ours].per_cpu_second / results[theirs].per_cpu_second
            rows.append(
                {"target": what, "ratio": round(ratio, 2), "goal": target, "met": ratio >= target}
            )
    memory = extra.get("worker_mb")
    if memory:
        rows.append(
            {
                "target": "worker memory after the run, RSS (MB; the target's figure)",
                "ratio": memory["rss"],
                "goal": MEMORY_TARGET,
                "met": memory["rss"] < MEMORY_TARGET,
            }
        )
        for figure in ("pss", "uss"):
            rows.append(
                {
                    "target": f"worker memory after the run, {figure.upper()} (MB; not judged)",
                    "ratio": memory[figure],
                    "goal": None,
                    "met": None,
                }
            )
    per_session = extra.get("redis_bytes_per_sso_session")
    if per_session:
        rows.append(
            {
                "target": "Redis per SSO session (bytes)",
                "ratio": per_session,
                "goal": 2048,
                "met": per_session < 2048,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    parser.add_argument("--keepalive", action="store_true", help="clients keep connections open")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--redis", default=None, help="Redis URL, or 'none'; default: its own")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--only", action="append", choices=("static", "token", "sso", "login"))
    args = parser.parse_args(argv)
    harness.KEEPALIVE = args.keepalive
    only = set(args.only or ("static", "token", "sso", "login"))
    pin_self()
    runner = Runner(args.seconds, args.threads)
    runner.notes.update(server=args.server, keepalive=args.keepalive, db=args.db)
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-targets-"))
    extra: dict[str, Any] = {}
    try:
        runner.hello(workdir, args.server)
        with database(args.db) as url, redis_server(args.redis) as redis_url:
            runner.notes["redis"] = bool(redis_url)
            y = Yitong(workdir, url, redis_url)
            try:
                y.serve(workdir / "yitong.log", kind=args.server)
                extra = measure_yitong(y, runner, only)
            finally:
                y.stop()
        if not args.no_peer:
            measure_peer(workdir, runner, only)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(runner.table())
    rows = report(runner.results, extra)
    print("\n| target | measured | goal | met |\n|---|---:|---:|---|")
    for row in rows:
        met = "—" if row["met"] is None else "yes" if row["met"] else "no"
        goal = "—" if row["goal"] is None else row["goal"]
        print(f"| {row['target']} | {row['ratio']} | {goal} | {met} |")
    runner.notes.update(extra)
    print(f"\nnotes: {runner.notes}")
    runner.write("targets", targets=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
