"""Protocol endpoints: authorization, token, userinfo, JWKS and discovery.

Specs: RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 9207 (``iss``), RFC 9700 (security BCP),
OpenID Connect Core 1.0 and Discovery 1.0 (https://openid.net/specs/openid-connect-core-1_0.html).
No HTML is produced here except the error page and the form_post auto-submit page.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.core.errors import InteractionRequiredError
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from idp import context
from idp.interaction import prompts
from idp.interaction.flow import InteractionExpired, InteractionSealer
from idp.interaction.web import current_sso, current_user_row
from idp.oauth import authorize as authz
from idp.oauth.claims import subject_for, user_claims
from idp.oauth.client_cache import find_client
from idp.oauth.clients import ID_TOKEN_ALGS
from idp.oauth.discovery import discovery_document
from idp.oauth.grants import code_expiry
from idp.oauth.tokens import DeadTokenError, check_live, find_token
from idp.storage import repo
from idp.storage.models import AuthorizationCode, Consent, Grant, SsoSession, Token, User, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("oidc", __name__)


# ------------------------------------------------------------------ responses to the client
def see_other(location: str, code: int = 303) -> Response:
    """``flask.redirect`` typed as what it returns at run time (the app's response class)."""
    return cast(Response, redirect(location, code=code))


def _redirect_params(ctx: authz.AuthorizationContext, params: dict[str, str]) -> Response:
    """Deliver ``params`` to the verified redirect URI, with ``state`` and ``iss``."""
    assert ctx.redirect_uri is not None
    out = dict(params)
    if ctx.state is not None:
        out["state"] = ctx.state
    out["iss"] = context.settings().issuer  # RFC 9207 §2, success and error alike
    status = 303 if request.method == "POST" else 302  # RFC 9700 §4.12: never 307
    if ctx.response_mode == "form_post":
        nonce = secrets.token_urlsafe(16)
        body = render_template("form_post.html", action=ctx.redirect_uri, params=out, nonce=nonce)
        resp = make_response(body, 200)
        origin = urlsplit(ctx.redirect_uri)
        resp.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; "
            f"form-action {origin.scheme}://{origin.netloc}; frame-ancestors 'none'; base-uri 'none'"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp
    sep = "&" if urlsplit(ctx.redirect_uri).query else "?"
    resp = see_other(ctx.redirect_uri + sep + urlencode(out), code=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def redirect_error(ctx: authz.AuthorizationContext, error: OAuth2Error) -> Response:
    params = {"error": error.error}
    if error.description:
        params["error_description"] = str(error.description)
    log.info(
        "authorization error %s for %s: %s",
        error.error,
        ctx.params.get("client_id"),
        error.description,
    )
    return _redirect_params(ctx, params)


def error_page(message: str, status: int = 400, error: str = "invalid_request") -> Response:
    resp = make_response(render_template("error.html", message=message, error=error), status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ the authorization endpoint
def _find_client(client_id: str) -> Any:
    return repo.query_client(context.db_session(), client_id)


def _sealer() -> InteractionSealer:
    return context.services().extra["interaction_sealer"]  # type: ignore[no-any-return]


def verify_own_id_token(token: str, *, allow_expired: bool = True) -> dict[str, Any] | None:
    """Verify an ID token we issued: our published, unrevoked key; ``iss``; ID-token shape.

    Used for ``id_token_hint`` at the authorization and logout endpoints, where an expired
    token is still a fine hint.  Refused: ``alg: none`` or any other algorithm, a key that is
    not ours, another ``typ`` (an RFC 9068 access token is ``at+jwt``, a logout token
    ``logout+jwt``: checklist 51), and anything lacking ``sub``/``aud``/``iat``.
    """
    from idp.oauth.jose_inbound import InboundJwtError, verify_jws

    keys = context.services().keys

    def resolve(header: Any) -> list[Any]:
        kid = header.get("kid")
        key = keys.find(kid) if isinstance(kid, str) else None
        return [key] if key is not None else []

    try:
        verified = verify_jws(
            token, algorithms=ID_TOKEN_ALGS, resolve_key=resolve, typ=(None, "JWT"), max_size=16384
        )
    except InboundJwtError:
        return None
    claims = verified.claims
    if claims.get("iss") != context.settings().issuer:
        return None
    if not isinstance(claims.get("sub"), str) or "aud" not in claims:
        return None
    if not isinstance(claims.get("iat"), int) or not isinstance(claims.get("exp"), int):
        return None
    if any(name in claims for name in ("scope", "client_id", "events", "token_type")):
        return None  # an access token or logout token, whatever its header says
    if not allow_expired and claims["exp"] < int(utcnow().timestamp()):
        return None
    return claims


def _take_pushed(request_uri: str, client: Any) -> dict[str, list[str]]:
    from idp.oauth import par

    return par.take(context.db_session(), request_uri, client.client_id)


def _open_request_object(token: str, client: Any) -> dict[str, list[str]]:
    from idp.oauth.request_object import open_request_object

    settings = context.settings()
    return open_request_object(
        token,
        client,
        issuer=settings.issuer,
        audiences=(settings.endpoint("/par"),),
        policy=outbound_policy(),
    )


def outbound_policy() -> Any:
    """Where client metadata may make us connect (SSRF guard; see idp.oauth.outbound)."""
    from idp.oauth.outbound import OutboundPolicy

    return OutboundPolicy.from_settings(context.settings())


def validate_request(
    multi: dict[str, list[str]], *, pushing: bool = False
) -> authz.AuthorizationContext:
    """Run the authorization checks with the provider's client store, PAR store and keys."""
    return authz.validate(
        multi,
        _find_client,
        take_pushed=_take_pushed,
        open_request_object=_open_request_object,
        verify_id_token=verify_own_id_token,
        pushing=pushing,
    )


def _hint_matches(ctx: authz.AuthorizationContext, user: User | None) -> bool | None:
    """Compare ``id_token_hint`` with the session's user (OIDC Core §3.1.2.1)."""
    if ctx.id_token_hint is None:
        return None
    if user is None or ctx.client is None:
        return False
    pairwise_secret = context.services().extra["pairwise_secret"]
    return bool(ctx.id_token_hint.get("sub") == subject_for(user, ctx.client, pairwise_secret))


def _required_acr(ctx: authz.AuthorizationContext) -> str | None:
    """The acr this request needs, decided by the MFA layer's hook (``services.extra``).

    The hook reads ``ctx.requested_acr``/``ctx.acr_essential`` (from ``acr_values`` and the
    ``claims`` parameter) and the client's defaults; without a hook nothing is stepped up.
    """
    hook = context.services().extra.get("required_acr")
    if hook is not None:
        return hook(ctx)  # type: ignore[no-any-return]
    return None


def _interaction_redirect(
    ctx: authz.AuthorizationContext, decision: str, started: dt.datetime
) -> Response:
    target = {"login": "account.login", "step_up": "account.step_up", "consent": "account.consent"}
    if target[decision] not in current_app.view_functions:
        # No page can satisfy this (e.g. no step-up page configured): say so, never a 500.
        return redirect_error(
            ctx, InteractionRequiredError("this authentication level is not offered")
        )
    ix = _sealer().seal(ctx.sealable(), started)
    args: dict[str, Any] = {}
    if ctx.ui_locales:
        args["ui_locales"] = " ".join(ctx.ui_locales)  # the page language (OIDC Core §3.1.2.1)
    location = url_for(target[decision], ix=ix, **args)
    return see_other(location, code=303 if request.method == "POST" else 302)


def process_authorization(
    multi: dict[str, list[str]],
    *,
    started: dt.datetime | None,
    consent_given: bool = False,
) -> Response:
    """Validate, decide, and either ask the user something or answer the client.

    ``multi`` is either what the client sent (internal markers stripped by the route) or the
    resolved parameters sealed in an interaction token.
    """
    session = context.db_session()
    try:
        ctx = validate_request(multi)
    except authz.PageError as exc:
        return error_page(exc.message, 400, exc.error)
    except OAuth2Error as error:
        return redirect_error(error.context, error)
    assert ctx.client is not None

    sso = current_sso()
    user = current_user_row()
    now = utcnow()
    try:
        consent = None
        if user is not None:
            consent = session.scalars(
                select(Consent).where(
                    Consent.user_id == user.id, Consent.client_id == ctx.client.client_id
                )
            ).first()
        sit = prompts.Situation(
            session=sso,
            consent=consent,
            interaction_started=started,
            consent_given_in_interaction=consent_given,
            hint_subject_matches=_hint_matches(ctx, user),
            required_acr=_required_acr(ctx),
            now=now,
        )
        decision = prompts.decide(ctx, sit)
    except OAuth2Error as error:
        return redirect_error(ctx, error)

    if decision != "issue":
        return _interaction_redirect(ctx, decision, started or now)

    assert user is not None and sso is not None
    return issue_code(ctx, user, sso)


def issue_code(ctx: authz.AuthorizationContext, user: User, sso: SsoSession) -> Response:
    """Write the grant and a one-time code, then answer the client (RFC 6749 §4.1.2)."""
    assert ctx.client is not None and ctx.redirect_uri is not None
    session = context.db_session()
    settings = context.settings()
    now = utcnow()
    offline = "offline_access" in ctx.scopes
    lifetime = settings.refresh_token_absolute_lifetime
    grant = Grant(
        id=repo.new_id(),
        user_id=user.id,
        client_id=ctx.client.client_id,
        scope=" ".join(ctx.scopes),
        claims=ctx.claims,
        sid=sso.id,
        offline=offline,
        auth_time=sso.auth_time,
        acr=sso.acr,
        amr=list(sso.amr),
        nonce=ctx.nonce,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=lifetime),
    )
    code = repo.new_secret(32)
    session.add(grant)
    session.flush()
    session.add(
        AuthorizationCode(
            digest=repo.digest(code),
            grant_id=grant.id,
            client_id=ctx.client.client_id,
            user_id=user.id,
            redirect_uri=ctx.redirect_uri,
            redirect_uri_sent=ctx.redirect_uri_sent,
            scope=grant.scope,
            nonce=ctx.nonce,
            code_challenge=ctx.code_challenge,
            code_challenge_method=ctx.code_challenge_method,
            created_at=now,
            expires_at=code_expiry(now),
        )
    )
    session.commit()
    return _redirect_params(ctx, {"code": code})


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    wait = _retry_after("authorize", context.settings().rate_limit_authorize_per_minute)
    if wait is not None:
        # A person is behind /authorize: a page, not a redirect (the client is not verified).
        resp = error_page("Too many requests; try again shortly.", 429, "slow_down")
        resp.headers["Retry-After"] = str(wait)
        return resp
    source = request.args if request.method == "GET" else request.form
    multi = authz.strip_internal({k: source.getlist(k) for k in source})
    return process_authorization(multi, started=None)


@bp.route("/authorize/resume", methods=["GET"])
def resume() -> Response:
    try:
        multi, started, _extra = _sealer().open(request.args.get("ix"))
    except InteractionExpired as exc:
        return error_page(str(exc), 400, "interaction_expired")
    return process_authorization(multi, started=started)


# ------------------------------------------------------------------ metadata of this side
def authorization_metadata(services: Any, doc: dict[str, Any]) -> None:
    """Discovery keys for what the authorization and logout endpoints really do.

    Registered through ``services.extra['discovery']`` when the blueprint is registered.
    """
    from idp.oauth.request_object import ALGORITHMS as REQUEST_OBJECT_ALGS

    s = services.settings
    if not _integrator_guide().is_file():
        doc.pop("service_documentation", None)  # advertise only what answers
    configured = [a for a in ID_TOKEN_ALGS if a in s.signing_algorithms]
    doc["id_token_signing_alg_values_supported"] = configured
    doc.update(
        {
            "pushed_authorization_request_endpoint": s.endpoint("/par"),
            "require_pushed_authorization_requests": False,
            "request_parameter_supported": True,
            "request_uri_parameter_supported": True,  # only request_uris our /par issued
            "require_request_uri_registration": True,
            "request_object_signing_alg_values_supported": list(REQUEST_OBJECT_ALGS),
            "claims_parameter_supported": True,
            "end_session_endpoint": s.endpoint("/logout"),
            "frontchannel_logout_supported": True,
            "frontchannel_logout_session_supported": True,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
        }
    )


def _integrator_guide() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "docs" / "integrating.md"


@bp.route("/docs/integrating", methods=["GET"])
def integrating() -> Response:
    """The integrator guide (``service_documentation`` in discovery), as Markdown text."""
    guide = _integrator_guide()
    if not guide.is_file():
        return error_page("The integration guide is not installed here.", 404, "not_found")
    resp = make_response(guide.read_text(encoding="utf-8"), 200)
    resp.mimetype = "text/markdown"
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


@bp.record_once
def _register_metadata(state: Any) -> None:
    state.app.extensions["yitong"].extra.setdefault("discovery", []).append(
        lambda doc: authorization_metadata(state.app.extensions["yitong"], doc)
    )


# ------------------------------------------------------------------ pushed authorization requests
# Parameters that authenticate the client at /par rather than belong to the request.
_CLIENT_AUTH_PARAMS = ("client_secret", "client_assertion", "client_assertion_type")


@bp.route("/par", methods=["POST"])
def pushed_authorization_request() -> Response:
    """RFC 9126 §2: authenticate the client, validate the request, hand out a request_uri."""
    limited = _token_rate_limited("par")
    if limited is not None:
        return limited
    from authlib.oauth2.rfc6749.errors import InvalidClientError

    from idp.oauth import par
    from idp.oauth.grants import CLIENT_AUTH_METHODS

    if request.mimetype != "application/x-www-form-urlencoded":
        return _json_error("invalid_request", "send the request as a form (RFC 9126 §2.1)", 400)
    server = current_app.extensions["yitong.oauth"]
    try:
        client = server.authenticate_client(
            server.create_oauth2_request(request),
            list(CLIENT_AUTH_METHODS),
            "pushed_authorization_request",
        )
    except InvalidClientError as exc:
        headers = {"WWW-Authenticate": 'Basic realm="yitong"'} if exc.status_code == 401 else {}
        return _json_error("invalid_client", "client authentication failed", 401, headers)
    multi = authz.strip_internal(
        {k: request.form.getlist(k) for k in request.form if k not in _CLIENT_AUTH_PARAMS}
    )
    if "request_uri" in multi:
        return _json_error("invalid_request", "request_uri cannot be pushed", 400)
    sent = multi.get("client_id")
    if sent is not None and sent != [client.get_client_id()]:
        return _json_error(
            "invalid_request", "client_id does not match the authenticated client", 400
        )
    multi["client_id"] = [client.get_client_id()]
    try:
        ctx = validate_request(multi, pushing=True)
    except authz.PageError as exc:
        return _json_error(exc.error, exc.message, 400)
    except OAuth2Error as error:
        return _json_error(error.error, str(error.description or error.error), 400)
    request_uri, expires_in = par.push(
        context.db_session(), client.get_client_id(), dict(ctx.multi)
    )
    context.db_session().commit()
    resp = jsonify({"request_uri": request_uri, "expires_in": expires_in})
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ the token endpoint
#: Parameters that may repeat at the token-side endpoints (RFC 8707 ``resource``); any other
#: repeated parameter is ``invalid_request`` (RFC 6749 §3.2).
_REPEATABLE = frozenset({"resource"})


def _form_problem() -> Response | None:
    """RFC 6749 §3.2/§4.1.3: a form body, each parameter at most once."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return _json_error(
            "invalid_request", "send parameters as application/x-www-form-urlencoded", 400
        )
    for name in request.form:
        if name not in _REPEATABLE and len(request.form.getlist(name)) > 1:
            return _json_error("invalid_request", "a parameter was sent more than once", 400)
    return None


def _finish(resp: Response) -> Response:
    """Commit what a successful answer minted, drop everything else; never cache (RFC 6749 §5.1)."""
    session = context.db_session()
    if resp.status_code == 200:
        try:
            session.commit()
        except Exception:
            log.exception("token-endpoint changes could not be stored")
            session.rollback()
            return _json_error("server_error", "try again", 500)
    else:
        session.rollback()
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _retry_after(scope: str, per_minute: int) -> int | None:
    """Checklist 112: seconds to wait once this address passed ``per_minute`` for ``scope``.

    The limiter is the shared one (Redis across workers; per worker without it, never
    unlimited: :mod:`idp.interaction.ratelimit`).
    """
    limiter = context.services().extra.get("rate_limiter")
    if limiter is None:
        return None
    wait: int | None = limiter.hit(scope, request.remote_addr or "unknown", per_minute, 60)
    return wait


def _token_rate_limited(scope: str = "token") -> Response | None:
    """429 ``slow_down`` in the token endpoint's JSON form (also used by /par)."""
    wait = _retry_after(scope, context.settings().rate_limit_token_per_minute)
    if wait is None:
        return None
    return _json_error(
        "slow_down", "too many requests; retry later", 429, {"Retry-After": str(wait)}
    )


@bp.route("/token", methods=["POST"])
def token() -> Response:
    # First thing: when the request arrived decides "duplicate" versus "replay" for a rotated
    # refresh token (idp.oauth.grants, checklist 39).
    g.token_request_started = utcnow()
    limited = _token_rate_limited()
    if limited is not None:
        return limited
    problem = _form_problem()
    if problem is not None:
        return problem
    server = current_app.extensions["yitong.oauth"]
    return _finish(server.create_token_response())


def _json_error(
    error: str, description: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# ------------------------------------------------------------------ userinfo
def bearer_token() -> str | None:
    """The access token from the Authorization header only (RFC 6750 §2.1; never the query)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def load_access_token(raw: str | None) -> tuple[Token, User | None] | None:
    """The live access token row (opaque or JWT) and its user, or None.

    Only access tokens are found (an ID token or a refresh token presented as a Bearer token
    is unknown here, checklist 51); liveness is :func:`idp.oauth.tokens.check_live`, which
    also refuses a JWT signed with a key revoked since (``keys.find(kid)`` is None).
    """
    if not raw or len(raw) > 4096:
        return None
    session = context.db_session()
    found = find_token(session, raw, "access")
    if found is None:
        return None
    row = found.token
    try:
        _grant, user = check_live(
            session,
            row,
            context.services().keys,
            utcnow(),
            grant=found.grant,
            user=found.user,
            clients=find_client,
        )
    except DeadTokenError:
        return None
    return row, user


def _invalid_token(description: str) -> Response:
    return _json_error(
        "invalid_token",
        description,
        401,
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
    )


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    # FAPI 2.0 and RFC 6750 §2.3 "SHOULD NOT": tokens in URLs end up in logs (checklist 52).
    if "access_token" in request.args:
        return _json_error(
            "invalid_request",
            "access tokens are not accepted in the query string",
            400,
            {"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    raw = bearer_token()
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        body_tokens = request.form.getlist("access_token")  # RFC 6750 §2.2 form body
        if body_tokens and (raw is not None or len(body_tokens) > 1):
            # RFC 6750 §2: clients MUST NOT use more than one method to send the token.
            return _json_error(
                "invalid_request",
                "send the access token one way only",
                400,
                {"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        if body_tokens:
            raw = body_tokens[0]
    if raw is None:
        resp = _json_error("invalid_request", "a Bearer access token is required", 401)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="yitong"'
        return resp
    found = load_access_token(raw)
    if found is None:
        return _invalid_token("the access token is invalid, expired or revoked")
    row, user = found
    scopes = row.scope.split()
    if user is None or "openid" not in scopes:
        return _json_error(
            "insufficient_scope",
            "the openid scope is required",
            403,
            {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'},
        )
    client = find_client(row.client_id)
    assert client is not None
    body = {"sub": subject_for(user, client, context.services().extra["pairwise_secret"])}
    body.update(user_claims(user, scopes, client))
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ keys and discovery
@bp.route("/jwks", methods=["GET"])
def jwks() -> Response:
    resp = jsonify(context.services().keys.public_jwks())
    resp.headers["Cache-Control"] = f"public, max-age={context.services().keys.jwks_max_age()}"
    return resp


@bp.route("/.well-known/openid-configuration", methods=["GET"])
def openid_configuration() -> Response:
    resp = jsonify(discovery_document(context.services()))
    resp.headers["Cache-Control"] = f"public, max-age={context.settings().jwks_cache_seconds}"
    return resp


@bp.route("/.well-known/oauth-authorization-server", methods=["GET"])
def oauth_metadata() -> Response:
    return openid_configuration()


# ------------------------------------------------------------------ revocation and introspection
@bp.route("/revoke", methods=["POST"])
def revoke() -> Response:
    """RFC 7009 token revocation (policy: :mod:`idp.oauth.endpoints`)."""
    problem = _form_problem()
    if problem is not None:
        return problem
    server = current_app.extensions["yitong.oauth"]
    return _finish(server.create_endpoint_response("revocation"))


@bp.route("/introspect", methods=["POST"])
def introspect() -> Response:
    """RFC 7662 token introspection (policy: :mod:`idp.oauth.endpoints`)."""
    problem = _form_problem()
    if problem is not None:
        return problem
    server = current_app.extensions["yitong.oauth"]
    resp: Response = server.create_endpoint_response("introspection")
    context.db_session().rollback()  # read-only; client-assertion jtis commit themselves
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


# ------------------------------------------------------------------ CORS (checklist 107)
#: Endpoints a browser app (SPA) may call cross-origin, and the methods it may use.  The
#: authorization endpoint is deliberately absent (navigations, not XHR; checklist 21, 107),
#: and so is introspection (resource servers are not browsers).
CORS_ENDPOINTS = {
    "oidc.token": "POST",
    "oidc.userinfo": "GET, POST",
    "oidc.jwks": "GET",
    "oidc.openid_configuration": "GET",
    "oidc.oauth_metadata": "GET",
    "oidc.revoke": "POST",
}


def registered_web_origins() -> set[str]:
    """Every approved client's registered ``web_origins`` (exact ``scheme://host[:port]``)."""
    from idp.storage.models import Client

    rows = context.db_session().scalars(
        select(Client.web_origins).where(Client.status == "approved")
    )
    return {o for origins in rows for o in (origins or []) if isinstance(o, str)}


@bp.after_request
def cors_headers(resp: Response) -> Response:
    """Allow exactly a registered origin; never ``*``, never credentials (checklist 107)."""
    methods = CORS_ENDPOINTS.get(request.endpoint or "")
    if methods is None:
        return resp
    vary = resp.headers.get("Vary")
    resp.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
    origin = request.headers.get("Origin")
    if not origin or len(origin) > 200 or origin not in registered_web_origins():
        return resp
    resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate"
    if request.method == "OPTIONS":
        resp.headers["Access-Control-Allow-Methods"] = methods
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, DPoP"
        resp.headers["Access-Control-Max-Age"] = "600"
    return resp
