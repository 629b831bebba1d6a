"""Citizen (natural-person) accounts: registration and lookup by login identifier.

A citizen logs in with their resident ID number, mobile number or e-mail address.  All three
are normalized the same way at registration and at login (checklist 111), and each is unique.

Nothing typed at registration blocks the person it belongs to (issue 15 item 2, checklist
81): a phone number or e-mail address is a login name only once confirmed (by SMS code, by
the e-mailed link; :mod:`idp.interaction.contacts`), and an unconfirmed one held by another
account is taken off that account when someone registers or confirms it.  An ID number held
by an account verified below L3 does not refuse a registration either: the new account
*claims* it (``id_claim_digest``), and whichever claimant is verified at L3 or above takes it
(:func:`idp.accounts.assurance.settle_id_claim`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from idp import audit
from idp.accounts.assurance import id_holder_verified, record_verification
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

#: The operator's refusal of a field another account holds for sure (never on the public page).
ALREADY_EXISTS = {
    "id_number": "an account with this ID number already exists",
    "phone": "an account with this phone number already exists",
    "email": "an account with this e-mail address already exists",
}

#: A refusal of one field: the English message id (listed in :mod:`idp.messages`) and its values.
Problem = tuple[str, dict[str, int]]


class RegistrationError(ValueError):
    """Registration refused, every problem at once (issue 15 item 6): ``problems`` maps each
    form field to its message, so a page shows them all beside their fields.

    ``field`` and ``message`` (English) are the first problem, for the command line.
    """

    def __init__(self, problems: dict[str, Problem]) -> None:
        self.problems = problems
        english = {f: (m % p if p else m) for f, (m, p) in problems.items()}
        self.field, self.message = next(iter(english.items()))
        super().__init__("; ".join(f"{f}: {m}" for f, m in english.items()))


@dataclass(frozen=True)
class Collision:
    """Something typed at registration that another account holds for sure: a confirmed
    ``phone`` or ``email``, or an ``id_number`` verified at L3 or above (``holder``)."""

    field: str
    holder: str
    value: str  # normalized


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
    collisions: list[Collision] | None = None,
) -> User:
    """Validate, check uniqueness and create a citizen; raises :class:`RegistrationError`
    naming every field that is wrong, not only the first.

    ``collisions``: the self-service page passes a list, because its answer must not tell
    whether an ID number, phone or e-mail belongs to someone (checklist 83).  Then such a
    field is not refused but listed there (the caller tells the holder): the ID number
    becomes a claim, as one held below L3 does, and the phone or e-mail is left off the new
    account.  Without it (the command line, an operator) the field is refused, by name.
    """
    problems: dict[str, Problem] = {}
    name = " ".join((data.name or "").split())
    if not name or len(name) > 100:
        problems["name"] = ("name is required (at most 100 characters)", {})
    id_number = phone = email = None
    try:
        id_number = normalize_resident_id(data.id_number)
    except IdentifierError as exc:
        problems["id_number"] = (str(exc), {})
    try:
        phone = normalize_phone(data.phone) if data.phone else None
    except IdentifierError as exc:
        problems["phone"] = (str(exc), {})
    try:
        email = normalize_email(data.email) if data.email else None
    except IdentifierError as exc:
        problems["email"] = (str(exc), {})
    if passwords.too_long(data.password):
        problems["password"] = (
            "password must have at most %(n)d characters",
            {"n": passwords.max_length},
        )
    else:
        try:
            passwords.check_policy(
                data.password,
                context=(name, id_number or "", (phone or "")[3:], (email or "").split("@")[0]),
            )
        except PasswordPolicyError as exc:
            problems["password"] = (exc.message, exc.params)

    contested = False
    id_digest = vault.digest(id_number) if id_number else ""
    holder = (
        session.scalar(select(User.id).where(User.id_number_digest == id_digest))
        if id_number
        else None
    )
    taken = {
        "id_number": holder if holder is not None and id_holder_verified(session, holder) else None,
        "phone": confirmed_holder(session, "phone", phone) if phone else None,
        "email": confirmed_holder(session, "email", email) if email else None,
    }
    contested = holder is not None  # claimed here, settled by an L3+ verification
    found: list[Collision] = []
    for field, value in (("id_number", id_number), ("phone", phone), ("email", email)):
        owner = taken[field]
        if owner is None or value is None:
            continue
        if collisions is None:
            problems[field] = (ALREADY_EXISTS[field], {})
        else:
            found.append(Collision(field, owner, value))
    phone = None if taken["phone"] else phone
    email = None if taken["email"] else email
    if problems:
        raise RegistrationError(problems)
    assert id_number is not None
    new_id_value = new_id()
    for kind, value in (("phone", phone), ("email", email)):
        if value:
            release_unconfirmed(session, kind, value, keep=new_id_value, actor=actor, ip=ip)

    user = User(
        id=new_id_value,
        kind="citizen",
        name=name,
        id_number_ciphertext=vault.seal(id_number),
        id_number_digest=None if contested else id_digest,
        id_claim_digest=id_digest if contested else None,
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
        details={"masked_id": user.id_number_masked, "id_contested": contested},
    )
    # Identity assurance L2: self-declared, format-checked (docs/identity-assurance.md).
    record_verification(session, user, "L2", "self-declared", verifier=actor, ip=ip)
    if collisions is not None:
        collisions.extend(found)
    return user


def _contact_column(kind: str) -> InstrumentedAttribute[str | None]:
    return User.phone if kind == "phone" else User.email


def confirmed_holder(session: Session, kind: str, value: str) -> str | None:
    """The account whose *confirmed* phone (``kind`` ``phone``) or e-mail this is."""
    flag = User.phone_verified if kind == "phone" else User.email_verified
    return session.scalar(select(User.id).where(_contact_column(kind) == value, flag.is_(True)))


def release_unconfirmed(
    session: Session, kind: str, value: str, *, keep: str, actor: str, ip: str | None = None
) -> list[str]:
    """Take an unconfirmed phone or e-mail off every account but ``keep`` (audited).

    Whoever registers or confirms a contact point gets it; an account that typed it and never
    proved it loses nothing it had proven (checklist 81: a squatter never blocks the owner).
    """
    flag = User.phone_verified if kind == "phone" else User.email_verified
    rows = session.scalars(
        select(User).where(_contact_column(kind) == value, User.id != keep, flag.is_(False))
    ).all()
    for row in rows:
        if kind == "phone":
            row.phone = None
        else:
            row.email = None
        audit.record(
            session,
            "user.contact_released",
            actor=actor,
            target=row.id,
            ip=ip,
            details={"kind": kind, "to": keep},
        )
    if rows:
        session.flush()  # before the value is written elsewhere (unique column)
    return [r.id for r in rows]


def find_citizen(
    session: Session, login: str, *, vault: IdentityVault, confirmed_only: bool = True
) -> User | None:
    """Find a citizen by ID number, phone or e-mail; None when nothing matches.

    A phone number or e-mail address is a login name only once confirmed (issue 15 item 2);
    ``confirmed_only=False`` is for operators looking an account up, never for a login.
    """
    kind = classify_login(login)
    try:
        if kind == "id_number":
            number = normalize_resident_id(login)
            return session.scalars(_CITIZEN_BY_ID, {"v": vault.digest(number)}).first()
        if kind == "phone":
            query = _CITIZEN_BY[kind, confirmed_only]
            return session.scalars(query, {"v": normalize_phone(login)}).first()
        if kind == "email":
            query = _CITIZEN_BY[kind, confirmed_only]
            return session.scalars(query, {"v": normalize_email(login)}).first()
    except IdentifierError:
        return None
    return None


# The login lookups, built once (building a SELECT costs more than running its cached form).
_CITIZEN = select(User).where(User.kind == "citizen")
_CITIZEN_BY_ID = _CITIZEN.where(User.id_number_digest == bindparam("v"))
_CITIZEN_BY = {
    ("phone", False): _CITIZEN.where(User.phone == bindparam("v")),
    ("phone", True): _CITIZEN.where(User.phone == bindparam("v"), User.phone_verified.is_(True)),
    ("email", False): _CITIZEN.where(User.email == bindparam("v")),
    ("email", True): _CITIZEN.where(User.email == bindparam("v"), User.email_verified.is_(True)),
}


def find_account(session: Session, who: str, *, vault: IdentityVault) -> User | None:
    """The account with id ``who``, or the citizen whose e-mail, phone or ID number it is."""
    who = (who or "").strip()
    user = session.get(User, who) if who and len(who) <= 64 else None
    return user or find_citizen(session, who, vault=vault, confirmed_only=False)
