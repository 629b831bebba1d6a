"""Claims released per scope (OpenID Connect Core §5.4) and subject identifiers (§8).

A client receives only the claims its consented scopes cover and, when the client has an
``allowed_claims`` list, only those: departments get the attributes they are allowed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from idp.storage.models import Client, User
from idp.storage.rows import UserRow

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": ("name", "given_name", "family_name", "preferred_username", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "groups": ("groups", "roles"),
    # Department staff: what their own directory says about them (issue 6).
    "staff": ("department", "employee_number", "title"),
    # Acting for a company (issue 10): ``authority`` comes from the grant, not from the
    # account, so user_claims never releases it; see idp.accounts.mandates.authority_claim.
    "entity": ("authority",),
}
CLAIMS_SUPPORTED = sorted(
    {c for claims in SCOPE_CLAIMS.values() for c in claims}
    | {"iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "at_hash"}
)


def subject_for(user: User | UserRow, client: Client, pairwise_secret: bytes) -> str:
    """The ``sub`` this client sees: the account id, or a per-sector pairwise value (§8.1)."""
    if client.subject_type == "pairwise" and client.sector:
        mac = hmac.new(pairwise_secret, f"{client.sector}|{user.id}".encode(), hashlib.sha256)
        return mac.hexdigest()
    return user.id


def available_claims(user: User | UserRow) -> dict[str, Any]:
    """Every claim we can state about ``user`` (None where unknown), before any filtering.

    Staff attributes come from their department directory at each login (``User.attributes``);
    the directory is authoritative for them, so they count as verified.  The one source of
    claim values: OpenID Connect and the CAS attributes (:mod:`idp.cas`) both read it.
    """
    staff = user.kind == "staff"
    attrs = user.attributes if staff else {}
    email = attrs.get("email") if staff else user.email
    phone = attrs.get("phone_number") if staff else user.phone
    return {
        "name": user.name,
        "given_name": attrs.get("given_name"),
        "family_name": attrs.get("family_name"),
        "preferred_username": attrs.get("preferred_username"),
        "locale": (user.locale or "zh-CN").replace("_", "-"),
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": email,
        "email_verified": (True if staff else bool(user.email_verified)) if email else None,
        "phone_number": phone,
        "phone_number_verified": (True if staff else bool(user.phone_verified)) if phone else None,
        "groups": list(user.groups) if user.groups else None,
        "roles": list(user.roles) if user.roles else None,
        "department": user.directory_id if staff else None,
        "employee_number": attrs.get("employee_number"),
        "title": attrs.get("title"),
    }


def user_claims(
    user: User | UserRow, scopes: list[str] | set[str], client: Client
) -> dict[str, Any]:
    """Claims for ``scopes`` (without ``sub``), filtered by the client's allowed claims."""
    available = available_claims(user)
    allowed = set(client.allowed_claims) if client.allowed_claims is not None else None
    out: dict[str, Any] = {}
    for scope in scopes:
        for claim in SCOPE_CLAIMS.get(scope, ()):
            if claim == "sub" or available.get(claim) is None:
                continue
            if allowed is not None and claim not in allowed:
                continue
            out[claim] = available[claim]
    return out
