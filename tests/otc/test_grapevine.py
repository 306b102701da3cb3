"""An otc peer and the Grapevine chat (the Node original, on grenache-nodejs-ws): a Node Grapevine client
reaches an `otc peer --grapevine` by its name, and its messages arrive in the inbox marked unsigned
and unverified; `otc chat send --grapevine` reaches a Node Grapevine server by name. Signed chat stays
the default between otc peers."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

from grenache.grapes import GrapeNetwork, free_port

from ..grenache.nodeproc import NODE, NODE_DIR, need_node, stop, wait_line
from ..grenache.nodeproc import spawn as start_node
from ..harness import APIError, PeerProcess, wait_for

need_node("grenache-nodejs-ws-1", "grenache-nodejs-ws")

Spawn = Callable[..., PeerProcess]


def test_a_node_grapevine_client_reaches_an_otc_peer_by_name(spawn: Spawn, grapes: GrapeNetwork) -> None:
    name = f"gv{uuid.uuid4().hex[:8]}"
    alice = spawn(name, args=("--grapevine",))
    for pkg in ("grenache-nodejs-ws", "grenache-nodejs-ws-1"):  # 0.7.10 and 1.0.0
        env = os.environ | {"GRENACHE_GRAPE": grapes.urls[1], "GRENACHE_WS_PKG": pkg}
        client = [str(NODE), str(NODE_DIR / "grapevine_client.js")]
        line = f"hello from node ({pkg})"
        out = subprocess.run(
            client, input=f"{name}\n{line}\n", capture_output=True, text=True, timeout=30, env=env, check=True
        ).stdout
        assert f"Response from {name}: Echo: {line}" in out, out
    inbox = alice.get("/api/messages")
    assert [(m["text"], m["via"], m["verified"], m["direction"]) for m in inbox] == [
        ("hello from node (grenache-nodejs-ws)", "grapevine", False, "in"),
        ("hello from node (grenache-nodejs-ws-1)", "grapevine", False, "in"),
    ]
    assert all(m["sender"].startswith("127.0.0.1:") for m in inbox)  # an address, never an identity


def test_otc_chat_send_reaches_a_node_grapevine_server(spawn: Spawn, grapes: GrapeNetwork) -> None:
    alice = spawn("alice")
    name, port = f"client-{uuid.uuid4().hex[:8]}", free_port()
    server = start_node(
        str(NODE),
        str(NODE_DIR / "grapevine_server.js"),
        name,
        str(port),
        env={"GRENACHE_GRAPE": grapes.urls[0]},
    )
    try:
        assert wait_line(server, "Grapevine server").startswith(f"Grapevine server {name}")
        sent = wait_for(lambda: ask(alice, name), 20, 0.2, "the Grapevine server to be announced")
        assert (sent["via"], sent["verified"], sent["to"], sent["reply"]) == (
            "grapevine", False, name, "Echo: quote for 5 BTC?",
        )  # fmt: skip
        assert wait_line(server, f"{name} received") == f"{name} received: quote for 5 BTC?"
    finally:
        stop(server)
    assert [(m["direction"], m["via"], m["to"]) for m in alice.get("/api/messages")] == [
        ("out", "grapevine", name)
    ]


def ask(peer: PeerProcess, name: str) -> Any:
    try:
        return peer.post("/api/messages", {"to": name, "text": "quote for 5 BTC?", "via": "grapevine"})
    except APIError as exc:
        if exc.code == "ERR_PEER_NOT_FOUND":  # not announced yet
            return None
        raise
