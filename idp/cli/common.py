"""What every ``yitong`` command shares: the error type, the one output path, the services.

Output: every line a command prints goes through :func:`out` (or :func:`emit` for data),
which escapes control characters, so that a client name, an audit actor or an LDAP error
text holding terminal escape sequences or line breaks cannot recolour, move the cursor in or
forge lines on the operator's terminal (issue 14, item 10).  ``--json`` output stays valid
JSON with those characters as ``\\uXXXX`` escapes.

Services: :func:`open_services` is the only place the commands get the app's services
from; it refuses (one line, exit 2) a configuration that cannot be used and a database
that ``yitong init`` has not brought to this version's schema (issue 14, item 11).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import Flask

from idp.app import create_app
from idp.config import ConfigError, Settings, load_settings
from idp.services import Services
from idp.storage.migrate import SchemaNotCurrentError, require_current_schema

# C0 and C1 controls and DEL, line and paragraph separators, and the bidirectional
# formatting characters (they reorder what the terminal shows).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# In JSON text the C0 controls are already escaped by json.dumps; the others are not.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``...)."""
    return _UNSAFE.sub(_escape, text)


def safe_json(data: Any, **kwargs: Any) -> str:
    """``data`` as JSON whose strings hold no raw control or bidi characters."""
    text = json.dumps(data, ensure_ascii=False, **kwargs)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def out(line: str = "", *, err: bool = False) -> None:
    """Print one line (to stderr with ``err``); control characters in it are escaped."""
    click.echo(safe(line), err=err)


def out_lines(lines: Iterable[str], *, err: bool = False) -> None:
    """Print each of ``lines`` through :func:`out` (a value's own line breaks stay escaped)."""
    for line in lines:
        out(line, err=err)


def emit(data: Any, as_json: bool, lines: Iterable[str] | None = None) -> None:
    """Print ``data`` as one JSON line (``--json``), else ``lines`` (default: indented JSON)."""
    if as_json:
        click.echo(safe_json(data))
    elif lines is None:
        click.echo(safe_json(data, indent=2))
    else:
        out_lines(lines)


class CliError(click.ClickException):
    """A user-facing error: printed as ``error: …`` (escaped) with exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        out(f"error: {self.message}", err=True)


def fail(message: str) -> CliError:
    """The error to raise: ``raise fail("...")`` keeps the call sites one line."""
    return CliError(message)


def load_settings_or_fail() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None


def make_app(*, require_schema: bool = True) -> Flask:
    """The app for the configured settings; refuses a database not at this schema version.

    ``yitong init`` passes ``require_schema=False``: making the schema is its job.
    """
    settings = load_settings_or_fail()
    try:
        app = create_app(settings)
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None
    if require_schema:
        try:
            require_current_schema(services_of(app).db)
        except SchemaNotCurrentError as exc:
            services_of(app).db.dispose()
            raise CliError(str(exc)) from None
    return app


def services_of(app: Flask) -> Services:
    """The services an app was built with (the one place that knows where they are kept)."""
    services: Services = app.extensions["yitong"]
    return services


@contextmanager
def open_services(*, require_schema: bool = True) -> Iterator[Services]:
    """The app's services inside an app context; the database pool is closed afterwards."""
    app = make_app(require_schema=require_schema)
    services = services_of(app)
    try:
        with app.app_context():
            yield services
    finally:
        services.db.dispose()
