"""SMS delivery: an HTTP gateway sender and a development outbox (the ``MessageSender`` protocol).

:class:`HttpSmsSender` posts ``{"to": …, "text": …, "sender": …}`` as JSON to the gateway URL
with HTTP Basic credentials (or a bearer API key), bounded connect and read timeouts, and
never follows redirects (the credentials must not travel to another host).  Any network
failure, timeout or 5xx is :class:`AdapterUnavailable` ("try again later"); a 4xx is an
:class:`AdapterError` (misconfiguration or a number the gateway refuses).  The message text
(a one-time code) is never logged.

:class:`OutboxSender` is for development and demos: it hands each message to a ``store``
callable (the provider stores it in the ``outbox_messages`` table, which ``make demo`` prints).

This module imports neither flask nor idp (ARCHITECTURE.md, dependency rules), and imports
``requests`` only when a message is sent through a gateway (issue 12 item 5).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import AdapterConfigError, AdapterError, AdapterUnavailable

log = logging.getLogger(__name__)

_PHONE = re.compile(r"\+?[0-9]{6,16}")


def _mask(number: str) -> str:
    return number[:-8] + "****" + number[-4:] if len(number) > 8 else "****"


@dataclass(frozen=True)
class HttpSmsSender:
    """Sends through an HTTP SMS gateway (for example a carrier's or a cloud provider's)."""

    url: str
    username: str = ""
    password: str = ""
    api_key: str = ""
    sender: str = ""
    connect_timeout: float = 3.0
    read_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise AdapterConfigError("sms", "gateway_url", "must be an http(s) URL")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise AdapterConfigError("sms", "timeouts", "must be positive")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HttpSmsSender:
        """Build from a plain mapping (``gateway_url``, ``username``, ``password``, …)."""
        try:
            return cls(
                url=str(config["gateway_url"]),
                username=str(config.get("username", "")),
                password=str(config.get("password", "")),
                api_key=str(config.get("api_key", "")),
                sender=str(config.get("sender", "")),
                connect_timeout=float(config.get("connect_timeout", 3.0)),
                read_timeout=float(config.get("read_timeout", 5.0)),
            )
        except KeyError:
            raise AdapterConfigError("sms", "gateway_url", "is required") from None
        except (TypeError, ValueError) as exc:
            raise AdapterConfigError("sms", None, f"invalid value: {exc}") from None

    def send(self, destination: str, text: str) -> None:
        import requests

        if not _PHONE.fullmatch(destination or ""):
            raise AdapterError("not a phone number")
        headers = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self.username:
            auth = (self.username, self.password)
        body = {"to": destination, "text": text}
        if self.sender:
            body["sender"] = self.sender
        try:
            resp = requests.post(
                self.url,
                json=body,
                headers=headers,
                auth=auth,
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.warning(
                "SMS gateway unreachable for %s: %s", _mask(destination), type(exc).__name__
            )
            raise AdapterUnavailable("the SMS gateway is unreachable") from None
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            log.warning("SMS gateway answered %s for %s", resp.status_code, _mask(destination))
            raise AdapterUnavailable(f"the SMS gateway answered {resp.status_code}")
        if not 200 <= resp.status_code < 300:
            log.warning("SMS gateway refused %s: %s", _mask(destination), resp.status_code)
            raise AdapterError(f"the SMS gateway refused the message ({resp.status_code})")


@dataclass(frozen=True)
class OutboxSender:
    """Development sender: keeps every message (shown by ``make demo``), sends nothing."""

    store: Callable[[str, str, str], None]  # (channel, destination, body)

    def send(self, destination: str, text: str) -> None:
        self.store("sms", destination, text)
