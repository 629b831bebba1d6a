"""StaticKeyStore specifics: keys from a private JWK set file, refused in production."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keys.software import PRIVATE_MEMBERS, generate_key
from keys.static import StaticKeyStore
from keys.store import KeyStoreError
from tests.keys.relying_party import verify


def write_jwks(path: Path, algs: list[str]) -> list[str]:
    keys = [generate_key(alg, rsa_bits=2048) for alg in algs]
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {**k.as_dict(private=True), "alg": a} for k, a in zip(keys, algs, strict=True)
                ]
            }
        )
    )
    return [str(k.kid) for k in keys]


def test_keys_from_a_jwk_file(tmp_path: Path) -> None:
    path = tmp_path / "dev-keys.json"
    kids = write_jwks(path, ["ES256", "RS256", "ES256"])
    store = StaticKeyStore.from_jwks_file(path, algorithms=("ES256", "RS256"))
    assert store.signing_key("ES256").kid == kids[0]  # the first per algorithm signs
    assert store.signing_key("RS256").kid == kids[1]
    jwks = store.public_jwks()
    assert {k["kid"] for k in jwks["keys"]} == set(kids)
    assert not any(PRIVATE_MEMBERS.intersection(k) for k in jwks["keys"])
    assert verify(store.signing_key("ES256").sign_jwt({"sub": "dev"}), jwks)["sub"] == "dev"


def test_production_refuses_plaintext_keys(tmp_path: Path) -> None:
    path = tmp_path / "dev-keys.json"
    write_jwks(path, ["ES256"])
    with pytest.raises(KeyStoreError, match="production refuses plaintext"):
        StaticKeyStore.from_jwks_file(path, production=True)
    with pytest.raises(KeyStoreError, match="production refuses plaintext"):
        StaticKeyStore(production=True)


def test_bad_files_are_refused(tmp_path: Path) -> None:
    public_only = tmp_path / "public.json"
    key = generate_key("ES256")
    public_only.write_text(json.dumps({"keys": [{**key.as_dict(private=False), "alg": "ES256"}]}))
    with pytest.raises(KeyStoreError, match="no private part"):
        StaticKeyStore.from_jwks_file(public_only)
    no_alg = tmp_path / "no-alg.json"
    no_alg.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    with pytest.raises(KeyStoreError, match="'alg'"):
        StaticKeyStore.from_jwks_file(no_alg)
    with pytest.raises(KeyStoreError, match="not a JWK set"):
        StaticKeyStore.from_jwks_file(tmp_path / "missing.json")
