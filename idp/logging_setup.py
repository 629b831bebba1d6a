"""Logging that never carries a full identity number (PIPL; ARCHITECTURE.md "Privacy").

A filter on the root handlers masks anything shaped like an 18-character resident ID number
or credit code in every record, whatever module logged it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from idp.accounts.privacy import redact


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = RedactingFilter()


def install_redaction() -> None:
    """Attach the filter to the root logger and its handlers (idempotent)."""
    root = logging.getLogger()
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))


def _redacting_factory(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    """Wrap the record factory so records are masked even where no handler filter runs."""
    if getattr(factory, "_yitong", False):
        return factory

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    make._yitong = True  # type: ignore[attr-defined]
    return make
