"""Sweep orders: take the best offers of other makers, best price first, up to an amount and a limit
price, one P2P trade per offer (the plan is pure: ``core.sweep``). Testable alone: the taking, syncing
and posting it needs are handed in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..core import errors as E
from ..core.book import Book
from ..core.errors import OTCError
from ..core.messages import Offer, Receipt
from ..core.money import CONTEXT, canonical, get_pair, parse_decimal
from ..core.sweep import Skipped, SweepResult, plan
from .clock import now_ms

Take = Callable[[str, Any], Awaitable[Receipt]]
Sync = Callable[..., Awaitable[None]]  # sync(maker, force=True): pull the maker's list now
Post = Callable[..., Offer]


class Sweeper:
    def __init__(
        self, peer_id: str, book: Book, default_pair: str, take: Take, sync: Sync, post: Post
    ) -> None:
        self.peer_id = peer_id
        self.book = book
        self.default_pair = default_pair
        self.take = take
        self.sync = sync
        self.post = post

    async def sweep(self, side: Any, amount: Any, limit: Any, pair: Any, post: bool = False) -> SweepResult:
        """Take the best offers of other makers, best price first, up to ``amount`` and the ``limit``
        price; with ``post``, rest what is left unfilled as a new offer at the limit. An offer lost to
        another taker is skipped (after one retry with its fresh remaining, on
        ERR_INSUFFICIENT_REMAINING) and the plan is redone from the fresh book. Input errors raise
        ``OTCError`` before anything is taken; refusals of single takes never raise."""
        if side not in ("buy", "sell"):
            raise OTCError(E.ERR_INVALID_SIDE, f"side must be 'buy' or 'sell', got {side!r}")
        p = get_pair(self.default_pair if pair is None else pair)
        want = parse_decimal(
            amount, code=E.ERR_INVALID_AMOUNT, field="amount", places=p.amount_places, maximum=p.max_amount
        )
        lim = parse_decimal(
            limit, code=E.ERR_INVALID_PRICE, field="limit", places=p.price_places, maximum=p.max_price
        )
        result = SweepResult(side=side, pair=p.symbol, amount=want, limit=lim)
        # offer id -> the seq up to which the book's copy is known to be stale or the offer unusable
        stale: dict[str, int] = {}
        retried: set[str] = set()
        gone = 2**63
        left = want
        while left > 0:
            bids, asks = self.book.view(p.symbol, now_ms())
            fresh = [o for o in (asks if side == "buy" else bids) if o.seq > stale.get(o.id, 0)]
            candidates = plan(side, fresh, left, lim, self.peer_id)
            if not candidates:
                break
            offer, take = candidates[0]
            try:
                done = await self.take(offer.id, canonical(take))
            except OTCError as exc:
                if exc.code == E.ERR_TRADE_PENDING:  # it may still complete: count it, never overfill
                    result.pending = CONTEXT.add(result.pending, take)
                    left = CONTEXT.subtract(left, take)
                    stale[offer.id] = gone
                    result.skipped.append(Skipped(offer.id, exc.code, exc.message))
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
            left = CONTEXT.subtract(left, take)
            stale[offer.id] = offer.seq  # our copy predates this fill; wait for the maker's update
        if post and left > 0:
            result.posted = self.post(side=side, amount=canonical(left), price=canonical(lim), pair=p.symbol)
        return result
