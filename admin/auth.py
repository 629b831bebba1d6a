"""Who may call the admin API: roles carried by the account, proven by a fresh access token.

An admin call needs a Bearer access token issued by Yitong with the ``admin`` scope, for an
account that holds the role the endpoint names.  Every call also needs the login behind the
token to be multi-factor and within the admin session's absolute limit
(:func:`idp.oauth.admin_scopes.admin_token_refusal`); key and policy endpoints need a
multi-factor authentication no older than 15 minutes (checklist 95).  A role claimed in a
token is never trusted: roles are read from the account, at every call.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Response, g

from idp import context
from idp.blueprints.responses import json_error
from idp.errors import (
    InsufficientScopeError,
    InsufficientUserAuthenticationError,
    InvalidTokenError,
    OAuth2Error,
)
from idp.oauth.admin_scopes import ADMIN_MAX_AUTH_AGE, ADMIN_SCOPE, admin_token_refusal
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


def _deny(error: OAuth2Error) -> Response:
    headers = {}
    if error.status_code == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
    return json_error(error, headers=headers)


def _max_auth_age() -> dt.timedelta:
    """The admin session's absolute limit (policy ``session.absolute.admin``), at most 12 h."""
    try:
        seconds = context.services().policies.get_int("session.absolute.admin")
    except (KeyError, ValueError):
        return ADMIN_MAX_AUTH_AGE
    return min(ADMIN_MAX_AUTH_AGE, dt.timedelta(seconds=seconds))


def require_role(*roles: str, fresh_mfa: bool = False) -> Callable[[F], F]:
    """Decorator: the caller's account must hold one of ``roles`` (and a fresh MFA, if asked).

    Where a role applies (a department admin's department) is the service layer's check.
    """

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            found = load_access_token(bearer_token(), context.db_session())
            if found is None:
                return _deny(InvalidTokenError("a valid admin access token is required"))
            token, grant, user = found
            if user is None or ADMIN_SCOPE not in token.scope.split():
                return _deny(InsufficientScopeError("the admin scope is required"))
            if not set(roles).intersection(user.roles or []):
                return _deny(InsufficientScopeError(f"the {' or '.join(roles)} role is required"))
            # Every call: the account still holds an admin role and the login behind the
            # token is still at the admin level and recent enough (checklist 95).
            refusal = admin_token_refusal(user, grant, utcnow(), _max_auth_age())
            if refusal is not None:
                return _deny(InsufficientUserAuthenticationError(refusal))
            if fresh_mfa:
                mfa = grant.acr in ("urn:yitong:acr:mfa", "urn:yitong:acr:phr")
                recent = grant.auth_time is not None and utcnow() - grant.auth_time <= dt.timedelta(
                    minutes=15
                )
                if not (mfa and recent):
                    return _deny(
                        InsufficientUserAuthenticationError(
                            "a multi-factor login in the last 15 minutes is required"
                        )
                    )
            g.admin = AdminPrincipal(user=user, grant=grant)
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def principal() -> AdminPrincipal:
    return g.admin  # type: ignore[no-any-return]
