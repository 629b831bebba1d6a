"""Staff (LDAP) logins per second: ``LdapDirectory.authenticate`` against plain bind loops.

Everything runs against one real slapd (started here, quiet logging), one login at a time, so
the figures compare work per login rather than parallelism.  The loops:

* ``ldapwhoami`` — the command-line tool, one process per login (connect, bind, who-am-I);
* ``ldap3 bind`` — one persistent ldap3 connection re-binding as the user (the floor for
  "one bind per login");
* ``ldap3 bind + who-am-I`` — the same plus the RFC 4532 check;
* ``authenticate`` — Yitong's login: service search, user bind, who-am-I, group search, on
  pooled connections; with and without the group search.

Usage: ``python bench/ldap_login.py [--seconds 5] [--tls]``.  Prints a Markdown table and
the ratios that docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ldap3

from adapters.ldap import DirectoryConfig, LdapDirectory
from tests.services.slapd import (
    HRSS,
    LdapTestCA,
    Slapd,
    SlapdFactory,
    hrss_table,
    hrss_tree,
)

USER_DN = f"uid=wang.fang,ou=people,{HRSS}"
PASSWORD = "Wf-2017-secret!"


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    name: str, step: Callable[[], object], seconds: float, server: Slapd, *, spawns: bool = False
) -> dict[str, float | str]:
    for _ in range(20):  # warm-up: pools filled, TLS sessions up
        step()
    assert server.process is not None
    slapd_before = cpu_of(server.process.pid)
    own_before = time.process_time() + (children_cpu() if spawns else 0.0)
    started = time.perf_counter()
    count = 0
    while time.perf_counter() - started < seconds:
        step()
        count += 1
    wall = time.perf_counter() - started
    own = time.process_time() + (children_cpu() if spawns else 0.0) - own_before
    slapd = cpu_of(server.process.pid) - slapd_before
    return {
        "name": name,
        "per_second": count / wall,
        "client_ms": own / count * 1000,
        "slapd_ms": slapd / count * 1000,
        "count": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per loop")
    parser.add_argument("--tls", action="store_true", help="LDAPS instead of plain LDAP")
    args = parser.parse_args()
    if not shutil.which("slapd") and not Path("/usr/sbin/slapd").exists():
        sys.exit("slapd is not installed (apt-get install slapd ldap-utils)")

    base = Path(tempfile.mkdtemp(prefix="yitong-bench-ldap-"))
    ca = LdapTestCA.create(base / "ca")
    factory = SlapdFactory(base / "slapd", ca)
    try:
        server = factory.start("hrss-bench", hrss_tree(), tls=args.tls, log_level="0")
        if args.tls:
            url = server.ldaps_url
            table = hrss_table(server, ca)
            ldap3_server = ldap3.Server(
                url,
                use_ssl=True,
                get_info=ldap3.NONE,
                tls=ldap3.Tls(validate=2, ca_certs_file=str(ca.ca_file)),
            )
            # libldap checks the certificate against the reverse-resolved peer name, which
            # on a test machine is not "localhost"; the handshake costs the same either way.
            env = {**os.environ, "LDAPTLS_CACERT": str(ca.ca_file), "LDAPTLS_REQCERT": "allow"}
        else:
            url = server.url
            table = hrss_table([url], None, tls="none", allow_plaintext=True)
            ldap3_server = ldap3.Server(url, get_info=ldap3.NONE)
            env = dict(os.environ)
        table.update(timeout=10, receive_timeout=5, connect_timeout=3)
        with_groups = LdapDirectory(DirectoryConfig.from_mapping("hrss", table))
        no_groups = LdapDirectory(
            DirectoryConfig.from_mapping("hrss", {**table, "group_mode": "none"})
        )
        conn = ldap3.Connection(ldap3_server, user=USER_DN, password=PASSWORD, auto_bind=True)

        def ldapwhoami() -> None:
            subprocess.run(
                ["ldapwhoami", "-x", "-H", url, "-D", USER_DN, "-w", PASSWORD],
                check=True,
                capture_output=True,
                env=env,
            )

        def bind() -> None:
            assert conn.rebind(user=USER_DN, password=PASSWORD)

        def bind_whoami() -> None:
            assert conn.rebind(user=USER_DN, password=PASSWORD)
            assert conn.extend.standard.who_am_i() == f"dn:{USER_DN}"

        rows = [
            measure(
                "ldapwhoami (process per login)", ldapwhoami, args.seconds, server, spawns=True
            ),
            measure("ldap3 bind (persistent connection)", bind, args.seconds, server),
            measure("ldap3 bind + who-am-I", bind_whoami, args.seconds, server),
            measure(
                "authenticate, no groups (search, bind, who-am-I)",
                lambda: no_groups.authenticate("wang.fang", PASSWORD),
                args.seconds,
                server,
            ),
            measure(
                "authenticate with group search",
                lambda: with_groups.authenticate("wang.fang", PASSWORD),
                args.seconds,
                server,
            ),
        ]
        conn.unbind()
        with_groups.close()
        no_groups.close()
    finally:
        factory.stop_all()
        shutil.rmtree(base, ignore_errors=True)

    transport = "LDAPS" if args.tls else "plain LDAP"
    print(
        f"\n{transport}, one login at a time, {args.seconds:g} s per loop, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, ldap3 {ldap3.__version__}\n"
    )
    print("| loop | logins/s | client CPU ms/login | slapd CPU ms/login |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['per_second']:.0f} | {r['client_ms']:.2f} | {r['slapd_ms']:.2f} |"
        )
    ours = float(rows[-1]["per_second"])
    print()
    for r in rows[:3]:
        print(f"authenticate (with groups) / {r['name']}: {ours / float(r['per_second']):.2f}")


if __name__ == "__main__":
    main()
