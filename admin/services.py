"""The only writers behind the admin API; each change records who did what in the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.auth import AdminPrincipal
from idp import audit
from idp.oauth.clients import ClientRegistrationError, ClientSpec, client_summary
from idp.oauth.clients import create_client as _create_client
from idp.storage.models import Client


class AdminInputError(Exception):
    def __init__(self, message: str, *, error: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.status = status


def list_clients(session: Session) -> list[dict[str, Any]]:
    return [client_summary(c) for c in session.scalars(select(Client).order_by(Client.created_at))]


def create_client(session: Session, data: dict[str, Any], who: AdminPrincipal) -> dict[str, Any]:
    """Register a client from RFC 7591 metadata; new clients wait for a security admin's approval."""
    known = {
        "client_name",
        "redirect_uris",
        "scope",
        "token_endpoint_auth_method",
        "grant_types",
        "post_logout_redirect_uris",
        "backchannel_logout_uri",
        "frontchannel_logout_uri",
        "jwks",
        "jwks_uri",
        "id_token_signed_response_alg",
        "subject_type",
        "sector_identifier_uri",
    }
    unknown = set(data) - known
    if unknown:
        raise AdminInputError(
            f"unknown client metadata: {', '.join(sorted(unknown))}",
            error="invalid_client_metadata",
        )
    try:
        method = data.get("token_endpoint_auth_method", "client_secret_basic")
        spec = ClientSpec(
            name=str(data.get("client_name", "")),
            redirect_uris=list(data.get("redirect_uris", [])),
            scopes=str(data.get("scope", "openid profile")).split(),
            public=method == "none",
            grant_types=data.get("grant_types"),
            auth_method=method,
            post_logout_redirect_uris=list(data.get("post_logout_redirect_uris", [])),
            backchannel_logout_uri=data.get("backchannel_logout_uri"),
            frontchannel_logout_uri=data.get("frontchannel_logout_uri"),
            jwks=data.get("jwks"),
            jwks_uri=data.get("jwks_uri"),
            id_token_alg=data.get("id_token_signed_response_alg", "RS256"),
            subject_type=data.get("subject_type", "public"),
            sector_identifier_uri=data.get("sector_identifier_uri"),
            department=(who.user.attributes or {}).get("department"),
        )
        client, secret = _create_client(session, spec, actor=who.actor)
    except ClientRegistrationError as exc:
        session.rollback()
        raise AdminInputError(exc.message, error=exc.error) from None
    except (TypeError, ValueError) as exc:
        session.rollback()
        raise AdminInputError(
            f"malformed client metadata: {exc}", error="invalid_client_metadata"
        ) from None
    client.status = "pending"
    session.commit()
    out = client_summary(client)
    if secret:
        out["client_secret"] = secret
    return out


def set_client_status(
    session: Session, client_id: str, status: str, who: AdminPrincipal
) -> dict[str, Any]:
    client = session.get(Client, client_id)
    if client is None:
        raise AdminInputError("no such client", error="not_found", status=404)
    old = client.status
    client.status = status
    audit.record(
        session,
        "client.status",
        actor=who.actor,
        target=client_id,
        details={"old": old, "new": status},
    )
    session.commit()
    return client_summary(client)
