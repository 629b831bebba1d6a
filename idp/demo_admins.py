"""The demo's administrators (issue 11): a security admin and a department admin of the demo
department, each with a password and an authenticator-app seed, so that both can sign in to
the console at ``/admin`` at the admin level (password and a second factor).

Synthetic people only; the seeds and passwords live in the demo state file (mode 0600) and
are printed by ``make demo``.  Idempotent like the rest of :mod:`idp.demo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from admin.services import OPERATOR, add_department, admin_summary, grant_role
from idp import audit
from idp.accounts.people import NewCitizen, RegistrationError, find_citizen, register_citizen
from idp.interaction import mfa
from idp.services import Services
from idp.storage.models import Client, Department, TotpCredential, User, utcnow

DEMO_DEPARTMENT = ("social", "人力资源和社会保障厅 Human resources and social security")
DEMO_ADMINS: tuple[dict[str, str], ...] = (
    {
        "key": "security_admin",
        "role": "security-admin",
        "name": "李安全",
        "id_number": "210202199509279504",  # synthetic, checksum-valid; no company representative
        "phone": "13800138001",
        "email": "security.admin@example.cn",
    },
    {
        "key": "department_admin",
        "role": "department-admin",
        "name": "赵部门",
        "id_number": "210302197409288629",  # synthetic, checksum-valid; no company representative
        "phone": "13800138002",
        "email": "social.admin@example.cn",
    },
)


@dataclass(frozen=True)
class DemoAdmin:
    key: str
    role: str
    email: str
    password: str
    totp_secret: str
    department: str | None

    def as_state(self) -> dict[str, Any]:
        return {"email": self.email, "password": self.password, "totp_secret": self.totp_secret}

    def otpauth_uri(self) -> str:
        return mfa.totp_uri(self.totp_secret, self.email)


def ensure_admins(
    session: Session,
    services: Services,
    stored: Mapping[str, Any],
    created: list[str],
    new_password: Any,
) -> list[DemoAdmin]:
    """The demo department (owning the demo service) and its two administrators."""
    dept_id, dept_name = DEMO_DEPARTMENT
    if session.get(Department, dept_id) is None:
        add_department(session, dept_id, dept_name, OPERATOR)
        created.append(f"department {dept_id}")
    service = session.get(Client, "demo-service")
    if service is not None and service.department_id is None:
        service.department_id = dept_id
    out = []
    for spec in DEMO_ADMINS:
        remembered = stored.get(spec["key"]) or {}
        password, user_id = _ensure_person(session, services, spec, remembered, new_password)
        if user_id is None:
            raise RegistrationError("password", "the demo admin could not be created")
        department = dept_id if spec["role"] == "department-admin" else None
        held = admin_summary(session, session.get(User, user_id))  # type: ignore[arg-type]
        if spec["role"] not in held["roles"] or (
            department and department not in held["departments"]
        ):
            grant_role(session, services, user_id, spec["role"], department, OPERATOR)
        secret = _ensure_totp(session, services, user_id, remembered.get("totp_secret"))
        out.append(
            DemoAdmin(spec["key"], spec["role"], spec["email"], password, secret, department)
        )
    return out


def _ensure_person(
    session: Session,
    services: Services,
    spec: Mapping[str, str],
    remembered: Mapping[str, Any],
    new_password: Any,
) -> tuple[str, str | None]:
    user = find_citizen(session, spec["id_number"], vault=services.vault)
    password = remembered.get("password")
    if user is None:
        password = password if isinstance(password, str) else new_password()
        fields = {k: spec[k] for k in ("name", "id_number", "phone", "email")}
        user = register_citizen(
            session,
            NewCitizen(password=password, **fields),
            vault=services.vault,
            passwords=services.passwords,
            actor="demo",
        )
        return password, user.id
    if not isinstance(password, str) or not services.passwords.verify(user.password_hash, password):
        password = new_password()
        user.password_hash = services.passwords.hash(password)
        audit.record(session, "user.password_reset", actor="demo", target=user.id)
    user.status = "active"
    return password, user.id


def _ensure_totp(session: Session, services: Services, user_id: str, remembered: Any) -> str:
    """The remembered seed when it is still the account's, else a new one."""
    row = session.get(TotpCredential, user_id)
    if row is not None and isinstance(remembered, str):
        try:
            if mfa.open_totp_secret(services.kek, user_id, row.secret_ciphertext) == remembered:
                return remembered
        except Exception:  # noqa: S110 - an unreadable seed is replaced below
            pass
    secret = mfa.new_totp_secret()
    sealed = mfa.seal_totp_secret(services.kek, user_id, secret)
    if row is None:
        session.add(
            TotpCredential(
                user_id=user_id, secret_ciphertext=sealed, last_step=0, confirmed_at=utcnow()
            )
        )
    else:
        row.secret_ciphertext, row.last_step, row.confirmed_at = sealed, 0, utcnow()
    audit.record(session, "mfa.totp.enrol", actor="demo", target=user_id, details={"demo": True})
    return secret


def describe_admins(admins: list[DemoAdmin], issuer: str) -> list[str]:
    """The banner's lines for the administrators."""
    lines = ["", f"  admin console {issuer}/admin  (password, then the authenticator-app code)"]
    for a in admins:
        where = f" of department {a.department}" if a.department else ""
        lines += [
            f"    {a.role}{where}",
            f"      e-mail     {a.email}",
            f"      password   {a.password}",
            f"      TOTP seed  {a.totp_secret}  ({a.otpauth_uri()})",
        ]
    return lines
