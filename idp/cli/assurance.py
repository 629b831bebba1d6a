"""``yitong verify``: record an identity verification (issue 10 items 5 and 8).

``--method registry`` and ``--method face`` ask the configured population registry (its
answer becomes the evidence); ``counter``, ``in-person`` and ``certificate`` record what the
operator saw, with optional ``--evidence`` JSON (for example the document's details or the
certificate's serial number).  Every verification is audited with the actor ``cli``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from idp.accounts.assurance import (
    LEVELS,
    METHODS,
    AssuranceError,
    check_extra_evidence,
    check_level_and_method,
    record_verification,
    registry_check,
)
from idp.cli.common import CliError, emit, open_services
from idp.cli.users import _find_user
from idp.interaction.contacts import tell_claim_released
from idp.services import Services
from idp.storage.models import User

ALL_METHODS = sorted({m for level, ms in METHODS.items() if level != "L2" for m in ms})


def _evidence(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise CliError("--evidence must be a JSON object") from None
    try:
        return check_extra_evidence(data)
    except AssuranceError as exc:
        raise CliError(f"--{exc}") from None


@click.command("verify")
@click.argument("user")
@click.option("--level", required=True, type=click.Choice(list(LEVELS[1:])))
@click.option("--method", required=True, type=click.Choice(ALL_METHODS))
@click.option("--evidence", default=None, help="JSON object added to the evidence")
@click.option("--face-image", default=None, help="image file for --method face")
@click.option("--json", "as_json", is_flag=True)
def verify(
    user: str,
    level: str,
    method: str,
    evidence: str | None,
    face_image: str | None,
    as_json: bool,
) -> None:
    """Record that USER's identity was verified at LEVEL by METHOD.

    USER is an account id, phone, e-mail or ID number.
    """
    try:
        check_level_and_method(level, method)
    except AssuranceError as exc:
        raise CliError(str(exc)) from None
    extra = _evidence(evidence)
    if method == "face" and face_image is None:
        raise CliError("--method face needs --face-image")
    released: list[User] = []
    with open_services() as services:
        data = _record(services, user, level, method, extra, face_image, released)
        for holder in released:  # told after the commit: the release has happened
            tell_claim_released(services, holder)
    lines = [f"{data['user']}: {level} by {method} (txn {data['txn']})"]
    if released:
        lines.append(f"released the unverified claim of {released[0].id} to this ID number")
        data["released"] = released[0].id
    emit(data, as_json, lines)


def _record(
    services: Services,
    user: str,
    level: str,
    method: str,
    extra: dict[str, Any] | None,
    face_image: str | None,
    released: list[User],
) -> dict[str, Any]:
    with services.db.transaction() as session:
        account = _find_user(services, session, user)
        image = None
        if face_image is not None and method == "face":
            try:
                with open(face_image, "rb") as fh:
                    image = fh.read()
            except OSError as exc:
                raise CliError(f"--face-image: cannot read {face_image}: {exc.strerror}") from None
        try:
            registry = registry_check(
                services.identity_verifier, services.vault, account, method, image
            )
        except AssuranceError as exc:
            raise CliError(str(exc)) from None
        try:
            row = record_verification(
                session,
                account,
                level,
                method,
                verifier="cli",
                registry=registry,
                extra=extra,
                on_release=released.append,
            )
        except AssuranceError as exc:
            raise CliError(str(exc)) from None
        return {"user": account.id, "level": row.level, "method": row.method, "txn": row.txn}
