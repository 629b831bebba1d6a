"""The rotation strategy on its own (pure: no clock, no database, no keys)."""

from __future__ import annotations

import datetime as dt

import pytest

from keys.rotation import CLOCK_SKEW, RotationPolicy, next_due, plan
from keys.store import KeyInfo, KeyState, KeyStoreError
from tests.keys.conftest import POLICY

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def key(kid: str, state: KeyState, created: dt.datetime, **kw: dt.datetime) -> KeyInfo:
    return KeyInfo(kid=kid, alg="ES256", state=state, backend="t", created_at=created, **kw)


def kinds(steps: list) -> list[tuple[str, str | None]]:  # type: ignore[type-arg]
    return [(s.kind, s.kid) for s in steps]


def test_empty_store_gets_active_and_next() -> None:
    assert kinds(plan([], ["ES256"], T0, POLICY)) == [
        ("generate_active", None),
        ("generate_next", None),
    ]
    assert next_due([], ["ES256"], POLICY) < T0


def test_nothing_due_until_the_rotation_period() -> None:
    keys = [key("a", KeyState.ACTIVE, T0, activated_at=T0), key("n", KeyState.NEXT, T0)]
    assert plan(keys, ["ES256"], T0 + 89 * DAY, POLICY) == []
    assert next_due(keys, ["ES256"], POLICY) == T0 + POLICY.rotation_period
    steps = plan(keys, ["ES256"], T0 + 90 * DAY, POLICY)
    assert kinds(steps) == [("retire", "a"), ("activate", "n"), ("generate_next", None)]


def test_a_young_next_key_waits_for_prepublication() -> None:
    # checklist 96: published at least one JWKS cache lifetime before it signs
    young = T0 + 90 * DAY - dt.timedelta(minutes=10)
    keys = [key("a", KeyState.ACTIVE, T0, activated_at=T0), key("n", KeyState.NEXT, young)]
    assert plan(keys, ["ES256"], T0 + 90 * DAY, POLICY) == []
    assert next_due(keys, ["ES256"], POLICY) == young + POLICY.prepublish
    assert [s.kind for s in plan(keys, ["ES256"], young + POLICY.prepublish, POLICY)] == [
        "retire",
        "activate",
        "generate_next",
    ]


def test_missing_next_key_is_made_and_active_waits() -> None:
    keys = [key("a", KeyState.ACTIVE, T0, activated_at=T0)]
    assert kinds(plan(keys, ["ES256"], T0 + 200 * DAY, POLICY)) == [("generate_next", None)]


def test_no_active_key_promotes_the_next_at_once() -> None:
    # checklist 97: after revoking the active key the (published) next key signs immediately
    keys = [key("n", KeyState.NEXT, T0), key("r", KeyState.REVOKED, T0)]
    assert kinds(plan(keys, ["ES256"], T0, POLICY)) == [("activate", "n"), ("generate_next", None)]


def test_duplicate_active_keys_are_reduced_to_one() -> None:
    keys = [
        key("old", KeyState.ACTIVE, T0, activated_at=T0),
        key("new", KeyState.ACTIVE, T0, activated_at=T0 + DAY),
        key("n", KeyState.NEXT, T0),
    ]
    assert kinds(plan(keys, ["ES256"], T0 + 2 * DAY, POLICY)) == [("retire", "old")]


def test_retired_keys_are_removed_after_retention() -> None:
    retired = key("r", KeyState.RETIRED, T0, retired_at=T0, remove_after=T0 + POLICY.retention)
    keys = [retired, key("a", KeyState.ACTIVE, T0, activated_at=T0), key("n", KeyState.NEXT, T0)]
    assert plan(keys, ["ES256"], T0 + POLICY.retention - dt.timedelta(seconds=1), POLICY) == []
    assert kinds(plan(keys, ["ES256"], T0 + POLICY.retention, POLICY)) == [("remove", "r")]
    assert next_due(keys, ["ES256"], POLICY) == T0 + POLICY.retention


def test_hand_made_algorithms_are_rotated_too() -> None:
    keys = [key("a", KeyState.ACTIVE, T0, activated_at=T0)]
    assert kinds(plan(keys, [], T0, POLICY)) == [("generate_next", None)]


def test_policy_from_settings_covers_tokens_and_caches() -> None:
    from idp.config import load_settings

    settings = load_settings(environ={}, id_token_lifetime=900, jwks_cache_seconds=1800)
    policy = RotationPolicy.from_settings(settings, refresh_seconds=5)
    assert policy.rotation_period == dt.timedelta(days=90)
    assert policy.prepublish == dt.timedelta(seconds=1805)
    assert policy.retention == dt.timedelta(seconds=905) + CLOCK_SKEW
    assert policy.jwks_cache_seconds == 1800


def test_inconsistent_schedules_are_refused() -> None:
    with pytest.raises(KeyStoreError, match="JWKS cache"):
        RotationPolicy(prepublish=dt.timedelta(seconds=10), jwks_cache_seconds=3600)
    with pytest.raises(KeyStoreError, match="rotation period"):
        RotationPolicy(rotation_period=dt.timedelta(hours=1), jwks_cache_seconds=3600)
