"""Every bound a peer enforces, in one place, each with the reason for its number.

A peer talks to strangers: anything a stranger can make it hold (memory, disk, descriptors, time) has a
bound here. Sections are by concern; add new limits to the section they belong to, with their reason.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

# --- reservations: what one taker may hold at a maker (issue 8 item 3) ------------------------------------
# A reservation holds liquidity until the taker's confirm, which an honest taker sends automatically within
# a round trip; holding and never confirming is free, so a maker bounds what each taker id may hold.

NEW_TAKER_SHARE: Final = Decimal("0.2")
"""A taker that has not completed a trade with this maker (recently, without a strike since) may hold at
most 20 % of an offer's amount at once: one key that never confirms can keep at most a fifth of an offer
out of reach, and honest newcomers rarely take more than that in one trade (the rest once known)."""

NEW_TAKER_RESERVATIONS: Final = 2
"""Live reservations a new taker may have at one maker: a sweep takes one offer at a time, so two
covers a retry racing its predecessor."""

KNOWN_TAKER_RESERVATIONS_PER_OFFER: Final = 8
KNOWN_TAKER_RESERVATIONS: Final = 32
"""Takers with a completed trade confirm within milliseconds; these bound a busy bot's concurrency, not
its size (a known taker may hold a whole offer)."""

MAX_LIVE_RESERVATIONS: Final = 4096
"""Live reservations at one maker across all takers: memory and the timer's work per tick stay bounded
even against many fresh keys (each of which is a new taker with the limits above)."""

STRIKES_TO_SUSPEND: Final = 3
STRIKE_WINDOW_MS: Final = 10 * 60_000
SUSPEND_MS: Final = 10 * 60_000
MAX_SUSPEND_MS: Final = 24 * 3600_000
"""A reservation that expires unconfirmed is a strike against its taker (and makes it new again). Three
strikes within ten minutes suspend the taker for ten minutes, doubling with each suspension up to a day:
a flaky honest taker loses little, a griefer is shut out after three windows."""

TAKERS_TRACKED: Final = 10_000
"""Taker records (strikes, completed trades) a maker keeps, least recently seen dropped first: an
attacker with many keys can only push its own keys (and the oldest honest ones) out."""

TAKE_MAX_AGE_MS: Final = 60_000
"""A take dated more than a minute from the maker's clock (either way) is refused: a taker gives up on
an unanswered take after 10 s, so an older one is a replay, which could otherwise earn the honest
taker strikes once its released record is forgotten."""

KEEP_RELEASED_MS: Final = 2 * TAKE_MAX_AGE_MS
"""Released reservations are kept (in memory and SQLite) this long for idempotent answers, then
deleted: a storm of tiny takes that are never confirmed leaves nothing behind. Longer than the take
window, so any take still accepted finds its earlier record."""
