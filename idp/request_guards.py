"""Guards every request passes before any view runs (checklist 111).

- No NUL in any request parameter (query string or form, names and values): PostgreSQL
  refuses NUL in text, so a NUL in ``nonce`` or a registration field became a 500 at the
  insert, and on SQLite it would be stored and compared differently.  One answer for every
  endpoint: 400 ``invalid_request`` (JSON for the API paths, a page for browsers, by the
  application's HTTP error handler).
- JSON bodies go through :mod:`idp.untrusted_json` (Flask's JSON provider), which refuses
  NaN/Infinity, deep nesting, NUL and lone surrogates.
- Urlencoded form bodies are parsed by :mod:`idp.urlencoded` (the app's request class gets
  :class:`~idp.urlencoded.UrlencodedForms`): Werkzeug's answer, without its parser's overhead.

Installed by ``create_app`` with one call to :func:`install_request_guards`.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from idp import context
from idp.untrusted_json import UntrustedJSONProvider
from idp.urlencoded import with_urlencoded_forms


class NulInParameter(BadRequest):
    """400: a parameter name or value holds a NUL character."""

    description = "request parameters must not contain NUL characters"


#: Bodies whose fields are request parameters (Werkzeug parses them into ``request.form``).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(params: MultiDict[str, str]) -> bool:
    return any("\x00" in k or "\x00" in v for k, v in params.items(multi=True))


def refuse_nul_parameters() -> None:
    """``before_request``: raise :class:`NulInParameter` when any parameter holds a NUL.

    The form parsed here is the one the view reads (Werkzeug parses a body once); an empty
    query string has no parameters to look at.
    """
    req = context.current_request()
    if req.query_string and _has_nul(req.args):
        raise NulInParameter()
    if req.mimetype in FORM_TYPES and _has_nul(req.form):
        raise NulInParameter()


def install_request_guards(app: Flask) -> None:
    """Register the guards on ``app`` (first in line), the untrusted JSON provider and the
    urlencoded form parser."""
    app.json_provider_class = UntrustedJSONProvider
    app.request_class = with_urlencoded_forms(app.request_class)  # type: ignore[assignment]
    app.json = UntrustedJSONProvider(app)
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_nul_parameters)
