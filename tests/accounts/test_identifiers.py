"""Resident ID numbers (GB 11643), credit codes (GB 32100), phones and e-mail addresses."""

from __future__ import annotations

import datetime as dt

import pytest

from idp.accounts.identifiers import (
    IdentifierError,
    classify_login,
    credit_code_check_char,
    normalize_credit_code,
    normalize_email,
    normalize_phone,
    normalize_resident_id,
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
