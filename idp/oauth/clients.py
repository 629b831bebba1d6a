"""Clients: the Authlib view of a registered client, and validated registration.

Redirect URIs are compared as exact strings, with no normalization (RFC 9700 §4.1.3,
checklist 1-2).  The only exception is the port of a loopback redirect URI registered by a
native (public) client (RFC 8252 §7.3, checklist 4).  Registration refuses fragments,
userinfo, wildcards, non-HTTP schemes and plain ``http`` outside loopback (checklist 54-55).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from idp import audit
from idp.storage.models import Client
from idp.storage.repo import digest, new_secret

AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
ID_TOKEN_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
STANDARD_SCOPES = ("openid", "profile", "email", "phone", "offline_access")


class ClientRegistrationError(ValueError):
    """Client metadata refused; ``error`` is the RFC 7591 error code."""

    def __init__(self, message: str, error: str = "invalid_client_metadata") -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_redirect_uri(uri: str, *, public: bool, what: str = "redirect URI") -> str:
    """Return ``uri`` unchanged if it may be registered, else raise with the reason."""
    if not isinstance(uri, str) or not uri or uri != uri.strip():
        raise ClientRegistrationError(f"{what} must be a non-empty URI without spaces", "invalid_redirect_uri")
    if len(uri) > 2000 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        raise ClientRegistrationError(f"{what} must be printable ASCII", "invalid_redirect_uri")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise ClientRegistrationError(f"{what} cannot be parsed: {uri}", "invalid_redirect_uri") from None
    del port
    scheme = parts.scheme
    if "#" in uri:
        raise ClientRegistrationError(f"{what} must not contain a fragment", "invalid_redirect_uri")
    if "*" in uri:
        raise ClientRegistrationError(f"{what} must not contain wildcards", "invalid_redirect_uri")
    if "\\" in uri:
        raise ClientRegistrationError(f"{what} must not contain backslashes", "invalid_redirect_uri")
    if scheme in ("https", "http"):
        if not parts.hostname:
            raise ClientRegistrationError(f"{what} needs a host", "invalid_redirect_uri")
        if "@" in parts.netloc:
            raise ClientRegistrationError(f"{what} must not contain userinfo", "invalid_redirect_uri")
        if scheme == "http" and not _is_loopback(parts.hostname):
            raise ClientRegistrationError(
                f"{what} must use https (http only for loopback)", "invalid_redirect_uri"
            )
        return uri
    if public and scheme and "." in scheme and scheme.lower() not in ("javascript", "data", "vbscript"):
        # Private-use URI scheme of a native app (RFC 8252 §7.1): reverse domain name.
        return uri
    raise ClientRegistrationError(f"{what} has a forbidden scheme: {scheme or '(none)'}", "invalid_redirect_uri")


def redirect_uri_matches(registered: list[str], requested: str, *, public: bool) -> bool:
    """Exact string match; loopback URIs of public clients may differ in the port only."""
    if requested in registered:
        return True
    if not public:
        return False
    try:
        req = urlsplit(requested)
        req_port = req.port
    except ValueError:
        return False
    if req.scheme != "http" or req.hostname not in ("127.0.0.1", "[::1]", "::1"):
        return False
    del req_port
    for uri in registered:
        reg = urlsplit(uri)
        if (
            reg.scheme == "http"
            and reg.hostname == req.hostname
            and reg.path == req.path
            and reg.query == req.query
            and "@" not in req.netloc
        ):
            return True
    return False


@dataclass
class ClientSpec:
    """What an operator or the admin API asks for when registering a client."""

    name: str
    redirect_uris: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile"])
    public: bool = False
    grant_types: list[str] | None = None
    auth_method: str | None = None
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    frontchannel_logout_uri: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    id_token_alg: str = "RS256"
    subject_type: str = "public"
    sector_identifier_uri: str | None = None
    access_token_format: str = "opaque"
    require_par: bool = False
    web_origins: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    department: str | None = None
    first_party: bool = False
    client_id: str | None = None


def create_client(
    session: Session, spec: ClientSpec, *, actor: str, ip: str | None = None
) -> tuple[Client, str | None]:
    """Validate ``spec`` and store the client; return it and its secret (shown once)."""
    name = " ".join((spec.name or "").split())
    if not name or len(name) > 200:
        raise ClientRegistrationError("client name is required (at most 200 characters)")
    grant_types = spec.grant_types or (
        ["authorization_code", "refresh_token"] if spec.redirect_uris else ["client_credentials"]
    )
    for g in grant_types:
        if g not in GRANT_TYPES:
            raise ClientRegistrationError(
                f"grant type {g!r} is not supported; choose from {', '.join(GRANT_TYPES)}"
            )
    auth_method = spec.auth_method or ("none" if spec.public else "client_secret_basic")
    if auth_method not in AUTH_METHODS:
        raise ClientRegistrationError(f"auth method {auth_method!r} is not one of {', '.join(AUTH_METHODS)}")
    if spec.public and auth_method != "none":
        raise ClientRegistrationError("a public client authenticates with 'none'")
    if not spec.public and auth_method == "none":
        raise ClientRegistrationError("a confidential client needs an authentication method")
    if spec.public and "client_credentials" in grant_types:
        raise ClientRegistrationError("a public client cannot use client_credentials")
    if "authorization_code" in grant_types and not spec.redirect_uris:
        raise ClientRegistrationError("the authorization_code grant needs at least one redirect URI")
    redirect_uris = [validate_redirect_uri(u, public=spec.public) for u in spec.redirect_uris]
    post_logout = [
        validate_redirect_uri(u, public=spec.public, what="post-logout redirect URI")
        for u in spec.post_logout_redirect_uris
    ]
    for uri, what in ((spec.backchannel_logout_uri, "back-channel logout URI"),
                      (spec.frontchannel_logout_uri, "front-channel logout URI")):
        if uri:
            validate_redirect_uri(uri, public=False, what=what)
    if auth_method == "private_key_jwt" and not (spec.jwks or spec.jwks_uri):
        raise ClientRegistrationError("private_key_jwt needs --jwks-file or --jwks-uri")
    if spec.jwks_uri:
        validate_redirect_uri(spec.jwks_uri, public=False, what="jwks_uri")
    if spec.jwks is not None and not isinstance(spec.jwks.get("keys"), list):
        raise ClientRegistrationError("jwks must be a JWK set: {\"keys\": [...]}")
    if spec.id_token_alg not in ID_TOKEN_ALGS:
        raise ClientRegistrationError(f"ID-token algorithm must be one of {', '.join(ID_TOKEN_ALGS)}")
    if spec.subject_type not in ("public", "pairwise"):
        raise ClientRegistrationError("subject type must be public or pairwise")
    if spec.access_token_format not in ("opaque", "jwt"):
        raise ClientRegistrationError("access-token format must be opaque or jwt")
    scopes = []
    for s in spec.scopes:
        if not s or len(s) > 100 or any(c in s for c in ' "\\') or not s.isprintable():
            raise ClientRegistrationError(f"scope {s!r} is not a valid scope token")
        scopes.append(s)
    origins = []
    for o in spec.web_origins:
        parts = urlsplit(o)
        if parts.scheme not in ("https", "http") or parts.path not in ("", "/") or parts.query:
            raise ClientRegistrationError(f"web origin {o!r} must be scheme://host[:port]")
        origins.append(f"{parts.scheme}://{parts.netloc}")
    sector = None
    if spec.subject_type == "pairwise":
        if spec.sector_identifier_uri:
            sector = urlsplit(spec.sector_identifier_uri).hostname
        else:
            hosts = {urlsplit(u).hostname for u in redirect_uris}
            if len(hosts) != 1:
                raise ClientRegistrationError(
                    "pairwise clients with redirect URIs on several hosts need a sector_identifier_uri"
                )
            sector = hosts.pop()

    client_id = spec.client_id or new_secret(16)
    if session.get(Client, client_id) is not None:
        raise ClientRegistrationError("client_id is already taken")
    secret = None if spec.public else new_secret(32)
    client = Client(
        client_id=client_id,
        name=name,
        secret_digest=digest(secret) if secret else None,
        public=spec.public,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        scopes=scopes,
        grant_types=grant_types,
        response_types=["code"] if "authorization_code" in grant_types else [],
        token_endpoint_auth_method=auth_method,
        jwks=spec.jwks,
        jwks_uri=spec.jwks_uri,
        id_token_signed_response_alg=spec.id_token_alg,
        subject_type=spec.subject_type,
        sector_identifier_uri=spec.sector_identifier_uri,
        sector=sector,
        access_token_format=spec.access_token_format,
        require_pushed_authorization_requests=spec.require_par,
        backchannel_logout_uri=spec.backchannel_logout_uri,
        frontchannel_logout_uri=spec.frontchannel_logout_uri,
        web_origins=origins,
        resources=list(spec.resources),
        department=spec.department,
        first_party=spec.first_party,
    )
    session.add(client)
    session.flush()
    audit.record(
        session, "client.create", actor=actor, target=client_id, ip=ip,
        details={"name": name, "redirect_uris": redirect_uris, "grant_types": grant_types,
                 "auth_method": auth_method, "scopes": scopes},
    )
    return client, secret


class OAuthClient:
    """Authlib's ``ClientMixin`` over a :class:`Client` row."""

    def __init__(self, row: Client) -> None:
        self.row = row
        self.client_id = row.client_id

    # identity
    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC requires redirect_uri; only a client with exactly one URI may omit it.
        uris = self.row.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.row.scopes)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(list(self.row.redirect_uris), redirect_uri, public=self.row.public)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.row.secret_digest or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(self.row.secret_digest, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.row.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.row.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types

    @property
    def is_usable(self) -> bool:
        return self.row.status == "approved"

    def __repr__(self) -> str:
        return f"<OAuthClient {self.row.client_id}>"


def client_summary(row: Client) -> dict[str, Any]:
    """Public metadata of a client (never the secret digest)."""
    return json.loads(
        json.dumps(
            {
                "client_id": row.client_id,
                "client_name": row.name,
                "redirect_uris": row.redirect_uris,
                "post_logout_redirect_uris": row.post_logout_redirect_uris,
                "scope": " ".join(row.scopes),
                "grant_types": row.grant_types,
                "token_endpoint_auth_method": row.token_endpoint_auth_method,
                "id_token_signed_response_alg": row.id_token_signed_response_alg,
                "subject_type": row.subject_type,
                "status": row.status,
            }
        )
    )
