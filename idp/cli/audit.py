"""``yitong audit``: verify and read the tamper-evident audit trail.

Actors and targets are whatever the recorded requests carried; they are printed escaped.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from idp import audit as audit_trail
from idp.cli.common import open_services, out
from idp.storage.models import AuditEvent


@click.group("audit")
def audit() -> None:
    """Inspect the tamper-evident audit trail."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the hash chain; exits 1 and names the first bad entry when it is broken."""
    with open_services() as services, services.db.session() as session:
        result = audit_trail.verify(session)
    if result.ok:
        out(f"audit trail intact: {result.count} entries")
        return
    out(f"audit trail BROKEN: {result.problem}", err=True)
    sys.exit(1)


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True)
def audit_tail(count: int) -> None:
    """The last ``count`` entries, oldest first."""
    with open_services() as services, services.db.session() as session:
        rows = list(
            session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(count))
        )
    for e in reversed(rows):
        out(
            f"{e.seq:>6} {e.at.isoformat(timespec='seconds')} {e.action:<20} {e.actor} "
            f"{e.target or ''} {e.outcome}"
        )
