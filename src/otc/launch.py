"""Launch ``otc peer`` processes and drive them through their control API over loopback HTTP.

Used by the demo, the integration tests, the chaos run and the benchmarks. Processes are ended by their
Popen handle, never by name. Every peer gets an explicit data directory (a temporary one of its own when
none is given, removed when it stops), so nothing is written to the user's home, and every request
carries the API token the peer wrote there (``PeerProcess.token``).
"""

from __future__ import annotations

import functools
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .home import default_data_dir, read_token, running

T = TypeVar("T")


class APIError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.code = body.get("error")
        self.body = body


def http(method: str, url: str, body: Any = None, timeout: float = 30, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise APIError(exc.code, json.loads(exc.read() or b"{}")) from None


def isolate(root: Path) -> None:
    """Keep the data homes and runtime records of every peer started from now on (by this process and
    its children) under ``root``, not in the user's ``~/.local/share/otc`` or ``$XDG_RUNTIME_DIR``."""
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_RUNTIME_DIR", "run")):
        (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ[var] = str(root / sub)


def wait_for(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except (APIError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}: last {last!r}")
        time.sleep(interval)


_HANDED_OUT: set[int] = set()  # ports this process picked already: 150 random picks collide otherwise


def api_port_below_ephemeral() -> int:
    """A free port for a control API, below the kernel's ephemeral range: while peers start, their RPC
    servers and every outgoing connection take ephemeral ports, and one of them could take a port picked
    there for an API that is not bound yet (then the API fails to start, or another server answers).
    Never the same port twice from one process (peers picked for at once bind only later)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(10_000, low) if low > 11_000 else random.randrange(1024, max(1025, low))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


class PeerProcess:
    """An ``otc peer`` process. Its data directory is ``data_dir`` if given; else, with ``home``, the
    default one for its name (``$XDG_DATA_HOME/otc/<name>``); with ``ephemeral``, a temporary one the
    peer makes itself (found through its runtime record); else a temporary one made here and removed
    when it stops."""

    def __init__(
        self,
        grape: str,
        name: str,
        data_dir: Path | None = None,
        log_dir: Path | None = None,
        api_port: int | None = None,
        nofile: tuple[int, int] | None = None,
        *,
        home: bool = False,
        ephemeral: bool = False,
        args: tuple[str, ...] = (),
    ) -> None:
        self.grape = grape
        self.name = name
        self.home = home
        self.ephemeral = ephemeral
        self.args = args  # more `otc peer` options
        self.own_dir = data_dir is None and not home and not ephemeral  # removed when it stops
        self._data_dir: Path | None = data_dir
        if self.own_dir:
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"otc-{name}-"))
        elif home:
            self._data_dir = default_data_dir(name)
        self.log_dir = log_dir
        self.api_port = api_port or api_port_below_ephemeral()
        self.nofile = nofile  # (soft, hard) limit on open files to start the process with
        self.proc: subprocess.Popen[bytes] | None = None
        self.peer_id = ""
        self._token: str | None = None

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:  # --ephemeral: where the peer's runtime record says
            record = next((r for r in running() if self.proc and r.pid == self.proc.pid), None)
            if record is None:
                raise FileNotFoundError(f"no runtime record of {self.name} yet")
            return Path(record.data_dir)
        return self._data_dir

    @property
    def token(self) -> str:
        """The API token this peer wrote at start (read once it answers)."""
        if self._token is None:
            self._token = read_token(self.data_dir)
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        """What a request needs besides its body: the token."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 30.0) -> PeerProcess:
        self.launch()
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> PeerProcess:
        health = wait_for(self._health, timeout, what=f"peer {self.name} to answer")
        self.peer_id = health["peer_id"]
        return self

    def launch(self) -> None:
        """Start the process without waiting for it (start many, then ``wait_ready`` each)."""
        cmd = [sys.executable, "-m", "otc.cli", "peer", "--grape", self.grape, "--name", self.name,
               "--api-port", str(self.api_port), "--log-level", "warning"]  # fmt: skip
        if self.ephemeral:
            cmd.append("--ephemeral")
        elif not self.home:
            cmd += ["--data-dir", str(self.data_dir)]
        cmd += self.args
        self._token = None  # a new one at every start
        log = open(self.log_dir / f"{self.name}.log", "ab") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
        nofile = self.nofile

        def limit() -> None:  # in the child, before exec
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        try:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                preexec_fn=limit if nofile is not None else None,
            )  # fmt: skip
        finally:
            if self.log_dir:
                log.close()  # type: ignore[union-attr]

    def _health(self) -> Any:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"peer {self.name} exited with {self.proc.returncode}")
        self._token = None  # until it answers, the file may still hold a predecessor's token
        return self.get("/api/health")

    def get(self, path: str, timeout: float = 30) -> Any:
        return http("GET", self.url + path, token=self.token, timeout=timeout)

    def post(self, path: str, body: Any) -> Any:
        return http("POST", self.url + path, body, token=self.token)

    def delete(self, path: str) -> Any:
        return http("DELETE", self.url + path, token=self.token)

    def book(self, pair: str = "BTC/USD", timeout: float = 30) -> Any:
        return self.get(f"/api/book?pair={pair.replace('/', '%2F')}", timeout)

    def offer(self, side: str, amount: str, price: str, **extra: Any) -> Any:
        return self.post("/api/offers", {"side": side, "amount": amount, "price": price, **extra})

    def take(self, offer_id: str, amount: str | None = None) -> Any:
        body: dict[str, Any] = {"offer_id": offer_id}
        if amount is not None:
            body["amount"] = amount
        return self.post("/api/trades", body)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kb(self) -> int:
        """Resident memory of the process (Linux), in KiB."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_all(peers: list[PeerProcess], timeout: float = 120.0) -> None:
    """Start peers in parallel and wait until each answers and knows all the others."""
    for p in peers:
        p.launch()
    for p in peers:
        p.wait_ready(timeout)

    def met(peer: PeerProcess) -> bool:
        return bool(peer.get("/api/health")["peers"] == len(peers) - 1)

    for p in peers:
        wait_for(functools.partial(met, p), 60, 0.1, f"{p.name} to meet the others")


def book_state(peer: PeerProcess, pair: str = "BTC/USD") -> list[tuple[str, str, int]]:
    """(id, remaining, seq) of every visible offer: what must converge across peers."""
    book = peer.book(pair)
    return sorted((o["id"], o["remaining"], o["seq"]) for o in book["bids"] + book["asks"])
