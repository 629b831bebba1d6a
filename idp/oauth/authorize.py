"""The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) as a list of small named checks.

(node-oidc-provider ``lib/actions/authorization/index.js`` is the model.)  The checks run in
two phases, and the phase decides how a failure is answered (RFC 6749 §4.1.2.1):

1. ``PAGE_CHECKS`` establish the client and its redirect URI.  Until both are verified,
   every failure is an error page at the provider and never a redirect (checklist 1-5).
2. ``REDIRECT_CHECKS`` run once the redirect URI is trusted; their failures go back to the
   client as ``error`` with ``state`` and ``iss`` (RFC 9207, checklist 12).

Each check is a function ``(ctx) -> None`` that fills the context or raises.  Adding a
check means adding one function to one list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)

from idp.errors import RequestNotSupportedError
from idp.oauth.clients import OAuthClient
from idp.oauth.grants import require_pkce_params
from idp.storage.models import Client

# RFC 6749 §3.1: request and response parameters MUST NOT be included more than once.
SINGLE_VALUED = (
    "client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce",
    "prompt", "max_age", "code_challenge", "code_challenge_method", "id_token_hint",
    "login_hint", "acr_values", "claims", "ui_locales", "display", "request", "request_uri",
)
RESPONSE_MODES = ("query", "form_post")
PROMPTS = ("none", "login", "consent", "select_account")
DISPLAYS = ("page", "popup", "touch", "wap")
MAX_PARAM_LENGTH = 4096


class PageError(Exception):
    """An authorization error that must be shown at the provider, not redirected."""

    def __init__(self, message: str, error: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


@dataclass
class AuthorizationContext:
    """Everything the checks learn about one authorization request."""

    params: dict[str, str]
    multi: Mapping[str, list[str]]
    find_client: Callable[[str], Client | None]
    client: Client | None = None
    redirect_uri: str | None = None
    redirect_uri_sent: bool = False
    response_mode: str = "query"
    scopes: list[str] = field(default_factory=list)
    prompt: set[str] = field(default_factory=set)
    max_age: int | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    claims: dict[str, Any] | None = None
    acr_values: list[str] = field(default_factory=list)
    ui_locales: list[str] = field(default_factory=list)

    @property
    def state(self) -> str | None:
        return self.params.get("state")

    @property
    def nonce(self) -> str | None:
        return self.params.get("nonce")


Check = Callable[[AuthorizationContext], None]


# ------------------------------------------------------------------ phase 1: page checks
def client_is_known(ctx: AuthorizationContext) -> None:
    if len(ctx.multi.get("client_id", [])) > 1:
        raise PageError("client_id was sent more than once")
    client_id = ctx.params.get("client_id")
    if not client_id:
        raise PageError("client_id is missing")
    client = ctx.find_client(client_id)
    if client is None or client.status != "approved":
        raise PageError("unknown or unapproved client", "invalid_client")
    ctx.client = client


def redirect_uri_is_registered(ctx: AuthorizationContext) -> None:
    assert ctx.client is not None
    if len(ctx.multi.get("redirect_uri", [])) > 1:
        raise PageError("redirect_uri was sent more than once")
    requested = ctx.params.get("redirect_uri")
    oauth_client = OAuthClient(ctx.client)
    if requested is None:
        default = oauth_client.get_default_redirect_uri()
        if default is None:
            raise PageError("redirect_uri is required for this client")
        ctx.redirect_uri = default
        return
    if not oauth_client.check_redirect_uri(requested):
        raise PageError("redirect_uri is not registered for this client")
    ctx.redirect_uri = requested
    ctx.redirect_uri_sent = True


def response_mode_is_supported(ctx: AuthorizationContext) -> None:
    # Checked before anything is redirected: the mode decides how errors are delivered.
    if len(ctx.multi.get("response_mode", [])) > 1:
        raise PageError("response_mode was sent more than once")
    mode = ctx.params.get("response_mode", "query")
    if mode not in RESPONSE_MODES:
        raise PageError(f"response_mode {mode!r} is not supported")
    ctx.response_mode = mode


def state_is_single(ctx: AuthorizationContext) -> None:
    if len(ctx.multi.get("state", [])) > 1:
        raise PageError("state was sent more than once")


PAGE_CHECKS: list[Check] = [
    client_is_known,
    redirect_uri_is_registered,
    response_mode_is_supported,
    state_is_single,
]


# ------------------------------------------------------------------ phase 2: redirect checks
def no_repeated_parameters(ctx: AuthorizationContext) -> None:
    for name in SINGLE_VALUED:
        if len(ctx.multi.get(name, [])) > 1:
            raise InvalidRequestError(f"{name} was sent more than once")
    for name, value in ctx.params.items():
        if name != "state" and len(value) > MAX_PARAM_LENGTH:
            raise InvalidRequestError(f"{name} is too long")


def request_objects_not_yet_supported(ctx: AuthorizationContext) -> None:
    if "request" in ctx.params or "request_uri" in ctx.params:
        raise RequestNotSupportedError("request objects are not supported by this provider")


def response_type_is_code(ctx: AuthorizationContext) -> None:
    response_type = ctx.params.get("response_type")
    if not response_type:
        raise InvalidRequestError("response_type is missing")
    # RFC 9700 §2.1.2: only the code flow; no token at the authorization endpoint.
    if response_type != "code":
        raise UnsupportedResponseTypeError(f"response_type {response_type!r} is not supported")
    assert ctx.client is not None
    if "code" not in ctx.client.response_types:
        raise UnauthorizedClientError("this client may not use the code flow")


def scope_is_allowed(ctx: AuthorizationContext) -> None:
    assert ctx.client is not None
    requested = ctx.params.get("scope", "").split()
    if not requested:
        raise InvalidScopeError("scope is missing")
    allowed = set(ctx.client.scopes)
    unknown = [s for s in requested if s not in allowed]
    if unknown:
        raise InvalidScopeError(f"scope not allowed for this client: {' '.join(unknown)}")
    ctx.scopes = list(dict.fromkeys(requested))


def pkce_is_s256(ctx: AuthorizationContext) -> None:
    ctx.code_challenge, ctx.code_challenge_method = require_pkce_params(ctx.params)


def prompt_is_valid(ctx: AuthorizationContext) -> None:
    values = set(ctx.params.get("prompt", "").split())
    unknown = values - set(PROMPTS)
    if unknown:
        raise InvalidRequestError(f"unsupported prompt value: {' '.join(sorted(unknown))}")
    # OIDC Core §3.1.2.1: none with any other value is an error.
    if "none" in values and len(values) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values")
    ctx.prompt = values


def max_age_is_valid(ctx: AuthorizationContext) -> None:
    raw = ctx.params.get("max_age")
    if raw is None:
        return
    if not re.fullmatch(r"\d{1,10}", raw):
        raise InvalidRequestError("max_age must be a non-negative integer")
    ctx.max_age = int(raw)


def nonce_is_reasonable(ctx: AuthorizationContext) -> None:
    nonce = ctx.nonce
    if nonce is not None and (not nonce or len(nonce) > 512):
        raise InvalidRequestError("nonce must be 1 to 512 characters")


def display_is_valid(ctx: AuthorizationContext) -> None:
    display = ctx.params.get("display")
    if display is not None and display not in DISPLAYS:
        raise InvalidRequestError(f"display {display!r} is not supported")


def locales_are_parsed(ctx: AuthorizationContext) -> None:
    ctx.ui_locales = ctx.params.get("ui_locales", "").split()
    ctx.acr_values = ctx.params.get("acr_values", "").split()


REDIRECT_CHECKS: list[Check] = [
    no_repeated_parameters,
    request_objects_not_yet_supported,
    response_type_is_code,
    scope_is_allowed,
    pkce_is_s256,
    prompt_is_valid,
    max_age_is_valid,
    nonce_is_reasonable,
    display_is_valid,
    locales_are_parsed,
]


def validate(
    multi: Mapping[str, list[str]],
    find_client: Callable[[str], Client | None],
    *,
    page_checks: list[Check] | None = None,
    redirect_checks: list[Check] | None = None,
) -> AuthorizationContext:
    """Run every check; raise :class:`PageError` or an ``OAuth2Error`` bound to the context.

    An ``OAuth2Error`` raised here has ``.context`` set, so the caller can redirect it to the
    verified URI with ``state`` and ``iss``.
    """
    params = {k: v[0] for k, v in multi.items() if v}
    ctx = AuthorizationContext(params=params, multi=multi, find_client=find_client)
    for check in page_checks if page_checks is not None else PAGE_CHECKS:
        check(ctx)
    try:
        for check in redirect_checks if redirect_checks is not None else REDIRECT_CHECKS:
            check(ctx)
    except OAuth2Error as error:
        error.context = ctx
        raise
    return ctx
