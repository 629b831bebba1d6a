"""Logging that never carries a full identity number (PIPL; ARCHITECTURE.md "Privacy"),
nor a forged line, nor a database row.

A filter on the root handlers, and the record factory, treat every record, whatever module
logged it:

- anything shaped like an 18-character resident ID number or credit code is masked;
- control characters in the message (CR, LF, ESC, NUL, the Unicode line separators) are
  written as ``\\xNN``/``\\uNNNN``: a value an attacker sent (a username, a client_id) cannot
  start a forged log line or drive a terminal (ASVS 16.4.1);
- in a logged exception, the database driver's ``DETAIL`` line (PostgreSQL repeats the
  offending key values there: an e-mail, a phone) and any SQLAlchemy ``[parameters: …]`` are
  replaced by a placeholder.  The engine is also created with ``hide_parameters=True``
  (:mod:`idp.storage.db`), so bound values (a password hash, a phone) never reach a log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from idp.accounts.privacy import redact

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DETAIL = re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE)
_PARAMETERS = re.compile(r"\[parameters: .*?\]$", re.MULTILINE | re.DOTALL)


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (one log line stays one)."""
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text
    )


def scrub_database_detail(text: str) -> str:
    """Drop the row values a database error repeats (``DETAIL:`` lines, bound parameters)."""
    text = _DETAIL.sub(r"\1 [hidden]", text)
    return _PARAMETERS.sub("[parameters hidden]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_yitong_clean", False):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = escape_controls(scrub_database_detail(redact(message)))
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_database_detail(redact(record.exc_text))
        record._yitong_clean = True
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


def _request_id() -> str:
    """The current request's id (:mod:`idp.observability`), or ``-`` outside a request."""
    from flask import g, has_request_context

    if has_request_context():
        return str(g.get("request_id", "-"))
    return "-"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, ``request_id``
    (and ``exc`` for an exception).  The message went through :class:`RedactingFilter` first,
    so it carries no identity number, no control character and no database row."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id(),
        }
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


JsonFormatter.converter = time.gmtime  # type: ignore[assignment]


def configure_logging(log_format: str) -> None:
    """``json``: one redacted JSON line per record on stderr (idempotent); ``text``: as is."""
    if log_format != "json":
        return
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_FILTER)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
