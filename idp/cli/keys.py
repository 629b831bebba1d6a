"""``yitong keys``: list, generate, rotate, revoke and rewrap signing keys.

Run on a server by a security administrator.  Every change is made by the key store, which
writes the audit record (action, kid, old -> new state, ``actor`` = ``cli:<OS user>``) in the
same transaction as the change; nothing here ever prints or records key material.  Operator
documentation: docs/keys.md.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from idp.cli.common import emit, fail, open_services, out, out_lines
from idp.rewrap import rewrap_sealed_data
from keys.crypto import Kek, KekError, KekRing
from keys.store import SUPPORTED_ALGS, KeyInfo, KeyState, KeyStoreError, ManagedKeyStore


@dataclass
class KeysCli:
    """What the commands act on; tests pass one as ``obj``, otherwise the app provides it."""

    store: ManagedKeyStore
    actor: str


def _fail(message: str) -> NoReturn:
    raise fail(message)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


@contextmanager
def _target(ctx: click.Context) -> Iterator[KeysCli]:
    if isinstance(ctx.obj, KeysCli):
        yield ctx.obj
        return
    with open_services() as services:
        yield KeysCli(store=services.keys, actor=_actor())


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _table(infos: list[KeyInfo]) -> list[str]:
    header = ("KID", "ALG", "STATE", "BACKEND", "CREATED", "ACTIVATED", "RETIRED", "REMOVE AFTER")
    rows = [header] + [
        (
            k.kid,
            k.alg,
            str(k.state),
            k.backend,
            _when(k.created_at),
            _when(k.activated_at),
            _when(k.retired_at or k.revoked_at),
            _when(k.remove_after),
        )
        for k in infos
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def _emit(data: Any) -> None:
    emit(data, as_json=True)


@click.group("keys")
def keys() -> None:
    """Signing keys: list, generate, rotate, revoke, rewrap (see docs/keys.md)."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--all", "include_removed", is_flag=True, help="include removed keys")
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool, include_removed: bool) -> None:
    """Every key with its state and dates (never key material)."""
    with _target(ctx) as target:
        infos = target.store.list_keys(include_removed=include_removed)
        due = target.store.next_change()
    if as_json:
        _emit({"keys": [k.as_dict() for k in infos], "next_change": due.isoformat()})
        return
    out_lines(_table(infos))
    out()
    out(f"next scheduled change: {_when(due) if due.year > 1 else 'now'}")


@keys.command()
@click.option("--alg", required=True, type=click.Choice(SUPPORTED_ALGS), help="algorithm")
@click.option(
    "--activate",
    is_flag=True,
    help="sign with it at once (retires the active key); without: published as next key",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def generate(ctx: click.Context, alg: str, activate: bool, as_json: bool) -> None:
    """Create a key.  By default it is published now and signs from the next rotation."""
    state = KeyState.ACTIVE if activate else KeyState.NEXT
    with _target(ctx) as target:
        try:
            kid = target.store.generate(alg, state, actor=target.actor)
        except KeyStoreError as exc:
            _fail(str(exc))
    if as_json:
        _emit({"kid": kid, "alg": alg, "state": str(state)})
        return
    out(f"generated {alg} key {kid} ({state})")
    if activate:
        out(
            "warning: it signs before relying parties could have fetched it; those that do not "
            "refetch the JWKS on an unknown kid will reject tokens until their cache expires",
            err=True,
        )


@keys.command()
@click.option(
    "--force",
    "force",
    multiple=True,
    type=click.Choice(SUPPORTED_ALGS),
    help="rotate this algorithm now rather than on schedule (repeatable)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def rotate(ctx: click.Context, force: tuple[str, ...], as_json: bool) -> None:
    """Do what the schedule says is due (safe to run from cron on every node)."""
    with _target(ctx) as target:
        store = target.store
        before = {k.alg: k.kid for k in store.list_keys() if k.state == KeyState.ACTIVE}
        try:
            changed = store.rotate(actor=target.actor, force=force)
        except KeyStoreError as exc:
            _fail(str(exc))
        after = {k.alg: k.kid for k in store.list_keys() if k.state == KeyState.ACTIVE}
        waiting = [alg for alg in force if before.get(alg) == after.get(alg)]
        ready = {alg: store.next_key_ready(alg) for alg in waiting}
        due = store.next_change()
    if as_json:
        _emit({"changed": changed, "not_yet": waiting, "next_change": due.isoformat()})
    else:
        out(f"{len(changed)} key(s) changed" + (": " + ", ".join(changed) if changed else ""))
        for alg in waiting:
            out(
                f"{alg}: the next key has not been published for a full JWKS cache lifetime "
                f"yet; it can sign from {_when(ready[alg])} "
                "(in an emergency: `yitong keys revoke`)",
                err=True,
            )


@keys.command()
@click.argument("kid")
@click.option("--reason", default="", help="recorded in the audit trail")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def revoke(ctx: click.Context, kid: str, reason: str, yes: bool) -> None:
    """Emergency: unpublish KID at once and refuse every token it signed."""
    if not yes:
        click.confirm(
            f"Revoke {kid}? Every token it signed stops working; this cannot be undone.",
            abort=True,
        )
    with _target(ctx) as target:
        try:
            target.store.revoke(kid, actor=target.actor, reason=reason)
        except KeyStoreError as exc:
            _fail(str(exc))
        replacement = {k.alg: k.kid for k in target.store.list_keys() if k.state == KeyState.ACTIVE}
    out(f"revoked {kid}; active keys now: " + ", ".join(
        f"{alg} {k}" for alg, k in sorted(replacement.items())
    ))  # fmt: skip


def _read_kek(path: str) -> Kek:
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text("utf-8")
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        out(f"warning: {path} is readable by other users; chmod 600 it", err=True)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        _fail(f"{path} holds no key")
    try:
        return Kek.from_text(lines[0])
    except KekError as exc:
        _fail(f"{path}: {exc}")


@keys.command()
@click.option(
    "--new-kek-file", required=True, help="file with the new base64url key-encryption key"
)
@click.option(
    "--old-kek-file", multiple=True, help="a further old KEK that sealed some keys (repeatable)"
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def rewrap(
    ctx: click.Context, new_kek_file: str, old_kek_file: tuple[str, ...], as_json: bool
) -> None:
    """Re-seal every private key under a new key-encryption key (all or nothing)."""
    new = _read_kek(new_kek_file)
    old = [_read_kek(f) for f in old_kek_file]
    with _target(ctx) as target:
        rewrap_keys = getattr(target.store, "rewrap", None)
        if rewrap_keys is None:
            _fail("this key store does not encrypt keys (hardware or static store): nothing to do")
        try:
            moved: list[str] = rewrap_keys(new, old_keks=old, actor=target.actor)
        except KeyStoreError as exc:
            _fail(str(exc))
        data = _rewrap_sealed_data(target, new)
    if as_json:
        _emit({"rewrapped": moved, "kek_id": new.id, "data": data})
        return
    out(f"{len(moved)} key(s) now sealed with key-encryption key {new.id}")
    for what, count in sorted(data.items()):
        out(f"{count} {what.replace('_', ' ')} re-sealed")
    out(
        "next: set YITONG_KEY_ENCRYPTION_KEY (or _FILE) to the new key on every node and "
        "restart them; see docs/keys.md",
    )


def _rewrap_sealed_data(target: KeysCli, new: Kek) -> dict[str, int]:
    """Move identity numbers, TOTP seeds and other sealed data too (idp/rewrap.py)."""
    db = getattr(target.store, "db", None)
    if db is None:
        return {}
    # After the keys moved, the store opens with the new KEK and keeps the old ones.
    olds = tuple(getattr(target.store, "previous_keks", ()))
    try:
        with db.transaction() as session:
            report = rewrap_sealed_data(session, KekRing.of(new, olds))
    except KekError as exc:
        _fail(f"sealed data could not be opened with any known key-encryption key: {exc}")
    return report.counts
