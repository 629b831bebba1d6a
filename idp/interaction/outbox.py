"""The development outbox: messages (SMS codes, e-mail links) kept in a table instead of being sent.

``make demo`` prints them with :func:`read_outbox`, so a demo user can read the code "sent" to
their phone.  Production uses a real gateway (:class:`adapters.sms.HttpSmsSender`) and never
fills this table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from adapters.mail import MailOutboxSender, SmtpMailSender
from adapters.sms import HttpSmsSender, OutboxSender
from idp.storage.db import Database
from idp.storage.models import OutboxMessage, utcnow


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    channel: str
    destination: str
    body: str
    created_at: dt.datetime


def outbox_store(db: Database) -> Callable[[str, str, str], None]:
    """A ``store`` callable for :class:`adapters.sms.OutboxSender` writing to ``db``."""

    def store(channel: str, destination: str, body: str) -> None:
        with db.transaction() as session:
            session.add(
                OutboxMessage(
                    channel=channel, destination=destination, body=body, created_at=utcnow()
                )
            )

    return store


def read_outbox(
    db: Database, *, destination: str | None = None, after_id: int = 0, limit: int = 50
) -> list[OutboxEntry]:
    """Messages in the outbox, oldest first (optionally for one destination, after an id)."""
    stmt = select(OutboxMessage).where(OutboxMessage.id > after_id)
    if destination:
        stmt = stmt.where(OutboxMessage.destination == destination)
    stmt = stmt.order_by(OutboxMessage.id).limit(limit)
    with db.session() as session:
        return [
            OutboxEntry(m.id, m.channel, m.destination, m.body, m.created_at)
            for m in session.scalars(stmt)
        ]


def build_sms_sender(settings: Any, db: Database) -> Any | None:
    """The configured SMS sender: the gateway, the outbox outside production, or none."""
    if settings.sms_gateway_url:
        return HttpSmsSender(
            url=settings.sms_gateway_url,
            username=settings.sms_gateway_username,
            password=settings.sms_gateway_password,
            api_key=settings.sms_gateway_api_key,
            sender=settings.sms_sender,
            connect_timeout=settings.sms_connect_timeout_ms / 1000,
            read_timeout=settings.sms_read_timeout_ms / 1000,
        )
    if settings.is_production:
        return None
    return OutboxSender(outbox_store(db))


def build_mail_sender(settings: Any, db: Database) -> Any | None:
    """The configured e-mail sender: SMTP, the outbox outside production, or none."""
    if settings.mail_smtp_host:
        return SmtpMailSender(
            host=settings.mail_smtp_host,
            port=settings.mail_smtp_port,
            username=settings.mail_smtp_username,
            password=settings.mail_smtp_password,
            sender=settings.mail_from,
        )
    if settings.is_production:
        return None
    return MailOutboxSender(outbox_store(db))
