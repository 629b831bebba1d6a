"""OAuth 2.0 Device Authorization Grant (RFC 8628): sign in a device that has no browser.

https://www.rfc-editor.org/rfc/rfc8628

A television, a kiosk or a command-line tool (the *device*) asks ``POST /device_authorization``
for a ``device_code`` and a ``user_code``; the person opens ``/device`` on a phone or computer,
signs in there (with the levels and factors any login needs), types or confirms the user code,
sees which service asks and a phishing warning, and approves or denies
(:mod:`idp.blueprints.device`).  Meanwhile the device polls the token endpoint with
``grant_type=urn:ietf:params:oauth:grant-type:device_code``.  The request lives in the same
store and state machine as QR login (:mod:`idp.interaction.decoupled`, ``kind`` ``device``).

What we enforce, and why:

- the client authenticates as at the token endpoint (public clients with ``none``), and must be
  registered for the grant, else ``unauthorized_client`` (§3.1, RFC 6749 §5.2);
- ``device_code``: 256 bits, kept only as a digest; ``user_code``: 8 consonants (§6.1);
- polling (§3.5): ``authorization_pending`` until decided; ``slow_down`` when a poll comes
  sooner than ``interval`` after the last, which grows by 5 s each time; ``access_denied``
  after a denial; ``expired_token`` after ``expires_in``; a device code of another client, or
  an unknown one, is ``invalid_grant``;
- **single use**: the approved request moves to ``used`` by compare-and-set, so of two polls
  racing with the same code one gets tokens; a code presented again afterwards revokes the
  grant it produced (the device code leaked, as for a reused authorization code, RFC 9700
  §4.2.4);
- the approval writes a grant with the session's ``acr``/``amr``/``auth_time`` (so ID tokens
  say how the person signed in) and no SSO session id: signing out of the phone's browser
  does not sign the television out.  Refresh tokens follow ``offline_access``;
- DPoP (RFC 9449): a proof at the token endpoint binds the tokens as for any grant.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from authlib.oauth2.rfc6749.grants import BaseGrant, TokenEndpointMixin
from sqlalchemy.orm import Session

from idp import context
from idp.accounts.mandates import ENTITY_SCOPE
from idp.errors import (
    AccessDeniedError,
    AuthorizationPendingError,
    ExpiredTokenError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    SlowDownError,
    UnauthorizedClientError,
)
from idp.interaction import decoupled
from idp.interaction.levels import LevelRequest
from idp.oauth.admin_scopes import grantable_scope
from idp.oauth.clients import DEVICE_CODE
from idp.oauth.grants import CLIENT_AUTH_METHODS, dpop_binding, grant_tokens, lock_grant
from idp.storage import repo
from idp.storage.models import Client, DeviceRequest, Grant, SsoSession, User, utcnow

log = logging.getLogger(__name__)

GRANT_TYPE = DEVICE_CODE
#: The person's page (RFC 8628 §3.2 ``verification_uri``).
VERIFICATION_PATH = "/device"
#: What a sealed interaction (``ix``) of the person's pages carries: the code typed before
#: signing in, or the request being confirmed (``oidc.resume`` sends either back there).
IX_USER_CODE = "device_user_code"
IX_REQUEST = "device_request"


def _one(form: Any, name: str) -> str | None:
    values = form.getlist(name)
    if len(values) > 1:
        raise InvalidRequestError(f"{name} was sent more than once")
    return str(values[0]) if values and values[0] else None


def requested_scope(client: Client, sent: str | None) -> str:
    """The scope of a device request: what was sent (each registered for the client), or the
    client's registered scopes.  Acting for a company needs the picker of the browser flow."""
    wanted = list(dict.fromkeys(sent.split())) if sent is not None else list(client.scopes)
    if not wanted or any(s not in client.scopes for s in wanted):
        raise InvalidScopeError("scope not allowed for this client")
    if ENTITY_SCOPE in wanted:
        raise InvalidScopeError("acting for a company is not available with the device grant")
    return " ".join(wanted)


def level_request(session: Session, multi: dict[str, list[str]]) -> LevelRequest | None:
    """The client and scopes whose level a device approval in ``multi`` (an ``ix``) needs."""
    row = decoupled.device_request(session, (multi.get(IX_REQUEST) or [""])[0])
    client = context.find_client(row.client_id) if row is not None and row.client_id else None
    if row is None or client is None:
        return None
    return LevelRequest(client=client, scopes=row.scope.split())


def start(session: Session, client: Client, form: Any, *, ip: str) -> dict[str, Any]:
    """RFC 8628 §3.1-3.2: a new device request for an authenticated ``client`` (the caller
    commits); the answer is the device authorization response."""
    if DEVICE_CODE not in client.grant_types:
        raise UnauthorizedClientError("this client is not registered for the device grant")
    scope = requested_scope(client, _one(form, "scope"))
    settings = context.settings()
    started = decoupled.start_device(
        session,
        client_id=client.client_id,
        scope=scope,
        ip=ip,
        now=utcnow(),
        lifetime=settings.device_code_lifetime,
    )
    uri = settings.endpoint(VERIFICATION_PATH)
    return {
        "device_code": started.device_code,
        "user_code": started.user_code,
        "verification_uri": uri,
        "verification_uri_complete": f"{uri}?user_code={started.user_code}",
        "expires_in": started.expires_in,
        "interval": started.interval,
    }


def approve(
    session: Session, row: DeviceRequest, client: Client, user: User, sso: SsoSession
) -> Grant:
    """Write the grant the device's tokens will belong to (the caller decides and commits).

    No ``sid``: the device is not the browser that approved it, and its access ends with the
    grant (revocation on the account page, password change, account disabled), not with that
    browser's session.
    """
    now = utcnow()
    scopes = row.scope.split()
    grant = Grant(
        id=repo.new_id(),
        user_id=user.id,
        client_id=client.client_id,
        scope=row.scope,
        sid=None,
        offline="offline_access" in scopes,
        auth_time=sso.auth_time,
        acr=sso.acr,
        amr=list(sso.amr),
        created_at=now,
        expires_at=now + dt.timedelta(seconds=context.settings().refresh_token_absolute_lifetime),
    )
    session.add(grant)
    session.flush()
    return grant


class DeviceCodeGrant(BaseGrant, TokenEndpointMixin):  # type: ignore[misc]
    """``grant_type=urn:ietf:params:oauth:grant-type:device_code`` (RFC 8628 §3.4-3.5)."""

    GRANT_TYPE = GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("this client is not registered for the device grant")
        self.request.client = client
        device_code = _one(self.request.form, "device_code")
        if device_code is None:
            raise InvalidRequestError("device_code is required")
        session = context.db_session()
        row = decoupled.find_device_by_code(session, device_code)
        if row is None or row.client_id != client.client_id:
            if row is not None:
                log.warning("client %s polled another client's device code", client.client_id)
            raise InvalidGrantError("the device code is invalid")
        now = utcnow()
        state = decoupled.poll_device(session, row, now)
        if state == "approved":
            self.request.device_request = row
            return
        if state == "used":
            # Presented again after its tokens were issued: the code leaked; revoke them.
            if row.grant_id is not None:
                repo.revoke_grant(session, row.grant_id, "device_code_reuse", now)
            log.warning("device code reused; grant %s revoked", row.grant_id)
        session.commit()  # the poll's bookkeeping (interval, last poll) outlives the refusal
        refusals: dict[str, OAuth2Error] = {
            "used": InvalidGrantError("the device code has already been used"),
            "expired": ExpiredTokenError("the device code has expired"),
            "denied": AccessDeniedError("the person denied the request"),
            # RFC 8628 §3.5: a token error response (400), not the rate limiter's 429.
            "slow_down": SlowDownError("poll less often: the interval grew", status_code=400),
        }
        raise refusals.get(state, AuthorizationPendingError("the person has not decided yet"))

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        row: DeviceRequest = self.request.device_request
        client_row: Client = self.request.client.row
        session = context.db_session()
        now = utcnow()
        grant = lock_grant(row.grant_id) if row.grant_id else None
        user = session.get(User, row.user_id) if row.user_id else None
        if grant is None or grant.revoked_at is not None or user is None or not user.is_active:
            raise InvalidGrantError("the authorization has been revoked")
        # Single use (checklist 25 for device codes): exactly one poll wins this.
        if not decoupled.redeem_device(session, row, now):
            raise InvalidGrantError("the device code has already been used")
        scope = grantable_scope(grant.scope, user, grant.acr)
        jkt = dpop_binding(client_row)
        body = grant_tokens(session, grant, client_row, user, scope, now, [], jkt=jkt, nonce=None)
        return 200, body, self.TOKEN_RESPONSE_HEADER
