"""The only writers behind the admin API; each change records who did what in the audit trail."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.auth import ROLES, AdminPrincipal
from admin.client_fields import presentation
from admin.errors import AdminInputError as AdminInputError  # re-exported: callers use it here
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
from idp.accounts.entities import (
    end_of_day as mandate_end,
)
from idp.accounts.entities import grant_mandate as _grant_mandate
from idp.accounts.entity_assurance import assurance_summary
from idp.accounts.lifecycle import disable_account, end_all_sessions
from idp.accounts.people import find_account
from idp.bridge.registry import list_systems, system_summary
from idp.cas.registry import (
    CasServiceError,
    CasServiceSpec,
    create_service,
    list_services,
    service_summary,
)
from idp.errors import (
    InsufficientScopeError,
    InvalidClientMetadataError,
    TemporarilyUnavailableError,
    error_class,
)
from idp.interaction.policies import PolicyStore
from idp.oauth.clients import ClientRegistrationError, client_summary
from idp.oauth.clients import create_client as _create_client
from idp.oauth.outbound import OutboundPolicy, fetch_json
from idp.oauth.registration import delete_client as _delete_client
from idp.oauth.registration import spec_from_metadata
from idp.services import Services
from idp.storage.models import (
    AdminRole,
    Client,
    Department,
    DirectoryConfig,
    LegalEntity,
    Mandate,
    RegistrationToken,
    User,
    utcnow,
)
from idp.storage.repo import digest, new_id, new_secret, revoke_client_grants
from idp.storage.rows import UserRow

# ------------------------------------------------------------------ who is asking (issue 11)
#: Roles that see every department's clients; ``department-admin`` sees only its own.
UNSCOPED_READERS = frozenset({"security-admin", "client-admin", "auditor"})
UNSCOPED_WRITERS = frozenset({"security-admin", "client-admin"})


@dataclass(frozen=True)
class Caller:
    """Who asks, with what roles, for which departments (a department admin's only).

    Built per call from the account (:func:`caller_of`), never from the token; the command
    line is :data:`OPERATOR`, who may do everything.
    """

    actor: str
    roles: frozenset[str]
    departments: frozenset[str] = frozenset()

    def may_read(self, department_id: str | None) -> bool:
        if self.roles & UNSCOPED_READERS:
            return True
        return "department-admin" in self.roles and department_id in self.departments

    def may_write(self, department_id: str | None) -> bool:
        if self.roles & UNSCOPED_WRITERS:
            return True
        return "department-admin" in self.roles and department_id in self.departments

    def require(self, role: str) -> None:
        if role not in self.roles:
            raise AdminInputError(
                f"the {role} role is required", error=InsufficientScopeError, status=403
            )


OPERATOR = Caller(actor="cli", roles=frozenset(ROLES))


def caller_of(session: Session, who: AdminPrincipal) -> Caller:
    """The caller behind an admin token or console session: roles and departments as the
    account holds them now."""
    return caller_for_user(session, who.user, who.actor)


def caller_for_user(session: Session, user: User | UserRow, actor: str) -> Caller:
    """Roles granted directly or through directory groups (the directory's ``role_map``); a
    department admin's departments are those granted to it, and, for a staff account whose
    directory group made it ``department-admin``, the departments its directory is bound to."""
    roles = frozenset(user.roles or ()) & frozenset(ROLES)
    departments = {
        d
        for d in session.scalars(
            select(AdminRole.department_id).where(
                AdminRole.user_id == user.id, AdminRole.role == "department-admin"
            )
        )
        if d is not None
    }
    if "department-admin" in roles and user.directory_id:
        departments |= {
            d.id
            for d in session.scalars(select(Department))
            if user.directory_id in (d.directories or ())
        }
    return Caller(actor=actor, roles=roles, departments=frozenset(departments))


def _forbidden() -> AdminInputError:
    return AdminInputError(
        "this client belongs to another department", error=InsufficientScopeError, status=403
    )


# ------------------------------------------------------------------ clients
def list_clients(session: Session, who: Caller) -> list[dict[str, Any]]:
    """The clients ``who`` may see: all of them, or their departments' only."""
    rows = session.scalars(select(Client).order_by(Client.created_at))
    return [client_view(c) for c in rows if who.may_read(c.department_id)]


def client_view(client: Client) -> dict[str, Any]:
    return {
        **client_summary(client),
        "department": client.department_id,
        "client_name#en": client.name_en,
        "logo_uri": client.logo_uri,
        "purpose": client.purpose,
        "requested": client.requested_release,
    }


def client_row(session: Session, client_id: str, who: Caller, *, write: bool) -> Client:
    client = session.get(Client, client_id) if len(client_id) <= 64 else None
    if client is None:
        raise AdminInputError("no such client", status=404)
    if not (who.may_write if write else who.may_read)(client.department_id):
        raise _forbidden()
    return client


def show_client(session: Session, client_id: str, who: Caller) -> dict[str, Any]:
    return client_view(client_row(session, client_id, who, write=False))


def _department_for(session: Session, requested: Any, who: Caller) -> str | None:
    """The department a new client belongs to: asked for, or a department admin's only one."""
    if requested is None and not who.roles & UNSCOPED_WRITERS and len(who.departments) == 1:
        requested = next(iter(who.departments))
    if requested is None:
        if not who.roles & UNSCOPED_WRITERS:
            raise AdminInputError("name the department the client belongs to")
        return None
    if not isinstance(requested, str) or session.get(Department, requested) is None:
        raise AdminInputError("no such department", status=404)
    if not who.may_write(requested):
        raise _forbidden()
    return requested


def create_client(session: Session, data: dict[str, Any], who: Caller) -> dict[str, Any]:
    """Register a client from RFC 7591 metadata (plus ``department``); it waits for approval."""
    data = dict(data)
    department = _department_for(session, data.pop("department", None), who)
    shown = presentation(data)
    services = context.services()
    policy = OutboundPolicy.from_settings(services.settings)
    try:
        spec = spec_from_metadata(data, department_id=department, strict=True)
        client, secret = _create_client(
            session,
            spec,
            actor=who.actor,
            kek=services.kek,
            signing_algorithms=services.settings.signing_algorithms,
            sector_fetcher=lambda uri: fetch_json(uri, policy),
            jwks_fetcher=lambda uri: fetch_json(uri, policy),
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
    for name, value in shown.items():
        setattr(client, name, value)
    session.commit()
    out = client_view(client)
    if secret:
        out["client_secret"] = secret
    return out


def set_client_status(session: Session, client_id: str, status: str, who: Caller) -> dict[str, Any]:
    """Approve (security admins only) or disable a client; disabling kills its tokens."""
    if status not in ("approved", "disabled"):
        raise AdminInputError("status must be approved or disabled")
    if status == "approved":
        who.require("security-admin")
    client = client_row(session, client_id, who, write=True)
    old = client.status
    client.status = status
    revoked: list[str] = []
    if status == "disabled":
        revoked = revoke_client_grants(session, client_id, "client_disabled")
    audit.record(
        session,
        "client.status",
        actor=who.actor,
        target=client_id,
        details={"old": old, "new": status, "grants_revoked": len(revoked)},
    )
    session.commit()
    return client_view(client)


def delete_client(session: Session, client_id: str, who: Caller) -> dict[str, Any]:
    client = client_row(session, client_id, who, write=True)
    _delete_client(session, client, actor=who.actor)
    session.commit()
    return {"deleted": client_id}


# ------------------------------------------------------------------ departments and admins
_DEPARTMENT_ID = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def department_summary(row: Department) -> dict[str, Any]:
    return {"id": row.id, "name": row.name}


def list_departments(session: Session, who: Caller) -> list[dict[str, Any]]:
    rows = session.scalars(select(Department).order_by(Department.id))
    return [department_summary(d) for d in rows if who.may_read(d.id)]


def add_department(session: Session, dept_id: Any, name: Any, who: Caller) -> dict[str, Any]:
    """A new department (security admins): id of lower-case letters, digits, ``-``, ``_``."""
    who.require("security-admin")
    if not isinstance(dept_id, str) or not _DEPARTMENT_ID.fullmatch(dept_id):
        raise AdminInputError("department id must be 1-64 lower-case letters, digits, - or _")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise AdminInputError("department name is required (at most 200 characters)")
    if session.get(Department, dept_id) is not None:
        raise AdminInputError("this department exists already", status=409)
    row = Department(id=dept_id, name=" ".join(name.split()))
    session.add(row)
    audit.record(session, "department.create", actor=who.actor, target=dept_id)
    session.commit()
    return department_summary(row)


def _role_and_department(session: Session, role: Any, department: Any) -> str | None:
    if role not in ROLES:
        raise AdminInputError(f"role must be one of {', '.join(ROLES)}")
    if role == "department-admin":
        if not isinstance(department, str) or session.get(Department, department) is None:
            raise AdminInputError("a department-admin needs an existing --department")
        return department
    if department is not None:
        raise AdminInputError(f"the {role} role is not scoped to a department")
    return None


def grant_role(
    session: Session, services: Services, user_ref: str, role: Any, department: Any, who: Caller
) -> dict[str, Any]:
    """Give an account an admin role (security admins); department admins get a department."""
    who.require("security-admin")
    user = _account(session, services, user_ref)
    dept = _role_and_department(session, role, department)
    held = session.scalar(
        select(AdminRole).where(
            AdminRole.user_id == user.id,
            AdminRole.role == role,
            AdminRole.department_id.is_(None) if dept is None else AdminRole.department_id == dept,
        )
    )
    if held is None:
        session.add(AdminRole(user_id=user.id, role=role, department_id=dept, granted_by=who.actor))
    user.roles = sorted(set(user.roles or ()) | {role})
    audit.record(
        session,
        "admin.grant",
        actor=who.actor,
        target=user.id,
        details={"role": role, "department": dept},
    )
    session.commit()
    return admin_summary(session, user)


def revoke_role(
    session: Session, services: Services, user_ref: str, role: Any, department: Any, who: Caller
) -> dict[str, Any]:
    """Take an admin role away (for one department, or all of it); at once, at every call."""
    who.require("security-admin")
    user = _account(session, services, user_ref)
    if role not in ROLES:
        raise AdminInputError(f"role must be one of {', '.join(ROLES)}")
    stmt = select(AdminRole).where(AdminRole.user_id == user.id, AdminRole.role == role)
    if department is not None:
        stmt = stmt.where(AdminRole.department_id == department)
    for row in session.scalars(stmt):
        session.delete(row)
    session.flush()
    left = session.scalar(
        select(AdminRole.id).where(AdminRole.user_id == user.id, AdminRole.role == role)
    )
    if left is None:
        user.roles = sorted(set(user.roles or ()) - {role})
    audit.record(
        session,
        "admin.revoke",
        actor=who.actor,
        target=user.id,
        details={"role": role, "department": department},
    )
    session.commit()
    return admin_summary(session, user)


def admin_summary(session: Session, user: User) -> dict[str, Any]:
    rows = session.scalars(select(AdminRole).where(AdminRole.user_id == user.id))
    return {
        "user": user.id,
        "roles": sorted(set(user.roles or ()) & set(ROLES)),
        "departments": sorted({r.department_id for r in rows if r.department_id}),
    }


# ------------------------------------------------------------------ initial access tokens
MAX_TOKEN_USES = 1000
MAX_TOKEN_LIFETIME = 30 * 86400


def issue_registration_token(
    session: Session, department: Any, uses: Any, expires_in: Any, who: Caller
) -> dict[str, Any]:
    """An RFC 7591 initial access token for a department; the value is returned once."""
    if not isinstance(department, str) or session.get(Department, department) is None:
        raise AdminInputError("no such department", status=404)
    if not who.roles & {"security-admin", "department-admin"} or not who.may_write(department):
        raise AdminInputError(
            "only a security admin or this department's admin may issue tokens",
            error=InsufficientScopeError,
            status=403,
        )
    if not isinstance(uses, int) or isinstance(uses, bool) or not 1 <= uses <= MAX_TOKEN_USES:
        raise AdminInputError(f"uses must be a whole number from 1 to {MAX_TOKEN_USES}")
    if (
        not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or not 60 <= expires_in <= MAX_TOKEN_LIFETIME
    ):
        raise AdminInputError(f"expires_in must be 60 to {MAX_TOKEN_LIFETIME} seconds")
    raw = new_secret(32)
    row = RegistrationToken(
        id=new_id(),
        digest=digest(raw),
        department_id=department,
        uses_left=uses,
        expires_at=utcnow() + dt.timedelta(seconds=expires_in),
        created_by=who.actor,
    )
    session.add(row)
    audit.record(
        session,
        "registration_token.issue",
        actor=who.actor,
        target=row.id,
        details={"department": department, "uses": uses, "expires_in": expires_in},
    )
    session.commit()
    return {
        "token": raw,
        "id": row.id,
        "department": department,
        "uses": uses,
        "expires_at": row.expires_at.isoformat(),
    }


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
    session: Session, directory_id: str, table: dict[str, Any], who: Caller | AdminPrincipal
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


def delete_directory(session: Session, directory_id: str, who: Caller | AdminPrincipal) -> None:
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
    session: Session, changes: dict[str, Any], who: Caller | AdminPrincipal, ip: str | None
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
def end_of_day(value: str) -> dt.datetime:
    """``YYYY-MM-DD`` (inclusive, China time) -> the moment the mandate ends, in UTC."""
    try:
        day = dt.date.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise AdminInputError("until must be a date, YYYY-MM-DD") from None
    return mandate_end(day)


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
            valid_days=services.settings.entity_verification_valid_days,
        )
    except EntityError as exc:
        session.commit()  # a refused representative is audited
        raise _entity_input(exc) from None
    session.commit()
    return {**entity_summary(entity), "assurance": assurance_summary(session, entity, utcnow())}


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


# ------------------------------------------------------------------ ticket-bridge systems (issue 13)
def list_bridge_systems(session: Session) -> list[dict[str, Any]]:
    """Registered legacy systems (registered by ``yitong bridge systems add``; no secret)."""
    return [system_summary(r) for r in list_systems(session)]
