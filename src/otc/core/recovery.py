"""Recovering a peer's own history after its store was lost, damaged or restored from an older copy.
Pure: the evidence is handed in, a verdict and a plan come out; node/recovery.py does the asking.

Theory of operation
-------------------
A peer's identity (``identity.key``) can outlive its history (``peer.sqlite``): the WAL deleted, the file
restored from last week's backup, a disk error. Started on such a store, a peer would sign seqs it had
signed before (other books ignore its "new" states, and one (offer id, seq) signed twice is
equivocation), show none of its trades, and leave phantoms of its old offers in every book. So a peer
does not trade until it knows its store holds everything it signed.

Evidence that something is missing (``findings``):

- the data directory (``Local``): the key existed but the store did not, or the store was never
  initialised; the last run did not close the store and its WAL is gone; the store could not be read
  (under ``--recover`` it is moved aside); a previous start found a loss that was never recovered.
- the network (``Evidence``), checked signature by signature, so no stranger can fake it: our own signed
  head or offers held by other peers with a seq above the last one our store holds, or an offer of ours
  our store has no record of; a receipt of ours (both signatures valid) that our store lacks, as maker,
  or as taker (a taker record merely ``reserved`` is a trade in flight that the taker finishes itself).

A new identity, or a peer nobody answers, has no evidence against it: it trades. Nothing a stranger can
make counts as evidence (everything counted is signed by the peer itself), and genuine old states
replayed by anyone prove nothing (their seqs are not above ours).

The standing of a running peer (``STANDING``)::

    state           event                         next
    --------------  ----------------------------  --------------
    checking        clear (no finding)            ok
    checking        loss (findings)               needs_recovery   trading refused: ERR_RECOVERY_NEEDED
    checking        recover (``--recover``)       recovering       trading refused: ERR_RECOVERING
    recovering      recovered (plan applied)      ok
    ok, needs_recovery: final for this run (the operator restarts with ``--recover``).

The plan (``plan``) rebuilds what the network can vouch for:

- the seq goes past everything of ours the network showed, plus a margin (limits.SEQ_MARGIN): no seq,
  and no offer id (derived from its creating seq), is ever signed twice;
- every offer that may still be open, ours as stored and the network's newest signed copies, is
  *cancelled* with a fresh seq, never re-adopted: after a loss the maker no longer knows its offers'
  true state (a fill or a cancel may be exactly what was lost), and re-opening a stale copy could fill
  an offer past its amount. A cancel with a higher seq is accepted by every book and clears the
  phantoms; the trader posts again what it still wants. Closed states we hold of offers that some book
  still shows open are published again. (If the only loss is receipts as taker, offers are untouched.)
- every receipt a counterparty holds, both signatures checked, is stored again as our maker or taker
  trade.

Not recoverable: chat, contacts, released reservations, and receipts held only by peers that did not
answer (``--recover`` again once they are back imports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum

import msgspec

from . import errors as E
from . import limits
from .errors import OTCError
from .identity import verify
from .messages import Head, Held, HeldTrade, Offer, ReceiptsRequest
from .offer import CLOSED, OPEN
from .rfq import QUOTE_SEQ_BASE
from .signing import is_signed, offer_is_valid, receipt_is_valid, signing_bytes, terms_of
from .trade import MakerState, MakerTrade, TakerState, TakerTrade


class Standing(StrEnum):
    CHECKING = "checking"
    OK = "ok"
    NEEDS_RECOVERY = "needs_recovery"
    RECOVERING = "recovering"


class Event(Enum):
    CLEAR = "clear"
    LOSS = "loss"
    RECOVER = "recover"
    RECOVERED = "recovered"


STANDING: dict[tuple[Standing, Event], Standing] = {
    (Standing.CHECKING, Event.CLEAR): Standing.OK,
    (Standing.CHECKING, Event.LOSS): Standing.NEEDS_RECOVERY,
    (Standing.CHECKING, Event.RECOVER): Standing.RECOVERING,
    (Standing.RECOVERING, Event.RECOVERED): Standing.OK,
}


def next_standing(state: Standing, event: Event) -> Standing:
    try:
        return STANDING[(state, event)]
    except KeyError:
        raise OTCError(E.ERR_INVALID_MESSAGE, f"recovery is {state.value}: cannot {event.value}") from None


def verdict(local: Local, found: list[Finding], recover: bool) -> Event:
    """What the checking peer does: a new identity has nothing to lose; ``--recover`` rebuilds
    (whatever the evidence: the operator knows something we may not); otherwise any finding stops
    trading."""
    if local.new_identity:
        return Event.CLEAR
    if recover:
        return Event.RECOVER
    return Event.LOSS if found else Event.CLEAR


# --- evidence ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Local:
    """What the data directory says, read before anything is signed."""

    new_identity: bool = False  # the key was made at this start: there is no history to lose
    store_missing: bool = False  # the key existed, peer.sqlite did not
    store_empty: bool = False  # the key existed, the store was never initialised
    wal_missing: bool = False  # the last run did not close the store, and its write-ahead log is gone
    damaged: str | None = None  # the store could not be read (moved aside under --recover)
    pending: str | None = None  # a previous start found a loss that was never recovered
    seq: int = 0  # the last seq the store says we signed

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        if self.new_identity:
            return out
        if self.damaged is not None:
            out.append(Finding(STORE, f"the store was damaged: {self.damaged}"))
        if self.store_missing:
            out.append(Finding(STORE, "identity.key exists but peer.sqlite was missing: the history is gone"))
        elif self.store_empty:
            out.append(Finding(STORE, "identity.key exists but peer.sqlite was empty: the history is gone"))
        if self.wal_missing:
            out.append(
                Finding(
                    STORE,
                    "peer.sqlite was not closed cleanly and its write-ahead log (peer.sqlite-wal) is "
                    "missing: commits after its last checkpoint are lost",
                )
            )
        if self.pending is not None:
            out.append(Finding(STORE, f"not recovered since an earlier start found: {self.pending}"))
        return out


@dataclass
class Evidence:
    """What other peers hold of us, verified: only what we signed ourselves, or both parties did."""

    asked: int = 0
    answered: int = 0
    heads: dict[str, Head] = field(default_factory=dict)  # peer -> our head as its book holds it
    offers: dict[str, Offer] = field(default_factory=dict)  # our offers as books hold them: newest per id
    trades: dict[str, HeldTrade] = field(default_factory=dict)  # receipts of ours, by trade id
    rejected: int = 0  # heads, offers or receipts that failed verification

    def add_held(self, me: str, peer: str, held: Held) -> None:
        self.answered += 1
        if held.head is not None:
            if held.head.maker == me and is_signed(held.head):
                self.heads[peer] = held.head
            else:
                self.rejected += 1
        for offer in held.offers:
            if offer.maker != me or not offer_is_valid(offer):
                self.rejected += 1
                continue
            known = self.offers.get(offer.id)
            if known is None or offer.seq > known.seq:
                self.offers[offer.id] = offer

    def add_trades(self, me: str, trades: list[HeldTrade]) -> None:
        for item in trades:
            if genuine(me, item):
                self.trades.setdefault(item.receipt.id, item)
            else:
                self.rejected += 1

    @property
    def network_seq(self) -> int:
        """The highest seq of ours the network showed, signed by us."""
        return max([0, *(h.head for h in self.heads.values()), *(o.seq for o in self.offers.values())])


def genuine(me: str, item: HeldTrade) -> bool:
    """A receipt of ours: we are one party, both signatures are valid, and the take is the taker's own
    signed request for that very trade."""
    r, take = item.receipt, item.take
    return (
        me in (r.maker, r.taker)
        and r.maker != r.taker
        and receipt_is_valid(r)
        and take.trade_id == r.id
        and take.offer_id == r.offer_id
        and take.taker == r.taker
        and is_signed(take)
    )


@dataclass
class Ours:
    """Our store's records of what the evidence names (primary-key reads)."""

    offers: dict[str, Offer] = field(default_factory=dict)
    maker: dict[str, MakerState] = field(default_factory=dict)
    taker: dict[str, TakerState] = field(default_factory=dict)


STORE = "store"
SEQ = "seq"
OFFER = "offer"
MAKER_RECEIPT = "maker_receipt"
TAKER_RECEIPT = "taker_receipt"


@dataclass(frozen=True)
class Finding:
    kind: str  # STORE, SEQ, OFFER, MAKER_RECEIPT, TAKER_RECEIPT
    text: str


def missing_as_maker(me: str, ev: Evidence, ours: Ours) -> list[HeldTrade]:
    # a maker commits "done" before it answers the confirm: a done receipt we do not hold as done is lost
    done = MakerState.DONE
    return [t for t in ev.trades.values() if t.receipt.maker == me and ours.maker.get(t.receipt.id) != done]


def missing_as_taker(me: str, ev: Evidence, ours: Ours, *, in_flight: bool = True) -> list[HeldTrade]:
    """Receipts of our takes that we do not hold as done; without ``in_flight``, only those we have no
    live record of (a ``reserved`` take is finished by the taker's own retries: not a loss)."""
    skip = {TakerState.DONE} if in_flight else {TakerState.DONE, TakerState.RESERVED}
    return [
        t for t in ev.trades.values() if t.receipt.taker == me and ours.taker.get(t.receipt.id) not in skip
    ]


def findings(me: str, local: Local, ev: Evidence, ours: Ours) -> list[Finding]:
    """Every sign that our store lacks something we signed, in words."""
    out = local.findings()
    if ev.heads:
        peer, head = max(ev.heads.items(), key=lambda item: item[1].head)
        if head.head > local.seq:
            out.append(
                Finding(
                    SEQ,
                    f"peer {peer[:12]} holds our signed head at seq {head.head}; our store ends at seq "
                    f"{local.seq}",
                )
            )
    ahead = [o.seq for o in ev.offers.values() if o.seq > local.seq]
    if ahead:
        why = f"{len(ahead)} offers of ours held by other peers are newer than our store"
        out.append(Finding(SEQ, f"{why} (up to seq {max(ahead)}, ours ends at {local.seq})"))
    unknown = [o for o in ev.offers.values() if o.seq <= local.seq and o.id not in ours.offers]
    if unknown:
        out.append(Finding(OFFER, f"{len(unknown)} offers of ours held by other peers are not in our store"))
    maker = missing_as_maker(me, ev, ours)
    if maker:
        out.append(Finding(MAKER_RECEIPT, f"{len(maker)} receipts of ours as maker are not in our store"))
    taker = missing_as_taker(me, ev, ours, in_flight=False)
    if taker:
        out.append(Finding(TAKER_RECEIPT, f"{len(taker)} receipts of ours as taker are not in our store"))
    return out


# --- the plan ---------------------------------------------------------------------------------------------
@dataclass
class Plan:
    seq: int  # the desk's seq from now on (it signs seq + 1 next)
    cancel: list[Offer]  # the newest signed copy of each offer that may be open: adopted, then cancelled
    republish: list[Offer]  # closed states we hold of offers some book still shows open
    maker_trades: list[MakerTrade]  # receipts to store again, as maker
    taker_trades: list[TakerTrade]  # and as taker
    quote_trades: list[MakerTrade] = field(default_factory=list)  # as maker of a quote: the quote desk's
    lost: bool = False  # offer states were lost: the quote desk is rebuilt too (``quote_seq_floor``)

    @property
    def receipts(self) -> int:
        return len(self.maker_trades) + len(self.taker_trades) + len(self.quote_trades)


def quote_seq_floor(seq: int, now: int) -> int:
    """The quote desk's seq after a loss. Quotes are private (no book holds them, nor a seq of theirs),
    so nothing in the network says which quote seqs, hence quote ids, were used: the floor comes from
    the clock, ``QUOTE_SEQ_BASE + now_ms * 1000``, above every seq used before unless the quote desk
    signed more than 1,000 states per millisecond on average since 1970 (or since the last recovery).
    Within 2**53 until the year 2112."""
    return max(seq, QUOTE_SEQ_BASE + now * 1000)


def plan(
    me: str, local: Local, ev: Evidence, ours: Ours, found: list[Finding], open_offers: list[Offer]
) -> Plan:
    """What ``--recover`` does with the evidence. ``open_offers``: the desk's open offers (as stored)."""
    lost_offers = any(f.kind != TAKER_RECEIPT for f in found)
    seq = local.seq
    if lost_offers:
        seq = max(local.seq, ev.network_seq) + limits.SEQ_MARGIN
    newest: dict[str, Offer] = {o.id: o for o in open_offers} if lost_offers else {}
    republish: list[Offer] = []
    for offer in sorted(ev.offers.values(), key=lambda o: o.seq):
        held = ours.offers.get(offer.id)
        if held is not None and held.status in CLOSED and held.seq >= offer.seq:
            republish.append(held)  # we know better: that book missed our close
        elif lost_offers and (offer.id not in newest or offer.seq > newest[offer.id].seq):
            newest[offer.id] = offer
    cancel = sorted((o for o in newest.values() if o.status == OPEN), key=lambda o: o.seq)
    missing = missing_as_maker(me, ev, ours)
    maker_trades = [as_maker_trade(t) for t in missing if not t.quote]
    quote_trades = [as_maker_trade(t) for t in missing if t.quote]
    taker_trades = [as_taker_trade(t) for t in missing_as_taker(me, ev, ours)]
    for trades in (maker_trades, quote_trades):
        trades.sort(key=lambda t: (t.terms.created_at, t.terms.id))
    taker_trades.sort(key=lambda t: (t.updated_at, t.take.trade_id))
    return Plan(seq, cancel, republish, maker_trades, taker_trades, quote_trades, lost_offers)


def as_maker_trade(t: HeldTrade) -> MakerTrade:
    r = t.receipt
    return MakerTrade(
        take=t.take, terms=terms_of(r), maker_sig=r.maker_sig, state=MakerState.DONE,
        reserved_until=r.created_at, taker_sig=r.taker_sig,
    )  # fmt: skip


def as_taker_trade(t: HeldTrade) -> TakerTrade:
    r = t.receipt
    return TakerTrade(
        take=t.take, maker=r.maker, side=r.side, pair=r.pair, state=TakerState.DONE, terms=terms_of(r),
        maker_sig=r.maker_sig, taker_sig=r.taker_sig, updated_at=r.created_at,
    )  # fmt: skip


# --- what the operator sees -------------------------------------------------------------------------------
class Report(msgspec.Struct, kw_only=True):
    """The peer's standing, as ``/api/health`` shows it under ``recovery``."""

    state: str = Standing.CHECKING.value
    reason: str = ""  # why trading is refused, or what --recover did
    findings: list[str] = []  # each piece of evidence of a loss, in words
    stored_seq: int = 0  # the last seq our store held at start
    network_seq: int = 0  # the highest seq of ours other peers showed (signed by us)
    asked: int = 0  # peers asked what they hold of us
    answered: int = 0
    receipts_recovered: int = 0
    offers_cancelled: list[str] = []  # ids --recover cancelled: post again what you still want
    seq: int = 0  # our seq now
    check_ms: float = 0.0  # how long the check at start took (bounded by limits.CHECK_TIMEOUT_S)


def refusal(state: Standing, report: Report) -> OTCError | None:
    """The error every trading request gets in this standing (None: trading is open)."""
    if state is Standing.OK:
        return None
    if state is Standing.NEEDS_RECOVERY:
        return OTCError(
            E.ERR_RECOVERY_NEEDED,
            f"this peer's store lacks history it signed ({report.reason}); restart it with "
            "`otc peer --recover` to rebuild it from the network before trading",
        )
    if state is Standing.RECOVERING:
        return OTCError(E.ERR_RECOVERING, f"rebuilding this peer's history from the network: {report.reason}")
    return OTCError(E.ERR_RECOVERING, "checking what the network holds of this peer's history")


# --- answering others -------------------------------------------------------------------------------------
def check_receipts_request(me: str, msg: ReceiptsRequest, now: int) -> None:
    """Only the peer a receipts request is about may make it, for one peer, within a minute (the
    answerer also refuses a request it has answered before: node/recovery.py)."""
    if msg.to != me:
        raise OTCError(E.ERR_INVALID_MESSAGE, "this receipts request is addressed to another peer")
    if abs(now - msg.ts) > limits.SIGNED_REQUEST_MAX_AGE_MS:
        raise OTCError(E.ERR_REQUEST_STALE, "this receipts request is dated too far from our clock")
    if not msg.sig or not verify(msg.peer, msg.sig, signing_bytes(msg)):
        raise OTCError(E.ERR_BAD_SIGNATURE, "a receipts request must be signed by the peer it asks about")


def parse_cursor(cursor: str) -> tuple[int, str] | None:
    """A receipts page cursor, ``"<created_at>:<trade id>"`` ("" for the first page)."""
    if not cursor:
        return None
    at, _, tid = cursor.partition(":")
    return int(at), tid
