"""``yitong mandates``: record or end an agent's mandate (经办人) for a company.

The same operations as the admin API (:mod:`admin.services`), audited with the actor ``cli``.
A mandate recorded here is offered to the agent, who accepts it on their account page, unless
``--accepted`` says they already signed for it in person.  ``--until`` is inclusive (China
time).  Revoking ends it at once: its tokens stop working.
"""

from __future__ import annotations

import click

from admin.services import AdminInputError, grant_mandate, revoke_mandate
from idp.cli.common import CliError, emit, open_services


@click.group("mandates")
def mandates() -> None:
    """Agents' mandates to act for companies."""


@mandates.command("grant")
@click.argument("entity")
@click.argument("user")
@click.option("--role", required=True, help="one of the configured mandate roles")
@click.option("--client", "clients", multiple=True, help="a client it covers (repeat); none: all")
@click.option("--until", required=True, help="last day of validity, YYYY-MM-DD")
@click.option("--accepted", is_flag=True, help="the agent accepted in person")
@click.option("--json", "as_json", is_flag=True)
def mandates_grant(
    entity: str,
    user: str,
    role: str,
    clients: tuple[str, ...],
    until: str,
    accepted: bool,
    as_json: bool,
) -> None:
    """Give USER a mandate to act for ENTITY (credit code or id) in ROLE until a date."""
    data = {
        "entity": entity,
        "user": user,
        "role": role,
        "until": until,
        "clients": list(clients) if clients else None,
        "accepted": accepted,
    }
    with open_services() as services, services.db.session() as session:
        try:
            result = grant_mandate(session, services, data, "cli")
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    state = "accepted" if result["accepted"] else "offered (the agent must accept it)"
    emit(
        result,
        as_json,
        [f"mandate {result['id']}: {result['role']} until {result['valid_until']}, {state}"],
    )


@mandates.command("revoke")
@click.argument("entity")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
def mandates_revoke(entity: str, user: str, as_json: bool) -> None:
    """End USER's mandate for ENTITY; tokens acting on it stop working at once."""
    with open_services() as services, services.db.session() as session:
        try:
            result = revoke_mandate(session, services, entity, user, "cli")
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(result, as_json, [f"mandate {result['id']} ended; {result['grants_revoked']} grant(s)"])
