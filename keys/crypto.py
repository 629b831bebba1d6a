"""Encryption at rest: AES-256-GCM under a key-encryption key (KEK).

Used for private signing keys, TOTP seeds and identity numbers.  Each ciphertext starts with
a version byte and the KEK id is stored beside it, so ``yitong keys rewrap`` can move every
row to a new KEK and a wrong KEK is detected (GCM authentication fails) instead of yielding
garbage.  The associated data binds a ciphertext to its row (for example the kid), so a
ciphertext copied into another row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"


class KekError(Exception):
    """The key-encryption key is missing, malformed or not the one the data was sealed with."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Kek:
    """A 256-bit key-encryption key; ``id`` is a short fingerprint, never the key itself."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise KekError("the key-encryption key must be 32 bytes (base64url, 43 characters)")

    @classmethod
    def from_text(cls, text: str) -> Kek:
        try:
            return cls(b64u_decode(text.strip()))
        except (ValueError, TypeError) as exc:
            raise KekError(f"the key-encryption key is not valid base64url: {exc}") from None

    @classmethod
    def generate(cls) -> Kek:
        return cls(os.urandom(32))

    def to_text(self) -> str:
        return b64u(self.key)

    @property
    def id(self) -> str:
        return hashlib.sha256(b"yitong-kek-id" + self.key).hexdigest()[:16]

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return VERSION + nonce + AESGCM(self.key).encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        if len(blob) < 29 or blob[:1] != VERSION:
            raise KekError("ciphertext is malformed or of an unknown version")
        try:
            return AESGCM(self.key).decrypt(blob[1:13], blob[13:], aad)
        except InvalidTag:
            raise KekError(
                "decryption failed: the key-encryption key is not the one this data was sealed with"
            ) from None


@dataclass(frozen=True)
class KekRing(Kek):
    """The current KEK plus previous ones: seals with the current, opens with whichever fits.

    Rows sealed before a KEK change stay readable while ``yitong keys rewrap`` moves them (and
    afterwards, as long as the old KEK stays listed in ``previous_key_encryption_key_files``).
    AES-GCM authentication tells which key fits, so trying each is safe.  A ring is a
    :class:`Kek` (its own key is the current one), so it goes wherever a KEK does.
    """

    previous: tuple[Kek, ...] = ()

    @classmethod
    def of(cls, current: Kek, previous: tuple[Kek, ...] = ()) -> KekRing:
        return cls(current.key, tuple(k for k in previous if k.id != current.id))

    @property
    def current(self) -> Kek:
        return Kek(self.key)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        last: KekError | None = None
        for kek in (self.current, *self.previous):
            try:
                return Kek.decrypt(kek, blob, aad)
            except KekError as exc:
                last = exc
        assert last is not None
        raise last

    def sealed_with_current(self, blob: bytes, aad: bytes = b"") -> bool:
        try:
            Kek.decrypt(self.current, blob, aad)
        except KekError:
            return False
        return True
