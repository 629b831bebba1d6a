"""Known devices: a signed cookie naming the accounts that signed in from this browser.

A known device keeps its owner out of the lockout that an attacker's guesses cause elsewhere
(checklist 81): :class:`~idp.interaction.throttle.LoginGate` asks :meth:`KnownDevices.device_for`
before it refuses a password check.  The cookie holds at most five ``[user_id, device_id]``
pairs, signed with the app secret (so identical on every worker) and never trusted unsigned.
"""

from __future__ import annotations

import hmac
import secrets

from flask import has_request_context, request
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

DEVICE_COOKIE_TTL = 400 * 86400  # the longest lifetime browsers honour
MAX_DEVICES = 5


class KnownDevices:
    """Reads and writes the known-device cookie of the current request."""

    def __init__(self, secret_key: str, *, secure: bool) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="yitong-known-device")
        self.secure = secure
        self.cookie_name = "__Host-yitong_dev" if secure else "yitong_dev"

    def _pairs(self) -> list[list[str]]:
        raw = request.cookies.get(self.cookie_name)
        if not raw or len(raw) > 4000:
            return []
        try:
            data = self._serializer.loads(raw)
        except BadSignature:
            return []
        if not isinstance(data, list):
            return []
        return [
            d
            for d in data
            if isinstance(d, list) and len(d) == 2 and all(isinstance(x, str) for x in d)
        ]

    def device_for(self, user_id: str) -> str | None:
        """The id of this browser's known device for ``user_id``, or None (also outside a request)."""
        if not has_request_context():
            return None
        for uid, did in self._pairs():
            if hmac.compare_digest(uid, user_id):
                return did
        return None

    def remember(self, resp: Response, user_id: str) -> None:
        """Mark this browser as a known device of ``user_id`` (after a completed sign-in)."""
        pairs = [d for d in self._pairs() if d[0] != user_id][-(MAX_DEVICES - 1) :]
        did = self.device_for(user_id) or secrets.token_urlsafe(16)
        pairs.append([user_id, did])
        resp.set_cookie(
            self.cookie_name,
            self._serializer.dumps(pairs),
            max_age=DEVICE_COOKIE_TTL,
            httponly=True,
            secure=self.secure,
            samesite="Lax",
            path="/",
        )
