"""WSGI entry point for production servers: ``gunicorn -w 4 -b 0.0.0.0:8000 'wsgi:app'``.

A database that ``yitong init`` has not brought to this version's schema stops the worker
at import with one line (gunicorn then exits: "Worker failed to boot"), instead of a server
that answers discovery while every token request fails.
"""

from idp.app import create_app
from idp.config import load_settings
from idp.storage.migrate import SchemaNotCurrentError, require_current_schema

settings = load_settings()
try:
    require_current_schema(settings.resolved_database_url)
except SchemaNotCurrentError as exc:
    raise SystemExit(f"error: {exc}") from None

app = create_app(settings)
