"""Password hashing and policy.

argon2id at explicit parameters (m=19 MiB, t=2, p=1 by default, OWASP's minimum), never the
library defaults, with rehash on login when the parameters change.  Length is counted in
Unicode code points after NFC normalization (NIST SP 800-63B-4 §3.1.1.2); nothing is ever
truncated; overlong input is refused before the KDF runs (checklist 84).  Unknown accounts are
checked against a dummy hash so the answer takes the same time (checklist 83).
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordPolicyError(ValueError):
    """The password breaks the policy.

    ``message`` is the English message id (listed in :mod:`idp.messages`) and ``params`` its
    values: a page shows ``gettext(message, **params)``, so a number never stops the
    translation; ``str()`` is the English sentence, for the command line.
    """

    def __init__(self, message: str, **params: int) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params


@functools.cache
def _blocklist() -> frozenset[str]:
    text = resources.files("idp").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().casefold()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def normalize(password: str) -> str:
    return unicodedata.normalize("NFC", password)


class Passwords:
    """Hashes, verifies and checks passwords under the configured parameters and policy."""

    def __init__(
        self,
        *,
        memory_kib: int = 19456,
        time_cost: int = 2,
        parallelism: int = 1,
        min_length: int = 8,
        max_length: int = 128,
    ) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self.min_length = min_length
        self.max_length = max_length

    @functools.cached_property
    def _dummy(self) -> str:
        """Hashed on first need, not at start-up: every worker (and every test app) would
        otherwise pay one argon2 run before serving anything."""
        return self.hasher.hash("yitong-dummy-password-for-timing")

    def check_policy(
        self, password: str, *, context: tuple[str, ...] = (), min_length: int | None = None
    ) -> None:
        """Raise :class:`PasswordPolicyError` with a reason, or return."""
        pw = normalize(password)
        minimum = min_length or self.min_length
        if len(pw) < minimum:
            raise PasswordPolicyError("password must have at least %(n)d characters", n=minimum)
        if len(pw) > self.max_length:
            raise PasswordPolicyError(
                "password must have at most %(n)d characters", n=self.max_length
            )
        folded = pw.casefold()
        if folded in _blocklist() or folded.rstrip("0123456789!@#$%.") in _blocklist():
            raise PasswordPolicyError("password is too common; choose another")
        for word in context:
            w = word.casefold().strip()
            if len(w) >= 4 and w in folded:
                raise PasswordPolicyError("password must not contain your name, phone or ID number")
        if len(set(pw)) < 3:
            raise PasswordPolicyError("password repeats too few characters")

    def hash(self, password: str) -> str:
        return self.hasher.hash(normalize(password))

    def too_long(self, password: str) -> bool:
        """True for input that must be refused before hashing (hashing DoS, checklist 84)."""
        return len(password) > self.max_length

    def verify(self, stored: str | None, password: str) -> bool:
        """Constant-work verification; an absent hash still costs one argon2 run."""
        if self.too_long(password):
            return False
        try:
            return bool(self.hasher.verify(stored or self._dummy, normalize(password))) and bool(
                stored
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return bool(self.hasher.check_needs_rehash(stored))
