"""The KeyStore contract, run against every implementation: SqlKeyStore (on the run's SQLite
or PostgreSQL), Pkcs11KeyStore (a real SoftHSM2 token) and StaticKeyStore.

Time is passed to ``rotate(now)`` explicitly, so a year of rotations takes milliseconds; the
tokens themselves carry real ``exp`` values, so the independent relying party
(:mod:`tests.keys.relying_party`) checks them as it would in production.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from jose import jwt as jose_jwt
from joserfc import jwt as joserfc_jwt
from joserfc.errors import BadSignatureError
from joserfc.jws import extract_compact

from keys.software import JWS_REGISTRY, PRIVATE_MEMBERS
from keys.store import SUPPORTED_ALGS, KeyState, KeyStore, KeyStoreError, ManagedKeyStore
from tests.keys.conftest import POLICY, TOKEN_LIFETIME, StoreFactory
from tests.keys.relying_party import Rejected, verify

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "https://idp.test", "sub": "u1", "aud": "rp", "iat": now,
            "exp": now + TOKEN_LIFETIME, **extra}  # fmt: skip


def accepted_by_us(store: KeyStore, token: str) -> bool:
    """What our own endpoints do (userinfo, introspection): find(kid), then verify."""
    header = extract_compact(token.encode()).protected
    key = store.find(header["kid"])
    if key is None:
        return False
    alg = header["alg"]
    try:
        joserfc_jwt.decode(token, key, algorithms=[alg], registry=JWS_REGISTRY)
    except BadSignatureError:
        return False
    return True


def by_state(store: ManagedKeyStore, alg: str, state: KeyState) -> list[str]:
    return [k.kid for k in store.list_keys() if k.alg == alg and k.state == state]


@pytest.fixture
def store(make_store: StoreFactory) -> ManagedKeyStore:
    s: ManagedKeyStore = make_store()
    s.rotate(T0)
    return s


def test_implements_the_protocols(store: ManagedKeyStore) -> None:
    assert isinstance(store, KeyStore)
    assert isinstance(store, ManagedKeyStore)


def test_bootstrap_gives_one_active_and_one_published_next_key_per_alg(
    store: ManagedKeyStore,
) -> None:
    # checklist 96: the key that will sign next is in the JWKS from the start
    published = {k["kid"] for k in store.public_jwks()["keys"]}
    for alg in SUPPORTED_ALGS:
        active = by_state(store, alg, KeyState.ACTIVE)
        upcoming = by_state(store, alg, KeyState.NEXT)
        assert len(active) == 1 and len(upcoming) == 1
        assert store.signing_key(alg).kid == active[0]
        assert set(active + upcoming) <= published
    assert store.rotate(T0) == []  # nothing more to do: idempotent
    assert store.maybe_rotate(T0 + DAY) == []


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_tokens_verify_independently_and_at_our_endpoints(store: ManagedKeyStore, alg: str) -> None:
    key = store.signing_key(alg)
    assert key.alg == alg
    token = key.sign_jwt(claims(name="张三"), {"typ": "at+jwt"})
    header = extract_compact(token.encode()).protected
    assert header == {"typ": "at+jwt", "alg": alg, "kid": key.kid}
    assert verify(token, store.public_jwks())["name"] == "张三"
    assert accepted_by_us(store, token)
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(Rejected):
        verify(forged, store.public_jwks())


def test_jwks_hygiene(store: ManagedKeyStore) -> None:
    # checklist 49: public members only, unique kid, use/alg set, RSA >= 2048 or P-256 (Ed25519)
    jwks = store.public_jwks()
    kids = [k["kid"] for k in jwks["keys"]]
    assert len(kids) == len(set(kids)) == 2 * len(SUPPORTED_ALGS)
    for jwk in jwks["keys"]:
        assert not PRIVATE_MEMBERS.intersection(jwk), jwk
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"}.intersection(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] in SUPPORTED_ALGS
        if jwk["kty"] == "RSA":
            assert len(jwk["n"]) * 6 >= 2048 - 6
        elif jwk["kty"] == "EC":
            assert jwk["crv"] == "P-256" and jwk["alg"] == "ES256"
        else:
            assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA"
    # Mutating what we were given must not alter what the next caller gets.
    jwks["keys"][0]["d"] = "leak"
    assert "d" not in store.public_jwks()["keys"][0]
    for info in store.list_keys(include_removed=True):
        assert not PRIVATE_MEMBERS.intersection(info.as_dict())
        assert "BEGIN" not in json.dumps(info.as_dict())


def test_rs256_keys_lead_the_jwks_for_python_jose(store: ManagedKeyStore) -> None:
    # Issue 9 defect 4: python-jose, given the whole JWKS, stops at the first key whose type
    # differs from the token's alg, so every RS256 key (retired ones too) must come first.
    old = store.signing_key("RS256")
    token = old.sign_jwt(claims())
    store.rotate(T0 + 90 * DAY)
    new = store.signing_key("RS256")
    assert new.kid != old.kid
    jwks = store.public_jwks()
    algs = [k["alg"] for k in jwks["keys"]]
    rs256 = algs.count("RS256")
    assert rs256 == 3 and algs[:rs256] == ["RS256"] * rs256  # active, next, retired
    assert [k["kid"] for k in jwks["keys"][:rs256] if k["kid"] in (new.kid, old.kid)] == [
        new.kid,
        old.kid,
    ]
    for signed in (new.sign_jwt(claims()), token):
        assert jose_jwt.decode(signed, jwks, algorithms=["RS256"], audience="rp")["sub"] == "u1"


def test_kid_is_the_rfc7638_thumbprint(store: ManagedKeyStore) -> None:
    from joserfc.jwk import import_key

    for jwk in store.public_jwks()["keys"]:
        assert import_key(jwk).thumbprint() == jwk["kid"]


def test_cache_lifetime_never_exceeds_prepublication(store: ManagedKeyStore) -> None:
    # checklist 49 ("Cache-Control allows refetch") and 96 (pre-publication >= cache TTL)
    assert 0 < store.jwks_max_age() <= POLICY.prepublish.total_seconds()


def test_planned_rotation_with_tokens_outstanding(store: ManagedKeyStore) -> None:
    # checklist 96 and 121: pre-published, old tokens keep verifying until they expire
    before = store.public_jwks()  # what a relying party cached before the rotation
    old = {alg: store.signing_key(alg) for alg in SUPPORTED_ALGS}
    upcoming = {alg: by_state(store, alg, KeyState.NEXT)[0] for alg in SUPPORTED_ALGS}
    tokens = {alg: old[alg].sign_jwt(claims()) for alg in SUPPORTED_ALGS}

    assert store.maybe_rotate(T0 + 89 * DAY) == []
    when = T0 + 90 * DAY
    changed = store.maybe_rotate(when)
    assert changed, "rotation was due"
    assert store.rotate(when) == []  # it happens once

    after = store.public_jwks()
    for alg in SUPPORTED_ALGS:
        new = store.signing_key(alg)
        assert new.kid == upcoming[alg] != old[alg].kid
        # A relying party with the JWKS from before the rotation accepts the new tokens:
        assert verify(new.sign_jwt(claims()), before)
        # and tokens signed before the rotation verify against the JWKS after it.
        assert verify(tokens[alg], after)
        assert accepted_by_us(store, tokens[alg])
        assert len(by_state(store, alg, KeyState.NEXT)) == 1  # a fresh next key, published

    retired = [k for k in store.list_keys() if k.state == KeyState.RETIRED]
    assert {k.kid for k in retired} == {k.kid for k in old.values()}
    for info in retired:
        assert info.retired_at == when and info.remove_after is not None
        # checklist 96: the old key stays in JWKS for >= the longest token lifetime
        assert info.remove_after - info.retired_at >= dt.timedelta(seconds=TOKEN_LIFETIME)

    # Still published just before remove_after ...
    store.rotate(when + POLICY.retention - dt.timedelta(seconds=1))
    assert {k.kid for k in old.values()} <= {k["kid"] for k in store.public_jwks()["keys"]}
    # ... and gone after it, as everything it signed has expired by then.
    store.rotate(when + POLICY.retention)
    published = {k["kid"] for k in store.public_jwks()["keys"]}
    for alg in SUPPORTED_ALGS:
        assert old[alg].kid not in published
        assert store.find(old[alg].kid) is None
    assert {
        k.state for k in store.list_keys(include_removed=True) if k.kid == old["ES256"].kid
    } == {KeyState.REMOVED}


def test_forced_rotation_waits_for_the_end_of_prepublication(store: ManagedKeyStore) -> None:
    # checklist 96 and issue 14 item 11: "rotate now" is refused until the next key has been
    # published for prepublish, and the store says when that is (not the scheduled rotation).
    for alg in SUPPORTED_ALGS:
        assert store.next_key_ready(alg) == T0 + POLICY.prepublish
    assert store.next_change() == T0 + POLICY.rotation_period
    early = T0 + POLICY.prepublish - dt.timedelta(seconds=1)
    assert store.rotate(early, force=["ES256"]) == []
    assert store.next_key_ready("ES256") == T0 + POLICY.prepublish
    ready = T0 + POLICY.prepublish
    assert len(store.rotate(ready, force=["ES256"])) == 3  # retire, activate, a new next key
    assert store.next_key_ready("ES256") == ready + POLICY.prepublish
    assert store.next_key_ready("RS256") == T0 + POLICY.prepublish


def test_a_year_of_rotations(store: ManagedKeyStore) -> None:
    now = T0
    seen: set[str] = {store.signing_key("ES256").kid}
    for _ in range(8):
        now += 46 * DAY
        store.maybe_rotate(now)
        store.maybe_rotate(now + dt.timedelta(hours=2))
        seen.add(store.signing_key("ES256").kid)
        for alg in SUPPORTED_ALGS:
            assert len(by_state(store, alg, KeyState.ACTIVE)) == 1
            assert len(by_state(store, alg, KeyState.NEXT)) == 1
            assert len(by_state(store, alg, KeyState.RETIRED)) <= 1
    assert len(seen) == 5  # T0, then every 90 days over 368 days


def test_emergency_revocation(store: ManagedKeyStore) -> None:
    # checklist 97: K leaves the JWKS at once, its tokens are refused, new tokens use K2
    compromised = store.signing_key("ES256")
    replacement = by_state(store, "ES256", KeyState.NEXT)[0]
    cached_by_rp = store.public_jwks()
    token = compromised.sign_jwt(claims())
    assert accepted_by_us(store, token)

    store.revoke(compromised.kid)

    assert compromised.kid not in {k["kid"] for k in store.public_jwks()["keys"]}
    assert store.find(compromised.kid) is None
    assert not accepted_by_us(store, token)
    with pytest.raises(Rejected):
        verify(token, store.public_jwks())
    k2 = store.signing_key("ES256")
    assert k2.kid == replacement
    # K2 was already published, so even a relying party with a cached JWKS accepts it.
    assert verify(k2.sign_jwt(claims()), cached_by_rp)
    assert len(by_state(store, "ES256", KeyState.NEXT)) == 1
    assert by_state(store, "ES256", KeyState.REVOKED) == [compromised.kid]
    # Other algorithms are untouched.
    assert store.signing_key("RS256").kid in {k["kid"] for k in cached_by_rp["keys"]}


def test_revoking_a_next_or_retired_key(store: ManagedKeyStore) -> None:
    upcoming = by_state(store, "EdDSA", KeyState.NEXT)[0]
    store.revoke(upcoming)
    assert store.find(upcoming) is None
    assert len(by_state(store, "EdDSA", KeyState.NEXT)) == 1  # replaced
    store.rotate(T0 + 91 * DAY)  # the replacement is old enough by then
    retired = by_state(store, "EdDSA", KeyState.RETIRED)[0]
    store.revoke(retired)
    assert store.find(retired) is None


def test_revoking_twice_or_unknown_is_an_error(store: ManagedKeyStore) -> None:
    kid = store.signing_key("RS256").kid
    store.revoke(kid)
    with pytest.raises(KeyStoreError):
        store.revoke(kid)
    with pytest.raises(KeyStoreError):
        store.revoke("no-such-kid")


def test_generate_by_hand(store: ManagedKeyStore) -> None:
    old = store.signing_key("PS256").kid
    extra = store.generate("PS256")
    assert extra in {k["kid"] for k in store.public_jwks()["keys"]}
    assert store.signing_key("PS256").kid == old  # a next key does not sign yet
    forced = store.generate("PS256", KeyState.ACTIVE)
    assert store.signing_key("PS256").kid == forced
    assert by_state(store, "PS256", KeyState.ACTIVE) == [forced]  # one active per alg
    assert old in by_state(store, "PS256", KeyState.RETIRED)


def test_find_unknown_kid(store: ManagedKeyStore) -> None:
    assert store.find("unknown") is None
    assert store.find("") is None


def test_refuses_weak_or_unknown_algorithms(make_store: StoreFactory) -> None:
    with pytest.raises(KeyStoreError):
        make_store(rsa_bits=1024)
    with pytest.raises(KeyStoreError):
        make_store(algorithms=("HS256",))
    store = make_store(algorithms=("ES256",))
    store.rotate(T0)
    with pytest.raises(KeyStoreError):
        store.signing_key("RS256")
    with pytest.raises(KeyStoreError):
        store.generate("none")
