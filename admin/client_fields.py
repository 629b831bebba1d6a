"""What people and the approving security admin read of a client, beside its RFC 7591
metadata (issue 11): the English name (``client_name#en``), the logo, the purpose and the
release the department asks for.  Checked here, stored by :func:`admin.services.create_client`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from admin.errors import AdminInputError
from idp.errors import InvalidClientMetadataError
from idp.oauth.release import ReleasePolicyError, check_policy


def presentation(data: dict[str, Any]) -> dict[str, Any]:
    """Pop what people and the approving admin read (English name, logo, purpose, the
    release asked for) from ``data``, checked; the rest is RFC 7591 metadata."""
    out: dict[str, Any] = {}
    for key, column, limit in (
        ("client_name#en", "name_en", 200),
        ("logo_uri", "logo_uri", 2000),
        ("purpose", "purpose", 1000),
    ):
        value = data.pop(key, None)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > limit or any(ord(c) < 32 for c in value):
            raise AdminInputError(f"{key} must be text of at most {limit} characters")
        out[column] = value.strip()
    logo = out.get("logo_uri")
    if logo is not None:
        parts = urlsplit(logo)
        if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
            raise AdminInputError(
                "logo_uri must be an https URL without userinfo", error=InvalidClientMetadataError
            )
    requested = data.pop("requested", None)
    if requested is not None:
        if not isinstance(requested, dict) or set(requested) - {
            "claims",
            "account_types",
            "min_assurance",
        }:
            raise AdminInputError("requested may name claims, account_types and min_assurance")
        try:
            check_policy(
                requested.get("claims"),
                None,
                requested.get("min_assurance"),
                requested.get("account_types"),
            )
        except (ReleasePolicyError, TypeError, AttributeError) as exc:
            raise AdminInputError(f"requested: {exc}") from None
        out["requested_release"] = requested
    return out
