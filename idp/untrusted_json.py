"""The one loader for JSON that comes from outside (RFC 8259, with an attacker in mind).

Every JSON document a client, a browser or a remote server sends goes through :func:`loads`:
the ``claims`` parameter, request objects, client assertions and other inbound JWTs, fetched
documents (``jwks_uri``, ``sector_identifier_uri``), registration and admin bodies (through
:class:`UntrustedJSONProvider`, Flask's ``request.get_json``).  The standard library's
``json.loads`` accepts things that later turn into 500s or quiet bugs:

- ``NaN``, ``Infinity``, ``-Infinity`` and numbers such as ``1e400`` that overflow to
  infinity: an ``exp`` of NaN compares false with everything and never expires, and
  ``int(NaN)`` raises;
- nesting deep enough to raise ``RecursionError`` (a ``claims`` value 1,000 arrays deep);
- NUL characters (PostgreSQL refuses them in text: a 500 at the insert) and lone surrogates
  (``"\\ud800"``, which cannot be encoded as UTF-8 for storage or logs).

All of these are refused with :class:`UntrustedJsonError` (a ``ValueError``).  Duplicate
member names are left to callers that care (``object_pairs_hook``), as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 32


class UntrustedJsonError(ValueError):
    """The document is refused; the message is generic and safe to show."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UntrustedJsonError("numbers must be finite")
    return value


def _no_constants(name: str) -> Any:
    raise UntrustedJsonError(f"{name} is not a JSON number")


def _check_tree(value: Any, max_depth: int) -> None:
    """Refuse nesting beyond ``max_depth`` and NUL or lone surrogates in any key or string.

    Iterative, so a deep document costs no recursion here.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise UntrustedJsonError(f"JSON nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, member in item.items():
                    _check_text(key)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise UntrustedJsonError("NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UntrustedJsonError("strings must be valid Unicode") from None


def loads(
    data: str | bytes | bytearray,
    *,
    max_depth: int = MAX_DEPTH,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """Parse untrusted JSON or raise :class:`UntrustedJsonError` (never RecursionError)."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise UntrustedJsonError("JSON must be UTF-8") from None
    try:
        value = json.loads(
            text,
            parse_float=_finite_float,
            parse_constant=_no_constants,
            object_pairs_hook=object_pairs_hook,
        )
    except UntrustedJsonError:
        raise
    except RecursionError:
        # The C scanner stops at the interpreter's recursion limit (about 1,000 levels).
        raise UntrustedJsonError(f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError:
        raise UntrustedJsonError("not valid JSON") from None
    # Other ValueErrors (a caller's object_pairs_hook refusing duplicates, an integer with
    # too many digits) propagate as they are: every caller catches ValueError.
    _check_tree(value, max_depth)
    return value


def is_finite_number(value: Any) -> bool:
    """An int or a finite float, not a bool: what a NumericDate or a count must be."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


class UntrustedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with :func:`loads` for request bodies (``request.get_json``).

    A refused body makes ``get_json`` raise 400 (or return None with ``silent=True``), like any
    malformed JSON.  Dumping is unchanged.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s, object_pairs_hook=kwargs.get("object_pairs_hook"))
