"""The lockout and second-factor counters in Redis (issue 12 item 2; checklist 80-84, 117).

Same contract as the database's :class:`~idp.interaction.throttle.Counters` (the
:class:`~idp.interaction.throttle.AttemptCounters` protocol; one contract suite runs against
both): an attempt is *reserved* before the password is checked, atomically, so parallel
attempts can never all slip under the threshold.  Here one Lua script does what the database
does with ``UPDATE … WHERE … RETURNING``: Redis runs a script alone, so reading, deciding and
counting on several keys is one indivisible step on every node.

Each counter is a hash ``{f: failures, l: last failure (epoch s), b: blocked until (epoch s)}``.
Counters without a forgetting window (the account lock) are kept ``KEEP_SECONDS`` after the
last failure, so a hard lock outlives any realistic attack and still does not grow Redis
forever; windowed counters (per address) expire with their window.

**Fail closed**: any Redis failure raises :class:`~idp.errors.StateStoreUnavailable`; the login
is answered with a 503 page, never let through unchecked.
"""

from __future__ import annotations

import datetime as dt
import time

from idp.interaction.throttle import Rule, Verdict
from idp.storage.hot import RedisStore

#: Seconds a counter without a window is kept after its last failure (90 days).
KEEP_SECONDS = 90 * 86400

# KEYS: the counters, in order.  ARGV: now, keep, then per key free, base, max, cap, window
# (cap/window -1: none).  Returns per key examined: allowed (1/0), failures, blocked-until
# (text, for the precision), locked (1/0); stops at the first refusal after undoing the
# earlier reservations (as the database's reserve_all rolls them back).
_RESERVE = """
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local o = 2 + (i - 1) * 5
  local free, base, maxd = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local cap, window = tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])
  local v = redis.call('HMGET', key, 'f', 'l', 'b')
  local f, l, b = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local refused = nil
  if cap >= 0 and f >= cap then
    refused = {0, f, '0', 1}
  elseif b > now then
    refused = {0, f, tostring(b), 0}
  end
  if refused then
    for j = 1, i - 1 do
      local earlier = KEYS[j]
      if (tonumber(redis.call('HGET', earlier, 'f')) or 0) > 0 then
        redis.call('HINCRBY', earlier, 'f', -1)
      end
      redis.call('HDEL', earlier, 'b')
    end
    for _, x in ipairs(refused) do table.insert(out, x) end
    return out
  end
  if window >= 0 and l < now - window then f = 1 else f = f + 1 end
  local delay = 0
  if f >= free and f > 0 then
    delay = math.min(base * 2 ^ math.min(f - free, 40), maxd)
  end
  redis.call('HSET', key, 'f', f, 'l', tostring(now))
  if delay > 0 then redis.call('HSET', key, 'b', tostring(now + delay)) end
  if window >= 0 then
    redis.call('EXPIRE', key, math.ceil(window + maxd + 60))
  else
    redis.call('EXPIRE', key, keep)
  end
  for _, x in ipairs({1, f, '0', 0}) do table.insert(out, x) end
end
return out
"""

_RELEASE = """
for _, key in ipairs(KEYS) do
  if (tonumber(redis.call('HGET', key, 'f')) or 0) > 0 then
    redis.call('HINCRBY', key, 'f', -1)
    redis.call('HDEL', key, 'b')
  end
end
for _, key in ipairs(ARGV) do redis.call('DEL', key) end
return 1
"""


def _epoch(now: dt.datetime | None) -> float:
    return now.timestamp() if now is not None else time.time()


def _verdict(allowed: int, failures: int, blocked_until: float, locked: int, now: float) -> Verdict:
    if allowed:
        return Verdict(True, failures)
    if locked:
        return Verdict(False, failures, 0, locked=True)
    return Verdict(False, failures, max(1, int(blocked_until - now + 0.999)))


class RedisCounters:
    """:class:`~idp.interaction.throttle.AttemptCounters` kept in Redis."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def _key(self, key: str) -> str:
        return self.store.key("throttle", key)

    def reserve(self, key: str, rule: Rule, now: dt.datetime | None = None) -> Verdict:
        return self.reserve_all([(key, rule)], now)[0]

    def reserve_all(
        self, items: list[tuple[str, Rule]], now: dt.datetime | None = None
    ) -> list[Verdict]:
        at = _epoch(now)
        args: list[float | int] = [at, KEEP_SECONDS]
        for _key, rule in items:
            cap = -1 if rule.cap is None else rule.cap
            window = -1 if rule.window is None else rule.window
            args += [rule.free, rule.base_delay, rule.max_delay, cap, window]
        keys = [self._key(k) for k, _rule in items]
        flat = self.store.script("reserve", _RESERVE, keys, args)
        verdicts = []
        for i in range(0, len(flat), 4):
            allowed, failures, blocked, locked = flat[i : i + 4]
            verdicts.append(_verdict(int(allowed), int(failures), float(blocked), int(locked), at))
        return verdicts

    def settle(self, *, release: tuple[str, ...] = (), reset: tuple[str, ...] = ()) -> None:
        keys = [self._key(k) for k in release]
        gone = [self._key(k) for k in reset]
        self.store.script("settle", _RELEASE, keys, gone)

    def reset(self, key: str) -> None:
        self.settle(reset=(key,))

    def release(self, key: str) -> None:
        self.settle(release=(key,))

    def failures(self, key: str) -> int:
        value = self.store.command("failures", "HGET", self._key(key), "f")
        return int(value or 0)

    def peek(self, key: str, rule: Rule, now: dt.datetime | None = None) -> Verdict:
        at = _epoch(now)
        f, b = self.store.command("peek", "HMGET", self._key(key), "f", "b")
        failures, blocked = int(f or 0), float(b or 0)
        if rule.cap is not None and failures >= rule.cap:
            return Verdict(False, failures, 0, locked=True)
        if blocked > at:
            return _verdict(0, failures, blocked, 0, at)
        return Verdict(True, failures)
