"""RPC throughput and latency: the Python Grenache library against the Node originals, in one run.

    .venv/bin/python bench/rpc.py [--seconds 3] [--warmup 1] [--inflight 1,32] [--transports http,https,ws]
                                  [--json out.json]

Starts two Grapes on loopback and, for each transport, one Node server and one Python server
(bench/rpc_server.py, uvloop), each in its own process: ``http`` = grenache-nodejs-http 1.0.2
(tests/node/server.js); ``https`` = the same in its ``secure`` mode, with a CA and certificates made
for the run (client certificates too); ``ws`` = grenache-nodejs-ws 1.0.0 (tests/node/ws_server.js).
Then for every pair and in-flight count a load-generator process (bench/node_client.js or
bench/rpc_client.py) keeps that many requests outstanding for a warm-up and then a measured window, and
prints JSON stats. Node client → Node server of the same transport is the anchor: "ratio" compares each
pair's req/s with it at the same in-flight count; "vs http" compares it with the same pair over plain
HTTP (the cost of TLS, or the gain of WebSocket). Every process started here is stopped at the end,
also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from grenache import tls  # noqa: E402
from grenache.grapes import GrapeNetwork  # noqa: E402

BENCH = ROOT / "bench"
NODE_TESTS = ROOT / "tests" / "node"
PYTHON = sys.executable
NODE = shutil.which("node") or "node"

TRANSPORTS = ["http", "https", "ws"]
WIRE = {"http": "http", "https": "http", "ws": "ws"}  # the RPC transport under each benchmarked one
SERVERS: dict[str, dict[str, Callable[[str, str], list[str]]]] = {
    "node": {
        "http": lambda grape, key: [NODE, str(NODE_TESTS / "server.js"), grape, key],
        "ws": lambda grape, key: [NODE, str(NODE_TESTS / "ws_server.js"), "grenache-nodejs-ws-1", grape, key],
    },
    "python": {
        "http": lambda grape, key: [PYTHON, str(BENCH / "rpc_server.py"), grape, key, "http"],
        "ws": lambda grape, key: [PYTHON, str(BENCH / "rpc_server.py"), grape, key, "ws"],
    },
}
CLIENTS = {
    "node": [NODE, str(BENCH / "node_client.js")],
    "python": [PYTHON, str(BENCH / "rpc_client.py")],
}
PAIRS = [("node", "node"), ("python", "python"), ("python", "node"), ("node", "python")]
LABEL = {"node": "Node", "python": "Python"}

console = Console(width=max(120, shutil.get_terminal_size((120, 40)).columns))


class Processes:
    """Every child we start, so all of them can be stopped however the run ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: list[str], tls_dir: Path | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tls_dir)
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def _env(tls_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.pop("GRENACHE_TLS_DIR", None)
    if tls_dir is not None:
        env["GRENACHE_TLS_DIR"] = str(tls_dir)
    return env


def make_pki(folder: Path) -> Path:
    """A CA and one certificate (for 127.0.0.1) that every TLS server and client of the run uses."""
    ca = tls.CertificateAuthority("bench CA")
    cert, key = ca.issue("bench-peer")
    for name, data in (("cert.pem", cert), ("key.pem", key), ("ca.pem", ca.cert_pem)):
        (folder / name).write_bytes(data)
    return folder


def wait_ready(proc: subprocess.Popen[str], name: str, deadline_s: float = 20.0) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if sel.select(left):
                line = proc.stdout.readline()
                if not line:
                    break
                if line.startswith("READY "):
                    return int(line.split()[1])
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    raise RuntimeError(f"{name} server did not become ready (rc={proc.poll()}): {err[-2000:]}")


def run_client(
    procs: Processes,
    kind: str,
    grape: str,
    key: str,
    inflight: int,
    seconds: float,
    warmup: float,
    transport: str,
    tls_dir: Path | None,
) -> dict[str, Any]:
    cmd = [*CLIENTS[kind], grape, key, str(inflight), str(seconds), str(warmup), WIRE[transport]]
    proc = procs.start(cmd, tls_dir)
    try:
        out, err = proc.communicate(timeout=warmup + seconds + 30)
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        if _interrupted:  # Ctrl-C reached the whole process group, and the client died of it first
            raise KeyboardInterrupt
        raise RuntimeError(f"{kind} client failed (rc={proc.returncode}): {err[-2000:]}")
    line = out.strip().splitlines()[-1]
    stats: dict[str, Any] = json.loads(line)
    return stats


_interrupted = False


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per cell (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured warm-up per cell (default 1)")
    parser.add_argument("--inflight", default="1,32", help="comma-separated in-flight counts (default 1,32)")
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="default http,https,ws")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args()
    inflights = [int(x) for x in args.inflight.split(",") if x.strip()]
    transports = [t for t in args.transports.split(",") if t.strip()]
    if any(t not in TRANSPORTS for t in transports):
        parser.error(f"--transports takes {', '.join(TRANSPORTS)}")

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    procs = Processes()
    results: list[dict[str, Any]] = []
    try:
        with GrapeNetwork(2) as net, tempfile.TemporaryDirectory(prefix="bench-rpc-") as tmp:
            pki = make_pki(Path(tmp))
            server_grape, client_grape = net.urls
            for transport in transports:
                tls_dir = pki if transport == "https" else None
                keys: dict[str, str] = {}
                servers = []
                for kind, commands in SERVERS.items():
                    keys[kind] = f"bench:rpc:{transport}:{kind}:{uuid.uuid4().hex[:6]}"
                    proc = procs.start(commands[WIRE[transport]](server_grape, keys[kind]), tls_dir)
                    servers.append(proc)
                    port = wait_ready(proc, f"{kind} {transport}")
                    console.print(f"[dim]{kind} {transport} server on 127.0.0.1:{port} as {keys[kind]}[/dim]")
                for inflight in inflights:
                    for client_kind, server_kind in PAIRS:
                        pair = f"{LABEL[client_kind]} → {LABEL[server_kind]}"
                        with console.status(f"{transport} {pair}, {inflight} in flight…"):
                            stats = run_client(
                                procs, client_kind, client_grape, keys[server_kind], inflight,
                                args.seconds, args.warmup, transport, tls_dir,
                            )  # fmt: skip
                        stats.update(
                            pair=pair,
                            client=client_kind,
                            server=server_kind,
                            inflight=inflight,
                            transport=transport,
                        )
                        results.append(stats)
                        console.print(
                            f"[dim]{transport:<5} {pair:<16} {inflight:>3} in flight"
                            f" {stats['rps']:>7.0f} req/s"
                            f"  p50 {fmt(stats['p50_ms'])}  p99 {fmt(stats['p99_ms'])} ms"
                            f"  errors {stats['errors']}[/dim]",
                            no_wrap=True,
                        )
                for proc in servers:  # one transport's servers at a time: 2 cores
                    procs.stop(proc)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every process[/yellow]")
        return 130
    except RuntimeError as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    finally:
        procs.stop_all()

    def rps(transport: str, client: str, server: str, inflight: int) -> float | None:
        for r in results:
            if (r["transport"], r["client"], r["server"], r["inflight"]) == (
                transport,
                client,
                server,
                inflight,
            ):
                return float(r["rps"])
        return None

    table = Table(
        title=f"Grenache RPC, loopback, {args.seconds:g} s per cell after {args.warmup:g} s warm-up",
        caption="ratio = req/s ÷ Node → Node req/s on the same transport at the same in-flight count; "
        "vs http = req/s ÷ the same pair's plain-HTTP req/s",
    )
    table.add_column("transport", no_wrap=True)
    table.add_column("pair", no_wrap=True)
    for col in ("in-flight", "req/s", "p50 ms", "p99 ms", "ratio", "vs http", "errors"):
        table.add_column(col, justify="right", no_wrap=True)
    order = {t: i for i, t in enumerate(TRANSPORTS)}
    for r in sorted(
        results, key=lambda r: (order[r["transport"]], r["inflight"], PAIRS.index((r["client"], r["server"])))
    ):
        base = rps(r["transport"], "node", "node", r["inflight"])
        plain = rps("http", r["client"], r["server"], r["inflight"])
        ratio = f"{r['rps'] / base:.2f}×" if base else "-"
        vs_plain = f"{r['rps'] / plain:.2f}×" if plain and r["transport"] != "http" else "-"
        table.add_row(
            r["transport"], r["pair"], str(r["inflight"]), f"{r['rps']:.0f}", fmt(r["p50_ms"]),
            fmt(r["p99_ms"]), ratio, vs_plain, str(r["errors"]),
        )  # fmt: skip
    console.print(table)
    versions = f"{os.cpu_count()} CPUs; Node {_node_version()}; Python {sys.version.split()[0]}"
    console.print(f"[dim]{versions}[/dim]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if any(r["errors"] for r in results):
        console.print("[red]some requests failed[/red]: " + "; ".join(
            f"{r['transport']} {r['pair']}/{r['inflight']}: {r['first_error']}"
            for r in results if r["errors"]
        ))  # fmt: skip
        return 1
    return 0


def _node_version() -> str:
    try:
        return subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
