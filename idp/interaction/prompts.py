"""Login and consent decisions, as pure functions of the request and the session.

(node-oidc-provider ``interaction_policy/prompts`` is the model.)  Given a validated
authorization request, the SSO session (or none) and when the current interaction began,
:func:`decide` answers ``login``, ``step_up``, ``consent`` or ``issue`` — or raises the
error OIDC Core §3.1.2.6 prescribes when ``prompt=none`` forbids asking.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from idp.errors import ConsentRequiredError, InteractionRequiredError, LoginRequiredError
from idp.interaction.sessions import acr_rank
from idp.oauth.authorize import AuthorizationContext
from idp.storage.models import Consent, SsoSession

Decision = Literal["login", "step_up", "consent", "issue"]


@dataclass(frozen=True)
class Situation:
    """What the decision depends on besides the request itself."""

    session: SsoSession | None
    consent: Consent | None
    interaction_started: dt.datetime | None
    consent_given_in_interaction: bool
    hint_subject_matches: bool | None  # None: no id_token_hint
    required_acr: str | None
    now: dt.datetime
    #: What this authorization would release that the consent does not cover (issue 10).
    unconsented: frozenset[str] = frozenset()


def login_is_fresh(sit: Situation) -> bool:
    """The user authenticated during this very interaction (so prompt=login is satisfied)."""
    return bool(
        sit.session is not None
        and sit.interaction_started is not None
        and sit.session.auth_time >= sit.interaction_started
    )


def needs_login(ctx: AuthorizationContext, sit: Situation) -> bool:
    if sit.session is None:
        return True
    fresh = login_is_fresh(sit)
    if ("login" in ctx.prompt or "select_account" in ctx.prompt) and not fresh:
        return True
    if ctx.max_age is not None and not fresh:
        # OIDC issue #993: max_age=0 is effectively prompt=login.
        age = (sit.now - sit.session.auth_time).total_seconds()
        if ctx.max_age == 0 or age > ctx.max_age:
            return True
    # id_token_hint names someone else: ask for a login, once (see decide).
    return sit.hint_subject_matches is False and not fresh


def needs_step_up(sit: Situation) -> bool:
    if sit.session is None or sit.required_acr is None:
        return False
    return acr_rank(sit.session.acr) < acr_rank(sit.required_acr)


def needs_consent(ctx: AuthorizationContext, sit: Situation) -> bool:
    assert ctx.client is not None
    if sit.consent_given_in_interaction:
        return False
    if "consent" in ctx.prompt:
        return True
    if ctx.client.first_party:
        return False
    consent = sit.consent
    if consent is None or consent.expires_at <= sit.now:
        return True
    if not set(ctx.scopes) <= set(consent.scopes):
        return True
    # The released set grew (more claims, verified claims, another company): ask again.
    return bool(sit.unconsented)


def decide(ctx: AuthorizationContext, sit: Situation) -> Decision:
    silent = "none" in ctx.prompt
    if needs_login(ctx, sit):
        if silent:
            raise LoginRequiredError("the user must log in")
        return "login"
    if sit.hint_subject_matches is False:
        # OIDC Core §3.1.2.1: the user logged in during this interaction, but not as the one
        # the client named; never hand out a code for the wrong person.
        raise LoginRequiredError("the signed-in account is not the one id_token_hint names")
    if needs_step_up(sit):
        if silent:
            raise InteractionRequiredError("a stronger authentication is required")
        return "step_up"
    if needs_consent(ctx, sit):
        if silent:
            raise ConsentRequiredError("the user must consent")
        return "consent"
    return "issue"
