"""``yitong registration-tokens``: RFC 7591 initial access tokens for a department (issue 11).

The token is printed once and stored only as a digest; it registers at most ``--uses``
clients (each pending until a security admin approves it) before ``--expires-in`` seconds.
"""

from __future__ import annotations

import click

from admin.services import OPERATOR, AdminInputError, issue_registration_token
from idp.cli.common import CliError, emit, open_services


@click.group("registration-tokens")
def registration_tokens() -> None:
    """Initial access tokens for dynamic client registration (/connect/register)."""


@registration_tokens.command("issue")
@click.option("--department", required=True, help="the department the clients will belong to")
@click.option("--uses", default=1, show_default=True, type=int, help="how many registrations")
@click.option("--expires-in", default=86400, show_default=True, type=int, help="seconds")
@click.option("--json", "as_json", is_flag=True)
def tokens_issue(department: str, uses: int, expires_in: int, as_json: bool) -> None:
    """Issue a token; prints it once (``--json``: ``{"token": ...}``)."""
    with open_services() as services, services.db.session() as session:
        try:
            result = issue_registration_token(session, department, uses, expires_in, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(
        result,
        as_json,
        [
            f"token: {result['token']}",
            f"department: {department}; uses: {uses}; expires: {result['expires_at']}",
        ],
    )
