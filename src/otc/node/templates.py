"""Offer templates and amendments at the edge: ``again`` reposts one of our offers (open or closed) with
the same terms; ``amend`` replaces an open one (core/templates.py) and commits both halves at once,
through the maker's own commit: one store transaction, one published batch."""

from __future__ import annotations

from typing import Any

from ..core import errors as E
from ..core.errors import OTCError
from ..core.messages import Offer
from ..core.templates import replace, terms_of
from .clock import now_ms
from .store import Store
from .trading import Trading


class Templates:
    def __init__(self, trading: Trading, store: Store) -> None:
        self.trading = trading
        self.desk = trading.desk
        self.store = store

    def find(self, oid: str) -> Offer:
        """One of our offers, open or closed, by id or unique prefix (memory first, then the store)."""
        held = self.desk.offers.get(oid) or self.store.offer(oid)
        if held is not None and held.maker == self.desk.peer_id:
            return held
        if len(oid) >= 4:
            matches = {o.id: o for o in self.desk.offers.values() if o.id.startswith(oid)}
            if not matches:
                matches = {o.id: o for o in self.store.offers() if o.id.startswith(oid)}
            if len(matches) > 1:
                raise OTCError(E.ERR_AMBIGUOUS_ID, f"id prefix {oid!r} matches {len(matches)} of your offers")
            if matches:
                return next(iter(matches.values()))
        raise OTCError(E.ERR_OFFER_NOT_FOUND, f"no offer {oid} of yours")

    def again(self, oid: str) -> Offer:
        """Post a new offer with the terms of one of ours (cancelled, expired, filled or open)."""
        return self.trading.post_offer(**terms_of(self.find(oid)))

    def amend(self, oid: str, *, price: Any = None, amount: Any = None) -> tuple[Offer, Offer]:
        """Replace an open offer of ours by one with a new price and/or amount; (old, new)."""
        old, new, effects = replace(self.desk, self.find(oid).id, now_ms(), price=price, amount=amount)
        self.trading.commit(effects)
        return old, new
