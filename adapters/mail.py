"""E-mail delivery: an SMTP sender and a development outbox (the ``MailSender`` protocol).

:class:`SmtpMailSender` submits plain-text UTF-8 mail to a submission server: implicit TLS on
port 465, otherwise STARTTLS (required, never plain text, since a reset link is a credential),
with a bounded timeout.  A network failure or a 4xx answer is :class:`AdapterUnavailable`
("try again later"); a 5xx refusal is an :class:`AdapterError`.  Message text is never logged.

:class:`MailOutboxSender` is for development and demos: like :class:`adapters.sms.OutboxSender`
it hands each message to a ``store`` callable (the ``outbox_messages`` table, channel ``email``).

This module imports neither flask nor idp (ARCHITECTURE.md, dependency rules).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from adapters.base import AdapterConfigError, AdapterError, AdapterUnavailable

log = logging.getLogger(__name__)


def mask_address(address: str) -> str:
    """``z***@example.cn``: enough for a log line, not enough to identify the person."""
    local, _sep, domain = address.rpartition("@")
    return (local[:1] + "***@" + domain) if local else "***"


@dataclass(frozen=True)
class SmtpMailSender:
    """Sends through an SMTP submission server (STARTTLS, or implicit TLS on port 465)."""

    host: str
    sender: str
    port: int = 587
    username: str = ""
    password: str = ""
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.host or "@" not in self.sender:
            raise AdapterConfigError("mail", "smtp_host/from", "a host and a sender are required")
        if not 0 < self.port < 65536 or self.timeout <= 0:
            raise AdapterConfigError("mail", "smtp_port", "must be a port and a positive timeout")

    def _message(self, destination: str, subject: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = destination
        msg["Subject"] = subject
        msg.set_content(text)
        return msg

    def send_mail(self, destination: str, subject: str, text: str) -> None:
        if "@" not in destination or any(ch in destination for ch in "\r\n"):
            raise AdapterError("not an e-mail address")
        context = ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if self.port == 465:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.port != 465:
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(self._message(destination, subject, text))
        except smtplib.SMTPResponseException as exc:
            log.warning("mail server answered %s for %s", exc.smtp_code, mask_address(destination))
            if 400 <= exc.smtp_code < 500:
                raise AdapterUnavailable("the mail server is busy") from None
            raise AdapterError("the mail server refused the message") from None
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail server unreachable for %s: %s", mask_address(destination), exc)
            raise AdapterUnavailable("the mail server is unreachable") from None


@dataclass(frozen=True)
class MailOutboxSender:
    """Development sender: keeps every message (shown by ``make demo``), sends nothing."""

    store: Callable[[str, str, str], None]  # (channel, destination, body)

    def send_mail(self, destination: str, subject: str, text: str) -> None:
        self.store("email", destination, f"{subject}\n\n{text}")
