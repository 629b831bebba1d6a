"""Client authentication at the token, revocation, introspection and PAR endpoints.

Specs: RFC 6749 §2.3 (``client_secret_basic``, ``client_secret_post``), RFC 7523 §2.2 and
OIDC Core §9 (``client_secret_jwt``, ``private_key_jwt``), RFC 7591 §2 (``none``).
https://www.rfc-editor.org/rfc/rfc7523 · https://openid.net/specs/openid-connect-core-1_0.html#ClientAuthentication

Authlib tries every method in turn; we instead look at what the request *presents*, refuse a
request that presents more than one credential (RFC 6749 §2.3: "MUST NOT use more than one
authentication method in each request"), and accept it only if that is the method the client
registered (checklist 32).  Every failure is the same ``401 invalid_client`` with the same body:
an unknown client and a wrong secret do the same work (a digest and a constant-time compare)
and answer identically (RFC 6749 §5.2; ASVS 6.3.8).

Client assertions go through :func:`idp.oauth.jose_inbound.verify_jws` (checklist 33, 53) and
then: ``iss`` = ``sub`` = the client, ``aud`` = our issuer or the endpoint, ``exp`` required
(at most an hour ahead), ``iat``/``nbf`` at most 60 s ahead (FAPI 2.0 §5.3.2.1: 10 s must be
accepted, 60 s refused), ``jti`` required and single-use (remembered in ``seen_jtis`` until
``exp``; the record is committed at once, so a request that fails later cannot free it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from joserfc.errors import JoseError
from joserfc.jwk import Key, OctKey, import_key

from idp import context, untrusted_json
from idp.errors import InvalidClientError
from idp.oauth.clients import OAuthClient, previous_secret_matches
from idp.oauth.jose_inbound import (
    ASYMMETRIC_ALGS,
    HMAC_ALGS,
    PRIVATE_MEMBERS,
    InboundJwtError,
    audience_matches,
    check_times,
    verify_jws,
)
from idp.oauth.outbound import JsonCache, OutboundError, OutboundPolicy
from idp.storage import repo
from idp.storage.models import utcnow
from keys.crypto import KekError

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Algorithms accepted for each assertion method (discovery lists their union).
PRIVATE_KEY_JWT_ALGS = ASYMMETRIC_ALGS
CLIENT_SECRET_JWT_ALGS = HMAC_ALGS
ASSERTION_ALGS = (*PRIVATE_KEY_JWT_ALGS, *CLIENT_SECRET_JWT_ALGS)
#: ``typ`` values a client assertion may carry: none, JWT, or the explicit type of
#: draft-ietf-oauth-rfc7523bis.  Anything else (at+jwt, logout+jwt, dpop+jwt…) is a token of
#: another kind and is refused (RFC 8725 §3.11).
ASSERTION_TYPES = (None, "JWT", "client-authentication+jwt")
MAX_ASSERTION_BYTES = 8192
MAX_ASSERTION_LIFETIME = 3600
MAX_FUTURE_SECONDS = 60
MAX_HEADER_BYTES = 8192
_DUMMY_DIGEST = "0" * 64
#: Authlib endpoint names and the paths they are served at (for ``aud``).
ENDPOINT_PATHS = {
    "token": "/token",
    "revocation": "/revoke",
    "introspection": "/introspect",
    "pushed_authorization_request": "/par",
    "par": "/par",
    "device_authorization": "/device_authorization",
}


def client_auth_failed() -> InvalidClientError:
    """The one answer for every authentication failure (checklist 32)."""
    return InvalidClientError(description="client authentication failed", status_code=401)


def parse_basic(authorization: str) -> tuple[str, str]:
    """``(client_id, secret)`` from an HTTP Basic header, or ``invalid_client`` (401).

    The one parser for client credentials in ``Authorization`` (RFC 6749 §2.3.1, RFC 7617):
    the scheme ``Basic`` (any case), one base64 token, UTF-8, a colon, both parts
    form-urlencoded and non-empty.  Anything else (``Basic `` alone, bad base64, bytes that are
    not UTF-8, no colon) is the same ``invalid_client`` as a wrong secret, never a 500.
    """
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token or " " in token:
        raise client_auth_failed()
    try:
        decoded = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):  # binascii.Error is a ValueError
        raise client_auth_failed() from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise client_auth_failed()
    # RFC 6749 §2.3.1: both are application/x-www-form-urlencoded before base64.
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not client_id or not secret or "\x00" in client_id or "\x00" in secret:
        raise client_auth_failed()
    return client_id, secret


def _secret_matches(client: OAuthClient | None, secret: str) -> bool:
    """Digest and compare whether or not the client exists: same work, same time."""
    presented = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
    stored = client.row.secret_digest if client is not None else None
    ok = hmac.compare_digest(stored or _DUMMY_DIGEST, presented)
    if ok and client is not None and stored is not None:
        return True
    # After a rotation the previous secret works until its grace period ends (issue 11).
    return client is not None and previous_secret_matches(client.row, presented)


def _single(form: Mapping[str, Any], name: str) -> str | None:
    values = form.getlist(name) if hasattr(form, "getlist") else [form.get(name)]
    values = [v for v in values if v is not None]
    if len(values) > 1:
        raise client_auth_failed()
    return values[0] if values else None


def _peek_subject(assertion: str) -> str | None:
    """The client an assertion claims to come from, read *unverified* to pick its keys.

    Nothing read here is trusted: the same claims are verified after the signature.
    """
    parts = assertion.split(".")
    if len(parts) != 3 or len(assertion) > MAX_ASSERTION_BYTES:
        return None
    try:
        body = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = untrusted_json.loads(body)
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


class ClientAuthenticator:
    """Authlib's client-authentication hook (``server.authenticate_client``), our way."""

    def __init__(
        self,
        query_client: Callable[[str | None], OAuthClient | None],
        jwks_cache: JsonCache | None = None,
    ) -> None:
        self.query_client = query_client
        self.jwks_cache = jwks_cache or JsonCache()
        self._key_cache: dict[str, list[Key]] = {}
        self._lock = threading.Lock()

    # -- entry point -----------------------------------------------------------------------
    def __call__(
        self, request: Any, methods: Iterable[str], endpoint: str = "token"
    ) -> OAuthClient:
        client, method = self.authenticate(request.headers, request.form, set(methods), endpoint)
        request.auth_method = method
        request.client = client
        return client

    def authenticate(
        self, headers: Mapping[str, str], form: Mapping[str, Any], methods: set[str], endpoint: str
    ) -> tuple[OAuthClient, str]:
        authorization = headers.get("Authorization")
        if authorization is not None and len(authorization) > MAX_HEADER_BYTES:
            raise client_auth_failed()
        form_client_id = _single(form, "client_id")
        secret = _single(form, "client_secret")
        assertion = _single(form, "client_assertion")
        assertion_type = _single(form, "client_assertion_type")

        presented = []
        if authorization is not None:
            presented.append("basic")
        if secret is not None:
            presented.append("post")
        if assertion is not None or assertion_type is not None:
            presented.append("jwt")
        if len(presented) > 1:
            raise client_auth_failed()

        if authorization is not None:
            return self._basic(authorization, form_client_id, methods), "client_secret_basic"
        if secret is not None:
            return self._post(form_client_id, secret, methods), "client_secret_post"
        if assertion is not None or assertion_type is not None:
            return self._assertion(assertion, assertion_type, form_client_id, methods, endpoint)
        return self._none(form_client_id, methods), "none"

    # -- methods ---------------------------------------------------------------------------
    def _basic(
        self, authorization: str, form_client_id: str | None, methods: set[str]
    ) -> OAuthClient:
        client_id, secret = parse_basic(authorization)
        client = self.query_client(client_id)
        ok = _secret_matches(client, secret)
        if (
            not ok
            or client is None
            or "client_secret_basic" not in methods
            or client.row.token_endpoint_auth_method != "client_secret_basic"
            or (form_client_id is not None and form_client_id != client_id)
        ):
            raise client_auth_failed()
        return client

    def _post(self, client_id: str | None, secret: str, methods: set[str]) -> OAuthClient:
        if not client_id:
            raise client_auth_failed()
        client = self.query_client(client_id)
        ok = _secret_matches(client, secret)
        if (
            not ok
            or client is None
            or "client_secret_post" not in methods
            or client.row.token_endpoint_auth_method != "client_secret_post"
        ):
            raise client_auth_failed()
        return client

    def _none(self, client_id: str | None, methods: set[str]) -> OAuthClient:
        if not client_id or "none" not in methods:
            raise client_auth_failed()
        client = self.query_client(client_id)
        # RFC 6749 §3.2.1: a confidential client must authenticate; 'none' is for public ones.
        if (
            client is None
            or client.row.token_endpoint_auth_method != "none"
            or not client.row.public
        ):
            raise client_auth_failed()
        return client

    def _assertion(
        self,
        assertion: str | None,
        assertion_type: str | None,
        form_client_id: str | None,
        methods: set[str],
        endpoint: str,
    ) -> tuple[OAuthClient, str]:
        if assertion_type != ASSERTION_TYPE or not assertion:
            raise client_auth_failed()
        if len(assertion) > MAX_ASSERTION_BYTES:
            raise client_auth_failed()
        claimed = _peek_subject(assertion)
        if not claimed or (form_client_id is not None and form_client_id != claimed):
            raise client_auth_failed()
        client = self.query_client(claimed)
        if client is None:
            raise client_auth_failed()
        method = client.row.token_endpoint_auth_method
        if method not in ("private_key_jwt", "client_secret_jwt") or method not in methods:
            raise client_auth_failed()
        if method == "private_key_jwt":
            algorithms: tuple[str, ...] = PRIVATE_KEY_JWT_ALGS
            resolver = self._public_key_resolver(client)
        else:
            algorithms = CLIENT_SECRET_JWT_ALGS
            resolver = self._secret_key_resolver(client)
        try:
            verified = verify_jws(
                assertion,
                algorithms=algorithms,
                resolve_key=resolver,
                typ=ASSERTION_TYPES,
                max_size=MAX_ASSERTION_BYTES,
            )
            self._check_claims(verified.claims, client.client_id, endpoint)
        except InboundJwtError as exc:
            log.info("client assertion refused for %s: %s", client.client_id, exc)
            raise client_auth_failed() from None
        self._remember_jti(client.client_id, verified.claims)
        return client, method

    # -- assertion details -----------------------------------------------------------------
    def _check_claims(self, claims: Mapping[str, Any], client_id: str, endpoint: str) -> None:
        settings = context.settings()
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise InboundJwtError("iss and sub must both be the client_id")
        # RFC 7523 §3: aud identifies us; we take the issuer, the token endpoint, and the
        # endpoint the assertion is presented at (OIDC Core §9 names the token endpoint).
        accepted = {settings.issuer, settings.endpoint("/token")}
        accepted.add(settings.endpoint(ENDPOINT_PATHS.get(endpoint, "/token")))
        if not audience_matches(claims.get("aud"), accepted):
            raise InboundJwtError("aud must be the issuer or the endpoint")
        check_times(
            claims,
            now=utcnow(),
            require_exp=True,
            max_future=MAX_FUTURE_SECONDS,
            max_lifetime=MAX_ASSERTION_LIFETIME,
        )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise InboundJwtError("jti is required")

    def _remember_jti(self, client_id: str, claims: Mapping[str, Any]) -> None:
        """Record the jti until the assertion expires; a second use is a replay (checklist 33)."""
        expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC) + dt.timedelta(seconds=60)
        value = f"{client_id}\x00{claims['jti']}"
        if not repo.consume_once_shared(
            context.db_session(), context.services().hot, "client_assertion", value, expires
        ):
            log.warning("client assertion jti replayed for %s", client_id)
            raise client_auth_failed()

    def _secret_key_resolver(self, client: OAuthClient) -> Callable[[Mapping[str, Any]], list[Key]]:
        row = client.row

        def resolve(_header: Mapping[str, Any]) -> list[Key]:
            if not row.secret_ciphertext:
                return []
            try:
                secret = context.services().kek.decrypt(
                    row.secret_ciphertext, aad=row.client_id.encode()
                )
            except KekError:
                log.error("client_secret_jwt secret of %s cannot be decrypted", row.client_id)
                return []
            return [OctKey.import_key(secret)]

        return resolve

    def _public_key_resolver(self, client: OAuthClient) -> Callable[[Mapping[str, Any]], list[Key]]:
        row = client.row

        def resolve(header: Mapping[str, Any]) -> list[Key]:
            kid = header.get("kid")
            keys = self._client_keys(row.client_id, row.jwks, row.jwks_uri, refresh=False)
            matching = [k for k in keys if kid is None or k.kid == kid]
            if not matching and row.jwks is None and row.jwks_uri:
                # An unknown kid may be a key the client just rotated in: re-fetch (rate-limited).
                keys = self._client_keys(row.client_id, None, row.jwks_uri, refresh=True)
                matching = [k for k in keys if kid is None or k.kid == kid]
            return matching

        return resolve

    def _client_keys(
        self, client_id: str, jwks: Any, jwks_uri: str | None, *, refresh: bool
    ) -> list[Key]:
        if jwks is None and jwks_uri:
            policy = OutboundPolicy.from_settings(context.settings())
            try:
                jwks = self.jwks_cache.get(jwks_uri, policy, refresh=refresh)
            except OutboundError as exc:
                log.warning("jwks_uri of %s unusable: %s", client_id, exc)
                return []
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            return []
        fingerprint = hashlib.sha256(
            json.dumps(jwks, sort_keys=True, default=str).encode()
        ).hexdigest()
        with self._lock:
            cached = self._key_cache.get(fingerprint)
        if cached is not None:
            return cached
        keys: list[Key] = []
        for data in jwks["keys"][:20]:
            if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # a symmetric key in a JWKS is never a client's *public* key
            if PRIVATE_MEMBERS.intersection(data) or data.get("use", "sig") != "sig":
                continue
            try:
                keys.append(import_key(dict(data)))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                continue
        with self._lock:
            if len(self._key_cache) > 1000:
                self._key_cache.clear()
            self._key_cache[fingerprint] = keys
        return keys
