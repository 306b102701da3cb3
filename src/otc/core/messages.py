"""Every message peers exchange, as msgspec schemas: decoding *is* validation.

Offers and heads hold only strings and numbers, so they are exempt from the cyclic garbage collector
(``gc=False``): they cannot form cycles, and a book of 100,000 offers need not be rescanned.
Money fields are canonical decimal strings (``money.Money``); ids, keys and signatures are lower-case
hex of fixed length; times are integer milliseconds since the epoch. Signed messages carry ``sig`` last;
what is signed is the message encoded with ``sig = ""``, behind a per-kind domain tag, so a signature for
one kind of message can never be replayed as another.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from .limits import SETTLE_MAX_STEPS, SETTLE_NOTE_MAX
from .money import Money

PeerId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Sig = Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{128})?$")]
Id = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]
Millis = Annotated[int, msgspec.Meta(ge=0, le=10**14)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
Side = Literal["buy", "sell"]
OfferStatus = Literal["open", "filled", "cancelled", "expired"]
PairSymbol = Annotated[str, msgspec.Meta(max_length=16)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Offer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One offer's complete state as of ``seq``, signed by its maker. Every update carries the whole
    state, so any single update is enough to know the offer; the highest ``seq`` wins."""

    id: Id  # = offer_id(maker, created_seq)
    created_seq: Seq
    maker: PeerId
    maker_name: Name
    side: Side
    pair: PairSymbol
    price: Money
    amount: Money
    remaining: Money
    reserved: Money = "0"  # of remaining, held for takers' confirms: books show remaining - reserved
    min_fill: Money | None = None
    created_at: Millis
    expires_at: Millis | None = None
    status: OfferStatus = "open"
    seq: Seq
    sig: Sig = ""


class Head(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A maker's signed heartbeat: its latest seq and a digest committing to its open offers (their
    full encodings, see offer.digest). Receivers use it for liveness, to notice cheaply when their copy
    of the maker's offers drifted, and to authenticate a whole list of them with one signature."""

    maker: PeerId
    name: Name
    addr: Annotated[str, msgspec.Meta(max_length=64)]
    head: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    count: Annotated[int, msgspec.Meta(ge=0)]
    digest: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    ts: Millis
    sig: Sig = ""


class Terms(msgspec.Struct, frozen=True, kw_only=True):
    """What maker and taker both sign: the trade as agreed. ``side`` is the offer's (maker's) side."""

    id: Id
    offer_id: Id
    maker: PeerId
    maker_name: Name
    taker: PeerId
    taker_name: Name
    side: Side
    pair: PairSymbol
    price: Money
    amount: Money
    created_at: Millis


class Receipt(Terms, frozen=True, kw_only=True):
    status: Literal["done"] = "done"
    maker_sig: Sig
    taker_sig: Sig


# --- RPC payloads on the market key (every peer) ----------------------------------------------------
class Updates(msgspec.Struct, tag="updates", tag_field="type", kw_only=True):
    offers: Annotated[list[Offer], msgspec.Meta(max_length=5000)]


class Heartbeat(msgspec.Struct, tag="heartbeat", tag_field="type", kw_only=True):
    head: Head


class SnapshotRequest(msgspec.Struct, tag="snapshot", tag_field="type", kw_only=True):
    after: str = ""  # offer id cursor: the page starts after it
    limit: Annotated[int, msgspec.Meta(ge=1, le=20000)] = 5000


class MakerSeen(msgspec.Struct, frozen=True, kw_only=True):
    head: Head
    age_ms: Annotated[int, msgspec.Meta(ge=0)]  # how long ago the relaying peer last heard from it


class Snapshot(msgspec.Struct, kw_only=True):
    offers: list[Offer]
    makers: list[MakerSeen]
    next: str | None = None


# MarketRequest (every payload of the market key) is defined at the end of the file, with Departure


# --- RPC payloads on a peer's own key -----------------------------------------------------------------
class Take(msgspec.Struct, frozen=True, tag="take", tag_field="type", kw_only=True):
    """A taker's signed request to take ``amount`` of an offer at the ``price`` it saw."""

    trade_id: Id
    offer_id: Id
    amount: Money
    price: Money
    taker: PeerId
    taker_name: Name
    ts: Millis
    sig: Sig = ""


class Confirm(msgspec.Struct, frozen=True, tag="confirm", tag_field="type", kw_only=True):
    trade_id: Id
    taker: PeerId
    taker_sig: Sig


class OffersRequest(msgspec.Struct, tag="offers", tag_field="type", kw_only=True):
    """Ask a maker for its authoritative list of open offers."""


class Ping(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
    """Are you there? Answered ``{"ok": true}``: a sweep checks makers it has not heard lately."""


class Chat(msgspec.Struct, frozen=True, tag="chat", tag_field="type", kw_only=True):
    id: Id
    sender: PeerId
    sender_name: Name
    to: PeerId
    text: Text
    ts: Millis
    sig: Sig = ""


# ``PeerRequest``, the union of what arrives on a peer's own key, is at the end of the file, after the
# message types of every section.


class TradeReply(msgspec.Struct, tag="trade", tag_field="type", kw_only=True):
    """The maker's answer to a take or a confirm: reserved (terms + maker signature) or done (receipt)."""

    status: Literal["reserved", "done"]
    terms: Terms
    maker_sig: Sig
    reserved_until: Millis
    taker_sig: Sig | None = None


Digest = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
ErrorCode = Annotated[str, msgspec.Meta(pattern=r"^ERR_[A-Z0-9_]{1,60}$")]


class TradeRefusal(msgspec.Struct, frozen=True, tag="refusal", tag_field="type", kw_only=True):
    """The maker's signed "no" to one request: it names the trade, the taker and the exact request
    (``request`` = ``signing.request_digest`` of it), so nobody in between can forge a refusal, and a
    refusal of one request can never be passed off as the answer to another (a take's refusal as the
    answer to that trade's confirm). A taker treats any other failure as transient."""

    trade_id: Id
    maker: PeerId
    taker: PeerId
    request: Digest
    code: ErrorCode
    message: Annotated[str, msgspec.Meta(max_length=500)]
    available: Money | None = None  # with ERR_HOLD_LIMIT: what this taker may hold of the offer now
    ts: Millis
    sig: Sig = ""


TradeAnswer = TradeReply | TradeRefusal


class MakerOffers(msgspec.Struct, kw_only=True):
    head: Head
    offers: list[Offer]


# --- Grapevine (the Node chat this project grew from): unsigned, kept apart from our signed chat ---------
class GrapevineNote(msgspec.Struct, frozen=True, kw_only=True):
    """A message exchanged with a Grapevine peer (``{"message": m}`` over grenache-nodejs-ws, by name).
    Nothing in it is signed: ``peer`` is the caller's address or the name we sent to, never an identity."""

    id: Id
    peer: Annotated[str, msgspec.Meta(max_length=128)]
    text: Text
    ts: Millis  # our clock


# --- requests for quote and settlement (issue 12) ------------------------------------------------------
# FIX's names where they fit (QuoteReqID, QuoteID, ValidUntilTime), so a FIX gateway maps onto them.
class QuoteRequest(msgspec.Struct, frozen=True, tag="rfq", tag_field="type", kw_only=True):
    """A requester's signed request for quote, sent to each live peer on the peer's own key."""

    quote_req_id: Id
    requester: PeerId
    requester_name: Name
    side: Side  # the requester's: "buy" asks makers to sell to it
    pair: PairSymbol
    amount: Money
    created_at: Millis
    valid_until: Millis  # quotes are accepted for it until then
    sig: Sig = ""


class Quote(msgspec.Struct, frozen=True, tag="quote", tag_field="type", kw_only=True):
    """A maker's signed firm quote, for its requester only: up to ``amount`` at ``price`` until
    ``valid_until``. It is accepted with a ``take`` (then a ``confirm``) whose ``offer_id`` is the
    ``quote_id``: the maker holds the quote as a private firm offer (core/rfq.py)."""

    quote_id: Id
    quote_req_id: Id
    maker: PeerId
    maker_name: Name
    requester: PeerId
    side: Side  # the maker's, as an offer's side: the opposite of the request's
    pair: PairSymbol
    price: Money
    amount: Money
    created_at: Millis
    valid_until: Millis
    sig: Sig = ""


SettleStepName = Literal["payment_sent", "payment_received", "delivery_sent", "settled", "disputed"]
TermsDigest = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=SETTLE_NOTE_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")]


class SettleStep(msgspec.Struct, frozen=True, kw_only=True):
    """One settlement transition, signed by the party entitled to make it (core/settlement.py)."""

    trade_id: Id
    terms: TermsDigest  # hash of the trade's signed terms: the step is about exactly that trade
    step: SettleStepName
    actor: PeerId
    ts: Millis
    note: Note | None = None  # a payment reference, a transaction id
    sig: Sig = ""


class SettleSync(msgspec.Struct, frozen=True, tag="settle", tag_field="type", kw_only=True):
    """A party's signed settlement steps for one trade, sent to the other party; the answer is the
    receiver's steps (``SettleSteps``), so one exchange brings both sides level."""

    trade_id: Id
    sender: PeerId
    steps: Annotated[list[SettleStep], msgspec.Meta(max_length=SETTLE_MAX_STEPS)]
    ts: Millis
    sig: Sig = ""


class SettleSteps(msgspec.Struct, kw_only=True):
    steps: Annotated[list[SettleStep], msgspec.Meta(max_length=SETTLE_MAX_STEPS)]


# --- recovery of a peer's own history (issue 8 item 7; core/recovery.py) ------------------------------
class HeldRequest(msgspec.Struct, frozen=True, tag="held", tag_field="type", kw_only=True):
    """What do you hold of this maker? Answered from the book (``Held``): anyone may ask, as anyone may
    read a book; a peer that lost its store asks about itself."""

    maker: PeerId


class Held(msgspec.Struct, kw_only=True):
    """A maker's latest signed head and open offers as one peer's book holds them (at most
    limits.HELD_OFFERS_MAX offers, the highest seqs). The asker checks every signature."""

    head: Head | None = None
    offers: list[Offer] = msgspec.field(default_factory=list)


Cursor = Annotated[str, msgspec.Meta(pattern=r"^([0-9]{1,15}:[0-9a-f]{32})?$")]


class ReceiptsRequest(msgspec.Struct, frozen=True, tag="receipts", tag_field="type", kw_only=True):
    """Send me the receipts of your trades with me, newest first: signed by ``peer`` (the only one who
    may read its history), addressed to one peer (``to``) and fresh (``ts``, ``nonce``), so neither a
    stranger nor anyone replaying a captured request can harvest it."""

    peer: PeerId
    to: PeerId
    before: Cursor = ""  # "<created_at>:<trade id>" of the last receipt of the previous page
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    ts: Millis
    nonce: Id
    sig: Sig = ""


class HeldTrade(msgspec.Struct, frozen=True, kw_only=True):
    """A done trade as its holder has it: the receipt (terms and both signatures) and the taker's signed
    take, so the asker can store it as its own maker or taker record again."""

    take: Take
    receipt: Receipt
    quote: bool = False  # a trade on a quote (core/rfq.py): its maker's quote desk holds it


class HeldTrades(msgspec.Struct, kw_only=True):
    trades: Annotated[list[HeldTrade], msgspec.Meta(max_length=1000)]
    next: Cursor | None = None


PeerRequest = (
    Take
    | Confirm
    | OffersRequest
    | Ping
    | Chat
    | QuoteRequest
    | Quote
    | SettleSync
    | HeldRequest
    | ReceiptsRequest  # recovery (issue 8 item 7)
)


# --- goodbye on stop: a maker leaving on purpose says so (issue 13) ----------------------------------------
class Departure(msgspec.Struct, frozen=True, tag="departure", tag_field="type", kw_only=True):
    """A maker's signed goodbye, sent to the market when it stops on purpose: its offers are gone for now.
    Peers hide them at once instead of after the liveness timeout, and show them again when the maker is
    heard with a newer head (it restarted). ``ts`` orders it against the maker's heads: a goodbye no newer
    than a head we hold is stale (replayed after the maker came back) and changes nothing."""

    maker: PeerId
    ts: Millis
    sig: Sig = ""


MarketRequest = Updates | Heartbeat | SnapshotRequest | Departure
