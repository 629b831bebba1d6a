"""Timing side channels, measured (checklist 32 and 83), not asserted in tests.

``python -m bench.login_timing [--rounds 200]`` from the repository root.  The tests prove the
*work* is the same (one argon2id verification with the same parameters for a wrong password
and an unknown name; one constant-time comparison of two SHA-256 digests for a wrong client
secret and an unknown client); this measures what an attacker would see, in process, with the
requests interleaved so a noisy neighbour hits both sides alike.  It prints the medians and
their ratio; within ±10 % is the checklist's bar.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from idp.app import create_app
from idp.storage.migrate import upgrade
from tests.helpers import Citizen, RegisteredClient, csrf_token, make_settings


def _interleaved(
    rounds: int, one: Callable[[], object], other: Callable[[], object]
) -> tuple[float, float]:
    first: list[float] = []
    second: list[float] = []
    for _ in range(rounds):
        for call, bucket in ((one, first), (other, second)):
            started = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - started)
    return statistics.median(first), statistics.median(second)


def _report(name: str, a: float, b: float) -> None:
    ratio = a / b
    verdict = "within ±10 %" if 0.9 <= ratio <= 1.1 else "OUTSIDE ±10 %"
    print(f"| {name} | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms | {ratio:.3f} | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        app = create_app(
            make_settings(
                url,
                Path(tmp),
                rate_limit_login_per_minute=1_000_000,
            )
        )
        app.extensions["yitong"].keys.ensure_keys()
        citizen = Citizen.create(app)
        client_rp = RegisteredClient.create(app)
        http = app.test_client()

        def login(name: str) -> Callable[[], object]:
            def post() -> object:
                html = http.get("/login").get_data(as_text=True)
                form = {"csrf_token": csrf_token(html), "ix": "", "login": name}
                return http.post("/login", data={**form, "password": "wrong password 1234567"})

            return post

        def token(client_id: str) -> Callable[[], object]:
            basic = base64.b64encode(f"{client_id}:{'x' * 43}".encode()).decode()
            headers = {"Authorization": "Basic " + basic}
            return lambda: http.post(
                "/token", data={"grant_type": "client_credentials"}, headers=headers
            )

        print("| comparison | median A | median B | A/B | verdict |")
        print("|---|---|---|---|---|")
        # Few rounds of login: each costs an argon2id hash, and the lockout must not engage.
        rounds = max(10, args.rounds // 10)
        a, b = _interleaved(rounds, login(citizen.email), login("nobody-" + citizen.email))
        _report("login: wrong password vs unknown name", a, b)
        a, b = _interleaved(args.rounds, token(client_rp.client_id), token("no-such-client"))
        _report("token: wrong secret vs unknown client", a, b)


if __name__ == "__main__":
    main()
