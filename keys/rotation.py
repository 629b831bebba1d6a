"""Key rotation as an explicit, pure strategy: given the keys and the time, what changes.

The schedule follows the pattern of dex ``server/signer/rotation.go`` and the checklist
(items 96, 97, 121):

* every algorithm always has one *next* key, published in the JWKS but not yet signing, so a
  relying party that honours our ``Cache-Control`` already holds the key that will sign next,
  both at a planned rotation and after an emergency revocation;
* the *active* key is replaced after ``rotation_period``, but only once the next key has been
  published for at least ``prepublish`` (the JWKS cache lifetime plus the workers' refresh
  interval): "a new key is published in JWKS before it signs" (checklist 96);
* a *retired* key stays published for ``retention`` (the longest token lifetime plus the
  refresh interval plus a clock-skew margin), so "the old key stays in JWKS for at least the
  longest ID/AT lifetime" and every token it signed still verifies until it expires;
* a *revoked* key is gone at once (checklist 97); when it was the active key the next key is
  promoted immediately, however young, because something has to sign.

:func:`plan` is pure (no clock, no database) so the SQL, PKCS#11 and static stores share it
and the tests can walk a whole year of rotations in microseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from keys.store import SUPPORTED_ALGS, KeyInfo, KeyState, KeyStoreError

if TYPE_CHECKING:
    from idp.config import Settings

#: Tolerated clock difference between us and a relying party when deciding a key may go.
CLOCK_SKEW = dt.timedelta(minutes=5)

StepKind = Literal["remove", "retire", "activate", "generate_active", "generate_next"]


@dataclass(frozen=True)
class Step:
    """One lifecycle change; ``kid`` is None for the ``generate_*`` steps."""

    kind: StepKind
    alg: str
    kid: str | None = None
    reason: str = "scheduled"


@dataclass(frozen=True)
class RotationPolicy:
    """When keys move on.  Build it with :meth:`from_settings` so it agrees with the tokens."""

    rotation_period: dt.timedelta = dt.timedelta(days=90)
    prepublish: dt.timedelta = dt.timedelta(seconds=3600 + 5)
    retention: dt.timedelta = dt.timedelta(seconds=600 + 5) + CLOCK_SKEW
    jwks_cache_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.jwks_cache_seconds < 0:
            raise KeyStoreError("the JWKS cache lifetime cannot be negative")
        if self.prepublish < dt.timedelta(seconds=self.jwks_cache_seconds):
            # Checklist 96: pre-publication must be at least the JWKS cache TTL.
            raise KeyStoreError(
                "a next key must be published at least one JWKS cache lifetime before it signs"
            )
        if self.rotation_period <= self.prepublish:
            raise KeyStoreError(
                f"the rotation period ({self.rotation_period}) must be longer than the "
                f"pre-publication time ({self.prepublish}); shorten YITONG_JWKS_CACHE_SECONDS "
                "or lengthen YITONG_KEY_ROTATION_DAYS"
            )

    @classmethod
    def from_settings(cls, settings: Settings, refresh_seconds: float) -> RotationPolicy:
        """Derive the schedule from the token lifetimes and the JWKS cache lifetime.

        ``refresh_seconds`` is how stale a worker's view of the keys may be: a worker may keep
        signing with a just-retired key that long, and sees a new next key that late.
        """
        refresh = dt.timedelta(seconds=refresh_seconds)
        longest_token = max(
            settings.id_token_lifetime,
            settings.access_token_lifetime,
            settings.authorization_code_lifetime,
        )
        return cls(
            rotation_period=dt.timedelta(days=settings.key_rotation_days),
            prepublish=dt.timedelta(seconds=settings.jwks_cache_seconds) + refresh,
            retention=dt.timedelta(seconds=longest_token) + refresh + CLOCK_SKEW,
            jwks_cache_seconds=settings.jwks_cache_seconds,
        )


def _activated(info: KeyInfo) -> dt.datetime:
    return info.activated_at or info.created_at


def _prepublished(info: KeyInfo, policy: RotationPolicy) -> dt.datetime:
    """When a next key has been published long enough to sign (checklist 96)."""
    return info.created_at + policy.prepublish


def next_key_ready(keys: Iterable[KeyInfo], alg: str, policy: RotationPolicy) -> dt.datetime | None:
    """The end of pre-publication of ``alg``'s next key (the oldest, which :func:`plan`
    promotes): the earliest a rotation, even a forced one, can make it sign.

    This, not the next scheduled rotation, is what an operator whose ``rotate --force`` was
    refused needs to hear (issue 14 item 11).  None when ``alg`` has no next key.
    """
    nexts = [k for k in keys if k.alg == alg and k.state == KeyState.NEXT]
    return min(_prepublished(k, policy) for k in nexts) if nexts else None


def plan(
    keys: Iterable[KeyInfo],
    algorithms: Sequence[str],
    now: dt.datetime,
    policy: RotationPolicy,
    force: Collection[str] = (),
) -> list[Step]:
    """The steps that bring ``keys`` up to date at ``now`` (empty when nothing is due).

    Algorithms are the configured ones plus any that already has a live key (one generated
    by hand with ``yitong keys generate`` is rotated like the others).  For the algorithms in
    ``force`` the active key is treated as due (an operator's "rotate now"), but the next key
    must still have been published for ``prepublish``: forcing never skips pre-publication.
    """
    live = [k for k in keys if k.state in (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED)]
    wanted = list(dict.fromkeys([*algorithms, *(k.alg for k in live if k.state != "retired")]))
    steps: list[Step] = []
    for key in live:
        if key.state == KeyState.RETIRED and key.remove_after and key.remove_after <= now:
            steps.append(Step("remove", key.alg, key.kid, "expired"))
    for alg in wanted:
        if alg not in SUPPORTED_ALGS:
            raise KeyStoreError(f"unsupported algorithm {alg!r}")
        actives = sorted(
            (k for k in live if k.alg == alg and k.state == KeyState.ACTIVE),
            key=_activated,
            reverse=True,
        )
        nexts = sorted(
            (k for k in live if k.alg == alg and k.state == KeyState.NEXT),
            key=lambda k: k.created_at,
        )
        # One active key per algorithm: an extra one (a hand-made key, a restored backup)
        # is retired, never silently left signing beside the other.
        steps.extend(Step("retire", alg, k.kid, "duplicate active key") for k in actives[1:])
        current = actives[0] if actives else None
        upcoming = nexts[0] if nexts else None
        if current is None:
            if upcoming is not None:
                steps.append(Step("activate", alg, upcoming.kid, "no active key"))
                upcoming = None
            else:
                steps.append(Step("generate_active", alg, None, "no active key"))
        elif (
            (alg in force or _activated(current) + policy.rotation_period <= now)
            and upcoming is not None
            and _prepublished(upcoming, policy) <= now
        ):
            why = "rotated by hand" if alg in force else "scheduled"
            steps.append(Step("retire", alg, current.kid, why))
            steps.append(Step("activate", alg, upcoming.kid, why))
            upcoming = None
        if upcoming is None:
            steps.append(Step("generate_next", alg))
    return steps


def next_due(
    keys: Iterable[KeyInfo], algorithms: Sequence[str], policy: RotationPolicy
) -> dt.datetime:
    """The earliest time at which :func:`plan` would change something.

    Workers compare this against the clock on every request (:meth:`maybe_rotate`), so it
    must be computed from the cached key list alone.
    """
    keys = list(keys)
    due = dt.datetime.max.replace(tzinfo=dt.UTC)
    earliest = dt.datetime.min.replace(tzinfo=dt.UTC)
    live = [k for k in keys if k.state in (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED)]
    wanted = dict.fromkeys([*algorithms, *(k.alg for k in live if k.state != "retired")])
    for key in live:
        if key.state == KeyState.RETIRED and key.remove_after:
            due = min(due, key.remove_after)
    for alg in wanted:
        actives = [k for k in live if k.alg == alg and k.state == KeyState.ACTIVE]
        nexts = [k for k in live if k.alg == alg and k.state == KeyState.NEXT]
        if len(actives) != 1 or not nexts:
            return earliest
        rotate_at = max(
            _activated(actives[0]) + policy.rotation_period,
            min(_prepublished(k, policy) for k in nexts),
        )
        due = min(due, rotate_at)
    return due
