"""OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414).

It lists exactly what works: an advertised feature that half-works is worse than none
(issue 3).  One document, built here from the settings: no blueprint adds to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from idp.oauth.claims import CLAIMS_SUPPORTED, SCOPE_CLAIMS
from idp.oauth.client_auth import ASSERTION_ALGS
from idp.oauth.clients import ID_TOKEN_ALGS
from idp.oauth.dpop import DPOP_ALGS
from idp.oauth.grants import CLIENT_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS, GRANT_TYPES_SUPPORTED
from idp.oauth.request_object import ALGORITHMS as REQUEST_OBJECT_ALGS
from idp.oauth.verified_claims import discovery_metadata as ida_metadata

if TYPE_CHECKING:
    from idp.services import Services


#: The integrator guide served at ``/docs/integrating`` (``service_documentation``).
INTEGRATOR_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integrating.md"


def discovery_document(services: Services) -> dict[str, Any]:
    s = services.settings
    doc: dict[str, Any] = {
        "issuer": s.issuer,
        "authorization_endpoint": s.endpoint("/authorize"),
        "token_endpoint": s.endpoint("/token"),
        "userinfo_endpoint": s.endpoint("/userinfo"),
        "jwks_uri": s.endpoint("/jwks"),
        "scopes_supported": sorted({*SCOPE_CLAIMS, "offline_access"}),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": list(GRANT_TYPES_SUPPORTED),
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": [
            a for a in ID_TOKEN_ALGS if a in s.signing_algorithms
        ],
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint": s.endpoint("/revoke"),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint": s.endpoint("/introspect"),
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "claims_supported": CLAIMS_SUPPORTED,
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),  # RFC 9449 §5.1
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": True,
        "pushed_authorization_request_endpoint": s.endpoint("/par"),
        "device_authorization_endpoint": s.endpoint("/device_authorization"),  # RFC 8628 §4
        # RFC 7591 with initial access tokens only; RFC 7592 at registration_client_uri.
        "registration_endpoint": s.endpoint("/connect/register"),
        "require_pushed_authorization_requests": False,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": True,  # only request_uris our /par issued
        "require_request_uri_registration": True,
        "request_object_signing_alg_values_supported": list(REQUEST_OBJECT_ALGS),
        "end_session_endpoint": s.endpoint("/logout"),
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "display_values_supported": ["page", "popup", "touch", "wap"],
        "ui_locales_supported": ["zh-CN", "en"],
        "claim_types_supported": ["normal"],
        "acr_values_supported": ["urn:yitong:acr:pwd", "urn:yitong:acr:mfa", "urn:yitong:acr:phr"],
        "service_documentation": s.endpoint("/docs/integrating"),
    }
    doc.update(ida_metadata())  # OIDC4IDA 1.0 (docs/identity-assurance.md)
    if not INTEGRATOR_GUIDE.is_file():
        doc.pop("service_documentation")  # advertise only what answers
    return doc
