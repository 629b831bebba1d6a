"""``yitong ldap``: list, test and sync the department directories (issue 6).

Directory texts (display names, server errors, sample entries) come from outside: they are
printed through the escaping output helpers of :mod:`idp.cli.common`.

``test`` is what a department's administrator runs while connecting their directory: it
shows, server by server, whether the TCP connection, TLS (with the certificate it saw), the
service bind and a sample search work, and what they found.  ``sync`` disables staff whose
entries are gone or disabled; run it from a timer (``--every``) so that the delay before a
leaver's sessions and refresh tokens end stays bounded (checklist 92).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from adapters.base import AdapterError
from idp.accounts.staff import sync_directory
from idp.cli.common import emit, fail, open_services, out


@contextmanager
def _services(ctx: click.Context) -> Iterator[Any]:
    """The app's services: given by the caller (tests, the main CLI) or built by create_app()."""
    given = (
        (ctx.find_root().obj or {}).get("services")
        if isinstance(ctx.find_root().obj, dict)
        else None
    )
    if given is not None:
        yield given
        return
    with open_services() as services:
        yield services


def _directory(services: Any, directory_id: str) -> Any:
    directories = services.directories
    if directory_id not in directories:
        known = ", ".join(sorted(directories)) or "none configured"
        raise fail(f"no directory {directory_id!r} (known: {known})")
    return directories[directory_id]


@click.group()
def ldap() -> None:
    """Department LDAP directories: list, test, sync."""


@ldap.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def ldap_list(ctx: click.Context, as_json: bool) -> None:
    """Show every configured directory, its servers and their circuit-breaker state."""
    with _services(ctx) as services:
        rows = []
        for directory in services.directories.values():
            row = directory.config.describe()
            row["servers"] = directory.status()
            rows.append(row)
    if as_json:
        emit(rows, as_json=True)
        return
    if not rows:
        out("no directories configured (see docs/directories.md)")
    for row in rows:
        out(f"{row['id']}  {row['display_name']}")
        out(f"    tls: {row['tls']}  bind: {row['bind']}  base: {row['user_base']}")
        for server in row["servers"]:
            error = f"  last error: {server['last_error']}" if server["last_error"] else ""
            out(f"    {server['url']}  [{server['state']}]{error}")


@ldap.command("test")
@click.argument("directory_id")
@click.option("--sample", default=3, show_default=True, type=click.IntRange(1, 50))
@click.pass_context
def ldap_test(ctx: click.Context, directory_id: str, sample: int) -> None:
    """Check connectivity, TLS, the service bind and a sample search; print what was found.

    Exits 1 when any server fails a step.
    """
    with _services(ctx) as services:
        directory = _directory(services, directory_id)
        out(f"directory {directory.id} ({directory.display_name})")
        steps = directory.check(sample_size=sample)
    failed = False
    for step in steps:
        mark = "ok  " if step.ok else "FAIL"
        failed = failed or not step.ok
        out(f"  [{mark}] {step.step}: {step.detail}")
    if failed:
        ctx.exit(1)


@ldap.command("sync")
@click.argument("directory_id", required=False)
@click.option("--force", is_flag=True, help="allow disabling more than half of the staff")
@click.option(
    "--every",
    type=click.IntRange(min=10),
    default=None,
    help="keep running, syncing every N seconds (a simple schedule)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def ldap_sync(
    ctx: click.Context, directory_id: str | None, force: bool, every: int | None, as_json: bool
) -> None:
    """Disable staff whose directory entries are gone or disabled, and end their sessions.

    Never creates accounts.  Without DIRECTORY, syncs every configured directory.
    """
    with _services(ctx) as services:
        if directory_id:
            targets = [_directory(services, directory_id)]
        else:
            targets = list(services.directories.values())
        if not targets:
            raise fail("no directories configured")
        services.logout.background = False  # deliver before the command exits
        while True:
            failed = False
            for directory in targets:
                try:
                    report = sync_directory(services, directory, actor="cli:ldap-sync", force=force)
                except AdapterError as exc:
                    failed = True
                    out(f"{directory.id}: sync failed, nothing changed: {exc}", err=True)
                    continue
                failed = failed or report.aborted is not None
                if as_json:
                    emit(report.summary(), as_json=True)
                elif report.aborted:
                    out(f"{directory.id}: sync refused: {report.aborted}", err=True)
                else:
                    out(
                        f"{directory.id}: {report.listed} entries listed "
                        f"({report.disabled_in_directory} disabled there); "
                        f"{report.staff_checked} staff checked; "
                        f"disabled {len(report.disabled_gone)} gone and "
                        f"{len(report.disabled_by_directory)} directory-disabled; "
                        f"{report.sessions_ended} sessions ended, "
                        f"{report.grants_revoked} grants and {report.tokens_revoked} tokens revoked"
                    )
            if every is None:
                if failed:
                    ctx.exit(1)
                return
            time.sleep(every)
