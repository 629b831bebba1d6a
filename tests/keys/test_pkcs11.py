"""Pkcs11KeyStore against a real SoftHSM2 token: keys born and kept in the module.

The contract suite already signs, rotates and revokes through the HSM; these tests check
what only a hardware store promises: the private key cannot be read out, the ES256 signature
is the raw ``r || s`` form, destroyed means gone from the token, a wrong PIN refuses.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive
from sqlalchemy import select

from idp.storage.db import Database
from idp.storage.models import SigningKey
from keys.pkcs11 import Pkcs11KeyStore
from keys.store import SUPPORTED_ALGS, KeyStoreError
from tests.keys.conftest import POLICY, REFRESH, RSA_BITS, SoftHsm
from tests.keys.relying_party import verify

pytestmark = pytest.mark.hsm


def make(db: Database, hsm: SoftHsm, **kw: Any) -> Pkcs11KeyStore:
    options: dict[str, Any] = {
        "module": hsm.module,
        "token_label": hsm.token_label,
        "pin": hsm.pin,
        "algorithms": SUPPORTED_ALGS,
        "rsa_bits": RSA_BITS,
        "policy": POLICY,
        "refresh_seconds": REFRESH,
    }
    options.update(kw)
    return Pkcs11KeyStore(db, **options)


def objects(hsm: SoftHsm, label: str) -> list[Any]:
    """What the token holds under ``label``.  The store has logged this process in already,
    and a PKCS#11 login is per process, so this session opens without the PIN."""
    token = pkcs11.lib(hsm.module).get_token(token_label=hsm.token_label)
    with token.open() as session:
        return [
            (o.object_class, {a: _try(o, a) for a in PRIVATE_ATTRIBUTES})
            for o in session.get_objects({Attribute.LABEL: label})
        ]


PRIVATE_ATTRIBUTES = (
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.LOCAL,
    Attribute.DECRYPT,
    Attribute.PRIVATE_EXPONENT,
    Attribute.VALUE,
)


def _try(obj: Any, attr: Attribute) -> Any:
    try:
        return obj[attr]
    except AttributeSensitive:
        return "sensitive"
    except Exception as exc:
        return type(exc).__name__


@pytest.fixture
def store(db: Database, softhsm: SoftHsm) -> Pkcs11KeyStore:
    s = make(db, softhsm)
    s.ensure_keys()
    return s


def test_private_keys_never_leave_the_module(
    store: Pkcs11KeyStore, db: Database, softhsm: SoftHsm
) -> None:
    # checklist 98: no private key material outside the HSM, not even encrypted
    with db.session() as session:
        rows = session.scalars(select(SigningKey)).all()
    assert len(rows) == 2 * len(SUPPORTED_ALGS)
    for row in rows:
        assert row.backend == "pkcs11" and row.hsm_label
        assert row.private_ciphertext is None and row.kek_id is None
        found = dict(objects(softhsm, row.hsm_label))
        private = found[ObjectClass.PRIVATE_KEY]
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        assert private[Attribute.LOCAL] is True  # generated inside, never imported
        assert private[Attribute.DECRYPT] is False  # a signing key only
        if row.alg in ("RS256", "PS256"):
            assert private[Attribute.PRIVATE_EXPONENT] == "sensitive"
        else:
            assert private[Attribute.VALUE] == "sensitive"
    store.check()


def test_es256_signature_is_raw_r_s(store: Pkcs11KeyStore) -> None:
    token = store.signing_key("ES256").sign_jwt({"sub": "x"})
    head, body, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    assert len(raw) == 64  # RFC 7518 §3.4: R || S, 32 bytes each, not DER
    kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    jwk = next(k for k in store.public_jwks()["keys"] if k["kid"] == kid)
    x = int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "="), "big")
    y = int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "="), "big")
    public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_hsm_tokens_verify_independently(store: Pkcs11KeyStore, alg: str) -> None:
    token = store.signing_key(alg).sign_jwt({"sub": "x", "name": "李四"})
    assert verify(token, store.public_jwks())["name"] == "李四"


def test_revoked_and_removed_keys_are_destroyed_in_the_token(
    store: Pkcs11KeyStore, db: Database, softhsm: SoftHsm
) -> None:
    import datetime as dt

    from idp.storage.models import utcnow

    revoked = store.signing_key("EdDSA")
    label = revoked.label  # type: ignore[attr-defined]
    store.revoke(revoked.kid)
    assert objects(softhsm, label) == []
    retired = store.signing_key("ES256")
    later = utcnow() + dt.timedelta(days=91)
    store.rotate(later)
    # Retired keys keep their HSM object (workers may still sign for refresh_seconds) ...
    assert objects(softhsm, retired.label) != []  # type: ignore[attr-defined]
    store.rotate(later + POLICY.retention)
    # ... until they are removed.
    assert objects(softhsm, retired.label) == []  # type: ignore[attr-defined]


def test_check_fails_when_an_hsm_object_is_missing(store: Pkcs11KeyStore, softhsm: SoftHsm) -> None:
    label = store.signing_key("RS256").label  # type: ignore[attr-defined]
    store._destroy_objects(label)
    fresh = make(store.db, softhsm)
    with pytest.raises(KeyStoreError, match="missing"):
        fresh.check()


def _sign_in_child(hsm: SoftHsm, url: str, out: Any, pin: str) -> None:
    import os

    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    db = Database(url)
    try:
        store = make(db, hsm, pin=pin)
        out.put(("ok", store.signing_key("ES256").sign_jwt({"sub": "child"})))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        db.dispose()


def _run_child(method: str, hsm: SoftHsm, url: str, pin: str) -> tuple[str, str]:
    ctx = multiprocessing.get_context(method)
    out = ctx.Queue()
    proc = ctx.Process(target=_sign_in_child, args=(hsm, url, out, pin))
    proc.start()
    result: tuple[str, str] = out.get(timeout=60)
    proc.join(timeout=30)
    return result


def test_wrong_pin_refuses(store: Pkcs11KeyStore, softhsm: SoftHsm, database_url: str) -> None:
    # In a fresh process: within one process the module's login is shared by every session.
    status, message = _run_child("spawn", softhsm, database_url, "000000")
    assert status == "error" and "cannot log in" in message
    assert softhsm.pin not in message


def test_a_new_process_signs_with_the_same_hsm_keys(
    store: Pkcs11KeyStore, softhsm: SoftHsm, database_url: str
) -> None:
    status, token = _run_child("spawn", softhsm, database_url, softhsm.pin)
    assert status == "ok", token
    assert verify(token, store.public_jwks())["sub"] == "child"


def _sign_after_fork(store: Pkcs11KeyStore, out: Any) -> None:
    # What a forked gunicorn worker does with the store it inherited (the database pools are
    # the app's business: SQLAlchemy's rule is to drop inherited connections after a fork).
    for engine in store.db.engines:
        engine.dispose(close=False)
    try:
        out.put(("ok", store.signing_key("ES256").sign_jwt({"sub": "child"})))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_a_forked_worker_reinitializes_the_module(store: Pkcs11KeyStore) -> None:
    # gunicorn forks workers from a parent that may have used the HSM already (PKCS#11
    # §6.6.1: the child must initialize Cryptoki again, and sessions do not survive).
    store.signing_key("ES256").sign_jwt({"sub": "parent"})
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_sign_after_fork, args=(store, out))
    proc.start()
    status, token = out.get(timeout=60)
    proc.join(timeout=30)
    assert status == "ok", token
    assert verify(token, store.public_jwks())["sub"] == "child"
    assert store.signing_key("ES256").sign_jwt({"sub": "parent again"})
