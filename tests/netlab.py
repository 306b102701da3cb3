"""A small network of test hosts on this machine: Linux network namespaces joined by veth links.

Topology: a "switch" namespace holds one bridge per group of hosts; the bridges are joined by a veth pair
(the trunk). Each host namespace has one interface on its group's bridge, with an address in a private
subnet that exists only inside these namespaces (nothing is routed to or from the machine's own network).
``partition()`` takes the trunk down: hosts of one group still reach each other, never the other group;
``heal()`` brings it back.

Processes run inside a host with ``ip netns exec``; the test talks to a peer's control API (bound to
127.0.0.1 inside its host, as always) through a socket opened inside that namespace by a short-lived
thread that joins it with ``setns(2)`` (a namespace change applies to the calling thread only).
Everything is removed at ``close()``: processes first (by their Popen handles), then the namespaces.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from grenache.grapes import Grape
from otc.launch import APIError, PeerProcess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def require_netns() -> None:
    """Skip, saying why, where namespaces cannot be made (CI and the development machines run as root)."""
    if os.geteuid() != 0:
        pytest.skip("network-namespace tests need root (ip netns add); CI runs them as root")
    if shutil.which("ip") is None:
        pytest.skip("network-namespace tests need iproute2's `ip`")


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(("-n", ns) if ns else ()), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def ns_connect(ns: str, host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP socket connected to ``host:port`` as seen from inside namespace ``ns``."""
    result: dict[str, Any] = {}

    def inside() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
            finally:
                os.close(fd)
            result["sock"] = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=inside, name=f"netns {ns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


class _NsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self) -> None:
        self.sock = ns_connect(self.ns, self.host, self.port, self.timeout or 10.0)


def ns_http(ns: str, port: int, method: str, path: str, body: Any = None, timeout: float = 30.0,
            host: str = "127.0.0.1", token: str | None = None) -> Any:  # fmt: skip
    """An HTTP request to ``host:port`` inside namespace ``ns``; JSON in and out (``token``: a peer's
    control-API token)."""
    conn = _NsHTTPConnection(ns, host, port, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.status >= 400:
        raise APIError(resp.status, json.loads(raw or b"{}"))
    return json.loads(raw or b"null")


class NsGrape(Grape):
    """A Grape inside a host namespace, its HTTP API bound to the host's address."""

    ns: str = ""

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().command()]

    def answers(self) -> bool:
        try:
            ping = {"rid": "ping", "data": "grenache:ping"}
            ns_http(self.ns, self.api_port, "POST", "/lookup", ping, 1.0, host=self.host)
            return True
        except (OSError, APIError, json.JSONDecodeError, http.client.HTTPException):
            return False


class NsPeer(PeerProcess):
    """An ``otc peer`` process inside a host namespace, listening on the host's address."""

    def __init__(
        self, host: Host, name: str, data_dir: Path | None = None, log_dir: Path | None = None
    ) -> None:
        super().__init__(host.grape.url, name, data_dir=data_dir, log_dir=log_dir, api_port=host.free_port())
        self.host = host

    def launch(self) -> None:
        cmd = [sys.executable, "-m", "otc.cli", "peer", "--grape", self.grape, "--name", self.name,
               "--api-port", str(self.api_port), "--log-level", "warning",
               "--bind", self.host.addr]  # fmt: skip
        cmd += ["--data-dir", str(self.data_dir)]
        self._token = None  # a new one at every start
        log = open(self.log_dir / f"{self.name}.log", "ab") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.host.ns, *cmd], stdout=log,
                                         stderr=subprocess.STDOUT, env=os.environ.copy())  # fmt: skip
        finally:
            if self.log_dir:
                log.close()  # type: ignore[union-attr]

    def get(self, path: str, timeout: float = 30) -> Any:
        return ns_http(self.host.ns, self.api_port, "GET", path, timeout=timeout, token=self.token)

    def post(self, path: str, body: Any) -> Any:
        return ns_http(self.host.ns, self.api_port, "POST", path, body, token=self.token)

    def delete(self, path: str) -> Any:
        return ns_http(self.host.ns, self.api_port, "DELETE", path, token=self.token)


@dataclass
class Host:
    ns: str
    addr: str
    group: int
    grape: NsGrape = field(init=False)
    _ports: int = 20_000

    def free_port(self) -> int:
        # each host is a namespace of its own: its ports are all free, so a counter will do
        self._ports += 2
        return self._ports


class Lab:
    """``groups`` lists how many hosts each group has: ``Lab([2, 2])`` is two groups of two."""

    def __init__(self, groups: list[int], log_dir: Path) -> None:
        require_netns()
        self.tag = f"{os.getpid() % 100_000:05d}"
        self.switch = f"otcsw{self.tag}"
        self.log_dir = log_dir
        self.hosts: list[Host] = []
        self.peers: list[NsPeer] = []
        self._namespaces: list[str] = []
        self.subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
        try:
            self._build(groups)
        except BaseException:
            self.close()
            raise

    def _add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("link", "set", "lo", "up", ns=name)

    def _build(self, groups: list[int]) -> None:
        self._add_ns(self.switch)
        for g in range(len(groups)):
            ip("link", "add", f"br{g}", "type", "bridge", ns=self.switch)
            ip("link", "set", f"br{g}", "up", ns=self.switch)
        # the trunk: bridge 0 <-> every other bridge (partition() cuts them all)
        for g in range(1, len(groups)):
            ip("link", "add", f"tr0-{g}", "type", "veth", "peer", "name", f"tr{g}-0", ns=self.switch)
            for end, bridge in ((f"tr0-{g}", "br0"), (f"tr{g}-0", f"br{g}")):
                ip("link", "set", end, "master", bridge, ns=self.switch)
                ip("link", "set", end, "up", ns=self.switch)
        n = 0
        for g, count in enumerate(groups):
            for _ in range(count):
                n += 1
                name = f"otch{n}{self.tag}"
                self._add_ns(name)
                addr = f"{self.subnet}.{n}"
                # the veth is made in the host namespace and its far end moved into the switch
                ip("link", "add", "eth0", "type", "veth", "peer", "name", f"sw{n}", ns=name)
                ip("link", "set", f"sw{n}", "netns", self.switch, ns=name)
                ip("addr", "add", f"{addr}/24", "dev", "eth0", ns=name)
                ip("link", "set", "eth0", "up", ns=name)
                ip("link", "set", f"sw{n}", "master", f"br{g}", ns=self.switch)
                ip("link", "set", f"sw{n}", "up", ns=self.switch)
                self.hosts.append(Host(name, addr, g))
        dht = [f"{h.addr}:20001" for h in self.hosts]
        for i, h in enumerate(self.hosts):
            grape = NsGrape(20001, 20002, [d for d in dht if d != dht[i]], host=h.addr)
            grape.ns = h.ns
            h.grape = grape
            grape.start(self.log_dir / f"grape-{h.ns}.log")
        for h in self.hosts:
            self._wait_grape(h.grape)

    @staticmethod
    def _wait_grape(grape: NsGrape, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not grape.answers():
            if grape.process is not None and grape.process.poll() is not None:
                raise RuntimeError(f"grape in {grape.ns} exited with {grape.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"grape in {grape.ns} did not answer within {timeout} s")
            time.sleep(0.05)

    def peer(self, host: int, name: str, data_dir: Path | None = None) -> NsPeer:
        peer = NsPeer(self.hosts[host], name, data_dir=data_dir, log_dir=self.log_dir)
        self.peers.append(peer)
        return peer

    def partition(self) -> None:
        for g in range(1, len({h.group for h in self.hosts})):
            ip("link", "set", f"tr0-{g}", "down", ns=self.switch)

    def heal(self) -> None:
        for g in range(1, len({h.group for h in self.hosts})):
            ip("link", "set", f"tr0-{g}", "up", ns=self.switch)

    def close(self) -> None:
        for peer in self.peers:
            peer.kill()
        for h in self.hosts:
            if hasattr(h, "grape"):
                h.grape.kill()
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
