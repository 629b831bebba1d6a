"""Logging in through an upstream OpenID Connect provider (the national platform).

Issue 13 item 3.  We are the relying party here (OpenID Connect Core 1.0 §3.1, code flow
with PKCE S256, ``state`` and ``nonce``; Back-Channel Logout 1.0 §2.6 for its logout
tokens).  Everything outbound goes through :mod:`idp.oauth.outbound` (the SSRF guard, pinned
addresses, size and time limits) and every JWT through :func:`~idp.oauth.jose_inbound.verify_jws`.

What the ID token must satisfy (:meth:`UpstreamOIDC.verify_id_token`, OIDC Core §3.1.3.7):
an asymmetric signature by a key of the upstream's published JWKS (an unknown ``kid``
re-fetches it once); ``iss`` the configured issuer exactly; ``aud`` our client id (and
``azp`` ours when ``aud`` has several); ``exp``/``iat`` in range; ``nonce`` the one we sent.

What the settings map (:class:`UpstreamConfig`): the claims (``upstream_claim_mapping``,
dotted paths into the ID token) and the level (``upstream_acr_mapping``): a login gets the
level its asserted ``acr`` maps to and never more (unmapped or absent: the lowest).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

from idp.config import ConfigError, Settings
from idp.oauth.jose_inbound import (
    ASYMMETRIC_ALGS,
    InboundJwtError,
    audience_matches,
    check_times,
    verify_jws,
)
from idp.oauth.outbound import JsonCache, OutboundError, OutboundPolicy, post_form

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOWEST_ACR = "urn:yitong:acr:pwd"
OUR_ACRS = ("urn:yitong:acr:pwd", "urn:yitong:acr:mfa", "urn:yitong:acr:phr")
LEVEL_RANK = {"L2": 2, "L3": 3, "L4": 4, "L5": 5}


class UpstreamUnavailable(Exception):
    """The upstream cannot be reached or answered nonsense (an outage: a 503 page)."""


class UpstreamRejected(Exception):
    """What the upstream sent does not verify (signature, issuer, audience, nonce…)."""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ConfigError(f"{what}: {item!r} is not a key=value pair")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class UpstreamConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    claims: dict[str, str]  # ours -> dotted path in the ID token
    acrs: dict[str, str]  # upstream acr -> ours
    min_identity_level: str
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamConfig | None:
        if not settings.upstream_issuer:
            return None
        acrs = _pairs(settings.upstream_acr_mapping, "YITONG_UPSTREAM_ACR_MAPPING")
        wrong = sorted(set(acrs.values()) - set(OUR_ACRS))
        if wrong:
            raise ConfigError(f"YITONG_UPSTREAM_ACR_MAPPING: unknown level(s) {', '.join(wrong)}")
        scopes = tuple(settings.upstream_scopes)
        if "openid" not in scopes:
            scopes = ("openid", *scopes)
        return cls(
            issuer=settings.upstream_issuer.rstrip("/"),
            client_id=settings.upstream_client_id,
            client_secret=settings.upstream_client_secret,
            scopes=scopes,
            claims=_pairs(settings.upstream_claim_mapping, "YITONG_UPSTREAM_CLAIM_MAPPING"),
            acrs=acrs,
            min_identity_level=settings.upstream_min_identity_level,
            policy=OutboundPolicy.from_settings(settings),
        )


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path``; ``verified_claims`` may be one object or an array."""
    node: Any = claims
    for part in path.split("."):
        if isinstance(node, list):
            node = next((n for n in node if isinstance(n, dict) and part in n), None)
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class UpstreamIdentity:
    """A verified upstream login, mapped to our terms."""

    subject: str
    sid: str | None
    id_number: str | None  # only when inside verified_claims at the required level
    name: str | None
    acr: str  # ours, never above what the upstream asserted


class UpstreamOIDC:
    """The upstream provider: discovery, the authorization URL, code exchange, token checks."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._documents = JsonCache(ttl=300.0, error_ttl=5.0, min_refresh=30.0)
        self._keys: dict[str, list[Key]] = {}

    # ---------------------------------------------------------------- discovery and keys
    def metadata(self) -> dict[str, Any]:
        url = self.config.issuer + "/.well-known/openid-configuration"
        try:
            doc = self._documents.get(url, self.config.policy)
        except OutboundError as exc:
            raise UpstreamUnavailable(f"discovery: {exc}") from None
        if not isinstance(doc, dict) or doc.get("issuer") != self.config.issuer:
            raise UpstreamUnavailable("discovery: issuer does not match the configured one")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(name), str):
                raise UpstreamUnavailable(f"discovery: {name} missing")
        return doc

    def _jwks(self, refresh: bool) -> list[Key]:
        uri = self.metadata()["jwks_uri"]
        try:
            jwks = self._documents.get(uri, self.config.policy, refresh=refresh)
        except OutboundError as exc:
            raise UpstreamUnavailable(f"jwks: {exc}") from None
        keys: list[Key] = []
        for data in (jwks.get("keys") if isinstance(jwks, dict) else None) or []:
            if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC", "OKP"):
                continue
            if data.get("use", "sig") != "sig" or "d" in data:
                continue
            try:
                keys.append(import_key(dict(data)))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                continue
        return keys

    def _resolve(self, header: Mapping[str, Any]) -> list[Key]:
        kid = header.get("kid")
        keys = [k for k in self._jwks(False) if kid is None or k.kid == kid]
        if not keys:  # a key the upstream just rotated in: fetch again (rate-limited)
            keys = [k for k in self._jwks(True) if kid is None or k.kid == kid]
        return keys

    # ---------------------------------------------------------------- the code flow
    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        meta = self.metadata()
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        verified = {
            p.split(".", 2)[2]
            for p in self.config.claims.values()
            if p.startswith("verified_claims.claims.")
        }
        if verified:
            # OIDC4IDA: the identity number comes only inside verified_claims.
            params["claims"] = json.dumps(
                {
                    "id_token": {
                        "verified_claims": {
                            "verification": {"trust_framework": None, "assurance_level": None},
                            "claims": dict.fromkeys(sorted(verified)),
                        }
                    }
                }
            )
        endpoint = str(meta["authorization_endpoint"])
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token response for ``code`` (client_secret_basic)."""
        meta = self.metadata()
        try:
            status, body = post_form(
                meta["token_endpoint"],
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                },
                self.config.policy,
                basic=(self.config.client_id, self.config.client_secret),
            )
        except OutboundError as exc:
            raise UpstreamUnavailable(f"token endpoint: {exc}") from None
        if status >= 500:
            raise UpstreamUnavailable(f"token endpoint: HTTP {status}")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            raise UpstreamRejected(f"token endpoint refused the code: {error or status}")
        return body

    # ---------------------------------------------------------------- token checks
    def _verified(self, token: str, typ: tuple[str | None, ...] | None) -> dict[str, Any]:
        try:
            verified = verify_jws(
                token,
                algorithms=ASYMMETRIC_ALGS,
                resolve_key=self._resolve,
                typ=typ,
                max_size=32768,
            )
        except InboundJwtError as exc:
            raise UpstreamRejected(str(exc)) from None
        claims = verified.claims
        if claims.get("iss") != self.config.issuer:
            raise UpstreamRejected("iss is not the configured upstream issuer")
        if not audience_matches(claims.get("aud"), [self.config.client_id]):
            raise UpstreamRejected("aud does not name our client")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.config.client_id:
            raise UpstreamRejected("azp does not name our client")
        return claims

    def verify_id_token(self, token: str, nonce: str, now: dt.datetime) -> dict[str, Any]:
        claims = self._verified(token, None)
        try:
            check_times(claims, now=now, require_iat=True, max_age=600)
        except InboundJwtError as exc:
            raise UpstreamRejected(str(exc)) from None
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not secrets.compare_digest(sent, nonce):
            raise UpstreamRejected("nonce does not match the one sent")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise UpstreamRejected("sub is missing")
        return claims

    def verify_logout_token(self, token: str, now: dt.datetime) -> dict[str, Any]:
        """Back-Channel Logout 1.0 §2.6: typ, events, sid or sub, no nonce, times."""
        claims = self._verified(token, ("logout+jwt",))
        try:
            check_times(claims, now=now, require_iat=True, max_age=600)
        except InboundJwtError as exc:
            raise UpstreamRejected(str(exc)) from None
        events = claims.get("events")
        if not isinstance(events, dict) or BACKCHANNEL_EVENT not in events:
            raise UpstreamRejected("not a back-channel logout event")
        if "nonce" in claims:
            raise UpstreamRejected("a logout token must not carry a nonce")
        if not isinstance(claims.get("sid"), str) and not isinstance(claims.get("sub"), str):
            raise UpstreamRejected("sid or sub is required")
        if not isinstance(claims.get("jti"), str):
            raise UpstreamRejected("jti is required")
        return claims

    # ---------------------------------------------------------------- mapping
    def identity(self, claims: Mapping[str, Any]) -> UpstreamIdentity:
        """Map verified ID-token claims to ours (see the module docstring)."""
        mapping = self.config.claims
        id_path = mapping.get("id_number", "")
        id_number = claim_at(claims, id_path) if id_path else None
        level = claim_at(claims, mapping["identity_level"]) if "identity_level" in mapping else None
        floor = LEVEL_RANK[self.config.min_identity_level]
        if (
            not isinstance(id_number, str)
            or not id_path.startswith("verified_claims.")
            or LEVEL_RANK.get(level if isinstance(level, str) else "", 0) < floor
        ):
            id_number = None  # not verified well enough to link anything by
        name = claim_at(claims, mapping["name"]) if "name" in mapping else None
        asserted = claims.get("acr")
        acr = (
            self.config.acrs.get(asserted, LOWEST_ACR) if isinstance(asserted, str) else LOWEST_ACR
        )
        sid = claims.get("sid")
        return UpstreamIdentity(
            subject=str(claims["sub"]),
            sid=sid if isinstance(sid, str) else None,
            id_number=id_number,
            name=name if isinstance(name, str) else None,
            acr=acr,
        )
