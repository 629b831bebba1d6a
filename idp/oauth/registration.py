"""RFC 7591 dynamic client registration and RFC 7592 management (issue 11).

A department's deployment pipeline registers its client with an *initial access token* a
security (or that department's) admin issued: single or limited use, expiring, kept only as
a digest and spent by an atomic compare-and-set (:func:`idp.storage.repo.spend_use`).  A
registered client belongs to the token's department and is ``pending`` until a security admin
approves it; a pending client cannot log anyone in (every client lookup of the protocol
requires ``approved``).

The answer carries the client secret (256 bits, shown once) and a *registration access
token* with the client's ``registration_client_uri`` for RFC 7592 reads, updates and
deletion.  An update that widens what the client may do (scopes, grant types, redirect URIs,
its authentication method or keys) sends it back to ``pending``.

Metadata is validated by the one validation of :func:`idp.oauth.clients.validate_client_spec`;
refusals are RFC 7591 errors (``invalid_redirect_uri``, ``invalid_client_metadata``), and a
missing or wrong token is RFC 6750 ``invalid_token`` (401).
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.errors import (
    InvalidClientMetadataError,
    InvalidRedirectUriError,
    InvalidTokenError,
    OAuth2Error,
    error_class,
)
from idp.oauth.clients import (
    ClientRegistrationError,
    ClientSpec,
    SectorFetcher,
    client_summary,
    create_client,
    secret_digest_matches,
    validate_client_spec,
)
from idp.storage import repo
from idp.storage.models import Client, RegistrationToken, utcnow
from keys.crypto import Kek

#: The RFC 7591 / OpenID Connect Registration metadata we understand.
METADATA_FIELDS = frozenset(
    {
        "client_name",
        "redirect_uris",
        "scope",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "post_logout_redirect_uris",
        "backchannel_logout_uri",
        "frontchannel_logout_uri",
        "jwks",
        "jwks_uri",
        "id_token_signed_response_alg",
        "subject_type",
        "sector_identifier_uri",
        "dpop_bound_access_tokens",  # RFC 9449 §5.2
    }
)
#: Fields an RFC 7592 update may carry beside the metadata (and must be ours if present).
_ECHOED = frozenset({"client_id", "client_secret"})
#: Fields the server issues: a client never sets them (RFC 7592 §2.2).
_SERVER_ONLY = frozenset(
    {
        "registration_access_token",
        "registration_client_uri",
        "client_id_issued_at",
        "client_secret_expires_at",
    }
)


def as_oauth_error(exc: ClientRegistrationError) -> OAuth2Error:
    """The RFC 7591 error for a refused registration (its description made ASCII-safe)."""
    cls = error_class(exc.error)
    return (cls if cls is InvalidRedirectUriError else InvalidClientMetadataError)(exc.message)


def _text(data: dict[str, Any], name: str, default: str | None) -> str | None:
    value = data.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ClientRegistrationError(f"{name} must be a string")
    return value


def spec_from_metadata(
    data: dict[str, Any], *, department_id: str | None, strict: bool
) -> ClientSpec:
    """A :class:`ClientSpec` from RFC 7591 metadata.

    ``strict`` refuses fields we do not understand (the admin API); RFC 7591 §2 has a
    registration endpoint ignore them instead.
    """
    unknown = set(data) - METADATA_FIELDS
    if strict and unknown:
        raise ClientRegistrationError(f"unknown client metadata: {', '.join(sorted(unknown))}")
    response_types = data.get("response_types")
    if response_types is not None and response_types not in (["code"], []):
        raise ClientRegistrationError('response_types must be ["code"]')
    dpop_bound = data.get("dpop_bound_access_tokens", False)
    if not isinstance(dpop_bound, bool):
        raise ClientRegistrationError("dpop_bound_access_tokens must be true or false")
    method = _text(data, "token_endpoint_auth_method", "client_secret_basic")
    scope = _text(data, "scope", "openid profile") or ""
    return ClientSpec(
        name=_text(data, "client_name", "") or "",
        redirect_uris=data.get("redirect_uris", []),
        scopes=scope.split(),
        public=method == "none",
        grant_types=data.get("grant_types"),
        auth_method=method,
        post_logout_redirect_uris=data.get("post_logout_redirect_uris", []),
        backchannel_logout_uri=_text(data, "backchannel_logout_uri", None),
        frontchannel_logout_uri=_text(data, "frontchannel_logout_uri", None),
        jwks=data.get("jwks"),
        jwks_uri=_text(data, "jwks_uri", None),
        id_token_alg=_text(data, "id_token_signed_response_alg", "RS256") or "",
        subject_type=_text(data, "subject_type", "public") or "",
        sector_identifier_uri=_text(data, "sector_identifier_uri", None),
        dpop_bound_access_tokens=dpop_bound,
        department_id=department_id,
    )


@dataclass(frozen=True)
class RegistrationContext:
    """What a registration needs from the server: keys, algorithms, the guarded fetch."""

    kek: Kek | None
    signing_algorithms: Collection[str]
    fetch: SectorFetcher | None  # the SSRF-guarded outbound JSON fetch
    client_uri: str  # the base of registration_client_uri: <endpoint>/<client_id>


def _live_token(session: Session, raw: str | None) -> RegistrationToken:
    row = (
        session.scalar(
            select(RegistrationToken).where(RegistrationToken.digest == repo.digest(raw))
        )
        if raw and len(raw) <= 512
        else None
    )
    if (
        row is None
        or row.revoked_at is not None
        or row.uses_left <= 0
        or row.expires_at <= utcnow()
    ):
        raise InvalidTokenError("a valid initial access token is required")
    return row


def register_client(
    session: Session,
    raw_initial_token: str | None,
    data: dict[str, Any],
    ctx: RegistrationContext,
    *,
    ip: str | None = None,
) -> dict[str, Any]:
    """Register a pending client of the token's department; the caller commits.

    The token is spent only when the metadata is valid, atomically: a request that loses
    the race for the last use is refused like an unknown token and stores nothing.
    """
    token = _live_token(session, raw_initial_token)
    try:
        spec = spec_from_metadata(data, department_id=token.department_id, strict=False)
        client, secret = create_client(
            session,
            spec,
            actor=f"registration-token:{token.id}",
            ip=ip,
            kek=ctx.kek,
            signing_algorithms=ctx.signing_algorithms,
            sector_fetcher=ctx.fetch,
            jwks_fetcher=ctx.fetch,
        )
    except ClientRegistrationError as exc:
        raise as_oauth_error(exc) from None
    except (TypeError, ValueError):
        raise InvalidClientMetadataError("malformed client metadata") from None
    if not repo.spend_use(session, token, utcnow()):
        session.rollback()
        raise InvalidTokenError("a valid initial access token is required")
    access_token = repo.new_secret(32)
    client.status = "pending"
    client.registration_access_digest = repo.digest(access_token)
    audit.record(
        session,
        "client.register",
        actor=f"registration-token:{token.id}",
        target=client.client_id,
        ip=ip,
        details={"department": token.department_id},
    )
    out = registered_metadata(client, ctx)
    out["client_id_issued_at"] = int(client.created_at.timestamp())
    if secret:
        out["client_secret"] = secret
        out["client_secret_expires_at"] = 0
    out["registration_access_token"] = access_token
    return out


def registered_metadata(client: Client, ctx: RegistrationContext) -> dict[str, Any]:
    """The client's metadata as RFC 7592 §3 returns it (never a secret)."""
    out = client_summary(client)
    out["registration_client_uri"] = f"{ctx.client_uri}/{client.client_id}"
    return out


def authorized_client(session: Session, client_id: str, raw_access_token: str | None) -> Client:
    """The client whose registration access token this is, else ``invalid_token`` (401).

    An unknown client and a wrong token answer alike (RFC 7592 §2.1).
    """
    client = session.get(Client, client_id) if len(client_id) <= 64 else None
    expected = client.registration_access_digest if client is not None else None
    given = repo.digest(raw_access_token) if raw_access_token else ""
    if client is None or expected is None or not hmac.compare_digest(expected, given):
        raise InvalidTokenError("a valid registration access token is required")
    return client


#: Changes that give a client more than a security admin approved: back to ``pending``.
_WIDENING = ("scopes", "grant_types", "redirect_uris", "post_logout_redirect_uris")
_REAPPROVE = ("token_endpoint_auth_method", "jwks", "jwks_uri", "backchannel_logout_uri")


def widens(old: Client, new: dict[str, Any]) -> list[str]:
    """The fields of ``new`` that let the client do more than ``old`` did."""
    changed = [f for f in _WIDENING if not set(new[f]) <= set(getattr(old, f) or [])]
    changed += [f for f in _REAPPROVE if new[f] != getattr(old, f)]
    if old.dpop_bound_access_tokens and not new["dpop_bound_access_tokens"]:
        changed.append("dpop_bound_access_tokens")  # bearer tokens again: a weaker client
    return changed


def update_client(
    session: Session,
    client: Client,
    data: dict[str, Any],
    ctx: RegistrationContext,
    *,
    ip: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """RFC 7592 §2.2: replace the client's metadata; widening it needs approval again.

    Also the admin console's and API's edit (``actor`` the admin), so one check decides."""
    if data.get("client_id") != client.client_id:
        raise InvalidClientMetadataError("client_id must be this client's")
    if set(data) & _SERVER_ONLY:
        raise InvalidClientMetadataError(
            f"{', '.join(sorted(set(data) & _SERVER_ONLY))} cannot be set by a client"
        )
    secret = data.get("client_secret")
    if secret is not None and not (
        isinstance(secret, str) and secret_digest_matches(client, repo.digest(secret))
    ):
        raise InvalidClientMetadataError("client_secret does not match")
    metadata = {k: v for k, v in data.items() if k not in _ECHOED}
    try:
        spec = spec_from_metadata(metadata, department_id=client.department_id, strict=False)
        if spec.public != client.public:
            raise ClientRegistrationError("a client cannot change between public and confidential")
        fields = validate_client_spec(
            spec,
            signing_algorithms=ctx.signing_algorithms,
            sector_fetcher=ctx.fetch,
            jwks_fetcher=ctx.fetch,
        )
    except ClientRegistrationError as exc:
        raise as_oauth_error(exc) from None
    except (TypeError, ValueError):
        raise InvalidClientMetadataError("malformed client metadata") from None
    if fields["sector"] != client.sector:
        # Pairwise subjects derive from the sector: changing it would change every subject.
        raise InvalidClientMetadataError("the pairwise sector of a client cannot change")
    if (
        fields["token_endpoint_auth_method"] == "client_secret_jwt"
        and client.secret_ciphertext is None
    ):
        raise InvalidClientMetadataError("register a new client to use client_secret_jwt")
    widened = widens(client, fields)
    old_status = client.status
    if widened and client.status == "approved":
        client.status = "pending"
    for name, value in fields.items():
        setattr(client, name, value)
    audit.record(
        session,
        "client.update",
        actor=actor or f"registration:{client.client_id}",
        target=client.client_id,
        ip=ip,
        details={"widened": widened, "old": old_status, "new": client.status},
    )
    return registered_metadata(client, ctx)


def delete_client(session: Session, client: Client, *, actor: str, ip: str | None = None) -> None:
    """RFC 7592 §2.3 (and the admin's delete): the client and every grant and token go."""
    grants = repo.revoke_client_grants(session, client.client_id, "client_deleted")
    audit.record(
        session,
        "client.delete",
        actor=actor,
        target=client.client_id,
        ip=ip,
        details={"grants_revoked": len(grants)},
    )
    session.delete(client)
