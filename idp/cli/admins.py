"""``yitong admins``: grant and revoke admin roles (issue 11).

``USER`` is an account id, phone, e-mail or ID number.  ``department-admin`` is scoped to a
department (``--department``, repeat the grant for several); the other roles are not.  The
same operations as the admin API (:mod:`admin.services`), audited with the actor ``cli``.
"""

from __future__ import annotations

import click

from admin.auth import ROLES
from admin.services import OPERATOR, AdminInputError, grant_role, revoke_role
from idp.cli.common import CliError, emit, open_services


@click.group("admins")
def admins() -> None:
    """Admin roles: security-admin, department-admin, auditor, client-admin."""


def _change(grant: bool, user: str, role: str, department: str | None, as_json: bool) -> None:
    change = grant_role if grant else revoke_role
    with open_services() as services, services.db.session() as session:
        try:
            result = change(session, services, user, role, department, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    where = f" for {', '.join(result['departments'])}" if result["departments"] else ""
    emit(result, as_json, [f"{result['user']}: {', '.join(result['roles']) or '(none)'}{where}"])


@admins.command("grant")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--department", default=None, help="the department (department-admin only)")
@click.option("--json", "as_json", is_flag=True)
def admins_grant(user: str, role: str, department: str | None, as_json: bool) -> None:
    """Give USER the admin ROLE (a department-admin for --department)."""
    _change(True, user, role, department, as_json)


@admins.command("revoke")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--department", default=None, help="only for this department")
@click.option("--json", "as_json", is_flag=True)
def admins_revoke(user: str, role: str, department: str | None, as_json: bool) -> None:
    """Take ROLE from USER (for --department only, or everywhere)."""
    _change(False, user, role, department, as_json)
