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
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from idp import audit
from idp.storage.models import Client, User, utcnow
from idp.storage.repo import digest, new_secret
from keys.crypto import Kek

AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)
#: RFC 8693 token exchange (:mod:`idp.oauth.token_exchange`): one service calls another on a
#: person's behalf.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
#: RFC 8628 device authorization grant (:mod:`idp.oauth.device`): a television, a kiosk or a
#: command-line tool signs a person in through a browser on another device.
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = (
    "authorization_code",
    "refresh_token",
    "client_credentials",
    TOKEN_EXCHANGE,
    DEVICE_CODE,
)
#: The grants that sign a person in, after which a refresh token may carry the access on.
USER_GRANTS = ("authorization_code", DEVICE_CODE)
ID_TOKEN_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
STANDARD_SCOPES = ("openid", "profile", "email", "phone", "offline_access")
#: The authentication methods that use a client secret (RFC 6749 §2.3.1, OIDC Core §9).
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


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
        raise ClientRegistrationError(
            f"{what} must be a non-empty URI without spaces", "invalid_redirect_uri"
        )
    if len(uri) > 2000 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        raise ClientRegistrationError(f"{what} must be printable ASCII", "invalid_redirect_uri")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise ClientRegistrationError(
            f"{what} cannot be parsed: {uri}", "invalid_redirect_uri"
        ) from None
    del port
    scheme = parts.scheme
    if "#" in uri:
        raise ClientRegistrationError(f"{what} must not contain a fragment", "invalid_redirect_uri")
    if "*" in uri:
        raise ClientRegistrationError(f"{what} must not contain wildcards", "invalid_redirect_uri")
    if "\\" in uri:
        raise ClientRegistrationError(
            f"{what} must not contain backslashes", "invalid_redirect_uri"
        )
    if scheme in ("https", "http"):
        if not parts.hostname:
            raise ClientRegistrationError(f"{what} needs a host", "invalid_redirect_uri")
        if "@" in parts.netloc:
            raise ClientRegistrationError(
                f"{what} must not contain userinfo", "invalid_redirect_uri"
            )
        if scheme == "http" and not _is_loopback(parts.hostname):
            raise ClientRegistrationError(
                f"{what} must use https (http only for loopback)", "invalid_redirect_uri"
            )
        return uri
    if (
        public
        and scheme
        and "." in scheme
        and scheme.lower() not in ("javascript", "data", "vbscript")
    ):
        # Private-use URI scheme of a native app (RFC 8252 §7.1): reverse domain name.
        return uri
    raise ClientRegistrationError(
        f"{what} has a forbidden scheme: {scheme or '(none)'}", "invalid_redirect_uri"
    )


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
    dpop_bound_access_tokens: bool = False  # RFC 9449 §5.2: every token request proves a key
    web_origins: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    exchange_targets: list[str] = field(default_factory=list)  # RFC 8693 targets (operators)
    department_id: str | None = None
    first_party: bool = False
    client_id: str | None = None


# (sector_identifier_uri) -> the JSON document found there; raises OutboundError.
SectorFetcher = Callable[[str], Any]
MAX_JWKS_BYTES = 64 * 1024
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ClientRegistrationError(f"{what} must be a list of strings")
    return list(value)


def _rsa_bits(n: Any) -> int:
    """Size of an RSA modulus given as base64url (0 when it is not one)."""
    import base64
    import binascii

    if not isinstance(n, str) or len(n) > 2048:
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def validate_jwks(jwks: Any) -> dict[str, Any]:
    """A client's public signing keys (RFC 7517): asymmetric, public members only, usable.

    Private or symmetric keys are refused: a client that pastes its private key (or a shared
    secret) into registration has leaked it, and an ``oct`` key would open HMAC confusion.
    """
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey, import_key

    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ClientRegistrationError('jwks must be a JWK set with keys: {"keys": [...]}')
    if len(json.dumps(jwks)) > MAX_JWKS_BYTES:
        raise ClientRegistrationError("jwks is larger than 64 KB")
    kids: set[str] = set()
    for index, key in enumerate(jwks["keys"]):
        where = f"jwks key {index + 1}"
        if not isinstance(key, dict):
            raise ClientRegistrationError(f"{where} is not a JSON object")
        if key.get("kty") not in ("RSA", "EC", "OKP"):
            raise ClientRegistrationError(
                f"{where}: kty must be RSA, EC or OKP (no shared secrets)"
            )
        private = sorted(PRIVATE_JWK_MEMBERS.intersection(key))
        if private:
            raise ClientRegistrationError(
                f"{where} contains private key material ({', '.join(private)}); register only "
                "the public key, and replace the leaked private key"
            )
        kid = key.get("kid")
        if kid is not None:
            if not isinstance(kid, str) or kid in kids:
                raise ClientRegistrationError(f"{where}: kid must be a unique string")
            kids.add(kid)
        if key["kty"] == "RSA" and _rsa_bits(key.get("n")) < 2048:
            raise ClientRegistrationError(f"{where}: RSA keys need at least 2048 bits")
        try:
            imported = import_key(key)
        except (JoseError, ValueError, TypeError):
            raise ClientRegistrationError(f"{where} is not a valid public key") from None
        if isinstance(imported, RSAKey) and imported.raw_value.key_size < 2048:
            raise ClientRegistrationError(f"{where}: RSA keys need at least 2048 bits")
        if imported.is_private:
            raise ClientRegistrationError(f"{where} contains private key material")
    return {"keys": [dict(k) for k in jwks["keys"]]}


def validate_web_origin(origin: Any) -> str:
    """``scheme://host[:port]`` of a browser application allowed CORS on API endpoints."""
    if not isinstance(origin, str) or origin != origin.strip() or "*" in origin:
        raise ClientRegistrationError(f"web origin {origin!r} must be scheme://host[:port]")
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ClientRegistrationError(f"web origin {origin!r} cannot be parsed") from None
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ClientRegistrationError(f"web origin {origin!r} must be scheme://host[:port]")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ClientRegistrationError(f"web origin {origin!r} must use https")
    return f"{parts.scheme}://{parts.netloc}"


#: At most this many token-exchange targets per client: a list, not a wildcard.
MAX_EXCHANGE_TARGETS = 20


def validate_exchange_targets(value: Any) -> list[str]:
    """The resources a client may name in an RFC 8693 exchange: RFC 8707 resource URIs.

    An empty list is the default and means "none": a client registered for the grant type
    still gets ``invalid_target`` until an operator names what it may call.
    """
    listed = _str_list(value, "exchange_targets")
    targets = list(dict.fromkeys(validate_resource(r) for r in listed))
    if len(targets) > MAX_EXCHANGE_TARGETS:
        raise ClientRegistrationError(f"at most {MAX_EXCHANGE_TARGETS} exchange targets")
    return targets


def validate_resource(uri: Any) -> str:
    """RFC 8707 §2: a resource indicator is an absolute URI without a fragment."""
    if not isinstance(uri, str) or not uri or len(uri) > 2000 or uri != uri.strip():
        raise ClientRegistrationError(f"resource {uri!r} must be an absolute URI")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri) or "#" in uri:
        raise ClientRegistrationError(f"resource {uri!r} must be an absolute URI without fragment")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise ClientRegistrationError(f"resource {uri!r} cannot be parsed") from None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme or ""):
        raise ClientRegistrationError(f"resource {uri!r} must be an absolute URI")
    if parts.scheme.lower() in ("javascript", "data", "vbscript", "file"):
        raise ClientRegistrationError(f"resource {uri!r} has a forbidden scheme")
    return uri


def _default_sector_fetcher(uri: str) -> Any:
    from idp.oauth.outbound import OutboundPolicy, fetch_json

    return fetch_json(uri, OutboundPolicy())


def sector_for(
    spec: ClientSpec, redirect_uris: list[str], fetch: SectorFetcher | None
) -> tuple[str | None, str | None]:
    """The pairwise sector (OIDC Core §8.1) and the validated ``sector_identifier_uri``.

    With a ``sector_identifier_uri`` the sector is its host, and the JSON array found there
    must list every redirect URI (OIDC Registration §5; checklist 56).  It is fetched once,
    now, under the SSRF guard (https, public addresses, 64 KB, 5 s; checklist 59).
    """
    from idp.oauth.outbound import OutboundError

    uri = spec.sector_identifier_uri
    if spec.subject_type != "pairwise":
        if uri:
            raise ClientRegistrationError("a sector_identifier_uri needs --subject-type pairwise")
        return None, None
    if not uri:
        hosts = {urlsplit(u).hostname for u in redirect_uris}
        if len(hosts) != 1:
            raise ClientRegistrationError(
                "pairwise clients with redirect URIs on several hosts (or none) need a "
                "sector_identifier_uri"
            )
        return hosts.pop(), None
    uri = validate_redirect_uri(uri, public=False, what="sector_identifier_uri")
    try:
        listed = (fetch or _default_sector_fetcher)(uri)
    except OutboundError as exc:
        raise ClientRegistrationError(f"sector_identifier_uri cannot be fetched: {exc}") from None
    if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
        raise ClientRegistrationError("sector_identifier_uri must return a JSON array of URIs")
    missing = [u for u in redirect_uris if u not in listed]
    if missing:
        raise ClientRegistrationError(
            f"sector_identifier_uri does not list the redirect URI {missing[0]}"
        )
    return urlsplit(uri).hostname, uri


def validate_client_spec(
    spec: ClientSpec,
    *,
    signing_algorithms: Collection[str] | None = None,
    sector_fetcher: SectorFetcher | None = None,
    jwks_fetcher: SectorFetcher | None = None,
) -> dict[str, Any]:
    """Check ``spec`` and return the :class:`Client` column values it stands for.

    The one validation of client metadata: registration by an operator, the admin API, RFC
    7591 dynamic registration and RFC 7592 updates all go through it.  ``jwks_fetcher``:
    how to fetch a ``jwks_uri`` now (the SSRF-guarded outbound fetch); None skips the fetch.
    """
    name = " ".join(spec.name.split()) if isinstance(spec.name, str) else ""
    if not name or len(name) > 200:
        raise ClientRegistrationError("client name is required (at most 200 characters)")
    redirect_in = _str_list(spec.redirect_uris, "redirect_uris")
    grant_types = _str_list(spec.grant_types, "grant_types") or (
        ["authorization_code", "refresh_token"] if redirect_in else ["client_credentials"]
    )
    for g in grant_types:
        if g not in GRANT_TYPES:
            raise ClientRegistrationError(
                f"grant type {g!r} is not supported; choose from {', '.join(GRANT_TYPES)}"
            )
    grant_types = list(dict.fromkeys(grant_types))
    if "refresh_token" in grant_types and not set(USER_GRANTS) & set(grant_types):
        raise ClientRegistrationError(
            "the refresh_token grant needs authorization_code or the device_code grant"
        )
    auth_method = spec.auth_method or ("none" if spec.public else "client_secret_basic")
    if auth_method not in AUTH_METHODS:
        raise ClientRegistrationError(
            f"auth method {auth_method!r} is not one of {', '.join(AUTH_METHODS)}"
        )
    if spec.public and auth_method != "none":
        raise ClientRegistrationError("a public client authenticates with 'none'")
    if not spec.public and auth_method == "none":
        raise ClientRegistrationError("a confidential client needs an authentication method")
    if spec.public and "client_credentials" in grant_types:
        raise ClientRegistrationError("a public client cannot use client_credentials")
    if spec.public and TOKEN_EXCHANGE in grant_types:
        raise ClientRegistrationError("a public client cannot use token exchange")
    if "authorization_code" in grant_types and not redirect_in:
        raise ClientRegistrationError(
            "the authorization_code grant needs at least one redirect URI"
        )
    if redirect_in and "authorization_code" not in grant_types:
        raise ClientRegistrationError("redirect URIs are only used by the authorization_code grant")
    redirect_uris = [validate_redirect_uri(u, public=spec.public) for u in redirect_in]
    post_logout = [
        validate_redirect_uri(u, public=spec.public, what="post-logout redirect URI")
        for u in _str_list(spec.post_logout_redirect_uris, "post_logout_redirect_uris")
    ]
    for uri, what in (
        (spec.backchannel_logout_uri, "back-channel logout URI"),
        (spec.frontchannel_logout_uri, "front-channel logout URI"),
    ):
        if uri is not None:
            validate_redirect_uri(uri, public=False, what=what)
    if (post_logout or spec.backchannel_logout_uri or spec.frontchannel_logout_uri) and (
        "authorization_code" not in grant_types
    ):
        raise ClientRegistrationError("logout URIs need the authorization_code grant")
    if spec.jwks is not None and spec.jwks_uri:
        raise ClientRegistrationError("give either jwks or jwks_uri, not both")
    jwks = validate_jwks(spec.jwks) if spec.jwks is not None else None
    if spec.jwks_uri is not None:
        validate_redirect_uri(spec.jwks_uri, public=False, what="jwks_uri")
        if jwks_fetcher is not None:
            _fetch_jwks(spec.jwks_uri, jwks_fetcher)
    if auth_method == "private_key_jwt" and not (jwks or spec.jwks_uri):
        raise ClientRegistrationError("private_key_jwt needs --jwks-file or --jwks-uri")
    if spec.id_token_alg not in ID_TOKEN_ALGS:
        raise ClientRegistrationError(
            f"ID-token algorithm must be one of {', '.join(ID_TOKEN_ALGS)}"
        )
    if signing_algorithms is not None and spec.id_token_alg not in signing_algorithms:
        raise ClientRegistrationError(
            f"ID-token algorithm {spec.id_token_alg} has no signing key; add it to "
            "YITONG_SIGNING_ALGORITHMS first"
        )
    if spec.subject_type not in ("public", "pairwise"):
        raise ClientRegistrationError("subject type must be public or pairwise")
    if spec.access_token_format not in ("opaque", "jwt"):
        raise ClientRegistrationError("access-token format must be opaque or jwt")
    if spec.require_par and "authorization_code" not in grant_types:
        raise ClientRegistrationError("--require-par applies to the authorization_code grant only")
    scopes = []
    for s in _str_list(spec.scopes, "scopes"):
        if not s or len(s) > 100 or any(c in s for c in ' "\\') or not s.isprintable():
            raise ClientRegistrationError(f"scope {s!r} is not a valid scope token")
        scopes.append(s)
    origins = list(
        dict.fromkeys(validate_web_origin(o) for o in _str_list(spec.web_origins, "web origins"))
    )
    resources = list(
        dict.fromkeys(validate_resource(r) for r in _str_list(spec.resources, "resources"))
    )
    sector, sector_uri = sector_for(spec, redirect_uris, sector_fetcher)

    return {
        "name": name,
        "public": spec.public,
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout,
        "scopes": scopes,
        "grant_types": grant_types,
        "response_types": ["code"] if "authorization_code" in grant_types else [],
        "token_endpoint_auth_method": auth_method,
        "jwks": jwks,
        "jwks_uri": spec.jwks_uri,
        "id_token_signed_response_alg": spec.id_token_alg,
        "subject_type": spec.subject_type,
        "sector_identifier_uri": sector_uri,
        "sector": sector,
        "access_token_format": spec.access_token_format,
        "require_pushed_authorization_requests": spec.require_par,
        "dpop_bound_access_tokens": spec.dpop_bound_access_tokens,
        "backchannel_logout_uri": spec.backchannel_logout_uri,
        "frontchannel_logout_uri": spec.frontchannel_logout_uri,
        "web_origins": origins,
        "resources": resources,
    }


def _fetch_jwks(uri: str, fetch: SectorFetcher) -> None:
    """A ``jwks_uri`` must answer now, through the SSRF guard, with usable public keys."""
    from idp.oauth.outbound import OutboundError

    try:
        found = fetch(uri)
    except OutboundError as exc:
        raise ClientRegistrationError(f"jwks_uri cannot be fetched: {exc}") from None
    try:
        validate_jwks(found)
    except ClientRegistrationError as exc:
        raise ClientRegistrationError(f"jwks_uri: {exc.message}") from None


def _new_client_id() -> str:
    """128 random bits, base64url, never starting with ``-``: an operator types the id as a
    command-line argument (``yitong clients show <id>``), where a leading dash reads as an
    option (one id in 64 would)."""
    while True:
        client_id = new_secret(16)
        if not client_id.startswith("-"):
            return client_id


def create_client(
    session: Session,
    spec: ClientSpec,
    *,
    actor: str,
    ip: str | None = None,
    kek: Kek | None = None,
    signing_algorithms: Collection[str] | None = None,
    sector_fetcher: SectorFetcher | None = None,
    jwks_fetcher: SectorFetcher | None = None,
) -> tuple[Client, str | None]:
    """Validate ``spec`` and store the client; return it and its secret (shown once).

    ``signing_algorithms``: the algorithms the key store signs with; an ID-token algorithm
    without a key is refused here rather than failing at the first token request.
    ``sector_fetcher``: how to fetch a ``sector_identifier_uri`` (default: the SSRF-guarded
    outbound fetch; tests pass one bound to a local server).
    """
    fields = validate_client_spec(
        spec,
        signing_algorithms=signing_algorithms,
        sector_fetcher=sector_fetcher,
        jwks_fetcher=jwks_fetcher,
    )
    # Not RFC 7591 metadata: an operator's list, so an RFC 7592 update never touches it.
    fields["exchange_targets"] = validate_exchange_targets(spec.exchange_targets)
    auth_method = fields["token_endpoint_auth_method"]
    client_id = spec.client_id or _new_client_id()
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        raise ClientRegistrationError("client_id must be 1-64 letters, digits or . _ ~ -")
    # BCP §4.15: a client_id must not be mistaken for another client or a user's subject.
    if session.get(Client, client_id) is not None or session.get(User, client_id) is not None:
        raise ClientRegistrationError("client_id is already taken")
    # Only the shared-secret methods get a secret.  A private_key_jwt (or none) client never
    # uses one, and an unused secret is still a credential that can leak from wherever it was
    # handed over (RFC 7591 §3.2.1: client_secret only "if issued").
    secret = new_secret(32) if auth_method in SECRET_METHODS else None
    # client_secret_jwt verifies an HMAC, so the secret itself is kept, encrypted under the
    # key-encryption key with the client_id as associated data (idp.oauth.client_auth).
    secret_ciphertext = None
    if auth_method == "client_secret_jwt" and secret is not None:
        if kek is None:
            raise ClientRegistrationError("client_secret_jwt needs the key-encryption key (kek=)")
        secret_ciphertext = kek.encrypt(secret.encode(), aad=client_id.encode())
    client = Client(
        client_id=client_id,
        secret_digest=digest(secret) if secret else None,
        secret_ciphertext=secret_ciphertext,
        department_id=spec.department_id,
        first_party=spec.first_party,
        **fields,
    )
    session.add(client)
    session.flush()
    audit.record(
        session,
        "client.create",
        actor=actor,
        target=client_id,
        ip=ip,
        details={
            "name": fields["name"],
            "redirect_uris": fields["redirect_uris"],
            "grant_types": fields["grant_types"],
            "auth_method": auth_method,
            "scopes": fields["scopes"],
        },
    )
    return client, secret


_DUMMY_DIGEST = "0" * 64


def secret_digest_matches(row: Client | None, presented: str) -> bool:
    """Whether ``presented`` (a SHA-256 hex digest) is the client's secret, or its previous one
    within the grace period after a rotation (issue 11).  One constant-time comparison whether
    or not the client exists (checklist 32); a second one only for a client in a grace period."""
    stored = row.secret_digest if row is not None else None
    if hmac.compare_digest(stored or _DUMMY_DIGEST, presented) and stored is not None:
        return True
    return previous_secret_matches(row, presented)


def previous_secret_matches(row: Client | None, presented: str) -> bool:
    """The previous secret, while its grace period after a rotation lasts."""
    if row is None or row.previous_secret_digest is None:
        return False
    until = row.previous_secret_expires_at
    if until is None or utcnow() >= until:
        return False
    return hmac.compare_digest(row.previous_secret_digest, presented)


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
        return redirect_uri_matches(
            list(self.row.redirect_uris), redirect_uri, public=self.row.public
        )

    def check_client_secret(self, client_secret: str) -> bool:
        if not isinstance(client_secret, str):
            return False
        return secret_digest_matches(self.row, digest(client_secret))

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
    """Public metadata of a client in RFC 7591 names (never the secret or its digest)."""
    return {
        "client_id": row.client_id,
        "client_name": row.name,
        "redirect_uris": list(row.redirect_uris),
        "post_logout_redirect_uris": list(row.post_logout_redirect_uris),
        "backchannel_logout_uri": row.backchannel_logout_uri,
        "backchannel_logout_session_required": bool(row.backchannel_logout_uri),
        "frontchannel_logout_uri": row.frontchannel_logout_uri,
        "frontchannel_logout_session_required": bool(row.frontchannel_logout_uri),
        "scope": " ".join(row.scopes),
        "grant_types": list(row.grant_types),
        "response_types": list(row.response_types),
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "jwks_uri": row.jwks_uri,
        "id_token_signed_response_alg": row.id_token_signed_response_alg,
        "subject_type": row.subject_type,
        "sector_identifier_uri": row.sector_identifier_uri,
        "access_token_format": row.access_token_format,
        "require_pushed_authorization_requests": row.require_pushed_authorization_requests,
        "dpop_bound_access_tokens": row.dpop_bound_access_tokens,
        "web_origins": list(row.web_origins),
        "resources": list(row.resources),
        "exchange_targets": list(row.exchange_targets or ()),
        "status": row.status,
    }
