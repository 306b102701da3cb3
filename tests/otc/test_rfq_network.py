"""Requests for quote end to end: `otc peer` processes on real Grapes. A requester, three quoting makers
and an automatic rule; the races (many accepting one quote; one maker's balance against many
requesters); expiry enforced by the maker; hand-built attacks on a real peer's key; amendments that no
book ever sees half-applied."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grenache.grapes import GrapeNetwork
from otc.core.identity import Identity
from otc.core.messages import Quote, QuoteRequest, SettleSync, Take
from otc.core.signing import sign

from ..harness import APIError, PeerProcess, book_state, wait_for
from .peers import api, code, identity_of, outcome, rpc
from .test_fuzz import DEADLINE_S, json_values, mutate

Spawn = Callable[..., PeerProcess]
MALLORY = Identity.from_seed(bytes([99]) * 32)


def sees(peer: PeerProcess, n: int) -> bool:
    return bool(peer.get("/api/health")["peers"] >= n)


def incoming(maker: PeerProcess, rfq_id: str) -> dict[str, Any] | None:
    return next((r for r in maker.get("/api/rfqs") if r["id"] == rfq_id and not r["mine"]), None)


def attempt(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "done", fn()
    except APIError as exc:
        return exc.code or "?", exc.body


def strip(receipt: dict[str, Any]) -> tuple[str, str, str, str]:
    return receipt["id"], receipt["amount"], receipt["maker_sig"], receipt["taker_sig"]


def test_a_requester_three_makers_and_a_rule_trade_through_rfq(spawn: Spawn) -> None:
    req, auto, manual1, manual2 = spawn("req"), spawn("auto"), spawn("m1"), spawn("m2")
    wait_for(lambda: sees(req, 3), what="the requester to see the makers")
    offer = auto.offer("sell", "10", "8000")
    api(auto, "PUT", "/api/quoting", {"side": "sell", "spread": "5", "max_size": "3"})
    rfq = req.post("/api/rfqs", {"side": "buy", "amount": "5", "ttl_ms": 20_000})
    assert (rfq["mine"], rfq["status"], rfq["quotes"]) == (True, "open", [])
    for maker, price in ((manual1, "8004"), (manual2, "8010")):
        seen = wait_for(lambda m=maker: incoming(m, rfq["id"]), what=f"{maker.name} to get the request")
        assert (seen["side"], seen["amount"], seen["requester"]) == ("buy", "5", req.peer_id)
        quote = maker.post(f"/api/rfqs/{rfq['id']}/quotes", {"price": price})
        assert (quote["delivered"], quote["amount"], quote["side"], quote["status"]) == (
            True,
            "5",
            "sell",
            "open",
        )
    got = wait_for(
        lambda: (r := req.get(f"/api/rfqs/{rfq['id']}")) and len(r["quotes"]) == 3 and r, what="quotes"
    )
    assert got["delivered"] == 3
    # best first: 8004 from m1, then the rule's 8005 (auto's best ask 8000 + 5, at most 3), then 8010
    assert [(q["maker_name"], q["price"], q["amount"]) for q in got["quotes"]] == [
        ("m1", "8004", "5"),
        ("auto", "8005", "3"),
        ("m2", "8010", "5"),
    ]
    quote_ids = {q["id"] for q in got["quotes"]}
    # quotes go to the requester only: no book holds them, no maker's offers or head count them
    for p in (req, auto, manual1, manual2):
        assert not quote_ids & {i for i, _, _ in book_state(p)}
    assert [o["id"] for o in auto.get("/api/offers")] == [offer["id"]] and manual1.get("/api/offers") == []
    assert auto.get("/api/health")["offers"] == 1

    best, ruled = got["quotes"][0], got["quotes"][1]
    receipt = req.post(f"/api/quotes/{best['id']}/accept", {})
    assert (receipt["offer_id"], receipt["price"], receipt["amount"], receipt["maker"]) == (
        best["id"],
        "8004",
        "5",
        manual1.peer_id,
    )
    assert [strip(r) for r in manual1.get("/api/trades")] == [
        strip(receipt)
    ]  # the same receipt on both sides
    try:
        req.post(f"/api/quotes/{best['id']}/accept", {})
        raise AssertionError("a used quote was honoured again")
    except APIError as exc:
        assert (exc.status, exc.code) == (409, "ERR_QUOTE_USED")
    # a quote taken in parts, up to its amount
    for amount in ("1", "2"):
        assert req.post(f"/api/quotes/{ruled['id']}/accept", {"amount": amount})["amount"] == amount
    result = attempt(lambda: req.post(f"/api/quotes/{ruled['id']}/accept", {"amount": "0.1"}))
    assert result[0] == "ERR_QUOTE_USED"
    assert sum(Decimal(r["amount"]) for r in auto.get("/api/trades")) == 3
    # the maker's view of its quote
    mine = wait_for(lambda: incoming(auto, rfq["id"]), what="auto's view")
    assert [(q["id"], q["status"], q["remaining"]) for q in mine["quotes"]] == [(ruled["id"], "filled", "0")]
    # the requester sees what it accepted
    after = req.get(f"/api/rfqs/{rfq['id']}")
    assert {q["maker_name"]: q["status"] for q in after["quotes"]} == {
        "m1": "filled",
        "auto": "filled",
        "m2": "open",
    }


def test_a_quote_is_honoured_once_however_many_race_for_it(spawn: Spawn, tmp_path: Path) -> None:
    maker, req = spawn("maker"), spawn("req", data_dir=tmp_path / "req")
    # other peers of the market, which will try to take a quote made for someone else, with their own keys
    others = [identity_of(spawn(f"o{i}", data_dir=tmp_path / f"o{i}").data_dir) for i in range(3)]  # type: ignore[arg-type]
    wait_for(lambda: sees(req, 4), what="the requester to see everyone")
    rfq = req.post("/api/rfqs", {"side": "buy", "amount": "2", "ttl_ms": 30_000})
    wait_for(lambda: incoming(maker, rfq["id"]), what="the request at the maker")
    quote = maker.post(f"/api/rfqs/{rfq['id']}/quotes", {"price": "8000", "ttl_ms": 30_000})
    wait_for(lambda: req.get(f"/api/rfqs/{rfq['id']}")["quotes"], what="the quote at the requester")

    def stranger(n: int) -> tuple[str, Any]:  # another peer's key, taking a quote that is not its own
        taker = others[n % len(others)]
        take = sign(
            taker,
            Take(
                trade_id=f"{n + 1:032x}",
                offer_id=quote["id"],
                amount="0.5",
                price="8000",
                taker=taker.peer_id,
                taker_name="other",
                ts=int(time.time() * 1000),
            ),
        )
        err, result = rpc(maker, take)
        return outcome(err, result), result

    def impostor() -> tuple[str, Any]:  # claims to be the requester, cannot sign as it
        take = sign(
            MALLORY,
            Take(
                trade_id="e" * 32,
                offer_id=quote["id"],
                amount="0.5",
                price="8000",
                taker=req.peer_id,
                taker_name="req",
                ts=int(time.time() * 1000),
            ),
        )
        err, result = rpc(maker, take)
        return outcome(err, result), result

    jobs: list[Callable[[], tuple[str, Any]]] = [
        *(
            lambda: attempt(lambda: req.post(f"/api/quotes/{quote['id']}/accept", {"amount": "0.5"}))
            for _ in range(8)
        ),
        *(lambda n=n: stranger(n) for n in range(6)),
        impostor,
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = list(pool.map(lambda job: job(), jobs))
    mine, theirs, forged = outcomes[:8], outcomes[8:14], outcomes[14]
    done = [r for status, r in mine if status == "done"]
    assert len(done) == 4 and {s for s, _ in mine if s != "done"} == {"ERR_QUOTE_USED"}, mine
    assert {s for s, _ in theirs} == {"ERR_QUOTE_FOREIGN"}, theirs
    assert forged[0] == "ERR_BAD_SIGNATURE", forged
    assert sorted(strip(r) for r in maker.get("/api/trades")) == sorted(strip(r) for r in done)
    assert sorted(strip(r) for r in req.get("/api/trades")) == sorted(strip(r) for r in done)
    assert sum(Decimal(r["amount"]) for r in done) == 2


def test_one_maker_with_one_balance_never_fills_beyond_it(spawn: Spawn) -> None:
    maker = spawn("maker")
    requesters = [spawn(f"r{i}") for i in range(5)]
    for r in requesters:
        wait_for(lambda r=r: sees(r, 5), what=f"{r.name} to see every peer")
    rule = api(
        maker,
        "PUT",
        "/api/quoting",
        {"side": "sell", "price": "8000", "max_size": "2", "balance": "5", "ttl_ms": 30_000},
    )
    assert (rule["balance"], rule["available"], rule["automatic"]) == ("5", "5", True)
    with ThreadPoolExecutor(5) as pool:
        rfqs = list(
            pool.map(
                lambda r: r.post("/api/rfqs", {"side": "buy", "amount": "2", "ttl_ms": 30_000}), requesters
            )
        )
    for rfq in rfqs:  # the maker answers (or not) when it receives the request
        wait_for(lambda rfq=rfq: incoming(maker, rfq["id"]), what="the requests at the maker")
    given = {rfq["id"]: (incoming(maker, rfq["id"]) or {})["quotes"] for rfq in rfqs}
    sizes = sorted(Decimal(q["amount"]) for qs in given.values() for q in qs)
    assert sizes == [1, 2, 2], given  # 5 committed, no more
    assert api(maker, "GET", "/api/quoting")[0]["available"] == "0"

    def accept(pair: tuple[PeerProcess, dict[str, Any]]) -> list[tuple[str, Any]]:
        r, rfq = pair
        expected = len(given[rfq["id"]])
        view = wait_for(
            lambda: (v := r.get(f"/api/rfqs/{rfq['id']}")) and len(v["quotes"]) == expected and v,
            what="the quote at its requester",
        )
        quotes = view["quotes"]
        # each requester tries its quote twice over, at once
        with ThreadPoolExecutor(2) as inner:
            return list(
                inner.map(lambda q: attempt(lambda: r.post(f"/api/quotes/{q['id']}/accept", {})), quotes * 2)
            )

    with ThreadPoolExecutor(5) as pool:
        outcomes = [o for batch in pool.map(accept, zip(requesters, rfqs, strict=True)) for o in batch]
    done = [r for status, r in outcomes if status == "done"]
    assert {s for s, _ in outcomes if s != "done"} <= {"ERR_QUOTE_USED"}
    assert sum(Decimal(r["amount"]) for r in done) == 5
    assert sorted(strip(r) for r in maker.get("/api/trades")) == sorted(strip(r) for r in done)
    rule = api(maker, "GET", "/api/quoting")[0]
    assert (rule["balance"], rule["committed"], rule["available"]) == ("0", "0", "0")
    late = requesters[0].post("/api/rfqs", {"side": "buy", "amount": "1"})
    assert (
        wait_for(lambda: incoming(maker, late["id"]), what="a late request")["quotes"] == []
    )  # nothing left


def test_the_maker_refuses_a_quote_after_it_expires(spawn: Spawn, tmp_path: Path) -> None:
    maker, req = spawn("maker"), spawn("req", data_dir=tmp_path / "req")
    wait_for(lambda: sees(req, 1), what="the requester to see the maker")
    rfq = req.post("/api/rfqs", {"side": "sell", "amount": "1"})
    wait_for(lambda: incoming(maker, rfq["id"]), what="the request at the maker")
    quote = maker.post(f"/api/rfqs/{rfq['id']}/quotes", {"price": "7900", "ttl_ms": 1500})
    assert quote["side"] == "buy"
    wait_for(lambda: req.get(f"/api/rfqs/{rfq['id']}")["quotes"], what="the quote")
    wait_for(lambda: req.get(f"/api/rfqs/{rfq['id']}")["quotes"][0]["status"] == "expired", what="expiry")
    assert attempt(lambda: req.post(f"/api/quotes/{quote['id']}/accept", {}))[0] == "ERR_QUOTE_EXPIRED"
    # the maker enforces it too: a take signed by the requester itself, sent straight to the maker
    me = identity_of(tmp_path / "req")
    take = sign(
        me,
        Take(
            trade_id="a" * 32,
            offer_id=quote["id"],
            amount="1",
            price="7900",
            taker=me.peer_id,
            taker_name="req",
            ts=int(time.time() * 1000),
        ),
    )
    assert outcome(*rpc(maker, take)) == "ERR_QUOTE_EXPIRED"
    assert maker.get("/api/trades") == [] and req.get("/api/trades") == []


def test_hand_built_rfq_messages_are_refused_with_reasons(spawn: Spawn, tmp_path: Path) -> None:
    maker, req = spawn("maker", data_dir=tmp_path / "maker"), spawn("req")
    as_maker = identity_of(tmp_path / "maker")  # to sign quotes that pass the signature check
    wait_for(lambda: sees(req, 1), what="the requester to see the maker")
    now = int(time.time() * 1000)

    def request(n: int, **changes: Any) -> QuoteRequest:
        fields: dict[str, Any] = {
            "quote_req_id": f"{n:032x}",
            "requester": MALLORY.peer_id,
            "requester_name": "mallory",
            "side": "buy",
            "pair": "BTC/USD",
            "amount": "1",
            "created_at": now,
            "valid_until": now + 60_000,
        } | changes
        return sign(MALLORY, QuoteRequest(**fields))

    # to a maker: forged, too long, too far in the future, then a flood
    assert code(rpc(maker, msgspec.structs.replace(request(1), amount="2"))[0]) == "ERR_BAD_SIGNATURE"
    assert code(rpc(maker, request(2, valid_until=now + 86_400_000))[0]) == "ERR_INVALID_MESSAGE"
    assert (
        code(rpc(maker, request(3, created_at=now + 600_000, valid_until=now + 660_000))[0])
        == "ERR_INVALID_MESSAGE"
    )
    assert code(rpc(maker, request(4, amount="1.000000001"))[0]) == "ERR_INVALID_AMOUNT"
    assert code(rpc(maker, {"type": "rfq", "quote_req_id": "x"})[0]) == "ERR_INVALID_PAYLOAD"
    results = [code(rpc(maker, request(100 + n))[0]) for n in range(35)]
    # five held at once from one requester; each request, refused or not, counts against its rate
    assert results == [None] * 5 + ["ERR_TOO_MANY_RFQS"] * 25 + ["ERR_RATE_LIMITED"] * 5, results
    assert len([r for r in maker.get("/api/rfqs") if not r["mine"]]) == 5  # what it holds is bounded
    # to a requester: quotes it never asked for, forged, or beyond what it asked
    rfq = req.post("/api/rfqs", {"side": "buy", "amount": "1"})
    wait_for(
        lambda: req.get(f"/api/rfqs/{rfq['id']}")["delivered"] == 1, what="the request sent to the maker"
    )

    def quote(key: Identity = as_maker, **changes: Any) -> Quote:
        fields: dict[str, Any] = {
            "quote_id": "b" * 32,
            "quote_req_id": rfq["id"],
            "maker": key.peer_id,
            "maker_name": "mallory",
            "requester": req.peer_id,
            "side": "sell",
            "pair": "BTC/USD",
            "price": "8000",
            "amount": "1",
            "created_at": now,
            "valid_until": now + 30_000,
        } | changes
        return sign(key, Quote(**fields))

    cases = [
        (quote(quote_req_id="c" * 32), "ERR_RFQ_NOT_FOUND"),
        (quote(requester=maker.peer_id), "ERR_RFQ_NOT_FOUND"),
        (quote(amount="2"), "ERR_INVALID_AMOUNT"),
        (quote(side="buy"), "ERR_INVALID_MESSAGE"),
        (quote(MALLORY), "ERR_RFQ_NOT_FOUND"),  # a stranger the request was not sent to
        (msgspec.structs.replace(quote(MALLORY), maker=maker.peer_id), "ERR_BAD_SIGNATURE"),  # posing as one
        (quote(valid_until=now - 1, created_at=now - 10), "ERR_QUOTE_EXPIRED"),
    ]
    for msg, expected in cases:
        assert code(rpc(req, msg)[0]) == expected, (msg, expected)
    assert req.get(f"/api/rfqs/{rfq['id']}")["quotes"] == []
    assert rpc(req, quote())[0] is None  # the maker's own key, a well-formed quote: kept
    assert [q["id"] for q in req.get(f"/api/rfqs/{rfq['id']}")["quotes"]] == ["b" * 32]
    # a trade id used on one of the maker's desks cannot be reused on the other
    offer = maker.offer("sell", "5", "8000")
    public = sign(
        MALLORY,
        Take(
            trade_id="d" * 32,
            offer_id=offer["id"],
            amount="1",
            price="8000",
            taker=MALLORY.peer_id,
            taker_name="mallory",
            ts=now,
        ),
    )
    err, result = rpc(maker, public)
    assert err is None and result["status"] == "reserved"
    q2 = req.post("/api/rfqs", {"side": "buy", "amount": "1"})
    wait_for(lambda: incoming(maker, q2["id"]), what="the request at the maker")
    given = maker.post(f"/api/rfqs/{q2['id']}/quotes", {"price": "8000"})
    reused = sign(
        MALLORY,
        Take(
            trade_id="d" * 32,
            offer_id=given["id"],
            amount="1",
            price="8000",
            taker=MALLORY.peer_id,
            taker_name="mallory",
            ts=now,
        ),
    )
    assert outcome(*rpc(maker, reused)) == "ERR_TRADE_ID_CONFLICT"
    # settlement exchanges from someone outside the trade learn nothing
    sync = sign(MALLORY, SettleSync(trade_id="d" * 32, sender=MALLORY.peer_id, steps=[], ts=now))
    assert code(rpc(maker, sync)[0]) == "ERR_TRADE_NOT_FOUND"


def test_an_amendment_is_never_seen_half_applied(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    old = alice.offer("sell", "3", "8000", min_fill="1")
    wait_for(lambda: any(i == old["id"] for i, _, _ in book_state(bob)), what="the offer at bob")
    with ThreadPoolExecutor(1) as pool:
        amended = pool.submit(lambda: api(alice, "PATCH", f"/api/offers/{old['id']}", {"price": "8100"}))
        seen: list[list[str]] = []
        while not amended.done() or len(seen) < 5:
            ids = [o["id"] for o in bob.book()["asks"]]
            seen.append(ids)
            if amended.done() and ids != [old["id"]]:
                break
    result = amended.result()
    new = result["offer"]
    assert result["cancelled"]["id"] == old["id"] and result["cancelled"]["status"] == "cancelled"
    assert (new["price"], new["amount"], new["min_fill"], new["side"]) == ("8100", "3", "1", "sell")
    final = wait_for(
        lambda: (ids := [o["id"] for o in bob.book()["asks"]]) == [new["id"]] and ids, what="new offer"
    )
    assert final == [new["id"]]
    assert all(s in ([old["id"]], [new["id"]]) for s in seen), seen  # never both, never neither
    result = attempt(lambda: bob.take(old["id"], "1"))
    assert result[0] == "ERR_OFFER_NOT_FOUND"
    # and posted again after a cancel: the same terms, a new offer
    alice.delete(f"/api/offers/{new['id']}")
    again = alice.post(f"/api/offers/{new['id'][:8]}/again", {})
    assert (again["price"], again["amount"], again["min_fill"], again["status"]) == ("8100", "3", "1", "open")
    assert again["id"] not in (old["id"], new["id"])
    wait_for(lambda: [o["id"] for o in bob.book()["asks"]] == [again["id"]], what="the repost at bob")
    result = attempt(lambda: api(alice, "PATCH", f"/api/offers/{new['id']}", {"price": "1"}))
    assert result[0] == "ERR_OFFER_CLOSED"


# --- fuzzing the new keys and endpoints ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(
    grapes: GrapeNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PeerProcess, PeerProcess, dict[str, Any]]]:
    """A maker with a rule and an offer, a requester with an open request and a quote: shared by the
    fuzz tests (module scope: one pair of processes for hundreds of examples)."""
    logs = tmp_path_factory.mktemp("rfq-fuzz")
    maker = PeerProcess(grapes.urls[0], "fmaker", log_dir=logs)
    req = PeerProcess(grapes.urls[1], "freq", log_dir=logs)
    try:
        maker.start()
        req.start()
        wait_for(lambda: sees(req, 1) and sees(maker, 1), what="the fuzz peers to meet")
        offer = maker.offer("sell", "5", "8000")
        api(
            maker,
            "PUT",
            "/api/quoting",
            {"side": "sell", "price": "8000", "max_size": "1", "ttl_ms": 60_000},
        )
        rfq = req.post("/api/rfqs", {"side": "buy", "amount": "1", "ttl_ms": 120_000})
        quote = wait_for(lambda: req.get(f"/api/rfqs/{rfq['id']}")["quotes"], what="the fuzz quote")[0]
        yield maker, req, {"offer": offer, "rfq": rfq, "quote": quote}
    finally:
        maker.stop()
        req.stop()


def fuzz_messages(
    maker: PeerProcess, req: PeerProcess, ctx: dict[str, Any]
) -> dict[str, tuple[PeerProcess, dict[str, Any]]]:
    now = int(time.time() * 1000)
    enc = msgspec.to_builtins
    rfq = sign(
        MALLORY,
        QuoteRequest(
            quote_req_id=uuid.uuid4().hex,
            requester=MALLORY.peer_id,
            requester_name="m",
            side="buy",
            pair="BTC/USD",
            amount="1",
            created_at=now,
            valid_until=now + 5000,
        ),
    )
    quote = sign(
        MALLORY,
        Quote(
            quote_id=uuid.uuid4().hex,
            quote_req_id=ctx["rfq"]["id"],
            maker=MALLORY.peer_id,
            maker_name="m",
            requester=req.peer_id,
            side="sell",
            pair="BTC/USD",
            price="9000",
            amount="1",
            created_at=now,
            valid_until=now + 5000,
        ),
    )
    take = sign(
        MALLORY,
        Take(
            trade_id=uuid.uuid4().hex,
            offer_id=ctx["quote"]["id"],
            amount="0.1",
            price="8000",
            taker=MALLORY.peer_id,
            taker_name="m",
            ts=now,
        ),
    )
    sync = sign(MALLORY, SettleSync(trade_id=uuid.uuid4().hex, sender=MALLORY.peer_id, steps=[], ts=now))
    return {
        "rfq": (maker, enc(rfq)),
        "quote": (req, enc(quote)),
        "take": (maker, enc(take)),
        "settle": (maker, enc(sync)),
        "confirm": (
            maker,
            {"type": "confirm", "trade_id": take.trade_id, "taker": MALLORY.peer_id, "taker_sig": "a" * 128},
        ),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_rfq_and_settlement_keys_survive_fuzzing(
    pair: tuple[PeerProcess, PeerProcess, dict[str, Any]], data: st.DataObject
) -> None:
    maker, req, ctx = pair
    name = data.draw(st.sampled_from(["rfq", "quote", "take", "settle", "confirm"]))
    target, valid = fuzz_messages(maker, req, ctx)[name]
    how = data.draw(st.sampled_from(["mutated", "mutated", "random", "valid"]))
    payload = (
        mutate(valid, data) if how == "mutated" else data.draw(json_values) if how == "random" else valid
    )
    start = time.monotonic()
    err, result = rpc(target, payload, timeout=DEADLINE_S + 1)
    assert time.monotonic() - start < DEADLINE_S
    assert err is None or re.match(r"^ERR_[A-Z_]+: ", err), err
    if err is None:
        assert result == {"ok": True} or isinstance(result, dict)
    # nothing traded, the quote still open, both peers serving
    assert maker.get("/api/trades") == [] and req.get("/api/trades") == []
    assert [o["id"] for o in maker.get("/api/offers")] == [ctx["offer"]["id"]]
    held = req.get(f"/api/rfqs/{ctx['rfq']['id']}")["quotes"]
    assert ctx["quote"]["id"] in {q["id"] for q in held} and all(
        q["maker"] in (maker.peer_id, MALLORY.peer_id) for q in held
    )


BODIES = {
    ("POST", "/api/rfqs"): {"side": "buy", "amount": "1", "pair": "BTC/USD", "ttl_ms": 1000},
    ("POST", "/api/rfqs/{rfq}/quotes"): {"price": "8000", "amount": "1", "ttl_ms": 1000},
    ("POST", "/api/quotes/{quote}/accept"): {"amount": "0.5"},
    ("PUT", "/api/quoting"): {
        "side": "buy",
        "price": "7000",
        "max_size": "1",
        "balance": "1",
        "ttl_ms": 1000,
    },
    ("POST", "/api/trades/{trade}/settlement"): {"step": "payment_sent", "note": "x"},
    ("PATCH", "/api/offers/{offer}"): {"price": "8100", "amount": "2"},
    ("POST", "/api/webhooks"): {"url": "http://127.0.0.1:9/x"},
}


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_rfq_endpoints_survive_fuzzing(
    pair: tuple[PeerProcess, PeerProcess, dict[str, Any]], data: st.DataObject
) -> None:
    maker, req, ctx = pair
    (method, path), valid = data.draw(st.sampled_from(sorted(BODIES.items())))
    ids = {"rfq": ctx["rfq"]["id"], "quote": "0" * 32, "trade": "1" * 32, "offer": "2" * 32}
    path = path.format(**{k: data.draw(st.sampled_from([v, v[:6], "zz", ""])) for k, v in ids.items()})
    style = data.draw(st.sampled_from(["mutated", "random", "bytes"]))
    body = (
        json.dumps(mutate(valid, data)).encode()
        if style == "mutated"
        else data.draw(st.binary(max_size=200))
        if style == "bytes"
        else json.dumps(data.draw(json_values)).encode()
    )
    target = data.draw(st.sampled_from([maker, req]))
    request = urllib.request.Request(target.url + path, data=body, method=method, headers=target.headers)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE_S + 1) as resp:
            status, reply = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        status, reply = exc.code, json.loads(exc.read())
    assert time.monotonic() - start < DEADLINE_S
    assert status < 500, (status, reply)
    if status >= 400:
        assert re.match(r"^ERR_[A-Z_]+$", reply["error"]) and reply["message"], reply
    assert maker.get("/api/trades") == [] and req.get("/api/trades") == []
