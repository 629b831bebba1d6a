"""Password rules from the security policies (NIST SP 800-63B-4 §3.1.1.2).

https://pages.nist.gov/800-63-4/sp800-63b.html#passwordver -- verifiers SHALL require at least
15 characters when the password is the only factor and 8 when it is part of multi-factor
authentication, SHALL allow at least 64, SHALL count each Unicode code point as one
character, SHALL NOT impose composition rules, SHALL compare against a blocklist of common,
expected or compromised values, and SHALL NOT truncate.

:class:`PolicyPasswords` keeps the argon2id hashing of :class:`idp.accounts.passwords.Passwords`
and takes lengths and lists from :class:`PolicyStore`, so an admin's change applies on every
worker within the policy cache time (checklist 99).  The blocklists are the shipped common
list, an offline SHA-1 list of breached passwords (``idp/data/breached-passwords.sha1``, the
Pwned Passwords format, checklist 78) and the policy's context words (department names).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from idp.accounts.passwords import PasswordPolicyError, Passwords, normalize
from idp.interaction.policies import PolicyStore

BREACHED_FILE = "data/breached-passwords.sha1"


@functools.cache
def breached_digests() -> frozenset[str]:
    text = resources.files("idp").joinpath(BREACHED_FILE).read_text("utf-8")
    return frozenset(
        line.strip().split(":")[0].upper()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def is_breached(password: str) -> bool:
    """Offline lookup by SHA-1, exact and case-folded (the corpus is mostly lower-case)."""
    digests = breached_digests()
    for candidate in {password, password.casefold()}:
        if hashlib.sha1(candidate.encode("utf-8")).hexdigest().upper() in digests:  # noqa: S324
            return True
    return False


class PolicyPasswords(Passwords):
    """:class:`Passwords` whose rules come from the security policies."""

    def __init__(self, policies: PolicyStore, **params: int) -> None:
        self.policies = policies
        super().__init__(**params)

    # The base class assigns these in __init__; the policy decides instead.
    @property  # type: ignore[override]
    def max_length(self) -> int:
        return self.policies.get_int("password.max_length")

    @max_length.setter
    def max_length(self, _value: int) -> None:
        return None

    @property  # type: ignore[override]
    def min_length(self) -> int:
        return self.policies.get_int("password.min_length")

    @min_length.setter
    def min_length(self, _value: int) -> None:
        return None

    def min_length_for(self, *, has_mfa: bool) -> int:
        """15 (by default) when the password stands alone, 8 with a second factor."""
        return self.policies.get_int(
            "password.min_length_mfa" if has_mfa else "password.min_length"
        )

    def check_policy(
        self, password: str, *, context: tuple[str, ...] = (), min_length: int | None = None
    ) -> None:
        words = tuple(self.policies.get_list("password.context_words"))
        super().check_policy(password, context=context, min_length=min_length)
        folded = normalize(password).casefold()
        for word in words:
            w = word.casefold().strip()
            if len(w) >= 2 and w in folded:
                raise PasswordPolicyError(
                    "password must not contain the name of a department, place or this service"
                )
        if self.policies.get_bool("password.check_breached") and is_breached(normalize(password)):
            raise PasswordPolicyError(
                "this password appeared in a data breach elsewhere; choose another"
            )
