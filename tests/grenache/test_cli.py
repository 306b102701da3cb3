"""The `grenache` command line against real Grapes it starts itself, and a real RPC server."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from grenache.grapes import Grape
from otc.launch import wait_for

ROOT = Path(__file__).resolve().parents[2]


def grenache(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grenache.cli", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def consecutive_free_ports(n: int, kind: int) -> int:
    """A port p such that p .. p+n-1 are all free on loopback right now. Drawn below the kernel's
    ephemeral range (32768+), where outgoing connections of a busy machine take most ports."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(10_000, 32_000)
        socks = []
        try:
            for port in range(base, base + n):
                sock = socket.socket(socket.AF_INET, kind)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no run of free ports found")


@pytest.fixture(scope="module")
def cli_grapes() -> Iterator[str]:
    """`grenache grapes up 2` as a real process; yields the first Grape's URL."""
    dht, api = consecutive_free_ports(2, socket.SOCK_DGRAM), consecutive_free_ports(2, socket.SOCK_STREAM)
    cmd = [sys.executable, "-m", "grenache.cli", "grapes", "up", "2"]
    cmd += ["--dht-port", str(dht), "--api-port", str(api)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("ready"):
            break
    urls = [line.split()[2] for line in lines if line.startswith("grape")]
    try:
        assert len(urls) == 2, lines
        yield urls[0]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        ports = [int(u.rsplit(":", 1)[1]) for u in urls]
        assert not any(Grape(0, p, []).answers() for p in ports), "grapes still answering after Ctrl-C"


def test_announce_lookup_put_get(cli_grapes: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    announced = grenache("announce", name, "4567", "--grape", cli_grapes)
    assert announced.returncode == 0, announced
    assert announced.stdout.startswith(f"announced {name!r} on port 4567 through {cli_grapes}: 1 other Grape")
    assert "nothing listens on 127.0.0.1:4567" in announced.stderr
    found = grenache("lookup", name, "--grape", cli_grapes)
    assert found.stdout.split() == ["127.0.0.1:4567"], found
    missing = grenache("lookup", f"nothing-{uuid.uuid4().hex}", "--grape", cli_grapes)
    assert missing.returncode == 1 and "ERR_GRAPE_LOOKUP_EMPTY" in missing.stderr
    key = grenache("put", "hello world", "--grape", cli_grapes).stdout.strip()
    assert key == "6d33adc2b6b2c14c3036feefb7fedbca1a880527"  # sha1("11:hello world"), as Node computes
    item = json.loads(grenache("get", key, "--grape", cli_grapes).stdout)
    assert item["v"] == "hello world"
    assert item["hash"] == key and "id" not in item  # the id it shows is the one `put` printed
    assert len(item["node"]) == 40 and item["node"] != key  # the DHT node that answered, said as such
    assert grenache("get", "0" * 40, "--grape", cli_grapes).returncode == 1
    bad = grenache("announce", name, "99999", "--grape", cli_grapes)
    assert bad.returncode == 2  # usage error: not a port


def test_request_and_map_reach_a_real_server(cli_grapes: str) -> None:
    key = f"cli-rpc-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(["node", str(ROOT / "tests" / "node" / "server.js"), cli_grapes, key],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("READY")
        reply = wait_for(lambda: grenache("request", key, '{"x": 1}', "--grape", cli_grapes).stdout, 20)
        assert json.loads(reply) == {"from": "node", "got": {"x": 1}}
        mapped = json.loads(grenache("map", key, '{"y": 2}', "--grape", cli_grapes).stdout)
        assert mapped == [{"from": "node", "got": {"y": 2}}]
        failed = json.loads(grenache("map", key, '{"fail": true}', "--grape", cli_grapes).stdout)
        assert failed[0]["error"] == "ERR_NODE_FAIL"
        assert grenache("request", key, "{not json", "--grape", cli_grapes).returncode == 2
    finally:
        server.kill()
        server.wait()


def test_grape_address_forms(cli_grapes: str) -> None:
    """``--grape 127.0.0.1:30001`` (no scheme) works; a malformed one is refused in a sentence."""
    name = f"cli-bare-{uuid.uuid4().hex[:8]}"
    bare = cli_grapes.removeprefix("http://")
    assert grenache("announce", name, "4568", "--grape", bare).returncode == 0
    assert grenache("lookup", name, "--grape", bare).stdout.split() == ["127.0.0.1:4568"]
    for bad in ("http:/127.0.0.1", "127.0.0.1", "ftp://127.0.0.1:1", "http://127.0.0.1:notaport"):
        out = grenache("lookup", name, "--grape", bad)
        assert out.returncode == 2, out
        assert "is not a Grape API address" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_serve_request_map_over_each_transport(cli_grapes: str, transport: str) -> None:
    key = f"cli-serve-{transport}-{uuid.uuid4().hex[:8]}"
    args = ["--transport", transport, "--grape", cli_grapes]
    echo = subprocess.Popen([sys.executable, "-m", "grenache.cli", "serve", key, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    reply = ["--reply", '{"fixed": 1}']
    fixed = subprocess.Popen([sys.executable, "-m", "grenache.cli", "serve", key, *reply, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        for proc in (echo, fixed):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith(f"serving {key} on 127.0.0.1:") and f"over {transport}" in line, line
        wait_for(lambda: len(grenache("lookup", key, "--grape", cli_grapes).stdout.split()) == 2, 20)
        mapped = json.loads(grenache("map", key, '{"x": [1, 2]}', *args).stdout)
        assert sorted(mapped, key=json.dumps) == [{"fixed": 1}, {"x": [1, 2]}]
        assert json.loads(grenache("request", key, '{"y": 1}', *args).stdout) in ({"y": 1}, {"fixed": 1})
        other = "ws" if transport == "http" else "http"
        wrong = grenache("request", key, "1", "--transport", other, "--timeout", "3", "--grape", cli_grapes)
        assert wrong.returncode == 1 and "Error: ERR_" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        for proc in (echo, fixed):
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
            if proc.stdout is not None:
                proc.stdout.close()


def test_grapes_up_on_ports_that_are_taken_says_so(cli_grapes: str) -> None:
    """A second `grenache grapes up` on the same ports: an error naming the port, never "ready"."""
    api = int(cli_grapes.rsplit(":", 1)[1])
    dht = consecutive_free_ports(2, socket.SOCK_DGRAM)
    out = grenache("grapes", "up", "2", "--api-port", str(api), "--dht-port", str(dht))
    assert out.returncode == 1, out
    assert "ready" not in out.stdout and "Traceback" not in out.stderr
    assert f"port {api} (API, TCP) of grape 1 is already in use" in out.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", dht + 1))
        api2 = consecutive_free_ports(2, socket.SOCK_STREAM)
        out = grenache("grapes", "up", "2", "--api-port", str(api2), "--dht-port", str(dht))
    assert out.returncode == 1 and f"port {dht + 1} (DHT, UDP) of grape 2 is already in use" in out.stderr
