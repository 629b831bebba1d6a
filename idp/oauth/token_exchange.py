"""OAuth 2.0 Token Exchange (RFC 8693): a service calls another on a person's behalf.

https://www.rfc-editor.org/rfc/rfc8693

A client registered for ``urn:ietf:params:oauth:grant-type:token-exchange`` presents a
person's access token it received (``subject_token``) and gets a new access token for a
named resource it registered (RFC 8707 ``resource``, or ``audience`` naming the same).  The
new token is a **delegation** token (§1.1): it carries the person as ``sub`` and the calling
client in ``act`` (§4.1), nested over any earlier actor, so the resource server sees who acts
for whom.  What we enforce, and why:

- the client authenticates (confidential only: it acts as a service, §2.1) and must be
  registered for the grant type, else ``unauthorized_client``;
- the subject token must be one of ours, an **access** token of a person (§2.1
  ``subject_token_type`` = ``…:access_token``), live by every rule of
  :func:`idp.oauth.tokens.check_live` (revoked, expired, logged out, mandate ended...), and
  addressed to the caller (its own token, or one whose audience names the caller or one of
  its resources): else ``invalid_request`` (§2.2.2: the subject token "is invalid ... or
  unacceptable based on policy");
- ``actor_token`` is not supported (the caller's client authentication names the actor);
- the scope may only narrow (``invalid_scope`` otherwise, §2.1 and RFC 6749 §3.3), and
  never reaches user-login scopes that only make sense at the authorization endpoint
  (``openid``, ``offline_access``: no ID token and no refresh token are issued, §2.2.1);
- at least one target is required and each must be one of the caller's **exchange
  targets** (``Client.exchange_targets``, registered per client by an operator through the
  admin API, the console or ``yitong clients update --exchange-target``; empty by default,
  so a client allowed the grant may exchange for nothing until its targets are named):
  else ``invalid_target`` (§2.2.2);
- the new token belongs to the subject token's grant, so it dies with it (logout, consent
  withdrawn, mandate ended) and never outlives the subject token;
- DPoP (RFC 9449): a request carrying a DPoP proof gets a token bound to the proof's key
  (``token_type`` ``DPoP``, ``cnf.jkt``); a caller registered with ``dpop_bound_access_tokens``
  must send one (§5.2); and a DPoP-bound subject token of the caller's own must be exchanged
  with a proof of that very key, so a stolen bound token cannot be laundered into a Bearer
  token (checklist 45).  A bound token *addressed* to the caller (a resource server) was
  proven to it when it was presented, so the caller's own proof decides the new binding.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from authlib.oauth2.rfc6749.grants import BaseGrant, TokenEndpointMixin

from idp import audit, context
from idp.errors import (
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    UnauthorizedClientError,
)
from idp.oauth.clients import TOKEN_EXCHANGE
from idp.oauth.grants import (
    CONFIDENTIAL_AUTH_METHODS,
    MAX_RESOURCES,
    RESOURCE_URI,
    dpop_binding,
)
from idp.oauth.tokens import DeadTokenError, check_live, find_token
from idp.storage.models import Client, utcnow
from idp.storage.rows import GrantRow, TokenRow, UserRow

log = logging.getLogger(__name__)

GRANT_TYPE = TOKEN_EXCHANGE
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: Scopes that belong to a person's login, not to a call between services.
LOGIN_ONLY_SCOPES = frozenset({"openid", "offline_access"})
#: How deep ``act`` may nest: a chain of services longer than this is refused.
MAX_ACTORS = 5


def _one(form: Any, name: str, *, required: bool = False) -> str | None:
    values = form.getlist(name)
    if len(values) > 1:
        raise InvalidRequestError(f"{name} was sent more than once")
    if not values or not values[0]:
        if required:
            raise InvalidRequestError(f"{name} is required")
        return None
    return str(values[0])


def addressed_to(token: TokenRow, caller: Client) -> bool:
    """The caller received this token: it is its own, or its audience names the caller."""
    if token.client_id == caller.client_id:
        return True
    audience = set(token.audience or ())
    return caller.client_id in audience or bool(audience & set(caller.resources or ()))


def act_claim(caller: Client, prior: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 8693 §4.1: the current actor, with earlier actors nested under ``act``."""
    act: dict[str, Any] = {"sub": caller.client_id, "client_id": caller.client_id}
    if prior:
        act["act"] = prior
    return act


def _depth(act: dict[str, Any] | None) -> int:
    depth = 0
    while isinstance(act, dict):
        depth, act = depth + 1, act.get("act")
    return depth


class TokenExchangeGrant(BaseGrant, TokenEndpointMixin):  # type: ignore[misc]
    """``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693 §2)."""

    GRANT_TYPE = GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if client.row.public or not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("this client may not use token exchange")
        self.request.client = client
        form = self.request.form
        if _one(form, "actor_token") is not None or _one(form, "actor_token_type") is not None:
            raise InvalidRequestError("actor_token is not supported")
        wanted_type = _one(form, "requested_token_type")
        if wanted_type not in (None, ACCESS_TOKEN_TYPE):
            raise InvalidRequestError("only access tokens can be requested")
        raw = _one(form, "subject_token", required=True)
        if _one(form, "subject_token_type", required=True) != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError("subject_token_type must be an access token")
        session = context.db_session()
        found = find_token(session, raw, "access")
        if found is None or found.user is None or not addressed_to(found.token, client.row):
            raise InvalidRequestError("the subject token is invalid")
        try:
            check_live(
                session, found, context.services().keys, utcnow(), clients=context.find_client
            )
        except DeadTokenError as exc:
            log.info("token exchange refused for grant %s: %s", found.grant.id, exc)
            raise InvalidRequestError("the subject token is invalid, expired or revoked") from None
        if _depth(found.token.act) >= MAX_ACTORS:
            raise InvalidRequestError("too many actors in the delegation chain")
        self.request.subject = found.token
        self.request.grant = found.grant
        self.request.user = found.user
        self.request.scope = self._narrowed_scope(found.token)
        self.request.resources = self._targets(client.row)

    def _narrowed_scope(self, subject: TokenRow) -> str:
        held = [s for s in subject.scope.split() if s not in LOGIN_ONLY_SCOPES]
        requested = _one(self.request.form, "scope")
        if requested is None:
            scope = held
        else:
            wanted = requested.split()
            # §2.1 with RFC 6749 §3.3: never more than the subject token carries.
            if not wanted or not set(wanted) <= set(held):
                raise InvalidScopeError("the requested scope exceeds the subject token's scope")
            scope = [s for s in held if s in wanted]
        if not scope:
            raise InvalidScopeError("no scope of the subject token can be delegated")
        return " ".join(scope)

    def _targets(self, caller: Client) -> list[str]:
        """``resource`` (RFC 8707) and ``audience`` values, each one of the caller's
        registered exchange targets (``Client.exchange_targets``; none by default)."""
        resources = self.request.form.getlist("resource")
        audiences = self.request.form.getlist("audience")
        if len(resources) + len(audiences) > MAX_RESOURCES:
            raise InvalidTargetError("too many resource and audience values")
        for value in resources:
            # RFC 8707 §2: an absolute URI, no fragment.
            if not RESOURCE_URI.match(value or ""):
                raise InvalidTargetError("resource must be an absolute URI without a fragment")
        targets = list(dict.fromkeys(v for v in resources + audiences if v))
        if not targets:
            raise InvalidTargetError("name the resource the new token is for")
        allowed = set(caller.exchange_targets or ())
        # RFC 8693 §2.2.2: invalid_target when the target is "unacceptable based on policy".
        if any(t not in allowed for t in targets):
            raise InvalidTargetError("this client may not exchange tokens for that resource")
        return targets

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        subject: TokenRow = self.request.subject
        grant: GrantRow = self.request.grant
        user: UserRow = self.request.user
        caller: Client = self.request.client.row
        scope: str = self.request.scope
        session = context.db_session()
        now = utcnow()
        act = act_claim(caller, subject.act)
        own_bound = subject.jkt if subject.client_id == caller.client_id else None
        jkt = dpop_binding(caller, own_bound)
        access, token_id = context.services().tokens.access_token(
            session,
            grant,
            caller,
            user,
            scope,
            now,
            self.request.resources,
            act=act,
            not_after=subject.expires_at,
            jkt=jkt,
        )
        audit.record(
            session,
            "token.exchange",
            actor=caller.client_id,
            target=user.id,
            ip=context.client_ip(),
            details={
                "grant": grant.id,
                "subject_jti": subject.id,
                "jti": token_id,
                "scope": scope,
                "resources": list(self.request.resources),
                "dpop": jkt is not None,
            },
        )
        lifetime = min(
            context.settings().access_token_lifetime,
            int((subject.expires_at - now) / dt.timedelta(seconds=1)),
        )
        body = {
            "access_token": access,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "DPoP" if jkt is not None else "Bearer",  # RFC 9449 §5
            "expires_in": max(lifetime, 0),
            "scope": scope,
        }
        return 200, body, self.TOKEN_RESPONSE_HEADER
