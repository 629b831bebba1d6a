"""Errors in the protocol's own form: one class per RFC error code.

The OAuth 2.0 error codes come from Authlib (``authlib.oauth2.rfc6749.errors``, the RFC text
as docstrings); this module re-exports them under one roof and adds the codes Authlib lacks.
Each error carries a client-safe ``description`` apart from the ``detail`` we log
(node-oidc-provider ``lib/helpers/errors.js``; fosite ``WithDebug``).
"""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)


class ServerError(OAuth2Error):  # type: ignore[misc]
    """``server_error``: an unexpected condition (RFC 6749 §4.1.2.1)."""

    error = "server_error"
    status_code = 500


class TemporarilyUnavailableError(OAuth2Error):  # type: ignore[misc]
    """``temporarily_unavailable``: overloaded or a dependency (a directory) is down
    (RFC 6749 §4.1.2.1)."""

    error = "temporarily_unavailable"
    status_code = 503


class InvalidTokenError(OAuth2Error):  # type: ignore[misc]
    """``invalid_token`` (RFC 6750 §3.1): expired, revoked, malformed or of the wrong kind."""

    error = "invalid_token"
    status_code = 401


class InvalidRequestUriError(OAuth2Error):  # type: ignore[misc]
    """``invalid_request_uri`` (OIDC Core §3.1.2.6, RFC 9126 §4)."""

    error = "invalid_request_uri"


class InvalidRequestObjectError(OAuth2Error):  # type: ignore[misc]
    """``invalid_request_object`` (OIDC Core §3.1.2.6, RFC 9101)."""

    error = "invalid_request_object"


class RequestNotSupportedError(OAuth2Error):  # type: ignore[misc]
    """``request_not_supported`` (OIDC Core §3.1.2.6)."""

    error = "request_not_supported"


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """``invalid_target`` (RFC 8707 §2): the requested resource is not allowed."""

    error = "invalid_target"


class AccountSelectionRequiredError(OAuth2Error):  # type: ignore[misc]
    """``account_selection_required`` (OIDC Core §3.1.2.6)."""

    error = "account_selection_required"


class SlowDownError(OAuth2Error):  # type: ignore[misc]
    """Rate limited: answered as HTTP 429 with ``Retry-After``."""

    error = "slow_down"
    status_code = 429


class InsufficientScopeError(OAuth2Error):  # type: ignore[misc]
    """``insufficient_scope`` (RFC 6750 §3.1): the token lacks a scope or role it needs."""

    error = "insufficient_scope"
    status_code = 403


class InvalidRedirectUriError(OAuth2Error):  # type: ignore[misc]
    """``invalid_redirect_uri`` (RFC 7591 §3.2.2): a redirect URI is refused."""

    error = "invalid_redirect_uri"


class InvalidClientMetadataError(OAuth2Error):  # type: ignore[misc]
    """``invalid_client_metadata`` (RFC 7591 §3.2.2): a metadata field is invalid."""

    error = "invalid_client_metadata"


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


__all__ = [
    "AccessDeniedError",
    "AccountSelectionRequiredError",
    "CasError",
    "CasInvalidRequestError",
    "CasInvalidServiceError",
    "CasInvalidTicketError",
    "CasInvalidTicketSpecError",
    "CasUnauthorizedServiceProxyError",
    "ConsentRequiredError",
    "InsufficientScopeError",
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
    "RequestNotSupportedError",
    "ServerError",
    "SlowDownError",
    "TemporarilyUnavailableError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UnsupportedResponseTypeError",
]
