"""The provider's side of an authorization request: validation with our stores, code issuance,
ID-token hints and bearer tokens.

:mod:`idp.oauth.authorize` holds the named, pure checks; this module binds them to this
provider (its client snapshot, PAR store, request-object fetcher and keys) and writes what a
successful authorization produces (RFC 6749 §4.1.2).  Pages and endpoints call it; they do
not write grants or codes themselves.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from sqlalchemy.orm import Session

from idp import context
from idp.interaction.levels import LevelRequest, required_acr_for
from idp.oauth import authorize as authz
from idp.oauth import dpop, par
from idp.oauth.claims import subject_for
from idp.oauth.clients import ID_TOKEN_ALGS
from idp.oauth.grants import code_expiry
from idp.oauth.jose_inbound import InboundJwtError, verify_jws
from idp.oauth.outbound import OutboundPolicy
from idp.oauth.request_object import open_request_object
from idp.oauth.tokens import DeadTokenError, check_live, find_token, store_grant_and_code
from idp.storage import repo
from idp.storage.db import Database
from idp.storage.models import Client, Grant, SsoSession, User, utcnow
from idp.storage.rows import FoundToken


def find_client(client_id: str) -> Client | None:
    """The client row for an authorization request (any status: the checks decide).

    From the worker's client snapshot (:mod:`idp.oauth.client_cache`), as at the token
    endpoint: a query per authorization cost as much as the SSO session's, and a client
    disabled by another process is refused here within the same bound as there.
    """
    return context.find_client(client_id)


def outbound_policy() -> OutboundPolicy:
    """Where client metadata may make us connect (SSRF guard; see idp.oauth.outbound)."""
    return OutboundPolicy.from_settings(context.settings())


def verify_own_id_token(token: str, *, allow_expired: bool = True) -> dict[str, Any] | None:
    """Verify an ID token we issued: our published, unrevoked key; ``iss``; ID-token shape.

    Used for ``id_token_hint`` at the authorization and logout endpoints, where an expired
    token is still a fine hint.  Refused: ``alg: none`` or any other algorithm, a key that is
    not ours, another ``typ`` (an RFC 9068 access token is ``at+jwt``, a logout token
    ``logout+jwt``: checklist 51), and anything lacking ``sub``/``aud``/``iat``.
    """
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
    return par.take(context.db_session(), request_uri, client.client_id, hot=context.services().hot)


def _open_request_object(token: str, client: Any) -> dict[str, list[str]]:
    settings = context.settings()
    return open_request_object(
        token,
        client,
        issuer=settings.issuer,
        audiences=(settings.endpoint("/par"),),
        policy=outbound_policy(),
    )


def validate_request(
    multi: dict[str, list[str]], *, pushing: bool = False
) -> authz.AuthorizationContext:
    """Run the authorization checks with the provider's client store, PAR store and keys."""
    return authz.validate(
        multi,
        find_client,
        take_pushed=_take_pushed,
        open_request_object=_open_request_object,
        verify_id_token=verify_own_id_token,
        pushing=pushing,
    )


def hint_matches(ctx: authz.AuthorizationContext, user: User | None) -> bool | None:
    """Compare ``id_token_hint`` with the session's user (OIDC Core §3.1.2.1)."""
    if ctx.id_token_hint is None:
        return None
    if user is None or ctx.client is None:
        return False
    pairwise_secret = context.services().pairwise_secret
    return bool(ctx.id_token_hint.get("sub") == subject_for(user, ctx.client, pairwise_secret))


def required_acr(
    ctx: authz.AuthorizationContext | LevelRequest | None, user: User | None
) -> str | None:
    """The level this request needs (:func:`idp.interaction.levels.required_acr_for`)."""
    return required_acr_for(ctx, user)


def issue_code(
    db: Database,
    session: Session,
    ctx: authz.AuthorizationContext,
    user: User,
    sso: SsoSession,
    *,
    entity_id: str | None = None,
    mandate_id: str | None = None,
) -> str:
    """Store the grant and a one-time code for it; return the code (stored as
    :func:`~idp.oauth.tokens.store_grant_and_code` says; the caller commits ``session``).

    ``entity_id`` and ``mandate_id``: the company the person acts for, chosen at the picker
    (issue 10; :mod:`idp.interaction.acting`), and the mandate it rests on.
    """
    assert ctx.client is not None and ctx.redirect_uri is not None
    settings = context.settings()
    now = utcnow()
    grant = Grant(
        id=repo.new_id(),
        user_id=user.id,
        client_id=ctx.client.client_id,
        scope=" ".join(ctx.scopes),
        claims=ctx.claims,
        sid=sso.id,
        offline="offline_access" in ctx.scopes,
        auth_time=sso.auth_time,
        acr=sso.acr,
        amr=list(sso.amr),
        nonce=ctx.nonce,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=settings.refresh_token_absolute_lifetime),
        entity_id=entity_id,
        mandate_id=mandate_id,
    )
    code = repo.new_secret(32)
    code_row = {
        "digest": repo.digest(code),
        "grant_id": grant.id,
        "client_id": ctx.client.client_id,
        "user_id": user.id,
        "redirect_uri": ctx.redirect_uri,
        "redirect_uri_sent": ctx.redirect_uri_sent,
        "scope": grant.scope,
        "nonce": ctx.nonce,
        "code_challenge": ctx.code_challenge,
        "code_challenge_method": ctx.code_challenge_method,
        "dpop_jkt": ctx.dpop_jkt,
        "created_at": now,
        "expires_at": code_expiry(now),
    }
    store_grant_and_code(db, session, grant, code_row)
    return code


def authorization_token(scheme: str = "bearer") -> str | None:
    """The access token sent with ``scheme`` in the Authorization header (RFC 6750 §2.1,
    RFC 9449 §7.1); never the query."""
    header = request.headers.get("Authorization", "")
    sent, _, value = header.partition(" ")
    if sent.lower() != scheme or not value.strip():
        return None
    return value.strip()


def bearer_token() -> str | None:
    """The access token from the Authorization header only (RFC 6750 §2.1; never the query)."""
    return authorization_token("bearer")


def request_proof(path: str, access_token: str | None = None) -> dpop.Proof | None:
    """This request's DPoP proof for our endpoint at ``path``, verified (RFC 9449 §4.3), or
    None when it has no ``DPoP`` header.  Raises ``InvalidDpopProofError``/``UseDpopNonceError``.
    """
    # A WSGI server joins repeated headers into one value (which is then no valid proof), so
    # there is at most one; ``get`` finds it without going through the whole environ.
    header = request.headers.get("DPoP")
    if header is None:
        return None
    settings = context.settings()
    return dpop.verify_proof(
        [header],
        method=request.method,
        url=settings.endpoint(path),
        session=context.db_session(),
        secret=context.services().secret_key,
        now=utcnow(),
        max_age=settings.dpop_proof_max_age,
        nonce_required=settings.dpop_nonce_required,
        access_token=access_token,
        hot=context.services().hot,
    )


def dpop_nonce() -> str:
    """The ``DPoP-Nonce`` to hand out now (RFC 9449 §8)."""
    return dpop.current_nonce(context.services().secret_key, utcnow())


def load_access_token(
    raw: str | None, session: Session, *, proven_jkt: str | None = None
) -> FoundToken | None:
    """The live access token (opaque or JWT), with its grant and its user, or None.

    Only access tokens are found (an ID token or a refresh token presented as a Bearer token
    is unknown here, checklist 51); liveness is :func:`idp.oauth.tokens.check_live`, which
    also refuses a JWT signed with a key revoked since (``keys.find(kid)`` is None).
    ``proven_jkt``: the key a verified DPoP proof of this request showed.  A DPoP-bound token
    is found only with a proof of its own key, never as a Bearer token (RFC 9449 §7.1); a
    Bearer token is not found with a proof (checklist 45).
    """
    if not raw or len(raw) > 4096:
        return None
    found = find_token(session, raw, "access")
    if found is None or found.token.jkt != proven_jkt or not live(session, found):
        return None
    return found


def live(session: Session, found: FoundToken) -> bool:
    """Whether a found token may still be used (:func:`idp.oauth.tokens.check_live` with
    this provider's keys and clients)."""
    try:
        check_live(session, found, context.services().keys, utcnow(), clients=context.find_client)
    except DeadTokenError:
        return False
    return True
