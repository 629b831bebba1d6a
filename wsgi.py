"""WSGI entry point for production servers: ``gunicorn -w 4 -b 0.0.0.0:8000 'wsgi:app'``
(granian serves it too: README, "Production").

A database that ``yitong init`` has not brought to this version's schema stops the import
with one line on stderr and exit status 3, which gunicorn reads as "worker failed to boot"
(granian stops on any unexpected worker exit): the server stops instead of respawning
workers, rather than serving discovery while every token request fails.
"""

import sys

from idp.app import create_app
from idp.config import load_settings
from idp.storage.migrate import SchemaNotCurrentError, require_current_schema

WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR

settings = load_settings()
try:
    require_current_schema(settings.resolved_database_url)
except SchemaNotCurrentError as exc:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(WORKER_BOOT_ERROR) from None

app = create_app(settings)
