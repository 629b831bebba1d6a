"""Errors in the protocol's own form: one class per RFC error code.

The OAuth 2.0 error codes come from Authlib (``authlib.oauth2.rfc6749.errors``, the RFC text
as docstrings); this module subclasses them under one roof and adds the codes Authlib lacks.
Each error carries a client-safe ``description`` apart from the ``detail`` we log
(node-oidc-provider ``lib/helpers/errors.js``; fosite ``WithDebug``).

Why subclasses and not re-exports: RFC 6749 §4.1.2.1 allows only ``%x20-21 / %x23-5B /
%x5D-7E`` in ``error_description`` and Authlib raises ``ValueError`` from the constructor
otherwise.  A description often quotes what the client sent (a scope named ``社保``, a
``prompt`` with a backslash), so an unsanitised one turned a bad request into a 500.  Every
class here makes its description ASCII-safe first (:func:`ascii_safe`).  Code imports errors
from here only (ruff TID251 bans the Authlib modules elsewhere).

``OAuth2Error`` stays Authlib's base class so that ``except OAuth2Error`` also catches what
Authlib raises itself; raise the named classes below, never ``OAuth2Error`` directly.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import errors as _rfc6749
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.core import errors as _oidc

#: The characters RFC 6749 §4.1.2.1 allows in ``error_description``, as code points.
_ALLOWED = frozenset(range(0x20, 0x7F)) - {0x22, 0x5C}
MAX_DESCRIPTION = 500


def ascii_safe(text: str) -> str:
    """``text`` with every character RFC 6749 forbids in a description written as ``U+XXXX``.

    ``\\uXXXX`` cannot be used: the backslash itself is forbidden.  The result is cut to
    :data:`MAX_DESCRIPTION` characters so that echoed input cannot bloat an answer.
    """
    out = [ch if ord(ch) in _ALLOWED else f"U+{ord(ch):04X}" for ch in text]
    safe = "".join(out)
    return safe if len(safe) <= MAX_DESCRIPTION else safe[: MAX_DESCRIPTION - 3] + "..."


class SafeDescription:
    """Mixin: sanitise ``description`` before Authlib's constructor checks it."""

    def __init__(self, description: str | None = None, *args: Any, **kwargs: Any) -> None:
        if description:
            description = ascii_safe(str(description))
        super().__init__(description, *args, **kwargs)  # type: ignore[call-arg]


class InvalidRequestError(SafeDescription, _rfc6749.InvalidRequestError):  # type: ignore[misc]
    """``invalid_request`` (RFC 6749 §4.1.2.1, §5.2)."""


class InvalidClientError(SafeDescription, _rfc6749.InvalidClientError):  # type: ignore[misc]
    """``invalid_client`` (RFC 6749 §5.2)."""


class InvalidGrantError(SafeDescription, _rfc6749.InvalidGrantError):  # type: ignore[misc]
    """``invalid_grant`` (RFC 6749 §5.2)."""


class InvalidScopeError(SafeDescription, _rfc6749.InvalidScopeError):  # type: ignore[misc]
    """``invalid_scope`` (RFC 6749 §4.1.2.1, §5.2)."""


class UnauthorizedClientError(SafeDescription, _rfc6749.UnauthorizedClientError):  # type: ignore[misc]
    """``unauthorized_client`` (RFC 6749 §4.1.2.1, §5.2)."""


class AccessDeniedError(SafeDescription, _rfc6749.AccessDeniedError):  # type: ignore[misc]
    """``access_denied`` (RFC 6749 §4.1.2.1)."""


class UnsupportedResponseTypeError(SafeDescription, _rfc6749.UnsupportedResponseTypeError):  # type: ignore[misc]
    """``unsupported_response_type`` (RFC 6749 §4.1.2.1).

    Authlib's constructor takes the response type first; ours takes a description like
    every other error, so the (sanitised) description is what the client reads.
    """

    def __init__(self, description: str | None = None, *args: Any, **kwargs: Any) -> None:
        if description:
            description = ascii_safe(str(description))
        _rfc6749.OAuth2Error.__init__(self, description, *args, **kwargs)
        self.response_type = None

    def get_error_description(self) -> str:
        return str(self.description or "")


class UnsupportedGrantTypeError(SafeDescription, _rfc6749.UnsupportedGrantTypeError):  # type: ignore[misc]
    """``unsupported_grant_type`` (RFC 6749 §5.2); takes a description, like the others."""

    def __init__(self, description: str | None = None, *args: Any, **kwargs: Any) -> None:
        if description:
            description = ascii_safe(str(description))
        _rfc6749.OAuth2Error.__init__(self, description, *args, **kwargs)
        self.grant_type = None

    def get_error_description(self) -> str:
        return str(self.description or "")


class InteractionRequiredError(SafeDescription, _oidc.InteractionRequiredError):  # type: ignore[misc]
    """``interaction_required`` (OIDC Core §3.1.2.6)."""


class LoginRequiredError(SafeDescription, _oidc.LoginRequiredError):  # type: ignore[misc]
    """``login_required`` (OIDC Core §3.1.2.6)."""


class ConsentRequiredError(SafeDescription, _oidc.ConsentRequiredError):  # type: ignore[misc]
    """``consent_required`` (OIDC Core §3.1.2.6)."""


class AccountSelectionRequiredError(SafeDescription, _oidc.AccountSelectionRequiredError):  # type: ignore[misc]
    """``account_selection_required`` (OIDC Core §3.1.2.6)."""


class ProtocolError(SafeDescription, OAuth2Error):  # type: ignore[misc]
    """Base of the codes Authlib lacks: sanitised like the rest."""


class ServerError(ProtocolError):
    """``server_error``: an unexpected condition (RFC 6749 §4.1.2.1)."""

    error = "server_error"
    status_code = 500


class TemporarilyUnavailableError(ProtocolError):
    """``temporarily_unavailable``: overloaded or a dependency (a directory) is down
    (RFC 6749 §4.1.2.1)."""

    error = "temporarily_unavailable"
    status_code = 503


class InvalidTokenError(ProtocolError):
    """``invalid_token`` (RFC 6750 §3.1): expired, revoked, malformed or of the wrong kind."""

    error = "invalid_token"
    status_code = 401


class InvalidRequestUriError(ProtocolError):
    """``invalid_request_uri`` (OIDC Core §3.1.2.6, RFC 9126 §4)."""

    error = "invalid_request_uri"


class InvalidRequestObjectError(ProtocolError):
    """``invalid_request_object`` (OIDC Core §3.1.2.6, RFC 9101)."""

    error = "invalid_request_object"


class RequestNotSupportedError(ProtocolError):
    """``request_not_supported`` (OIDC Core §3.1.2.6)."""

    error = "request_not_supported"


class InvalidTargetError(ProtocolError):
    """``invalid_target`` (RFC 8707 §2): the requested resource is not allowed."""

    error = "invalid_target"


class SlowDownError(ProtocolError):
    """Rate limited: answered as HTTP 429 with ``Retry-After``."""

    error = "slow_down"
    status_code = 429


class InvalidDpopProofError(ProtocolError):
    """``invalid_dpop_proof`` (RFC 9449 §5, §7.1, §12.2): the DPoP proof is missing, malformed,
    replayed, for another request, or proves another key than the one the token is bound to.

    400 at the token endpoint; a resource (userinfo) answers 401 with ``WWW-Authenticate: DPoP``.
    """

    error = "invalid_dpop_proof"


class UseDpopNonceError(ProtocolError):
    """``use_dpop_nonce`` (RFC 9449 §8, §9): retry with the nonce in the ``DPoP-Nonce`` header."""

    error = "use_dpop_nonce"


class AuthorizationPendingError(ProtocolError):
    """``authorization_pending`` (RFC 8628 §3.5): the person has not decided yet; poll again."""

    error = "authorization_pending"


class ExpiredTokenError(ProtocolError):
    """``expired_token`` (RFC 8628 §3.5): the device code expired; start a new request."""

    error = "expired_token"


class InsufficientScopeError(ProtocolError):
    """``insufficient_scope`` (RFC 6750 §3.1): the token lacks a scope or role it needs."""

    error = "insufficient_scope"
    status_code = 403


class InsufficientUserAuthenticationError(ProtocolError):
    """``insufficient_user_authentication`` (RFC 9470 §3): the login behind the token is too
    weak or too old for this call."""

    error = "insufficient_user_authentication"
    status_code = 403


class InvalidRedirectUriError(ProtocolError):
    """``invalid_redirect_uri`` (RFC 7591 §3.2.2): a redirect URI breaks the rules."""

    error = "invalid_redirect_uri"


class InvalidClientMetadataError(ProtocolError):
    """``invalid_client_metadata`` (RFC 7591 §3.2.2): other client metadata is refused."""

    error = "invalid_client_metadata"


class StateStoreUnavailable(Exception):
    """The shared state store (Redis) did not answer: the request cannot be decided safely.

    Not a :class:`TemporarilyUnavailableError` subclass on purpose: handlers that catch that
    one speak of a directory outage.  The app answers it everywhere the same way (issue 12):
    ``503`` with ``temporarily_unavailable`` for protocol endpoints, a translated page for
    people; a replay check or a lockout counter is never skipped (checklist 117).
    """


def error_class(code: str) -> type[OAuth2Error]:
    """The class of an RFC error code named by a lower layer (``invalid_request`` if unknown)."""
    for cls in (InvalidRedirectUriError, InvalidClientMetadataError, InvalidScopeError):
        if cls.error == code:
            return cls
    return InvalidRequestError


class CasError(Exception):
    """A CAS validation failure, named by its CAS protocol 3.0 code (§2.5.3).

    ``description`` is ASCII and safe to send to the service; the subclasses are the codes.
    """

    code = "INTERNAL_ERROR"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class CasInvalidRequestError(CasError):
    """``INVALID_REQUEST``: a required parameter is missing (or something is not offered)."""

    code = "INVALID_REQUEST"


class CasInvalidTicketSpecError(CasError):
    """``INVALID_TICKET_SPEC``: the ticket does not meet the validation specification
    (``renew=true`` asked, but the ticket came from single sign-on)."""

    code = "INVALID_TICKET_SPEC"


class CasInvalidTicketError(CasError):
    """``INVALID_TICKET``: not recognised, already used or expired."""

    code = "INVALID_TICKET"


class CasInvalidServiceError(CasError):
    """``INVALID_SERVICE``: the ticket was issued for another service."""

    code = "INVALID_SERVICE"


class CasUnauthorizedServiceProxyError(CasError):
    """``UNAUTHORIZED_SERVICE_PROXY``: the service may not proxy (proxying is not offered)."""

    code = "UNAUTHORIZED_SERVICE_PROXY"


class BridgeError(Exception):
    """A ticket-bridge failure (protocol v1, docs/integrating.md "Ticket bridge"), named by
    its bridge error code.  Answered as ``{"version": "1", "error", "error_description"}``
    server to server, or on an error page in the browser; ``description`` is ASCII."""

    code = "server_error"
    status = 400

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = ascii_safe(description)


class BridgeInvalidRequestError(BridgeError):
    """``invalid_request``: a parameter is missing, repeated, malformed or too long."""

    code = "invalid_request"


class BridgeUnknownSystemError(BridgeError):
    """``unknown_system``: no enabled system is registered under this id."""

    code = "unknown_system"


class BridgeInvalidSignatureError(BridgeError):
    """``invalid_signature``: the request's HMAC (or JWT) does not verify with the system's
    secret."""

    code = "invalid_signature"


class BridgeStaleRequestError(BridgeError):
    """``stale_request``: the timestamp is too far from our clock (a replay window closed)."""

    code = "stale_request"


class BridgeReplayedRequestError(BridgeError):
    """``replayed_request``: this nonce was used already by this system."""

    code = "replayed_request"


class BridgeInvalidClientError(BridgeError):
    """``invalid_client``: the system's credentials are wrong or missing (HTTP 401)."""

    code = "invalid_client"
    status = 401


class BridgeInvalidTicketError(BridgeError):
    """``invalid_ticket``: unknown, used, expired, or issued to another system."""

    code = "invalid_ticket"


class BridgeInvalidTokenError(BridgeError):
    """``invalid_token``: the access token is unknown, expired, revoked or another system's
    (HTTP 401)."""

    code = "invalid_token"
    status = 401


class BridgeAccessDeniedError(BridgeError):
    """``access_denied``: the person declined (sent to the callback, never a page)."""

    code = "access_denied"


__all__ = [
    "AccessDeniedError",
    "AccountSelectionRequiredError",
    "BridgeAccessDeniedError",
    "BridgeError",
    "BridgeInvalidClientError",
    "BridgeInvalidRequestError",
    "BridgeInvalidSignatureError",
    "BridgeInvalidTicketError",
    "BridgeInvalidTokenError",
    "BridgeReplayedRequestError",
    "BridgeStaleRequestError",
    "BridgeUnknownSystemError",
    "CasError",
    "CasInvalidRequestError",
    "CasInvalidServiceError",
    "CasInvalidTicketError",
    "CasInvalidTicketSpecError",
    "CasUnauthorizedServiceProxyError",
    "ConsentRequiredError",
    "InsufficientScopeError",
    "InsufficientUserAuthenticationError",
    "InteractionRequiredError",
    "InvalidClientError",
    "InvalidClientMetadataError",
    "InvalidGrantError",
    "InvalidRedirectUriError",
    "InvalidRequestError",
    "InvalidRequestObjectError",
    "InvalidRequestUriError",
    "InvalidScopeError",
    "InvalidTargetError",
    "InvalidTokenError",
    "LoginRequiredError",
    "OAuth2Error",
    "ProtocolError",
    "RequestNotSupportedError",
    "ServerError",
    "SlowDownError",
    "StateStoreUnavailable",
    "TemporarilyUnavailableError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UnsupportedResponseTypeError",
    "ascii_safe",
]
