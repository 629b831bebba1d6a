"""Carrying an authorization request across login, step-up and consent without the database.

The validated request parameters travel in an encrypted, time-limited token (``ix``) through
the login and consent pages and back (ARCHITECTURE.md: keep pre-consent flow state out of the
database).  The token records when the interaction began, so a login that happened during it
satisfies ``prompt=login`` and ``max_age``, while one from before does not.

Issue 14 items 6 and 7:

- **Encrypted** (Fernet: AES-128-CBC with HMAC-SHA-256, keyed from the instance secret): a
  ``login_hint`` holding an ID number is not readable from access logs or browser history,
  and tampering (removing ``prompt=login``, say) breaks the MAC.
- **Bound to the browser** that started it: the token names a random value kept in that
  browser's session cookie; another browser opening it (an attacker handing a victim the
  ``ix`` of a flow for the attacker's client) is refused.
- **One code per interaction**: each token has an id; :func:`idp.blueprints.oidc` spends it
  (:func:`~idp.storage.repo.consume_once`) when it issues the code, so replaying the token at
  ``/authorize/resume`` mints nothing more.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

INTERACTION_MAX_AGE = 1800  # seconds a login/consent page may stay open
MAX_TOKEN = 32768


class InteractionExpired(Exception):
    """The interaction token is missing, forged, too old or belongs to another browser."""


@dataclass(frozen=True)
class Interaction:
    """An opened ``ix``: the request, when the interaction began, its id and its browser."""

    multi: dict[str, list[str]]
    started: dt.datetime
    iid: str
    browser: str


class InteractionSealer:
    def __init__(self, secret_key: str) -> None:
        key = hmac.new(secret_key.encode(), b"yitong-interaction", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, multi: dict[str, list[str]], started: dt.datetime, *, browser: str) -> str:
        payload = {"p": multi, "t": started.timestamp(), "i": secrets.token_hex(16), "b": browser}
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open(self, token: str | None, *, browser: str | None) -> Interaction:
        """Decrypt and check ``token``; ``browser`` is this browser's binding value."""
        if not token or len(token) > MAX_TOKEN:
            raise InteractionExpired("no interaction")
        try:
            raw = self._fernet.decrypt(token.encode("ascii"), ttl=INTERACTION_MAX_AGE)
            payload = json.loads(raw)
        except (InvalidToken, UnicodeError, ValueError):
            raise InteractionExpired("the sign-in page has expired; start again") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("p"), dict):
            raise InteractionExpired("malformed interaction")
        bound = str(payload.get("b", ""))
        if not browser or not hmac.compare_digest(bound, browser):
            raise InteractionExpired("the sign-in was started in another browser")
        multi = {
            str(k): [str(x) for x in v] for k, v in payload["p"].items() if isinstance(v, list)
        }
        started = dt.datetime.fromtimestamp(float(payload["t"]), dt.UTC)
        return Interaction(multi, started, str(payload.get("i", "")), bound)
