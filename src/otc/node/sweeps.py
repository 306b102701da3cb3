"""Sweep orders: take the best offers of other makers, best price first, up to an amount and a limit
price, one P2P trade per offer (the plan is pure: ``core.sweep``). Testable alone: the taking, syncing,
posting and reaching it needs are handed in.

Strangers cannot stall a sweep: makers that did not answer lately are skipped, makers not heard from in
a while are pinged all at once (one short wait for all of them) before any is taken from, and the
whole sweep stops at its deadline, every take getting at most what is left of it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from ..core import errors as E
from ..core import limits
from ..core.book import Book
from ..core.errors import OTCError
from ..core.messages import Offer, Receipt
from ..core.money import CONTEXT, canonical, get_pair, parse_decimal
from ..core.sweep import Skipped, SweepResult, plan
from .clock import now_ms

LOOKAHEAD_AMOUNT = Decimal("1e30")  # more than any book holds: plan() then orders every usable offer
Take = Callable[..., Awaitable[Receipt]]  # take(offer_id, amount, deadline_s=...)
Sync = Callable[..., Awaitable[None]]  # sync(maker, force=True): pull the maker's list now
Post = Callable[..., Offer]


class Reach(Protocol):
    """Which makers answer (``node.directory.Directory``)."""

    def reachable(self, peer_id: str) -> bool: ...

    def answered_within(self, peer_id: str, seconds: float) -> bool: ...

    async def probe(self, peer_ids: list[str], timeout: float) -> None: ...


class Sweeper:
    def __init__(
        self, peer_id: str, book: Book, default_pair: str, take: Take, sync: Sync, post: Post, reach: Reach
    ) -> None:
        self.peer_id = peer_id
        self.book = book
        self.default_pair = default_pair
        self.take = take
        self.sync = sync
        self.post = post
        self.reach = reach

    async def sweep(
        self, side: Any, amount: Any, limit: Any, pair: Any, post: bool = False, deadline_s: Any = None
    ) -> SweepResult:
        """Take the best offers of other makers, best price first, up to ``amount`` and the ``limit``
        price; with ``post``, rest what is left unfilled as a new offer at the limit. An offer lost to
        another taker is skipped (after one retry with its fresh remaining, on
        ERR_INSUFFICIENT_REMAINING) and the plan is redone from the fresh book; so are offers of makers
        that do not answer. Input errors raise ``OTCError`` before anything is taken; refusals of single
        takes never raise. Nothing is started after ``deadline_s`` (limits.SWEEP_DEADLINE_S)."""
        if side not in ("buy", "sell"):
            raise OTCError(E.ERR_INVALID_SIDE, f"side must be 'buy' or 'sell', got {side!r}")
        p = get_pair(self.default_pair if pair is None else pair)
        want = parse_decimal(
            amount, code=E.ERR_INVALID_AMOUNT, field="amount", places=p.amount_places, maximum=p.max_amount
        )
        lim = parse_decimal(
            limit, code=E.ERR_INVALID_PRICE, field="limit", places=p.price_places, maximum=p.max_price
        )
        if deadline_s is None:
            deadline_s = limits.SWEEP_DEADLINE_S
        if (
            isinstance(deadline_s, bool)
            or not isinstance(deadline_s, (int, float))
            or not 0 < deadline_s <= 3600
        ):
            raise OTCError(E.ERR_INVALID_PAYLOAD, "deadline_s must be a number of seconds in (0, 3600]")
        deadline = time.monotonic() + deadline_s
        result = SweepResult(side=side, pair=p.symbol, amount=want, limit=lim)
        # offer id -> the seq up to which the book's copy is known to be stale or the offer unusable
        stale: dict[str, int] = {}
        caps: dict[str, Decimal] = {}  # offer id -> what its maker said we may take of it now
        retried: set[str] = set()
        gone = 2**63
        left = want
        while left > 0:
            if time.monotonic() >= deadline:
                result.deadline_reached = True
                break
            bids, asks = self.book.view(p.symbol, now_ms())
            fresh = []
            for o in asks if side == "buy" else bids:
                if o.seq <= stale.get(o.id, 0):
                    continue
                if not self.reach.reachable(o.maker):
                    stale[o.id] = gone
                    result.skipped.append(Skipped(o.id, E.ERR_MAKER_UNREACHABLE, "its maker does not answer"))
                    continue
                fresh.append(o)
            candidates = plan(side, fresh, left, lim, self.peer_id, caps)
            if not candidates:
                break
            # the makers of the next offers we might take (not only this plan's): one probe for all
            ahead = plan(side, fresh, LOOKAHEAD_AMOUNT, lim, self.peer_id, caps)[: limits.PROBE_AHEAD]
            recent = limits.ANSWERED_RECENTLY_S
            quiet = sorted({o.maker for o, _ in ahead if not self.reach.answered_within(o.maker, recent)})
            if quiet:
                # one short wait for all of them; each either answered or is now unreachable, so the
                # next plan takes from the first kind and skips the second
                wait = min(limits.PROBE_TIMEOUT_S, max(0.01, deadline - time.monotonic()))
                await self.reach.probe(quiet, wait)
                continue
            offer, take = candidates[0]
            try:
                done = await self.take(offer.id, canonical(take), deadline_s=deadline - time.monotonic())
            except OTCError as exc:
                if exc.code == E.ERR_TRADE_PENDING:  # it may still complete: count it, never overfill
                    result.pending = CONTEXT.add(result.pending, take)
                    left = CONTEXT.subtract(left, take)
                    stale[offer.id] = gone
                    result.skipped.append(Skipped(offer.id, exc.code, exc.message))
                elif (
                    exc.code == E.ERR_INSUFFICIENT_REMAINING
                    and offer.id not in retried
                    and exc.available is not None
                    and exc.available > 0
                ):
                    # the maker said how much we can have now: take that, once
                    retried.add(offer.id)
                    caps[offer.id] = exc.available
                elif exc.code == E.ERR_INSUFFICIENT_REMAINING and offer.id not in retried:
                    # someone took or holds part of it: ask its maker for the fresh state, and retry it
                    # once if that shows a new remaining (holds by other takers are not published)
                    retried.add(offer.id)
                    await self.sync(offer.maker, force=True)
                    latest = self.book.get(offer.id)
                    if latest is not None and latest.seq > offer.seq:
                        stale[offer.id] = offer.seq
                    else:
                        stale[offer.id] = gone
                        result.skipped.append(Skipped(offer.id, exc.code, exc.message))
                else:
                    stale[offer.id] = gone
                    result.skipped.append(Skipped(offer.id, exc.code, exc.message))
                continue
            result.fills.append(done)
            caps.pop(offer.id, None)
            left = CONTEXT.subtract(left, take)
            stale[offer.id] = offer.seq  # our copy predates this fill; wait for the maker's update
        if post and left > 0:
            result.posted = self.post(side=side, amount=canonical(left), price=canonical(lim), pair=p.symbol)
        return result
