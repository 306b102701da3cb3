"""Control API endpoints for requests for quote, quoting rules, settlement, offer templates and
amendments, and webhooks (composed into routes.API; same conventions: decimal strings, ``ERR_*``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from ..core import errors as E
from ..core.errors import OTCError
from ..core.messages import Quote, QuoteRequest
from ..core.money import CONTEXT, D, canonical
from ..core.rfq import Rule
from ..core.settlement import Settlement
from ..node.clock import now_ms
from ..node.notify import Webhook
from ..node.peer import Peer
from .routes import OfferOut, ReceiptOut, json_response, offer_out, read_body, receipt_out
from .server import Request, Response

FIELD_CODES = {
    "ttl_ms": E.ERR_INVALID_TTL,
    "spread": E.ERR_INVALID_PRICE,
    "max_size": E.ERR_INVALID_AMOUNT,
    "balance": E.ERR_INVALID_AMOUNT,
    "url": E.ERR_INVALID_WEBHOOK,
    "note": E.ERR_INVALID_MESSAGE,
}
Ms = Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]
LIST_MINE = 100  # our requests GET /api/rfqs lists (the latest; any older one by its id)


# --- request bodies -------------------------------------------------------------------------------------
class RfqIn(msgspec.Struct, forbid_unknown_fields=True):
    side: Literal["buy", "sell"]
    amount: str
    pair: str | None = None
    ttl_ms: Ms | None = None


class QuoteIn(msgspec.Struct, forbid_unknown_fields=True):
    price: str
    amount: str | None = None
    ttl_ms: Ms | None = None


class AcceptIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str | None = None


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    """A quoting rule for one pair and side (ours: ``sell`` answers requests to buy)."""

    side: Literal["buy", "sell"]
    pair: str | None = None
    price: str | None = None
    spread: str | None = None
    max_size: str | None = None
    balance: str | None = None
    ttl_ms: Ms | None = None


class StepIn(msgspec.Struct, forbid_unknown_fields=True):
    step: Literal["payment_sent", "payment_received", "delivery_sent", "settled", "disputed"]
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class AmendIn(msgspec.Struct, forbid_unknown_fields=True):
    price: str | None = None
    amount: str | None = None


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


# --- response bodies ------------------------------------------------------------------------------------
class QuoteOut(msgspec.Struct):
    id: str  # the quote id (FIX QuoteID)
    quote_req_id: str
    maker: str
    maker_name: str
    requester: str
    side: str  # the maker's
    pair: str
    price: str
    amount: str
    created_at: int
    valid_until: int
    status: str  # open, expired; for quotes we gave: filled (used up) too
    remaining: str  # for quotes we gave: what is left; for quotes we got: amount - what we accepted
    delivered: bool | None = None  # for a quote just given: whether its requester received it


class RfqOut(msgspec.Struct):
    id: str  # FIX QuoteReqID
    requester: str
    requester_name: str
    side: str  # the requester's
    pair: str
    amount: str
    created_at: int
    valid_until: int
    mine: bool
    status: str  # open (taking quotes), closed
    delivered: int | None  # for ours: peers the request reached (null while still being sent)
    quotes: list[QuoteOut]  # ours: those received, best first; theirs: those we gave


class RuleOut(msgspec.Struct):
    pair: str
    side: str
    price: str | None
    spread: str | None
    max_size: str | None
    balance: str | None
    ttl_ms: int
    automatic: bool
    committed: str  # what our open quotes on this pair and side could still be filled for
    available: str | None  # balance - committed: the most a new quote may be for


class PaymentOut(msgspec.Struct, rename={"from_": "from"}):
    from_: str
    to: str
    currency: str
    amount: str


class StepOut(msgspec.Struct):
    trade_id: str
    terms: str
    step: str
    actor: str
    ts: int
    note: str | None
    sig: str


class SettlementOut(msgspec.Struct):
    trade_id: str
    state: str
    role: str
    buyer: str
    seller: str
    pays: PaymentOut
    delivers: PaymentOut
    entered_at: int
    due_at: int | None
    overdue: bool
    next_steps: list[str]
    steps: list[StepOut]


class AmendOut(msgspec.Struct):
    cancelled: OfferOut
    offer: OfferOut


class WebhookOut(msgspec.Struct):
    id: str
    url: str
    created_at: int
    persistent: bool
    queued: int
    delivered: int
    failed: int
    dropped: int
    last_error: str | None


def settlement_out(s: Settlement) -> SettlementOut:
    return msgspec.convert(s.summary(now_ms()), SettlementOut)


def webhook_out(h: Webhook) -> WebhookOut:
    return WebhookOut(h.id, h.url, h.created_at, h.persistent, len(h.queue), h.delivered, h.failed, h.dropped,
                      h.last_error)  # fmt: skip


async def read(request: Request, kind: type[Any]) -> Any:
    try:
        return await read_body(request, kind)
    except OTCError as exc:
        if exc.code == E.ERR_INVALID_PAYLOAD:
            for name, code in FIELD_CODES.items():
                if f"`$.{name}`" in exc.message or exc.message.startswith(f"{name} "):  # raw, or in words
                    raise OTCError(code, exc.message) from None
        raise


class RfqAPI:
    def __init__(self, peer: Peer, token: str) -> None:
        self.peer = peer
        peer.notify.token = token  # webhooks are signed with an HMAC of the API's token

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/api/rfqs", self.post_rfq),
            ("GET", "/api/rfqs", self.rfqs),
            ("GET", "/api/rfqs/{id}", self.rfq),
            ("POST", "/api/rfqs/{id}/quotes", self.post_quote),
            ("POST", "/api/quotes/{id}/accept", self.accept),
            ("GET", "/api/quoting", self.rules),
            ("PUT", "/api/quoting", self.put_rule),
            ("DELETE", "/api/quoting", self.delete_rule),
            ("GET", "/api/settlements", self.settlements),
            ("GET", "/api/trades/{id}/settlement", self.settlement),
            ("POST", "/api/trades/{id}/settlement", self.post_step),
            ("POST", "/api/offers/{id}/again", self.again),
            ("PATCH", "/api/offers/{id}", self.amend),
            ("POST", "/api/webhooks", self.post_webhook),
            ("GET", "/api/webhooks", self.webhooks),
            ("DELETE", "/api/webhooks/{id}", self.delete_webhook),
        ]

    # --- RFQ ------------------------------------------------------------------------------------------
    def _accepted(self, quotes: list[Quote]) -> dict[str, Decimal]:
        """What we accepted of each of these quotes (done trades, from the store)."""
        return self.peer.store.rfq.accepted(q.quote_id for q in quotes)

    def _received_quote(self, q: Quote, now: int, accepted: dict[str, Decimal]) -> QuoteOut:
        taken = accepted.get(q.quote_id, Decimal(0))
        left = canonical(max(Decimal(0), CONTEXT.subtract(D(q.amount), taken)))
        status = "filled" if left == "0" else "open" if now < q.valid_until else "expired"
        return _quote_out(q, status, left)

    def _given_quote(self, q: Quote, delivered: bool | None = None) -> QuoteOut:
        status, remaining = self.peer.rfq.given_state(q)
        return _quote_out(q, status, remaining, delivered)

    def _rfq_out(
        self, req: QuoteRequest, mine: bool, quotes: list[QuoteOut], delivered: int | None
    ) -> RfqOut:
        status = "open" if now_ms() < req.valid_until else "closed"
        return RfqOut(req.quote_req_id, req.requester, req.requester_name, req.side, req.pair, req.amount,
                      req.created_at, req.valid_until, mine, status, delivered, quotes)  # fmt: skip

    async def post_rfq(self, request: Request) -> Response:
        body: RfqIn = await read(request, RfqIn)
        req = self.peer.rfq.request(
            body.side, body.amount, body.pair or self.peer.config.default_pair, body.ttl_ms
        )
        return json_response(self._rfq_out(req, True, [], None), 201)

    async def rfqs(self, request: Request) -> Response:
        rfq = self.peer.rfq
        now = now_ms()
        recent = sorted(rfq.requester.requests.values(), key=lambda s: s.request.created_at)[-LIST_MINE:]
        accepted = self._accepted([q for s in recent for q in s.quotes.values()])
        out = [
            self._rfq_out(
                s.request, True, [self._received_quote(q, now, accepted) for q in rfq.ranked(s)], s.delivered
            )
            for s in recent
        ]
        for req in rfq.quoter.open_requests(now):
            given = [q for q in rfq.quoter.quotes.values() if q.quote_req_id == req.quote_req_id]
            out.append(self._rfq_out(req, False, [self._given_quote(q) for q in given], None))
        return json_response(out)

    async def rfq(self, request: Request) -> Response:
        rid = request.match_info["id"]
        rfq = self.peer.rfq
        theirs = rfq.received(rid)
        if theirs is not None:
            req, given = theirs
            return json_response(self._rfq_out(req, False, [self._given_quote(q) for q in given], None))
        sent = rfq.sent(rid)
        now = now_ms()
        ranked = rfq.ranked(sent)
        accepted = self._accepted(ranked)
        quotes = [self._received_quote(q, now, accepted) for q in ranked]
        return json_response(self._rfq_out(sent.request, True, quotes, sent.delivered))

    async def post_quote(self, request: Request) -> Response:
        body: QuoteIn = await read(request, QuoteIn)
        quote, delivered = await self.peer.rfq.give_quote(
            request.match_info["id"], price=body.price, amount=body.amount, ttl_ms=body.ttl_ms
        )
        return json_response(self._given_quote(quote, delivered), 201)

    async def accept(self, request: Request) -> Response:
        body: AcceptIn = await read(request, AcceptIn)
        receipt = await self.peer.rfq.accept(request.match_info["id"], body.amount)
        return json_response(receipt_out(receipt, "taker"), 201)

    # --- quoting rules --------------------------------------------------------------------------------
    def _rule_out(self, r: Rule) -> RuleOut:
        quoter = self.peer.rfq.quoter
        available = quoter.available(r.pair, r.side)
        return RuleOut(r.pair, r.side, r.price, r.spread, r.max_size, r.balance, r.ttl_ms, r.automatic,
                       canonical(quoter.committed(r.pair, r.side)),
                       None if available is None else canonical(available))  # fmt: skip

    async def rules(self, request: Request) -> Response:
        rules = sorted(self.peer.rfq.quoter.rules.values(), key=lambda r: (r.pair, r.side))
        return json_response([self._rule_out(r) for r in rules])

    async def put_rule(self, request: Request) -> Response:
        body: RuleIn = await read(request, RuleIn)
        fields = msgspec.structs.asdict(body)
        fields["pair"] = body.pair or self.peer.config.default_pair
        return json_response(self._rule_out(self.peer.rfq.set_rule(**fields)))

    async def delete_rule(self, request: Request) -> Response:
        side = request.query.get("side")
        pair = request.query.get("pair", self.peer.config.default_pair)
        if side not in ("buy", "sell"):
            raise OTCError(E.ERR_INVALID_SIDE, "say which rule: ?side=buy or ?side=sell (and &pair=)")
        rule = self.peer.rfq.remove_rule(pair, side)
        return json_response(self._rule_out(rule))

    # --- settlement -----------------------------------------------------------------------------------
    async def settlements(self, request: Request) -> Response:
        only_open = request.query.get("open") in ("1", "true")
        return json_response([settlement_out(s) for s in self.peer.settlements.all(open_only=only_open)])

    async def settlement(self, request: Request) -> Response:
        return json_response(settlement_out(self.peer.settlements.get(request.match_info["id"])))

    async def post_step(self, request: Request) -> Response:
        body: StepIn = await read(request, StepIn)
        settlement = self.peer.settlements.step(request.match_info["id"], body.step, body.note)
        return json_response(settlement_out(settlement))

    # --- offer templates and amendments ------------------------------------------------------------------
    async def again(self, request: Request) -> Response:
        offer = self.peer.templates.again(request.match_info["id"])
        return json_response(offer_out(offer, self.peer.peer_id), 201)

    async def amend(self, request: Request) -> Response:
        body: AmendIn = await read(request, AmendIn)
        old, new = self.peer.templates.amend(request.match_info["id"], price=body.price, amount=body.amount)
        me = self.peer.peer_id
        return json_response(AmendOut(offer_out(old, me), offer_out(new, me)))

    # --- webhooks -------------------------------------------------------------------------------------
    async def post_webhook(self, request: Request) -> Response:
        body: WebhookIn = await read(request, WebhookIn)
        return json_response(webhook_out(self.peer.notify.add(body.url)), 201)

    async def webhooks(self, request: Request) -> Response:
        return json_response([webhook_out(h) for h in self.peer.notify.hooks.values()])

    async def delete_webhook(self, request: Request) -> Response:
        return json_response(webhook_out(self.peer.notify.remove(request.match_info["id"])))


def _quote_out(q: Quote, status: str, remaining: str, delivered: bool | None = None) -> QuoteOut:
    return QuoteOut(q.quote_id, q.quote_req_id, q.maker, q.maker_name, q.requester, q.side, q.pair, q.price,
                    q.amount, q.created_at, q.valid_until, status, remaining, delivered)  # fmt: skip


def openapi_paths(error: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """This module's part of the OpenAPI document (routes.openapi_document merges it)."""
    kinds = [RfqIn, QuoteIn, AcceptIn, RuleIn, StepIn, AmendIn, WebhookIn, RfqOut, QuoteOut, RuleOut,
             SettlementOut, AmendOut, WebhookOut, OfferOut, ReceiptOut]  # fmt: skip
    schemas, found = msgspec.json.schema_components(kinds, ref_template="#/components/schemas/{name}")
    components.update(found)
    s = dict(zip([k.__name__ for k in kinds], schemas, strict=True))

    def op(
        name: str, out: str, status: str = "200", *, body: str | None = None, params: tuple[str, ...] = (),
        many: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        schema = {"type": "array", "items": s[out]} if many else s[out]
        spec: dict[str, Any] = {
            "operationId": name,
            "responses": {
                status: {"description": "OK", "content": {"application/json": {"schema": schema}}},
                "4XX": {"description": "error", "content": {"application/json": {"schema": error}}},
            },
        }
        if body is not None:
            spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": s[body]}}}
        if params:
            spec["parameters"] = [
                {
                    "name": p,
                    "in": "path" if p == "id" else "query",
                    "required": p == "id",
                    "schema": {"type": "string"},
                }
                for p in params
            ]
        return spec

    return {
        "/api/rfqs": {
            "post": op("requestQuotes", "RfqOut", "201", body="RfqIn"),
            "get": op("rfqs", "RfqOut", many=True),
        },
        "/api/rfqs/{id}": {"get": op("rfq", "RfqOut", params=("id",))},
        "/api/rfqs/{id}/quotes": {"post": op("quote", "QuoteOut", "201", body="QuoteIn", params=("id",))},
        "/api/quotes/{id}/accept": {
            "post": op("acceptQuote", "ReceiptOut", "201", body="AcceptIn", params=("id",))
        },
        "/api/quoting": {
            "get": op("quotingRules", "RuleOut", many=True),
            "put": op("setQuotingRule", "RuleOut", body="RuleIn"),
            "delete": op("removeQuotingRule", "RuleOut", params=("side", "pair")),
        },
        "/api/settlements": {"get": op("settlements", "SettlementOut", params=("open",), many=True)},
        "/api/trades/{id}/settlement": {
            "get": op("settlement", "SettlementOut", params=("id",)),
            "post": op("settlementStep", "SettlementOut", body="StepIn", params=("id",)),
        },
        "/api/offers/{id}/again": {"post": op("offerAgain", "OfferOut", "201", params=("id",))},
        "/api/offers/{id}": {"patch": op("amendOffer", "AmendOut", body="AmendIn", params=("id",))},
        "/api/webhooks": {
            "post": op("addWebhook", "WebhookOut", "201", body="WebhookIn"),
            "get": op("webhooks", "WebhookOut", many=True),
        },
        "/api/webhooks/{id}": {"delete": op("removeWebhook", "WebhookOut", params=("id",))},
    }
