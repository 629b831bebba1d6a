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
* the node-oidc-provider peer (``../shared/peers``) doing the same requests.

Prints one table per target (ratio, target, met or not) and writes
``bench/results/targets-<time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import (
    DEFAULT_SERVER,
    REPO,
    SERVERS,
    BenchError,
    Browser,
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
    query_param,
    worker_rss_mb,
)
from bench.run import LOGIN, PASSWORD, REDIRECT_URI, Peer, _combine, _field, basic, pkce
from bench.token_endpoints import PEER_CC, post_unit, postgres_database

PEER_WEB = ("web-app", "web-secret-0123456789abcdef0123456789abcdef")


def get_bearer_unit(port: int, path: str, token: str, expect: bytes) -> Callable[[], Unit]:
    headers = {"Authorization": f"Bearer {token}"}

    def factory() -> Unit:
        def unit() -> int:
            r = http(port, "GET", path, headers=headers)
            if r.status != 200 or expect not in r.body:
                raise BenchError(f"GET {path}: {r.status} {r.body[:200]!r}")
            return 1

        return unit

    return factory


# ------------------------------------------------------------------ Yitong
class Yitong:
    """One instance with every client the targets need, served by ``kind``."""

    def __init__(self, workdir: Path, database_url: str | None, kind: str) -> None:
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
        self.user_id = self._citizen()
        self.cc_opaque = self._client("cc-opaque", "opaque", grant="client_credentials")
        self.cc_jwt = self._client("cc-jwt", "jwt", grant="client_credentials")
        self.portal = self._client("portal", "opaque", grant="code", first_party=True)
        self.native = self._client("native", "opaque", grant="code", public=True)
        self.server = gunicorn(
            "yitong",
            "wsgi:app",
            env=self.env,
            port=self.port,
            ready_path="/.well-known/openid-configuration",
            log=workdir / "yitong.log",
            kind=kind,
        )
        self.rss_at_start = worker_rss_mb(self.server)

    def _citizen(self) -> str:
        from idp.accounts.people import NewCitizen, register_citizen

        with self.services.db.transaction() as session:
            user = register_citizen(
                session,
                NewCitizen(
                    name="基准测试",
                    id_number="210302196312038696",
                    phone="13800138000",
                    email=LOGIN,
                    password=PASSWORD,
                ),
                vault=self.services.vault,
                passwords=self.services.passwords,
                actor="bench",
            )
            user.email_verified = True  # a login name once confirmed (bench.run.LOGIN)
            return user.id

    def _client(
        self, name: str, fmt: str, *, grant: str, public: bool = False, first_party: bool = False
    ) -> tuple[str, str | None]:
        from idp.oauth.clients import ClientSpec, create_client

        code = grant == "code"
        spec = ClientSpec(
            name=f"bench {name}",
            redirect_uris=[REDIRECT_URI] if code else [],
            scopes=["openid", "profile", "offline_access"] if code else ["api:read", "api:write"],
            grant_types=["authorization_code", "refresh_token"] if code else ["client_credentials"],
            access_token_format=fmt,
            resources=["https://api.bench.example/"],
            public=public,
            first_party=first_party,
        )
        with self.services.db.transaction() as session:
            row, secret = create_client(session, spec, actor="bench")
        return row.client_id, secret

    def mint(self, client: tuple[str, str | None], n: int, kind: str) -> list[str]:
        """``n`` offline grants of the citizen for ``client``, one token of ``kind`` each,
        written straight to the database (preparing thousands of code flows takes minutes)."""
        from idp.storage.models import Client, Grant
        from idp.storage.repo import new_id

        now = dt.datetime.now(dt.UTC)
        out: list[str] = []
        with self.services.db.transaction() as session:
            row = session.get(Client, client[0])
            assert row is not None
            user = None
            if kind == "access":
                from idp.storage.models import User

                user = session.get(User, self.user_id)
            for _ in range(n):
                grant = Grant(
                    id=new_id(),
                    user_id=self.user_id,
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
                session.flush()
                if kind == "refresh":
                    raw, _ = self.services.tokens.refresh_token(
                        session, grant, row, grant.scope, now
                    )
                else:
                    raw, _ = self.services.tokens.access_token(
                        session, grant, row, user, "openid profile", now
                    )
                out.append(raw)
        return out

    def signed_in_browser(self) -> Browser:
        b = Browser(self.port)
        page = b.get("/login")
        r = b.post(
            "/login",
            {
                "csrf_token": _field(page.text, "csrf_token"),
                "ix": "",
                "login": LOGIN,
                "password": PASSWORD,
            },
        )
        if r.status != 303 or "yitong_sso" not in b.cookies:
            raise BenchError(f"login: {r.status} {r.body[:300]!r}")
        return b

    def sso_flow_unit(self) -> Unit:
        b = self.signed_in_browser()
        client_id, secret = self.portal
        assert secret is not None

        def unit() -> int:
            verifier, challenge = pkce()
            params = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid profile",
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            r = b.get("/authorize?" + urllib.parse.urlencode(params))
            if r.status != 302 or not r.location.startswith(REDIRECT_URI):
                raise BenchError(f"authorize: {r.status} {r.header('location')}")
            t = http(
                self.port,
                "POST",
                "/token",
                headers=basic(client_id, secret),
                body={
                    "grant_type": "authorization_code",
                    "code": query_param(r.location, "code"),
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                },
            )
            if t.status != 200 or b"id_token" not in t.body:
                raise BenchError(f"token: {t.status} {t.body[:200]!r}")
            return 2

        return unit

    def login_unit(self) -> Unit:
        b = Browser(self.port)
        csrf = _field(b.get("/login").text, "csrf_token")

        def unit() -> int:
            r = b.post(
                "/login", {"csrf_token": csrf, "ix": "", "login": LOGIN, "password": PASSWORD}
            )
            if r.status != 303 or "yitong_sso" not in b.cookies:
                raise BenchError(f"login: {r.status} {r.body[:300]!r}")
            del b.cookies["yitong_sso"]
            return 1

        return unit

    def stop(self) -> None:
        self.server.stop()
        self.services.db.dispose()


def measure_yitong(
    y: Yitong, run: Callable[..., Result], only: set[str], seconds: float
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if "static" in only:
        run("discovery", get_unit(y.port, "/.well-known/openid-configuration"), y.server)
        run("jwks", get_unit(y.port, "/jwks"), y.server)
    form = {"grant_type": "client_credentials", "scope": "api:read"}
    cc_headers = basic(*y.cc_opaque)  # type: ignore[arg-type]
    if "token" in only:
        run(
            "cc opaque",
            post_unit(y.port, "/token", cc_headers, lambda: form, b"access_token"),
            y.server,
        )
        jwt_form = {**form, "resource": "https://api.bench.example/"}
        run(
            "cc jwt es256",
            post_unit(y.port, "/token", basic(*y.cc_jwt), lambda: jwt_form, b"access_token"),  # type: ignore[arg-type]
            y.server,
        )
        token = json.loads(http(y.port, "POST", "/token", headers=cc_headers, body=form).body)
        intro = {"token": token["access_token"]}
        run(
            "introspection",
            post_unit(y.port, "/introspect", cc_headers, lambda: intro, b"true"),
            y.server,
        )
        at = y.mint(y.portal, 1, "access")[0]
        run("userinfo", get_bearer_unit(y.port, "/userinfo", at, b"sub"), y.server)
        pool = y.mint(y.native, int(seconds * 500 + 1500), "refresh")
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
            "refresh rotation",
            post_unit(y.port, "/token", {}, next_form, b"refresh_token"),
            y.server,
        )
    if "sso" in only:
        run("sso flow", y.sso_flow_unit, y.server, unit_name="flow")
    if "login" in only:
        from bench.run import Yitong as FoundationYitong

        logins, hashes = [], []
        for _ in range(3):
            logins.append(
                measure("login", y.login_unit, y.server, seconds=seconds / 2, unit_name="login")
            )
            hashes.append(FoundationYitong.argon2_alone(y, seconds / 2))  # type: ignore[arg-type]
        run_results = [_combine("password login", logins), _combine("argon2id alone", hashes)]
        extra["login_rounds"] = [
            round(a.per_cpu_second / b.per_cpu_second, 3)
            for a, b in zip(logins, hashes, strict=True)
        ]
        extra["login_results"] = run_results
    extra["worker_rss_mb_at_start"] = round(y.rss_at_start, 1)
    extra["worker_rss_mb"] = round(worker_rss_mb(y.server), 1)
    return extra


# ------------------------------------------------------------------ the peer
def peer_token(peer: Peer, scope: str, prompt: str | None = None) -> dict[str, Any]:
    """A code flow on the peer (development login, consent), the token response."""
    b = Browser(peer.port)
    verifier, challenge = pkce()
    params = {
        "client_id": PEER_WEB[0],
        "response_type": "code",
        "scope": scope,
        "redirect_uri": peer.redirect_uri,
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if prompt:
        params["prompt"] = prompt
    r = b.get("/auth?" + urllib.parse.urlencode(params))
    for _ in range(8):
        if r.location.startswith(peer.redirect_uri):
            break
        page = b.get(r.location)
        if page.status in (302, 303):
            r = page
            continue
        m = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        if not m:
            raise BenchError(f"peer interaction page: {page.status}")
        login = 'name="login"' in page.text
        r = b.post(
            m.group(1),
            {"prompt": "login", "login": "citizen", "password": "any"}
            if login
            else {"prompt": "consent"},
        )
    t = http(
        peer.port,
        "POST",
        "/token",
        headers=basic(*PEER_WEB),
        body={
            "grant_type": "authorization_code",
            "code": query_param(r.location, "code"),
            "redirect_uri": peer.redirect_uri,
            "code_verifier": verifier,
        },
    )
    if t.status != 200:
        raise BenchError(f"peer token: {t.status} {t.body[:200]!r}")
    return dict(json.loads(t.body))


def start_peer(workdir: Path, alg: str) -> Peer:
    os.environ["ACCESS_TOKEN_ALG"] = alg  # read by the peer's server.js (inherited)
    try:
        return Peer(workdir / f"peer-{alg}.log")
    finally:
        os.environ.pop("ACCESS_TOKEN_ALG", None)


def measure_peer(workdir: Path, run: Callable[..., Result], only: set[str]) -> None:
    peer = start_peer(workdir, "ES256")
    try:
        if "static" in only:
            run(
                "peer discovery",
                get_unit(peer.port, "/.well-known/openid-configuration"),
                peer.server,
            )
            run("peer jwks", get_unit(peer.port, "/jwks"), peer.server)
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
                peer.server,
            )
            jwt_form = {
                "grant_type": "client_credentials",
                "scope": "api:read",
                "resource": "urn:peer:api",
            }
            run(
                "peer cc jwt es256",
                post_unit(peer.port, "/token", headers, lambda: jwt_form, b"access_token"),
                peer.server,
            )
            token = json.loads(http(peer.port, "POST", "/token", headers=headers, body=opaque).body)
            intro = {"token": token["access_token"]}
            run(
                "peer introspection",
                post_unit(peer.port, "/token/introspection", headers, lambda: intro, b"true"),
                peer.server,
            )
            tokens = peer_token(peer, "openid offline_access", prompt="consent")
            run(
                "peer userinfo",
                get_bearer_unit(peer.port, "/me", tokens["access_token"], b"sub"),
                peer.server,
            )
            rt = {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "scope": "offline_access",
            }
            run(
                "peer refresh",
                post_unit(peer.port, "/token", basic(*PEER_WEB), lambda: rt, b"refresh_token"),
                peer.server,
            )
        if "sso" in only:
            run("peer sso flow", peer.sso_flow_unit, peer.server, unit_name="flow")
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


def report(results: dict[str, Result], extra: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for ours, theirs, what, target, _aim in TARGETS:
        if ours in results and theirs in results:
            ratio = results[ours].per_cpu_second / results[theirs].per_cpu_second
            rows.append(
                {"target": what, "ratio": round(ratio, 2), "goal": target, "met": ratio >= target}
            )
    rss = extra.get("worker_rss_mb")
    if rss:
        rows.append(
            {
                "target": "worker memory after the run (MB)",
                "ratio": rss,
                "goal": 80,
                "met": rss < 80,
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
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--only", action="append", choices=("static", "token", "sso", "login"))
    args = parser.parse_args(argv)
    harness.KEEPALIVE = args.keepalive
    only = set(args.only or ("static", "token", "sso", "login"))
    pin_self()
    load = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-targets-"))
    results: dict[str, Result] = {}
    notes: dict[str, Any] = {
        "load_before": [round(x, 2) for x in load],
        "server": args.server,
        "keepalive": args.keepalive,
        "db": args.db,
    }

    def run(name: str, factory: Callable[[], Unit], server: Server, **kw: Any) -> Result:
        kw.setdefault("seconds", args.seconds)
        print(f"- {name}", file=sys.stderr, flush=True)
        result = measure(name, factory, server, threads=args.threads, **kw)
        results[name] = result
        return result

    drop: Callable[[], None] | None = None
    extra: dict[str, Any] = {}
    try:
        hello = gunicorn("hello", "bench.hello:app", log=workdir / "hello.log", kind=args.server)
        try:
            run("hello", get_unit(hello.port, "/"), hello)
        finally:
            hello.stop()
        url = None
        if args.db == "postgres":
            url, drop = postgres_database()
        y = Yitong(workdir, url, args.server)
        try:
            extra = measure_yitong(y, run, only, args.seconds)
        finally:
            y.stop()
        for r in extra.pop("login_results", []):
            results[r.name] = r
        if not args.no_peer:
            measure_peer(workdir, run, only)
    finally:
        notes["load_after"] = [round(x, 2) for x in load_average()]
        if drop is not None:
            drop()
        shutil.rmtree(workdir, ignore_errors=True)

    print("\n| measurement | per s (wall) | per server CPU-s | server CPU ms |")
    print("|---|---:|---:|---:|")
    for r in results.values():
        print(f"| {r.name} | {r.per_second:,.0f} | {r.per_cpu_second:,.0f} | {r.server_ms:.2f} |")
    rows = report(results, extra)
    print("\n| target | measured | goal | met |\n|---|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['target']} | {row['ratio']} | {row['goal']} | {'yes' if row['met'] else 'no'} |"
        )
    notes.update(extra)
    print(f"\nnotes: {notes}")
    out = (
        REPO
        / "bench"
        / "results"
        / f"targets-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {"results": [r.as_dict() for r in results.values()], "targets": rows, "notes": notes},
            indent=2,
        )
    )
    print(f"written to {out.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
