"""Department staff: accounts bridged live from each department's LDAP directory (issue 6).

A staff account is created at its first successful directory login and is keyed by
``(directory_id, directory_key)``, the directory's stable entry id (``entryUUID`` /
``objectGUID``), never by the login name: ``jdoe`` in two departments are two people, and a
citizen who registers as ``jdoe`` is a third (SECURITY-CHECKLIST item 91).  The user id is
random, so nothing about the person can be read from the subject identifier.

Directories are never imported wholesale: only a login creates an account.  The sync
(:func:`sync_directory`, ``yitong ldap sync``) walks the directory only to *disable* accounts
whose entries are gone or disabled and to end their sessions and tokens (checklist 92).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.base import AdapterUnavailable, Identity, InvalidCredentials, PasswordAuthenticator
from idp import audit
from idp.interaction.sessions import Ended, end_user_sessions
from idp.interaction.throttle import Blocked, LoginGate, staff_entry_key, staff_login_key
from idp.services import Services
from idp.storage.models import Token, User, utcnow
from idp.storage.repo import new_id

if TYPE_CHECKING:
    from adapters.ldap import DirectoryListing  # ldap3 stays out of a server with no directory

log = logging.getLogger("yitong.staff")

# Kept inside ``User.attributes`` so that a login can tell which roles the directory granted
# (and may take away) from the roles an administrator granted locally (which it must keep).
DIRECTORY_ROLES_KEY = "_directory_roles"
SYNC_REVOKE_REASON = "directory_sync"


def upsert_staff(session: Session, identity: Identity, *, ip: str | None = None) -> User:
    """The staff account for a directory identity, created or refreshed from this login.

    Attributes, groups and directory-granted roles are replaced by what the directory says
    now; roles granted locally survive.  A disabled account stays disabled (the caller must
    refuse the login): re-enabling is an administrator's decision, because the account may
    have been disabled here for reasons the directory does not know.

    Staff e-mail and phone go to ``attributes`` (claims), not the unique ``email``/``phone``
    columns that citizens log in with: a directory must never be able to claim, or collide
    with, a citizen's login identifier.
    """
    if not identity.source or not identity.key:
        raise ValueError("a staff identity needs its directory id and stable key")
    user = _find(session, identity)
    if user is None:
        user = _create(session, identity, ip=ip)
        if user is None:  # a concurrent first login of the same person won the insert
            user = _find(session, identity)
            assert user is not None

    old_directory_roles = set(user.attributes.get(DIRECTORY_ROLES_KEY) or ())
    local_roles = set(user.roles or ()) - old_directory_roles
    new_roles = sorted(local_roles | set(identity.roles))
    if new_roles != sorted(user.roles or ()):
        added = sorted(set(new_roles) - set(user.roles or ()))
        removed = sorted(set(user.roles or ()) - set(new_roles))
        audit.record(
            session,
            "staff.roles_changed",
            actor=f"directory:{identity.source}",
            target=user.id,
            ip=ip,
            details={"directory": identity.source, "added": added, "removed": removed},
        )
    user.roles = new_roles
    user.name = _clip(identity.name or identity.username, 200)
    user.directory_dn = identity.dn
    user.groups = sorted(identity.groups)
    user.attributes = _attributes(identity)
    session.flush()
    return user


def _find(session: Session, identity: Identity) -> User | None:
    return session.scalar(
        select(User).where(
            User.kind == "staff",
            User.directory_id == identity.source,
            User.directory_key == identity.key,
        )
    )


def _create(session: Session, identity: Identity, *, ip: str | None) -> User | None:
    user = User(
        id=new_id(),
        kind="staff",
        name=_clip(identity.name or identity.username, 200),
        status="active",
        roles=[],
        directory_id=identity.source,
        directory_key=identity.key,
        directory_dn=identity.dn,
        attributes={},
        groups=[],
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        return None
    audit.record(
        session,
        "staff.created",
        actor=f"directory:{identity.source}",
        target=user.id,
        ip=ip,
        details={"directory": identity.source, "username": identity.username},
    )
    return user


def _attributes(identity: Identity) -> dict[str, Any]:
    claims = {k: v for k, v in identity.attributes.items() if isinstance(k, str)}
    claims["preferred_username"] = identity.username
    claims[DIRECTORY_ROLES_KEY] = sorted(identity.roles)
    return claims


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


# ----------------------------------------------------------------------------- login
class StaffThrottled(Exception):
    """The lockout gate refused a staff login before the password reached the directory."""

    def __init__(self, blocked: Blocked) -> None:
        super().__init__(str(blocked))
        self.blocked = blocked


def authenticate_staff(
    directory: PasswordAuthenticator,
    gate: LoginGate | None,
    username: str,
    password: str,
    ip: str,
) -> Identity:
    """Search-then-bind at a department directory, through the lockout gate.

    The attempt is counted on the directory *entry* the name resolves to (issue 14 item 9):
    an AD person typing ``sAMAccountName`` or ``userPrincipalName`` uses one counter, so two
    spellings never double the cap.  The gate reserves the attempt after the search and before
    the bind, so a refused attempt never reaches the directory's own lockout (checklist 94).
    A name that resolves to no single entry is counted on the name instead, under the same
    rule, so an unknown name answers exactly like a known one, locked or not (checklist 83).

    Raises :class:`StaffThrottled` (the gate's refusal, 429), :class:`InvalidCredentials`
    and :class:`AdapterUnavailable` (not counted).
    """
    if gate is None:
        return directory.authenticate(username, password)
    reserved: list[str] = []

    def before_bind(entry_key: str) -> None:
        key = staff_entry_key(directory.id, entry_key)
        blocked = gate.check(None, username, ip, key=key)
        if blocked is not None:
            raise StaffThrottled(blocked)
        reserved.append(key)

    try:
        identity = directory.authenticate(username, password, before_bind=before_bind)
    except InvalidCredentials:
        if not reserved:
            name_key = staff_login_key(directory.id, username)
            blocked = gate.check(None, username, ip, key=name_key)
            if blocked is not None:
                raise StaffThrottled(blocked) from None
        raise  # counted: the reservation stands as the failure
    except AdapterUnavailable:
        if reserved:
            gate.cancel(None, username, ip, key=reserved[0])
        raise
    if not reserved:  # an authenticator that skipped the hook would go unthrottled
        raise AdapterUnavailable(f"directory {directory.id} did not report the entry it bound")
    gate.record(None, username, ip, success=True, key=reserved[0])
    return identity


# ----------------------------------------------------------------------------- sync
class ListableDirectory(Protocol):
    """What the sync needs from a directory (``adapters.ldap.LdapDirectory`` provides it)."""

    id: str

    def listing(self, page_size: int | None = None) -> DirectoryListing: ...


@dataclass
class SyncReport:
    """What one sync run saw and did; printed by ``yitong ldap sync`` and audited."""

    directory: str
    listed: int = 0
    disabled_in_directory: int = 0
    staff_checked: int = 0
    disabled_gone: list[str] = field(default_factory=list)
    disabled_by_directory: list[str] = field(default_factory=list)
    dn_updated: int = 0
    sessions_ended: int = 0
    grants_revoked: int = 0
    tokens_revoked: int = 0
    aborted: str | None = None

    @property
    def disabled(self) -> list[str]:
        return self.disabled_gone + self.disabled_by_directory

    def summary(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "listed": self.listed,
            "disabled_in_directory": self.disabled_in_directory,
            "staff_checked": self.staff_checked,
            "disabled_gone": len(self.disabled_gone),
            "disabled_by_directory": len(self.disabled_by_directory),
            "dn_updated": self.dn_updated,
            "sessions_ended": self.sessions_ended,
            "grants_revoked": self.grants_revoked,
            "tokens_revoked": self.tokens_revoked,
            "aborted": self.aborted,
        }


def sync_directory(
    services: Services,
    directory: ListableDirectory,
    *,
    actor: str = "system:ldap-sync",
    force: bool = False,
    max_disable_fraction: float = 0.5,
    page_size: int | None = None,
) -> SyncReport:
    """Disable staff whose directory entries are gone or disabled; end their sessions/tokens.

    The listing is complete or the sync does nothing: ``listing()`` raises on any error, and a
    listing that would disable more than ``max_disable_fraction`` of the directory's active
    staff (at least 5 people), or that comes back empty, is treated as a directory or
    configuration fault and refused unless ``force`` is given.  Nobody is ever created here.
    Sessions end through :func:`~idp.interaction.sessions.end_sessions`, so the clients of a
    disabled person hear of it by back-channel logout (issue 9, defect 1).
    """
    db = services.db
    report = SyncReport(directory=directory.id)
    ended: list[Ended] = []
    try:
        listing = directory.listing(page_size)
    except Exception as exc:
        report.aborted = f"directory listing failed: {exc}"
        audit.record_now(
            db,
            "directory.sync",
            actor=actor,
            target=directory.id,
            outcome="failure",
            details=report.summary(),
        )
        raise
    report.listed = len(listing.entries)
    report.disabled_in_directory = len(listing.disabled)

    with db.transaction() as session:
        staff = list(
            session.scalars(
                select(User).where(
                    User.kind == "staff",
                    User.directory_id == directory.id,
                    User.status == "active",
                )
            )
        )
        report.staff_checked = len(staff)
        gone = [u for u in staff if u.directory_key not in listing.entries]
        disabled = [u for u in staff if u.directory_key in listing.disabled]
        to_disable = len(gone) + len(disabled)
        limit = max(5.0, max_disable_fraction * len(staff))
        if to_disable and not force and (not listing.active or to_disable > limit):
            report.aborted = (
                f"refusing to disable {to_disable} of {len(staff)} staff accounts "
                f"(the directory listed {len(listing.active)} active entries); "
                "check the directory, then re-run with --force if this is right"
            )
            audit.record(
                session,
                "directory.sync",
                actor=actor,
                target=directory.id,
                outcome="failure",
                details=report.summary(),
            )
            log.warning("ldap sync %s aborted: %s", directory.id, report.aborted)
            return report

        for user in staff:
            dn = listing.entries.get(user.directory_key or "")
            if dn is not None and dn != user.directory_dn and user not in disabled:
                user.directory_dn = dn  # renamed or moved: same person, same key
                report.dn_updated += 1
        for reason, users, bucket in (
            ("gone", gone, report.disabled_gone),
            ("disabled", disabled, report.disabled_by_directory),
        ):
            for user in users:
                ended.append(_disable(session, services, user, reason, actor, report))
                bucket.append(user.id)
        audit.record(
            session, "directory.sync", actor=actor, target=directory.id, details=report.summary()
        )
    for each in ended:  # after the commit
        each.kick()
    if report.disabled:
        log.info("ldap sync %s: disabled %d staff accounts", directory.id, len(report.disabled))
    return report


def _disable(
    session: Session,
    services: Services,
    user: User,
    reason: str,
    actor: str,
    report: SyncReport,
) -> Ended:
    """Disable one account and end everything it holds (checklist 92)."""
    user.status = "disabled"
    live_tokens = session.scalar(
        select(func.count())
        .select_from(Token)
        .where(Token.user_id == user.id, Token.revoked_at.is_(None))
    )
    ended = end_user_sessions(
        session, services, user.id, reason=SYNC_REVOKE_REASON, include_offline=True
    )
    sessions = len(ended.sids)
    grants = ended.revoked_grants
    # Tokens are revoked through their grants; any token carrying the user but not reached
    # that way is revoked directly, so none survives.
    session.execute(
        update(Token)
        .where(Token.user_id == user.id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    report.sessions_ended += sessions
    report.grants_revoked += len(grants)
    report.tokens_revoked += int(live_tokens or 0)
    audit.record(
        session,
        "staff.disabled",
        actor=actor,
        target=user.id,
        details={
            "directory": user.directory_id,
            "reason": f"directory entry {reason}",
            "sessions_ended": sessions,
            "grants_revoked": len(grants),
        },
    )
    return ended
