"""Signing throughput per algorithm: software keys (SqlKeyStore) and SoftHSM2 (Pkcs11KeyStore).

Each row signs a typical ID token (about 700 bytes of claims) through the key store exactly as
the token endpoint does (``store.signing_key(alg).sign_jwt(claims)``: snapshot lookup, cached
key object, JWS assembly, signature), one token at a time in one thread, for a fixed window.
It reports tokens per second and CPU milliseconds per token of this process (SoftHSM2 is a
library, so its work is in this process too).  Two reference rows put the figures in context:

* ``RS256, PEM parsed per call``: what signing costs when the key is re-imported for every
  token (the habit ARCHITECTURE.md warns against; the store keeps key objects per kid);
* ``verify`` rows: what our own endpoints pay to check a token (``find(kid)`` + joserfc).

Usage (from the repository root)::

    python bench/signing.py [--seconds 3] [--rsa-bits 3072] [--no-hsm]

SoftHSM2 rows need ``softhsm2-util`` and the module (Debian ``softhsm2``); a temporary token
is initialized for the run and deleted afterwards.  Prints a Markdown table for
docs/benchmarks.md ("Signing keys").
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joserfc import jwt as joserfc_jwt

from idp.storage.db import Database
from idp.storage.migrate import upgrade
from keys.crypto import Kek
from keys.lifecycle import DatabaseKeyStore
from keys.software import JWS_REGISTRY, import_private_pem
from keys.sql import SqlKeyStore
from keys.store import SUPPORTED_ALGS

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
)

CLAIMS: dict[str, Any] = {
    "iss": "https://id.gov.example",
    "sub": "2f1c9a7e0b4d4a7c9e1f3b5d7a9c1e3f",
    "aud": "c1-social-security",
    "exp": 1_900_000_600,
    "iat": 1_900_000_000,
    "auth_time": 1_899_999_990,
    "nonce": "n-0S6_WzA2Mj",
    "acr": "urn:yitong:acr:mfa",
    "amr": ["pwd", "otp"],
    "sid": "8c1b6f0a2d4e4f6a8b0c2d4e6f8a0b2c",
    "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
    "name": "张三",
    "email": "zhang.san@example.cn",
    "email_verified": True,
    "phone_number": "+8613800000001",
    "phone_number_verified": True,
    "locale": "zh-CN",
    "updated_at": 1_899_000_000,
}


def measure(seconds: float, op: Callable[[], object]) -> tuple[float, float, int]:
    """(operations per second, CPU ms per operation, count) over a ``seconds`` window."""
    for _ in range(3):
        op()  # warm caches (key objects, HSM sessions)
    count = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    deadline = wall0 + seconds
    while time.perf_counter() < deadline:
        op()
        count += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return count / wall, 1000 * cpu / count, count


def rows_for(store: DatabaseKeyStore, label: str, seconds: float) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for alg in SUPPORTED_ALGS:
        rate, cpu, n = measure(seconds, lambda a=alg: store.signing_key(a).sign_jwt(dict(CLAIMS)))  # type: ignore[misc]
        out.append((f"{alg} sign", label, f"{rate:,.0f}", f"{cpu:.3f}", str(n)))
    return out


def verify_rows(store: DatabaseKeyStore, seconds: float) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for alg in SUPPORTED_ALGS:
        token = store.signing_key(alg).sign_jwt(dict(CLAIMS))
        kid = store.signing_key(alg).kid

        def check(t: str = token, k: str = kid, a: str = alg) -> None:
            key = store.find(k)
            assert key is not None
            joserfc_jwt.decode(t, key, algorithms=[a], registry=JWS_REGISTRY)

        rate, cpu, n = measure(seconds, check)
        out.append((f"{alg} verify", "find + joserfc", f"{rate:,.0f}", f"{cpu:.3f}", str(n)))
    return out


def pem_per_call_row(store: SqlKeyStore, seconds: float) -> tuple[str, ...]:
    signer = store.signing_key("RS256")
    pem = signer.key.as_pem(private=True)  # type: ignore[attr-defined]

    def sign() -> None:
        key = import_private_pem(pem, "RS256", signer.kid)
        joserfc_jwt.encode({"alg": "RS256", "kid": signer.kid}, dict(CLAIMS), key)

    rate, cpu, n = measure(seconds, sign)
    return ("RS256, PEM parsed per call", "software", f"{rate:,.0f}", f"{cpu:.3f}", str(n))


def softhsm_token(root: Path) -> tuple[str, str, str] | None:
    util = shutil.which("softhsm2-util")
    module = next((m for m in SOFTHSM_MODULES if os.path.exists(m)), None)
    if util is None or module is None:
        return None
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    label, pin = "bench", "123456"
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "654321"],
        check=True,
        capture_output=True,
    )
    return module, label, pin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rsa-bits", type=int, default=3072)
    parser.add_argument("--no-hsm", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        db = Database(url)
        software = SqlKeyStore(
            db, Kek.generate(), algorithms=SUPPORTED_ALGS, rsa_bits=args.rsa_bits
        )
        software.ensure_keys()
        rows = rows_for(software, "software", args.seconds)
        rows.append(pem_per_call_row(software, args.seconds))
        rows += verify_rows(software, args.seconds)
        hsm = None if args.no_hsm else softhsm_token(Path(tmp))
        if hsm is not None:
            from keys.pkcs11 import Pkcs11KeyStore

            module, label, pin = hsm
            hardware = Pkcs11KeyStore(
                db, module=module, token_label=label, pin=pin, algorithms=SUPPORTED_ALGS,
                rsa_bits=args.rsa_bits,
            )  # fmt: skip
            hardware.ensure_keys()
            rows += rows_for(hardware, "SoftHSM2", args.seconds)
        elif not args.no_hsm:
            print("SoftHSM2 not found: HSM rows skipped", file=sys.stderr)
        db.dispose()

    print(
        f"Python {platform.python_version()}, RSA {args.rsa_bits} bits, "
        f"{args.seconds:g} s per row, one thread\n"
    )
    print("| operation | keys | tokens/s | CPU ms/token | tokens |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
