"""``yitong logout deliver``: the outbox of back-channel logout tokens for relying parties."""

from __future__ import annotations

import time

import click

from idp.cli.common import open_services, out
from idp.oauth.logout import DELIVERY_TIMEOUT, deliver_due


@click.group("logout")
def logout() -> None:
    """Back-channel logout: the outbox of logout tokens for relying parties."""


@logout.command("deliver")
@click.option("--loop", is_flag=True, help="keep delivering (a worker process) until stopped")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(0.5, 3600))
def logout_deliver(loop: bool, interval: float) -> None:
    """Deliver (and retry, with back-off) the logout tokens that are due."""
    with open_services() as services:
        poster = services.logout.poster
        while True:
            report = deliver_due(services.db, poster, timeout=DELIVERY_TIMEOUT)
            out(
                f"delivered {report.delivered}, failed {report.failed} (will retry), "
                f"abandoned {report.abandoned}"
            )
            if not loop:
                return
            time.sleep(interval)
