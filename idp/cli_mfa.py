"""Operator commands for issue 5: ``yitong policy show|set``, ``yitong users totp-enroll|unlock``.

Every change is audited with the actor ``cli`` (never with a secret).  ``totp-enroll`` is for
operators provisioning a seed for someone (a hardware token, assisted enrolment): it prints the
``otpauth://`` URI once and activates the seed only after a correct code from the token, as
self-service enrolment does (checklist 74).
"""

from __future__ import annotations

import json
from typing import Any

import click


def _cli() -> Any:
    import idp.cli  # imported late: idp.cli imports this module

    return idp.cli


def _policy_store(services: Any) -> Any:
    return services.policies


@click.group("policy")
def policy() -> None:
    """Security policies: MFA, password rules, session timeouts, lockout (docs/policies.md)."""


@policy.command("show")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def policy_show(as_json: bool) -> None:
    """Print every policy with its current value (and whether it differs from the default)."""
    with _cli().app_services() as services:
        data = _policy_store(services).all()
    if as_json:
        _cli().emit({name: item["value"] for name, item in data.items()}, True)
        return
    width = max(len(n) for n in data)
    for name, item in data.items():
        marker = "*" if item["set"] else " "
        value = json.dumps(item["value"], ensure_ascii=False)
        click.echo(f"{marker} {name:<{width}}  {value}")
    click.echo("(* = set by an administrator; others are defaults)")


@policy.command("set")
@click.argument("name")
@click.argument("value")
def policy_set(name: str, value: str) -> None:
    """Set policy NAME to VALUE (JSON, or a comma-separated list for list policies)."""
    from idp.interaction.policies import PolicyError

    with _cli().app_services() as services:
        store = _policy_store(services)
        try:
            with services.db.transaction() as session:
                new = store.set(session, name, value, actor="cli")
        except PolicyError as exc:
            raise _cli().CliError(str(exc)) from None
    click.echo(f"{name} = {json.dumps(new, ensure_ascii=False)}")


def _find_user(services: Any, session: Any, who: str) -> Any:
    from idp.accounts.people import find_citizen
    from idp.storage.models import User

    user = session.get(User, who) if len(who) <= 64 else None
    if user is None:
        user = find_citizen(session, who, vault=services.vault)
    if user is None:
        raise _cli().CliError(f"no account {who!r}")
    return user


@click.command("totp-enroll")
@click.argument("user")
@click.option(
    "--code", default=None, help="a current code from the token (prompted for when omitted)"
)
def totp_enroll(user: str, code: str | None) -> None:
    """Provision a TOTP seed for USER (id, e-mail, phone or ID number); prints the URI once."""
    from idp import audit
    from idp.interaction import mfa

    with _cli().app_services() as services:
        with services.db.session() as session:
            account = _find_user(services, session, user)
            label = account.email or account.phone or account.id_number_masked or account.name
            user_id = account.id
        secret = mfa.new_totp_secret()
        click.echo("Program this URI into the token or app (shown only now):")
        click.echo(mfa.totp_uri(secret, label))
        if code is None:
            code = click.prompt("code shown by the token", default="", show_default=False)
        with services.db.transaction() as session:
            if not mfa.activate_totp(session, services.kek, user_id, secret, code or ""):
                raise _cli().CliError("that code does not match; nothing was stored (run again)")
            audit.record(
                session, "mfa.totp.enrol", actor="cli", target=user_id, details={"assisted": True}
            )
    click.echo(f"TOTP activated for {user_id}")


@click.command("unlock")
@click.argument("user")
def unlock(user: str) -> None:
    """Clear USER's failed-login and second-factor counters (after checking who asks)."""
    from idp import audit

    with _cli().app_services() as services:
        with services.db.session() as session:
            account = _find_user(services, session, user)
        services.login_gate.unlock(account)
        with services.db.transaction() as session:
            audit.record(session, "user.unlock", actor="cli", target=account.id)
    click.echo(f"unlocked {account.id}")
