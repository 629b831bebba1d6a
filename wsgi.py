"""WSGI entry point for production servers: ``gunicorn --config examples/gunicorn_conf.py
'wsgi:app'`` (docs/deployment.md; granian serves it too: README, "Production").

A database that ``yitong init`` has not brought to this version's schema stops the import
with one line on stderr and exit status 3, which gunicorn reads as "worker failed to boot"
(granian stops on any unexpected worker exit): the server stops instead of respawning
workers, rather than serving discovery while every token request fails.  With
``preload_app`` (the production configuration) the arbiter runs this module and exits the
same way before it forks any worker.

With ``preload_app`` this module runs in the arbiter, before it forks the workers.  So the
database connections opened while building the app (the signing-key check) are closed here,
since a pooled connection inherited by forked workers would be one socket used by all of them
at once; and Babel's locale aliases, which every worker would otherwise load at its first
page (2 MB: "zh_CN" is resolved through them), are loaded here once and shared.
"""

import sys

from babel import Locale

from idp.app import create_app
from idp.config import load_settings
from idp.services import Services
from idp.storage.migrate import SchemaNotCurrentError, require_current_schema

WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR

settings = load_settings()
try:
    require_current_schema(settings.resolved_database_url)
except SchemaNotCurrentError as exc:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(WORKER_BOOT_ERROR) from None

app = create_app(settings)
services: Services = app.extensions["yitong"]
services.db.dispose()
Locale.parse("zh_CN")  # loads the aliases it resolves through
