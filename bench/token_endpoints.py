"""Token-endpoint benchmark: refresh, introspection and client_credentials against their ceilings.

``python -m bench.token_endpoints [--seconds 8] [--db sqlite|postgres] [--no-peer]`` from the
repository root, on an otherwise idle machine with two cores.  Same method as ``bench.run``
(:mod:`bench.harness`): every server pinned to CPU 0, gunicorn with one sync worker for the
Python apps, the load generator pinned to CPU 1, results per CPU-second of the server process.

In one run it measures:

* the ceiling: the hello-world Flask app (``bench/hello.py``) served identically;
* Yitong (``wsgi:app``) with a fresh database (SQLite file, or a throw-away PostgreSQL
  database with ``--db postgres``; the PostgreSQL server's own CPU is *not* counted, as it is
  another process, so the SQLite figures are the conservative ones):

  - ``client_credentials`` with ``client_secret_basic``, opaque and JWT (ES256) access tokens;
  - refresh by a confidential client (no rotation: one refresh token used again and again);
  - refresh by a public client (rotation: every request spends a fresh refresh token, minted
    beforehand straight into the database);
  - introspection of an opaque access token by the client it was issued to;

* the node-oidc-provider peer (``../shared/peers/node-oidc-provider``): ``client_credentials``
  with an opaque token (``resource=urn:peer:api:opaque``) and with a JWT access token, RS256
  (its default) and ES256 (``ACCESS_TOKEN_ALG=ES256``, like ours); and introspection.

Results are printed as Markdown and written to ``bench/results/token-endpoints-<time>.json``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO,
    BenchError,
    Exhausted,
    Result,
    Server,
    Unit,
    free_port,
    get_unit,
    gunicorn,
    http,
    load_average,
    measure,
    pin_self,
)

PEER_CC = ("cc-client", "cc-secret-0123456789abcdef0123456789abcdef")


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def post_unit(
    port: int, path: str, headers: dict[str, str], form: Callable[[], dict[str, str]], expect: bytes
) -> Callable[[], Unit]:
    """A unit that POSTs ``form()`` and checks for ``expect`` in a 200 answer."""

    def factory() -> Unit:
        def unit() -> int:
            r = http(port, "POST", path, headers=headers, body=form())
            if r.status != 200 or expect not in r.body:
                raise BenchError(f"POST {path}: {r.status} {r.body[:200]!r}")
            return 1

        return unit

    return factory


# ------------------------------------------------------------------ Yitong
class Yitong:
    """A bench instance with its clients, tokens, and the server."""

    def __init__(self, workdir: Path, log: Path, database_url: str | None) -> None:
        from idp.app import build_services
        from idp.config import load_settings
        from idp.instance import initialize

        self.port = free_port()
        self.env = {
            "YITONG_ENV": "development",
            "YITONG_ISSUER": f"http://127.0.0.1:{self.port}",
            "YITONG_INSTANCE_DIR": str(workdir / "instance"),
            "YITONG_RATE_LIMIT_LOGIN_PER_MINUTE": "100000000",
            "YITONG_RATE_LIMIT_TOKEN_PER_MINUTE": "100000000",
            "YITONG_RATE_LIMIT_AUTHORIZE_PER_MINUTE": "100000000",
        }
        if database_url:
            self.env["YITONG_DATABASE_URL"] = database_url
        self.services = build_services(load_settings(environ=self.env))
        initialize(self.services.settings.resolved_database_url, self.services.keys)
        self.cc_opaque = self._client("cc-opaque", "opaque")
        self.cc_jwt = self._client("cc-jwt", "jwt")
        self.web = self._client("web", "opaque", code=True)
        self.native = self._client("native", "opaque", code=True, public=True)
        self.user_id: str | None = None
        self.server = gunicorn(
            "yitong",
            "wsgi:app",
            env=self.env,
            port=self.port,
            ready_path="/.well-known/openid-configuration",
            log=log,
        )

    def _client(
        self, name: str, fmt: str, *, code: bool = False, public: bool = False
    ) -> tuple[str, str | None]:
        from idp.oauth.clients import ClientSpec, create_client

        spec = ClientSpec(
            name=f"bench {name}",
            redirect_uris=["https://rp.bench.example/cb"] if code else [],
            scopes=["openid", "profile", "offline_access"] if code else ["api:read", "api:write"],
            grant_types=["authorization_code", "refresh_token"] if code else ["client_credentials"],
            access_token_format=fmt,
            resources=["https://api.bench.example/"],
            public=public,
        )
        with self.services.db.transaction() as session:
            row, secret = create_client(session, spec, actor="bench")
        return row.client_id, secret

    def _citizen(self) -> str:
        from idp.accounts.people import NewCitizen, register_citizen

        if self.user_id is None:
            with self.services.db.transaction() as session:
                user = register_citizen(
                    session,
                    NewCitizen(
                        name="基准测试",
                        id_number="210302196312038696",
                        phone="13900000001",
                        email="bench@example.cn",
                        password="Quiet-Lantern-River-42",
                    ),
                    vault=self.services.vault,
                    passwords=self.services.passwords,
                    actor="bench",
                )
                self.user_id = user.id
        return self.user_id

    def mint_refresh_tokens(self, client: tuple[str, str | None], n: int) -> list[str]:
        """``n`` offline grants of the bench citizen for ``client``, one refresh token each
        (written straight to the database: preparing 10 000 code flows would take minutes)."""
        from idp.storage.models import Client, Grant
        from idp.storage.repo import new_id

        user_id = self._citizen()
        now = dt.datetime.now(dt.UTC)
        tokens: list[str] = []
        with self.services.db.transaction() as session:
            row = session.get(Client, client[0])
            assert row is not None
            for _ in range(n):
                grant = Grant(
                    id=new_id(),
                    user_id=user_id,
                    client_id=row.client_id,
                    scope="openid profile offline_access",
                    offline=True,
                    auth_time=now,
                    acr="urn:yitong:acr:pwd",
                    amr=["pwd"],
                    created_at=now,
                    expires_at=now + dt.timedelta(days=30),
                )
                session.add(grant)
                raw, _ = self.services.tokens.refresh_token(session, grant, row, grant.scope, now)
                tokens.append(raw)
        return tokens

    def stop(self) -> None:
        self.server.stop()
        self.services.db.dispose()


def _measure_yitong(y: Yitong, run: Callable[..., Result], threads: int, seconds: float) -> None:
    cc_headers = basic(*y.cc_opaque)  # type: ignore[arg-type]
    form = {"grant_type": "client_credentials", "scope": "api:read"}
    run(
        "Yitong client_credentials, opaque token",
        post_unit(y.port, "/token", cc_headers, lambda: form, b"access_token"),
        y.server,
    )
    jwt_headers = basic(*y.cc_jwt)  # type: ignore[arg-type]
    jwt_form = {**form, "resource": "https://api.bench.example/"}
    run(
        "Yitong client_credentials, JWT access token (ES256)",
        post_unit(y.port, "/token", jwt_headers, lambda: jwt_form, b"access_token"),
        y.server,
    )
    # Introspection of one live opaque token by its own client.
    token = json.loads(http(y.port, "POST", "/token", headers=cc_headers, body=form).body)
    intro = {"token": token["access_token"]}
    run(
        "Yitong introspection (opaque token, client_secret_basic)",
        post_unit(y.port, "/introspect", cc_headers, lambda: intro, b"true"),
        y.server,
    )
    # Refresh, confidential client: the same refresh token every time (no rotation).
    web_rt = y.mint_refresh_tokens(y.web, 1)[0]
    web_form = {"grant_type": "refresh_token", "refresh_token": web_rt}
    run(
        "Yitong refresh, confidential client (no rotation, ID token RS256)",
        post_unit(y.port, "/token", basic(*y.web), lambda: web_form, b"id_token"),  # type: ignore[arg-type]
        y.server,
    )
    web_form_noid = {**web_form, "scope": "profile offline_access"}
    run(
        "Yitong refresh, confidential client, scope without openid (no ID token)",
        post_unit(y.port, "/token", basic(*y.web), lambda: web_form_noid, b"access_token"),  # type: ignore[arg-type]
        y.server,
    )
    # Refresh with rotation: each request spends one pre-minted refresh token.
    expected = int(seconds * 1500 + 3000)
    pool = y.mint_refresh_tokens(y.native, expected)
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
        "Yitong refresh, public client with rotation (no ID token)",
        post_unit(y.port, "/token", {}, next_form, b"refresh_token"),
        y.server,
    )
    del threads


# ------------------------------------------------------------------ the peer
def start_peer(log: Path, alg: str) -> Server:
    """node-oidc-provider, installed once by ``bench.run.Peer`` into the cache directory."""
    from bench.run import Peer

    probe = Peer(log)  # installs (npm ci) once and proves it starts
    probe.stop()
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "yitong-bench"
        / "node-oidc-provider"
    )
    port = free_port()
    node = shutil.which("node")
    assert node is not None
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "NODE_ENV": "production",
        "QUIET": "1",
        "ACCESS_TOKEN_ALG": alg,
    }
    return Server(
        f"peer-{alg}",
        [node, "server.js"],
        port,
        env=env,
        cwd=cache,
        ready_path="/.well-known/openid-configuration",
        log=log,
    )


def _measure_peer(workdir: Path, run: Callable[..., Result], seconds: float) -> None:
    headers = basic(*PEER_CC)
    opaque = {
        "grant_type": "client_credentials",
        "scope": "api:read",
        "resource": "urn:peer:api:opaque",
    }
    jwt_form = {"grant_type": "client_credentials", "scope": "api:read", "resource": "urn:peer:api"}
    for alg in ("RS256", "ES256"):
        peer = start_peer(workdir / f"peer-{alg}.log", alg)
        try:
            if alg == "ES256":
                run(
                    "peer client_credentials, opaque token",
                    post_unit(peer.port, "/token", headers, lambda: opaque, b"access_token"),
                    peer,
                )
                token = json.loads(
                    http(peer.port, "POST", "/token", headers=headers, body=opaque).body
                )
                intro = {"token": token["access_token"]}
                run(
                    "peer introspection (opaque token, client_secret_basic)",
                    post_unit(
                        peer.port, "/token/introspection", headers, lambda i=intro: i, b"true"
                    ),
                    peer,
                )
            run(
                f"peer client_credentials, JWT access token ({alg})",
                post_unit(peer.port, "/token", headers, lambda: jwt_form, b"access_token"),
                peer,
            )
        finally:
            peer.stop()
    del seconds


# ------------------------------------------------------------------ PostgreSQL
def postgres_database() -> tuple[str, Callable[[], None]]:
    import psycopg

    admin = os.environ.get("YITONG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"yitong_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


# ------------------------------------------------------------------ report
def table(results: list[Result], hello: Result) -> str:
    lines = [
        "| measurement | req/s (wall) | req per server CPU-s | server CPU ms per req | ratio to hello world |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.per_second:,.0f} | {r.per_cpu_second:,.0f} | {r.server_ms:.2f} | "
            f"{r.per_cpu_second / hello.per_cpu_second:.2f} |"
        )
    return "\n".join(lines)


def peer_ratios(results: list[Result]) -> list[str]:
    by = {r.name: r for r in results}
    pairs = [
        ("Yitong client_credentials, opaque token", "peer client_credentials, opaque token"),
        (
            "Yitong client_credentials, JWT access token (ES256)",
            "peer client_credentials, JWT access token (ES256)",
        ),
        (
            "Yitong client_credentials, JWT access token (ES256)",
            "peer client_credentials, JWT access token (RS256)",
        ),
        (
            "Yitong introspection (opaque token, client_secret_basic)",
            "peer introspection (opaque token, client_secret_basic)",
        ),
    ]
    out = []
    for ours, theirs in pairs:
        if ours in by and theirs in by:
            ratio = by[ours].per_cpu_second / by[theirs].per_cpu_second
            out.append(f"- {ours} / {theirs}: **{ratio:.2f}**")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    parser.add_argument("--threads", type=int, default=4, help="load-generator threads")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--no-peer", action="store_true", help="skip node-oidc-provider")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    pin_self()
    load = load_average()
    if load[0] > 0.5:
        print(f"warning: load average {load[0]:.2f}: figures will be noisy", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-tokens-"))
    results: list[Result] = []
    notes: dict[str, Any] = {"load_before": [round(x, 2) for x in load], "db": args.db}

    def run(name: str, factory: Callable[[], Unit], server: Server, **kw: Any) -> Result:
        kw.setdefault("seconds", args.seconds)
        print(f"- {name}", file=sys.stderr, flush=True)
        result = measure(name, factory, server, threads=args.threads, **kw)
        results.append(result)
        return result

    drop: Callable[[], None] | None = None
    try:
        hello_server = gunicorn("hello", "bench.hello:app", log=workdir / "hello.log")
        try:
            hello = run("Flask hello world `GET /`", get_unit(hello_server.port, "/"), hello_server)
        finally:
            hello_server.stop()
        url = None
        if args.db == "postgres":
            url, drop = postgres_database()
        y = Yitong(workdir, workdir / "yitong.log", url)
        try:
            _measure_yitong(y, run, args.threads, args.seconds)
        finally:
            y.stop()
        if not args.no_peer:
            try:
                _measure_peer(workdir, run, args.seconds)
            except (BenchError, OSError) as exc:
                notes["peer"] = f"not measured: {exc}"
    finally:
        notes["load_after"] = [round(x, 2) for x in load_average()]
        if drop is not None:
            drop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(results, hello))
    print()
    for line in peer_ratios(results):
        print(line)
    print(f"\nnotes: {notes}")
    out = (
        REPO
        / "bench"
        / "results"
        / f"token-endpoints-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"results": [r.as_dict() for r in results], "notes": notes}, indent=2)
    )
    print(f"written to {out.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
