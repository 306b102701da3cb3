"""`make chaos`: a seeded fault-injection run with Jepsen-style invariant checks.

    .venv/bin/python scripts/chaos.py [--seed N] [--peers 5] [--seconds 60]

Several peers (each with a data directory) on two real Grapes run a random workload of offers, takes,
cancels and sweeps while peers are killed (SIGKILL) and restarted from their data directories, paused
(SIGSTOP/SIGCONT), and a Grape is restarted. When the workload stops, every peer is brought back and the
run waits for pending trades to resolve and books to converge, then checks:

- overfills:            no offer was filled past its amount (and fills + remaining = amount, exactly)
- disagreements:        every receipt a taker holds, its maker holds identically, and vice versa
- lost trades:          every trade the API reported done is held by both sides at the end
- resurrected offers:   no cancelled or filled offer is visible in any book
- convergence:          all live books identical, and how long that took after activity stopped

With the adversary (on by default, scripts/adversary.py: a squatter on every peer's name, a griefer that
takes and never confirms, an equivocator, a silent listener on the market) one invariant more:

- equivocator shown:    no book shows an offer of the maker that signed two versions of one
- squatter reached:     no peer's request reached the squatter on its name (TLS pinning held)

Exit code 0 when every invariant holds, 1 otherwise. Only loopback addresses; every process started
here is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from adversary import Adversary, Target

from grenache.grapes import GrapeNetwork
from otc.launch import APIError, PeerProcess, book_state, isolate, start_all, wait_for


@dataclass
class Run:
    rng: random.Random
    net: GrapeNetwork
    peers: list[PeerProcess]
    down: set[int] = field(default_factory=set)  # killed, waiting for a restart
    paused: set[int] = field(default_factory=set)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # receipts the API reported done
    closed: set[str] = field(default_factory=set)  # offers cancelled (API said so)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    log: list[str] = field(default_factory=list)
    adversary: Adversary | None = None

    def live(self) -> list[int]:
        return [i for i in range(len(self.peers)) if i not in self.down and i not in self.paused]

    def note(self, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")
        print(f"  {text}", flush=True)


def call(run: Run, what: str, fn: Any, *args: Any) -> Any:
    try:
        result = fn(*args)
        run.counts[f"{what} ok"] += 1
        return result
    except APIError as exc:
        run.counts[f"{what} {exc.code}"] += 1
    except OSError:
        run.counts[f"{what} unreachable"] += 1
    return None


def act(run: Run) -> None:
    """One random workload step on a random live peer."""
    live = run.live()
    if not live:
        return
    peer = run.peers[run.rng.choice(live)]
    roll = run.rng.random()
    if roll < 0.35:
        side = run.rng.choice(["buy", "sell"])
        price = str(8000 + run.rng.randint(-50, 50) if side == "sell" else 7950 + run.rng.randint(-50, 50))
        call(run, "offer", peer.offer, side, str(run.rng.choice([1, 2, 5, 10])), price)
    elif roll < 0.75:
        book = call(run, "book", peer.book) or {"bids": [], "asks": []}
        others = [o for o in book["bids"] + book["asks"] if not o["mine"]]
        if not others:
            return
        burst = others[: run.rng.randint(1, 3)]
        takers = [run.peers[i] for i in run.live() if run.peers[i].peer_id not in {o["maker"] for o in burst}]
        jobs = [(run.rng.choice(takers), o, run.rng.choice(["0.5", "1", o["remaining"]]))
                for o in burst for _ in range(run.rng.randint(1, 4)) if takers]  # fmt: skip
        with ThreadPoolExecutor(len(jobs) or 1) as pool:
            for receipt in pool.map(lambda j: call(run, "take", j[0].take, j[1]["id"], j[2]), jobs):
                if receipt:
                    run.done[receipt["id"]] = receipt
    elif roll < 0.88:
        mine = call(run, "offers", peer.get, "/api/offers") or []
        if mine:
            offer = run.rng.choice(mine)
            if call(run, "cancel", peer.delete, f"/api/offers/{offer['id']}"):
                run.closed.add(offer["id"])
    else:
        side = run.rng.choice(["buy", "sell"])
        body = {"side": side, "amount": str(run.rng.choice([1, 3, 8])),
                "limit": "8050" if side == "buy" else "7900"}  # fmt: skip
        result = call(run, "sweep", peer.post, "/api/sweep", body)
        for receipt in (result or {}).get("fills", []):
            run.done[receipt["id"]] = receipt


def fault(run: Run, restarts: list[tuple[float, int]]) -> None:
    """One random fault."""
    roll = run.rng.random()
    candidates = run.live()
    if roll < 0.4 and len(candidates) > 2:
        i = run.rng.choice(candidates)
        run.peers[i].kill()
        run.down.add(i)
        restarts.append((time.monotonic() + run.rng.uniform(1, 4), i))
        run.note(f"SIGKILL {run.peers[i].name}")
    elif roll < 0.8 and len(candidates) > 2:
        i = run.rng.choice(candidates)
        run.peers[i].signal(signal.SIGSTOP)
        run.paused.add(i)
        restarts.append((time.monotonic() + run.rng.uniform(0.5, 5), i))
        run.note(f"SIGSTOP {run.peers[i].name}")
    else:
        g = run.rng.randrange(len(run.net.grapes))
        run.net.restart(g)
        run.note(f"restarted grape {g + 1}")


def recover(run: Run, i: int) -> None:
    peer = run.peers[i]
    if i in run.paused:
        peer.signal(signal.SIGCONT)
        run.paused.discard(i)
        run.note(f"SIGCONT {peer.name}")
    elif i in run.down:
        fresh = PeerProcess(peer.grape, peer.name, data_dir=peer.data_dir, log_dir=peer.log_dir,
                            api_port=peer.api_port)  # fmt: skip
        try:
            fresh.start(60)
        except AssertionError:
            # its old API port may have been handed to another process meanwhile (the kernel gives out
            # ports from one range): then come back on a new one; any other failure is a finding
            fresh.stop()
            tail = (peer.log_dir / f"{peer.name}.log").read_text()[-2000:] if peer.log_dir else ""
            if "in use" not in tail:
                raise
            run.note(f"{peer.name}: API port {peer.api_port} was taken meanwhile; restarting on another")
            fresh = PeerProcess(peer.grape, peer.name, data_dir=peer.data_dir, log_dir=peer.log_dir)
            fresh.start(60)
        assert fresh.peer_id == peer.peer_id, "restart changed identity"
        run.peers[i] = fresh
        run.down.discard(i)
        run.note(f"restarted {peer.name} from its data directory")
        if run.adversary is not None:
            run.adversary.retarget(targets(run))


def targets(run: Run) -> list[Target]:
    """The honest peers as the adversary finds them: ids and RPC addresses (a restart moves the port)."""
    out = []
    for i in run.live():
        p = run.peers[i]
        with contextlib.suppress(APIError, OSError):
            out.append(Target(p.peer_id, f"127.0.0.1:{p.get('/api/health')['rpc_port']}"))
    return out


def some_book(run: Run) -> list[dict[str, Any]]:
    """What the adversary reads, as anyone could: the book of a live peer."""
    book = run.peers[random.choice(run.live())].book()  # not run.rng: this runs in the adversary's thread
    return list(book["bids"]) + list(book["asks"])


def check(run: Run, settle_timeout: float) -> dict[str, Any]:
    peers = run.peers
    t0 = time.monotonic()
    wait_for(lambda: all(p.get("/api/health")["pending_trades"] == 0 for p in peers), settle_timeout, 0.2,
             "pending trades to resolve")  # fmt: skip
    try:
        wait_for(
            lambda: len({tuple(book_state(p)) for p in peers}) == 1, settle_timeout, 0.1, "books to converge"
        )
    except AssertionError:
        explain_divergence(peers)
        raise
    converge_s = time.monotonic() - t0

    held: dict[str, dict[str, dict[str, Any]]] = {p.peer_id: {r["id"]: r for r in p.get("/api/trades")}
                                                   for p in peers}  # fmt: skip
    sigs = lambda r: (r["maker_sig"], r["taker_sig"], r["amount"], r["price"], r["offer_id"])  # noqa: E731
    disagreements = 0
    for receipts in held.values():
        for tid, r in receipts.items():
            other = r["taker"] if r["role"] == "maker" else r["maker"]
            twin = held.get(other, {}).get(tid)
            if twin is None or sigs(twin) != sigs(r):
                disagreements += 1
    lost = sum(1 for tid, r in run.done.items()
               if tid not in held[r["maker"]] or tid not in held[r["taker"]])  # fmt: skip

    overfills = 0
    filled_or_closed: set[str] = set(run.closed)
    for p in peers:
        fills: dict[str, Decimal] = defaultdict(Decimal)
        for r in held[p.peer_id].values():
            if r["role"] == "maker":
                fills[r["offer_id"]] += Decimal(r["amount"])
        for offer in p.get("/api/offers?all=1"):
            if offer["status"] != "open":
                filled_or_closed.add(offer["id"])
            if fills[offer["id"]] + Decimal(offer["remaining"]) != Decimal(offer["amount"]):
                overfills += 1
    visible = {o[0] for p in peers for o in book_state(p)}
    resurrected = len(visible & filled_or_closed)
    return {
        "trades done (API)": len(run.done),
        "receipts held": sum(len(v) for v in held.values()),
        "overfills": overfills,
        "disagreements": disagreements,
        "lost trades": lost,
        "resurrected offers": resurrected,
        "convergence (s)": round(converge_s, 2),
    }


def explain_divergence(peers: list[PeerProcess]) -> None:
    """What differs between books, and each peer's replication view of each maker: the evidence needed
    to tell a lost update from a liveness problem."""
    names = {p.peer_id: p.name for p in peers}
    states = {p.name: {o[0]: o[1:] for o in book_state(p)} for p in peers}
    print("\nbooks did not converge; offers not held identically everywhere:")
    for oid in sorted({oid for s in states.values() for oid in s}):
        copies = {name: s.get(oid) for name, s in states.items()}
        if len(set(copies.values())) > 1:
            print(f"  {oid[:16]}  " + "  ".join(f"{n}={c}" for n, c in copies.items()))
    for p in peers:
        mine = p.get("/api/health")
        print(f"  {p.name} ({p.peer_id[:8]}): {mine['offers']} open offers of its own")
        for v in p.get("/api/peers?all=1"):
            print(f"    sees {names.get(v['id'], v['id'][:8])}: alive {v['alive']} head_seq {v['head_seq']} "
                  f"held_seq {v['held_seq']} offers {v['offers']} in_sync {v['in_sync']}")  # fmt: skip


def inject(run: Run, end: float, faults_every: float) -> None:
    """Faults and recoveries on their own clock, whatever the workload is blocked on."""
    rng = random.Random(run.rng.random())
    restarts: list[tuple[float, int]] = []
    next_fault = time.monotonic() + faults_every
    while time.monotonic() < end:
        now = time.monotonic()
        for due, i in [r for r in restarts if r[0] <= now]:
            restarts.remove((due, i))
            recover(run, i)
        if now >= next_fault:
            fault(run, restarts)
            next_fault = now + rng.uniform(0.5, 1.5) * faults_every
        time.sleep(0.05)  # the injector's tick
    for _, i in restarts:
        recover(run, i)


def chaos(
    seed: int, n_peers: int, seconds: float, faults_every: float, log_dir: Path, adversary: bool = True
) -> dict[str, Any]:
    rng = random.Random(seed)
    net = GrapeNetwork(2, log_dir=log_dir).start()
    peers = [PeerProcess(net.urls[i % 2], f"peer{i}", data_dir=log_dir / f"peer{i}", log_dir=log_dir)
             for i in range(n_peers)]  # fmt: skip
    run = Run(rng, net, peers)
    try:
        start_all(peers)
        if adversary:
            run.adversary = Adversary(net.urls, targets(run), book=lambda: some_book(run), seed=seed)
            run.adversary.start()
            run.note("the adversary is on: squatter, griefer, equivocator, silent listener")
        end = time.monotonic() + seconds
        injector = threading.Thread(target=inject, args=(run, end, faults_every), daemon=True)
        injector.start()
        while time.monotonic() < end:
            act(run)
        injector.join()
        if run.adversary is not None:
            run.adversary.stop()  # its reservations then expire like anyone's
        run.note("activity stopped; every peer is back; checking")
        report = check(run, 60)
        if run.adversary is not None:
            cheat = run.adversary.equivocator.peer_id
            report["equivocator shown"] = sum(
                1 for p in run.peers for o in p.book()["bids"] + p.book()["asks"] if o["maker"] == cheat
            )
            report["squatter reached"] = run.adversary.findings.pop("squatter reached")
            report["adversary"] = dict(run.adversary.findings)
        report["workload"] = dict(sorted(run.counts.items()))
        return report
    finally:
        if run.adversary is not None:
            run.adversary.stop()
        for p in run.peers:
            p.stop()
        net.stop()


INVARIANTS = (
    "overfills",
    "disagreements",
    "lost trades",
    "resurrected offers",
    "equivocator shown",
    "squatter reached",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--faults-every", type=float, default=4.0, help="mean seconds between faults")
    parser.add_argument(
        "--adversary", action=argparse.BooleanOptionalAction, default=True, help="run the adversary too"
    )
    args = parser.parse_args()
    print(f"chaos: seed {args.seed}, {args.peers} peers, {args.seconds:.0f} s of workload and faults")
    with tempfile.TemporaryDirectory(prefix="otc-chaos-") as tmp:
        isolate(Path(tmp))  # killed peers leave runtime records: not in the user's own directory
        report = chaos(args.seed, args.peers, args.seconds, args.faults_every, Path(tmp), args.adversary)
    workload = report.pop("workload")
    print("\nworkload outcomes:", ", ".join(f"{k}: {v}" for k, v in workload.items()))
    if "adversary" in report:
        print("adversary:", ", ".join(f"{k}: {v}" for k, v in report.pop("adversary").items()))
    print("\nresults:")
    for key, value in report.items():
        flag = "" if key not in INVARIANTS else ("  ok" if value == 0 else "  VIOLATED")
        print(f"  {key:22} {value}{flag}")
    return 0 if all(report.get(k, 0) == 0 for k in INVARIANTS) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
