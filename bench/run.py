"""Foundation benchmark: token endpoint, code flow and password login, against their ceilings.

``python -m bench.run [--seconds 10] [--no-peer] [--threads 4]`` (``make bench``), from the
repository root, on an otherwise idle machine with at least two cores.  In one run it measures:

* the ceiling: a hello-world Flask app (``bench/hello.py``) under gunicorn, one sync worker;
* Yitong (``wsgi:app``) served the same way, with a fresh SQLite instance:
  discovery (the framework floor of our app), the token endpoint redeeming codes prepared
  beforehand, the single-sign-on code flow (already signed in: authorize -> code -> token),
  the whole code flow for a first-party client (authorize -> login page -> login POST ->
  resume -> code -> token; no consent page), and the password login alone;
* argon2id alone (``Passwords.verify`` at the configured parameters, in this process): the
  rate no password login can beat; the login should reach at least 0.8 of it;
* the node-oidc-provider peer (``../shared/peers/node-oidc-provider``, copied to a cache
  directory and installed with ``npm ci`` once) with the same flows, unless ``--no-peer``.

Every figure is per CPU-second of the server (see :mod:`bench.harness`) and as a ratio to the
hello-world app measured in the same run.  Results are printed as Markdown and written to
``bench/results/foundation-<time>.json``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO,
    SERVER_CPU,
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
)


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
PEER_SECRET = "web-secret-0123456789abcdef0123456789abcdef"

#: The bench citizen signs in with a confirmed e-mail address: a confirmed phone would be an
#: SMS second factor, and a login from a new browser would then ask for it.
LOGIN = "bench@example.cn"
PASSWORD = "Quiet-Lantern-River-42"
REDIRECT_URI = "https://rp.bench.example/cb"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    if not m:
        raise BenchError(f"no {name} field in the page")
    return m.group(1).replace("&amp;", "&")


# ------------------------------------------------------------------ Yitong
class Yitong:
    """A bench instance: settings, a citizen, a first-party client, the server."""

    def __init__(self, workdir: Path, log: Path, app: str = "wsgi:app") -> None:
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
        settings = load_settings(environ=self.env)
        self.services = build_services(settings)
        initialize(settings.resolved_database_url, self.services.keys)
        self.client_id, self.secret = self._register()
        self.server = gunicorn(
            "yitong",
            app,
            env=self.env,
            port=self.port,
            ready_path="/.well-known/openid-configuration",
            log=log,
        )

    def _register(self) -> tuple[str, str]:
        from idp.accounts.people import NewCitizen, register_citizen
        from idp.oauth.clients import ClientSpec, create_client

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
            user.email_verified = True  # a login name once confirmed
            client, secret = create_client(
                session,
                ClientSpec(
                    name="Bench portal",
                    redirect_uris=[REDIRECT_URI],
                    scopes=["openid", "profile", "email", "phone"],
                    first_party=True,
                ),
                actor="bench",
            )
        assert secret is not None
        return client.client_id, secret

    def authorize_path(self, challenge: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile",
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return "/authorize?" + urllib.parse.urlencode(params)

    def redeem(self, code: str, verifier: str) -> None:
        r = http(
            self.port,
            "POST",
            "/token",
            headers=basic(self.client_id, self.secret),
            body={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        if r.status != 200 or b"id_token" not in r.body:
            raise BenchError(f"token: {r.status} {r.body[:200]!r}")

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

    def code_from(self, b: Browser, challenge: str) -> str:
        r = b.get(self.authorize_path(challenge))
        if r.status != 302 or not r.location.startswith(REDIRECT_URI):
            raise BenchError(f"authorize: {r.status} {r.header('location')}")
        return query_param(r.location, "code")

    # -------------------------------------------------------------- units
    def token_codes(self, n: int, threads: int = 2) -> tuple[list[str], str, float]:
        """``n`` fresh codes (one PKCE pair), issued by the server through the SSO flow."""
        verifier, challenge = pkce()
        codes: list[str] = []
        lock = threading.Lock()
        started = time.perf_counter()

        def work(count: int) -> None:
            b = self.signed_in_browser()
            mine = [self.code_from(b, challenge) for _ in range(count)]
            with lock:
                codes.extend(mine)

        pool = [
            threading.Thread(target=work, args=(n // threads + (i < n % threads),))
            for i in range(threads)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if len(codes) != n:
            raise BenchError(f"prepared {len(codes)} of {n} codes")
        return codes, verifier, time.perf_counter() - started

    def token_unit(self, codes: list[str], verifier: str) -> Callable[[], Unit]:
        def factory() -> Unit:
            def unit() -> int:
                try:
                    code = codes.pop()
                except IndexError:
                    raise Exhausted from None
                self.redeem(code, verifier)
                return 1

            return unit

        return factory

    def sso_flow_unit(self) -> Unit:
        b = self.signed_in_browser()

        def unit() -> int:
            verifier, challenge = pkce()
            self.redeem(self.code_from(b, challenge), verifier)
            return 2

        return unit

    def full_flow_unit(self) -> Unit:
        def unit() -> int:
            b = Browser(self.port)
            verifier, challenge = pkce()
            r = b.get(self.authorize_path(challenge))
            if r.status != 302 or "/login" not in r.location:
                raise BenchError(f"authorize: {r.status} {r.header('location')}")
            page = b.get(r.location)
            if page.status != 200:
                raise BenchError(f"login page: {page.status}")
            r = b.post(
                "/login",
                {
                    "csrf_token": _field(page.text, "csrf_token"),
                    "ix": _field(page.text, "ix"),
                    "login": LOGIN,
                    "password": PASSWORD,
                },
            )
            if r.status != 303 or "/authorize/resume" not in r.location:
                raise BenchError(f"login: {r.status} {r.header('location')} {r.body[:200]!r}")
            r = b.get(r.location)
            if r.status != 302 or not r.location.startswith(REDIRECT_URI):
                raise BenchError(f"resume: {r.status} {r.header('location')}")
            self.redeem(query_param(r.location, "code"), verifier)
            return 5

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
            del b.cookies["yitong_sso"]  # every login starts without a session, as a new visitor's
            return 1

        return unit

    def argon2_alone(self, seconds: float) -> Result:
        """``Passwords.verify`` in a loop, in a process pinned to the server's CPU.

        The same CPU as the server, because argon2id at 19 MiB lives in the shared L3 cache
        and memory bandwidth: measured elsewhere it would not be the same hash.
        """
        s = self.services.settings
        argv = [
            sys.executable,
            "-m",
            "bench.run",
            "--argon2-alone",
            str(seconds),
            str(s.argon2_memory_kib),
            str(s.argon2_time_cost),
            str(s.argon2_parallelism),
        ]
        taskset = shutil.which("taskset")
        if taskset:
            argv = [taskset, "-c", str(SERVER_CPU), *argv]
        out = subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True).stdout
        n, wall, cpu = json.loads(out)
        return Result(
            "argon2id verify alone (same CPU as the server)", n, 0, 0, wall, cpu, "verify"
        )

    def stop(self) -> None:
        self.server.stop()
        self.services.db.dispose()


# ------------------------------------------------------------------ the peer
class Peer:
    """node-oidc-provider on its own port, pinned like the others."""

    def __init__(self, log: Path) -> None:
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
        env = {"HOST": "127.0.0.1", "PORT": str(self.port), "NODE_ENV": "production", "QUIET": "1"}
        self.server = Server(
            "peer",
            [node, "server.js"],
            self.port,
            env=env,
            cwd=cache,
            ready_path="/.well-known/openid-configuration",
            log=log,
        )

    def auth_path(self, challenge: str) -> str:
        params = {
            "client_id": "web-app",
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": self.redirect_uri,
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return "/auth?" + urllib.parse.urlencode(params)

    def redeem(self, code: str, verifier: str) -> None:
        r = http(
            self.port,
            "POST",
            "/token",
            headers=basic("web-app", PEER_SECRET),
            body={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
        )
        if r.status != 200 or b"id_token" not in r.body:
            raise BenchError(f"peer token: {r.status} {r.body[:200]!r}")

    def login(self, b: Browser, challenge: str) -> str:
        """Dev interactions: any login; returns the code."""
        r = b.get(self.auth_path(challenge))
        if r.status != 303 or "/interaction/" not in r.location:
            raise BenchError(f"peer auth: {r.status} {r.header('location')}")
        page = b.get(r.location)
        m = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        if page.status != 200 or not m:
            raise BenchError(f"peer login page: {page.status}")
        r = b.post(m.group(1), {"prompt": "login", "login": "citizen", "password": "any"})
        if r.status != 303:
            raise BenchError(f"peer login: {r.status}")
        r = b.get(r.location)
        if r.status != 303 or not r.location.startswith(self.redirect_uri):
            raise BenchError(f"peer resume: {r.status} {r.header('location')}")
        return query_param(r.location, "code")

    def full_flow_unit(self) -> Unit:
        def unit() -> int:
            verifier, challenge = pkce()
            self.redeem(self.login(Browser(self.port), challenge), verifier)
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


# ------------------------------------------------------------------ report
def table(results: list[Result], hello: Result) -> str:
    """Markdown: each row per CPU-second of its server, and as a ratio to hello world."""
    lines = [
        "| measurement | unit | units/s (wall) | units per server CPU-s | server CPU ms per unit "
        "| HTTP requests per server CPU-s | ratio to hello world |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        reqs = f"{r.requests / r.server_cpu:,.0f}" if r.requests and r.server_cpu else "–"
        ratio = r.per_cpu_second / hello.per_cpu_second
        lines.append(
            f"| {r.name} | {r.unit_name} | {r.per_second:,.0f} | {r.per_cpu_second:,.0f} | "
            f"{r.server_ms:.2f} | {reqs} | {ratio:.3g} |"
        )
    return "\n".join(lines)


STEPS = ("discovery", "token", "sso", "flow", "login", "peer")
LOGIN_ROUNDS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--threads", type=int, default=4, help="load-generator threads")
    parser.add_argument("--no-peer", action="store_true", help="skip node-oidc-provider")
    parser.add_argument(
        "--only", action="append", choices=STEPS, help="run only these (hello world always runs)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--app", default="wsgi:app", help="the WSGI app to serve as Yitong (to compare builds)"
    )
    args = parser.parse_args(argv)
    wanted_steps = set(args.only or STEPS) - ({"peer"} if args.no_peer else set())
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than two CPUs; server and load generator share one", file=sys.stderr)
    pin_self()
    load = load_average()
    if load[0] > 0.5:
        print(f"warning: load average {load[0]:.2f}: figures will be noisy", file=sys.stderr)
    seconds, threads = args.seconds, args.threads
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-"))
    results: list[Result] = []
    notes: dict[str, Any] = {"load_before": [round(x, 2) for x in load]}

    def step(text: str) -> None:
        print(f"- {text}", file=sys.stderr, flush=True)

    def run(name: str, factory: Callable[[], Unit], server: Server, **kw: Any) -> Result:
        kw.setdefault("seconds", seconds)
        result = measure(name, factory, server, threads=threads, **kw)
        results.append(result)
        return result

    try:
        step("hello world")
        hello_server = gunicorn("hello", "bench.hello:app", log=workdir / "hello.log")
        try:
            hello = run("Flask hello world `GET /`", get_unit(hello_server.port, "/"), hello_server)
        finally:
            hello_server.stop()

        if wanted_steps - {"peer"}:
            step("Yitong")
            y = Yitong(workdir, workdir / "yitong.log", app=args.app)
            try:
                _measure_yitong(y, wanted_steps, results, run, step, notes, seconds, threads)
            finally:
                y.stop()

        if "peer" in wanted_steps:
            step("node-oidc-provider peer")
            try:
                peer = Peer(workdir / "peer.log")
            except (BenchError, OSError, subprocess.CalledProcessError) as exc:
                notes["peer"] = f"not measured: {exc}"
                print(f"peer not measured: {exc}", file=sys.stderr)
            else:
                try:
                    run(
                        "peer discovery",
                        get_unit(peer.port, "/.well-known/openid-configuration"),
                        peer.server,
                        seconds=seconds / 2,
                    )
                    run(
                        "peer code flow, already signed in (auth, token)",
                        peer.sso_flow_unit,
                        peer.server,
                        unit_name="flow",
                    )
                    run(
                        "peer code flow with dev login (auth, page, login, resume, token)",
                        peer.full_flow_unit,
                        peer.server,
                        unit_name="flow",
                    )
                finally:
                    peer.stop()
    finally:
        notes["load_after"] = [round(x, 2) for x in load_average()]
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(results, hello))
    print()
    if "login_vs_argon2" in notes:
        print(
            f"password login / argon2id alone (per CPU-second): {notes['login_vs_argon2']:.2f}"
            " (target >= 0.8)"
        )
    for k, v in notes.items():
        if k != "login_vs_argon2":
            print(f"{k}: {v}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"foundation-{stamp}.json"
    report = {
        "when": stamp,
        "seconds": seconds,
        "threads": threads,
        "cpus": os.cpu_count(),
        "results": [r.as_dict() for r in results],
        "notes": notes,
    }
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {out.relative_to(REPO)}")
    return 0


def _measure_yitong(
    y: Yitong,
    steps: set[str],
    results: list[Result],
    run: Callable[..., Result],
    step: Callable[[str], None],
    notes: dict[str, Any],
    seconds: float,
    threads: int,
) -> None:
    if "discovery" in steps:
        run(
            "Yitong discovery `GET /.well-known/openid-configuration`",
            get_unit(y.port, "/.well-known/openid-configuration"),
            y.server,
            seconds=seconds / 2,
        )
    if "token" in steps:
        step("token endpoint: calibrating")
        codes, verifier, _prep = y.token_codes(300)
        calib = measure(
            "calibration",
            y.token_unit(codes, verifier),
            y.server,
            seconds=seconds,
            threads=threads,
            warmup=0,
        )
        wanted = int(calib.per_second * seconds * 1.3) + 100
        step(f"token endpoint: preparing {wanted} codes")
        codes, verifier, prep = y.token_codes(wanted)
        notes["codes_prepared"] = wanted
        notes["code_preparation_s"] = round(prep, 1)
        step("token endpoint")
        run(
            "Yitong token endpoint (authorization_code)",
            y.token_unit(codes, verifier),
            y.server,
            warmup=0,
        )
    if "sso" in steps:
        step("SSO code flow")
        run(
            "Yitong code flow, already signed in (authorize, token)",
            y.sso_flow_unit,
            y.server,
            unit_name="flow",
        )
    if "flow" in steps:
        step("full code flow")
        run(
            "Yitong code flow with password login (authorize, login page, login, resume, token)",
            y.full_flow_unit,
            y.server,
            unit_name="flow",
        )
    if "login" in steps:
        # Interleaved rounds, so that drifting load on the machine hits both sides alike.
        logins: list[Result] = []
        hashes: list[Result] = []
        for i in range(LOGIN_ROUNDS):
            step(f"login alone, round {i + 1}")
            logins.append(
                measure(
                    "login",
                    y.login_unit,
                    y.server,
                    seconds=seconds / 2,
                    threads=threads,
                    unit_name="login",
                )
            )
            step(f"argon2id alone, round {i + 1}")
            hashes.append(y.argon2_alone(seconds / 2))
        login = _combine("Yitong password login alone (`POST /login`)", logins)
        argon = _combine("argon2id verify alone (same CPU as the server)", hashes)
        results += [login, argon]
        notes["login_vs_argon2"] = round(login.per_cpu_second / argon.per_cpu_second, 3)
        notes["login_vs_argon2_rounds"] = [
            round(a.per_cpu_second / b.per_cpu_second, 3)
            for a, b in zip(logins, hashes, strict=True)
        ]


def _combine(name: str, parts: list[Result]) -> Result:
    return Result(
        name,
        sum(p.units for p in parts),
        sum(p.requests for p in parts),
        sum(p.errors for p in parts),
        sum(p.wall for p in parts),
        sum(p.server_cpu for p in parts),
        parts[0].unit_name,
    )


def argon2_child(seconds: float, memory_kib: int, time_cost: int, parallelism: int) -> None:
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--argon2-alone"]:
        seconds_, *params = sys.argv[2:]
        argon2_child(float(seconds_), *(int(p) for p in params))
        sys.exit(0)
    sys.exit(main())
