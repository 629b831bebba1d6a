"""The e-mail senders (issue 15 item 1): the development outbox and the SMTP sender's errors."""

from __future__ import annotations

import socket

import pytest

from adapters.base import AdapterConfigError, AdapterError, AdapterUnavailable, MailSender
from adapters.mail import MailOutboxSender, SmtpMailSender, mask_address


def test_outbox_keeps_the_message_on_the_email_channel() -> None:
    kept: list[tuple[str, str, str]] = []
    sender = MailOutboxSender(lambda *m: kept.append(m))
    assert isinstance(sender, MailSender)
    sender.send_mail("a@example.cn", "Subject", "Body")
    assert kept == [("email", "a@example.cn", "Subject\n\nBody")]


def test_smtp_sender_needs_host_and_sender() -> None:
    with pytest.raises(AdapterConfigError):
        SmtpMailSender(host="", sender="noreply@gov.example")
    with pytest.raises(AdapterConfigError):
        SmtpMailSender(host="mail.gov.example", sender="")


def test_header_injection_is_refused() -> None:
    sender = SmtpMailSender(host="127.0.0.1", sender="noreply@gov.example")
    with pytest.raises(AdapterError):
        sender.send_mail("a@example.cn\r\nBcc: x@evil.example", "s", "t")


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = SmtpMailSender(host="127.0.0.1", port=port, sender="noreply@gov.example", timeout=2)
    with pytest.raises(AdapterUnavailable):
        sender.send_mail("a@example.cn", "s", "t")


def test_mask_address() -> None:
    assert mask_address("zhang.san@example.cn") == "z***@example.cn"
