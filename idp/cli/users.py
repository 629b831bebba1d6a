"""``yitong users``: add, list, show, enable, disable, reset-password, totp-enroll, unlock,
close-due.

Every change is audited with the actor ``cli`` (never with a secret).  ``totp-enroll`` is for
operators provisioning a seed for someone (a hardware token, assisted enrolment): it prints the
``otpauth://`` URI once and activates the seed only after a correct code from the token, as
self-service enrolment does (checklist 74).
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.orm import Session

from admin import people
from admin.services import OPERATOR, AdminInputError
from idp import audit
from idp.accounts.lifecycle import disable_account
from idp.accounts.people import NewCitizen, RegistrationError, find_account, register_citizen
from idp.cli.common import CliError, emit, open_services, out
from idp.interaction import mfa
from idp.interaction.rights import complete_due_closings
from idp.services import Services
from idp.storage.models import User


@click.group("users")
def users() -> None:
    """Manage citizen accounts."""


@users.command("add")
@click.option("--name", required=True)
@click.option("--id-number", required=True, help="18-character resident ID number")
@click.option("--phone", default=None)
@click.option("--email", default=None)
@click.option("--password", default=None, help="prompted for when omitted")
@click.option("--json", "as_json", is_flag=True)
def users_add(
    name: str,
    id_number: str,
    phone: str | None,
    email: str | None,
    password: str | None,
    as_json: bool,
) -> None:
    """Register a citizen; prints the new account's id."""
    if password is None:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with open_services() as services, services.db.transaction() as session:
        try:
            user = register_citizen(
                session,
                NewCitizen(
                    name=name, id_number=id_number, phone=phone, email=email, password=password
                ),
                vault=services.vault,
                passwords=services.passwords,
                actor="cli",
            )
        except RegistrationError as exc:
            raise CliError(f"{exc.field}: {exc.message}") from None
        emit({"id": user.id}, as_json, [f"created citizen {user.id} ({user.id_number_masked})"])


@users.command("disable")
@click.argument("user_id")
def users_disable(user_id: str) -> None:
    """Disable an account: its sessions end (clients are told) and its tokens are revoked."""
    with open_services() as services:
        with services.db.transaction() as session:
            user = session.get(User, user_id)
            if user is None:
                raise CliError(f"no account {user_id}")
            ended = disable_account(session, services, user, actor="cli")
        # A command has no request thread to outlive: deliver now (failures stay queued
        # for `yitong logout deliver`).
        services.logout.background = False
        ended.kick()
        n = len(ended.deliveries)
        out(f"disabled {user_id}; {n} back-channel logout(s) sent or queued")


def _find_user(services: Services, session: Session, who: str) -> User:
    """The account with id ``who``, or whose e-mail, phone or ID number it is."""
    user = find_account(session, who, vault=services.vault)
    if user is None:
        raise CliError(f"no account {who!r}")
    return user


@users.command("totp-enroll")
@click.argument("user")
@click.option(
    "--code", default=None, help="a current code from the token (prompted for when omitted)"
)
def totp_enroll(user: str, code: str | None) -> None:
    """Provision a TOTP seed for USER (id, e-mail, phone or ID number); prints the URI once."""
    with open_services() as services:
        with services.db.session() as session:
            account = _find_user(services, session, user)
            label = account.email or account.phone or account.id_number_masked or account.name
            user_id = account.id
        secret = mfa.new_totp_secret()
        out("Program this URI into the token or app (shown only now):")
        out(mfa.totp_uri(secret, label))
        if code is None:
            code = click.prompt("code shown by the token", default="", show_default=False)
        with services.db.transaction() as session:
            if not mfa.activate_totp(session, services.kek, user_id, secret, code or ""):
                raise CliError("that code does not match; nothing was stored (run again)")
            audit.record(
                session, "mfa.totp.enrol", actor="cli", target=user_id, details={"assisted": True}
            )
    out(f"TOTP activated for {user_id}")


@users.command("unlock")
@click.argument("user")
def unlock(user: str) -> None:
    """Clear USER's failed-login and second-factor counters (after checking who asks)."""
    with open_services() as services:
        with services.db.session() as session:
            account = _find_user(services, session, user)
        services.login_gate.unlock(account)
        with services.db.transaction() as session:
            audit.record(session, "user.unlock", actor="cli", target=account.id)
    out(f"unlocked {account.id}")


def _person_command(action: str, user: str) -> dict[str, Any]:
    """Run a people action of the admin service layer as the operator, for USER."""
    with open_services() as services:
        services.logout.background = False  # deliver before the command exits
        with services.db.session() as session:
            account = _find_user(services, session, user)
            try:
                if action == "show":
                    return people.show_person(session, services, account.id, OPERATOR)
                if action == "enable":
                    return people.set_person_status(
                        session, services, account.id, "active", OPERATOR
                    )
                return people.reset_password(session, services, account.id, OPERATOR)
            except AdminInputError as exc:
                raise CliError(exc.message) from None


def _line(p: dict[str, Any]) -> str:
    shown = p["id_number"] or p["phone"] or p["email"] or ""
    return f"{p['id']}  {p['kind']}  {p['status']}  {p['name']}  {shown}"


@users.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def users_list(limit: int, as_json: bool) -> None:
    """The most recent accounts, masked (ID number, phone, e-mail)."""
    with open_services() as services, services.db.session() as session:
        rows = people.list_people(session, OPERATOR, limit=limit)
    emit(rows, as_json, [_line(p) for p in rows])


@users.command("show")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
def users_show(user: str, as_json: bool) -> None:
    """USER (id, e-mail, phone or ID number), masked, with their second factors."""
    result = _person_command("show", user)
    emit(result, as_json, [f"{k}: {v}" for k, v in result.items()])


@users.command("enable")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
def users_enable(user: str, as_json: bool) -> None:
    """Enable a disabled account again (its old sessions and tokens stay ended)."""
    result = _person_command("enable", user)
    emit(result, as_json, [_line(result)])


@users.command("reset-password")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
def users_reset_password(user: str, as_json: bool) -> None:
    """Set a new random password for USER, printed once; every session and token ends."""
    result = _person_command("reset-password", user)
    data = {"id": result["id"], "password": result["password"]}
    emit(data, as_json, [f"new password for {data['id']} (shown only now): {data['password']}"])


@users.command("close-due")
@click.option("--json", "as_json", is_flag=True)
def close_due(as_json: bool) -> None:
    """Complete the closings (注销) whose cooling-off period has passed (run it from cron).

    Each closed account's personal data is erased; its row and the audit trail stay.
    """
    with open_services() as services:
        closed = complete_due_closings(services)
    emit({"closed": closed}, as_json, [f"closed {len(closed)} account(s)", *closed])
