"""``yitong entities``: register a company for its legal representative; change its status.

The same operations as the admin API (:mod:`admin.services`), audited with the actor ``cli``.
``ENTITY`` is a unified social credit code or an entity id; ``USER`` an account id, phone,
e-mail or ID number.  Registration is checked against the enterprise registry.
"""

from __future__ import annotations

import click

from admin.identity import verify_company
from admin.services import OPERATOR, AdminInputError, add_entity, change_entity_status
from idp.cli.common import CliError, emit, open_services


@click.group("entities")
def entities() -> None:
    """Companies (legal entities) and their status."""


@entities.command("add")
@click.option("--credit-code", required=True, help="18-character unified social credit code")
@click.option("--name", default=None, help="the company's name (default: the registry's)")
@click.option("--representative", required=True, help="the legal representative (USER)")
@click.option("--kind", default="enterprise", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def entities_add(
    credit_code: str, name: str | None, representative: str, kind: str, as_json: bool
) -> None:
    """Register a company whose legal representative is USER; prints its id."""
    data = {"credit_code": credit_code, "representative": representative, "kind": kind}
    if name is not None:
        data["name"] = name
    with open_services() as services, services.db.session() as session:
        try:
            result = add_entity(session, services, data, "cli")
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(
        result,
        as_json,
        [f"registered company {result['id']} {result['name']} ({result['credit_code']})"],
    )


@entities.command("status")
@click.argument("entity")
@click.argument("status", type=click.Choice(["active", "suspended", "deregistered"]))
@click.option("--json", "as_json", is_flag=True)
def entities_status(entity: str, status: str, as_json: bool) -> None:
    """Set ENTITY's status; suspending or deregistering ends its mandates and sessions."""
    with open_services() as services, services.db.session() as session:
        services.logout.background = False  # no request thread to outlive: deliver now
        try:
            result = change_entity_status(session, services, entity, status, "cli")
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(
        result,
        as_json,
        [f"{result['id']} is {result['status']}; {result['sessions_ended']} session(s) ended"],
    )


@entities.command("verify")
@click.argument("entity")
@click.option(
    "--method",
    type=click.Choice(["registry", "e-licence"]),
    required=True,
    help="registry: ask the enterprise registry again (L3); e-licence: an electronic "
    "business licence (L5)",
)
@click.option("--presentation", default=None, help="the licence presentation (e-licence)")
@click.option("--json", "as_json", is_flag=True)
def entities_verify(entity: str, method: str, presentation: str | None, as_json: bool) -> None:
    """Verify ENTITY again; a registry that no longer backs it suspends it (exit 2)."""
    data = {"method": method}
    if presentation is not None:
        data["presentation"] = presentation
    with open_services() as services, services.db.session() as session:
        services.logout.background = False  # no request thread to outlive: deliver now
        try:
            result = verify_company(session, services, entity, data, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    level = result["assurance"]["level"] or "none"
    emit(result, as_json, [f"{result['id']} {result['name']}: level {level}"])
