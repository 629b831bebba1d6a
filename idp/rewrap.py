"""Move every sealed value (not only signing keys) to the current key-encryption key.

Identity numbers, TOTP seeds, client_secret_jwt secrets and directory bind passwords are
AES-GCM ciphertexts under the KEK, each bound to its row by associated data.  ``yitong keys
rewrap`` calls :func:`rewrap_sealed_data` after the signing keys, in one transaction, so a KEK
can be retired without making any of them unreadable.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.storage.models import Client, DirectoryConfig, TotpCredential, User
from keys.crypto import KekRing


@dataclass
class RewrapReport:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def _move(ring: KekRing, blob: bytes, aad: bytes) -> bytes | None:
    """The blob re-sealed under the current KEK, or None when it already is."""
    if ring.sealed_with_current(blob, aad):
        return None
    return ring.encrypt(ring.decrypt(blob, aad), aad)


def rewrap_sealed_data(session: Session, ring: KekRing) -> RewrapReport:
    """Re-seal every ciphertext the current KEK cannot open; raises if any cannot be opened."""
    report = RewrapReport()
    for user in session.scalars(select(User).where(User.id_number_ciphertext.is_not(None))):
        assert user.id_number_ciphertext is not None
        moved = _move(ring, user.id_number_ciphertext, b"identity-number")
        if moved is not None:
            user.id_number_ciphertext = moved
            report.add("identity_numbers")
    for cred in session.scalars(select(TotpCredential)):
        moved = _move(ring, cred.secret_ciphertext, b"totp-secret:" + cred.user_id.encode())
        if moved is not None:
            cred.secret_ciphertext = moved
            report.add("totp_secrets")
    for client in session.scalars(select(Client).where(Client.secret_ciphertext.is_not(None))):
        assert client.secret_ciphertext is not None
        moved = _move(ring, client.secret_ciphertext, client.client_id.encode())
        if moved is not None:
            client.secret_ciphertext = moved
            report.add("client_secrets")
    for directory in session.scalars(select(DirectoryConfig)):
        sealed = directory.config.get("bind_password_sealed")
        if not sealed:
            continue
        moved = _move(ring, base64.b64decode(sealed), f"directory:{directory.id}".encode())
        if moved is not None:
            directory.config = {
                **directory.config,
                "bind_password_sealed": base64.b64encode(moved).decode(),
            }
            report.add("directory_passwords")
    session.flush()
    return report
