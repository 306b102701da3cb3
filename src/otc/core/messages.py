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
    """A maker's signed head: its latest seq and a digest committing to its open offers (their
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


# --- RPC payloads on the market key: see the market overlay section at the end ----------------------


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


class Knock(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
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
    | Knock
    | Chat
    | QuoteRequest
    | Quote
    | SettleSync
    | HeldRequest
    | ReceiptsRequest  # recovery (issue 8 item 7)
)


# --- market overlay (replication): gossip, membership, reconciliation, snapshots ------------------------
# See core/replication.py for the protocol and core/limits.py for every bound used here.
from . import limits as _L  # noqa: E402 - kept with the section that uses it

Addr = Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[0-9A-Za-z.\-]{1,58}:[0-9]{1,5}$")]  # host:port
Prefix = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{0,2}$")]
U63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # msgspec checks bounds within int64


class Death(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A death notice: ``accuser`` could not reach the maker of ``head`` (the newest head of it the
    accuser held), directly nor through others; or, with ``accuser`` the maker itself, its goodbye when
    it stops on purpose. It hides the maker wherever our copy of its head is not newer; the maker
    refutes it (or comes back after a goodbye) with any newer head of its own."""

    head: Head
    accuser: PeerId
    ts: Millis  # the accuser's clock when it declared the maker dead
    sig: Sig = ""


class Equivocation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Proof that a maker signed two different states of one thing: two offers with one id and seq, or
    two heads with one seq and different digests. Exactly one of the pairs is given."""

    offers: Annotated[list[Offer], msgspec.Meta(max_length=2)] = []
    heads: Annotated[list[Head], msgspec.Meta(max_length=2)] = []


class Gossip(msgspec.Struct, tag="gossip", tag_field="type", kw_only=True):
    """Eager push of news to a neighbour: offer updates, heads (riding with their makers' updates),
    death notices and equivocation proofs. ``sender`` is the pusher's peer id (not authenticated: it only
    says whom not to push the news back to, and which allowance it draws on)."""

    sender: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""
    offers: Annotated[list[Offer], msgspec.Meta(max_length=_L.MAX_GOSSIP_OFFERS)] = []
    heads: Annotated[list[Head], msgspec.Meta(max_length=_L.MAX_GOSSIP_HEADS)] = []
    deaths: Annotated[list[Death], msgspec.Meta(max_length=_L.MAX_GOSSIP_DEATHS)] = []
    proofs: Annotated[list[Equivocation], msgspec.Meta(max_length=_L.MAX_GOSSIP_PROOFS)] = []


class Range(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The fingerprint of the makers whose ids start with ``prefix``: how many, and the sum of their
    item hashes mod 2**63 (see core/fingerprint.py)."""

    prefix: Prefix
    count: Annotated[int, msgspec.Meta(ge=0)]
    fp: U63


class Item(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a peer holds of one maker: its head's seq and ts, and its state (fingerprint.STATES)."""

    maker: PeerId
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    ts: Millis
    state: Annotated[int, msgspec.Meta(ge=0, le=3)]


class Items(msgspec.Struct, frozen=True, array_like=True, gc=False):
    prefix: Prefix
    items: list[Item]


class Ping(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
    """A failure-detector probe that opens a reconciliation: ``root`` is the sender's settled fingerprint
    of every maker it holds. Equal fingerprints end it there (one small message at idle)."""

    sender: PeerId
    root: Range


class Pong(msgspec.Struct, kw_only=True):
    peer: PeerId  # who answered: a probe counts only if the address still serves the peer we meant
    neighbour: bool  # the answerer counts the sender among its neighbours
    dead: bool  # the answerer holds a death notice covering the sender's newest head: refute it
    ranges: list[Range] = []  # the answerer's children of the root when the roots differ


class PingReq(msgspec.Struct, tag="ping_req", tag_field="type", kw_only=True):
    """An indirect probe: ping ``target`` at ``addr`` for the sender and say whether it answered."""

    sender: PeerId
    target: PeerId
    addr: Addr


class PingReqReply(msgspec.Struct, kw_only=True):
    ok: bool


class Neighbour(msgspec.Struct, tag="neighbour", tag_field="type", kw_only=True):
    """Ask to become neighbours. ``head`` is the asker's own signed head (its id and address)."""

    head: Head
    urgent: bool = False  # the asker has no neighbour at all


class NeighbourReply(msgspec.Struct, kw_only=True):
    accepted: bool
    head: Head  # the answerer's own signed head
    candidates: Annotated[list[Addr], msgspec.Meta(max_length=16)] = []  # others to try


class Leave(msgspec.Struct, tag="leave", tag_field="type", kw_only=True):
    sender: PeerId


class Reconcile(msgspec.Struct, tag="reconcile", tag_field="type", kw_only=True):
    """One step of range-based reconciliation: the sender's fingerprints of ranges it found different,
    and its items of the ranges small enough to list."""

    sender: PeerId
    ranges: Annotated[list[Range], msgspec.Meta(max_length=_L.MAX_RECONCILE_RANGES)] = []
    items: Annotated[list[Items], msgspec.Meta(max_length=_L.MAX_RECONCILE_RANGES)] = []


class ReconcileReply(msgspec.Struct, kw_only=True):
    ranges: list[Range] = []
    items: list[Items] = []


class Pull(msgspec.Struct, tag="pull", tag_field="type", kw_only=True):
    """Ask a peer for its records of these makers."""

    makers: Annotated[list[PeerId], msgspec.Meta(max_length=_L.MAX_PULL_MAKERS)]


class SnapshotRequest(msgspec.Struct, tag="snapshot", tag_field="type", kw_only=True):
    """A page of a peer's records, in maker id order, starting after ``after``."""

    after: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""


class Record(msgspec.Struct, kw_only=True):
    """All a peer holds of one maker: its newest head, the death notice or equivocation proof that hides
    it, and its open offers when our copy is exactly what the head commits to (else null)."""

    head: Head
    death: Death | None = None
    proof: Equivocation | None = None
    offers: list[Offer] | None = None


class Records(msgspec.Struct, kw_only=True):
    records: list[Record]
    next: str | None = None  # snapshot: the cursor of the next page; null at the end


MarketRequest = Gossip | Ping | PingReq | Neighbour | Leave | Reconcile | Pull | SnapshotRequest
