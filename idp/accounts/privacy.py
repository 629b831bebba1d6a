"""Protection of identity numbers: encryption at rest, keyed lookup digests, masking.

A resident ID number is personal and sensitive data (PIPL).  It is stored AES-GCM encrypted
under the key-encryption key, found through an HMAC-SHA-256 digest keyed by a secret derived
from the application secret (so a leaked table cannot be brute-forced over the small space
of valid numbers without the key), and displayed only masked: ``2102**********3286``.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from keys.crypto import Kek


class IdentityVault:
    """Seals, finds and masks identity numbers (resident ID numbers, credit codes)."""

    def __init__(self, kek: Kek, lookup_secret: bytes) -> None:
        self._kek = kek
        self._lookup_key = hmac.new(lookup_secret, b"yitong-identity-lookup", "sha256").digest()

    def digest(self, number: str) -> str:
        return hmac.new(self._lookup_key, number.encode("ascii"), hashlib.sha256).hexdigest()

    def seal(self, number: str) -> bytes:
        return self._kek.encrypt(number.encode("ascii"), b"identity-number")

    def open(self, ciphertext: bytes) -> str:
        return self._kek.decrypt(ciphertext, b"identity-number").decode("ascii")


def mask(number: str) -> str:
    """Keep the first four and last four characters: ``2102**********3286``."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9A-Za-z])")


def redact(text: str) -> str:
    """Mask anything in free text that looks like an 18-character identity number."""
    return _ID_LIKE.sub(lambda m: mask(m.group(0)), text)
