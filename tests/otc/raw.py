"""An attacker's toolkit built from nothing of ours: Ed25519 with PyNaCl, JSON by hand, hashes with
hashlib, Grenache RPC as raw HTTP over TLS (peers speak it), Grape announces and lookups as raw HTTP.
What a stranger on the DHT can do without running (or importing) the project's peer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import threading
import urllib.request
from typing import Any

from nacl.signing import SigningKey

OFFER_DOMAIN = b"grenache-otc/1 offer\n"
HEAD_DOMAIN = b"grenache-otc/1 head\n"
OFFER_FIELDS = (
    "id", "created_seq", "maker", "maker_name", "side", "pair", "price", "amount", "remaining", "reserved",
    "min_fill", "created_at", "expires_at", "status", "seq", "sig",
)  # fmt: skip
HEAD_FIELDS = ("maker", "name", "addr", "head", "count", "digest", "ts", "sig")


def compact(fields: dict[str, Any], order: tuple[str, ...]) -> bytes:
    """JSON with the fields in declaration order and no spaces: the bytes a peer signs and hashes."""
    return json.dumps({k: fields[k] for k in order}, separators=(",", ":")).encode()


class RawMaker:
    """A maker key and the offers and heads it signs, any way it likes (including twice per seq)."""

    def __init__(self, seed: bytes, name: str = "mallory") -> None:
        self.key = SigningKey(seed)
        self.id = bytes(self.key.verify_key).hex()
        self.name = name

    def sign(self, domain: bytes, fields: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
        unsigned = dict(fields, sig="")
        return dict(fields, sig=self.key.sign(domain + compact(unsigned, order)).signature.hex())

    def offer(
        self, seq: int, price: str, now: int, *, amount: str = "1", side: str = "sell"
    ) -> dict[str, Any]:
        oid = hashlib.blake2b(f"{self.id}:{seq}".encode(), digest_size=16).hexdigest()
        fields = {
            "id": oid, "created_seq": seq, "maker": self.id, "maker_name": self.name, "side": side,
            "pair": "BTC/USD", "price": price, "amount": amount, "remaining": amount, "reserved": "0",
            "min_fill": None, "created_at": now, "expires_at": None, "status": "open", "seq": seq,
        }  # fmt: skip
        return self.sign(OFFER_DOMAIN, fields, OFFER_FIELDS)

    def head(
        self, seq: int, offers: list[dict[str, Any]], now: int, addr: str = "127.0.0.1:9"
    ) -> dict[str, Any]:
        hashes = sorted(hashlib.sha256(compact(o, OFFER_FIELDS)).digest() for o in offers)
        digest = hashlib.sha256(b"".join(hashes)).hexdigest()[:32]
        fields = {
            "maker": self.id, "name": self.name, "addr": addr, "head": seq, "count": len(offers),
            "digest": digest, "ts": now,
        }  # fmt: skip
        return self.sign(HEAD_DOMAIN, fields, HEAD_FIELDS)


# Peers speak TLS (node/tls.py); a stranger need not check who answers to attack it.
_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE


def rpc(addr: str, key: str, payload: Any, timeout: float = 10.0) -> tuple[Any, Any]:
    """One Grenache RPC as raw HTTP: ``(error, result)``."""
    body = json.dumps(["raw-rid", key, payload]).encode()
    req = urllib.request.Request(f"https://{addr}/", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=timeout, context=_TLS) as resp:
        _, err, result = json.loads(resp.read())
    return err, result


def rpc_size(addr: str, key: str, payload: Any, timeout: float = 30.0) -> tuple[int, Any, Any]:
    """Like ``rpc``, with the size of the reply body in bytes."""
    body = json.dumps(["raw-rid", key, payload]).encode()
    req = urllib.request.Request(f"https://{addr}/", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=timeout, context=_TLS) as resp:
        raw = resp.read()
    _, err, result = json.loads(raw)
    return len(raw), err, result


def grape(url: str, kind: str, data: Any) -> Any:
    body = json.dumps({"rid": "raw", "data": data}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(f"{url}/{kind}", data=body, method="POST"), timeout=5
    ) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


class SilentListeners:
    """Ports that accept connections and read whatever comes, and never answer: strangers announced on
    ``otc:market``. Announced (and re-announced) raw on the given Grapes until closed."""

    def __init__(self, count: int, grapes: list[str]) -> None:
        self.socks = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(128)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.grapes = grapes
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self.socks]
        self._threads.append(threading.Thread(target=self._announce, daemon=True))
        for t in self._threads:
            t.start()

    def _accept(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.setblocking(False)
            self._held.append(conn)  # kept open, never read from, never answered

    def _announce(self) -> None:
        while not self._stop.is_set():
            for url in self.grapes:
                for port in self.ports:
                    with contextlib.suppress(OSError):
                        grape(url, "announce", ["otc:market", port])
            self._stop.wait(5)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in self.socks + self._held:
            s.close()
