"""The only writers behind the admin API; each change records who did what in the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.auth import AdminPrincipal
from idp import audit, context
from idp.accounts.entities import (
    EntityError,
    MandateOffer,
    RegistryUnavailableError,
    end_mandate,
    entity_summary,
    find_entity,
    register_entity,
    set_entity_status,
    standing_mandate,
)
from idp.accounts.entities import grant_mandate as _grant_mandate
from idp.accounts.lifecycle import disable_account, end_all_sessions
from idp.accounts.people import find_account
from idp.cas.registry import (
    CasServiceError,
    CasServiceSpec,
    create_service,
    list_services,
    service_summary,
)
from idp.errors import (
    InvalidClientMetadataError,
    InvalidRequestError,
    OAuth2Error,
    TemporarilyUnavailableError,
    error_class,
)
from idp.interaction.policies import PolicyStore
from idp.oauth.clients import ClientRegistrationError, ClientSpec, client_summary
from idp.oauth.clients import create_client as _create_client
from idp.services import Services
from idp.storage.models import Client, DirectoryConfig, LegalEntity, Mandate, User


class AdminInputError(Exception):
    """Refused admin input: ``invalid_request`` with ``status`` (404 for what does not exist),
    or ``temporarily_unavailable`` when an outside system is down.  RFC error codes only."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error: type[OAuth2Error] = InvalidRequestError,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error

    def as_error(self) -> OAuth2Error:
        return self.error(self.message)


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
            error=InvalidClientMetadataError,
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
        raise AdminInputError(exc.message, error=error_class(exc.error)) from None
    except (TypeError, ValueError) as exc:
        session.rollback()
        raise AdminInputError(
            f"malformed client metadata: {exc}", error=InvalidClientMetadataError
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
        raise AdminInputError("no such client", status=404)
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
        raise AdminInputError(str(exc)) from None
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
        raise AdminInputError(str(exc)) from None
    session.commit()
    return list_policies()


# ------------------------------------------------------------------ accounts
def _user(session: Session, user_id: str) -> Any:
    from idp.storage.models import User

    user = session.get(User, user_id)
    if user is None:
        raise AdminInputError("no such account", status=404)
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


# ------------------------------------------------------------------ companies and mandates (issue 10)
#: A mandate ``until`` date is inclusive, in China Standard Time (UTC+8): it ends at the
#: following midnight there.
CHINA_TIME = dt.timezone(dt.timedelta(hours=8))


def end_of_day(value: str) -> dt.datetime:
    """``YYYY-MM-DD`` (inclusive, China time) -> the moment the mandate ends, in UTC."""
    try:
        day = dt.date.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise AdminInputError("until must be a date, YYYY-MM-DD") from None
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), CHINA_TIME).astimezone(dt.UTC)


def _entity(session: Session, services: Services, ref: str) -> LegalEntity:
    entity = find_entity(session, services.vault, str(ref or ""))
    if entity is None:
        raise AdminInputError(f"no company {ref!r}", status=404)
    return entity


def _account(session: Session, services: Services, ref: str) -> User:
    user = find_account(session, str(ref or ""), vault=services.vault)
    if user is None:
        raise AdminInputError(f"no account {ref!r}", status=404)
    return user


def _entity_input(exc: EntityError) -> AdminInputError:
    if isinstance(exc, RegistryUnavailableError):
        return AdminInputError(exc.message, status=503, error=TemporarilyUnavailableError)
    return AdminInputError(f"{exc.field}: {exc.message}")


def add_entity(
    session: Session, services: Services, data: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Register a company for its representative, checked against the enterprise registry."""
    unknown = set(data) - {"credit_code", "name", "kind", "representative"}
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    representative = _account(session, services, data.get("representative", ""))
    try:
        entity = register_entity(
            session,
            vault=services.vault,
            registry=services.enterprises,
            credit_code=str(data.get("credit_code", "")),
            representative=representative,
            name=data.get("name"),
            kind=str(data.get("kind") or "enterprise"),
            actor=actor,
        )
    except EntityError as exc:
        session.commit()  # a refused representative is audited
        raise _entity_input(exc) from None
    session.commit()
    return entity_summary(entity)


def change_entity_status(
    session: Session, services: Services, ref: str, status: str, actor: str
) -> dict[str, Any]:
    """Suspend, deregister or reactivate a company; leaving active ends mandates and sessions."""
    entity = _entity(session, services, ref)
    try:
        ended = set_entity_status(session, services, entity, status, actor=actor)
    except EntityError as exc:
        raise _entity_input(exc) from None
    session.commit()
    ended.kick()
    return {**entity_summary(entity), "sessions_ended": len(ended.sids)}


def mandate_summary(mandate: Mandate) -> dict[str, Any]:
    return {
        "id": mandate.id,
        "entity": mandate.entity_id,
        "user": mandate.user_id,
        "role": mandate.role,
        "clients": mandate.client_ids,
        "valid_from": mandate.valid_from.isoformat(),
        "valid_until": mandate.valid_until.isoformat(),
        "accepted": mandate.accepted_at is not None,
        "ended": mandate.ended_at is not None,
    }


def grant_mandate(
    session: Session, services: Services, data: dict[str, Any], actor: str
) -> dict[str, Any]:
    """An operator records a mandate (``accepted``: the agent signed for it in person)."""
    unknown = set(data) - {"entity", "user", "role", "clients", "until", "accepted"}
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    entity = _entity(session, services, data.get("entity", ""))
    agent = _account(session, services, data.get("user", ""))
    clients = data.get("clients")
    if clients is not None and (
        not isinstance(clients, list) or not all(isinstance(c, str) for c in clients)
    ):
        raise AdminInputError("clients must be a list of client ids")
    offer = MandateOffer(
        role=str(data.get("role", "")),
        valid_until=end_of_day(str(data.get("until", ""))),
        client_ids=tuple(clients) if clients is not None else None,
    )
    try:
        mandate = _grant_mandate(
            session,
            entity,
            agent,
            offer,
            roles=services.settings.mandate_roles,
            granter=None,
            actor=actor,
            known_client=lambda cid: session.get(Client, cid) is not None,
            accepted=bool(data.get("accepted", False)),
        )
    except EntityError as exc:
        raise _entity_input(exc) from None
    session.commit()
    return mandate_summary(mandate)


def revoke_mandate(
    session: Session, services: Services, entity_ref: str, user_ref: str, actor: str
) -> dict[str, Any]:
    """End the standing mandate of an agent for a company; its tokens stop working."""
    entity = _entity(session, services, entity_ref)
    agent = _account(session, services, user_ref)
    mandate = standing_mandate(session, entity, agent)
    if mandate is None:
        raise AdminInputError("this account holds no mandate for this company", status=404)
    revoked = end_mandate(session, mandate, by=None, actor=actor)
    session.commit()
    return {**mandate_summary(mandate), "grants_revoked": len(revoked)}


# ------------------------------------------------------------------ CAS services (issue 13)
def list_cas_services(session: Session) -> list[dict[str, Any]]:
    return [service_summary(r) for r in list_services(session)]


def create_cas_service(
    session: Session, data: dict[str, Any], who: AdminPrincipal
) -> dict[str, Any]:
    """Register a CAS service: ``name``, one of ``service``/``pattern``, ``attributes``."""
    unknown = set(data) - {"name", "service", "pattern", "attributes"}
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    attributes = data.get("attributes", [])
    fields = (data.get("name"), data.get("service"), data.get("pattern"))
    if (
        not isinstance(attributes, list)
        or not all(isinstance(a, str) for a in attributes)
        or not all(v is None or isinstance(v, str) for v in fields)
    ):
        raise AdminInputError("name, service and pattern must be text; attributes a list of text")
    spec = CasServiceSpec(
        name=data.get("name") or "",
        service_url=data.get("service"),
        service_pattern=data.get("pattern"),
        attributes=list(attributes),
    )
    try:
        row = create_service(session, spec, actor=who.actor)
    except CasServiceError as exc:
        session.rollback()
        raise AdminInputError(exc.message) from None
    session.commit()
    return service_summary(row)
