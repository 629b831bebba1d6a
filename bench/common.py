"""What every Yitong bench sets up and how it measures, written once.

``bench.run`` (foundation), ``bench.token_endpoints``, ``bench.targets`` and ``bench.profile``
(in process) used to carry their own copies of the instance set-up (settings, citizen,
clients, refresh tokens minted straight into the database), of the throw-away PostgreSQL
database and of the measuring loop with its JSON report.  They differed in small ways (one
registered its citizen without a confirmed login name, one minted without flushing the
grant), so a figure of one bench did not always mean what the same row of another meant.
This module is the one copy: :class:`Instance`, :func:`postgres_database`,
:func:`redis_server`, the request units, and :class:`Runner`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    DEFAULT_SERVER,
    REPO,
    SERVER_CPU,
    BenchError,
    Browser,
    Result,
    Server,
    Unit,
    free_port,
    get_unit,
    gunicorn,
    http,
    load_average,
    measure,
    query_param,
    worker_memory_mb,
)

#: The bench citizen signs in with a confirmed e-mail address: a confirmed phone would be an
#: SMS second factor, and a login from a new browser would then ask for it.
LOGIN = "bench@example.cn"
PASSWORD = "Quiet-Lantern-River-42"
REDIRECT_URI = "https://rp.bench.example/cb"
RESOURCE = "https://api.bench.example/"
#: The peer's clients (``../shared/peers/node-oidc-provider/server.js``).
PEER_CC = ("cc-client", "cc-secret-0123456789abcdef0123456789abcdef")
PEER_WEB = ("web-app", "web-secret-0123456789abcdef0123456789abcdef")


# ------------------------------------------------------------------ small helpers
def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form_field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    if not m:
        raise BenchError(f"no {name} field in the page")
    return m.group(1).replace("&amp;", "&")


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


def get_bearer_unit(port: int, path: str, token: str, expect: bytes) -> Callable[[], Unit]:
    """A unit that GETs ``path`` with a Bearer token and checks for ``expect``."""
    headers = {"Authorization": f"Bearer {token}"}

    def factory() -> Unit:
        def unit() -> int:
            r = http(port, "GET", path, headers=headers)
            if r.status != 200 or expect not in r.body:
                raise BenchError(f"GET {path}: {r.status} {r.body[:200]!r}")
            return 1

        return unit

    return factory


# ------------------------------------------------------------------ services
def postgres_database() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database (URL, drop); the server from ``YITONG_TEST_POSTGRES_URL``."""
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


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database for ``postgres``, dropped afterwards; None (the instance's
    own SQLite file) for ``sqlite``."""
    if kind != "postgres":
        yield None
        return
    url, drop = postgres_database()
    try:
        yield url
    finally:
        drop()


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str | None]:
    """``url`` if given ("none": no Redis); else a throw-away ``redis-server`` of its own.

    Production keeps rate limits, lockout counters and replay caches in Redis
    (docs/deployment.md), so the benches measure with it unless told otherwise.
    """
    if url == "none":
        yield None
        return
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        print("warning: no redis-server; measuring without Redis", file=sys.stderr)
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------ Yitong
class Instance:
    """One Yitong instance for a bench: settings, a citizen, clients, tokens; serve it."""

    def __init__(
        self, workdir: Path, database_url: str | None = None, redis_url: str | None = None
    ) -> None:
        from idp.app import build_services
        from idp.config import load_settings
        from idp.instance import initialize

        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.env = {
            "YITONG_ENV": "development",
            "YITONG_ISSUER": self.issuer,
            "YITONG_INSTANCE_DIR": str(workdir / "instance"),
            # The benchmark is one client address hammering the server: lift the per-IP limits.
            "YITONG_RATE_LIMIT_LOGIN_PER_MINUTE": "100000000",
            "YITONG_RATE_LIMIT_TOKEN_PER_MINUTE": "100000000",
            "YITONG_RATE_LIMIT_AUTHORIZE_PER_MINUTE": "100000000",
        }
        if database_url:
            self.env["YITONG_DATABASE_URL"] = database_url
        if redis_url:
            self.env["YITONG_REDIS_URL"] = redis_url
        self.services = build_services(load_settings(environ=self.env))
        initialize(self.services.settings.resolved_database_url, self.services.keys)
        self.user_id = self._citizen()
        self.server: Server | None = None
        self.memory_at_start: dict[str, float] = {}

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
            user.email_verified = True  # a login name once confirmed (LOGIN)
            return user.id

    def client(
        self,
        name: str,
        fmt: str = "opaque",
        *,
        grant: str = "code",
        public: bool = False,
        first_party: bool = False,
        scopes: list[str] | None = None,
    ) -> tuple[str, str | None]:
        """A registered client: (client_id, secret or None for a public client)."""
        from idp.oauth.clients import ClientSpec, create_client

        code = grant == "code"
        spec = ClientSpec(
            name=f"bench {name}",
            redirect_uris=[REDIRECT_URI] if code else [],
            scopes=scopes
            or (["openid", "profile", "offline_access"] if code else ["api:read", "api:write"]),
            grant_types=["authorization_code", "refresh_token"] if code else ["client_credentials"],
            access_token_format=fmt,
            resources=[RESOURCE],
            public=public,
            first_party=first_party,
        )
        with self.services.db.transaction() as session:
            row, secret = create_client(session, spec, actor="bench")
        return row.client_id, secret

    def mint(self, client: tuple[str, str | None], n: int, kind: str = "refresh") -> list[str]:
        """``n`` offline grants of the citizen for ``client``, one token of ``kind``
        (``refresh`` or ``access``) each, written straight to the database: preparing
        thousands of code flows would take minutes."""
        from idp.storage.models import Client, Grant, User
        from idp.storage.repo import new_id

        now = dt.datetime.now(dt.UTC)
        out: list[str] = []
        with self.services.db.transaction() as session:
            row = session.get(Client, client[0])
            user = session.get(User, self.user_id)
            assert row is not None and user is not None
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

    def serve(self, log: Path, *, kind: str = DEFAULT_SERVER, app: str = "wsgi:app") -> Server:
        self.server = gunicorn(
            "yitong",
            app,
            env=self.env,
            port=self.port,
            ready_path="/.well-known/openid-configuration",
            log=log,
            kind=kind,
        )
        self.memory_at_start = worker_memory_mb(self.server)
        return self.server

    # -------------------------------------------------------------- browser flows
    def signed_in_browser(self) -> Browser:
        b = Browser(self.port)
        page = b.get("/login")
        r = b.post(
            "/login",
            {
                "csrf_token": form_field(page.text, "csrf_token"),
                "ix": "",
                "login": LOGIN,
                "password": PASSWORD,
            },
        )
        if r.status != 303 or "yitong_sso" not in b.cookies:
            raise BenchError(f"login: {r.status} {r.body[:300]!r}")
        return b

    def authorize_path(self, client_id: str, challenge: str, scope: str = "openid profile") -> str:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return "/authorize?" + urllib.parse.urlencode(params)

    def code_from(self, b: Browser, client_id: str, challenge: str) -> str:
        r = b.get(self.authorize_path(client_id, challenge))
        if r.status != 302 or not r.location.startswith(REDIRECT_URI):
            raise BenchError(f"authorize: {r.status} {r.header('location')}")
        return query_param(r.location, "code")

    def redeem(self, client: tuple[str, str | None], code: str, verifier: str) -> None:
        assert client[1] is not None
        r = http(
            self.port,
            "POST",
            "/token",
            headers=basic(client[0], client[1]),
            body={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        if r.status != 200 or b"id_token" not in r.body:
            raise BenchError(f"token: {r.status} {r.body[:200]!r}")

    def sso_flow_factory(self, client: tuple[str, str | None]) -> Callable[[], Unit]:
        """Open another service while signed in: authorize with the SSO cookie, then token."""

        def factory() -> Unit:
            b = self.signed_in_browser()

            def unit() -> int:
                verifier, challenge = pkce()
                self.redeem(client, self.code_from(b, client[0], challenge), verifier)
                return 2

            return unit

        return factory

    def redis_bytes_per_sso_session(self, client_id: str) -> int | None:
        """What one SSO session keeps in Redis (issue 12 item 5, goal under 2 KB): after a
        sign-in and one authorization with it, ``MEMORY USAGE`` of every key that names
        its sid, summed.  None without Redis."""
        from sqlalchemy import select

        from idp.storage.models import SsoSession
        from idp.storage.repo import digest

        hot = self.services.hot
        if hot is None:
            return None
        b = self.signed_in_browser()
        self.code_from(b, client_id, pkce()[1])
        with self.services.db.session() as session:
            sid = session.scalar(
                select(SsoSession.id).where(
                    SsoSession.token_digest == digest(b.cookies["yitong_sso"])
                )
            )
        keys = list(hot.client.scan_iter(match=f"{hot.namespace}:*{sid}*"))
        if not keys:
            raise BenchError(f"no Redis key names the session {sid}")
        return sum(int(hot.client.memory_usage(k) or 0) for k in keys)

    def login_unit(self) -> Unit:
        """One password login per unit, each by a new visitor (no SSO cookie)."""
        b = Browser(self.port)
        csrf = form_field(b.get("/login").text, "csrf_token")

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
        if self.server is not None:
            self.server.stop()
        self.services.db.dispose()


# ------------------------------------------------------------------ measuring and reporting
class Runner:
    """The measuring loop every bench shares: runs, keeps, prints and writes results."""

    def __init__(self, seconds: float, threads: int) -> None:
        self.seconds = seconds
        self.threads = threads
        self.results: dict[str, Result] = {}
        self.notes: dict[str, Any] = {"load_before": [round(x, 2) for x in load_average()]}

    def run(self, name: str, factory: Callable[[], Unit], server: Server, **kw: Any) -> Result:
        kw.setdefault("seconds", self.seconds)
        kw.setdefault("threads", self.threads)
        print(f"- {name}", file=sys.stderr, flush=True)
        result = measure(name, factory, server, **kw)
        self.results[name] = result
        return result

    def add(self, result: Result) -> None:
        self.results[result.name] = result

    def hello(self, workdir: Path, kind: str = DEFAULT_SERVER) -> Result:
        """The ceiling: the hello-world Flask app on the same WSGI server."""
        server = gunicorn("hello", "bench.hello:app", log=workdir / "hello.log", kind=kind)
        try:
            return self.run("hello", get_unit(server.port, "/"), server)
        finally:
            server.stop()

    def table(self, ceiling: str | None = "hello") -> str:
        head = "| measurement | unit | per s (wall) | per server CPU-s | server CPU ms |"
        lines = [head + (" ratio to hello world |" if ceiling else ""), "|---|---|---:|---:|---:|"]
        if ceiling:
            lines[1] += "---:|"
        base = self.results.get(ceiling) if ceiling else None
        for r in self.results.values():
            row = (
                f"| {r.name} | {r.unit_name} | {r.per_second:,.0f} | {r.per_cpu_second:,.0f} | "
                f"{r.server_ms:.2f} |"
            )
            if ceiling:
                row += f" {r.per_cpu_second / base.per_cpu_second:.2f} |" if base else " |"
            lines.append(row)
        return "\n".join(lines)

    def write(self, prefix: str, **extra: Any) -> Path:
        """``bench/results/<prefix>-<time>.json`` with every result, the notes and ``extra``."""
        self.notes["load_after"] = [round(x, 2) for x in load_average()]
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = out / f"{prefix}-{stamp}.json"
        payload = {
            "when": stamp,
            "seconds": self.seconds,
            "threads": self.threads,
            "cpus": os.cpu_count(),
            "results": [r.as_dict() for r in self.results.values()],
            "notes": self.notes,
            **extra,
        }
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print(f"written to {path.relative_to(REPO)}", file=sys.stderr)
        return path


def combine(name: str, parts: list[Result]) -> Result:
    """Interleaved rounds of one measurement as one result."""
    return Result(
        name,
        sum(p.units for p in parts),
        sum(p.requests for p in parts),
        sum(p.errors for p in parts),
        sum(p.wall for p in parts),
        sum(p.server_cpu for p in parts),
        parts[0].unit_name,
    )


# ------------------------------------------------------------------ argon2id alone
def argon2_alone(settings: Any, seconds: float) -> Result:
    """``Passwords.verify`` in a loop, in a process pinned to the server's CPU.

    The same CPU as the server, because argon2id at 19 MiB lives in the shared L3 cache
    and memory bandwidth: measured elsewhere it would not be the same hash.
    """
    argv = [
        sys.executable,
        "-m",
        "bench.common",
        "--argon2-alone",
        str(seconds),
        str(settings.argon2_memory_kib),
        str(settings.argon2_time_cost),
        str(settings.argon2_parallelism),
    ]
    taskset = shutil.which("taskset")
    if taskset:
        argv = [taskset, "-c", str(SERVER_CPU), *argv]
    out = subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True).stdout
    n, wall, cpu = json.loads(out)
    return Result("argon2id alone", n, 0, 0, wall, cpu, "verify")


def _argon2_child(seconds: float, memory_kib: int, time_cost: int, parallelism: int) -> None:
    """``--argon2-alone``: verify in a loop; print [count, wall s, CPU s] as JSON."""
    from idp.accounts.passwords import Passwords

    passwords = Passwords(memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism)
    stored = passwords.hash(PASSWORD)
    for _ in range(5):
        passwords.verify(stored, PASSWORD)
    cpu0, t0 = time.process_time(), time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        if not passwords.verify(stored, PASSWORD):
            raise BenchError("argon2 verify failed")
        n += 1
    print(json.dumps([n, time.perf_counter() - t0, time.process_time() - cpu0]))


def login_against_argon2(
    instance: Instance, runner: Runner, seconds: float, rounds: int = 3
) -> tuple[Result, Result, list[float]]:
    """Password logins and argon2id alone in interleaved rounds, so that drifting load on
    the machine hits both sides alike: (logins, hashes, ratio of each round)."""
    assert instance.server is not None
    logins: list[Result] = []
    hashes: list[Result] = []
    for i in range(rounds):
        print(f"- login, round {i + 1}", file=sys.stderr, flush=True)
        logins.append(
            measure(
                "login",
                instance.login_unit,
                instance.server,
                seconds=seconds,
                threads=runner.threads,
                unit_name="login",
            )
        )
        print(f"- argon2id alone, round {i + 1}", file=sys.stderr, flush=True)
        hashes.append(argon2_alone(instance.services.settings, seconds))
    login = combine("password login", logins)
    argon = combine("argon2id alone", hashes)
    runner.add(login)
    runner.add(argon)
    ratios = [
        round(a.per_cpu_second / b.per_cpu_second, 3) for a, b in zip(logins, hashes, strict=True)
    ]
    return login, argon, ratios


# ------------------------------------------------------------------ the peer
def _peer_source() -> Path:
    """``shared/peers/node-oidc-provider`` beside the checkout (or beside a worktree's parent);
    ``YITONG_BENCH_PEER`` names another copy."""
    if os.environ.get("YITONG_BENCH_PEER"):
        return Path(os.environ["YITONG_BENCH_PEER"])
    for base in (REPO.parent, *REPO.parent.parents):
        candidate = base / "shared" / "peers" / "node-oidc-provider"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "peers" / "node-oidc-provider"


PEER_SOURCE = _peer_source()
PEER_FILES = ("package.json", "package-lock.json", "server.js", "run.sh")


class Peer:
    """node-oidc-provider on its own port, pinned like the others (``ACCESS_TOKEN_ALG``
    picks its JWT access-token algorithm)."""

    def __init__(self, log: Path, access_token_alg: str = "ES256") -> None:
        node = shutil.which("node")
        npm = shutil.which("npm")
        if not (node and npm and PEER_SOURCE.is_dir()):
            raise BenchError(f"node/npm or {PEER_SOURCE} missing")
        cache = (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            / "yitong-bench"
            / "node-oidc-provider"
        )
        cache.mkdir(parents=True, exist_ok=True)
        changed = False
        for name in PEER_FILES:
            src, dst = PEER_SOURCE / name, cache / name
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                dst.write_bytes(src.read_bytes())
                changed = True
        if changed or not (cache / "node_modules" / "oidc-provider").is_dir():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=cache,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.port = free_port()
        self.redirect_uri = f"http://127.0.0.1:{self.port + 1}/cb"
        env = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "NODE_ENV": "production",
            "QUIET": "1",
            "ACCESS_TOKEN_ALG": access_token_alg,
        }
        self.server = Server(
            "peer",
            [node, "server.js"],
            self.port,
            env=env,
            cwd=cache,
            ready_path="/.well-known/openid-configuration",
            log=log,
        )

    def auth_path(self, challenge: str, scope: str = "openid", prompt: str | None = None) -> str:
        params = {
            "client_id": PEER_WEB[0],
            "response_type": "code",
            "scope": scope,
            "redirect_uri": self.redirect_uri,
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if prompt:
            params["prompt"] = prompt
        return "/auth?" + urllib.parse.urlencode(params)

    def redeem(self, code: str, verifier: str) -> dict[str, Any]:
        r = http(
            self.port,
            "POST",
            "/token",
            headers=basic(*PEER_WEB),
            body={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
        )
        if r.status != 200 or b"access_token" not in r.body:
            raise BenchError(f"peer token: {r.status} {r.body[:200]!r}")
        return dict(json.loads(r.body))

    def login(
        self, b: Browser, challenge: str, scope: str = "openid", prompt: str | None = None
    ) -> str:
        """Dev interactions (any login, consent when asked); returns the code."""
        r = b.get(self.auth_path(challenge, scope, prompt))
        for _ in range(8):
            if r.status in (302, 303) and r.location.startswith(self.redirect_uri):
                return query_param(r.location, "code")
            page = b.get(r.location)
            if page.status in (302, 303):
                r = page
                continue
            m = re.search(r'<form[^>]*action="([^"]+)"', page.text)
            if page.status != 200 or not m:
                raise BenchError(f"peer interaction page: {page.status}")
            login = 'name="login"' in page.text
            r = b.post(
                m.group(1),
                {"prompt": "login", "login": "citizen", "password": "any"}
                if login
                else {"prompt": "consent"},
            )
        raise BenchError("peer: no code after eight interaction steps")

    def tokens(self, scope: str, prompt: str | None = None) -> dict[str, Any]:
        """A whole code flow on the peer: its token response."""
        verifier, challenge = pkce()
        return self.redeem(self.login(Browser(self.port), challenge, scope, prompt), verifier)

    def full_flow_unit(self) -> Unit:
        def unit() -> int:
            self.tokens("openid")
            return 5

        return unit

    def sso_flow_unit(self) -> Unit:
        b = Browser(self.port)
        verifier, challenge = pkce()
        self.redeem(self.login(b, challenge), verifier)

        def unit() -> int:
            verifier, challenge = pkce()
            r = b.get(self.auth_path(challenge))
            if r.status != 303 or not r.location.startswith(self.redirect_uri):
                raise BenchError(f"peer sso auth: {r.status} {r.header('location')}")
            self.redeem(query_param(r.location, "code"), verifier)
            return 2

        return unit

    def stop(self) -> None:
        self.server.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--argon2-alone"]:
        seconds_, *params = sys.argv[2:]
        _argon2_child(float(seconds_), *(int(p) for p in params))
