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
from idp.interaction.levels import user_factors
from idp.interaction.mfa import higher, policy_acr
from idp.interaction.sessions import ACR_PHISHING_RESISTANT, acr_rank
from idp.oauth.admin_scopes import (
    ADMIN_ACR,
    ADMIN_MAX_AUTH_AGE,
    ADMIN_SCOPE,
    admin_level,
    admin_token_refusal,
    holds_admin_role,
)
from idp.oauth.authorization import bearer_token, load_access_token
from idp.storage.models import User, utcnow
from idp.storage.rows import GrantRow, UserRow

ROLES = ("security-admin", "client-admin", "department-admin", "auditor", "helpdesk")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AdminPrincipal:
    """Who calls the admin API: the token's person and grant, as the token lookup read them."""

    user: UserRow
    grant: GrantRow

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
            if fresh_mfa and not fresh_enough(grant.acr, grant.auth_time):
                return _deny(
                    InsufficientUserAuthenticationError(
                        "a multi-factor login in the last 15 minutes is required"
                    )
                )
            g.admin = AdminPrincipal(user=user, grant=grant)
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


#: Keys, policies and directories need a multi-factor login this recent (checklist 95).
FRESH_MFA = dt.timedelta(minutes=15)


def fresh_enough(acr: str | None, auth_time: dt.datetime | None) -> bool:
    """A multi-factor login in the last :data:`FRESH_MFA` (the sensitive admin actions)."""
    recent = auth_time is not None and utcnow() - auth_time <= FRESH_MFA
    return admin_level(acr) and recent


def console_acr(user: User) -> str:
    """The level a console sign-in needs: what the admin policy sets (a second factor by
    default), and phishing-resistant where the person has a passkey or security key."""
    wanted = higher(policy_acr(context.services().policies, user, None), ADMIN_ACR) or ADMIN_ACR
    if user_factors(user).webauthn:
        wanted = higher(wanted, ACR_PHISHING_RESISTANT) or wanted
    return wanted


def console_refusal(user: User, acr: str | None, auth_time: dt.datetime | None) -> str | None:
    """Why this browser session may not use the console, or None when it may: the same rule
    as an admin token (role held now, level, age), at the console's own level."""
    if not holds_admin_role(user):
        return "role"
    if acr_rank(acr) < acr_rank(console_acr(user)):
        return "level"
    if auth_time is None or utcnow() - auth_time > _max_auth_age():
        return "age"
    return None


def principal() -> AdminPrincipal:
    return g.admin  # type: ignore[no-any-return]
