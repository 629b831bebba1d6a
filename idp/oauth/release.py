"""Release policy per client (issue 10 item 7): who a client serves and what it may learn.

A client has an allowed set of plain claims (``Client.allowed_claims``, applied in
:func:`idp.oauth.claims.user_claims`), of verified claims (``allowed_verified_claims``,
applied in :mod:`idp.oauth.verified_claims`), a minimum identity-assurance level and the
account types it serves.  The policy is applied whatever the client asks for.  The labels
here are what the consent page shows, in Chinese and English.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp.accounts.assurance import LEVELS, level_of, rank
from idp.errors import AccessDeniedError
from idp.oauth.claims import SCOPE_CLAIMS
from idp.oauth.verified_claims import (
    ENTITY_POLICY_NAMES,
    ENTITY_VERIFIED_CLAIMS,
    VERIFIED_CLAIMS,
    entity_request,
)
from idp.storage.models import Client, User

ACCOUNT_TYPES: tuple[str, ...] = ("citizen", "company", "staff")

#: Plain labels for people: (Chinese, English).
CLAIM_LABELS: dict[str, tuple[str, str]] = {
    "name": ("姓名", "Name"),
    "given_name": ("名", "Given name"),
    "family_name": ("姓", "Family name"),
    "preferred_username": ("用户名", "User name"),
    "locale": ("语言", "Language"),
    "updated_at": ("资料更新时间", "Profile update time"),
    "email": ("电子邮箱", "E-mail address"),
    "email_verified": ("邮箱是否已验证", "Whether the e-mail is verified"),
    "phone_number": ("手机号码", "Mobile number"),
    "phone_number_verified": ("手机号是否已验证", "Whether the mobile number is verified"),
    "groups": ("所属群组", "Groups"),
    "roles": ("角色", "Roles"),
    "department": ("所在部门", "Department"),
    "employee_number": ("工号", "Employee number"),
    "title": ("职务", "Job title"),
    "birthdate": ("出生日期", "Date of birth"),
    "resident_id_number": ("居民身份证号码", "Resident ID number"),
}
#: The company's verified claims (inside ``authority``), labelled for people.
ENTITY_CLAIM_LABELS: dict[str, tuple[str, str]] = {
    "name": ("所代表企业的名称", "Name of the company you act for"),
    "registration_number": (
        "所代表企业的统一社会信用代码",
        "Credit code of the company you act for",
    ),
}


class ReleasePolicyError(ValueError):
    """A release policy that cannot be stored; the message names the problem (ASCII)."""


def check_policy(
    claims: Iterable[str] | None,
    verified_claims: Iterable[str] | None,
    min_assurance: str | None,
    account_types: Iterable[str] | None,
) -> None:
    """Refuse unknown claim names, levels and account types before anything is stored."""
    known = {c for names in SCOPE_CLAIMS.values() for c in names}
    unknown = sorted(set(claims or ()) - known)
    if unknown:
        raise ReleasePolicyError(f"unknown claims: {', '.join(unknown)}")
    known_verified = (*VERIFIED_CLAIMS, *ENTITY_POLICY_NAMES)
    unknown = sorted(set(verified_claims or ()) - set(known_verified))
    if unknown:
        raise ReleasePolicyError(
            f"unknown verified claims: {', '.join(unknown)} (known: {', '.join(known_verified)})"
        )
    if min_assurance is not None and min_assurance not in LEVELS:
        raise ReleasePolicyError(f"minimum assurance must be one of {', '.join(LEVELS)}")
    unknown = sorted(set(account_types or ()) - set(ACCOUNT_TYPES))
    if unknown or (account_types is not None and not list(account_types)):
        raise ReleasePolicyError(f"account types must be among {', '.join(ACCOUNT_TYPES)}")


def account_type(user: User) -> str:
    """The person's own account type; acting for a company makes the login ``company``."""
    return "staff" if user.kind == "staff" else "citizen"


def serves(client: Client, account: str) -> bool:
    """The client serves this account type (no list: every type)."""
    return client.account_types is None or account in client.account_types


def check_served(
    session: Session,
    client: Client,
    user: User,
    *,
    served_as: str | None = None,
    may_act_for_company: bool = False,
) -> None:
    """Raise ``access_denied`` when the client does not serve this login (type or level).

    ``served_as`` is the account type once the person chose whom they act for (``company``
    when acting for one); before that (None) the person's own type counts, or ``company``
    when they have a company they may act for at this client.
    """
    if served_as is not None:
        if not serves(client, served_as):
            raise AccessDeniedError("this service does not serve this type of account")
    elif not serves(client, account_type(user)) and not (
        may_act_for_company and serves(client, "company")
    ):
        raise AccessDeniedError("this service does not serve this type of account")
    if client.min_assurance and rank(level_of(session, user.id)) < rank(client.min_assurance):
        raise AccessDeniedError("the identity assurance of this account is below the minimum")


@dataclass(frozen=True)
class ActingLabel:
    """Whom the person acts for, as the consent page names it."""

    entity_id: str
    name: str
    credit_code_masked: str
    role: str


def release_labels(
    client: Client,
    scopes: Iterable[str],
    claims_request: Mapping[str, Any] | None,
    acting: ActingLabel | None = None,
) -> list[dict[str, Any]]:
    """What the consent page lists: every claim that may be released, labelled for people.

    Plain claims follow the scopes and ``allowed_claims``; verified claims only those the
    request names and the client is allowed, with the client's stated ``purpose``; the
    company the person acts for (the ``authority`` claim) when the ``entity`` scope is asked.
    Each item's ``key`` is what a consent remembers (:func:`released_keys`).
    """
    scopes = list(scopes)
    allowed = set(client.allowed_claims) if client.allowed_claims is not None else None
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for scope in scopes:
        for claim in SCOPE_CLAIMS.get(scope, ()):
            if claim in ("sub", "authority") or claim in seen:
                continue  # the company acted for is listed below, by name
            if allowed is not None and claim not in allowed:
                continue
            seen.add(claim)
            zh, en = CLAIM_LABELS.get(claim, (claim, claim))
            out.append(
                {
                    "claim": claim,
                    "key": claim,
                    "zh": zh,
                    "en": en,
                    "verified": False,
                    "purpose": None,
                }
            )
    permitted = set(client.allowed_verified_claims or ())
    for target in ("id_token", "userinfo"):
        request = ((claims_request or {}).get(target) or {}).get("verified_claims")
        for element in request if isinstance(request, list) else [request]:
            if not isinstance(element, dict) or not isinstance(element.get("claims"), dict):
                continue
            wanted, purpose = element["claims"], element.get("purpose")
            for claim in wanted:
                if claim not in permitted or f"v:{claim}" in seen:
                    continue
                seen.add(f"v:{claim}")
                zh, en = CLAIM_LABELS.get(claim, (claim, claim))
                out.append(
                    {
                        "claim": claim,
                        "key": f"v:{claim}",
                        "zh": f"{zh}（已核验）",
                        "en": f"{en} (verified)",
                        "verified": True,
                        "purpose": purpose if isinstance(purpose, str) else None,
                    }
                )
    if acting is not None and "entity" in scopes:
        for target in ("id_token", "userinfo"):
            request = entity_request(claims_request, target)
            for element in request if isinstance(request, list) else [request]:
                if not isinstance(element, dict) or not isinstance(element.get("claims"), dict):
                    continue
                for claim in element["claims"]:
                    key = f"v:entity.{claim}"
                    if claim not in ENTITY_VERIFIED_CLAIMS or key[2:] not in permitted:
                        continue
                    if key in seen:
                        continue
                    seen.add(key)
                    zh, en = ENTITY_CLAIM_LABELS[claim]
                    purpose = element.get("purpose")
                    out.append(
                        {
                            "claim": f"entity.{claim}",
                            "key": key,
                            "zh": f"{zh}（已核验）",
                            "en": f"{en} (verified)",
                            "verified": True,
                            "purpose": purpose if isinstance(purpose, str) else None,
                        }
                    )
        out.append(
            {
                "claim": "authority",
                "key": f"authority:{acting.entity_id}:{acting.role}",
                "zh": f"代表{acting.name}（{acting.credit_code_masked}）办理，身份：{acting.role}",
                "en": f"Acting for {acting.name} ({acting.credit_code_masked}) as {acting.role}",
                "verified": False,
                "purpose": None,
            }
        )
    return out


def released_keys(labels: Iterable[Mapping[str, Any]]) -> list[str]:
    """What a consent to these labels covers: claim names, ``v:`` verified claims, and
    ``authority:<company>:<role>``."""
    return sorted({str(label["key"]) for label in labels})
