"""A deterministic discrete-event engine and the network model it runs: virtual time in milliseconds,
one seeded RNG, links with a fixed latency each (20–80 ms), independent loss per message, and partitions
(peers in different groups cannot reach each other). Nothing here knows about markets."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any


class Engine:
    """Events run in time order; ties in the order they were scheduled (so a run is a function of the
    seed alone)."""

    def __init__(self) -> None:
        self.now = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0

    def at(self, when: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn, args))

    def run_until(self, end: int) -> None:
        queue = self._queue
        pop = heapq.heappop
        while queue and queue[0][0] <= end:
            when, _, fn, args = pop(queue)
            self.now = when
            self.events += 1
            fn(*args)
        self.now = max(self.now, end)


class Network:
    """Latency per link, fixed for the run: 20–80 ms, drawn from the pair of node numbers (so it costs no
    memory per link); each message is lost with probability ``loss``; nodes in different groups (a
    partition) cannot reach each other at all."""

    def __init__(
        self, rng: random.Random, *, loss: float = 0.01, low_ms: int = 20, high_ms: int = 80
    ) -> None:
        self.rng = rng
        self.loss = loss
        self.low = low_ms
        self.span = high_ms - low_ms + 1
        self.salt = rng.getrandbits(32)
        self.group: dict[int, int] = {}  # node -> partition group (absent: group 0)

    def latency(self, a: int, b: int) -> int:
        lo, hi = (a, b) if a < b else (b, a)
        h = (lo * 0x9E3779B1 ^ hi * 0x85EBCA77 ^ self.salt) & 0xFFFFFFFF
        h = (h ^ (h >> 15)) * 0x2C1B3C6D & 0xFFFFFFFF
        return self.low + (h ^ (h >> 12)) % self.span

    def connected(self, a: int, b: int) -> bool:
        group = self.group
        return not group or group.get(a, 0) == group.get(b, 0)

    def lost(self) -> bool:
        return self.rng.random() < self.loss
