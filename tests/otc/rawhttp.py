"""Hand-built HTTP/1.1 requests over raw sockets: every header is exactly what the test says (urllib and
http.client add or fix some), so attacks on the control API arrive as an attacker would send them."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        try:
            value = self.json().get("error")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None


def parse(raw: bytes) -> Reply:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)


def read_all(sock: socket.socket) -> bytes:
    raw = b""
    try:
        while chunk := sock.recv(65536):
            raw += chunk
    except ConnectionResetError:
        pass  # the server closed after its answer, with our unread bytes: the answer came first
    return raw


def exchange(port: int, data: bytes, timeout: float = 10) -> Reply:
    """Send ``data`` on a new connection and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return parse(read_all(sock))


def build(
    method: str,
    path: str,
    port: int,
    *,
    token: str | None = None,
    headers: dict[str, str | None] | None = None,
    body: bytes = b"",
) -> bytes:
    """A request to the API on ``port``; ``headers`` add to or (with None) remove the defaults (Host,
    Connection: close, Authorization when a token is given, Content-Length when there is a body)."""
    all_headers: dict[str, str | None] = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if body:
        all_headers["Content-Length"] = str(len(body))
    all_headers.update(headers or {})
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in all_headers.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(method: str, path: str, port: int, **options: Any) -> Reply:
    """``build`` (same options), sent on a new connection; the answer."""
    return exchange(port, build(method, path, port, **options))
