"""``yitong init`` and ``yitong run``: set up the instance's database, serve the IdP."""

from __future__ import annotations

import click

from idp.cli.common import CliError, make_app, open_services, out
from idp.instance import initialize


@click.command()
def init() -> None:
    """Create or upgrade the database schema and generate signing keys when none exist."""
    with open_services(require_schema=False) as services:
        url = services.settings.resolved_database_url
        try:
            made = initialize(url, services.keys)
        except Exception as exc:
            raise CliError(f"initialization failed: {exc}") from None
        out(f"schema up to date at {url.split('@')[-1]}")
        for kid in made:
            out(f"generated signing key {kid}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def run(host: str, port: int) -> None:
    """Serve the IdP with the development server (use gunicorn in production: see README).

    Refuses to start on a database that ``yitong init`` has not set up for this version.
    """
    app = make_app()
    app.run(host=host, port=port, debug=False, use_reloader=False)
