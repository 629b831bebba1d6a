"""Validation and normalization of the identifiers people and companies are known by.

- Resident identity numbers: GB 11643-1999 (18 characters; 6-digit region code, 8-digit
  birth date, 3-digit sequence, ISO 7064 MOD 11-2 check character).
- Unified social credit codes: GB 32100-2015 (18 characters from a 31-character alphabet,
  MOD 31 check character), whose characters 9-17 are the organization code of GB 11714-1997
  with its own MOD 11 check character.
- Mainland mobile numbers (11 digits starting with 1[3-9], an optional +86 prefix).
- E-mail addresses (a syntactic check; the whole address is lower-cased).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata


class IdentifierError(ValueError):
    """The identifier is not valid; the message says why (and never repeats the full value)."""


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def resident_id_check_char(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalize_resident_id(raw: str, *, today: dt.date | None = None) -> str:
    """Return the canonical 18-character resident ID number or raise :class:`IdentifierError`."""
    value = unicodedata.normalize("NFKC", raw or "").strip().upper()
    if len(value) != 18:
        raise IdentifierError("resident ID number must have 18 characters")
    if not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise IdentifierError("resident ID number must be 17 digits and a digit or X")
    if value[:6] == "000000" or value[0] == "0":
        raise IdentifierError("resident ID number has an invalid region code")
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise IdentifierError("resident ID number has an invalid birth date") from None
    today = today or dt.date.today()
    if birth > today or birth.year < 1880:
        raise IdentifierError("resident ID number has an impossible birth date")
    if resident_id_check_char(value[:17]) != value[17]:
        raise IdentifierError("resident ID number check character does not match")
    return value


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code_check_char(first17: str) -> str:
    """GB 32100-2015 §4.2: the 18th character, from the weighted sum of the first 17 mod 31."""
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_value(char: str) -> int:
    # GB 11714-1997: digits count as themselves, the letters A-Z as 10-35.
    return int(char) if char.isdigit() else ord(char) - ord("A") + 10


def organization_code_check_char(first8: str) -> str:
    """GB 11714-1997: ``11 - (weighted sum mod 11)``; 10 is written ``X`` and 11 is ``0``."""
    total = sum(_org_value(c) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def normalize_credit_code(raw: str) -> str:
    """Return the canonical unified social credit code or raise :class:`IdentifierError`.

    Checked in this order, each with its own message: length, alphabet (no I, O, Z, S, V),
    the region code (characters 3-8 are digits), the embedded organization code's check
    character (character 17, GB 11714), and the code's own check character (character 18).
    """
    value = unicodedata.normalize("NFKC", raw or "").strip().upper()
    if len(value) != 18:
        raise IdentifierError("unified social credit code must have 18 characters")
    if any(c not in _USCC_ALPHABET for c in value):
        raise IdentifierError("unified social credit code has a character outside GB 32100")
    if not value[2:8].isdigit():
        raise IdentifierError("unified social credit code has an invalid region code")
    if organization_code_check_char(value[8:16]) != value[16]:
        raise IdentifierError("organization code check character does not match (GB 11714)")
    if credit_code_check_char(value[:17]) != value[17]:
        raise IdentifierError("unified social credit code check character does not match")
    return value


_PHONE = re.compile(r"^1[3-9]\d{9}$")


def normalize_phone(raw: str) -> str:
    """Return a mainland mobile number as ``+86`` and 11 digits."""
    value = unicodedata.normalize("NFKC", raw or "")
    value = re.sub(r"[\s\-()]", "", value)
    if value.startswith("+86"):
        value = value[3:]
    elif value.startswith("0086"):
        value = value[4:]
    if not _PHONE.match(value):
        raise IdentifierError("phone must be a mainland mobile number (11 digits, 13x-19x)")
    return "+86" + value


_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def normalize_email(raw: str) -> str:
    """Return the address lower-cased: the form it is stored and looked up in.

    RFC 5321 §2.4 lets a mail server treat the local part case-sensitively, but no provider
    in use does, and people type ``Li.Wei@`` and ``li.wei@`` for the same mailbox.  Keeping
    the local part's case let one mailbox hold two accounts (and a lookup miss the account
    it owns), so the whole address is folded, for storage and for every lookup alike.
    """
    value = unicodedata.normalize("NFKC", raw or "").strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise IdentifierError("e-mail address is not valid")
    return value.lower()


def classify_login(raw: str) -> str:
    """Say which identifier a login name is: ``id_number``, ``phone`` or ``email``."""
    value = unicodedata.normalize("NFKC", raw or "").strip()
    if "@" in value:
        return "email"
    digits = re.sub(r"[\s\-()+]", "", value)
    if len(value) == 18 and value[:17].isdigit():
        return "id_number"
    if digits.isdigit() and 11 <= len(digits) <= 15:
        return "phone"
    return "unknown"
