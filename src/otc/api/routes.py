"""The local control API (JSON over HTTP on 127.0.0.1), used by the ``otc`` CLI, the web page and bots.

Amounts and prices are decimal strings. Errors are always ``{"error": "ERR_...", "message": "..."}`` with
a 4xx status; a request body with an unknown field is refused rather than half-understood.
"""

from __future__ import annotations

import collections
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from ..core import errors as E
from ..core.errors import OTCError
from ..core.limits import API_MAX_BODY_BYTES, API_RECEIPT_CHECKS_CACHED
from ..core.messages import Chat, GrapevineNote, Offer, Receipt
from ..core.money import PAIRS, canonical, get_pair
from ..core.offer import available
from ..core.recovery import Report
from ..core.signing import receipt_is_valid
from ..core.sweep import average_text
from ..core.trade import TakerTrade
from ..home import new_token, remove_token, write_token
from ..node.clock import now_ms
from ..node.peer import Peer
from ..web import assets
from . import events
from .auth import SESSION_PATH, Auth, LoginCodeOut, LoginIn, SessionOut
from .schema_words import plain_schema_error
from .server import EventStream, HTTPError, Request, Response, Router, WebServer


# --- request bodies -----------------------------------------------------------------------------------
class OfferIn(msgspec.Struct, forbid_unknown_fields=True):
    side: Literal["buy", "sell"]
    amount: str
    price: str
    pair: str | None = None
    min_fill: str | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 24 * 3600)] | None = None


class TradeIn(msgspec.Struct, forbid_unknown_fields=True):
    offer_id: Annotated[str, msgspec.Meta(min_length=4, max_length=32)]
    amount: str | None = None


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    via: Literal["otc", "grapevine"] = "otc"  # grapevine: to a Grapevine (Node chat) peer by name, unsigned


class SweepIn(msgspec.Struct, forbid_unknown_fields=True):
    """Take the best offers up to ``amount`` at ``limit`` or better; ``post`` rests the remainder."""

    side: Literal["buy", "sell"]
    amount: str
    limit: str
    pair: str | None = None
    post: bool = False
    deadline_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None  # default 30 s


# --- response bodies ----------------------------------------------------------------------------------
class OfferOut(msgspec.Struct):
    id: str
    created_seq: int
    maker: str
    maker_name: str
    side: str
    pair: str
    price: str
    amount: str
    remaining: str
    reserved: str  # of remaining, held for takers' pending confirms
    available: str  # remaining - reserved: what a taker can get now
    min_fill: str | None
    expires_at: int | None
    seq: int
    status: str
    created_at: int
    mine: bool
    reachable: bool  # false: its maker did not answer us lately (sweeps skip it)


class BookOut(msgspec.Struct):
    pair: str
    bids: list[OfferOut]
    asks: list[OfferOut]


class ReceiptOut(msgspec.Struct):
    id: str
    offer_id: str
    maker: str
    maker_name: str
    taker: str
    taker_name: str
    side: str
    taker_side: str
    pair: str
    price: str
    amount: str
    status: str
    created_at: int
    role: str
    maker_sig: str
    taker_sig: str
    verified: bool  # both signatures checked by this API against the receipt's terms


class PeerOut(msgspec.Struct):
    id: str
    name: str
    address: str
    last_seen: int
    # replication state of this maker's offers in our book: what an operator needs to see drift
    head_seq: int  # the maker's latest seq, as the newest signed head of it we hold says
    held_seq: int  # the newest of its updates we hold
    offers: int  # its open offers in our book
    in_sync: bool  # our copy matches the digest of that head
    listed: bool  # a Grape has listed its address: we reach it directly, even while Grapes are down
    alive: bool  # its offers show in our book (false: declared dead, awaiting a sync, or equivocating)
    reachable: bool  # false: it did not answer our last request (retried after a while)
    equivocating: bool = False  # it signed two states of one offer or head: hidden for good


class HealthOut(msgspec.Struct):
    peer_id: str
    name: str
    rpc_port: int
    peers: int
    offers: int  # my open offers
    book_offers: int  # open offers of every maker held in my book
    pending_trades: int  # trades I took whose outcome I am still asking the maker for
    join_ms: float  # time it took to load the book from other peers at start
    grape: str = ""  # the Grape this peer announces and looks up through
    grape_ok: bool = True  # false: it cannot reach it, so it is out of the market (see grape_error)
    grape_error: str | None = None
    # "ok", or why trading is refused: "needs_recovery" (restart with --recover), "recovering"
    state: str = "ok"
    recovery: Report | None = None  # the evidence and what --recover did (core/recovery.py)
    market: dict[str, int] = msgspec.field(default_factory=dict)  # replication message counters


class MessageOut(msgspec.Struct):
    id: str
    direction: str
    sender: str  # a peer id; for Grapevine, the caller's address (no identity at all)
    sender_name: str  # the name the sender claims: anyone can claim any name; the id is who it is
    to: str  # a peer id; for Grapevine, the name we sent to
    text: str
    ts: int  # the sender's clock, as it claims
    received_at: int  # our clock: messages are ordered by this
    via: Literal["otc", "grapevine"] = "otc"
    verified: bool = True  # signed by the sender's key (never, for Grapevine)
    reply: str | None = None  # what a Grapevine peer answered, when we send to one


class PairOut(msgspec.Struct):
    symbol: str
    base: str
    quote: str
    amount_places: int
    price_places: int
    max_amount: str
    max_price: str


class PairsOut(msgspec.Struct):
    default: str  # the peer's default pair (``otc peer --pair``)
    pairs: list[PairOut]


class ErrorOut(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    available: str | None = None  # with a refused amount: what could be had instead


class TakeOut(msgspec.Struct):
    """One of my takes, whatever became of it: ``requested`` (asking the maker), ``reserved`` (confirmed,
    waiting for the maker's answer), ``done`` (a trade: see /api/trades), ``failed`` (no trade: ``error``
    says why)."""

    trade_id: str
    offer_id: str
    maker: str
    maker_name: str
    side: str  # mine: the opposite of the offer's
    pair: str
    price: str
    amount: str
    state: str
    error: str | None
    created_at: int
    updated_at: int


class SkippedOut(msgspec.Struct):
    offer_id: str
    error: str
    message: str


class SweepOut(msgspec.Struct):
    side: str
    pair: str
    amount: str
    limit: str
    fills: list[ReceiptOut]
    filled: str
    total: str  # quote currency: sum of price x amount over the fills
    average_price: str | None  # total / filled; null when nothing was filled
    pending: str  # takes the makers have not answered in time: may still complete
    skipped: list[SkippedOut]  # offers lost to other takers (or refused) and passed over
    posted: OfferOut | None
    deadline_reached: bool  # stopped at its deadline with offers left to try


FIELD_CODES = {
    "side": E.ERR_INVALID_SIDE,
    "amount": E.ERR_INVALID_AMOUNT,
    "min_fill": E.ERR_INVALID_AMOUNT,
    "price": E.ERR_INVALID_PRICE,
    "limit": E.ERR_INVALID_PRICE,
    "pair": E.ERR_UNKNOWN_PAIR,
    "ttl_s": E.ERR_INVALID_TTL,
    "text": E.ERR_INVALID_MESSAGE,
}
STATUS = {
    E.ERR_OFFER_NOT_FOUND: 404,
    E.ERR_PEER_NOT_FOUND: 404,
    E.ERR_TRADE_NOT_FOUND: 404,
    E.ERR_NOT_MAKER: 403,
    E.ERR_TRADE_PENDING: 409,
    # requests for quote, settlement, webhooks (api/rfq_routes.py)
    E.ERR_RFQ_NOT_FOUND: 404,
    E.ERR_QUOTE_NOT_FOUND: 404,
    E.ERR_RULE_NOT_FOUND: 404,
    E.ERR_WEBHOOK_NOT_FOUND: 404,
    E.ERR_QUOTE_FOREIGN: 403,
    E.ERR_NOT_ENTITLED: 403,
    E.ERR_NOT_READY: 503,
}
BAD_REQUEST = {
    E.ERR_INVALID_PAYLOAD,
    E.ERR_INVALID_AMOUNT,
    E.ERR_INVALID_PRICE,
    E.ERR_INVALID_SIDE,
    E.ERR_INVALID_TTL,
    E.ERR_UNKNOWN_PAIR,
    E.ERR_INVALID_MESSAGE,
    E.ERR_TOO_MANY_OFFERS,
    E.ERR_AMBIGUOUS_ID,
    E.ERR_AMBIGUOUS_PEER,
    E.ERR_INVALID_WEBHOOK,
    E.ERR_TOO_MANY_WEBHOOKS,
}

_encoder = msgspec.json.Encoder()


def offer_out(offer: Offer, me: str, reachable: bool = True) -> OfferOut:
    return OfferOut(
        id=offer.id,
        created_seq=offer.created_seq,
        maker=offer.maker,
        maker_name=offer.maker_name,
        side=offer.side,
        pair=offer.pair,
        price=offer.price,
        amount=offer.amount,
        remaining=offer.remaining,
        reserved=offer.reserved,
        available=offer.remaining if offer.reserved == "0" else canonical(available(offer)),
        min_fill=offer.min_fill,
        expires_at=offer.expires_at,
        seq=offer.seq,
        status=offer.status,
        created_at=offer.created_at,
        mine=offer.maker == me,
        reachable=reachable,
    )


def receipt_out(receipt: Receipt, role: str, verified: bool | None = None) -> ReceiptOut:
    """``verified``: whether both signatures check out, if known already (else checked here)."""
    return ReceiptOut(
        **{f: getattr(receipt, f) for f in ReceiptOut.__struct_fields__ if hasattr(receipt, f)},
        taker_side="sell" if receipt.side == "buy" else "buy",
        role=role,
        verified=receipt_is_valid(receipt) if verified is None else verified,
    )


def message_out(direction: str, msg: Chat | GrapevineNote, received_at: int) -> MessageOut:
    if isinstance(msg, GrapevineNote):
        inbound = direction == "in"
        return MessageOut(
            msg.id, direction, msg.peer if inbound else "", "", "" if inbound else msg.peer, msg.text, msg.ts,
            received_at, via="grapevine", verified=False,
        )  # fmt: skip
    return MessageOut(msg.id, direction, msg.sender, msg.sender_name, msg.to, msg.text, msg.ts, received_at)


def take_out(t: TakerTrade) -> TakeOut:
    return TakeOut(
        trade_id=t.take.trade_id,
        offer_id=t.take.offer_id,
        maker=t.maker,
        maker_name=t.terms.maker_name if t.terms is not None else "",
        side="sell" if t.side == "buy" else "buy",
        pair=t.pair,
        price=t.take.price,
        amount=t.take.amount,
        state=t.state.value,
        error=t.error,
        created_at=t.take.ts,
        updated_at=t.updated_at,
    )


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status)


def error_response(
    code: str, message: str, status: int | None = None, available: Decimal | None = None
) -> Response:
    if status is None:
        status = STATUS.get(code, 400 if code in BAD_REQUEST else 409)
    more = None if available is None else canonical(max(available, Decimal(0)))
    return json_response(ErrorOut(code, message, more), status)


async def read_body(request: Request, kind: type[Any]) -> Any:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for name, code in FIELD_CODES.items():
            if f"`$.{name}`" in text:
                raise OTCError(code, plain_schema_error(text)) from None
        raise OTCError(E.ERR_INVALID_PAYLOAD, plain_schema_error(text)) from None
    except msgspec.DecodeError as exc:
        raise OTCError(E.ERR_INVALID_PAYLOAD, f"body is not valid JSON: {exc}") from None


HTTP_ERRORS = {
    400: E.ERR_INVALID_PAYLOAD,
    404: "ERR_NOT_FOUND",
    405: "ERR_METHOD_NOT_ALLOWED",
    413: E.ERR_INVALID_PAYLOAD,
    500: "ERR_INTERNAL",
}


def http_error(exc: HTTPError) -> Response:
    return error_response(exc.code or HTTP_ERRORS.get(exc.status, "ERR_HTTP"), str(exc), exc.status)


def _static(response: Response) -> Any:
    async def serve(request: Request) -> Response:
        return response

    return serve


Endpoint = Any  # a bound API method taking a Request


def endpoint(fn: Endpoint) -> Endpoint:
    """Answer an ``OTCError`` raised by a handler as its JSON error."""

    async def wrapped(request: Request) -> Response | EventStream:
        try:
            result: Response | EventStream = await fn(request)
            return result
        except OTCError as exc:
            return error_response(exc.code, exc.message, available=exc.available)

    return wrapped


class API:
    """The control API of ``peer``. ``start`` writes a new token to ``<data-dir>/api.token`` (see auth.py);
    every request must carry it, or the cookie of a session opened with it."""

    def __init__(self, peer: Peer, token: str | None = None) -> None:
        self.peer = peer
        self.auth = Auth(token or new_token())
        # receipts whose signatures were checked: (id, maker_sig, taker_sig) -> valid, newest last
        self._checked: collections.OrderedDict[tuple[str, str, str], bool] = collections.OrderedDict()
        r = Router()
        routes = [
            ("GET", "/api/health", self.health),
            ("GET", "/api/book", self.book),
            ("POST", "/api/offers", self.post_offer),
            ("GET", "/api/offers", self.my_offers),
            ("DELETE", "/api/offers/{id}", self.cancel_offer),
            ("POST", "/api/trades", self.post_trade),
            ("GET", "/api/trades", self.trades),
            ("GET", "/api/takes", self.takes),
            ("GET", "/api/peers", self.peers),
            ("POST", "/api/messages", self.post_message),
            ("GET", "/api/messages", self.messages),
            ("POST", "/api/sweep", self.sweep),
            ("GET", "/api/events", self.events),
            ("GET", "/api/openapi.json", self.openapi),
            ("POST", SESSION_PATH, self.auth.login),
            ("DELETE", SESSION_PATH, self.auth.logout),
            ("POST", "/api/login-codes", self.login_code),
            ("GET", "/api/pairs", self.pairs),
        ]
        from .rfq_routes import RfqAPI  # it builds on this module's helpers

        routes += RfqAPI(peer, self.auth.token).routes()
        for method, path, handler in routes:
            starting = path in (SESSION_PATH, "/api/openapi.json")  # served while the peer starts
            r.add(method, path, endpoint(handler if starting else self._once_started(handler)))
        # the web desk's own files (no data: served before login; see otc/web)
        desk = assets()
        for path, asset in desk.items():
            r.add("GET", path, _static(Response(asset.body, 200, asset.content_type, dict(asset.headers))))
        self.auth.public = frozenset(desk)
        self.server = WebServer(r, http_error, guard=self.auth, max_body=API_MAX_BODY_BYTES)
        self.port = 0

    @property
    def token(self) -> str:
        return self.auth.token

    def _once_started(self, handler: Endpoint) -> Endpoint:
        """The API listens before the peer joins the market (a port that is taken must fail before the
        peer announces itself); until the join is done, requests get 503 ERR_NOT_READY."""

        async def gated(request: Request) -> Response | EventStream:
            if not self.peer.started:
                raise OTCError(E.ERR_NOT_READY, "the peer is starting: joining the market")
            result: Response | EventStream = await handler(request)
            return result

        return gated

    async def start(self, port: int, host: str = "127.0.0.1") -> int:
        write_token(self.peer.data_dir, self.token)  # before the port opens: a client can always find it
        try:
            self.port = await self.server.start(host, port)
        except BaseException:
            remove_token(self.peer.data_dir, self.token)
            raise
        self.auth.bind(host, self.port)
        return self.port

    async def stop(self) -> None:
        await self.server.stop()
        remove_token(self.peer.data_dir, self.token)

    # handlers ----------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        p = self.peer
        peers = len(p.book.peers(now_ms()))
        mine = p.desk.open_count
        pending = len(p.trading.pending_trades())
        health = HealthOut(
            p.peer_id, p.name, p.rpc_port, peers, mine, p.book.open_count(), pending, p.market.join_ms,
            p.grape.grape, p.grape.ok is not False, p.grape.error, p.recovery.state.value, p.recovery.report,
        )  # fmt: skip
        health.market = dict(p.market.stats)
        return json_response(health)

    async def book(self, request: Request) -> Response:
        pair = get_pair(request.query.get("pair", self.peer.config.default_pair)).symbol
        bids, asks = self.peer.book.view(pair, now_ms())
        prefix = request.query.get("id", "").lower()
        if prefix:  # the open offers whose id starts so, in any pair, shown or not (at most 10)
            found = self.peer.book.find(prefix)[:10] if len(prefix) >= 4 else []
            pair = found[0].pair if found else pair
            bids, asks = [o for o in found if o.side == "buy"], [o for o in found if o.side == "sell"]
        return json_response(
            BookOut(pair, [self.offer_view(o) for o in bids], [self.offer_view(o) for o in asks])
        )

    async def post_offer(self, request: Request) -> Response:
        body: OfferIn = await read_body(request, OfferIn)
        offer = self.peer.trading.post_offer(
            side=body.side,
            amount=body.amount,
            price=body.price,
            pair=body.pair or self.peer.config.default_pair,
            min_fill=body.min_fill,
            ttl_ms=None if body.ttl_s is None else body.ttl_s * 1000,
        )
        return json_response(offer_out(offer, self.peer.peer_id), 201)

    async def my_offers(self, request: Request) -> Response:
        me = self.peer.peer_id
        if request.query.get("all") in ("1", "true"):
            offers = self.peer.store.offers()  # the whole history: the desk keeps only the recent part
        else:
            offers = sorted(self.peer.desk.open_offers(), key=lambda o: o.seq)
        return json_response([offer_out(o, me) for o in offers])

    async def cancel_offer(self, request: Request) -> Response:
        offer = self.peer.trading.cancel_offer(request.match_info["id"])
        return json_response(offer_out(offer, self.peer.peer_id))

    def _in_a_market(self) -> None:
        """Refuse to trade when there is nobody to trade with for sure: no Grape, and no live peer heard
        (a peer that hears others trades with them directly, Grape or not)."""
        p = self.peer
        if p.grape.ok is False and not p.book.peers(now_ms()):
            raise OTCError(
                E.ERR_NOT_CONNECTED,
                f"this peer cannot reach its Grape at {p.grape.grape} ({p.grape.error}) and hears no other "
                "peer: it is not in a market. Start the Grape, or restart the peer with the right --grape.",
            )

    async def post_trade(self, request: Request) -> Response:
        body: TradeIn = await read_body(request, TradeIn)
        self._in_a_market()
        receipt = await self.peer.trading.take(body.offer_id, body.amount)
        self._remember(receipt, True)  # checked as it came (core/taker.py); the other signature is ours
        return json_response(self.receipt_view(receipt), 201)

    async def trades(self, request: Request) -> Response:
        receipts = self.peer.trading.receipts() + self.peer.rfq.receipts()  # quotes we honoured too
        receipts.sort(key=lambda r: (r[1].created_at, r[1].id))
        return json_response([receipt_out(r, role, self._verified(r)) for role, r in receipts])

    async def takes(self, request: Request) -> Response:
        try:
            limit = min(max(int(request.query.get("limit", "50")), 1), 1000)
        except ValueError:
            raise OTCError(E.ERR_INVALID_PAYLOAD, "limit is a number of takes, 1 to 1000") from None
        return json_response([take_out(t) for t in self.peer.store.recent_taker_trades(limit)])

    async def peers(self, request: Request) -> Response:
        return json_response(self.peers_view(hidden=request.query.get("all") in ("1", "true")))

    # --- how things are shown: by the endpoints, and by the event stream (events.Views) ------------------
    def offer_view(self, offer: Offer) -> OfferOut:
        return offer_out(offer, self.peer.peer_id, self.peer.directory.reachable(offer.maker))

    def receipt_view(self, receipt: Receipt) -> ReceiptOut:
        role = "maker" if receipt.maker == self.peer.peer_id else "taker"
        return receipt_out(receipt, role, self._verified(receipt))

    def message_view(self, direction: str, msg: Chat | GrapevineNote, received_at: int) -> MessageOut:
        return message_out(direction, msg, received_at)

    def _verified(self, receipt: Receipt) -> bool:
        key = (receipt.id, receipt.maker_sig, receipt.taker_sig)
        valid = self._checked.get(key)
        if valid is None:
            valid = self._remember(receipt, receipt_is_valid(receipt))
        return valid

    def _remember(self, receipt: Receipt, valid: bool) -> bool:
        self._checked[(receipt.id, receipt.maker_sig, receipt.taker_sig)] = valid
        if len(self._checked) > API_RECEIPT_CHECKS_CACHED:
            self._checked.popitem(last=False)
        return valid

    def peers_view(self, hidden: bool = True) -> list[PeerOut]:
        book = self.peer.book
        now = now_ms()
        out = []
        for p in book.peers(now, hidden=hidden):
            view = book.makers[p.peer_id]
            assert view.head is not None
            out.append(
                PeerOut(
                    id=p.peer_id,
                    name=p.name,
                    address=p.addr,
                    last_seen=p.last_seen,
                    head_seq=view.head.head,
                    held_seq=view.max_seq,
                    offers=len(view.offers),
                    in_sync=view.in_step(view.head),
                    listed=self.peer.directory.is_listed(p.addr),
                    alive=book.maker_alive(p.peer_id, now),
                    reachable=self.peer.directory.reachable(p.peer_id),
                    equivocating=view.proof is not None,
                )
            )
        return out

    async def post_message(self, request: Request) -> Response:
        body: MessageIn = await read_body(request, MessageIn)
        if body.via == "grapevine":
            note, reply = await self.peer.grapevine.send(body.to, body.text)
            out = message_out("out", note, note.ts)
            out.reply = reply
            return json_response(out, 201)
        msg = await self.peer.chat.send(body.to, body.text)
        return json_response(message_out("out", msg, now_ms()), 201)

    async def messages(self, request: Request) -> Response:
        return json_response([message_out(d, m, at) for d, m, at in self.peer.store.messages()])

    async def events(self, request: Request) -> EventStream:
        """Server-sent events: book changes, trades, messages, peers, status (see events.py)."""
        return events.stream(self.peer, self)

    async def login_code(self, request: Request) -> Response:
        """A single-use login link for a browser (``otc web``): for the holder of the token only."""
        if request.principal != "token":
            raise HTTPError(403, "only the API token can make login links", "ERR_TOKEN_REQUIRED")
        return json_response(self.auth.mint_code(), 201)

    async def pairs(self, request: Request) -> Response:
        listed = [
            PairOut(p.symbol, p.base, p.quote, p.amount_places, p.price_places, canonical(p.max_amount),
                    canonical(p.max_price))
            for p in PAIRS.values()
        ]  # fmt: skip
        return json_response(PairsOut(self.peer.config.default_pair, listed))

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())

    async def sweep(self, request: Request) -> Response:
        body: SweepIn = await read_body(request, SweepIn)
        if (blocked := self.peer.recovery.blocked()) is not None:
            raise blocked  # before it takes anything: our history is not whole (node/recovery.py)
        self._in_a_market()
        result = await self.peer.sweeps.sweep(
            body.side, body.amount, body.limit, body.pair, body.post, body.deadline_s
        )
        me = self.peer.peer_id
        return json_response(
            SweepOut(
                side=result.side,
                pair=result.pair,
                amount=canonical(result.amount),
                limit=canonical(result.limit),
                fills=[self.receipt_view(r) for r in result.fills],
                filled=canonical(result.filled),
                total=canonical(result.total),
                average_price=average_text(result.average_price),
                pending=canonical(result.pending),
                skipped=[SkippedOut(s.offer_id, s.code, s.message) for s in result.skipped],
                posted=None if result.posted is None else offer_out(result.posted, me),
                deadline_reached=result.deadline_reached,
            ),
            201,
        )


def openapi_document() -> dict[str, Any]:
    (offer_in, trade_in, message_in, offer, book, receipt, peer, health, message, error), components = (
        msgspec.json.schema_components(
            [
                OfferIn,
                TradeIn,
                MessageIn,
                OfferOut,
                BookOut,
                ReceiptOut,
                PeerOut,
                HealthOut,
                MessageOut,
                ErrorOut,
            ],
            ref_template="#/components/schemas/{name}",
        )
    )
    (sweep_in, sweep_out, login_in, session_out, login_code, pairs, take), more_components = (
        msgspec.json.schema_components(
            [SweepIn, SweepOut, LoginIn, SessionOut, LoginCodeOut, PairsOut, TakeOut],
            ref_template="#/components/schemas/{name}",
        )
    )
    components.update(more_components)

    def ok(schema: dict[str, Any], status: str = "200", desc: str = "OK") -> dict[str, Any]:
        return {
            status: {"description": desc, "content": {"application/json": {"schema": schema}}},
            "4XX": {"description": "error", "content": {"application/json": {"schema": error}}},
        }

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    pair_param = {
        "name": "pair",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(PAIRS)},
    }
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    prefix_param = {
        "name": "id",
        "in": "query",
        "required": False,
        "description": "an offer id prefix (4+ hex): the open offers it names, in any pair, at most 10",
        "schema": {"type": "string"},
    }
    all_param = {
        "name": "all",
        "in": "query",
        "required": False,
        "description": "1: also makers that are silent or awaiting a sync (alive false)",
        "schema": {"type": "string", "enum": ["1", "true"]},
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Grenache OTC peer control API",
            "version": "1",
            "description": "Local API of one peer. Amounts and prices are decimal strings.",
        },
        "paths": {
            "/api/health": {"get": {"operationId": "health", "responses": ok(health)}},
            "/api/book": {
                "get": {
                    "operationId": "book",
                    "parameters": [pair_param, prefix_param],
                    "responses": ok(book),
                }
            },
            "/api/offers": {
                "post": {
                    "operationId": "postOffer",
                    "requestBody": body(offer_in),
                    "responses": ok(offer, "201"),
                },
                "get": {"operationId": "myOffers", "responses": ok({"type": "array", "items": offer})},
            },
            "/api/offers/{id}": {
                "delete": {"operationId": "cancelOffer", "parameters": [id_param], "responses": ok(offer)}
            },
            "/api/trades": {
                "post": {
                    "operationId": "take",
                    "requestBody": body(trade_in),
                    "responses": ok(receipt, "201"),
                },
                "get": {"operationId": "trades", "responses": ok({"type": "array", "items": receipt})},
            },
            "/api/takes": {
                "get": {
                    "operationId": "takes",
                    "description": "My latest takes (?limit=, default 50), newest first, and their outcome.",
                    "responses": ok({"type": "array", "items": take}),
                }
            },
            "/api/peers": {
                "get": {
                    "operationId": "peers",
                    "parameters": [all_param],
                    "responses": ok({"type": "array", "items": peer}),
                }
            },
            "/api/messages": {
                "post": {
                    "operationId": "sendMessage",
                    "requestBody": body(message_in),
                    "responses": ok(message, "201"),
                },
                "get": {"operationId": "messages", "responses": ok({"type": "array", "items": message})},
            },
            "/api/sweep": {
                "post": {
                    "operationId": "sweep",
                    "requestBody": body(sweep_in),
                    "responses": ok(sweep_out, "201"),
                }
            },
            "/api/session": {
                "post": {
                    "operationId": "login",
                    "description": "Trade the token, or a login code, for a session cookie (HttpOnly, "
                    "SameSite=Strict).",
                    "security": [],
                    "requestBody": body(login_in),
                    "responses": ok(session_out, "201"),
                },
                "delete": {"operationId": "logout", "responses": ok({"type": "object"})},
            },
            "/api/login-codes": {
                "post": {
                    "operationId": "loginCode",
                    "description": "A single-use login code for a browser, valid for a minute (token only).",
                    "security": [{"token": []}],
                    "responses": ok(login_code, "201"),
                }
            },
            "/api/pairs": {"get": {"operationId": "pairs", "responses": ok(pairs)}},
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token the peer writes to <data-dir>/api.token at every start.",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "otc_session_<port>"},
            },
        },
        "security": [{"token": []}, {"session": []}],
    }
    from .rfq_routes import openapi_paths

    for path, operations in openapi_paths(error, components).items():
        document["paths"].setdefault(path, {}).update(operations)
    return document
