"""A trader's first hour (issue 13), each stumble of it reproduced through the real commands: `otc` and
`otc peer` as subprocesses, real peers on real Grapes.

- addresses in their short forms (``--grape HOST:PORT``, ``--api PORT``);
- output that fits 80 columns without cutting a number, per-pair precision, rounded totals;
- options before or after the command, any case, no negative numbers, second thoughts before typos;
- a peer that cannot reach its Grape says so, and says when it can again;
- Ctrl-C in the middle of a take: whether a trade was made, or how to find out;
- errors in plain words; a quiet log; a port that is taken; goodbye on stop; `otc offers`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from grenache import Link
from grenache.grapes import Grape, GrapeNetwork, free_port, free_port_pair
from otc.core.identity import Identity
from otc.core.messages import Death, Gossip, Head, Pull
from otc.core.notices import sign_death
from otc.node.keyfile import load_or_create

from ..harness import PeerProcess, wait_for
from .attackers import BackgroundLoop, FakeMaker, SilentListener, raw_client, wire
from .test_cli import otc, records, refused, rows, sees_peers, usage_error, visible

Spawn = Callable[..., PeerProcess]
CUT = re.compile(r"[\d,.]…|…[\d,.]")  # a number with an ellipsis in it


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = otc(*args, env=env)
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def at(columns: int) -> dict[str, str]:
    return {"COLUMNS": str(columns)}


# --- item 1: addresses in their short forms -------------------------------------------------------------
def test_grape_and_api_addresses_in_their_short_forms(grapes: GrapeNetwork, tmp_path: Path) -> None:
    bare = grapes.urls[0].removeprefix("http://")  # 127.0.0.1:PORT
    alice = PeerProcess(bare, "alice", log_dir=tmp_path)
    try:
        alice.start()
        port = str(alice.api_port)
        assert as_json_ok("--api", port, "book")["pair"] == "BTC/USD"  # a port alone: on this machine
        assert as_json_ok("book", "--api", f":{port}")["pair"] == "BTC/USD"
        found = subprocess.run(
            [sys.executable, "-m", "grenache.cli", "lookup", f"otc:peer:{alice.peer_id}", "--grape", bare],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert found.returncode == 0 and found.stdout.split() == [
            f"127.0.0.1:{alice.get('/api/health')['rpc_port']}"
        ]
    finally:
        alice.stop()
    for bad in ("127.0.0.1", "ftp://127.0.0.1:1", "http://127.0.0.1:notaport"):
        result = otc("peer", "--grape", bad, "--ephemeral")
        assert result.returncode == 2, result
        assert "is not a Grape API address" in result.stderr and "Traceback" not in result.stderr


def as_json_ok(*args: str) -> Any:
    return msgspec.json.decode(ok(*args, "--json"))


# --- items 2 and 3 of Deliver: output that fits ---------------------------------------------------------
def test_output_fits_80_columns_without_cutting_a_number(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: sees_peers(alice, 1) and sees_peers(bob, 1), what="alice and bob to see each other")
    usd = alice.offer("sell", "123.45678901", "7999.99", min_fill="0.01")
    eth = alice.offer("sell", "40", "0.05123", pair="ETH/BTC")
    bob.offer("buy", "160000", "0.01")
    wait_for(lambda: visible(bob, usd["id"]) and bob.book("ETH/BTC")["asks"], what="the offers at bob")
    bob.take(usd["id"], "2.33333333")
    bob.take(eth["id"], "1.5")
    ok("--api", bob.url, "buy", "1", "--limit", "8000")

    for columns in (80, 40):
        for command in (
            ["trades"],
            ["book"],
            ["offers"],
            ["takes"],
            ["peers"],
            ["book", "--pair", "eth/btc"],
        ):
            out = ok("--api", bob.url, *command, env=at(columns))
            assert not CUT.search(out), (columns, command, out)
            if columns == 80:
                assert all(len(line) <= 80 for line in out.splitlines()), (command, out)
    trades = ok("--api", bob.url, "trades", env=at(80))
    # per-pair precision: the ETH/BTC trade does not pad USD prices, USD prices have cents
    assert "7,999.99 " in trades and "7,999.9900" not in trades and "0.05123000" in trades
    # totals rounded for people (2.33333333 x 7,999.99 = 18,666.6433066667), exact in --json
    assert "18,666.64" in trades
    receipt = next(r for r in as_json_ok("--api", bob.url, "trades") if r["offer_id"] == usd["id"])
    assert Decimal(receipt["price"]) * Decimal(receipt["amount"]) == Decimal("18666.6433066667")
    # thousands separators in human output only
    mine = ok("--api", bob.url, "offers", env=at(80))
    assert "160,000" in mine and "160000" not in mine
    assert as_json_ok("--api", bob.url, "offers")[0]["amount"] == "160000"
    # what gives way at 80 columns is what matters least: prices, amounts and sides stay
    head = rows(trades)[0]
    assert {"side", "pair", "price", "amount"} <= set(head) and "trade" not in head


# --- item 4: options anywhere, any case, no negative numbers, second thoughts -----------------------------
def test_options_anywhere_any_case_and_second_thoughts(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: sees_peers(alice, 1) and sees_peers(bob, 1), what="alice and bob to see each other")
    assert as_json_ok("--api", alice.url, "book") == msgspec.json.decode(
        ok("--json", "--api", alice.url, "book")
    )
    posted = as_json_ok("--api", alice.url, "offer", "SELL", "1", "8000", "--pair", "btc/usd")
    assert (posted["side"], posted["pair"]) == ("sell", "BTC/USD")
    assert as_json_ok("--as", "ALICE", "offers")[0]["id"] == posted["id"]  # names in any case, too
    wait_for(lambda: visible(bob, posted["id"]), what="the offer at bob")
    assert ok("--api", bob.url, "chat", "send", "ALICE", "hi").startswith("Sent to alice")

    # a negative number is said to be one, not taken for an option
    err = usage_error("--api", alice.url, "offer", "sell", "-1", "8000")
    assert "-1: amounts and prices are positive numbers" in err and "No such option" not in err
    # scientific notation, and prices far from the market, need a yes (--yes, or asked in a terminal)
    err = usage_error("--api", alice.url, "offer", "sell", "1e3", "8000")
    assert "the amount 1e3 is scientific notation for 1,000 BTC" in err and "add --yes" in err
    err = usage_error("--api", bob.url, "offer", "buy", "1", "80000")
    assert "80,000.00 USD is 900% above the market (8,000.00 USD" in err and "add --yes" in err
    err = usage_error("--api", bob.url, "buy", "1", "--limit", "9000")
    assert "9,000.00 USD is 12% above the best ask (8,000.00 USD)" in err
    assert [o["id"] for o in alice.get("/api/offers")] == [posted["id"]] and bob.get("/api/offers") == []
    big = as_json_ok("--api", alice.url, "offer", "sell", "1e3", "8000", "--yes")
    assert big["amount"] == "1000"
    far = as_json_ok("--api", bob.url, "offer", "buy", "1", "80000", "--pair", "ETH/USD", "--yes")
    assert far["price"] == "80000"  # no ETH/USD market: nothing to be far from, asked only for typos

    # an offer that crosses the book is posted, with a warning and the way to take the other side
    result = otc("--api", bob.url, "offer", "buy", "0.5", "8100")
    assert result.returncode == 0, result
    assert "this bid at 8,100.00 USD crosses alice's ask at 8,000.00 USD" in result.stderr
    assert "otc buy 0.5 --limit 8100 --post" in result.stderr


def test_every_command_takes_json_and_every_help_has_an_example() -> None:
    from otc.cli.commands import main

    def leaves(group: Any, path: list[str]) -> list[tuple[list[str], Any]]:
        out = []
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                out.append(([*path, name], cmd))
                out += leaves(cmd, [*path, name])
            else:
                out.append(([*path, name], cmd))
        return out

    commands = leaves(main, [])
    assert len(commands) >= 15
    for path, cmd in [([], main), *commands]:
        result = otc(*path, "--help")
        assert result.returncode == 0 and "Example" in result.stdout, (path, result.stdout)
        talks_to_a_peer = path and path[0] != "peer" and not hasattr(cmd, "commands")
        if talks_to_a_peer:  # --json before or after the command
            assert "--json" in result.stdout, path
    for tool in ("grenache.cli", "grenache.grapevine"):
        from importlib import import_module

        group = import_module(tool).main
        for path, _ in [([], group), *leaves(group, [])]:
            out = subprocess.run(
                [sys.executable, "-m", tool, *path, "--help"], capture_output=True, text=True
            )
            assert "Example" in out.stdout, (tool, path, out.stdout)


# --- item 6: a peer that cannot reach its Grape --------------------------------------------------------
def test_a_peer_without_its_grape_says_so_and_says_when_it_has_it(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    bob = spawn("bob")
    dht, api = free_port_pair()
    lonely = PeerProcess(f"http://127.0.0.1:{api}", "lonely", log_dir=tmp_path)
    grape = Grape(dht, api, [f"127.0.0.1:{g.dht_port}" for g in grapes.grapes])
    log = tmp_path / "lonely.log"
    try:
        lonely.start()
        wait_for(lambda: "ready" in log.read_text(), what="the ready line")
        text = log.read_text()
        assert f"cannot reach the Grape at http://127.0.0.1:{api}" in text and "out of the market" in text
        assert "announce" not in text  # one sentence, not a warning per failed announce
        result = otc("--api", lonely.url, "book")
        assert result.returncode == 0 and "lonely cannot reach its Grape" in result.stderr
        result = otc("--api", lonely.url, "offer", "sell", "1", "8000")
        assert result.returncode == 0 and "no other peer sees it" in result.stderr
        words = refused("ERR_NOT_CONNECTED", "--api", lonely.url, "buy", "1", "--limit", "8000")
        assert "not in a market" in words and "No trade was made." in words
        assert lonely.get("/api/health")["grape_ok"] is False

        grape.start()  # the Grape comes up: the peer says so, and is in the market
        wait_for(lambda: "reached the Grape" in log.read_text(), timeout=30, what="the peer to say it")
        wait_for(lambda: sees_peers(lonely, 1) and sees_peers(bob, 1), timeout=30, what="the market")
        assert lonely.get("/api/health")["grape_ok"] is True
        assert "cannot reach" not in otc("--api", lonely.url, "book").stderr
    finally:
        lonely.stop()
        grape.stop()


# --- item 7: Ctrl-C in the middle of a take -------------------------------------------------------------
def test_ctrl_c_in_the_middle_of_a_take_says_whether_a_trade_was_made(spawn: Spawn, tmp_path: Path) -> None:
    bob = spawn("bob", data_dir=tmp_path / "bob")
    silent = SilentListener()
    maker = FakeMaker(silent)  # signed offers and heartbeats; its address never answers a take
    offer = maker.offer("sell", "2", "8000")
    rpc = f"127.0.0.1:{bob.get('/api/health')['rpc_port']}"
    with BackgroundLoop() as bg:

        async def keep_alive() -> None:
            async with Link(bob.grape) as link:
                client = raw_client(link)
                try:
                    await maker.keep_alive(client, rpc)
                finally:
                    await client.stop()

        bg.spawn(keep_alive())
        try:
            wait_for(lambda: visible(bob, offer.id), what="the offer at bob")
            # the maker does not answer: the take ends at its deadline, and says no trade was made
            words = refused("ERR_MAKER_UNREACHABLE", "--api", bob.url, "take", offer.id[:8], "1")
            assert "cheap did not answer in time" in words and "no trade was made" in words

            # the taker's own peer is stopped while a take waits for the maker
            env = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "COLUMNS")}
            take = subprocess.Popen(
                [sys.executable, "-m", "otc.cli", "--api", bob.url, "take", offer.id[:8], "0.5"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            wait_for(
                lambda: sum(t["state"] == "requested" for t in bob.get("/api/takes")) == 1,
                what="the take in flight",
            )
            bob.signal(signal.SIGINT)
            out, err = take.communicate(timeout=60)
            assert take.returncode == 2 and out == "" and "Traceback" not in err, err
            assert "stopped before it answered the take" in err
            assert (
                "Whether a trade was made is not known yet" in err
                and "takes` shows what came of this take" in err
            )
            assert bob.proc is not None and bob.proc.wait(30) == 0
        finally:
            silent.close()
    stopped = (tmp_path / "bob.log").read_text()
    assert "was not answered by its maker before the stop: nothing was confirmed, so no trade" in stopped

    bob.start()  # back: the take is closed, with no trade, and `otc takes` says so
    takes = as_json_ok("--api", bob.url, "takes")
    assert [t["state"] for t in takes] == ["failed", "failed"]
    table = ok("--api", bob.url, "takes")
    assert [r["outcome"].startswith("no trade") for r in records(table)] == [True, True]
    assert bob.get("/api/trades") == []


# --- item 8: errors in plain words ---------------------------------------------------------------------
def test_refusals_in_plain_words(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: sees_peers(alice, 1) and sees_peers(bob, 1), what="alice and bob to see each other")
    offer = alice.offer("sell", "2.5", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="the offer at bob")
    words = refused("ERR_INSUFFICIENT_REMAINING", "--api", bob.url, "take", offer["id"][:8], "3")
    assert "only 2.5 BTC of alice's offer" in words and "you asked for 3 BTC" in words
    words = refused("ERR_INVALID_AMOUNT", "--api", alice.url, "offer", "sell", "1", "8000", "--min-fill", "2")
    assert "the minimum fill 2 BTC is more than the offer's amount 1 BTC" in words
    err = usage_error("--api", alice.url, "chat", "send", "bob", " ")
    assert "a message needs some text" in err and "Expected" not in err
    # (the session's Grapes are shared: once, in a full run, another live "alice" took this message;
    # say which, should it happen again)
    others = [
        p for p in alice.get("/api/peers") if p["name"] == "alice" and p["alive"] and p["id"] != alice.peer_id
    ]
    assert others == [], f"another peer calls itself alice: {others}"
    words = refused("ERR_INVALID_MESSAGE", "--api", alice.url, "chat", "send", "alice", "me?")
    assert "your own name" in words
    body = {"to": "bob", "text": ""}  # straight to the API: no schema jargon there either
    result = subprocess.run(
        [sys.executable, "-c", "import sys,json,urllib.request as u\n"
         f"r=u.Request('{alice.url}/api/messages', data=json.dumps({body!r}).encode(), method='POST',"
         f" headers={{'content-type':'application/json','authorization':'Bearer {alice.token}'}})\n"
         "try: u.urlopen(r)\nexcept Exception as e: print(e.read().decode())"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert '"ERR_INVALID_MESSAGE"' in result.stdout and "text must not be empty" in result.stdout


# --- item 9: a quiet log ---------------------------------------------------------------------------------
def test_the_log_at_info_does_not_greet_a_start_with_failures(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    spawn("bob")
    dead = free_port()  # a stopped peer the Grape still lists for the market

    async def list_a_dead_peer() -> None:
        async with Link(grapes.urls[0]) as link:
            await link.announce("otc:market", dead)

    asyncio.run(list_a_dead_peer())
    # both join at once: each may ask the other while it is still joining
    first = PeerProcess(grapes.urls[0], "first", log_dir=tmp_path, args=("--log-level", "info"))
    second = PeerProcess(grapes.urls[0], "second", log_dir=tmp_path, args=("--log-level", "info"))
    try:
        for p in (first, second):
            p.launch()
        for p in (first, second):
            p.wait_ready()
        wait_for(lambda: sees_peers(first, 2) and sees_peers(second, 2), what="both in the market")
        for name in ("first", "second"):
            log = (tmp_path / f"{name}.log").read_text()
            assert " INFO " in log  # it does log at INFO
            noisy = [line for line in log.splitlines() if re.search(r" (WARNING|ERROR) |failed|ERR_", line)]
            assert noisy == [], noisy
    finally:
        first.stop()
        second.stop()


# --- item 10: a taken port, and goodbye on stop ---------------------------------------------------------
def test_a_peer_whose_api_port_is_taken_never_joins_the_market(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    bob = spawn("bob")
    home = tmp_path / "twice"
    home.mkdir()
    who = load_or_create(home / "identity.key")
    result = otc("peer", "--grape", grapes.urls[0], "--data-dir", str(home), "--api-port", str(bob.api_port))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the API port {bob.api_port} is in use" in result.stderr and "--api-port" in result.stderr

    async def listed() -> list[str]:
        async with Link(grapes.urls[0]) as link:
            try:
                return await link.lookup(f"otc:peer:{who.peer_id}", cache=False)
            except Exception:
                return []

    assert asyncio.run(listed()) == []  # it never announced itself
    assert all(p["id"] != who.peer_id for p in bob.get("/api/peers?all=1"))


def test_a_stopped_peer_says_goodbye_and_its_offers_come_back_with_it(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    alice, bob = spawn("alice", data_dir=tmp_path / "alice"), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: visible(bob, offer["id"]) and sees_peers(bob, 1), what="the offer at bob")
    assert alice.proc is not None
    alice.proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    wait_for(
        lambda: not visible(bob, offer["id"]), timeout=5, interval=0.01, what="the offer to leave bob's book"
    )
    gone_after = time.monotonic() - stopped
    assert gone_after < 1.0, gone_after  # at once: without a goodbye it takes the liveness timeout (8 s+)
    assert all(p["id"] != alice.peer_id for p in bob.get("/api/peers"))
    assert alice.proc.wait(30) == 0
    alice.start()  # back: its offers with it
    wait_for(lambda: visible(bob, offer["id"]), timeout=20, what="the offer back in bob's book")


def test_forged_or_replayed_goodbyes_hide_nobody(spawn: Spawn, tmp_path: Path) -> None:
    """A goodbye is a death notice of the maker's own newest head, signed by the maker. An attacker
    gossips bob goodbyes in alice's name: unsigned, signed by another key, and one of alice's own about an
    older head of hers, replayed after she moved on. None hides her; a fresh one signed by her key does
    (so the attack is made on the path that works), and alice, still running, refutes it."""
    alice, bob = spawn("alice", data_dir=tmp_path / "alice"), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="the offer at bob")
    key = load_or_create(tmp_path / "alice" / "identity.key")
    rpc = f"127.0.0.1:{bob.get('/api/health')['rpc_port']}"

    def ask(msg: msgspec.Struct) -> Any:
        async def go() -> Any:
            async with Link(bob.grape) as link:
                client = raw_client(link)
                try:
                    return await client.request_dest(rpc, "otc:market", wire(msg))
                finally:
                    await client.stop()

        with BackgroundLoop() as bg:
            return bg.run(go())

    def head_at_bob() -> Head:
        (record,) = ask(Pull(makers=[alice.peer_id]))["records"]
        return msgspec.convert(record["head"], Head)

    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    def goodbye(death: Death) -> None:
        ask(Gossip(deaths=[death]))

    older = head_at_bob()
    second = alice.offer("sell", "1", "8001")  # alice moves on: a newer head
    wait_for(lambda: head_at_bob().head > older.head and visible(bob, second["id"]), what="alice's new head")
    stranger = Identity.generate()
    for bad in (
        Death(head=head_at_bob(), accuser=alice.peer_id, ts=now_ms()),  # unsigned
        msgspec.structs.replace(sign_death(stranger, head_at_bob(), now_ms()), accuser=alice.peer_id),
        sign_death(key, older, now_ms()),  # alice's own, about a head older than the one bob holds
    ):
        goodbye(bad)
        time.sleep(0.2)
        assert visible(bob, offer["id"]), bad
    # a genuine one: alice, frozen so that she cannot refute it at once, is hidden within a second (her
    # neighbours' probes would take several)
    genuine = sign_death(key, head_at_bob(), now_ms())
    assert alice.proc is not None
    alice.proc.send_signal(signal.SIGSTOP)
    try:
        goodbye(genuine)
        wait_for(lambda: not visible(bob, offer["id"]), timeout=1, interval=0.01, what="a genuine goodbye")
    finally:
        alice.proc.send_signal(signal.SIGCONT)
    # alice hears of it and refutes it with a newer head: a goodbye is "gone for now", not a ban
    wait_for(lambda: visible(bob, offer["id"]), timeout=15, what="alice's refutation")


# --- item 11: my own offers -----------------------------------------------------------------------------
def test_otc_offers_lists_my_own(spawn: Spawn) -> None:
    alice = spawn("alice")
    one = alice.offer("sell", "1", "8000")
    two = alice.offer("buy", "2", "7000")
    ok("--api", alice.url, "cancel", two["id"][:8])
    table = records(ok("--api", alice.url, "offers"))
    assert [(r["id"], r["side"], r["price USD"], r["remaining BTC"]) for r in table] == [
        (one["id"][:8], "sell", "8,000.00", "1")
    ]
    everything = as_json_ok("--api", alice.url, "offers", "--all")
    assert {o["id"]: o["status"] for o in everything} == {one["id"]: "open", two["id"]: "cancelled"}
    assert "cancelled" in ok("--api", alice.url, "offers", "--all")
