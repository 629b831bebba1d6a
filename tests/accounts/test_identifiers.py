"""Resident ID numbers (GB 11643), credit codes (GB 32100), phones and e-mail addresses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from idp.accounts.identifiers import (
    IdentifierError,
    classify_login,
    credit_code_check_char,
    normalize_credit_code,
    normalize_email,
    normalize_phone,
    normalize_resident_id,
    organization_code_check_char,
    resident_id_check_char,
)
from idp.accounts.privacy import mask, redact
from tests.helpers import IDS


@pytest.mark.parametrize("number", IDS["resident_ids"])
def test_synthetic_resident_ids_are_valid(number: str) -> None:
    assert normalize_resident_id(number) == number


def test_lowercase_x_and_fullwidth_digits_are_normalized() -> None:
    assert normalize_resident_id("21030219590124627x") == "21030219590124627X"
    assert normalize_resident_id("２１０２０２１９７８０６２６３２８６") == "210202197806263286"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("21020219780626328", "18 characters"),
        ("2102021978062632866", "18 characters"),
        ("210202197806263287", "check character"),
        ("210202197802303286", "birth date"),  # 30 February
        ("21020219781326328X", "birth date"),  # month 13
        ("A10202197806263286", "17 digits"),
        ("010202197806263286", "region"),
    ],
)
def test_invalid_resident_ids_are_refused_with_a_reason(number: str, reason: str) -> None:
    with pytest.raises(IdentifierError, match=reason):
        normalize_resident_id(number)


def test_future_birth_date_is_refused() -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    first17 = f"210202{tomorrow:%Y%m%d}123"
    number = first17 + resident_id_check_char(first17)
    with pytest.raises(IdentifierError, match="impossible birth date"):
        normalize_resident_id(number)
    # The same number is valid on a day after that birth date.
    assert normalize_resident_id(number, today=tomorrow + dt.timedelta(days=1)) == number


@pytest.mark.parametrize("code", IDS["credit_codes"])
def test_synthetic_credit_codes_are_valid(code: str) -> None:
    assert normalize_credit_code(code) == code
    assert credit_code_check_char(code[:17]) == code[17]


def test_credit_code_with_wrong_check_or_letter_is_refused() -> None:
    code = IDS["credit_codes"][0]
    wrong = code[:17] + ("0" if code[17] != "0" else "1")
    with pytest.raises(IdentifierError, match="check character"):
        normalize_credit_code(wrong)
    with pytest.raises(IdentifierError, match="outside GB 32100"):
        normalize_credit_code(code[:5] + "I" + code[6:])  # I is not in the alphabet


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800001234", "+8613800001234"),
        ("+86 138-0000-1234", "+8613800001234"),
        ("008613800001234", "+8613800001234"),
    ],
)
def test_phone_normalization(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["12800001234", "1380000123", "+1 415 555 0100", "phone"])
def test_bad_phones_are_refused(raw: str) -> None:
    with pytest.raises(IdentifierError):
        normalize_phone(raw)


def test_email_is_lowercased_whole() -> None:
    # Lower-cased whole: Li.Wei@ and li.wei@ are one mailbox, so one account (item 10).
    assert normalize_email(" Li.Wei@Example.CN ") == "li.wei@example.cn"
    for bad in ["no-at", "a@b", "a b@example.cn", "@example.cn", "x@-bad.cn"]:
        with pytest.raises(IdentifierError):
            normalize_email(bad)


def test_login_classification() -> None:
    assert classify_login("210202197806263286") == "id_number"
    assert classify_login("13800001234") == "phone"
    assert classify_login("a@example.cn") == "email"
    assert classify_login("jdoe") == "unknown"


def test_masking_and_redaction() -> None:
    assert mask("210202197806263286") == "2102**********3286"
    text = "user 210202197806263286 and code 21030219590124627X logged in"
    out = redact(text)
    assert "210202197806263286" not in out and "21030219590124627X" not in out
    assert "2102**********3286" in out


# ------------------------------------------------------------------ issue 10: credit codes
def _with_checks(first16: str) -> str:
    """A code whose two check characters are right, from its first 16 characters."""
    first17 = first16 + organization_code_check_char(first16[8:16])
    return first17 + credit_code_check_char(first17)


@pytest.mark.parametrize(
    ("first8", "check"),
    [
        ("D2143569", "X"),  # GB 11714's own example: D2143569-X (sum 199, 11 - 1 = 10 -> X)
        ("00000000", "0"),  # sum 0: 11 - 0 = 11 -> 0
        ("00000005", "1"),  # sum 10: 11 - 10 = 1
        ("M0001000", "6"),  # M counts 22: 66 + 5 = 71; 11 - 5 = 6
        ("J0000000", "9"),  # J counts 19 (A-Z order, not its GB 32100 place): 57, 11 - 2
    ],
)
def test_organization_code_check_char_follows_gb_11714(first8: str, check: str) -> None:
    assert organization_code_check_char(first8) == check


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c[:17], "18 characters"),
        (lambda c: c + "0", "18 characters"),
        (lambda c: c[:9] + "O" + c[10:], "outside GB 32100"),
        (lambda c: c[:9] + "Z" + c[10:], "outside GB 32100"),
        (lambda c: c[:9] + "S" + c[10:], "outside GB 32100"),
        (lambda c: c[:9] + "V" + c[10:], "outside GB 32100"),
        (lambda c: c[:9] + "I" + c[10:], "outside GB 32100"),
        (lambda c: c[:3] + "A" + c[4:], "region code"),
    ],
)
def test_credit_code_shape_rules(mutate: Any, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        normalize_credit_code(mutate(IDS["credit_codes"][0]))


def test_credit_code_with_wrong_organization_check_is_refused() -> None:
    code = IDS["credit_codes"][1]
    org_check = code[16]
    wrong16 = "1" if org_check != "1" else "2"
    first17 = code[:16] + wrong16
    # The code's own check character is right for the wrong 17th character, so only the
    # organization-code rule can refuse it.
    forged = first17 + credit_code_check_char(first17)
    with pytest.raises(IdentifierError, match="organization code check"):
        normalize_credit_code(forged)


def test_credit_code_is_normalized_from_lower_case_and_full_width() -> None:
    code = IDS["credit_codes"][2]
    wide = "".join(chr(ord(c) + 0xFEE0) for c in code.lower())
    assert normalize_credit_code(f"  {wide} ") == code
    assert normalize_credit_code(_with_checks(code[:16])) == code
