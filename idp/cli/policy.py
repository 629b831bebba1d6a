"""``yitong policy show|set``: the security policies (issue 5, docs/policies.md).

Every change is audited with the actor ``cli`` by the policy store.
"""

from __future__ import annotations

import json

import click

from idp.cli.common import CliError, emit, open_services, out
from idp.interaction.policies import PolicyError


@click.group("policy")
def policy() -> None:
    """Security policies: MFA, password rules, session timeouts, lockout (docs/policies.md)."""


@policy.command("show")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def policy_show(as_json: bool) -> None:
    """Print every policy with its current value (and whether it differs from the default)."""
    with open_services() as services:
        data = services.policies.all()
    if as_json:
        emit({name: item["value"] for name, item in data.items()}, True)
        return
    width = max(len(n) for n in data)
    for name, item in data.items():
        marker = "*" if item["set"] else " "
        value = json.dumps(item["value"], ensure_ascii=False)
        out(f"{marker} {name:<{width}}  {value}")
    out("(* = set by an administrator; others are defaults)")


@policy.command("set")
@click.argument("name")
@click.argument("value")
def policy_set(name: str, value: str) -> None:
    """Set policy NAME to VALUE (JSON, or a comma-separated list for list policies)."""
    with open_services() as services:
        store = services.policies
        try:
            with services.db.transaction() as session:
                new = store.set(session, name, value, actor="cli")
        except PolicyError as exc:
            raise CliError(str(exc)) from None
    out(f"{name} = {json.dumps(new, ensure_ascii=False)}")
