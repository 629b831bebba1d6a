"""Client lifecycle beyond registration, departments' directories, directory checks, the audit
trail and the dashboard: the rest of the admin service layer (issue 11).

Like :mod:`admin.services`, every function checks the caller's role (and department) and every
change writes its audit event in the same transaction; the console, the API and the command
line call these and never write to the database themselves.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.services import AdminInputError, Caller, client_row, client_view
from idp import audit, context
from idp.accounts.staff import sync_directory
from idp.errors import InsufficientScopeError, InvalidClientMetadataError, OAuth2Error
from idp.oauth.clients import SECRET_METHODS, ClientRegistrationError, validate_exchange_targets
from idp.oauth.outbound import OutboundPolicy, fetch_json
from idp.oauth.registration import RegistrationContext, update_client
from idp.oauth.release import ReleasePolicyError, check_policy
from idp.services import Services
from idp.storage.models import AuditEvent, Client, Department, RegistrationToken, utcnow
from idp.storage.repo import digest, new_secret
from keys.store import KeyNotFoundError, KeyStoreError, ManagedKeyStore

#: How long the previous secret keeps working after a rotation, by default, and at most.
DEFAULT_GRACE = 86400
MAX_GRACE = 30 * 86400
CHINA_TIME = dt.timezone(dt.timedelta(hours=8))


def _forbidden(message: str) -> AdminInputError:
    return AdminInputError(message, error=InsufficientScopeError, status=403)


# ------------------------------------------------------------------ client secrets
def rotate_secret(
    session: Session, services: Services, client_id: str, grace: Any, who: Caller
) -> dict[str, Any]:
    """A new secret (256 bits, shown once); the old one keeps working for ``grace`` seconds so
    the client's deployment can switch without an outage (0 ends it at once)."""
    if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= MAX_GRACE:
        raise AdminInputError(f"grace must be 0 to {MAX_GRACE} seconds")
    client = client_row(session, client_id, who, write=True)
    if client.token_endpoint_auth_method not in SECRET_METHODS or client.secret_digest is None:
        raise AdminInputError("this client authenticates without a secret")
    secret = new_secret(32)
    now = utcnow()
    client.previous_secret_digest = client.secret_digest if grace else None
    client.previous_secret_expires_at = now + dt.timedelta(seconds=grace) if grace else None
    client.secret_digest = digest(secret)
    if client.secret_ciphertext is not None:
        # client_secret_jwt verifies an HMAC with the secret itself: only one can be kept.
        client.secret_ciphertext = services.kek.encrypt(
            secret.encode(), aad=client.client_id.encode()
        )
    audit.record(
        session,
        "client.secret_rotated",
        actor=who.actor,
        target=client.client_id,
        details={"grace_seconds": grace},
    )
    session.commit()
    return {
        **client_view(client),
        "client_secret": secret,
        "previous_secret_expires_at": (
            client.previous_secret_expires_at.isoformat()
            if client.previous_secret_expires_at
            else None
        ),
    }


# ------------------------------------------------------------------ client metadata and release
EDITABLE = frozenset(
    {
        "client_name",
        "redirect_uris",
        "post_logout_redirect_uris",
        "backchannel_logout_uri",
        "frontchannel_logout_uri",
        "scope",
        "grant_types",
        "token_endpoint_auth_method",
    }
)
_RFC7591_KEEP = EDITABLE | {
    "jwks_uri",
    "id_token_signed_response_alg",
    "subject_type",
    "sector_identifier_uri",
    "response_types",
    "dpop_bound_access_tokens",
}
#: Set on the command line, outside RFC 7591: an edit keeps them as they are.
_BEYOND_RFC7591 = (
    "web_origins",
    "resources",
    "exchange_targets",
    "access_token_format",
    "require_pushed_authorization_requests",
    "default_acr_values",
    "first_party",
)


def update_client_metadata(
    session: Session, services: Services, client_id: str, changes: dict[str, Any], who: Caller
) -> dict[str, Any]:
    """Change a client's registered metadata, checked exactly as an RFC 7592 update is: a
    change that widens what the client may do sends it back to ``pending``.

    ``exchange_targets`` (RFC 8693 resources, not RFC 7591 metadata) follows the same rule:
    naming a resource it could not reach before needs a security admin's approval again."""
    unknown = set(changes) - EDITABLE - {"exchange_targets"}
    if unknown:
        raise AdminInputError(f"these fields cannot be changed here: {', '.join(sorted(unknown))}")
    client = client_row(session, client_id, who, write=True)
    changes = dict(changes)
    targets: list[str] | None = None
    if "exchange_targets" in changes:
        try:
            targets = validate_exchange_targets(changes.pop("exchange_targets"))
        except ClientRegistrationError as exc:
            raise AdminInputError(exc.message, error=InvalidClientMetadataError) from None
    if changes:
        _update_rfc7591(session, services, client, changes, who)
    if targets is not None:
        _set_exchange_targets(session, client, targets, who)
    session.commit()
    return client_view(client)


def _update_rfc7591(
    session: Session, services: Services, client: Client, changes: dict[str, Any], who: Caller
) -> None:
    current = {k: v for k, v in client_view(client).items() if k in _RFC7591_KEEP and v is not None}
    if client.jwks is not None:
        current["jwks"] = client.jwks
    policy = OutboundPolicy.from_settings(services.settings)
    ctx = RegistrationContext(
        kek=services.kek,
        signing_algorithms=services.settings.signing_algorithms,
        fetch=lambda uri: fetch_json(uri, policy),
        client_uri="",
    )
    data = {**current, **changes, "client_id": client.client_id}
    kept = {name: getattr(client, name) for name in _BEYOND_RFC7591}
    try:
        update_client(session, client, data, ctx, actor=who.actor)
        for name, value in kept.items():
            setattr(client, name, value)
    except OAuth2Error as exc:  # the RFC 7591 error of the shared validation
        session.rollback()
        raise AdminInputError(str(exc.description), error=type(exc)) from None


def _set_exchange_targets(
    session: Session, client: Client, targets: list[str], who: Caller
) -> None:
    """Store the RFC 8693 targets; a new one sends an approved client back to ``pending``."""
    old_targets = list(client.exchange_targets or ())
    widened = not set(targets) <= set(old_targets)
    old_status = client.status
    if widened and client.status == "approved":
        client.status = "pending"
    client.exchange_targets = targets
    audit.record(
        session,
        "client.exchange_targets",
        actor=who.actor,
        target=client.client_id,
        details={"old": old_targets, "new": targets, "status": [old_status, client.status]},
    )


def set_release_policy(
    session: Session, client_id: str, data: dict[str, Any], who: Caller
) -> dict[str, Any]:
    """What an approved client may receive (a security admin's call): plain and verified
    claims, the minimum assurance level and the account types served; absent keys stay."""
    who.require("security-admin")
    unknown = set(data) - {"claims", "verified_claims", "min_assurance", "account_types"}
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    lists = {}
    for name in ("claims", "verified_claims", "account_types"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise AdminInputError(f"{name} must be a list of names")
        lists[name] = value
    level = data.get("min_assurance")
    if level is not None and not isinstance(level, str):
        raise AdminInputError("min_assurance must be one of L2..L5")
    try:
        check_policy(lists["claims"], lists["verified_claims"], level, lists["account_types"])
    except ReleasePolicyError as exc:
        raise AdminInputError(str(exc)) from None
    client = client_row(session, client_id, who, write=True)
    if lists["claims"] is not None:
        client.allowed_claims = lists["claims"]
    if lists["verified_claims"] is not None:
        client.allowed_verified_claims = lists["verified_claims"]
    if level is not None:
        client.min_assurance = level
    if lists["account_types"] is not None:
        client.account_types = lists["account_types"]
    policy = release_policy(client)
    audit.record(
        session, "client.release_policy", actor=who.actor, target=client_id, details=policy
    )
    session.commit()
    return policy


def release_policy(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "claims": client.allowed_claims,
        "verified_claims": client.allowed_verified_claims,
        "min_assurance": client.min_assurance,
        "account_types": client.account_types,
    }


# ------------------------------------------------------------------ departments
def department_detail(session: Session, dept_id: str, who: Caller) -> dict[str, Any]:
    """A department: its directories, clients and live registration tokens (never a value)."""
    row = session.get(Department, dept_id) if len(dept_id) <= 64 else None
    if row is None:
        raise AdminInputError("no such department", status=404)
    if not who.may_read(dept_id):
        raise _forbidden("this is another department")
    clients = session.scalars(
        select(Client).where(Client.department_id == dept_id).order_by(Client.created_at)
    )
    tokens = session.scalars(
        select(RegistrationToken)
        .where(
            RegistrationToken.department_id == dept_id,
            RegistrationToken.revoked_at.is_(None),
            RegistrationToken.expires_at > utcnow(),
            RegistrationToken.uses_left > 0,
        )
        .order_by(RegistrationToken.created_at)
    )
    return {
        "id": row.id,
        "name": row.name,
        "directories": list(row.directories or ()),
        "clients": [client_view(c) for c in clients],
        "registration_tokens": [
            {"id": t.id, "uses_left": t.uses_left, "expires_at": t.expires_at.isoformat()}
            for t in tokens
        ],
    }


def bind_directories(
    session: Session, services: Services, dept_id: str, directories: Any, who: Caller
) -> dict[str, Any]:
    """Bind a department to staff directories (security admins): its admins then administer
    those staff, and a directory group mapped to ``department-admin`` admits to it."""
    who.require("security-admin")
    row = session.get(Department, dept_id) if len(dept_id) <= 64 else None
    if row is None:
        raise AdminInputError("no such department", status=404)
    if not isinstance(directories, list) or not all(isinstance(d, str) for d in directories):
        raise AdminInputError("directories must be a list of directory ids")
    unknown = set(directories) - set(services.directories)
    if unknown:
        raise AdminInputError(f"no such directory: {', '.join(sorted(unknown))}")
    old, row.directories = list(row.directories or ()), sorted(set(directories))
    audit.record(
        session,
        "department.directories",
        actor=who.actor,
        target=dept_id,
        details={"old": old, "new": row.directories},
    )
    session.commit()
    return {"id": row.id, "name": row.name, "directories": row.directories}


# ------------------------------------------------------------------ directories: test and sync
def test_directory(services: Services, directory_id: str, who: Caller) -> list[dict[str, Any]]:
    """Connectivity, TLS, the service bind and a sample search (security admins)."""
    who.require("security-admin")
    directory = services.directories.get(directory_id)
    if directory is None or not hasattr(directory, "check"):
        raise AdminInputError("no such directory", status=404)
    return [{"step": s.step, "ok": s.ok, "detail": s.detail} for s in directory.check()]


def sync_directory_now(services: Services, directory_id: str, who: Caller) -> dict[str, Any]:
    """Disable the staff whose entries are gone (the same sync as ``yitong ldap sync``)."""
    from adapters.base import AdapterError

    who.require("security-admin")
    directory = services.directories.get(directory_id)
    if directory is None or not hasattr(directory, "listing"):
        raise AdminInputError("no such directory", status=404)
    context.db_session().commit()  # the sync writes in transactions of its own
    try:
        report = sync_directory(services, directory, actor=who.actor)
    except AdapterError as exc:
        raise AdminInputError(f"the sync failed and changed nothing: {exc}", status=503) from None
    return report.summary()


# ------------------------------------------------------------------ signing keys
def managed_keys(who: Caller) -> ManagedKeyStore:
    """The key store, which is the writer for keys: it changes them and records the audit
    event (actor, kid, old -> new state) in one transaction of its own (security admins)."""
    who.require("security-admin")
    # End the request's transaction first: on SQLite it holds the write lock (BEGIN
    # IMMEDIATE) and the store would wait for it; on PostgreSQL an uncommitted audit row of
    # the request would hold up the store's audit row the same way.
    context.db_session().commit()
    store = context.services().keys
    if not isinstance(store, ManagedKeyStore):
        raise AdminInputError("this key store cannot be managed", status=501)
    return store


def key_error(exc: KeyStoreError) -> AdminInputError:
    if isinstance(exc, KeyNotFoundError):
        return AdminInputError(str(exc), status=404)
    return AdminInputError(str(exc))


# ------------------------------------------------------------------ the audit trail
@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @classmethod
    def parse(cls, args: Any) -> AuditFilter:
        """From query parameters; dates are ``YYYY-MM-DD`` in China time (``until`` inclusive)."""

        def day(name: str, shift: int) -> dt.datetime | None:
            raw = str(args.get(name) or "").strip()
            if not raw:
                return None
            try:
                value = dt.date.fromisoformat(raw)
            except ValueError:
                raise AdminInputError(f"{name} must be a date, YYYY-MM-DD") from None
            start = dt.datetime.combine(value + dt.timedelta(days=shift), dt.time(), CHINA_TIME)
            return start.astimezone(dt.UTC)

        text = {n: str(args.get(n) or "").strip()[:200] for n in ("actor", "action", "target")}
        return cls(**text, since=day("since", 0), until=day("until", 1))


def _may_audit(who: Caller) -> None:
    if not who.roles & {"auditor", "security-admin"}:
        raise _forbidden("the auditor or security-admin role is required")


def audit_events(
    session: Session, who: Caller, flt: AuditFilter, *, limit: int = 200
) -> list[AuditEvent]:
    """The newest events matching ``flt`` (auditors and security admins)."""
    _may_audit(who)
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if flt.actor:
        stmt = stmt.where(AuditEvent.actor == flt.actor)
    if flt.action:
        stmt = stmt.where(AuditEvent.action.startswith(flt.action, autoescape=True))
    if flt.target:
        stmt = stmt.where(AuditEvent.target == flt.target)
    if flt.since:
        stmt = stmt.where(AuditEvent.at >= flt.since)
    if flt.until:
        stmt = stmt.where(AuditEvent.at < flt.until)
    return list(session.scalars(stmt.limit(limit)))


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def audit_csv(session: Session, who: Caller, flt: AuditFilter) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["seq", "at", "actor", "action", "target", "outcome", "ip", "details"])
    for e in audit_events(session, who, flt, limit=10000):
        writer.writerow(
            [_cell(v) for v in (e.seq, e.at.isoformat(), e.actor, e.action, e.target)]
            + [_cell(e.outcome), _cell(e.ip), _cell(audit._json_value(e.details))]
        )
    return out.getvalue()


def audit_chain(session: Session, who: Caller) -> dict[str, Any]:
    _may_audit(who)
    result = audit.verify(session)
    return {"ok": result.ok, "count": result.count, "problem": result.problem}


# ------------------------------------------------------------------ the dashboard
def dashboard(session: Session, services: Services, who: Caller) -> dict[str, Any]:
    """Sign-ins and failures today (China time), pending approvals the caller may see, keys
    due for rotation and directory health; each part only for the roles it concerns."""
    today = dt.datetime.combine(dt.datetime.now(CHINA_TIME).date(), dt.time(), CHINA_TIME)

    def count(action: str) -> int:
        stmt = select(func.count()).select_from(AuditEvent)
        stmt = stmt.where(AuditEvent.action == action, AuditEvent.at >= today.astimezone(dt.UTC))
        return int(session.scalar(stmt) or 0)

    out: dict[str, Any] = {"roles": sorted(who.roles)}
    if who.roles & {"security-admin", "auditor", "helpdesk"}:
        out["signins_today"] = count("login.success")
        out["failures_today"] = count("login.failure")
    pending = session.scalars(select(Client).where(Client.status == "pending"))
    out["pending"] = [client_view(c) for c in pending if who.may_read(c.department_id)]
    if "security-admin" in who.roles:
        out["next_key_change"] = services.keys.next_change().isoformat()
        out["directories"] = [
            {
                "id": d.id,
                "servers": d.status() if hasattr(d, "status") else [],
            }
            for d in services.directories.values()
        ]
    return out
