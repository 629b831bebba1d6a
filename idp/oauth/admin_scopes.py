"""Who may hold an admin token: the one rule for the ``admin`` scopes (checklist 95).

The admin API trusts a Bearer token carrying the ``admin`` scope (or an ``admin:…`` scope)
for an account that holds an admin role.  Without this rule the scope was issued to any
account that asked, with a password alone, and a role granted later turned those tokens into
admin power.  So, at both ends:

- **issuance** (:func:`grantable_scope`, applied where a code or a refresh token is turned
  into an access token, :mod:`idp.oauth.grants`): admin scopes are kept only when the account
  holds an admin role *at that moment* and the login reached the admin level
  (:data:`ADMIN_ACR`, multi-factor, NIST SP 800-63B-4 AAL2); otherwise they are dropped from
  the token (RFC 6749 §3.3: the issued scope may be narrower than requested);
- **use** (:func:`admin_token_refusal`, called by ``admin.auth.require_role`` on every call):
  the account must still hold an admin role, and the login behind the token must still be
  at the admin level and no older than the admin session's absolute limit.

The authorization request side (:func:`idp.oauth.authorize.admin_scope_needs_mfa`) asks the
login for the admin level up front, so an administrator is stepped up rather than handed a
token without the scope.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from idp.interaction.policies import ADMIN_ROLES
from idp.interaction.sessions import ACR_MFA, acr_rank
from idp.storage.models import Grant, User
from idp.storage.rows import GrantRow, UserRow

ADMIN_SCOPE = "admin"
#: The authentication level an admin token needs (two factors).
ADMIN_ACR = ACR_MFA
#: How old the login behind an admin token may be (the admin session's default absolute
#: lifetime, ``session.absolute.admin``); the policy may shorten it.
ADMIN_MAX_AUTH_AGE = dt.timedelta(hours=12)


def is_admin_scope(scope: str) -> bool:
    """``admin`` itself and every ``admin:<something>`` scope."""
    return scope == ADMIN_SCOPE or scope.startswith(ADMIN_SCOPE + ":")


def has_admin_scope(scopes: Iterable[str]) -> bool:
    return any(is_admin_scope(s) for s in scopes)


def holds_admin_role(user: User | UserRow | None) -> bool:
    """Roles are read from the account, never from a token."""
    return user is not None and bool(ADMIN_ROLES.intersection(user.roles or ()))


def admin_level(acr: str | None) -> bool:
    """The login reached at least :data:`ADMIN_ACR`."""
    return acr_rank(acr) >= acr_rank(ADMIN_ACR)


def grantable_scope(scope: str, user: User | UserRow | None, acr: str | None) -> str:
    """``scope`` without its admin scopes unless ``user`` may hold them now at ``acr``."""
    scopes = scope.split()
    if not has_admin_scope(scopes) or (holds_admin_role(user) and admin_level(acr)):
        return scope
    return " ".join(s for s in scopes if not is_admin_scope(s))


def admin_token_refusal(
    user: User | UserRow | None,
    grant: Grant | GrantRow,
    now: dt.datetime,
    max_age: dt.timedelta = ADMIN_MAX_AUTH_AGE,
) -> str | None:
    """Why a token of ``grant`` may not be used for admin calls now, or None when it may."""
    if not holds_admin_role(user):
        return "the account holds no admin role"
    if not admin_level(grant.acr):
        return "an admin token needs a multi-factor login"
    if grant.auth_time is None or now - grant.auth_time > max_age:
        return "the login behind this admin token is too old"
    return None
