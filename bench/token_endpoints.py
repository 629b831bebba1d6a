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
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from bench.common import (
    PEER_CC,
    RESOURCE,
    Instance,
    Peer,
    Runner,
    basic,
    database,
    post_unit,
    redis_server,
)
from bench.harness import BenchError, Exhausted, http, pin_self


class Yitong(Instance):
    """A bench instance with two ``client_credentials`` clients and two code-flow clients."""

    def __init__(self, workdir: Path, database_url: str | None, redis_url: str | None) -> None:
        super().__init__(workdir, database_url, redis_url)
        self.cc_opaque = self.client("cc-opaque", "opaque", grant="client_credentials")
        self.cc_jwt = self.client("cc-jwt", "jwt", grant="client_credentials")
        self.web = self.client("web")
        self.native = self.client("native", public=True)


def _measure_yitong(y: Yitong, runner: Runner) -> None:
    assert y.server is not None
    run, server = runner.run, y.server
    cc_headers = basic(*y.cc_opaque)  # type: ignore[arg-type]
    form = {"grant_type": "client_credentials", "scope": "api:read"}
    run(
        "Yitong client_credentials, opaque token",
        post_unit(y.port, "/token", cc_headers, lambda: form, b"access_token"),
        server,
    )
    jwt_headers = basic(*y.cc_jwt)  # type: ignore[arg-type]
    jwt_form = {**form, "resource": RESOURCE}
    run(
        "Yitong client_credentials, JWT access token (ES256)",
        post_unit(y.port, "/token", jwt_headers, lambda: jwt_form, b"access_token"),
        server,
    )
    # Introspection of one live opaque token by its own client.
    token = json.loads(http(y.port, "POST", "/token", headers=cc_headers, body=form).body)
    intro = {"token": token["access_token"]}
    run(
        "Yitong introspection (opaque token, client_secret_basic)",
        post_unit(y.port, "/introspect", cc_headers, lambda: intro, b"true"),
        server,
    )
    # Refresh, confidential client: the same refresh token every time (no rotation).
    web_rt = y.mint(y.web, 1)[0]
    web_form = {"grant_type": "refresh_token", "refresh_token": web_rt}
    web_headers = basic(*y.web)  # type: ignore[arg-type]
    run(
        "Yitong refresh, confidential client (no rotation, ID token RS256)",
        post_unit(y.port, "/token", web_headers, lambda: web_form, b"id_token"),
        server,
    )
    web_form_noid = {**web_form, "scope": "profile offline_access"}
    run(
        "Yitong refresh, confidential client, scope without openid (no ID token)",
        post_unit(y.port, "/token", web_headers, lambda: web_form_noid, b"access_token"),
        server,
    )
    # Refresh with rotation: each request spends one pre-minted refresh token.
    pool = y.mint(y.native, int(runner.seconds * 1500 + 3000))
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
        server,
    )


def _measure_peer(workdir: Path, runner: Runner) -> None:
    headers = basic(*PEER_CC)
    opaque = {
        "grant_type": "client_credentials",
        "scope": "api:read",
        "resource": "urn:peer:api:opaque",
    }
    jwt_form = {"grant_type": "client_credentials", "scope": "api:read", "resource": "urn:peer:api"}
    for alg in ("RS256", "ES256"):
        peer = Peer(workdir / f"peer-{alg}.log", access_token_alg=alg)
        try:
            if alg == "ES256":
                runner.run(
                    "peer client_credentials, opaque token",
                    post_unit(peer.port, "/token", headers, lambda: opaque, b"access_token"),
                    peer.server,
                )
                token = json.loads(
                    http(peer.port, "POST", "/token", headers=headers, body=opaque).body
                )
                intro = {"token": token["access_token"]}
                runner.run(
                    "peer introspection (opaque token, client_secret_basic)",
                    post_unit(
                        peer.port, "/token/introspection", headers, lambda i=intro: i, b"true"
                    ),
                    peer.server,
                )
            runner.run(
                f"peer client_credentials, JWT access token ({alg})",
                post_unit(peer.port, "/token", headers, lambda: jwt_form, b"access_token"),
                peer.server,
            )
        finally:
            peer.stop()


PAIRS = [
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    parser.add_argument("--threads", type=int, default=4, help="load-generator threads")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--redis", default="none", help="Redis URL; '' for its own; default none")
    parser.add_argument("--no-peer", action="store_true", help="skip node-oidc-provider")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    pin_self()
    runner = Runner(args.seconds, args.threads)
    runner.notes["db"] = args.db
    workdir = Path(tempfile.mkdtemp(prefix="yitong-bench-tokens-"))
    try:
        runner.hello(workdir)
        with database(args.db) as url, redis_server(args.redis or None) as redis_url:
            y = Yitong(workdir, url, redis_url)
            try:
                y.serve(workdir / "yitong.log")
                _measure_yitong(y, runner)
            finally:
                y.stop()
        if not args.no_peer:
            try:
                _measure_peer(workdir, runner)
            except (BenchError, OSError) as exc:
                runner.notes["peer"] = f"not measured: {exc}"
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(runner.table())
    print()
    by = runner.results
    for ours, theirs in PAIRS:
        if ours in by and theirs in by:
            ratio = by[ours].per_cpu_second / by[theirs].per_cpu_second
            print(f"- {ours} / {theirs}: **{ratio:.2f}**")
    print(f"\nnotes: {runner.notes}")
    runner.write("token-endpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
