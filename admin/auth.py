"""Who may call the admin API: roles carried by the account, proven by a fresh access token.

An admin call needs a Bearer access token issued by Yitong with the ``admin`` scope, for an
account that holds the role the endpoint names.  Key and policy endpoints also need a
multi-factor authentication no older than 15 minutes (checklist 95).  A role claimed in a
token is never trusted: roles are read from the account.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Response, g, jsonify

from idp import context
from idp.oauth.authorization import bearer_token, load_access_token
from idp.storage.models import Grant, User, utcnow

ROLES = ("security-admin", "client-admin", "department-admin", "auditor")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AdminPrincipal:
    user: User
    grant: Grant

    @property
    def actor(self) -> str:
        return f"user:{self.user.id}"


def _deny(status: int, error: str, description: str) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    if status == 401:
        resp.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return resp


def require_role(*roles: str, fresh_mfa: bool = False) -> Callable[[F], F]:
    """Decorator: the caller's account must hold one of ``roles`` (and a fresh MFA, if asked).

    Where a role applies (a department admin's department) is the service layer's check.
    """

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            found = load_access_token(bearer_token())
            if found is None:
                return _deny(401, "invalid_token", "a valid admin access token is required")
            token, user = found
            if user is None or "admin" not in token.scope.split():
                return _deny(403, "insufficient_scope", "the admin scope is required")
            if not set(roles).intersection(user.roles or []):
                return _deny(403, "forbidden", f"the {' or '.join(roles)} role is required")
            grant = context.db_session().get(Grant, token.grant_id)
            assert grant is not None
            if fresh_mfa:
                mfa = grant.acr in ("urn:yitong:acr:mfa", "urn:yitong:acr:phr")
                recent = grant.auth_time is not None and utcnow() - grant.auth_time <= dt.timedelta(
                    minutes=15
                )
                if not (mfa and recent):
                    return _deny(
                        403,
                        "insufficient_user_authentication",
                        "a multi-factor login in the last 15 minutes is required",
                    )
            g.admin = AdminPrincipal(user=user, grant=grant)
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def principal() -> AdminPrincipal:
    return g.admin  # type: ignore[no-any-return]
