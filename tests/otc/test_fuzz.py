"""Fuzzed input at every RPC key and every API endpoint of a real peer process: malformed, oversized,
wrongly typed, forged (bad signature, wrong key, replayed) and out-of-order messages. Each must get a
specific error (or be ignored, for gossip) within a deadline, leave the book unchanged, and leave the
peer serving."""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grenache.grapes import GrapeNetwork
from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.messages import Chat, Gossip, Neighbour, Take
from otc.core.offer import offer_id
from otc.core.signing import sign

from ..harness import PeerProcess, book_state, wait_for

DEADLINE_S = 5.0
UNVERIFIED = ssl._create_unverified_context()
ERROR = re.compile(r"^ERR_[A-Z_]+$")
CASES: Counter[str] = Counter()
MALLORY = Identity.from_seed(bytes([66]) * 32)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


class Target:
    def __init__(self, peer: PeerProcess, offers: list[dict[str, Any]], rpc_port: int) -> None:
        self.peer = peer
        self.offers = offers
        self.rpc = f"https://127.0.0.1:{rpc_port}/"  # peers speak TLS; a fuzzer checks no identity
        self.state = book_state(peer)

    def rpc_call(self, key: str, payload: Any, raw: bytes | None = None) -> tuple[Any, str | None, float]:
        body = raw if raw is not None else json.dumps(["fuzz-rid", key, payload]).encode()
        start = time.monotonic()
        req = urllib.request.Request(self.rpc, data=body, method="POST", headers={"grc-compress": "none"})
        with urllib.request.urlopen(req, timeout=DEADLINE_S + 1, context=UNVERIFIED) as resp:
            _, err, result = json.loads(resp.read())
        return result, err, time.monotonic() - start

    def api_call(self, method: str, path: str, body: bytes | None) -> tuple[int, Any, float]:
        start = time.monotonic()
        headers = {**self.peer.headers, "Content-Type": "application/json"}
        req = urllib.request.Request(self.peer.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=DEADLINE_S + 1) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw else None, time.monotonic() - start


@pytest.fixture(scope="module")
def target(grapes: GrapeNetwork) -> Iterator[Target]:
    peer = PeerProcess(grapes.urls[0], "fuzzed").start()
    offers = [peer.offer("sell", "2", "8000"), peer.offer("buy", "1.5", "7900", min_fill="0.5")]
    health = peer.get("/api/health")
    yield Target(peer, offers, health["rpc_port"])
    peer.stop()
    print(f"\nfuzz cases tried: {sum(CASES.values())} ({dict(CASES)})")


MALLORY_IDS = {offer_id(MALLORY.peer_id, seq) for seq in range(1, 20)}


def assert_unharmed(t: Target) -> None:
    """The target's book is what it was, except for offers that mallory genuinely signed (a replayed
    valid update is a legitimate offer of a new maker, not harm)."""
    assert [entry for entry in book_state(t.peer) if entry[0] not in MALLORY_IDS] == t.state
    assert t.peer.get("/api/health")["name"] == "fuzzed"


# --- RPC -----------------------------------------------------------------------------------------------
def mutate(value: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """A valid message with one field replaced, removed, or added."""
    out = dict(value)
    key = data.draw(st.sampled_from(sorted(out)))
    how = data.draw(st.sampled_from(["replace", "remove", "add", "flip"]))
    if how == "replace":
        out[key] = data.draw(json_values)
    elif how == "remove":
        del out[key]
    elif how == "add":
        out[data.draw(st.text(min_size=1, max_size=8))] = data.draw(json_values)
    elif isinstance(out[key], str) and out[key]:
        i = data.draw(st.integers(0, len(out[key]) - 1))
        out[key] = out[key][:i] + ("0" if out[key][i] != "0" else "1") + out[key][i + 1 :]
    return out


def valid_messages(t: Target) -> dict[str, tuple[str, dict[str, Any]]]:
    desk = Desk(MALLORY, "mallory")
    offer, _ = desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=int(time.time() * 1000))
    victim = t.offers[0]
    take = sign(MALLORY, Take(trade_id="f" * 32, offer_id=victim["id"], amount="0.1", price=victim["price"],
                              taker=MALLORY.peer_id, taker_name="mallory", ts=1))  # fmt: skip
    chat = sign(MALLORY, Chat(id="e" * 32, sender=MALLORY.peer_id, sender_name="mallory", to=t.peer.peer_id,
                              text="hi", ts=1))  # fmt: skip
    enc = lambda m: msgspec.to_builtins(m)  # noqa: E731
    peer_key = f"otc:peer:{t.peer.peer_id}"
    head = desk.head(1, "127.0.0.1:1")  # signed, but from long ago, at an address nobody serves
    items = [[MALLORY.peer_id[:2], [[MALLORY.peer_id, 1, 1, 0]]]]
    reconcile = {"type": "reconcile", "sender": MALLORY.peer_id, "ranges": [["", 3, 7]], "items": items}
    return {
        "gossip": ("otc:market", enc(Gossip(sender=MALLORY.peer_id, offers=[offer], heads=[head]))),
        "ping": ("otc:market", {"type": "ping", "sender": MALLORY.peer_id, "root": ["", 3, 12345]}),
        "ping_req": (
            "otc:market",
            {"type": "ping_req", "sender": MALLORY.peer_id, "target": "a" * 64, "addr": "127.0.0.1:1"},
        ),
        "neighbour": ("otc:market", enc(Neighbour(head=head))),
        "leave": ("otc:market", {"type": "leave", "sender": MALLORY.peer_id}),
        "reconcile": ("otc:market", reconcile),
        "pull": ("otc:market", {"type": "pull", "makers": [t.peer.peer_id, MALLORY.peer_id]}),
        "snapshot": ("otc:market", {"type": "snapshot", "after": ""}),
        "take": (peer_key, enc(take)),
        "confirm": (
            peer_key,
            {"type": "confirm", "trade_id": "f" * 32, "taker": MALLORY.peer_id, "taker_sig": "a" * 128},
        ),
        "offers": (peer_key, {"type": "offers"}),
        "chat": (peer_key, enc(chat)),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_rpc_keys_survive_fuzzing(target: Target, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["mutated", "random", "forged-offer", "replayed", "raw"]))
    msgs = valid_messages(target)
    name = data.draw(st.sampled_from(sorted(msgs)))
    key, valid = msgs[name]
    raw = None
    if kind == "mutated":
        payload: Any = mutate(valid, data)
    elif kind == "random":
        payload = data.draw(json_values)
        key = data.draw(st.sampled_from([key, "otc:market", "otc:nothing"]))
    elif kind == "forged-offer":
        # a genuine offer of the target's, changed and re-signed by someone else, or not re-signed
        fields = {k: v for k, v in target.offers[0].items() if k not in ("mine",)}
        fields.update(
            remaining=data.draw(st.sampled_from(["0", "1", "2", "3"])),
            seq=data.draw(st.integers(1, 9)),
            status=data.draw(st.sampled_from(["open", "cancelled", "filled"])),
            sig=data.draw(st.sampled_from(["0" * 128, MALLORY.sign(b"x")])),
        )
        key, payload = "otc:market", {"type": "gossip", "offers": [fields]}
    elif kind == "replayed":
        payload = valid  # a replay of a valid message: must be idempotent, never harmful
    else:
        raw = data.draw(st.binary(max_size=200) | st.just(b"[") | st.just(b'["rid"]') | st.just(b'"str"'))
        payload = None
    CASES[f"rpc {kind}"] += 1
    result, err, elapsed = target.rpc_call(key, payload, raw)
    assert elapsed < DEADLINE_S
    if err is not None:
        assert ERROR.match(err.split(":")[0]), err
    else:  # accepted: gossip (forged parts ignored), a probe, a page, a chat, or the maker's list
        assert isinstance(result, dict)
    assert_unharmed(target)


def test_rpc_refuses_oversize_and_bad_gzip(target: Target) -> None:
    big = json.dumps(["rid", "otc:market", {"type": "updates", "offers": ["x" * (9 * 1024 * 1024)]}]).encode()
    _, err, elapsed = target.rpc_call("", None, big)
    assert err is not None and err.startswith("ERR_REQUEST_TOO_LARGE") and elapsed < DEADLINE_S
    CASES["rpc oversize"] += 1
    assert_unharmed(target)


# --- API -----------------------------------------------------------------------------------------------
ENDPOINTS = [("POST", "/api/offers"), ("POST", "/api/trades"), ("POST", "/api/messages"),
             ("POST", "/api/sweep"), ("DELETE", "/api/offers/{id}"), ("GET", "/api/book?pair={q}"),
             ("GET", "/api/{q}"), ("PUT", "/api/offers")]  # fmt: skip
VALID_BODIES = {
    "/api/offers": {"side": "sell", "amount": "1", "price": "9000"},
    "/api/trades": {"offer_id": "0" * 32, "amount": "1"},
    "/api/messages": {"to": "nobody-here", "text": "hi"},
    "/api/sweep": {"side": "buy", "amount": "1", "limit": "1"},
}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_api_endpoints_survive_fuzzing(target: Target, data: st.DataObject) -> None:
    method, path = data.draw(st.sampled_from(ENDPOINTS))
    path = path.format(id=data.draw(st.text("0123456789abcdefXYZ", max_size=40)),
                       q=data.draw(st.text("abcdefABC/_-%.", max_size=12)))  # fmt: skip
    base = VALID_BODIES.get(path)
    style = data.draw(st.sampled_from(["mutated", "random", "bytes"]))
    if style == "mutated" and base is not None:
        body: bytes | None = json.dumps(mutate(base, data)).encode()
    elif style == "bytes":
        body = data.draw(st.binary(max_size=300))
    else:
        body = json.dumps(data.draw(json_values)).encode()
    if method in ("GET", "DELETE"):
        body = None
    CASES[f"api {method}"] += 1
    status, reply, elapsed = target.api_call(method, path, body)
    assert elapsed < DEADLINE_S
    if status == 201 and path == "/api/offers":  # a mutation that happened to be a valid offer
        target.peer.delete(f"/api/offers/{reply['id']}")
        wait_for(lambda: book_state(target.peer) == target.state, what="the accidental offer to go")
    elif status == 200:
        assert method == "GET"
    else:
        assert 400 <= status < 500, (status, reply)
        assert ERROR.match(reply["error"]) and reply["message"], reply
    assert_unharmed(target)
