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
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    LOGIN,
    PASSWORD,
    REDIRECT_URI,
    Instance,
    Peer,
    Runner,
    form_field,
    login_against_argon2,
    pkce,
    redis_server,
)
from bench.harness import (
    BenchError,
    Browser,
    Exhausted,
    Unit,
    get_unit,
    measure,
    pin_self,
    query_param,
)


class Yitong(Instance):
    """The foundation instance: the citizen and one first-party code-flow client."""

    def __init__(self, workdir: Path, redis_url: str | None) -> None:
        super().__init__(workdir, None, redis_url)
        self.portal = self.client(
            "portal", first_party=True, scopes=["openid", "profile", "email", "phone"]
        )

    def token_codes(self, n: int, threads: int = 2) -> tuple[list[str], str, float]:
        """``n`` fresh codes (one PKCE pair), issued by the server through the SSO flow."""
        verifier, challenge = pkce()
        codes: list[str] = []
        lock = threading.Lock()
        started = time.perf_counter()

        def work(count: int) -> None:
            b = self.signed_in_browser()
            mine = [self.code_from(b, self.portal[0], challenge) for _ in range(count)]
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
                self.redeem(self.portal, code, verifier)
                return 1

            return unit

        return factory

    def full_flow_unit(self) -> Unit:
        def unit() -> int:
            b = Browser(self.port)
            verifier, challenge = pkce()
            r = b.get(self.authorize_path(self.portal[0], challenge))
            if r.status != 302 or "/login" not in r.location:
                raise BenchError(f"authorize: {r.status} {r.header('location')}")
            page = b.get(r.location)
            if page.status != 200:
                raise BenchError(f"login page: {page.status}")
            r = b.post(
                "/login",
                {
                    "csrf_token": form_field(page.text, "csrf_token"),
                    "ix": form_field(page.text, "ix"),
                    "login": LOGIN,
                    "password": PASSWORD,
                },
            )
            if r.status != 303 or "/authorize/resume" not in r.location:
                raise BenchError(f"login: {r.status} {r.header('location')} {r.body[:200]!r}")
            r = b.get(r.location)
            if r.status != 302 or not r.location.startswith(REDIRECT_URI):
                raise BenchError(f"resume: {r.status} {r.header('location')}")
            self.redeem(self.portal, query_param(r.location, "code"), verifier)
            return 5

        return unit


STEPS = ("discovery", "token", "sso", "flow", "login", "peer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--threads", type=int, default=4, help="load-generator threads")
    parser.add_argument("--redis", default="none", help="Redis URL; '' for its own; default none")
    parser.add_argument("--no-peer", action="store_true", help="skip node-oidc-provider")
    parser.add_argument(
        "--only", action="append", choices=STEPS, help="run only these (hello world always runs)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--app", default="wsgi:app", help="the WSGI app to serve as Yitong (to compare builds)"
    )
    args = parser.parse_args(argv)
    wanted = set(args.only or STEPS) - ({"peer"} if args.no_peer else set())
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than two CPUs; server and load generator share one", file=sys.stderr)
    pin_self()
    runner = Runner(args.seconds, args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-"))
    try:
        runner.hello(workdir)
        if wanted - {"peer"}:
            with redis_server(args.redis or None) as redis_url:
                y = Yitong(workdir, redis_url)
                try:
                    y.serve(workdir / "yitong.log", app=args.app)
                    _measure_yitong(y, wanted, runner)
                finally:
                    y.stop()
        if "peer" in wanted:
            try:
                peer = Peer(workdir / "peer.log")
            except (BenchError, OSError, subprocess.CalledProcessError) as exc:
                runner.notes["peer"] = f"not measured: {exc}"
                print(f"peer not measured: {exc}", file=sys.stderr)
            else:
                try:
                    runner.run(
                        "peer discovery",
                        get_unit(peer.port, "/.well-known/openid-configuration"),
                        peer.server,
                        seconds=args.seconds / 2,
                    )
                    runner.run(
                        "peer code flow, already signed in (auth, token)",
                        peer.sso_flow_unit,
                        peer.server,
                        unit_name="flow",
                    )
                    runner.run(
                        "peer code flow with dev login (auth, page, login, resume, token)",
                        peer.full_flow_unit,
                        peer.server,
                        unit_name="flow",
                    )
                finally:
                    peer.stop()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(runner.table())
    print()
    for k, v in runner.notes.items():
        print(f"{k}: {v}")
    runner.write("foundation")
    return 0


def _measure_yitong(y: Yitong, steps: set[str], runner: Runner) -> None:
    assert y.server is not None
    seconds, notes = runner.seconds, runner.notes
    if "discovery" in steps:
        runner.run(
            "Yitong discovery `GET /.well-known/openid-configuration`",
            get_unit(y.port, "/.well-known/openid-configuration"),
            y.server,
            seconds=seconds / 2,
        )
    if "token" in steps:
        codes, verifier, _prep = y.token_codes(300)
        calib = measure(
            "calibration",
            y.token_unit(codes, verifier),
            y.server,
            seconds=seconds,
            threads=runner.threads,
            warmup=0,
        )
        wanted = int(calib.per_second * seconds * 1.3) + 100
        print(f"- token endpoint: preparing {wanted} codes", file=sys.stderr, flush=True)
        codes, verifier, prep = y.token_codes(wanted)
        notes["codes_prepared"] = wanted
        notes["code_preparation_s"] = round(prep, 1)
        runner.run(
            "Yitong token endpoint (authorization_code)",
            y.token_unit(codes, verifier),
            y.server,
            warmup=0,
        )
    if "sso" in steps:
        runner.run(
            "Yitong code flow, already signed in (authorize, token)",
            y.sso_flow_factory(y.portal),
            y.server,
            unit_name="flow",
        )
    if "flow" in steps:
        runner.run(
            "Yitong code flow with password login (authorize, login page, login, resume, token)",
            y.full_flow_unit,
            y.server,
            unit_name="flow",
        )
    if "login" in steps:
        login, argon, rounds = login_against_argon2(y, runner, seconds / 2)
        notes["login_vs_argon2"] = round(login.per_cpu_second / argon.per_cpu_second, 3)
        notes["login_vs_argon2_rounds"] = rounds


if __name__ == "__main__":
    sys.exit(main())
