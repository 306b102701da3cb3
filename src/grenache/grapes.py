"""Start and stop local Grape nodes (npm ``grenache-grape`` 1.0.0) for development, tests and demos.

The 1.0.0 CLI lets omitted flags override its defaults with ``undefined`` (announcements never expire,
no payload cap), so we always pass ``--dpa`` and ``--check_maxPayloadSize`` explicitly, and bind the
HTTP API to loopback with ``-b`` (which also makes a lone Grape keep its own announcements).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

GRAPE_JS = Path("node_modules") / "grenache-grape" / "bin" / "grape.js"


def find_grape_js() -> Path:
    """Locate grape.js: ``$GRAPE_JS``, else ``node_modules`` in this or any parent directory of the cwd
    or of this package's source."""
    env = os.environ.get("GRAPE_JS")
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / GRAPE_JS
            if candidate.is_file():
                return candidate
    raise FileNotFoundError("grenache-grape not found: run `npm ci` (or `make setup`) in the project root")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> tuple[int, int]:
    """A (udp, tcp) pair of ports that are both free right now."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port + 1 if port < 65535 else port - 1))
            return port, (port + 1 if port < 65535 else port - 1)
        except OSError:
            continue
    return free_port(socket.SOCK_DGRAM), free_port()


@dataclass
class Grape:
    dht_port: int
    api_port: int
    bootstrap: list[str]
    dpa_ms: int = 120_000
    max_payload: int = 8192
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def command(self) -> list[str]:
        node = shutil.which("node") or "node"
        return [
            node, str(find_grape_js()),
            "--dp", str(self.dht_port),
            "--aph", str(self.api_port),
            "--bn", ",".join(self.bootstrap),
            "-b", self.host,
            "--dpa", str(self.dpa_ms),
            "--check_maxPayloadSize", str(self.max_payload),
        ]  # fmt: skip

    def start(self, log_path: Path | None = None) -> None:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        finally:
            if log_path:
                out.close()  # type: ignore[union-attr]

    def answers(self) -> bool:
        body = json.dumps({"rid": "ping", "data": "grenache:ping"}).encode()
        req = urllib.request.Request(f"{self.url}/lookup", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class GrapeNetwork:
    """N Grapes on loopback, each bootstrapped to all the others. A context manager."""

    def __init__(
        self,
        n: int = 2,
        *,
        dht_ports: list[int] | None = None,
        api_ports: list[int] | None = None,
        dpa_ms: int = 120_000,
        max_payload: int = 8192,
        log_dir: Path | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("need at least one Grape")
        if dht_ports is None or api_ports is None:
            pairs = [free_port_pair() for _ in range(n)]
            dht_ports = dht_ports or [p[0] for p in pairs]
            api_ports = api_ports or [p[1] for p in pairs]
        self.log_dir = log_dir
        dht = [f"127.0.0.1:{p}" for p in dht_ports]
        self.grapes = [
            Grape(dht_ports[i], api_ports[i], [d for d in dht if d != dht[i]], dpa_ms, max_payload)
            for i in range(n)
        ]

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.grapes]

    def start(self, timeout: float = 20.0) -> GrapeNetwork:
        try:
            for i, grape in enumerate(self.grapes):
                grape.start(self.log_dir / f"grape-{i}.log" if self.log_dir else None)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for grape in self.grapes:
            while not grape.answers():
                if grape.process is not None and grape.process.poll() is not None:
                    raise RuntimeError(f"grape on {grape.url} exited with {grape.process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"grape on {grape.url} did not answer within {timeout} s")
                time.sleep(0.05)

    def restart(self, index: int, timeout: float = 20.0) -> None:
        grape = self.grapes[index]
        grape.stop()
        grape.start(self.log_dir / f"grape-{index}.log" if self.log_dir else None)
        deadline = time.monotonic() + timeout
        while not grape.answers():
            if time.monotonic() > deadline:
                raise TimeoutError(f"grape on {grape.url} did not come back")
            time.sleep(0.05)

    def stop(self) -> None:
        for grape in self.grapes:
            grape.stop()

    def __enter__(self) -> GrapeNetwork:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
