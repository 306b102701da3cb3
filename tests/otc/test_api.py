"""Bad input at the control API and at the peer's RPC keys: a specific error, nothing changed, and a
peer that keeps serving."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from grenache import Link, PeerRPCClient, RPCError
from grenache.grapes import GrapeNetwork
from grenache.tls import client_context

from ..harness import APIError, PeerProcess, book_state, http, wait_for

Spawn = Callable[..., PeerProcess]

BAD_OFFERS: list[tuple[Any, str]] = [
    ({"side": "hold", "amount": "1", "price": "1"}, "ERR_INVALID_SIDE"),
    ({"side": "buy", "amount": 1.5, "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "NaN", "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "Infinity", "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "-1", "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "0", "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "0.000000001", "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "1e30", "price": "1"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "1", "price": "1.001"}, "ERR_INVALID_PRICE"),
    ({"side": "buy", "amount": "1", "price": "-5"}, "ERR_INVALID_PRICE"),
    ({"side": "buy", "amount": "1", "price": "1", "pair": "DOGE/USD"}, "ERR_UNKNOWN_PAIR"),
    ({"side": "buy", "amount": "1", "price": "1", "min_fill": "2"}, "ERR_INVALID_AMOUNT"),
    ({"side": "buy", "amount": "1", "price": "1", "ttl_s": 0}, "ERR_INVALID_TTL"),
    ({"side": "buy", "amount": "1", "price": "1", "ttl_s": "60"}, "ERR_INVALID_TTL"),
    ({"side": "buy", "amount": "1"}, "ERR_INVALID_PAYLOAD"),
    ({"side": "buy", "amount": "1", "price": "1", "colour": "red"}, "ERR_INVALID_PAYLOAD"),
    (["buy", "1", "1"], "ERR_INVALID_PAYLOAD"),
    ("not an object", "ERR_INVALID_PAYLOAD"),
]


def raw(method: str, url: str, data: bytes, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_api_refuses_bad_input_and_changes_nothing(spawn: Spawn) -> None:
    alice = spawn("alice")
    before = book_state(alice)
    for body, code in BAD_OFFERS:
        with pytest.raises(APIError) as err:
            alice.post("/api/offers", body)
        assert (err.value.status, err.value.code) == (400, code), body
        assert err.value.body["message"]
    assert book_state(alice) == before == []
    assert alice.get("/api/offers") == []

    status, body = raw("POST", alice.url + "/api/offers", b"{not json", alice.token)
    assert status == 400 and b"ERR_INVALID_PAYLOAD" in body
    status, body = raw("POST", alice.url + "/api/offers", b"x" * (70 * 1024), alice.token)
    assert status == 413 and b"ERR_INVALID_PAYLOAD" in body
    with pytest.raises(APIError) as err:
        alice.get("/api/nothing")
    assert (err.value.status, err.value.code) == (404, "ERR_NOT_FOUND")
    with pytest.raises(APIError) as err:
        http("PUT", alice.url + "/api/offers", {}, token=alice.token)
    assert (err.value.status, err.value.code) == (405, "ERR_METHOD_NOT_ALLOWED")
    with pytest.raises(APIError) as err:
        alice.get("/api/book?pair=XYZ")
    assert (err.value.status, err.value.code) == (400, "ERR_UNKNOWN_PAIR")
    with pytest.raises(APIError) as err:
        alice.post("/api/messages", {"to": "nobody", "text": "hi"})
    assert (err.value.status, err.value.code) == (404, "ERR_PEER_NOT_FOUND")
    assert alice.get("/api/health")["name"] == "alice"  # still serving


def test_only_the_maker_cancels(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: book_state(bob), what="offer at bob")
    with pytest.raises(APIError) as err:
        bob.delete(f"/api/offers/{offer['id']}")
    assert (err.value.status, err.value.code) == (403, "ERR_NOT_MAKER")
    assert book_state(alice) == book_state(bob) == [(offer["id"], "1", 1)]


def test_openapi_document_describes_every_endpoint(spawn: Spawn) -> None:
    doc = spawn("alice").get("/api/openapi.json")
    assert doc["openapi"].startswith("3.1")
    for path in ("/api/health", "/api/book", "/api/offers", "/api/offers/{id}", "/api/trades", "/api/peers"):
        assert path in doc["paths"], path
    offer = doc["components"]["schemas"]["OfferOut"]["properties"]
    assert set(offer) >= {"id", "maker", "maker_name", "side", "pair", "price", "amount", "remaining",
                          "min_fill", "expires_at", "seq"}  # fmt: skip
    assert doc["components"]["schemas"]["OfferIn"]["properties"]["amount"]["type"] == "string"
    assert doc["security"] == [{"token": []}, {"session": []}]
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert doc["paths"]["/api/session"]["post"]["security"] == []  # the login takes the token in its body


BAD_RPC: list[tuple[str, Any, str]] = [
    ("market", None, "ERR_INVALID_PAYLOAD"),
    ("market", {"type": "gossip", "offers": "x"}, "ERR_INVALID_PAYLOAD"),
    ("market", {"type": "nope"}, "ERR_INVALID_PAYLOAD"),
    ("market", {"type": "gossip", "offers": [{"id": "x"}]}, "ERR_INVALID_PAYLOAD"),
    ("market", {"type": "snapshot", "after": "not a peer id"}, "ERR_INVALID_PAYLOAD"),
    ("market", {"type": "pull", "makers": ["a" * 64] * 257}, "ERR_INVALID_PAYLOAD"),
    ("peer", {"type": "take", "trade_id": "a" * 32}, "ERR_INVALID_PAYLOAD"),
    (
        "peer",
        {"type": "confirm", "trade_id": "a" * 32, "taker": "b" * 64, "taker_sig": "c" * 128},
        "ERR_TRADE_NOT_FOUND",
    ),
    ("peer", [1, 2, 3], "ERR_INVALID_PAYLOAD"),
]


def test_rpc_refuses_bad_payloads_and_keeps_serving(spawn: Spawn, grapes: GrapeNetwork) -> None:
    alice = spawn("alice")
    offer = alice.offer("sell", "1", "8000")

    async def run() -> list[str]:
        codes = []
        # straight to alice's RPC port: the shared Grapes also list peers of earlier tests, long gone
        dest = f"127.0.0.1:{alice.get('/api/health')['rpc_port']}"
        async with Link(grapes.urls[0]) as link:
            client = PeerRPCClient(link, timeout=5, ssl=client_context())
            for target, payload, _ in BAD_RPC:
                key = "otc:market" if target == "market" else f"otc:peer:{alice.peer_id}"
                try:
                    answer = await client.request_dest(dest, key, payload)
                    # the maker's refusals of trade requests are answers, signed, naming the request
                    is_refusal = isinstance(answer, dict) and answer.get("type") == "refusal"
                    codes.append(answer["code"] if is_refusal else "no error")
                except RPCError as exc:
                    codes.append(exc.code)
            # a forged update (valid shape, bad signature) is dropped silently (gossip is not answered
            # item by item); the book below is unchanged
            forged = {"type": "gossip", "offers": [{**_wire(offer, alice.peer_id), "remaining": "0.5",
                                                     "seq": 2, "sig": "0" * 128}]}  # fmt: skip
            reply = await client.request_dest(dest, "otc:market", forged)
            codes.append("dropped" if reply == {} else repr(reply))
            await client.stop()
        return codes

    codes = asyncio.run(run())
    assert codes == [c for _, _, c in BAD_RPC] + ["dropped"]
    assert book_state(alice) == [(offer["id"], "1", 1)]


def _wire(offer: dict[str, Any], maker: str) -> dict[str, Any]:
    keys = ("id", "created_seq", "maker", "maker_name", "side", "pair", "price", "amount", "remaining",
            "min_fill", "created_at", "expires_at", "status", "seq")  # fmt: skip
    return {k: offer[k] for k in keys}


def test_malformed_http_gets_a_json_error_and_the_peer_keeps_serving(spawn: Spawn) -> None:
    import json
    import socket

    alice = spawn("alice")
    for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /api/health HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", alice.api_port), timeout=5) as sock:
            sock.sendall(garbage)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), reply
        assert json.loads(body)["error"] == "ERR_INVALID_PAYLOAD"
    assert alice.get("/api/health")["name"] == "alice"
