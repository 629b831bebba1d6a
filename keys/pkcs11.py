"""Pkcs11KeyStore: signing keys generated and used inside a hardware security module.

PKCS#11 v2.40 (Cryptoki): https://docs.oasis-open.org/pkcs11/pkcs11-base/v2.40/pkcs11-base-v2.40.html
Mechanisms: https://docs.oasis-open.org/pkcs11/pkcs11-curr/v2.40/pkcs11-curr-v2.40.html
JWS algorithms: RFC 7518 §3 (https://www.rfc-editor.org/rfc/rfc7518#section-3), RFC 8037 §3.1.

The private key never leaves the module: it is generated there with ``CKA_SENSITIVE=true`` and
``CKA_EXTRACTABLE=false``, and signing sends the JWS signing input (or its SHA-256 digest) to
``C_Sign``.  Only the public key is read out, to publish it.  The lifecycle, lock and audit are
shared with :class:`keys.sql.SqlKeyStore` (both subclass
:class:`keys.lifecycle.DatabaseKeyStore`); the row keeps the HSM object's label in
``hsm_label`` and ``backend='pkcs11'``.

Mechanisms per algorithm, chosen to work on the widest range of modules (SoftHSM2 has no
``CKM_ECDSA_SHA256``, for one):

* RS256: ``CKM_SHA256_RSA_PKCS`` (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3);
* PS256: ``CKM_SHA256_RSA_PKCS_PSS``, MGF1-SHA-256, salt = 32 bytes (RFC 7518 §3.5: the salt
  length MUST equal the hash output);
* ES256: SHA-256 in software, then ``CKM_ECDSA`` on the digest; PKCS#11 returns ``r || s``,
  each 32 bytes, which is exactly the JWS form (RFC 7518 §3.4), not DER;
* EdDSA: ``CKM_EDDSA`` on the signing input (Ed25519 hashes internally, RFC 8037 §3.1).

Sessions: the store logs in once per process on a read-write session it keeps open (closing
the last logged-in session logs every session out), and each thread signs on a session of
its own, because a PKCS#11 session runs one operation at a time.  After ``fork()`` the
library is re-initialized in the child, as PKCS#11 §6.6.1 requires.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import pkcs11
from joserfc import jwt
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import NoSuchKey, PKCS11Error, UserAlreadyLoggedIn
from pkcs11.types import SignMixin

from keys.lifecycle import DatabaseKeyStore, NewKey, Txn
from keys.rotation import RotationPolicy
from keys.software import (
    JWS_REGISTRY,
    b64u,
    check_alg,
    check_rsa_bits,
    compact_jws,
    import_public_jwk,
    thumbprint,
)
from keys.store import PUBLISHED_STATES, KeyStoreError, SigningKey

if TYPE_CHECKING:
    from idp.config import Settings
    from idp.storage.db import Database
    from idp.storage.models import SigningKey as SigningKeyRow

#: DER of the named-curve OIDs (CKA_EC_PARAMS): prime256v1 and id-Ed25519 (RFC 8410).
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
ED25519_PARAMS = bytes.fromhex("06032b6570")

#: Where Debian's softhsm2 package puts the module; real HSMs name their own.
SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

LABEL_PREFIX = "yitong-"

_SIGN_ONLY = MechanismFlag.SIGN | MechanismFlag.VERIFY

# CKA_SENSITIVE and not CKA_EXTRACTABLE: the module refuses to reveal or wrap the private key.
_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.PRIVATE: True,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}


def _der_octet_string(value: bytes) -> bytes:
    """Unwrap a DER OCTET STRING; CKA_EC_POINT is one on most modules, raw on a few."""
    if len(value) < 2 or value[0] != 0x04:
        raise KeyStoreError("CKA_EC_POINT is not a DER OCTET STRING")
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(value[2 : 2 + count], "big")
        offset = 2 + count
    if offset + length != len(value):
        raise KeyStoreError("CKA_EC_POINT has a bad length")
    return value[offset:]


def _ec_point(raw: bytes, size: int) -> bytes:
    """The public point from CKA_EC_POINT, DER-wrapped or raw (``size`` bytes)."""
    if len(raw) == size and (size != 65 or raw[0] == 0x04):
        return raw
    point = _der_octet_string(raw)
    if len(point) != size:
        raise KeyStoreError(f"unexpected public point length {len(point)}")
    return point


class _Token:
    """One PKCS#11 token: the login session, a session per thread, and fork handling."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self._lock = threading.Lock()
        self._pid = -1
        self._local = threading.local()
        self._generation = 0
        self._admin: pkcs11.Session | None = None
        self._token: pkcs11.Token | None = None

    def __repr__(self) -> str:
        return f"_Token(module={self.module!r}, token_label={self.token_label!r})"  # no PIN

    def _open(self) -> None:
        """(Re)connect; called with ``_lock`` held."""
        try:
            lib = pkcs11.lib(self.module)
            if self._pid not in (-1, os.getpid()):
                lib.reinitialize()  # a forked child must initialize Cryptoki again
            token = lib.get_token(token_label=self.token_label)
        except (OSError, PKCS11Error, RuntimeError) as exc:
            raise KeyStoreError(
                f"cannot reach HSM token {self.token_label!r} through {self.module}: "
                f"{type(exc).__name__} {exc}"
            ) from None
        try:
            admin = token.open(rw=True, user_pin=self._pin)
        except UserAlreadyLoggedIn:
            # Another store in this process is logged in to the same token; login is per
            # application, so our sessions share it.
            admin = token.open(rw=True)
        except PKCS11Error as exc:
            raise KeyStoreError(
                f"cannot log in to HSM token {self.token_label!r}: {type(exc).__name__}"
            ) from None
        self._token, self._admin = token, admin
        self._pid = os.getpid()
        self._generation += 1

    def admin(self) -> pkcs11.Session:
        """The read-write session for generating and destroying keys (use under ``lock``)."""
        if self._admin is None or self._pid != os.getpid():
            self._open()
        assert self._admin is not None
        return self._admin

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def private_key(self, label: str) -> pkcs11.PrivateKey:
        """This thread's handle on the private key called ``label``."""
        local = self._local
        if self._pid != os.getpid() or getattr(local, "generation", None) != self._generation:
            with self._lock:
                if self._pid != os.getpid() or self._admin is None:
                    self._open()
                assert self._token is not None
                local.session = self._token.open()  # read-only, shares the login
                local.keys = {}
                local.generation = self._generation
        keys: dict[str, pkcs11.PrivateKey] = local.keys
        key = keys.get(label)
        if key is None:
            try:
                key = local.session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            except NoSuchKey:
                raise KeyStoreError(f"HSM key {label!r} is missing from the token") from None
            keys[label] = key
        return key

    def forget(self, label: str) -> None:
        keys = getattr(self._local, "keys", None)
        if keys is not None:
            keys.pop(label, None)


class Pkcs11SigningKey:
    """A private key inside the HSM; :meth:`sign_jwt` sends it the signing input only."""

    def __init__(self, token: _Token, label: str, kid: str, alg: str) -> None:
        self._token = token
        self.label = label
        self.kid = kid
        self.alg = alg

    def __repr__(self) -> str:
        return f"Pkcs11SigningKey(kid={self.kid!r}, alg={self.alg!r}, label={self.label!r})"

    def _sign(self, message: bytes) -> bytes:
        # The concrete class mixes in SignMixin; the stubs' PrivateKey does not say so.
        key = cast(SignMixin, self._token.private_key(self.label))
        try:
            if self.alg == "RS256":
                return bytes(key.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS))
            if self.alg == "PS256":
                return bytes(
                    key.sign(
                        message,
                        mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                        mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32),
                    )
                )
            if self.alg == "ES256":
                digest = hashlib.sha256(message).digest()
                signature = bytes(key.sign(digest, mechanism=Mechanism.ECDSA))
                if len(signature) != 64:
                    raise KeyStoreError(f"ECDSA signature of {len(signature)} bytes, not r||s")
                return signature
            return bytes(key.sign(message, mechanism=Mechanism.EDDSA))
        except PKCS11Error as exc:
            # The handle may be stale (key destroyed by a revocation elsewhere): look it up
            # again next time instead of failing forever.
            self._token.forget(self.label)
            raise KeyStoreError(
                f"HSM signing with {self.kid} failed: {type(exc).__name__}"
            ) from None

    def sign_jwt(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        return compact_jws(self.alg, self.kid, claims, header, self._sign)


class Pkcs11KeyStore(DatabaseKeyStore):
    """Keys in a PKCS#11 token, metadata and lifecycle in ``signing_keys``."""

    backend = "pkcs11"

    def __init__(
        self,
        db: Database,
        *,
        module: str,
        token_label: str,
        pin: str,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        rsa_bits: int = 3072,
        policy: RotationPolicy | None = None,
        refresh_seconds: float = 5.0,
        production: bool = False,
    ) -> None:
        check_rsa_bits(rsa_bits)
        super().__init__(
            db,
            algorithms=algorithms,
            policy=policy,
            refresh_seconds=refresh_seconds,
            production=production,
        )
        self.rsa_bits = rsa_bits
        self.token = _Token(module, token_label, pin)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        *,
        module: str,
        token_label: str,
        pin: str,
        refresh_seconds: float = 5.0,
    ) -> Pkcs11KeyStore:
        return cls(
            db,
            module=module,
            token_label=token_label,
            pin=pin,
            algorithms=settings.signing_algorithms,
            policy=RotationPolicy.from_settings(settings, refresh_seconds),
            refresh_seconds=refresh_seconds,
            production=settings.is_production,
        )

    # -- generation -------------------------------------------------------------------------
    def _generate_pair(self, alg: str, label: str) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
        session = self.token.admin()
        common: dict[str, Any] = {
            "store": True,
            "label": label,
            "id": label.encode("ascii"),
            "capabilities": _SIGN_ONLY,
            "private_template": _PRIVATE_TEMPLATE,
            "public_template": {Attribute.VERIFY: True, Attribute.ENCRYPT: False},
        }
        if alg in ("RS256", "PS256"):
            return session.generate_keypair(KeyType.RSA, self.rsa_bits, **common)
        if alg == "ES256":
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
            )
            return params.generate_keypair(**common)
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: ED25519_PARAMS}, local=True
        )
        return params.generate_keypair(mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, **common)

    @staticmethod
    def _public_jwk(alg: str, public: pkcs11.PublicKey) -> dict[str, Any]:
        jwk: dict[str, Any]
        if alg in ("RS256", "PS256"):
            jwk = {
                "kty": "RSA",
                "n": b64u(bytes(public[Attribute.MODULUS])),
                "e": b64u(bytes(public[Attribute.PUBLIC_EXPONENT])),
            }
        elif alg == "ES256":
            point = _ec_point(bytes(public[Attribute.EC_POINT]), 65)
            jwk = {"kty": "EC", "crv": "P-256", "x": b64u(point[1:33]), "y": b64u(point[33:])}
        else:
            point = _ec_point(bytes(public[Attribute.EC_POINT]), 32)
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(point)}
        kid = thumbprint(jwk)
        return {**jwk, "kid": kid, "use": "sig", "alg": alg}

    def _create(self, alg: str) -> NewKey:
        check_alg(alg)
        label = LABEL_PREFIX + secrets.token_hex(12)
        with self.token.lock:
            public, _private = self._generate_pair(alg, label)
            jwk = self._public_jwk(alg, public)
        new = NewKey(jwk["kid"], jwk, hsm_label=label)
        try:
            self._self_test(new, alg)
        except Exception:
            self._discard(new)
            raise
        return new

    def _self_test(self, new: NewKey, alg: str) -> None:
        """Sign once and verify with the published key: catches a module that encodes the
        public point or the signature in a form relying parties would not accept."""
        token = Pkcs11SigningKey(self.token, new.hsm_label or "", new.kid, alg).sign_jwt(
            {"self-test": new.kid}
        )
        try:
            jwt.decode(
                token, import_public_jwk(new.public_jwk), algorithms=[alg], registry=JWS_REGISTRY
            )
        except Exception as exc:
            raise KeyStoreError(f"HSM key self-test failed for {alg}: {exc}") from None

    def _discard(self, new: NewKey) -> None:
        if new.hsm_label:
            self._destroy_objects(new.hsm_label)

    def _destroy_objects(self, label: str) -> None:
        with self.token.lock:
            session = self.token.admin()
            for obj in list(session.get_objects({Attribute.LABEL: label})):
                obj.destroy()
        self.token.forget(label)

    # -- hooks ------------------------------------------------------------------------------
    def _load_signer(self, row: SigningKeyRow) -> SigningKey:
        if not row.hsm_label:
            raise KeyStoreError(f"key {row.kid} has no HSM object")
        self.token.private_key(row.hsm_label)  # fail now, at load, if the object is missing
        return Pkcs11SigningKey(self.token, row.hsm_label, row.kid, row.alg)

    def _destroy(self, txn: Txn, row: SigningKeyRow) -> None:
        # After commit: a rolled-back revocation must not have destroyed the key.
        label = row.hsm_label
        if label:
            destroy: Callable[[], None] = lambda: self._destroy_objects(label)  # noqa: E731
            txn.after_commit.append(destroy)

    def check(self) -> None:
        """Every published key's private object is in the token, sensitive, not extractable."""
        super().check()
        for info in self.list_keys():
            if info.state not in PUBLISHED_STATES or not info.hsm_label:
                continue
            key = self.token.private_key(info.hsm_label)
            if not key[Attribute.SENSITIVE] or key[Attribute.EXTRACTABLE]:
                raise KeyStoreError(f"HSM key {info.kid} is exportable; refusing to use it")
