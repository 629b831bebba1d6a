"""``yitong bridge``: the legacy systems allowed to use the ticket bridge (issue 13 item 2).

``systems add`` prints the system id and its secret once (the secret signs the system's
requests and authenticates its server-to-server calls); :mod:`idp.bridge.registry` checks the
callback and logout URIs, and the admin API calls the same function.
"""

from __future__ import annotations

import click

from idp.bridge.registry import (
    BridgeSystemError,
    BridgeSystemSpec,
    create_system,
    list_systems,
    system_summary,
)
from idp.cli.common import CliError, emit, open_services


@click.group("bridge")
def bridge() -> None:
    """The ticket bridge (protocol v1): registered legacy systems."""


@bridge.group("systems")
def systems_group() -> None:
    """Systems that may receive bridge tickets."""


@systems_group.command("add")
@click.option("--name", required=True)
@click.option("--callback", required=True, help="where tickets are sent (exact URL)")
@click.option(
    "--attribute", "attributes", multiple=True, help="repeatable; a claim the system may read"
)
@click.option("--backchannel-logout", default=None, help="URL POSTed a logout token at logout")
@click.option("--frontchannel-logout", default=None, help="URL framed on our signed-out page")
@click.option("--department", default=None, help="the department that owns the system")
@click.option("--json", "as_json", is_flag=True)
def systems_add(
    name: str,
    callback: str,
    attributes: tuple[str, ...],
    backchannel_logout: str | None,
    frontchannel_logout: str | None,
    department: str | None,
    as_json: bool,
) -> None:
    """Register a system; its secret is printed once and never again."""
    spec = BridgeSystemSpec(
        name=name,
        callback=callback,
        attributes=list(attributes),
        backchannel_logout_uri=backchannel_logout,
        frontchannel_logout_uri=frontchannel_logout,
        department_id=department,
    )
    with open_services() as services, services.db.transaction() as session:
        try:
            row, secret = create_system(session, spec, actor="cli", kek=services.kek)
        except BridgeSystemError as exc:
            raise CliError(exc.message) from None
        data = {**system_summary(row), "system_secret": secret}
    emit(
        data,
        as_json,
        [f"system_id: {data['system_id']}", f"system_secret: {secret}", f"name: {data['name']}"],
    )


@systems_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def systems_list(as_json: bool) -> None:
    """Every registered system: id, name, callback (never a secret)."""
    with open_services() as services, services.db.session() as session:
        rows = [system_summary(r) for r in list_systems(session)]
    emit(rows, as_json, [f"{r['system_id']}  {r['name']}  {r['callback']}" for r in rows])
