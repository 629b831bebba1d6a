"""Protocol endpoints: authorization, token, userinfo, JWKS and discovery.

Specs: RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 9207 (``iss``), RFC 9700 (security BCP),
OpenID Connect Core 1.0 and Discovery 1.0 (https://openid.net/specs/openid-connect-core-1_0.html).
No HTML is produced here except the error page and the form_post auto-submit page.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact
from sqlalchemy import select

from idp import context
from idp.interaction import prompts
from idp.interaction.flow import InteractionExpired, InteractionSealer
from idp.interaction.web import current_sso, current_user_row
from idp.oauth import authorize as authz
from idp.oauth.claims import subject_for, user_claims
from idp.oauth.discovery import discovery_document
from idp.oauth.grants import code_expiry
from idp.storage import repo
from idp.storage.models import AuthorizationCode, Consent, Grant, SsoSession, Token, User, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("oidc", __name__)


# ------------------------------------------------------------------ responses to the client
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
    resp = redirect(ctx.redirect_uri + sep + urlencode(out), code=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def redirect_error(ctx: authz.AuthorizationContext, error: OAuth2Error) -> Response:
    params = {"error": error.error}
    if error.description:
        params["error_description"] = str(error.description)
    log.info("authorization error %s for %s: %s", error.error, ctx.params.get("client_id"), error.description)
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


def _hint_matches(ctx: authz.AuthorizationContext, user: User | None) -> bool | None:
    """Compare ``id_token_hint`` with the session's user (OIDC Core §3.1.2.1)."""
    hint = ctx.params.get("id_token_hint")
    if not hint:
        return None
    claims = verify_own_id_token(hint)
    if claims is None:
        raise authz.InvalidRequestError("id_token_hint is not a valid ID token from this provider")
    if user is None or ctx.client is None:
        return False
    return bool(claims.get("sub") == subject_for(user, ctx.client, context.services().extra["pairwise_secret"]))


def verify_own_id_token(token: str, *, allow_expired: bool = True) -> dict[str, Any] | None:
    """Verify an ID token we issued (signature with a published, unrevoked key; ``iss``)."""
    if len(token) > 16384:
        return None
    try:
        obj = extract_compact(token.encode())
        header = obj.protected
        kid = header.get("kid")
        alg = header.get("alg")
        if not kid or alg not in ("RS256", "PS256", "ES256", "EdDSA") or header.get("typ") not in (None, "JWT"):
            return None
        key = context.services().keys.find(kid)
        if key is None:
            return None
        decoded = jwt.decode(token, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        return None
    claims = dict(decoded.claims)
    if claims.get("iss") != context.settings().issuer:
        return None
    if not allow_expired and int(claims.get("exp", 0)) < int(utcnow().timestamp()):
        return None
    return claims


def _required_acr(ctx: authz.AuthorizationContext) -> str | None:
    hook = context.services().extra.get("required_acr")
    if hook is not None:
        return hook(ctx)  # type: ignore[no-any-return]
    return None


def process_authorization(
    multi: dict[str, list[str]],
    *,
    started: dt.datetime | None,
    consent_given: bool = False,
) -> Response:
    """Validate, decide, and either ask the user something or answer the client."""
    session = context.db_session()
    try:
        ctx = authz.validate(multi, _find_client)
    except authz.PageError as exc:
        return error_page(exc.message, 400, exc.error)
    except OAuth2Error as error:
        return redirect_error(error.context, error)

    sso = current_sso()
    user = current_user_row()
    now = utcnow()
    try:
        consent = None
        if user is not None:
            consent = session.scalars(
                select(Consent).where(Consent.user_id == user.id, Consent.client_id == ctx.client.client_id)  # type: ignore[union-attr]
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
        ix = _sealer().seal(multi, started or now)
        target = {"login": "account.login", "step_up": "account.step_up", "consent": "account.consent"}[decision]
        return redirect(url_for(target, ix=ix), code=303 if request.method == "POST" else 302)

    assert user is not None and sso is not None and ctx.client is not None
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
    source = request.args if request.method == "GET" else request.form
    multi = {k: source.getlist(k) for k in source}
    return process_authorization(multi, started=None)


@bp.route("/authorize/resume", methods=["GET"])
def resume() -> Response:
    try:
        multi, started, _extra = _sealer().open(request.args.get("ix"))
    except InteractionExpired as exc:
        return error_page(str(exc), 400, "interaction_expired")
    return process_authorization(multi, started=started)


# ------------------------------------------------------------------ the token endpoint
@bp.route("/token", methods=["POST"])
def token() -> Response:
    server = current_app.extensions["yitong.oauth"]
    resp: Response = server.create_token_response()
    if resp.status_code == 200:
        try:
            context.db_session().commit()
        except Exception:
            log.exception("token issuance could not be stored")
            context.db_session().rollback()
            return _json_error("server_error", "try again", 500)
    else:
        context.db_session().rollback()
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _json_error(error: str, description: str, status: int, headers: dict[str, str] | None = None) -> Response:
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
    """The live access token row (opaque or JWT) and its user, or None."""
    if not raw:
        return None
    session = context.db_session()
    row = repo.query_token(session, raw, "access")
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.kid is not None and context.services().keys.find(row.kid) is None:
        return None  # signed with a key revoked since (issue 4: emergency revocation)
    grant = session.get(Grant, row.grant_id)
    if grant is None or grant.revoked_at is not None:
        return None
    user = session.get(User, row.user_id) if row.user_id else None
    if row.user_id and (user is None or not user.is_active):
        return None
    return row, user


def _invalid_token(description: str) -> Response:
    return _json_error(
        "invalid_token", description, 401,
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
    )


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    if "access_token" in request.args:
        return _json_error("invalid_request", "access tokens are not accepted in the query string", 400,
                           {"WWW-Authenticate": 'Bearer error="invalid_request"'})
    raw = bearer_token()
    if raw is None and request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        raw = request.form.get("access_token")  # RFC 6750 §2.2 form body
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
        return _json_error("insufficient_scope", "the openid scope is required", 403,
                           {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'})
    client = repo.query_client(context.db_session(), row.client_id)
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
    resp.headers["Cache-Control"] = f"public, max-age={context.settings().jwks_cache_seconds}"
    return resp


@bp.route("/.well-known/openid-configuration", methods=["GET"])
def openid_configuration() -> Response:
    resp = jsonify(discovery_document(context.services()))
    resp.headers["Cache-Control"] = f"public, max-age={context.settings().jwks_cache_seconds}"
    return resp


@bp.route("/.well-known/oauth-authorization-server", methods=["GET"])
def oauth_metadata() -> Response:
    return openid_configuration()

