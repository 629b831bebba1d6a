"""The ``yitong`` command: one click group, one module per command group.

:mod:`idp.cli.common` holds what they share (errors, the escaping output helpers, the
services); each module here defines its commands and nothing imports this package but the
console script (``yitong = "idp.cli:main"``) and ``python -m idp.cli``.

Every command reports bad input in one clear line on stderr and exits non-zero; ``--json``
output is for scripts and prints nothing else on stdout.
"""

from __future__ import annotations

import click

from idp.cli import (
    admins,
    assurance,
    audit,
    bridge,
    cas,
    clients,
    config,
    demo,
    departments,
    entities,
    keys,
    ldap,
    logout,
    mandates,
    policy,
    registration_tokens,
    server,
    users,
)
from idp.cli.common import CliError

__all__ = ["CliError", "main"]


@click.group()
def main() -> None:
    """Yitong (一通): unified identity and single sign-on."""


main.add_command(server.init)
main.add_command(server.run)
main.add_command(users.users)
main.add_command(clients.clients)
main.add_command(logout.logout)
main.add_command(audit.audit)
main.add_command(config.config)
main.add_command(demo.demo)
main.add_command(keys.keys)
main.add_command(ldap.ldap)
main.add_command(policy.policy)
main.add_command(assurance.verify)
main.add_command(entities.entities)
main.add_command(mandates.mandates)
main.add_command(cas.cas)
main.add_command(bridge.bridge)
main.add_command(departments.departments)
main.add_command(admins.admins)
main.add_command(registration_tokens.registration_tokens)
