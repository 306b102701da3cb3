"""The wall clock, read only at the edge: the core is handed times, never reads them."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
