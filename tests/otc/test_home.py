"""A default home per peer, and an `otc` that finds a running peer and its token by itself (issue 13 item 2,
issue 8 item 1): real `otc peer` processes on real Grapes, the CLI run as a subprocess. The session's
XDG_DATA_HOME and XDG_RUNTIME_DIR are temporary directories (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from grenache.grapes import GrapeNetwork
from otc import home

from ..harness import PeerProcess

Spawn = Callable[..., PeerProcess]


def otc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "OTC_AS", "OTC_TOKEN", "COLUMNS")}
    return subprocess.run([sys.executable, "-m", "otc.cli", *args], capture_output=True, text=True,
                          env=base | (env or {}), timeout=60, check=False)  # fmt: skip


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = otc(*args, env=env)
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout


def as_json(*args: str, env: dict[str, str] | None = None) -> Any:
    return msgspec.json.decode(ok(*args, env=env))


def test_a_peer_keeps_its_home_across_restarts_unless_ephemeral(spawn: Spawn) -> None:
    data = Path(os.environ["XDG_DATA_HOME"]) / "otc" / "homer"
    first = spawn("homer", home=True)
    assert first.data_dir == data and data.is_dir()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "identity.key").exists() and (data / "api.token").exists()
    offer = first.offer("sell", "1", "8000")
    first.stop()
    again = spawn("homer", home=True)
    assert again.peer_id == first.peer_id  # the same identity
    assert [o["id"] for o in again.get("/api/offers")] == [offer["id"]]  # and its offers
    again.stop()

    eve1 = spawn("eve", ephemeral=True)
    eve_dir = eve1.data_dir
    assert eve_dir.is_dir() and not (Path(os.environ["XDG_DATA_HOME"]) / "otc" / "eve").exists()
    eve1.stop()
    assert not eve_dir.exists()  # nothing kept
    eve2 = spawn("eve", ephemeral=True)
    assert eve2.peer_id != eve1.peer_id

    # the ready line says where the data and the token are, and how to use them
    log = (Path(eve2.log_dir or ".") / "homer.log").read_text()
    assert f"data in {data}; API token in {data / 'api.token'}; use it with: otc --as homer book" in log

    # options that cannot go together, names that cannot name a directory: usage errors, nothing made
    result = otc("peer", "--name", "x", "--ephemeral", "--data-dir", str(data))
    assert result.returncode == 2 and "--ephemeral" in result.stderr
    result = otc("peer", "--name", "../evil")
    assert result.returncode == 2 and "--data-dir or --ephemeral" in result.stderr
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "evil").exists()


def test_otc_finds_a_running_peer_and_its_token_by_name_or_api(spawn: Spawn, tmp_path: Path) -> None:
    alice, bob = spawn("alice", home=True), spawn("bob")
    alice.offer("sell", "1", "8000")

    book = alice.book()
    for args, env in [
        (("--as", "alice", "--json", "book"), None),
        (("book", "--as", "alice", "--json"), None),
        (("--json", "book", "--as", "ALICE"), None),  # names case-insensitively when unambiguous
        (("book", "--json"), {"OTC_AS": "alice"}),
        (("--api", alice.url, "book", "--json"), None),  # the token of the local peer serving that API
        (("book", "--json"), {"OTC_API": alice.url}),
        (("--as", "bob", "book", "--api", alice.url, "--json"), None),  # after the command wins
    ]:
        assert as_json(*args, env=env) == book, args
    assert [r["maker_name"] for r in as_json("--as", "bob", "--json", "book")["asks"]] in ([], ["alice"])

    # without the local records (another user, another machine): the token must be given
    elsewhere = {"XDG_RUNTIME_DIR": str(tmp_path / "empty"), "XDG_DATA_HOME": str(tmp_path / "empty")}
    result = otc("--api", alice.url, "book", env=elsewhere)
    assert result.returncode == 1 and result.stderr.startswith("ERR_UNAUTHORIZED: ")
    assert "--token" in result.stderr and "OTC_TOKEN" in result.stderr
    assert as_json("--api", alice.url, "--token", alice.token, "--json", "book", env=elsewhere) == book
    assert as_json("--api", alice.url, "book", "--json", env=elsewhere | {"OTC_TOKEN": alice.token}) == book
    assert as_json("book", "--token", alice.token, "--json", env=elsewhere | {"OTC_API": alice.url}) == book
    result = otc("--api", alice.url, "--token", bob.token, "book")
    assert result.returncode == 1 and result.stderr.startswith("ERR_UNAUTHORIZED: ")

    # what cannot be resolved is a usage error that says what is running
    result = otc("--as", "nobody", "book")
    assert result.returncode == 2 and "no otc peer named 'nobody' is running" in result.stderr
    assert "alice" in result.stderr and "bob" in result.stderr and "Traceback" not in result.stderr
    result = otc("book")
    assert result.returncode == 2 and "peers run here" in result.stderr and "--as NAME" in result.stderr
    result = otc("--as", "alice", "--api", alice.url, "book")
    assert result.returncode == 2 and "give one of them" in result.stderr
    twin = spawn("alice")  # a second alice (elsewhere): a name is no longer enough
    result = otc("--as", "alice", "book")
    assert result.returncode == 2 and "2 peers named 'alice'" in result.stderr and twin.url in result.stderr
    twin.stop()
    bob.stop()
    assert as_json("--json", "book") == book  # the only peer running is the default


def test_otc_peers_local_lists_the_running_peers(spawn: Spawn, grapes: GrapeNetwork) -> None:
    alice, bob = spawn("alice", home=True), spawn("bob")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"]) / "otc"
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    # a record left by a killed peer: its process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = runtime / f"{dead.pid}.json"
    ghost.write_text(json.dumps({"name": "ghost", "peer_id": "0" * 64, "api": "http://127.0.0.1:1",
                                 "pid": dead.pid, "data_dir": "/nonexistent", "started": 1}))  # fmt: skip

    listed = as_json("peers", "--local", "--json")
    assert [(r["name"], r["peer_id"], r["api"], r["pid"]) for r in listed] == [
        ("alice", alice.peer_id, alice.url, alice.pid), ("bob", bob.peer_id, bob.url, bob.pid),
    ]  # fmt: skip
    assert listed[0]["data_dir"] == str(alice.data_dir)
    assert not ghost.exists()  # a dead peer's record is deleted when seen
    table = ok("peers", "--local")
    assert "2 peers running on this machine" in table and alice.url in table and bob.peer_id[:16] in table

    bob.stop()  # a clean stop removes its record
    assert [r["name"] for r in as_json("--json", "peers", "--local")] == ["alice"]
    alice.stop()
    assert "(none: start one with otc peer --name NAME)" in ok("peers", "--local")


def test_records_in_a_directory_others_may_write_are_not_trusted(spawn: Spawn, tmp_path: Path) -> None:
    """A planted record could send a peer's token to another listener: the CLI trusts records only in
    a directory of its own user that no one else may write to."""
    alice = spawn("alice")
    shared = tmp_path / "shared"
    runtime = shared / "otc"
    runtime.mkdir(parents=True)
    thief = socket.create_server(("127.0.0.1", 0))
    thief_url = f"http://127.0.0.1:{thief.getsockname()[1]}"
    record = {"name": "alice", "peer_id": alice.peer_id, "api": thief_url, "pid": alice.pid,
              "data_dir": str(alice.data_dir), "started": 0}  # fmt: skip
    (runtime / f"{alice.pid}.json").write_text(json.dumps(record))
    runtime.chmod(0o777)
    received: list[bytes] = []

    def listen() -> None:
        thief.settimeout(20)
        try:
            conn, _ = thief.accept()
        except TimeoutError:
            return
        with conn:
            received.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        result = otc("--api", thief_url, "book", env={"XDG_RUNTIME_DIR": str(shared)})
    finally:
        listener.join()
        thief.close()
    assert result.returncode == 2
    assert received and b"GET /api/book" in received[0]
    assert b"authorization" not in received[0].lower() and alice.token.encode() not in received[0]
    result = otc("--as", "alice", "book", env={"XDG_RUNTIME_DIR": str(shared)})
    assert result.returncode == 2 and "no otc peer named 'alice'" in result.stderr
    assert home.running() and all(r.api != thief_url for r in home.running())
