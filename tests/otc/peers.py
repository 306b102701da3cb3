"""Helpers for tests that talk to real peers in ways the API does not: hand-built RPC messages on a
peer's own key (what a stranger on the network can send), and the key of a peer started with a data
directory (to sign as it)."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from otc.core.identity import Identity
from otc.core.messages import TradeRefusal
from otc.core.signing import is_signed

from ..harness import PeerProcess, http

UNVERIFIED = ssl._create_unverified_context()


def rpc(
    peer: PeerProcess, message: Any, key: str | None = None, timeout: float = 10
) -> tuple[str | None, Any]:
    """Send one Grenache RPC request straight to a peer's RPC port: (error or None, result)."""
    port = peer.get("/api/health")["rpc_port"]
    payload = msgspec.to_builtins(message) if isinstance(message, msgspec.Struct) else message
    body = json.dumps(["test-rid", key or f"otc:peer:{peer.peer_id}", payload]).encode()
    # peers speak TLS on their RPC port (node/tls.py); a hand-built message checks no identity
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}/", data=body, method="POST", headers={"grc-compress": "none"}
    )
    with urllib.request.urlopen(req, timeout=timeout, context=UNVERIFIED) as resp:
        _, err, result = json.loads(resp.read())
    return err, result


def api(peer: PeerProcess, method: str, path: str, body: Any = None) -> Any:
    """A control-API call with the peer's token, for the methods ``PeerProcess`` has no helper for."""
    return http(method, peer.url + path, body, token=peer.token)


def code(err: str | None) -> str | None:
    return None if err is None else err.split(":")[0]


def outcome(err: str | None, result: Any) -> str:
    """What a maker answered a take or confirm: an RPC error's code, the code of its refusal (checked to
    be signed by the maker: refusals are signed results, see core/desk.py), or the reply's status."""
    if err is not None:
        return err.split(":")[0]
    if isinstance(result, dict) and result.get("type") == "refusal":
        refusal = msgspec.convert(result, TradeRefusal)
        assert is_signed(refusal), "an unsigned refusal"
        return refusal.code
    return str(result["status"])


def identity_of(data_dir: Path) -> Identity:
    return Identity.from_seed((data_dir / "identity.key").read_bytes())
