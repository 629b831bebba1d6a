"""Messages raised outside a request (accounts, identifiers) that pages translate.

Listing them here lets the catalog extractor find them; the code that raises them keeps
plain English so it needs no Flask.
"""

from __future__ import annotations


def N_(text: str) -> str:
    return text


MESSAGES = (
    N_("name is required (at most 100 characters)"),
    N_("resident ID number must have 18 characters"),
    N_("resident ID number must be 17 digits and a digit or X"),
    N_("resident ID number has an invalid region code"),
    N_("resident ID number has an invalid birth date"),
    N_("resident ID number has an impossible birth date"),
    N_("resident ID number check character does not match"),
    N_("phone must be a mainland mobile number (11 digits, 13x-19x)"),
    N_("e-mail address is not valid"),
    N_("password is too common; choose another"),
    N_("password must not contain your name, phone or ID number"),
    N_("password repeats too few characters"),
    N_("an account with this ID number already exists"),
    N_("an account with this phone number already exists"),
    N_("an account with this e-mail address already exists"),
)
