"""``yitong departments``: the departments that own clients (issue 11).

The same operations as the admin API (:mod:`admin.services`), audited with the actor ``cli``.
"""

from __future__ import annotations

import click

from admin.services import OPERATOR, AdminInputError, add_department, list_departments
from idp.cli.common import CliError, emit, open_services


@click.group("departments")
def departments() -> None:
    """Departments: they own clients and have department admins."""


@departments.command("add")
@click.argument("dept_id", metavar="ID")
@click.option("--name", required=True, help="the department's name")
@click.option("--json", "as_json", is_flag=True)
def departments_add(dept_id: str, name: str, as_json: bool) -> None:
    """Add department ID (lower-case letters, digits, - or _)."""
    with open_services() as services, services.db.session() as session:
        try:
            result = add_department(session, dept_id, name, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(result, as_json, [f"added department {result['id']} ({result['name']})"])


@departments.command("list")
@click.option("--json", "as_json", is_flag=True)
def departments_list(as_json: bool) -> None:
    """Every department: id and name."""
    with open_services() as services, services.db.session() as session:
        rows = list_departments(session, OPERATOR)
    emit(rows, as_json, [f"{r['id']}  {r['name']}" for r in rows])
