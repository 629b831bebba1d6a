"""The hot paths of issue 12 (item 5), called in process: CPU per request, and where it goes.

``python -m bench.profile [--db postgres|sqlite] [--redis URL|none] [-n 2000]
[--only NAME ...] [--cprofile NAME] [--top 40]`` from the repository root.

The served benches (``bench.targets``) count a server's CPU from outside, which includes the
WSGI server's own work and swings with the load of a shared machine.  This one builds the
app with :func:`idp.app.create_app`, on the same instance as the served benches
(:class:`bench.common.Instance`, PostgreSQL and Redis by default), prepares every request's
WSGI environ beforehand and calls the app directly, reading this process's CPU clock
around each call only.  The median and the mean over ``-n`` calls are printed per scenario
(the tenth percentile is the figure that moves least when other work shares the core).
``--cprofile NAME`` profiles that scenario with a CPU clock and prints the functions with
the most time of their own and the most time below them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from werkzeug.test import EnvironBuilder

from bench.common import (
    LOGIN,
    PASSWORD,
    REDIRECT_URI,
    RESOURCE,
    Instance,
    basic,
    database,
    form_field,
    pkce,
    redis_server,
)

Environ = dict[str, Any]
SCENARIOS = ("cc_opaque", "cc_jwt", "introspection", "userinfo", "refresh", "sso", "login")


class App:
    """The WSGI app in this process, called with prepared environs."""

    def __init__(self, app: Any, host: str) -> None:
        self.app = app
        self.host = host

    def environ(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Environ:
        builder = EnvironBuilder(
            path=path,
            method=method,
            base_url=f"http://{self.host}",
            headers={"User-Agent": "yitong-bench", **(headers or {})},
            data=urllib.parse.urlencode(form) if form is not None else None,
            content_type="application/x-www-form-urlencoded" if form is not None else None,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        try:
            return dict(builder.get_environ())
        finally:
            builder.close()

    def call(self, environ: Environ) -> tuple[int, list[tuple[str, str]], bytes]:
        status: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(s: str, h: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(s)
            headers.extend(h)
            return lambda _data: None

        it = self.app(environ, start_response)
        try:
            body = b"".join(it)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
        return int(status[0].split()[0]), headers, body


def cookies_of(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for k, v in headers:
        if k.lower() == "set-cookie":
            name, _, value = v.partition(";")[0].partition("=")
            out[name.strip()] = value.strip()
    return out


def header(headers: Iterable[tuple[str, str]], name: str) -> str:
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    raise AssertionError(f"no {name} header")


class Scenarios:
    """Each scenario: a function that does one unit in process and checks its answer."""

    def __init__(self, inst: Instance, app: App, n: int) -> None:
        self.inst, self.app, self.n = inst, app, n
        self.cc_opaque = inst.client("cc-opaque", "opaque", grant="client_credentials")
        self.cc_jwt = inst.client("cc-jwt", "jwt", grant="client_credentials")
        self.portal = inst.client("portal", grant="code", first_party=True)
        self.native = inst.client("native", grant="code", public=True)

    def _post(
        self, path: str, headers: dict[str, str], form: dict[str, str], expect: bytes
    ) -> Callable[[], None]:
        environ = self.app.environ("POST", path, headers=headers, form=form)
        body = environ["wsgi.input"].read()

        def one() -> None:
            env = dict(environ)
            env["wsgi.input"] = io.BytesIO(body)
            status, _, out = self.app.call(env)
            assert status == 200 and expect in out, (status, out[:300])

        return one

    def cc_opaque_unit(self) -> Callable[[], None]:
        form = {"grant_type": "client_credentials", "scope": "api:read"}
        return self._post("/token", basic(*self.cc_opaque), form, b"access_token")  # type: ignore[arg-type]

    def cc_jwt_unit(self) -> Callable[[], None]:
        form = {"grant_type": "client_credentials", "scope": "api:read", "resource": RESOURCE}
        return self._post("/token", basic(*self.cc_jwt), form, b"access_token")  # type: ignore[arg-type]

    def introspection_unit(self) -> Callable[[], None]:
        headers = basic(*self.cc_opaque)  # type: ignore[arg-type]
        form = {"grant_type": "client_credentials", "scope": "api:read"}
        env = self.app.environ("POST", "/token", headers=headers, form=form)
        token = json.loads(self.app.call(env)[2])["access_token"]
        return self._post("/introspect", headers, {"token": token}, b'"active": true')

    def userinfo_unit(self) -> Callable[[], None]:
        at = self.inst.mint(self.portal, 1, "access")[0]
        environ = self.app.environ("GET", "/userinfo", headers={"Authorization": f"Bearer {at}"})

        def one() -> None:
            status, _, out = self.app.call(dict(environ))
            assert status == 200 and b"sub" in out, (status, out[:300])

        return one

    def refresh_unit(self) -> Callable[[], None]:
        pool = self.inst.mint(self.native, self.n + 20, "refresh")
        envs = [
            self.app.environ(
                "POST",
                "/token",
                form={
                    "grant_type": "refresh_token",
                    "refresh_token": rt,
                    "client_id": self.native[0],
                    "scope": "profile offline_access",
                },
            )
            for rt in pool
        ]

        def one() -> None:
            status, _, out = self.app.call(envs.pop())
            assert status == 200 and b"refresh_token" in out, (status, out[:300])

        return one

    def _login(self) -> tuple[Environ, dict[str, str]]:
        """A password login's POST, prepared after its page (and the page's cookies)."""
        _status, headers, page = self.app.call(self.app.environ("GET", "/login"))
        cookies = cookies_of(headers)
        form = {
            "csrf_token": form_field(page.decode(), "csrf_token"),
            "ix": "",
            "login": LOGIN,
            "password": PASSWORD,
        }
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        env = self.app.environ("POST", "/login", headers={"Cookie": cookie}, form=form)
        return env, cookies

    def sso_unit(self) -> Callable[[], None]:
        env, cookies = self._login()
        status, headers, out = self.app.call(env)
        assert status == 303, (status, out[:300])
        cookies.update(cookies_of(headers))
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        client_id, secret = self.portal
        assert secret is not None
        auth = basic(client_id, secret)
        prepared = []
        for _ in range(self.n + 20):
            verifier, challenge = pkce()
            a = self.app.environ(
                "GET", self.inst.authorize_path(client_id, challenge), headers={"Cookie": cookie}
            )
            prepared.append((a, verifier))

        def one() -> None:
            a, verifier = prepared.pop()
            status, headers, out = self.app.call(a)
            location = header(headers, "Location")
            assert status == 302 and location.startswith(REDIRECT_URI), (status, out[:300])
            code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
            t = self.app.environ(
                "POST",
                "/token",
                headers=auth,
                form={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                },
            )
            status, _, out = self.app.call(t)
            assert status == 200 and b"id_token" in out, (status, out[:300])

        return one

    def login_unit(self) -> Callable[[], None]:
        environ, _cookies = self._login()
        body = environ["wsgi.input"].read()

        def one() -> None:
            env = dict(environ)
            env["wsgi.input"] = io.BytesIO(body)
            status, _, out = self.app.call(env)
            assert status == 303, (status, out[:300])

        return one


@contextlib.contextmanager
def statements_to(db: Any, listener: Callable[..., None]) -> Iterator[None]:
    """``listener`` hears every SQL statement on each of the database's engines meanwhile."""
    for each in db.engines:
        event.listen(each, "before_cursor_execute", listener)
    try:
        yield
    finally:
        for each in db.engines:
            event.remove(each, "before_cursor_execute", listener)


def print_statements(one: Callable[[], None], db: Any) -> None:
    """The SQL statements of one unit (after a warm-up unit), each on a line of its own."""
    one()
    seen: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split())[: int(os.environ.get("SQL_WIDTH", "160"))])

    with statements_to(db, count):
        one()
    for i, statement in enumerate(seen, 1):
        print(f"{i:2}. {statement}")


def counts(one: Callable[[], None], db: Any, n: int = 50) -> tuple[float, float]:
    """Python function calls and SQL statements per unit: figures that do not move with the
    machine's load (the CPU clock does), so a change can be judged on a busy machine."""
    statements = [0]

    def count(*_a: Any) -> None:
        statements[0] += 1

    prof = cProfile.Profile()
    with statements_to(db, count):
        prof.enable()
        for _ in range(n):
            one()
        prof.disable()
    calls = sum(v[1] for v in pstats.Stats(prof).stats.values())  # type: ignore[attr-defined]
    return calls / n, statements[0] / n


def measure(one: Callable[[], None], n: int, warmup: int = 30) -> list[float]:
    """CPU µs of each of ``n`` calls (after ``warmup`` calls)."""
    for _ in range(warmup):
        one()
    out = []
    clock = time.process_time_ns
    for _ in range(n):
        t0 = clock()
        one()
        out.append((clock() - t0) / 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--redis", default=None, help="Redis URL; 'none' for none; default: own")
    parser.add_argument("-n", type=int, default=2000, help="calls per scenario")
    parser.add_argument("--only", action="append", choices=SCENARIOS)
    parser.add_argument("--cprofile", choices=SCENARIOS)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--callees", action="append", default=[], help="with --cprofile: whose")
    parser.add_argument("--dump", help="with --cprofile: write the raw profile here")
    parser.add_argument(
        "--sql", choices=SCENARIOS, help="print the SQL statements of one unit of this scenario"
    )
    args = parser.parse_args(argv)
    wanted = (
        [args.cprofile or args.sql] if args.cprofile or args.sql else (args.only or list(SCENARIOS))
    )
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-profile-"))
    try:
        with database(args.db) as url, redis_server(args.redis) as redis_url:
            inst = Instance(workdir, url, redis_url)
            from idp.app import create_app
            from idp.config import load_settings

            flask_app = create_app(load_settings(environ=inst.env))
            app = App(flask_app, f"127.0.0.1:{inst.port}")
            scenarios = Scenarios(inst, app, args.n + 100)
            print("| scenario | p10 CPU µs | median CPU µs | mean CPU µs | n | calls | SQL |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for name in wanted:
                if name == "login":
                    n = max(20, args.n // 20)
                elif name == "sso":
                    n = max(50, args.n // 4)
                else:
                    n = args.n
                one = getattr(scenarios, f"{name}_unit")()
                if args.sql:
                    print_statements(one, flask_app.extensions["yitong"].db)
                    continue
                if args.cprofile:
                    measure(one, 0)
                    prof = cProfile.Profile(time.process_time)
                    prof.enable()
                    for _ in range(n):
                        one()
                    prof.disable()
                    if args.dump:
                        prof.dump_stats(args.dump)
                    for key in ("tottime", "cumulative"):
                        s = io.StringIO()
                        pstats.Stats(prof, stream=s).sort_stats(key).print_stats(args.top)
                        print(s.getvalue())
                    for pattern in args.callees:
                        s = io.StringIO()
                        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_callees(pattern)
                        print(s.getvalue())
                    continue
                times = measure(one, n)
                calls, sql = counts(one, flask_app.extensions["yitong"].db, min(50, n))
                print(
                    f"| {name} | {statistics.quantiles(times, n=10)[0]:,.0f} | "
                    f"{statistics.median(times):,.0f} | "
                    f"{statistics.fmean(times):,.0f} | {n} | {calls:,.0f} | {sql:.1f} |",
                    flush=True,
                )
            inst.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
