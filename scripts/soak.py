"""Soak: mixed traffic for a bounded time against two nodes on PostgreSQL and Redis (issue 12).

    make soak                      # 600 s (SOAK_SECONDS=...)
    python scripts/soak.py --seconds 600 --threads 4

Starts the production shape of ``make cluster`` (two gunicorn nodes behind the round-robin
balancer, a fresh database ``yitong_soak`` on the local PostgreSQL, Redis database 2), then
runs ``--threads`` visitors doing full rounds (:func:`examples.traffic.mixed_round`: password
login with the authorization code and PKCE, code redemption, refresh, introspection, UserInfo,
a second sign-in through the SSO cookie, logout).  Every minute it samples each node's
workers' resident memory.  At the end it prints one summary (also as JSON with ``--json``):
rounds, requests per step, errors, duplicates, audit verification and the memory trend.
Pass criteria (docs/benchmarks.md): zero errors, zero duplicates, the audit chain verifies,
memory flat (last sample within 10 % + 5 MB of the first after warm-up).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.cluster import ensure_postgres_database, free_port, start_nodes
from examples.traffic import Ledger, Relying, Visitor, run_load
from idp.demo import DemoLayout, demo_settings, setup


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description="bounded soak against two nodes")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per node")
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/yitong_soak"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import psycopg
    import redis
    from sqlalchemy.engine import make_url

    parsed = make_url(args.database_url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:  # a fresh database each run
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    ensure_postgres_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()

    workdir = Path(tempfile.mkdtemp(prefix="yitong-soak-"))
    port = free_port()
    layout = DemoLayout(idp_port=port, portal_port=free_port(), service_port=free_port())
    settings = demo_settings(
        layout,
        database_url=args.database_url,
        redis_url=args.redis_url,
        instance_dir=str(workdir / "instance"),
        # One client address sends everything: the per-address limits are not under test.
        rate_limit_login_per_minute=1_000_000,
        rate_limit_token_per_minute=1_000_000,
        rate_limit_authorize_per_minute=1_000_000,
    )
    state = setup(settings, layout)
    cluster = start_nodes(
        settings,
        balancer_port=port,
        node_ports=[free_port(), free_port()],
        workers=args.workers,
        workdir=workdir,
    )
    rp = Relying(state.portal.client_id, state.portal.client_secret, state.portal.url + "/callback")
    ledger = Ledger()
    memory: list[dict[str, float]] = []
    stop = time.monotonic() + args.seconds

    def sample() -> None:
        memory.append(
            {
                f"{n.name}:{pid}": round(rss_mb(pid), 1)
                for n in cluster.nodes
                for pid in n.worker_pids()
            }
        )

    try:
        import threading

        def sampler() -> None:
            while time.monotonic() < stop:
                sample()
                time.sleep(min(60.0, max(1.0, args.seconds / 10)))

        threading.Thread(target=sampler, daemon=True).start()
        started = time.monotonic()
        refusals = run_load(
            lambda: Visitor(cluster.url, rp, state.citizen_login["email"], state.password, ledger),
            threads=args.threads,
            seconds=args.seconds,
            ledger=ledger,
        )
        elapsed = time.monotonic() - started
        sample()
        from click.testing import CliRunner

        from examples.cluster import node_environment
        from idp.cli import main as yitong

        env = {
            k: v for k, v in node_environment(settings, workdir).items() if k.startswith("YITONG_")
        }
        audit = CliRunner().invoke(yitong, ["audit", "verify"], env=env)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    requests_total = sum(ledger.statuses.values())
    first = sum(memory[1].values()) / max(1, len(memory[1])) if len(memory) > 1 else 0.0
    last = sum(memory[-1].values()) / max(1, len(memory[-1])) if memory else 0.0
    summary = {
        "seconds": round(elapsed, 1),
        "threads": args.threads,
        "workers_per_node": args.workers,
        "rounds": ledger.completed["sign_out"],
        "requests": requests_total,
        "requests_per_second": round(requests_total / elapsed, 1),
        "completed": dict(ledger.completed),
        "refusals": len(refusals),
        "refusal_kinds": sorted(set(refusals))[:10],
        "server_errors": len(ledger.server_errors),
        "duplicates": ledger.duplicates(),
        "audit_verify": audit.exit_code == 0,
        "audit_output": audit.output.strip().splitlines()[-1:] if audit.output else [],
        "worker_rss_mb_after_warmup": round(first, 1),
        "worker_rss_mb_at_end": round(last, 1),
    }
    ok = (
        not refusals
        and not ledger.server_errors
        and not any(summary["duplicates"].values())  # type: ignore[attr-defined]
        and summary["audit_verify"]
        and last <= first * 1.10 + 5
    )
    summary["pass"] = ok
    print(json.dumps(summary, ensure_ascii=False, indent=None if args.json else 2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
