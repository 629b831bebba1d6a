"""Carrying an authorization request across login, step-up and consent without the database.

The validated request parameters travel in a signed, time-limited token (``ix``) through the
login and consent pages and back (ARCHITECTURE.md: keep pre-consent flow state out of the
database).  The token records when the interaction began, so a login that happened during it
satisfies ``prompt=login`` and ``max_age``, while one from before does not.  Tampering with it
(for example removing ``prompt=login``) breaks the signature.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

INTERACTION_MAX_AGE = 1800  # seconds a login/consent page may stay open


class InteractionExpired(Exception):
    """The interaction token is missing, forged or too old."""


class InteractionSealer:
    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="yitong-interaction")

    def seal(self, multi: dict[str, list[str]], started: dt.datetime, **extra: Any) -> str:
        payload = {"p": multi, "t": started.timestamp(), **extra}
        return self._serializer.dumps(payload)

    def open(self, token: str | None) -> tuple[dict[str, list[str]], dt.datetime, dict[str, Any]]:
        if not token or len(token) > 32768:
            raise InteractionExpired("no interaction")
        try:
            payload = self._serializer.loads(token, max_age=INTERACTION_MAX_AGE)
        except BadSignature:
            raise InteractionExpired("the sign-in page has expired; start again") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("p"), dict):
            raise InteractionExpired("malformed interaction")
        multi = {
            str(k): [str(x) for x in v] for k, v in payload["p"].items() if isinstance(v, list)
        }
        started = dt.datetime.fromtimestamp(float(payload["t"]), dt.UTC)
        extra = {k: v for k, v in payload.items() if k not in ("p", "t")}
        return multi, started, extra
