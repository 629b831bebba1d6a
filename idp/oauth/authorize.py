"""The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) as a list of small named checks.

(node-oidc-provider ``lib/actions/authorization/index.js`` is the model.)  The checks run in
two phases, and the phase decides how a failure is answered (RFC 6749 §4.1.2.1):

1. ``PAGE_CHECKS`` establish the client, the request's real parameters (a pushed request,
   RFC 9126, or a request object, RFC 9101) and the redirect URI.  Until all are verified,
   every failure is an error page at the provider and never a redirect (checklist 1-5, 22).
2. ``REDIRECT_CHECKS`` run once the redirect URI is trusted; their failures go back to the
   client as ``error`` with ``state`` and ``iss`` (RFC 9207, checklist 12).

Each check is a function ``(ctx) -> None`` that fills the context or raises.  Adding a
check means adding one function to one list.  What a check needs from outside (the client
table, the PAR store, key verification) is handed in as callables on the context, so the
checks stay free of Flask and storage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from idp import untrusted_json
from idp.errors import (
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from idp.interaction.sessions import acr_rank
from idp.oauth.admin_scopes import ADMIN_ACR, has_admin_scope
from idp.oauth.clients import OAuthClient
from idp.oauth.dpop import valid_jkt
from idp.oauth.grants import require_pkce_params
from idp.oauth.verified_claims import validate_authority_request
from idp.oauth.verified_claims import validate_request as validate_verified_claims
from idp.storage.models import Client

# RFC 6749 §3.1: request and response parameters MUST NOT be included more than once.
SINGLE_VALUED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "code_challenge",
    "code_challenge_method",
    "id_token_hint",
    "login_hint",
    "acr_values",
    "claims",
    "ui_locales",
    "display",
    "request",
    "request_uri",
    "dpop_jkt",
)
RESPONSE_MODES = ("query", "form_post")
PROMPTS = ("none", "login", "consent", "select_account")
DISPLAYS = ("page", "popup", "touch", "wap")
MAX_PARAM_LENGTH = 4096
MAX_STATE_LENGTH = 4096
MAX_CLAIMS_LENGTH = 4096
CLAIMS_TARGETS = ("id_token", "userinfo")
# RFC 9126 §2.2: the request_uri the PAR endpoint hands out.
PAR_URN_PREFIX = "urn:ietf:params:oauth:request_uri:"
# Set only by us, inside a sealed interaction token, on parameters that came from our own PAR
# endpoint; stripped from anything a browser or client sends (see strip_internal).
PUSHED_MARKER = "_yitong_pushed"


class PageError(Exception):
    """An authorization error that must be shown at the provider, not redirected."""

    def __init__(self, message: str, error: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class RequestResolutionError(Exception):
    """A pushed request or request object was refused; ``error`` is the OIDC/RFC code."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.message = message
        self.error = error


# (request_uri, client) -> the pushed parameters; raises RequestResolutionError.
TakePushed = Callable[[str, Client], dict[str, list[str]]]
# (request object JWT, client) -> its parameters; raises RequestResolutionError.
OpenRequestObject = Callable[[str, Client], dict[str, list[str]]]
# (id_token_hint) -> its verified claims, or None when it is not our ID token.
VerifyIdToken = Callable[[str], dict[str, Any] | None]


@dataclass
class AuthorizationContext:
    """Everything the checks learn about one authorization request."""

    params: dict[str, str]
    multi: Mapping[str, list[str]]
    find_client: Callable[[str], Client | None]
    take_pushed: TakePushed | None = None
    open_request_object: OpenRequestObject | None = None
    verify_id_token: VerifyIdToken | None = None
    pushed: bool = False  # the parameters came from our PAR endpoint (RFC 9126)
    pushing: bool = False  # we are validating a push at the PAR endpoint itself
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
    requested_acr: list[str] = field(default_factory=list)
    acr_essential: bool = False
    ui_locales: list[str] = field(default_factory=list)
    display: str = "page"
    login_hint: str | None = None
    id_token_hint: dict[str, Any] | None = None
    dpop_jkt: str | None = None  # RFC 9449 §10: the key the code will be bound to

    @property
    def state(self) -> str | None:
        return self.params.get("state")

    @property
    def nonce(self) -> str | None:
        return self.params.get("nonce")

    def sealable(self) -> dict[str, list[str]]:
        """The resolved parameters to carry through login and consent (``ix``)."""
        out = {k: list(v) for k, v in self.multi.items()}
        if self.pushed:
            out[PUSHED_MARKER] = ["1"]
        return out


Check = Callable[[AuthorizationContext], None]


def strip_internal(multi: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Drop parameters only we may set (a browser cannot claim a request was pushed)."""
    return {k: list(v) for k, v in multi.items() if not k.startswith("_yitong")}


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


def _replace_params(ctx: AuthorizationContext, multi: dict[str, list[str]]) -> None:
    assert ctx.client is not None
    multi = strip_internal(multi)
    inner = multi.get("client_id")
    # RFC 9101 §5 / RFC 9126 §4: the inner client_id must be the outer one.
    if inner is not None and inner != [ctx.client.client_id]:
        raise PageError("client_id in the request does not match", "invalid_request_object")
    multi["client_id"] = [ctx.client.client_id]
    ctx.multi = multi
    ctx.params = {k: v[0] for k, v in multi.items() if v}


def request_is_resolved(ctx: AuthorizationContext) -> None:
    """Replace the parameters by the pushed request or the request object, if one is used.

    RFC 9101 §5: with a request object only its parameters count (and client_id must agree).
    RFC 9126 §4: a ``request_uri`` is accepted only when our own PAR endpoint issued it, to
    this client, unused and unexpired; nothing is ever fetched from a URI (checklist 22).
    """
    assert ctx.client is not None
    for name in ("request", "request_uri"):
        if len(ctx.multi.get(name, [])) > 1:
            raise PageError(f"{name} was sent more than once")
    request_uri = ctx.params.get("request_uri")
    request = ctx.params.get("request")
    if request_uri is None and request is None:
        return
    if ctx.pushing and request_uri is not None:
        raise PageError("request_uri cannot be pushed")  # RFC 9126 §2.1
    if request_uri is not None and request is not None:
        raise PageError("request and request_uri cannot be used together")
    try:
        if request_uri is not None:
            if not request_uri.startswith(PAR_URN_PREFIX) or ctx.take_pushed is None:
                raise RequestResolutionError(
                    "only request_uri values from this provider's PAR endpoint are accepted",
                    "request_uri_not_supported",
                )
            _replace_params(ctx, ctx.take_pushed(request_uri, ctx.client))
            ctx.pushed = True
        else:
            assert request is not None
            if ctx.open_request_object is None:
                raise RequestResolutionError(
                    "request objects are not supported", "request_not_supported"
                )
            _replace_params(ctx, ctx.open_request_object(request, ctx.client))
    except RequestResolutionError as exc:
        raise PageError(exc.message, exc.error) from None


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
    # state is echoed in every answer, so it must be unambiguous before anything is answered.
    if len(ctx.multi.get("state", [])) > 1:
        raise PageError("state was sent more than once")
    state = ctx.params.get("state")
    if state is not None and len(state) > MAX_STATE_LENGTH:
        raise PageError("state is too long")


PAGE_CHECKS: list[Check] = [
    client_is_known,
    request_is_resolved,
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


def pushed_when_required(ctx: AuthorizationContext) -> None:
    """RFC 9126 §6: a client registered with ``require_pushed_authorization_requests``
    may only start from a ``request_uri`` our PAR endpoint issued."""
    assert ctx.client is not None
    if ctx.client.require_pushed_authorization_requests and not (ctx.pushed or ctx.pushing):
        raise InvalidRequestError("this client must use pushed authorization requests (PAR)")


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
    ctx.display = display or "page"


def _claim_request(name: str, value: Any) -> None:
    """OIDC Core §5.5.1: each requested claim is null or {essential?, value?, values?}."""
    if name.endswith(".verified_claims"):
        validate_verified_claims(name, value)  # OIDC4IDA: an object or an array
        return
    if name.endswith(".authority"):
        validate_authority_request(name, value)  # the company's verified_claims (issue 10)
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidRequestError(f"claims: {name} must be null or an object")
    if "essential" in value and not isinstance(value["essential"], bool):
        raise InvalidRequestError(f"claims: {name}.essential must be true or false")
    if "values" in value and not isinstance(value["values"], list):
        raise InvalidRequestError(f"claims: {name}.values must be a list")


def claims_parameter_is_valid(ctx: AuthorizationContext) -> None:
    """The ``claims`` parameter (OIDC Core §5.5): a JSON object with id_token/userinfo members."""
    raw = ctx.params.get("claims")
    if raw is None:
        return
    if len(raw) > MAX_CLAIMS_LENGTH:
        raise InvalidRequestError("claims is too long")
    try:
        parsed = untrusted_json.loads(raw)
    except ValueError:
        raise InvalidRequestError("claims must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError("claims must be a JSON object")
    out: dict[str, Any] = {}
    for target, members in parsed.items():
        if target not in CLAIMS_TARGETS:
            continue  # §5.5: unknown members are ignored
        if members is None:
            continue
        if not isinstance(members, dict):
            raise InvalidRequestError(f"claims: {target} must be an object")
        for name, value in members.items():
            _claim_request(f"{target}.{name}", value)
        out[target] = members
    ctx.claims = out


def acr_is_collected(ctx: AuthorizationContext) -> None:
    """What level of authentication was asked for, handed to the interaction layer.

    ``claims.id_token.acr`` (value/values, possibly essential, OIDC Core §5.5.1.1) wins over
    the voluntary ``acr_values`` (§3.1.2.1).  The ``required_acr`` hook decides what that
    means for this session (step-up or not).
    """
    ctx.acr_values = ctx.params.get("acr_values", "").split()
    ctx.requested_acr = list(ctx.acr_values)
    ctx.acr_essential = False
    acr = (ctx.claims or {}).get("id_token", {}).get("acr")
    if isinstance(acr, dict):
        raw = acr.get("values") if "values" in acr else [acr.get("value")]
        values = [v for v in raw or [] if isinstance(v, str)]
        if values:
            ctx.requested_acr = values
        ctx.acr_essential = bool(acr.get("essential"))


def admin_scope_needs_mfa(ctx: AuthorizationContext) -> None:
    """An admin scope asks for the admin authentication level (checklist 95).

    Levels below :data:`~idp.oauth.admin_scopes.ADMIN_ACR` are dropped from ``acr_values``
    (the lowest listed level is what gets required), so the login is stepped up to two
    factors.  The token endpoint enforces the same rule (``grantable_scope``) whatever
    happened here.
    """
    if not has_admin_scope(ctx.scopes):
        return
    strong = [v for v in ctx.acr_values if acr_rank(v) >= acr_rank(ADMIN_ACR)]
    ctx.acr_values = strong or [ADMIN_ACR]
    ctx.requested_acr = [v for v in ctx.requested_acr if acr_rank(v) >= acr_rank(ADMIN_ACR)] or [
        ADMIN_ACR
    ]
    ctx.acr_essential = True


def id_token_hint_is_ours(ctx: AuthorizationContext) -> None:
    """OIDC Core §3.1.2.1: ``id_token_hint`` must be an ID token we issued to this client.

    Expired hints are fine (they only name the user); an access token, another issuer's token,
    ``alg: none`` or a token for another client is refused (checklist 17, 51).
    """
    hint = ctx.params.get("id_token_hint")
    if hint is None:
        return
    claims = ctx.verify_id_token(hint) if ctx.verify_id_token is not None else None
    if claims is None:
        raise InvalidRequestError("id_token_hint is not a valid ID token from this provider")
    assert ctx.client is not None
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if ctx.client.client_id not in audiences or not isinstance(claims.get("sub"), str):
        raise InvalidRequestError("id_token_hint was not issued to this client")
    ctx.id_token_hint = claims


def hints_are_parsed(ctx: AuthorizationContext) -> None:
    login_hint = ctx.params.get("login_hint")
    if login_hint is not None and len(login_hint) > 320:
        raise InvalidRequestError("login_hint is too long")
    ctx.login_hint = login_hint or None
    locales = ctx.params.get("ui_locales", "").split()
    ctx.ui_locales = [
        tag for tag in locales if re.fullmatch(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", tag)
    ]


def dpop_jkt_is_valid(ctx: AuthorizationContext) -> None:
    """RFC 9449 §10: ``dpop_jkt`` binds the code to a key; it must look like a thumbprint."""
    value = ctx.params.get("dpop_jkt")
    if value is not None and not valid_jkt(value):
        raise InvalidRequestError("dpop_jkt must be a base64url SHA-256 JWK thumbprint")
    ctx.dpop_jkt = value


REDIRECT_CHECKS: list[Check] = [
    no_repeated_parameters,
    pushed_when_required,
    response_type_is_code,
    scope_is_allowed,
    pkce_is_s256,
    prompt_is_valid,
    max_age_is_valid,
    nonce_is_reasonable,
    display_is_valid,
    claims_parameter_is_valid,
    acr_is_collected,
    admin_scope_needs_mfa,
    id_token_hint_is_ours,
    hints_are_parsed,
    dpop_jkt_is_valid,
]


def validate(
    multi: Mapping[str, list[str]],
    find_client: Callable[[str], Client | None],
    *,
    page_checks: list[Check] | None = None,
    redirect_checks: list[Check] | None = None,
    take_pushed: TakePushed | None = None,
    open_request_object: OpenRequestObject | None = None,
    verify_id_token: VerifyIdToken | None = None,
    pushing: bool = False,
) -> AuthorizationContext:
    """Run every check; raise :class:`PageError` or an ``OAuth2Error`` bound to the context.

    An ``OAuth2Error`` raised here has ``.context`` set, so the caller can redirect it to the
    verified URI with ``state`` and ``iss``.  ``multi`` may carry :data:`PUSHED_MARKER` only
    when it comes from a sealed interaction token; callers strip it from outside input.
    """
    pushed = PUSHED_MARKER in multi
    multi = strip_internal(multi)
    params = {k: v[0] for k, v in multi.items() if v}
    ctx = AuthorizationContext(
        params=params,
        multi=multi,
        find_client=find_client,
        take_pushed=take_pushed,
        open_request_object=open_request_object,
        verify_id_token=verify_id_token,
        pushed=pushed,
        pushing=pushing,
    )
    for check in page_checks if page_checks is not None else PAGE_CHECKS:
        check(ctx)
    try:
        for check in redirect_checks if redirect_checks is not None else REDIRECT_CHECKS:
            check(ctx)
    except OAuth2Error as error:
        error.context = ctx
        raise
    return ctx
