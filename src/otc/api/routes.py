"""The local control API (JSON over HTTP on 127.0.0.1), used by the ``otc`` CLI, the web page and bots.

Amounts and prices are decimal strings. Errors are always ``{"error": "ERR_...", "message": "..."}`` with
a 4xx status; a request body with an unknown field is refused rather than half-understood.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec

from ..core import errors as E
from ..core.errors import OTCError
from ..core.messages import Chat, Offer, Receipt
from ..core.money import PAIRS, canonical, get_pair
from ..core.sweep import average_text
from ..node.clock import now_ms
from ..node.peer import Peer
from .server import EventStream, HTTPError, Request, Response, Router, WebServer

MAX_BODY = 64 * 1024


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


class SweepIn(msgspec.Struct, forbid_unknown_fields=True):
    """Take the best offers up to ``amount`` at ``limit`` or better; ``post`` rests the remainder."""

    side: Literal["buy", "sell"]
    amount: str
    limit: str
    pair: str | None = None
    post: bool = False


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
    min_fill: str | None
    expires_at: int | None
    seq: int
    status: str
    created_at: int
    mine: bool


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


class PeerOut(msgspec.Struct):
    id: str
    name: str
    address: str
    last_seen: int
    # replication state of this maker's offers in our book: what an operator needs to see drift
    head_seq: int  # the maker's latest seq, as its last heartbeat announced it
    held_seq: int  # the newest of its updates we hold
    offers: int  # its open offers in our book
    in_sync: bool  # our copy matches the digest of its last heartbeat
    listed: bool  # a Grape has listed its address: we reach it directly, even while Grapes are down
    alive: bool  # its offers show in our book (false: declared dead, awaiting a sync, or equivocating)
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
    market: dict[str, int] = msgspec.field(default_factory=dict)  # replication message counters


class MessageOut(msgspec.Struct):
    id: str
    direction: str
    sender: str
    sender_name: str
    to: str
    text: str
    ts: int


class ErrorOut(msgspec.Struct):
    error: str
    message: str


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


FIELD_CODES = {
    "side": E.ERR_INVALID_SIDE,
    "amount": E.ERR_INVALID_AMOUNT,
    "min_fill": E.ERR_INVALID_AMOUNT,
    "price": E.ERR_INVALID_PRICE,
    "limit": E.ERR_INVALID_PRICE,
    "pair": E.ERR_UNKNOWN_PAIR,
    "ttl_s": E.ERR_INVALID_TTL,
}
STATUS = {
    E.ERR_OFFER_NOT_FOUND: 404,
    E.ERR_PEER_NOT_FOUND: 404,
    E.ERR_TRADE_NOT_FOUND: 404,
    E.ERR_NOT_MAKER: 403,
    E.ERR_TRADE_PENDING: 409,
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
}

_encoder = msgspec.json.Encoder()


def offer_out(offer: Offer, me: str) -> OfferOut:
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
        min_fill=offer.min_fill,
        expires_at=offer.expires_at,
        seq=offer.seq,
        status=offer.status,
        created_at=offer.created_at,
        mine=offer.maker == me,
    )


def receipt_out(receipt: Receipt, role: str) -> ReceiptOut:
    return ReceiptOut(
        **{f: getattr(receipt, f) for f in ReceiptOut.__struct_fields__ if hasattr(receipt, f)},
        taker_side="sell" if receipt.side == "buy" else "buy",
        role=role,
    )


def message_out(direction: str, msg: Chat) -> MessageOut:
    return MessageOut(msg.id, direction, msg.sender, msg.sender_name, msg.to, msg.text, msg.ts)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status)


def error_response(code: str, message: str, status: int | None = None) -> Response:
    if status is None:
        status = STATUS.get(code, 400 if code in BAD_REQUEST else 409)
    return json_response(ErrorOut(code, message), status)


async def read_body(request: Request, kind: type[Any]) -> Any:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for name, code in FIELD_CODES.items():
            if f"`$.{name}`" in text:
                raise OTCError(code, text) from None
        raise OTCError(E.ERR_INVALID_PAYLOAD, text) from None
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
    return error_response(HTTP_ERRORS.get(exc.status, "ERR_HTTP"), str(exc), exc.status)


Endpoint = Any  # a bound API method taking a Request


def endpoint(fn: Endpoint) -> Endpoint:
    """Answer an ``OTCError`` raised by a handler as its JSON error."""

    async def wrapped(request: Request) -> Response | EventStream:
        try:
            result: Response | EventStream = await fn(request)
            return result
        except OTCError as exc:
            return error_response(exc.code, exc.message)

    return wrapped


class API:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        r = Router()
        routes = [
            ("GET", "/api/health", self.health),
            ("GET", "/api/book", self.book),
            ("POST", "/api/offers", self.post_offer),
            ("GET", "/api/offers", self.my_offers),
            ("DELETE", "/api/offers/{id}", self.cancel_offer),
            ("POST", "/api/trades", self.post_trade),
            ("GET", "/api/trades", self.trades),
            ("GET", "/api/peers", self.peers),
            ("POST", "/api/messages", self.post_message),
            ("GET", "/api/messages", self.messages),
            ("POST", "/api/sweep", self.sweep),
            ("GET", "/api/events", self.events),
            ("GET", "/api/openapi.json", self.openapi),
        ]
        for method, path, handler in routes:
            r.add(method, path, endpoint(handler))
        self.server = WebServer(r, http_error, max_body=MAX_BODY)
        self.port = 0

    async def start(self, port: int, host: str = "127.0.0.1") -> int:
        self.port = await self.server.start(host, port)
        return self.port

    async def stop(self) -> None:
        await self.server.stop()

    # handlers ----------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        p = self.peer
        peers = len(p.book.peers(now_ms()))
        mine = p.desk.open_count
        pending = len(p.trading.pending_trades())
        health = HealthOut(
            p.peer_id, p.name, p.rpc_port, peers, mine, p.book.open_count(), pending, p.market.join_ms
        )
        health.market = dict(p.market.stats)
        return json_response(health)

    async def book(self, request: Request) -> Response:
        pair = get_pair(request.query.get("pair", self.peer.config.default_pair)).symbol
        bids, asks = self.peer.book.view(pair, now_ms())
        me = self.peer.peer_id
        return json_response(
            BookOut(pair, [offer_out(o, me) for o in bids], [offer_out(o, me) for o in asks])
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

    async def post_trade(self, request: Request) -> Response:
        body: TradeIn = await read_body(request, TradeIn)
        receipt = await self.peer.trading.take(body.offer_id, body.amount)
        return json_response(receipt_out(receipt, "taker"), 201)

    async def trades(self, request: Request) -> Response:
        return json_response([receipt_out(r, role) for role, r in self.peer.trading.receipts()])

    async def peers(self, request: Request) -> Response:
        book = self.peer.book
        now = now_ms()
        out = []
        for p in book.peers(now, hidden=request.query.get("all") in ("1", "true")):
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
                    equivocating=view.proof is not None,
                )
            )
        return json_response(out)

    async def post_message(self, request: Request) -> Response:
        body: MessageIn = await read_body(request, MessageIn)
        msg = await self.peer.chat.send(body.to, body.text)
        return json_response(message_out("out", msg), 201)

    async def messages(self, request: Request) -> Response:
        return json_response([message_out(d, m) for d, m in self.peer.store.messages()])

    async def events(self, request: Request) -> EventStream:
        """Server-sent events: one ``data:`` line per book change, trade or message."""

        async def run(send: Callable[[bytes], Awaitable[None]]) -> None:
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)

            def push(event: dict[str, Any]) -> None:
                summary = {"type": event["type"]}
                offer = event.get("offer")
                if offer is not None:  # enough for a watcher to tell which update arrived
                    summary.update(id=offer.id, seq=offer.seq, status=offer.status)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(summary)

            self.peer.events.callbacks.append(push)
            try:
                await send(b": connected\n\n")
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), 15)
                        await send(b"data: " + _encoder.encode(event) + b"\n\n")
                    except TimeoutError:
                        await send(b": keep-alive\n\n")
            finally:
                self.peer.events.callbacks.remove(push)

        return EventStream(run)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())

    async def sweep(self, request: Request) -> Response:
        body: SweepIn = await read_body(request, SweepIn)
        result = await self.peer.sweeps.sweep(body.side, body.amount, body.limit, body.pair, body.post)
        me = self.peer.peer_id
        return json_response(
            SweepOut(
                side=result.side,
                pair=result.pair,
                amount=canonical(result.amount),
                limit=canonical(result.limit),
                fills=[receipt_out(r, "taker") for r in result.fills],
                filled=canonical(result.filled),
                total=canonical(result.total),
                average_price=average_text(result.average_price),
                pending=canonical(result.pending),
                skipped=[SkippedOut(s.offer_id, s.code, s.message) for s in result.skipped],
                posted=None if result.posted is None else offer_out(result.posted, me),
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
    (sweep_in, sweep_out), sweep_components = msgspec.json.schema_components(
        [SweepIn, SweepOut], ref_template="#/components/schemas/{name}"
    )
    components.update(sweep_components)

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
    all_param = {
        "name": "all",
        "in": "query",
        "required": False,
        "description": "1: also makers that are silent or awaiting a sync (alive false)",
        "schema": {"type": "string", "enum": ["1", "true"]},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Grenache OTC peer control API",
            "version": "1",
            "description": "Local API of one peer. Amounts and prices are decimal strings.",
        },
        "paths": {
            "/api/health": {"get": {"operationId": "health", "responses": ok(health)}},
            "/api/book": {"get": {"operationId": "book", "parameters": [pair_param], "responses": ok(book)}},
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
        },
        "components": {"schemas": components},
    }
