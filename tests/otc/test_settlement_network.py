"""Settlement, notifications and their CLI end to end on real peers and real Grapes: steps that reach
`settled` on both sides across a maker restart and a taker outage, deadlines flagged on both sides,
webhooks delivered to a real HTTP receiver (signed, retried), and the `otc` commands."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from otc.core.identity import Identity
from otc.core.messages import Receipt, SettleStep, SettleSync
from otc.core.signing import sign, terms_digest
from otc.node.notify import verify

from ..harness import APIError, PeerProcess, wait_for
from .peers import api, code, identity_of, rpc
from .test_cli import Terminal

Spawn = Callable[..., PeerProcess]
MALLORY = Identity.from_seed(bytes([98]) * 32)


def _receipt(data: dict[str, Any]) -> Receipt:
    return msgspec.convert({k: v for k, v in data.items() if k in Receipt.__struct_fields__}, Receipt)


def visible(peer: PeerProcess, offer_id: str) -> bool:
    book = peer.book()
    return any(o["id"] == offer_id for o in book["bids"] + book["asks"])


def trade(maker: PeerProcess, taker: PeerProcess, amount: str = "1.5") -> dict[str, Any]:
    wait_for(lambda: taker.get("/api/health")["peers"] >= 1, what="the peers to meet")
    offer = maker.offer("sell", "2", "8000")
    wait_for(lambda: visible(taker, offer["id"]), what="the offer at the taker")
    result: dict[str, Any] = taker.take(offer["id"], amount)
    return result


def settlement(peer: PeerProcess, trade_id: str) -> dict[str, Any]:
    result: dict[str, Any] = peer.get(f"/api/trades/{trade_id}/settlement")
    return result


def step(peer: PeerProcess, trade_id: str, name: str, note: str | None = None) -> dict[str, Any]:
    body = {"step": name} | ({} if note is None else {"note": note})
    result: dict[str, Any] = peer.post(f"/api/trades/{trade_id}/settlement", body)
    return result


def refused(fn: Callable[[], Any]) -> tuple[int, str | None]:
    with pytest.raises(APIError) as info:
        fn()
    return info.value.status, info.value.code


def test_settlement_reaches_settled_on_both_sides_across_a_restart_and_an_outage(
    spawn: Spawn, tmp_path: Path
) -> None:
    alice, bob = spawn("alice", data_dir=tmp_path / "alice"), spawn("bob", data_dir=tmp_path / "bob")
    receipt = trade(alice, bob)
    tid = receipt["id"]
    seller, buyer = wait_for(lambda: settlement(alice, tid)), settlement(bob, tid)
    assert (seller["role"], buyer["role"], seller["state"], buyer["state"]) == (
        "seller",
        "buyer",
        "awaiting_payment",
        "awaiting_payment",
    )
    assert buyer["pays"] == {"from": bob.peer_id, "to": alice.peer_id, "currency": "USD", "amount": "12000"}
    assert buyer["delivers"] == {"from": alice.peer_id, "to": bob.peer_id, "currency": "BTC", "amount": "1.5"}

    # hand-built exchanges: a stranger learns nothing; the buyer's key cannot be borrowed; the buyer cannot
    # make the seller's steps; a replayed (stale) exchange is refused. None changes the seller's record.
    me = identity_of(tmp_path / "bob")
    now = int(time.time() * 1000)
    paid = sign(
        me,
        SettleStep(
            trade_id=tid, terms=terms_digest(_receipt(receipt)), step="payment_sent", actor=me.peer_id, ts=now
        ),
    )
    received = sign(me, msgspec.structs.replace(paid, step="payment_received", sig=""))
    attacks = [
        (
            sign(MALLORY, SettleSync(trade_id=tid, sender=MALLORY.peer_id, steps=[paid], ts=now)),
            "ERR_TRADE_NOT_FOUND",
        ),
        (
            sign(MALLORY, SettleSync(trade_id=tid, sender=me.peer_id, steps=[paid], ts=now)),
            "ERR_BAD_SIGNATURE",
        ),
        (
            sign(me, SettleSync(trade_id=tid, sender=me.peer_id, steps=[paid, received], ts=now)),
            "ERR_NOT_ENTITLED",
        ),
        (
            sign(me, SettleSync(trade_id=tid, sender=me.peer_id, steps=[paid], ts=now - 3_600_000)),
            "ERR_INVALID_MESSAGE",
        ),
    ]
    for msg, expected in attacks:
        assert code(rpc(alice, msg)[0]) == expected
    assert settlement(alice, tid)["steps"] == []

    # the seller is down (killed) when the buyer pays; it catches up when it returns
    alice.kill()
    assert step(bob, tid, "payment_sent", "wire ref 42")["state"] == "payment_sent"
    alice = spawn("alice", data_dir=tmp_path / "alice")
    back = wait_for(
        lambda: (s := settlement(alice, tid))["state"] == "payment_sent" and s,
        timeout=40,
        what="the restarted seller to catch up",
    )
    assert back["steps"][0]["note"] == "wire ref 42" and back["next_steps"] == [
        "payment_received",
        "disputed",
    ]

    # the buyer is offline (paused) while the seller confirms and delivers; it catches up when it resumes
    bob.signal(signal.SIGSTOP)
    try:
        step(alice, tid, "payment_received")
        assert step(alice, tid, "delivery_sent", "txid 9f2c")["state"] == "delivery_sent"
    finally:
        bob.signal(signal.SIGCONT)
    wait_for(
        lambda: settlement(bob, tid)["state"] == "delivery_sent", timeout=40, what="the buyer to catch up"
    )
    assert step(bob, tid, "settled")["state"] == "settled"
    wait_for(
        lambda: settlement(alice, tid)["state"] == "settled", timeout=40, what="the seller to see it settled"
    )
    mine, theirs = settlement(alice, tid), settlement(bob, tid)
    assert mine["steps"] == theirs["steps"] and len(mine["steps"]) == 4
    assert [s["step"] for s in mine["steps"]] == [
        "payment_sent",
        "payment_received",
        "delivery_sent",
        "settled",
    ]
    # idempotent, and final
    assert step(bob, tid, "settled")["steps"] == theirs["steps"]
    assert refused(lambda: step(alice, tid, "disputed")) == (409, "ERR_SETTLEMENT_STEP")
    assert api(alice, "GET", "/api/settlements?open=1") == []


def test_deadlines_are_flagged_on_both_sides_and_steps_belong_to_their_party(spawn: Spawn) -> None:
    args = ("--settlement-deadline", "awaiting_payment=1", "--settlement-deadline", "payment_sent=1.5")
    alice, bob = spawn("alice", args=args), spawn("bob", args=args)
    tid = trade(alice, bob, "1")["id"]
    for p in (alice, bob):
        view = wait_for(lambda p=p: (s := settlement(p, tid))["overdue"] and s, what=f"{p.name} to flag it")
        assert view["state"] == "awaiting_payment" and view["due_at"] == view["entered_at"] + 1000
    cases = [
        (lambda: step(alice, tid, "payment_sent"), (403, "ERR_NOT_ENTITLED")),  # the seller does not pay
        (lambda: step(bob, tid, "payment_received"), (403, "ERR_NOT_ENTITLED")),
        (lambda: step(bob, tid, "settled"), (409, "ERR_SETTLEMENT_STEP")),  # not yet
        (lambda: step(bob, tid, "shipped"), (400, "ERR_INVALID_PAYLOAD")),
        (lambda: step(bob, tid, "payment_sent", "x" * 201), (400, "ERR_INVALID_MESSAGE")),
        (lambda: step(bob, "0" * 32, "payment_sent"), (404, "ERR_TRADE_NOT_FOUND")),
    ]
    for call, expected in cases:
        assert refused(call) == expected
    assert settlement(bob, tid)["steps"] == []
    fresh = step(bob, tid, "payment_sent")
    assert (fresh["state"], fresh["overdue"]) == ("payment_sent", False)  # a new state, a new deadline
    for p in (alice, bob):
        wait_for(
            lambda p=p: (s := settlement(p, tid))["state"] == "payment_sent" and s["overdue"],
            what="overdue again",
        )
    assert [s["trade_id"] for s in api(bob, "GET", "/api/settlements?open=1")] == [tid]


# --- webhooks -------------------------------------------------------------------------------------------
class Receiver:
    """A real HTTP server on loopback that records what it is sent; it fails the first ``fail`` posts."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[int, dict[str, str], bytes]] = []  # (status answered, headers, body)
        self.fail = fail
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    status = 500 if outer.fail > 0 else 200
                    outer.fail -= 1
                    outer.calls.append((status, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for status, _, body in self.calls if status == 200]

    def types(self) -> set[str]:
        return {n["type"] for n in self.delivered()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(fail: int = 0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_webhooks_arrive_signed_in_order_and_failures_are_retried(
    spawn: Spawn, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    hook_a, hook_b = receivers(fail=2), receivers()
    alice = spawn("alice", data_dir=tmp_path / "alice", args=("--notify-url", hook_a.url))
    bob = spawn("bob", data_dir=tmp_path / "bob")
    added = bob.post("/api/webhooks", {"url": hook_b.url})
    assert (added["url"], added["persistent"]) == (hook_b.url, True)
    wait_for(lambda: bob.get("/api/health")["peers"] >= 1, what="the peers to meet")
    api(alice, "PUT", "/api/quoting", {"side": "sell", "price": "8000", "max_size": "1"})
    rfq = bob.post("/api/rfqs", {"side": "buy", "amount": "1"})
    quotes = wait_for(lambda: bob.get(f"/api/rfqs/{rfq['id']}")["quotes"], what="alice's automatic quote")
    receipt = bob.post(f"/api/quotes/{quotes[0]['id']}/accept", {})
    step(bob, receipt["id"], "payment_sent")
    bob.post("/api/messages", {"to": "alice", "text": "paid, ref 42"})
    wait_for(
        lambda: {"rfq", "trade", "settlement", "message"} <= hook_a.types(), what="alice's notifications"
    )
    wait_for(lambda: {"quote", "trade", "settlement"} <= hook_b.types(), what="bob's notifications")

    # signed with an HMAC of each peer's own API token (a 0600 file in its data directory)
    for hook, owner in ((hook_a, "alice"), (hook_b, "bob")):
        token_file = tmp_path / owner / "api.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        now = int(time.time() * 1000)
        for _status, headers, body in hook.calls:
            assert verify(token, headers, body, now), headers
            assert not verify(token, headers, body + b" ", now)  # tampered
            assert not verify("another token", headers, body, now)
            assert headers["x-otc-event"] == json.loads(body)["type"]
    # in order, and the first one retried (twice refused) under one delivery id until it went through
    (first_status, first, _), (second_status, second, _), (third_status, third, _) = hook_a.calls[:3]
    assert (first_status, second_status, third_status) == (500, 500, 200)
    assert first["x-otc-delivery"] == second["x-otc-delivery"] == third["x-otc-delivery"]
    kinds = [n["type"] for n in hook_a.delivered()]
    assert kinds.index("rfq") < kinds.index("trade") < kinds.index("settlement") < kinds.index("message")
    notes = {n["type"]: n for n in hook_a.delivered()}
    assert notes["rfq"]["data"]["quote_req_id"] == rfq["id"] and notes["rfq"]["peer"] == alice.peer_id
    assert notes["trade"]["data"]["id"] == receipt["id"] and notes["trade"]["data"]["role"] == "maker"
    assert (
        notes["settlement"]["data"]["step"]["step"] == "payment_sent"
        and notes["settlement"]["data"]["by"] == "them"
    )
    assert notes["message"]["data"]["text"] == "paid, ref 42"
    # (the receiver records a post before the peer has read its answer: poll)
    wait_for(lambda: alice.get("/api/webhooks")[0]["delivered"] == len(hook_a.delivered()), what="the count")
    (listed,) = alice.get("/api/webhooks")
    assert (listed["url"], listed["persistent"], listed["failed"]) == (hook_a.url, False, 0)
    # bad input, removal
    assert refused(lambda: bob.post("/api/webhooks", {"url": "ftp://example.org/"})) == (
        400,
        "ERR_INVALID_WEBHOOK",
    )
    assert refused(lambda: bob.post("/api/webhooks", {"url": "http://"})) == (400, "ERR_INVALID_WEBHOOK")
    bob.delete(f"/api/webhooks/{added['id']}")
    assert bob.get("/api/webhooks") == []
    assert refused(lambda: bob.delete(f"/api/webhooks/{added['id']}")) == (404, "ERR_WEBHOOK_NOT_FOUND")


# --- the CLI ----------------------------------------------------------------------------------------------
def otc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "COLUMNS")}
    return subprocess.run(
        [sys.executable, "-m", "otc.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def ok(*args: str) -> str:
    result = otc(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_cli_rfq_quoting_settle_notify_and_offer_templates(spawn: Spawn) -> None:
    maker, req = spawn("maker"), spawn("req")
    wait_for(lambda: req.get("/api/health")["peers"] >= 1, what="the peers to meet")
    rule = json.loads(
        ok("--api", maker.url, "quoting", "set", "sell", "--price", "8000", "--max-size", "2", "--json")
    )
    assert (rule["price"], rule["max_size"], rule["automatic"]) == ("8000", "2", True)
    assert "8000" in ok("--api", maker.url, "quoting", "show")
    lines: queue.Queue[str] = queue.Queue()
    notify = subprocess.Popen(
        [sys.executable, "-m", "otc.cli", "--api", req.url, "notify", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    threading.Thread(target=lambda: [lines.put(line) for line in notify.stdout or ()], daemon=True).start()
    try:
        assert notify.stderr is not None and "listening to" in notify.stderr.readline()  # connected
        out = json.loads(
            ok("--api", req.url, "rfq", "buy", "1.5", "--wait", "1", "--accept", "best", "--json")
        )
        receipt = out["receipt"]
        assert (receipt["price"], receipt["amount"], receipt["maker"]) == ("8000", "1.5", maker.peer_id)
        table = ok("--api", req.url, "rfq", "buy", "3", "--wait", "1")
        assert "maker" in table and "8,000" in table and "2" in table  # the rule quotes at most 2
        text = ok("--api", req.url, "settle", receipt["id"][:8], "payment_sent", "--note", "wire 7")
        assert "payment_sent" in text and "you are the buyer" in text and "12000 USD" in text
        assert "payment_sent" in ok("--api", req.url, "settlements")
        refused_step = otc("--api", maker.url, "settle", receipt["id"], "payment_sent")
        assert refused_step.returncode == 1 and "ERR_NOT_ENTITLED" in refused_step.stderr
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while not {"quote", "trade", "settlement"} <= seen:  # queue.Empty past the deadline fails the test
            seen.add(json.loads(lines.get(timeout=max(0.01, deadline - time.monotonic())))["type"])
        assert "request for quote" not in ok("--api", req.url, "rfq", "list")  # a table of its own requests
        assert ok("--api", req.url, "rfq", "show", out["rfq"]["id"][:8]).count("maker") >= 1
    finally:
        notify.terminate()
        notify.wait(10)
    # offer templates and amendments
    posted = json.loads(ok("--api", maker.url, "offer", "sell", "1", "8100", "--json"))
    amended = json.loads(
        ok("--api", maker.url, "offer", "amend", posted["id"][:8], "--price", "8200", "--json")
    )
    assert amended["cancelled"]["id"] == posted["id"] and amended["offer"]["price"] == "8200"
    again = json.loads(ok("--api", maker.url, "offer", "again", posted["id"], "--json"))
    assert (again["price"], again["amount"], again["status"]) == ("8100", "1", "open")
    assert otc("--api", maker.url, "offer", "amend", again["id"]).returncode == 2  # nothing to amend: usage
    bad = otc("peer", "--settlement-deadline", "settled=5", "--api-port", "0")
    assert bad.returncode == 2 and "not an open state" in bad.stderr


def test_watch_rings_the_bell_with_a_summary_line_on_notifications(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: bob.get("/api/health")["peers"] >= 1, what="the peers to meet")
    term = Terminal(["--api", alice.url, "watch", "--interval", "60"])  # changes show only via events
    try:
        wait_for(
            lambda: "Ctrl-C to leave" in term.read() and " live " in term.text, timeout=15, what="a screen"
        )
        assert b"\x07" not in term.raw
        bob.post("/api/messages", {"to": "alice", "text": "quote me 50?"})
        wait_for(
            lambda: re.search(r'message from "bob" \w{8}: quote me 50\?', term.read()),
            timeout=10,
            what="the line",
        )
        assert b"\x07" in term.raw  # the bell
        offer = alice.offer("sell", "1", "8000")
        wait_for(lambda: visible(bob, offer["id"]), what="the offer at bob")
        bob.take(offer["id"], "1")
        wait_for(
            lambda: "filled your offer: sold 1 BTC at 8,000.00 USD to bob" in term.read(),
            timeout=10,
            what="the fill",
        )
    finally:
        term.close()
