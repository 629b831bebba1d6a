"""Protocol endpoints: authorization, token, userinfo, JWKS and discovery.

Specs: RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 9207 (``iss``), RFC 9700 (security BCP),
OpenID Connect Core 1.0 and Discovery 1.0 (https://openid.net/specs/openid-connect-core-1_0.html).
No HTML is produced here except the error page and the form_post auto-submit page.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import Blueprint, current_app, g, jsonify, make_response, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from idp import context
from idp.accounts.mandates import authority_claim
from idp.blueprints.guards import retry_after
from idp.blueprints.responses import (
    error_page,
    json_error,
    redirect_error,
    redirect_params,
    see_other,
)
from idp.errors import (
    InsufficientScopeError,
    InteractionRequiredError,
    InvalidClientError,
    InvalidDpopProofError,
    InvalidRequestError,
    InvalidTokenError,
    OAuth2Error,
    ServerError,
    SlowDownError,
    TemporarilyUnavailableError,
    UseDpopNonceError,
)
from idp.interaction import acting, prompts
from idp.interaction.consent import consent_of, release_for, unconsented
from idp.interaction.flow import INTERACTION_MAX_AGE, Interaction, InteractionExpired
from idp.interaction.web import (
    current_sso,
    current_user_row,
    open_interaction,
    seal_interaction,
)
from idp.oauth import authorize as authz
from idp.oauth import device, dpop, par
from idp.oauth.authorization import (
    authorization_token,
    bearer_token,
    dpop_nonce,
    hint_matches,
    issue_code,
    load_access_token,
    request_proof,
    required_acr,
    validate_request,
)
from idp.oauth.claims import subject_for, user_claims
from idp.oauth.discovery import INTEGRATOR_GUIDE
from idp.oauth.grants import CLIENT_AUTH_METHODS
from idp.oauth.release import check_served
from idp.oauth.server import authenticate_endpoint_client
from idp.oauth.verified_claims import verified_claims_for, with_entity_verified_claims
from idp.storage import repo
from idp.storage.db import is_outage
from idp.storage.models import Client, utcnow
from idp.storage.rows import FoundToken

log = logging.getLogger(__name__)
bp = Blueprint("oidc", __name__)


# ------------------------------------------------------------------ the authorization endpoint
def _interaction_redirect(
    ctx: authz.AuthorizationContext, decision: str, started: dt.datetime
) -> Response:
    target = {
        "login": "login.login_form",
        "step_up": "second_factor.step_up",
        "consent": "login.consent",
        "entity": "entities.choose",
    }
    ix = seal_interaction(ctx.sealable(), started)
    args: dict[str, Any] = {}
    if ctx.ui_locales:
        args["ui_locales"] = " ".join(ctx.ui_locales)  # the page language (OIDC Core §3.1.2.1)
    location = url_for(target[decision], ix=ix, **args)
    return see_other(location, code=303 if request.method == "POST" else 302)


def process_authorization(
    multi: dict[str, list[str]],
    *,
    interaction: Interaction | None,
    consent_given: bool = False,
) -> Response:
    """Validate, decide, and either ask the user something or answer the client.

    ``multi`` is either what the client sent (internal markers stripped by the route) or the
    resolved parameters sealed in the ``interaction`` it continues.
    """
    services = context.services()
    session = context.db_session()
    started = interaction.started if interaction is not None else None
    try:
        ctx = validate_request(multi)
    except authz.PageError as exc:
        return error_page(None, 400, exc.error, detail=exc.message)
    except OAuth2Error as error:
        return redirect_error(error.context, error)
    assert ctx.client is not None

    sso = current_sso()
    user = current_user_row()
    now = utcnow()
    # Acting for a company (issue 10): whom the person acts for is chosen at the picker
    # before consent, and counts for this interaction only.
    available: list[acting.ActingOption] = []
    acting_for = None
    if user is not None and acting.wanted(ctx.scopes):
        available = acting.options(session, user, ctx.client, now)
        acting_for = acting.chosen(available, ctx.client.client_id, started)
    # Read outside the request's transaction, like the session and the second-factor state:
    # on an SSO sign-in the request then opens no transaction at all (the grant and its code
    # are one statement, idp.oauth.authorization.issue_code).
    with services.db.reads() as reads:
        consent = consent_of(reads, user, ctx.client.client_id)
    try:
        sit = prompts.Situation(
            session=sso,
            consent=consent,
            interaction_started=started,
            consent_given_in_interaction=consent_given,
            hint_subject_matches=hint_matches(ctx, user),
            required_acr=required_acr(ctx, user),
            now=now,
            unconsented=unconsented(
                consent, release_for(ctx.client, ctx.scopes, ctx.claims, acting_for)
            ),
        )
        decision = prompts.decide(ctx, sit)
        if decision in ("consent", "issue") and user is not None:
            # Release policy: account type (company once acting for one), assurance level.
            check_served(
                session,
                ctx.client,
                user,
                served_as=acting.served_as(user, acting_for) if acting_for else None,
                may_act_for_company=any(o.entity is not None for o in available),
            )
    except OAuth2Error as error:
        return redirect_error(ctx, error)

    if decision in ("consent", "issue") and acting.wanted(ctx.scopes) and acting_for is None:
        if "none" in ctx.prompt:
            return redirect_error(ctx, InteractionRequiredError("choose whom to act for"))
        return _interaction_redirect(ctx, "entity", started or now)

    if decision != "issue":
        return _interaction_redirect(ctx, decision, started or now)

    assert user is not None and sso is not None
    if interaction is not None and not _spend(interaction):
        # The same ix again (a replay at /authorize/resume): one code per interaction.
        return error_page(_("The sign-in page has expired; start again."), 400)
    code = issue_code(
        services.db,
        session,
        ctx,
        user,
        sso,
        entity_id=acting_for.entity_id if acting_for else None,
        mandate_id=acting_for.mandate_id if acting_for else None,
    )
    session.commit()
    if acting_for is not None:
        acting.forget()
    return redirect_params(ctx, {"code": code})


def _spend(interaction: Interaction) -> bool:
    """Mark the interaction used (issue 14 item 6); False if it already issued a code."""
    # The token opens at most INTERACTION_MAX_AGE after it was sealed, which is before now.
    expires = utcnow() + dt.timedelta(seconds=INTERACTION_MAX_AGE)
    return repo.consume_once(context.db_session(), "interaction", interaction.iid, expires)


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    wait = retry_after("authorize", context.settings().rate_limit_authorize_per_minute)
    if wait is not None:
        # A person is behind /authorize: a page, not a redirect (the client is not verified).
        resp = error_page(_("Too many requests; try again shortly."), 429, "slow_down")
        resp.headers["Retry-After"] = str(wait)
        return resp
    source = request.args if request.method == "GET" else request.form
    multi = authz.strip_internal({k: source.getlist(k) for k in source})
    return process_authorization(multi, interaction=None)


@bp.route("/authorize/resume", methods=["GET"])
def resume() -> Response:
    try:
        interaction = open_interaction(request.args.get("ix"))
    except InteractionExpired:
        return error_page(_("The sign-in page has expired; start again."), 400)
    if "cas_service" in interaction.multi:  # a CAS login (blueprints/cas.py) continues there
        return see_other(url_for("cas.login", ix=request.args.get("ix")), code=302)
    if "bridge_system" in interaction.multi:  # a ticket-bridge login (blueprints/bridge.py)
        return see_other(url_for("bridge.login", ix=request.args.get("ix")), code=302)
    if device.IX_REQUEST in interaction.multi:  # an RFC 8628 approval (blueprints/device.py)
        return see_other(url_for("device.confirm", ix=request.args.get("ix")), code=302)
    if device.IX_USER_CODE in interaction.multi:  # signed in to type the device's code
        code = (interaction.multi[device.IX_USER_CODE] or [""])[0]
        return see_other(url_for("device.enter", user_code=code or None), code=302)
    return process_authorization(interaction.multi, interaction=interaction)


# ------------------------------------------------------------------ the integrator guide
@bp.route("/docs/integrating", methods=["GET"])
def integrating() -> Response:
    """The integrator guide (``service_documentation`` in discovery), as Markdown text."""
    if not INTEGRATOR_GUIDE.is_file():
        return error_page(_("The integration guide is not installed here."), 404, None)
    resp = make_response(INTEGRATOR_GUIDE.read_text(encoding="utf-8"), 200)
    resp.mimetype = "text/markdown"
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


# ------------------------------------------------------------------ pushed authorization requests
# Parameters that authenticate the client at /par rather than belong to the request.
_CLIENT_AUTH_PARAMS = ("client_secret", "client_assertion", "client_assertion_type")


@bp.route("/par", methods=["POST"])
def pushed_authorization_request() -> Response:
    """RFC 9126 §2: authenticate the client, validate the request, hand out a request_uri."""
    limited = _token_rate_limited("par")
    if limited is not None:
        return limited
    if request.mimetype != "application/x-www-form-urlencoded":
        return json_error(InvalidRequestError("send the request as a form (RFC 9126 section 2.1)"))
    server = current_app.extensions["yitong.oauth"]
    try:
        client = server.authenticate_client(
            server.create_oauth2_request(request),
            list(CLIENT_AUTH_METHODS),
            "pushed_authorization_request",
        )
    except InvalidClientError as exc:
        headers = {"WWW-Authenticate": 'Basic realm="yitong"'} if exc.status_code == 401 else {}
        return json_error(
            InvalidClientError("client authentication failed"), status=401, headers=headers
        )
    multi = authz.strip_internal(
        {k: request.form.getlist(k) for k in request.form if k not in _CLIENT_AUTH_PARAMS}
    )
    if "request_uri" in multi:
        return json_error(InvalidRequestError("request_uri cannot be pushed"))
    try:
        proof = request_proof("/par")
    except (InvalidDpopProofError, UseDpopNonceError) as exc:
        return dpop_refusal(exc)
    if proof is not None:
        # RFC 9449 §10.1: a proof at PAR binds the code to its key; a dpop_jkt sent with it
        # must name that same key (checklist 45).
        if multi.get("dpop_jkt", [proof.jkt]) != [proof.jkt]:
            return dpop_refusal(InvalidDpopProofError("dpop_jkt does not match the DPoP proof"))
        multi["dpop_jkt"] = [proof.jkt]
    sent = multi.get("client_id")
    if sent is not None and sent != [client.get_client_id()]:
        return json_error(InvalidRequestError("client_id does not match the authenticated client"))
    multi["client_id"] = [client.get_client_id()]
    try:
        ctx = validate_request(multi, pushing=True)
    except authz.PageError as exc:
        return json_error(OAuth2Error(description=exc.message, error=exc.error), status=400)
    except OAuth2Error as error:
        return json_error(error, status=400)
    request_uri, expires_in = par.push(
        context.db_session(), client.get_client_id(), dict(ctx.multi), hot=context.services().hot
    )
    context.db_session().commit()
    resp = jsonify({"request_uri": request_uri, "expires_in": expires_in})
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ device authorization (RFC 8628)
@bp.route("/device_authorization", methods=["POST"])
def device_authorization() -> Response:
    """RFC 8628 §3.1-3.2: authenticate the client as at the token endpoint, start a request."""
    wait = retry_after("device_authorization", context.settings().rate_limit_qr_per_minute)
    if wait is not None:
        return json_error(
            SlowDownError("too many requests; retry later"), headers={"Retry-After": str(wait)}
        )
    problem = _form_problem()
    if problem is not None:
        return problem
    try:
        client = authenticate_endpoint_client("device_authorization")
    except InvalidClientError as exc:
        headers = {"WWW-Authenticate": 'Basic realm="yitong"'} if exc.status_code == 401 else {}
        return _finish(
            json_error(
                InvalidClientError("client authentication failed"), status=401, headers=headers
            )
        )
    session = context.db_session()
    try:
        body = device.start(session, client.row, request.form, ip=context.client_ip())
    except OAuth2Error as error:
        return _finish(json_error(error))
    resp = jsonify(body)
    return _finish(resp)


# ------------------------------------------------------------------ DPoP (RFC 9449)
def dpop_refusal(error: OAuth2Error, *, resource: bool = False) -> Response:
    """A DPoP error: 400 JSON at the token side, 401 with a ``DPoP`` challenge at a resource;
    ``use_dpop_nonce`` always carries the nonce to use (RFC 9449 §8, §9)."""
    headers = {}
    if isinstance(error, UseDpopNonceError):
        headers["DPoP-Nonce"] = dpop_nonce()
    if resource:
        headers["WWW-Authenticate"] = dpop.challenge(error)
        return json_error(error, status=401, headers=headers)
    return json_error(error, headers=headers)


# ------------------------------------------------------------------ the token endpoint
#: Parameters that may repeat at the token-side endpoints (RFC 8707 ``resource``); any other
#: repeated parameter is ``invalid_request`` (RFC 6749 §3.2).
_REPEATABLE = frozenset({"resource"})


def _form_problem() -> Response | None:
    """RFC 6749 §3.2/§4.1.3: a form body, each parameter at most once."""
    req = context.current_request()
    if req.mimetype != "application/x-www-form-urlencoded":
        return json_error(
            InvalidRequestError("send parameters as application/x-www-form-urlencoded")
        )
    for name, values in req.form.lists():
        if len(values) > 1 and name not in _REPEATABLE:
            return json_error(InvalidRequestError("a parameter was sent more than once"))
    return None


def _finish(resp: Response) -> Response:
    """Commit what a successful answer minted, drop everything else; never cache (RFC 6749 §5.1)."""
    session = context.open_db_session()
    if session is None:
        pass  # nothing read or written through the request's session (client_credentials)
    elif resp.status_code == 200:
        try:
            session.commit()
        except Exception as exc:
            log.exception("token-endpoint changes could not be stored")
            session.rollback()
            if is_outage(exc):  # nothing was issued: the client may simply try again
                return json_error(
                    TemporarilyUnavailableError("the database did not answer; try again"),
                    status=503,
                    headers={"Retry-After": "5"},
                )
            return json_error(ServerError("try again"))
    else:
        session.rollback()
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _token_rate_limited(scope: str = "token") -> Response | None:
    """429 ``slow_down`` in the token endpoint's JSON form (also used by /par)."""
    wait = retry_after(scope, context.settings().rate_limit_token_per_minute)
    if wait is None:
        return None
    return json_error(
        SlowDownError("too many requests; retry later"), headers={"Retry-After": str(wait)}
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
    try:
        proof = g.dpop_proof = request_proof("/token")  # bound by the grants (idp.oauth.grants)
    except (InvalidDpopProofError, UseDpopNonceError) as exc:
        return _finish(dpop_refusal(exc))
    server = current_app.extensions["yitong.oauth"]
    resp = _finish(server.create_token_response())
    if proof is not None:
        resp.headers["DPoP-Nonce"] = dpop_nonce()  # the next proof's nonce (RFC 9449 §8)
    return resp


# ------------------------------------------------------------------ protected resources
def resource_access(path: str, session: Session, raw: str | None = None) -> FoundToken | Response:
    """The live access token of a request to our resource at ``path``, or the refusal.

    ``Authorization: Bearer`` (or ``raw``, a token from the form body) finds unbound tokens
    only; ``Authorization: DPoP`` needs a proof (with ``ath``) by the key the token is bound
    to (RFC 9449 §7.1, checklist 45).  Used by userinfo and the QR-login app API.
    """
    dpop_token = authorization_token("dpop")
    if dpop_token is not None:
        try:
            proof = request_proof(path, access_token=dpop_token)
        except (InvalidDpopProofError, UseDpopNonceError) as exc:
            return dpop_refusal(exc, resource=True)
        if proof is None:
            return dpop_refusal(InvalidDpopProofError("a DPoP proof is required"), resource=True)
        found = load_access_token(dpop_token, session, proven_jkt=proof.jkt)
        if found is None:
            error = InvalidTokenError("the access token is invalid, expired, revoked or not bound")
            return json_error(error, headers={"WWW-Authenticate": dpop.challenge(error)})
        return found
    raw = raw or bearer_token()
    if raw is None:
        return json_error(
            InvalidRequestError("a Bearer access token is required"),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="yitong"'},
        )
    found = load_access_token(raw, session)
    if found is None:
        return _invalid_token("the access token is invalid, expired or revoked")
    return found


# ------------------------------------------------------------------ userinfo
def _invalid_token(description: str) -> Response:
    return json_error(
        InvalidTokenError(description),
        headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'
        },
    )


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    # FAPI 2.0 and RFC 6750 §2.3 "SHOULD NOT": tokens in URLs end up in logs (checklist 52).
    if "access_token" in request.args:
        return json_error(
            InvalidRequestError("access tokens are not accepted in the query string"),
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    raw = None
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        body_tokens = request.form.getlist("access_token")  # RFC 6750 §2.2 form body
        if body_tokens and (request.headers.get("Authorization") or len(body_tokens) > 1):
            # RFC 6750 §2: clients MUST NOT use more than one method to send the token.
            return json_error(
                InvalidRequestError("send the access token one way only"),
                headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        if body_tokens:
            raw = body_tokens[0]
    services = context.services()
    # The lookups need no transaction (PostgreSQL: no BEGIN/ROLLBACK round trips); a release
    # of verified claims writes its audit record through the request's own session, from the
    # rows found here (plain values, readable after the read session has closed).
    with services.db.reads() as session:
        found = resource_access("/userinfo", session, raw)
        if isinstance(found, Response):
            return found
        row, grant, user = found
        scopes = row.scope.split()
        if user is None or "openid" not in scopes:
            return json_error(
                InsufficientScopeError("the openid scope is required"),
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'},
            )
        client = context.find_client(row.client_id)
        assert client is not None  # load_access_token checked it
        body: dict[str, Any] = {"sub": subject_for(user, client, services.pairwise_secret)}
        body.update(user_claims(user, scopes, client))
        authority = authority_claim(session, services.vault, grant, scopes)
        if authority is not None:
            body["authority"] = authority  # acting for a company (issue 10)
    if grant.claims:
        writer = context.db_session()
        ida = verified_claims_for(writer, user, client, grant.claims, "userinfo", services.vault)
        if ida:
            body.update(ida)
        if authority is not None:
            body["authority"] = with_entity_verified_claims(
                writer, authority, grant, client, "userinfo", services.vault
            )
        writer.commit()  # the audit record of a sensitive release
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ keys and discovery
@bp.route("/jwks", methods=["GET"])
def jwks() -> Response:
    published = current_app.extensions["yitong.published"]
    resp = Response(published.jwks(), mimetype="application/json")
    resp.headers["Cache-Control"] = f"public, max-age={context.services().keys.jwks_max_age()}"
    return resp


@bp.route("/.well-known/openid-configuration", methods=["GET"])
def openid_configuration() -> Response:
    published = current_app.extensions["yitong.published"]
    resp = Response(published.discovery, mimetype="application/json")
    resp.headers["Cache-Control"] = f"public, max-age={published.discovery_max_age}"
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
    rows = context.db_session().scalars(
        select(Client.web_origins).where(Client.status == "approved")
    )
    return {o for origins in rows for o in (origins or []) if isinstance(o, str)}


@bp.after_request
def cors_headers(resp: Response) -> Response:
    """Allow exactly a registered origin; never ``*``, never credentials (checklist 107)."""
    req = context.current_request()
    methods = CORS_ENDPOINTS.get(req.endpoint or "")
    if methods is None:
        return resp
    h = resp.headers
    vary = h.getlist("Vary")  # getlist: no exception raised and caught when there is none
    if vary:
        h["Vary"] = f"{', '.join(vary)}, Origin"
    else:
        h.add("Vary", "Origin")
    origin = req.environ.get("HTTP_ORIGIN")
    if not origin or len(origin) > 200 or origin not in registered_web_origins():
        return resp
    h["Access-Control-Allow-Origin"] = origin
    h["Access-Control-Expose-Headers"] = "WWW-Authenticate, DPoP-Nonce"
    if req.method == "OPTIONS":
        h["Access-Control-Allow-Methods"] = methods
        h["Access-Control-Allow-Headers"] = "Authorization, Content-Type, DPoP"
        h["Access-Control-Max-Age"] = "600"
    return resp
