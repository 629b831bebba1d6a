"""The only writers behind the admin API; each change records who did what in the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.auth import AdminPrincipal
from idp import audit, context
from idp.accounts.lifecycle import disable_account, end_all_sessions
from idp.interaction.policies import PolicyStore
from idp.oauth.clients import ClientRegistrationError, ClientSpec, client_summary
from idp.oauth.clients import create_client as _create_client
from idp.storage.models import Client, DirectoryConfig


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
        from idp import context

        client, secret = _create_client(
            session,
            spec,
            actor=who.actor,
            kek=context.services().kek,
            signing_algorithms=context.settings().signing_algorithms,
        )
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


# ------------------------------------------------------------------ department directories
def list_directories(session: Session, registry: Any) -> list[dict[str, Any]]:
    """Every directory a login can use; passwords never leave the server."""
    from idp.accounts.directories import public_config

    stored = {r.id: r for r in session.scalars(select(DirectoryConfig))}
    out = []
    for directory_id in sorted(set(registry) | set(stored)):
        row = stored.get(directory_id)
        adapter = registry.get(directory_id)
        out.append(
            {
                "id": directory_id,
                "display_name": getattr(adapter, "display_name", directory_id),
                "source": "settings" if registry.is_fixed(directory_id) else "admin_api",
                "config": public_config(row.config) if row is not None else None,
            }
        )
    return out


def put_directory(
    session: Session, directory_id: str, table: dict[str, Any], who: AdminPrincipal
) -> dict[str, Any]:
    """Add or replace a directory after validating it exactly as a settings table would be."""
    import re

    from adapters.base import AdapterConfigError
    from idp import context
    from idp.accounts.directories import public_config, seal_config, validate_table

    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", directory_id):
        raise AdminInputError("directory id must be 1-32 lower-case letters, digits, '-' or '_'")
    registry = context.services().directories
    if registry.is_fixed(directory_id):
        raise AdminInputError(
            "this directory is defined in the settings file; change it there", status=409
        )
    try:
        validate_table(directory_id, table)
    except AdapterConfigError as exc:
        raise AdminInputError(str(exc), error="invalid_directory_config") from None
    stored = seal_config(context.services().kek, directory_id, table)
    row = session.get(DirectoryConfig, directory_id)
    action = "directory.update" if row is not None else "directory.create"
    if row is None:
        session.add(DirectoryConfig(id=directory_id, config=stored))
    else:
        row.config = stored
    audit.record(
        session,
        action,
        actor=who.actor,
        target=directory_id,
        details={"config": public_config(stored)},
    )
    session.commit()
    return {"id": directory_id, "config": public_config(stored)}


def delete_directory(session: Session, directory_id: str, who: AdminPrincipal) -> None:
    row = session.get(DirectoryConfig, directory_id)
    if row is None:
        raise AdminInputError(
            "no such directory (settings-file directories cannot be deleted here)",
            error="not_found",
            status=404,
        )
    session.delete(row)
    audit.record(session, "directory.delete", actor=who.actor, target=directory_id)
    session.commit()


# ------------------------------------------------------------------ security policies (issue 5)
def _policy_store() -> PolicyStore:
    return context.services().policies


def list_policies() -> dict[str, Any]:
    """Every policy: value, default, whether an admin set it, and what it means."""
    return dict(_policy_store().all())


def set_policies(
    session: Session, changes: dict[str, Any], who: AdminPrincipal, ip: str | None
) -> dict[str, Any]:
    """Validate every change, then store all of them (or none); each is audited old -> new."""
    from idp.interaction.policies import PolicyError

    if not changes:
        raise AdminInputError("name at least one policy to change")
    try:
        _policy_store().set_many(session, changes, actor=who.actor, ip=ip)
    except PolicyError as exc:
        session.rollback()
        raise AdminInputError(str(exc), error="invalid_policy") from None
    session.commit()
    return list_policies()


# ------------------------------------------------------------------ accounts
def _user(session: Session, user_id: str) -> Any:
    from idp.storage.models import User

    user = session.get(User, user_id)
    if user is None:
        raise AdminInputError("no such account", error="not_found", status=404)
    return user


def terminate_sessions(session: Session, user_id: str, who: AdminPrincipal) -> dict[str, Any]:
    ended = end_all_sessions(
        session,
        context.services(),
        _user(session, user_id),
        actor=who.actor,
        reason="sessions_terminated",
        include_offline=False,
    )
    session.commit()
    ended.kick()
    return {"user_id": user_id, "backchannel_logouts": len(ended.deliveries)}


def disable_user(session: Session, user_id: str, who: AdminPrincipal) -> dict[str, Any]:
    ended = disable_account(session, context.services(), _user(session, user_id), actor=who.actor)
    session.commit()
    ended.kick()
    return {"user_id": user_id, "status": "disabled", "backchannel_logouts": len(ended.deliveries)}
