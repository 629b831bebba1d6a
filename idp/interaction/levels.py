"""Which authentication level a request needs, for whom (issue 5).

The level is the highest of: what the request asks (``acr_values``, an essential ``acr`` in
``claims``), what the client or a policy demands for this user and these scopes, and — when
``mfa.always_when_enrolled`` is on — the second factor the account already has.  Every path
that issues a code (``/authorize``, ``/authorize/resume``, the consent POST) asks this one
function, so no URL skips a factor (checklist 18, 75).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import g

from idp import context
from idp.interaction import mfa
from idp.interaction.sessions import ACR_MFA, acr_rank
from idp.storage.models import Client, User


@dataclass(frozen=True)
class LevelRequest:
    """A sign-in for a client that is not an authorization request (an RFC 8628 device
    approval): the client and scopes decide its level through the same policy."""

    client: Client
    scopes: list[str] = field(default_factory=list)
    acr_values: tuple[str, ...] = ()


def user_factors(user: User) -> mfa.UserFactors:
    """The account's second factors (cached for the request)."""
    cache = g.setdefault("yt_factors", {})
    if user.id not in cache:
        with context.services().db.session() as s:
            cache[user.id] = mfa.factors_of(s, context.services().policies, user)
    return cache[user.id]  # type: ignore[no-any-return]


def forget_factors(user: User) -> None:
    """The account's factors changed during this request."""
    g.setdefault("yt_factors", {}).pop(user.id, None)


def required_acr_for(ctx: Any, user: User | None) -> str | None:
    """The level this request needs for this user: request, client, policy, enrolment."""
    policies = context.services().policies
    wanted = mfa.requested_acr(ctx) if ctx is not None else None
    client = getattr(ctx, "client", None)
    scopes = getattr(ctx, "scopes", None) or []
    wanted = mfa.higher(wanted, mfa.policy_acr(policies, user, client, scopes))
    if (
        user is not None
        and acr_rank(wanted) < acr_rank(ACR_MFA)
        and policies.get_bool("mfa.always_when_enrolled")
        and _has_second_factor(user)
    ):
        wanted = ACR_MFA
    return wanted


def _has_second_factor(user: User) -> bool:
    """One query on every authorization, unless the factors are already loaded."""
    cached = g.get("yt_factors", {}).get(user.id)
    if cached is not None:
        return bool(cached.any_second_factor)
    # One SELECT: no transaction around it (PostgreSQL: no BEGIN and ROLLBACK round trips).
    with context.services().db.reads() as s:
        return mfa.has_second_factor(s, context.services().policies, user)
