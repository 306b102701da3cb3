"""Token buckets per key (a sender, a peer), pure: time is passed in, memory is bounded.

Each key may spend ``burst`` at once and earns ``per_minute`` back over a minute. At most ``max_keys``
keys are tracked, least recently used dropped first: a flood of fresh keys (free to make) can only
evict other keys' records, never grow memory, and an evicted key starts again with a full bucket, which
is the same as a fresh key, so eviction grants nothing a new key would not.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    def __init__(self, per_minute: float, burst: float, max_keys: int) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a rate, a burst of at least 1 and room for one key")
        self.per_ms = per_minute / 60_000
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (tokens, at ms)

    def allow(self, key: str, now: int, cost: float = 1.0) -> bool:
        """Spend ``cost`` from ``key``'s bucket if it holds that much; False (and nothing spent) if not."""
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0, now - at) * self.per_ms)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
