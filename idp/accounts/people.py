"""Citizen (natural-person) accounts: registration and lookup by login identifier.

A citizen logs in with their resident ID number, mobile number or e-mail address.  All three
are normalized the same way at registration and at login (checklist 111), and each is unique.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.accounts.assurance import record_verification
from idp.accounts.identifiers import (
    IdentifierError,
    classify_login,
    normalize_email,
    normalize_phone,
    normalize_resident_id,
)
from idp.accounts.passwords import PasswordPolicyError, Passwords
from idp.accounts.privacy import IdentityVault, mask
from idp.storage.models import User
from idp.storage.repo import new_id


class RegistrationError(ValueError):
    """Registration refused; ``field`` names the form field the message belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NewCitizen:
    name: str
    id_number: str
    phone: str | None
    email: str | None
    password: str


def register_citizen(
    session: Session,
    data: NewCitizen,
    *,
    vault: IdentityVault,
    passwords: Passwords,
    actor: str = "self",
    ip: str | None = None,
) -> User:
    """Validate, check uniqueness and create a citizen; raises :class:`RegistrationError`."""
    name = " ".join((data.name or "").split())
    if not name or len(name) > 100:
        raise RegistrationError("name", "name is required (at most 100 characters)")
    try:
        id_number = normalize_resident_id(data.id_number)
    except IdentifierError as exc:
        raise RegistrationError("id_number", str(exc)) from None
    try:
        phone = normalize_phone(data.phone) if data.phone else None
    except IdentifierError as exc:
        raise RegistrationError("phone", str(exc)) from None
    try:
        email = normalize_email(data.email) if data.email else None
    except IdentifierError as exc:
        raise RegistrationError("email", str(exc)) from None
    if passwords.too_long(data.password):
        raise RegistrationError(
            "password", f"password must have at most {passwords.max_length} characters"
        )
    try:
        passwords.check_policy(
            data.password, context=(name, id_number, (phone or "")[3:], (email or "").split("@")[0])
        )
    except PasswordPolicyError as exc:
        raise RegistrationError("password", str(exc)) from None

    id_digest = vault.digest(id_number)
    if session.scalar(select(User.id).where(User.id_number_digest == id_digest)):
        raise RegistrationError("id_number", "an account with this ID number already exists")
    if phone and session.scalar(select(User.id).where(User.phone == phone)):
        raise RegistrationError("phone", "an account with this phone number already exists")
    if email and session.scalar(select(User.id).where(User.email == email)):
        raise RegistrationError("email", "an account with this e-mail address already exists")

    user = User(
        id=new_id(),
        kind="citizen",
        name=name,
        id_number_ciphertext=vault.seal(id_number),
        id_number_digest=id_digest,
        id_number_masked=mask(id_number),
        phone=phone,
        email=email,
        password_hash=passwords.hash(data.password),
        roles=[],
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user.register",
        actor=actor,
        target=user.id,
        ip=ip,
        details={"masked_id": user.id_number_masked},
    )
    # Identity assurance L2: self-declared, format-checked (docs/identity-assurance.md).
    record_verification(session, user, "L2", "self-declared", verifier=actor, ip=ip)
    return user


def find_citizen(session: Session, login: str, *, vault: IdentityVault) -> User | None:
    """Find a citizen by ID number, phone or e-mail; None when nothing matches."""
    kind = classify_login(login)
    try:
        if kind == "id_number":
            number = normalize_resident_id(login)
            return session.scalars(
                select(User).where(
                    User.id_number_digest == vault.digest(number), User.kind == "citizen"
                )
            ).first()
        if kind == "phone":
            return session.scalars(
                select(User).where(User.phone == normalize_phone(login), User.kind == "citizen")
            ).first()
        if kind == "email":
            return session.scalars(
                select(User).where(User.email == normalize_email(login), User.kind == "citizen")
            ).first()
    except IdentifierError:
        return None
    return None


def find_account(session: Session, who: str, *, vault: IdentityVault) -> User | None:
    """The account with id ``who``, or the citizen whose e-mail, phone or ID number it is."""
    who = (who or "").strip()
    user = session.get(User, who) if who and len(who) <= 64 else None
    return user or find_citizen(session, who, vault=vault)
