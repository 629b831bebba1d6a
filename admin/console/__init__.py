"""The admin console: server-rendered pages under ``/admin`` (issue 11).

:mod:`admin.console.base` holds the blueprint, the sign-in guard and the dashboard; the
sections live in :mod:`~admin.console.clients` (clients, departments, registration tokens),
:mod:`~admin.console.people` (people, companies and mandates) and
:mod:`~admin.console.security` (keys, policies, directories, the audit trail).
"""

from __future__ import annotations

from flask import Flask

from admin.console import clients as clients
from admin.console import people as people
from admin.console import security as security
from admin.console.base import bp

#: Imported for their routes, which they add to ``bp``.
SECTIONS = (clients, people, security)


def register(app: Flask) -> None:
    """Mount the console (its forms are CSRF-protected by the app-wide CSRFProtect)."""
    app.register_blueprint(bp)
