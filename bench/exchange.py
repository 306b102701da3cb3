"""Exchange benchmarks (`make bench`): every figure next to its target, measured in one run.

    .venv/bin/python bench/exchange.py [--quick] [--peers 5,20,50,150] [--offers 200] [--json out.json]

- book:        the pure order book (in process): add, cancel, best price, apply update — ops/s
- propagation: an offer posted at one peer until every other peer's book has it (SSE arrival), p50/p99,
               and the copies of it each peer received, at 5, 20, 50 and 150 peer processes on two Grapes
               (past Grape's 100-announcer lookups), after measuring their idle CPU and messages
- latency:     take request until the taker holds the done receipt (the maker holds it before it answers)
- throughput:  trades/s in a 10-peer network, 5 makers and 5 takers with many takes in flight
- contention:  100 takers racing for one offer, repeated; overfills (must be 0) and time to settle
- late join:   time for a new peer to hold a book of 10,000 and 100,000 offers (10 and 100 maker
               processes at the 1,000-offer bound each; every list authenticated by its maker's head)
- memory:      RSS of an idle peer process
Only loopback addresses are used; every process started is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from grenache.grapes import GrapeNetwork  # noqa: E402
from otc.core.book import Book  # noqa: E402
from otc.core.desk import Desk  # noqa: E402
from otc.core.identity import Identity  # noqa: E402
from otc.core.limits import MAX_OFFERS_PER_MAKER  # noqa: E402
from otc.core.messages import Offer  # noqa: E402
from otc.launch import PeerProcess, isolate, start_all, wait_for  # noqa: E402
from otc.node.keyfile import load_or_create  # noqa: E402
from otc.node.store import Store  # noqa: E402

console = Console()
RESULTS: list[dict[str, Any]] = []


def record(name: str, value: float, unit: str, target: str, ok: bool | None, note: str = "") -> None:
    RESULTS.append({"name": name, "value": value, "unit": unit, "target": target, "ok": ok, "note": note})
    mark = "" if ok is None else ("[green]met[/green]" if ok else "[red]missed[/red]")
    console.print(f"  {name:46} {value:>12,.2f} {unit:10} target {target:14} {mark} {note}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextmanager
def network(n_peers: int, tmp: Path, prefix: str = "p") -> Iterator[tuple[GrapeNetwork, list[PeerProcess]]]:
    net = GrapeNetwork(2, log_dir=tmp).start()
    peers = [PeerProcess(net.urls[i % 2], f"{prefix}{i}", log_dir=tmp) for i in range(n_peers)]
    try:
        start_all(peers)
        yield net, peers
    finally:
        for p in peers:
            p.stop()
        net.stop()


# --- the pure book -----------------------------------------------------------------------------------
def bench_book(n: int) -> None:
    console.rule("pure order book (in process)")
    makers = [Desk(Identity.from_seed(bytes([i + 1]) * 32), f"m{i}") for i in range(4)]
    # heads of makers with nothing yet: an empty book matches them, so every maker counts as live
    heads = [m.head(3, "127.0.0.1:1") for m in makers]
    created: list[Offer] = []
    for i in range(n):
        offer, _ = makers[i % 4].create(
            side=random.choice(["buy", "sell"]),
            amount="10",
            price=str(7000 + random.randrange(2000)),
            pair="BTC/USD",
            now=1,
        )
        created.append(offer)
    cancels = [makers[i % 4].cancel(o.id, 2)[0] for i, o in enumerate(created)]

    def fresh_book() -> Book:  # every maker heard from, so all offers are visible
        book = Book()
        for head in heads:
            book.accept_head(head, 3)
        assert all(book.maker_alive(m.peer_id, 3) for m in makers)
        return book

    book = fresh_book()
    t = time.perf_counter()
    for o in created:
        book.apply(o)
    add = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n):
        book.best("BTC/USD", "sell", 3)
    best = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for o in cancels:
        book.apply(o)
    cancel = n / (time.perf_counter() - t)
    # updates: fills of offers held (a fresh book of the same offers, then one fill each)
    book = fresh_book()
    for o in created:
        book.apply(o)
    fills = [
        o.__class__(
            **{**{f: getattr(o, f) for f in o.__struct_fields__}, "remaining": "5", "seq": o.seq + 10**6}
        )
        for o in created
    ]
    t = time.perf_counter()
    for o in fills:
        book.apply(o)
    update = n / (time.perf_counter() - t)
    mixed = 4 / (1 / add + 1 / best + 1 / cancel + 1 / update)
    for name, v in (("add", add), ("best price", best), ("cancel", cancel), ("apply update", update)):
        record(f"book {name}", v, "ops/s", ">= 300,000", v >= 300_000)
    record("book mixed (harmonic mean)", mixed, "ops/s", ">= 300,000", mixed >= 300_000)
    t = time.perf_counter()
    verified = fresh_book()
    for o in created[:5000]:
        verified.receive(o, 3)
    record("book receive incl. signature check", 5000 / (time.perf_counter() - t), "ops/s", "—", None)


# --- propagation ---------------------------------------------------------------------------------------
async def sse_arrivals(
    peer: PeerProcess,
    session: aiohttp.ClientSession,
    arrivals: dict[str, dict[str, float]],
    complete: dict[str, asyncio.Event],
    expected: int,
    ready: asyncio.Event,
) -> None:
    async with session.get(
        peer.url + "/api/events", headers=peer.headers, timeout=aiohttp.ClientTimeout(total=None)
    ) as resp:
        ready.set()
        async for line in resp.content:
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                if event.get("type") == "offer" and event.get("status") == "open":
                    seen = arrivals.setdefault(event["id"], {})
                    seen.setdefault(peer.name, time.perf_counter())
                    if len(seen) == expected:
                        complete.setdefault(event["id"], asyncio.Event()).set()


async def measure_propagation(peers: list[PeerProcess], offers: int) -> list[float]:
    maker, others = peers[0], peers[1:]
    arrivals: dict[str, dict[str, float]] = {}
    complete: dict[str, asyncio.Event] = {}
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        readies = [asyncio.Event() for _ in others]
        tasks = [
            asyncio.create_task(sse_arrivals(p, session, arrivals, complete, len(others), r))
            for p, r in zip(others, readies, strict=True)
        ]
        await asyncio.gather(*(r.wait() for r in readies))
        for i in range(offers):
            t0 = time.perf_counter()
            body = {"side": "sell", "amount": "1", "price": str(9000 + i)}
            async with session.post(maker.url + "/api/offers", json=body, headers=maker.headers) as resp:
                oid = (await resp.json())["id"]
            try:
                async with asyncio.timeout(10):
                    await complete.setdefault(oid, asyncio.Event()).wait()
                latencies.append((max(arrivals[oid].values()) - t0) * 1000)
            except TimeoutError:
                pass  # counted as lost below
            await asyncio.sleep(0.005)  # pacing between offers, not synchronisation
        for t in tasks:
            t.cancel()
    return latencies


def cpu_ticks(peer: PeerProcess) -> int:
    """user + system CPU time of a peer process, in clock ticks (Linux /proc)."""
    with open(f"/proc/{peer.pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def market_stats(peers: list[PeerProcess]) -> list[dict[str, int]]:
    return [p.get("/api/health").get("market", {}) for p in peers]


def measure_idle(peers: list[PeerProcess], seconds: float) -> tuple[float, float]:
    """Mean CPU (% of one core) and market messages received per peer per second, while idle."""
    before, cpu0, t0 = market_stats(peers), [cpu_ticks(p) for p in peers], time.perf_counter()
    time.sleep(seconds)
    after, cpu1, t1 = market_stats(peers), [cpu_ticks(p) for p in peers], time.perf_counter()
    hz = os.sysconf("SC_CLK_TCK")
    cpu = statistics.mean((b - a) / hz / (t1 - t0) * 100 for a, b in zip(cpu0, cpu1, strict=True))
    msgs = statistics.mean(
        (b.get("msgs_in", 0) - a.get("msgs_in", 0)) / (t1 - t0) for a, b in zip(before, after, strict=True)
    )
    return cpu, msgs


def bench_propagation(sizes: list[int], offers: int, tmp: Path, idle_s: float) -> None:
    console.rule("offer propagation (peer processes on two Grapes)")
    for n in sizes:
        with network(n, tmp, f"prop{n}-") as (_, peers):
            time.sleep(2)  # let the start-up traffic settle
            cpu, msgs = measure_idle(peers, idle_s)
            record(f"idle CPU per peer, {n} peers", cpu, "% core", "—", None, f"over {idle_s:.0f} s")
            record(f"idle market msgs per peer, {n} peers", msgs, "msgs/s", "—", None, "received")
            copies0 = sum(s.get("offers_in", 0) for s in market_stats(peers))
            lat = asyncio.run(measure_propagation(peers, offers))
            copies = (sum(s.get("offers_in", 0) for s in market_stats(peers)) - copies0) / (offers * (n - 1))
            target = 10 if n <= 5 else 50
            p50, p99 = pct(lat, 50) if lat else float("nan"), pct(lat, 99) if lat else float("nan")
            lost = offers - len(lat)
            record(f"propagation p50, {n} peers", p50, "ms", "—", None)
            record(
                f"propagation p99, {n} peers",
                p99,
                "ms",
                f"< {target} ms" if n in (5, 50) else "—",
                (p99 < target and lost == 0) if n in (5, 50) else None,
                f"{len(lat)} offers" + (f", {lost} not everywhere in 10 s" if lost else ""),
            )
            record(f"offer copies received per peer, {n} peers", copies, "copies", "—", None)


# --- trades --------------------------------------------------------------------------------------------
async def take(session: aiohttp.ClientSession, taker: PeerProcess, oid: str, amount: str) -> tuple[int, Any]:
    async with session.post(
        taker.url + "/api/trades", json={"offer_id": oid, "amount": amount}, headers=taker.headers
    ) as resp:
        return resp.status, await resp.json()


async def measure_latency(maker: PeerProcess, taker: PeerProcess, n: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            maker.url + "/api/offers",
            json={"side": "sell", "amount": "1000000", "price": "8000"},
            headers=maker.headers,
        ) as resp:
            oid = (await resp.json())["id"]
        await asyncio.to_thread(wait_for, lambda: taker.book()["asks"], 10)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            status, body = await take(session, taker, oid, "0.01")
            assert status == 201, body
            out.append((time.perf_counter() - t0) * 1000)
        return out


async def measure_throughput(
    makers: list[PeerProcess], takers: list[PeerProcess], seconds: float, inflight: int
) -> tuple[int, int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        oids = []
        for m in makers:
            async with session.post(
                m.url + "/api/offers",
                json={"side": "sell", "amount": "10000000", "price": "8000"},
                headers=m.headers,
            ) as resp:
                oids.append((await resp.json())["id"])
        for t in takers:
            await asyncio.to_thread(
                wait_for, lambda t=t: set(oids) <= {o["id"] for o in t.book()["asks"]}, 10, 0.05, "offers"
            )
        done = failed = 0
        stop = time.perf_counter() + seconds

        async def loop(taker: PeerProcess) -> None:
            nonlocal done, failed
            while time.perf_counter() < stop:
                status, _ = await take(session, taker, random.choice(oids), "0.001")
                if status == 201:
                    done += 1
                else:
                    failed += 1

        await asyncio.gather(*(loop(t) for t in takers for _ in range(inflight)))
        return done, failed


async def measure_contention(
    maker: PeerProcess, takers: list[PeerProcess], racers: int, units: int
) -> tuple[int, float, set[str]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.post(
            maker.url + "/api/offers",
            json={"side": "sell", "amount": str(units), "price": "8000"},
            headers=maker.headers,
        ) as resp:
            oid = (await resp.json())["id"]
        for t in takers:
            await asyncio.to_thread(wait_for, lambda t=t: any(o["id"] == oid for o in t.book()["asks"]), 10)
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(take(session, takers[i % len(takers)], oid, "1") for i in range(racers))
        )
        settle = (time.perf_counter() - t0) * 1000
        filled = sum(Decimal(b["amount"]) for s, b in results if s == 201)
        codes = {b["error"] for s, b in results if s != 201}
        return int(filled) - units, settle, codes


def bench_trades(tmp: Path, quick: bool) -> None:
    console.rule("trades (10 peer processes)")
    with network(10, tmp, "trade") as (_, peers):
        lat = asyncio.run(measure_latency(peers[0], peers[1], 100 if quick else 300))
        record("trade latency p50 (API request to receipt)", pct(lat, 50), "ms", "< 3 ms", pct(lat, 50) < 3)
        record("trade latency p99", pct(lat, 99), "ms", "—", None)
        seconds = 3 if quick else 6
        done, failed = asyncio.run(measure_throughput(peers[:5], peers[5:], seconds, 16))
        rate = done / seconds
        record(
            "trade throughput (5 makers, 5 takers x16)",
            rate,
            "trades/s",
            ">= 1,000",
            rate >= 1000,
            f"{failed} refused",
        )
        overfills, settles, codes = 0, [], set()
        for _ in range(3 if quick else 10):
            over, settle, c = asyncio.run(measure_contention(peers[0], peers[1:], 100, 10))
            overfills += max(0, over)
            settles.append(settle)
            codes |= c
        record(
            "contention: overfills (100 takers, 1 offer)",
            overfills,
            "",
            "0",
            overfills == 0,
            f"refusals: {', '.join(sorted(codes))}",
        )
        record("contention: time to settle, median", statistics.median(settles), "ms", "—", None)


# --- late join -----------------------------------------------------------------------------------------
def seed_maker(data_dir: Path, n: int, salt: int = 0) -> None:
    """A maker's data directory holding ``n`` signed open offers (as if posted before)."""
    identity = load_or_create(data_dir / "identity.key")
    desk = Desk(identity, f"seeder{salt}")
    now = int(time.time() * 1000)
    offers = []
    for i in range(n):
        offer, _ = desk.create(
            side="sell" if i % 2 else "buy",
            amount="1",
            pair="BTC/USD",
            now=now,
            price=str(5000 + i % 5000) if i % 2 else str(4000 - i % 3000),
        )
        offers.append(offer)
    store = Store(data_dir / "peer.sqlite")
    store.save(seq=desk.seq, offers=offers)
    store.set_meta("name", f"seeder{salt}")
    store.close()


def bench_late_join(sizes: list[int], tmp: Path) -> None:
    """A newcomer loads a book of ``n`` offers: n / 1,000 makers at the per-maker bound (limits.py), each
    its own process started from a seeded data directory, and a holder that has the whole book."""
    console.rule("late join (heads verified: one signature per maker)")
    per_maker = MAX_OFFERS_PER_MAKER
    for n in sizes:
        count = max(1, n // per_maker)
        dirs = [tmp / f"seed-{n}-{i}" for i in range(count)]
        for i, data in enumerate(dirs):
            seed_maker(data, min(per_maker, n), salt=i)
        net = GrapeNetwork(2, log_dir=tmp).start()
        urls = net.urls
        peers = [PeerProcess(urls[i % 2], f"seeder{i}", data_dir=d, log_dir=tmp) for i, d in enumerate(dirs)]
        try:
            holder = PeerProcess(net.urls[1], "holder", log_dir=tmp)
            peers.append(holder)
            for p in peers:
                p.launch()
            for p in peers:
                p.wait_ready(300)

            def full(h: PeerProcess = holder, n: int = n) -> bool:
                return bool(h.get("/api/health")["book_offers"] == n)

            wait_for(full, 300, 0.1, "the holder to hold the whole book")
            newcomer = PeerProcess(net.urls[1], "newcomer", log_dir=tmp)
            t0 = time.perf_counter()
            peers.append(newcomer.start(120))  # answers once its join is complete
            health = newcomer.get("/api/health")
            total = time.perf_counter() - t0
            join = health["join_ms"] / 1000
            target = 3.0 if n == 100_000 else None
            record(
                f"late join, {n:,} offers ({count} makers): book loaded",
                join,
                "s",
                f"< {target} s" if target else "—",
                None if target is None else join < target and health["book_offers"] == n,
                f"from process launch to serving: {total:.2f} s; {health['book_offers']:,} offers held",
            )
        finally:
            for p in peers:
                p.stop()
            net.stop()


def bench_memory(tmp: Path) -> None:
    console.rule("memory")
    with network(2, tmp, "idle") as (_, peers):
        time.sleep(3)  # idle: a few probes exchanged
        rss = peers[0].rss_kb() / 1024
        record("RSS of an idle peer process", rss, "MB", "< 40 MB", rss < 40)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (for a smoke test)")
    parser.add_argument("--peers", default="5,20,50,150")
    parser.add_argument("--offers", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement per size")
    parser.add_argument("--join", default="10000,100000")
    parser.add_argument("--only", default="book,propagation,trades,join,memory")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    only = set(args.only.split(","))
    random.seed(7)
    with tempfile.TemporaryDirectory(prefix="otc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        isolate(tmp)
        if "book" in only:
            bench_book(20_000 if args.quick else 100_000)
        if "propagation" in only:
            bench_propagation([int(x) for x in args.peers.split(",")], args.offers, tmp, args.idle)
        if "trades" in only:
            bench_trades(tmp, args.quick)
        if "join" in only:
            bench_late_join([int(x) for x in args.join.split(",")], tmp)
        if "memory" in only:
            bench_memory(tmp)
    table = Table(title="Grenache OTC exchange benchmarks")
    for col in ("measure", "value", "unit", "target", "status", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in RESULTS:
        status = "" if r["ok"] is None else ("met" if r["ok"] else "MISSED")
        table.add_row(r["name"], f"{r['value']:,.2f}", r["unit"], r["target"], status, r["note"])
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
