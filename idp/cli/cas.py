"""``yitong cas``: the services allowed to use the CAS server (issue 13 item 1).

A service is registered by its exact URL (``--service``) or by an anchored pattern with a
literal host (``--pattern``); :mod:`idp.cas.registry` checks either before anything is
stored, and the admin API calls the same function.  Names and URLs are printed escaped.
"""

from __future__ import annotations

import click

from idp.cas.registry import (
    CasServiceError,
    CasServiceSpec,
    create_service,
    list_services,
    service_summary,
)
from idp.cli.common import CliError, emit, open_services


@click.group("cas")
def cas() -> None:
    """The CAS server: registered services."""


@cas.group("services")
def services_group() -> None:
    """Services that may receive CAS tickets."""


@services_group.command("add")
@click.option("--name", required=True)
@click.option("--service", "service_url", default=None, help="the exact service URL")
@click.option(
    "--pattern",
    default=None,
    help=r"anchored regular expression with a literal host, e.g. ^https://a\.example/.*$",
)
@click.option(
    "--attribute", "attributes", multiple=True, help="repeatable; a claim released on /p3"
)
@click.option("--json", "as_json", is_flag=True)
def services_add(
    name: str,
    service_url: str | None,
    pattern: str | None,
    attributes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a service: exactly one of --service or --pattern."""
    spec = CasServiceSpec(
        name=name, service_url=service_url, service_pattern=pattern, attributes=list(attributes)
    )
    with open_services() as services, services.db.transaction() as session:
        try:
            row = create_service(session, spec, actor="cli")
        except CasServiceError as exc:
            raise CliError(exc.message) from None
        data = service_summary(row)
    emit(data, as_json, [f"id: {data['id']}", f"name: {data['name']}"])


@services_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def services_list(as_json: bool) -> None:
    """Every registered service: id, name, URL or pattern."""
    with open_services() as services, services.db.session() as session:
        rows = [service_summary(r) for r in list_services(session)]
    emit(rows, as_json, [f"{r['id']}  {r['name']}  {r['service'] or r['pattern']}" for r in rows])
