"""The event stream's contract, in-process (no network): what the web desk relies on.

``api.events.stream`` runs against a stand-in peer (the parts the stream touches: its listeners, its
book's live peers, its directory) and records what it sends.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import msgspec

from otc.api import events
from otc.core.messages import Chat, Receipt
from otc.node.events import Listeners

ME, ALICE = "f" * 64, "a" * 64
RECEIPT = Receipt(
    id="1" * 32, offer_id="2" * 32, maker=ME, maker_name="me", taker=ALICE, taker_name="alice",
    side="sell", pair="BTC/USD", price="8000", amount="1", created_at=1, maker_sig="", taker_sig="",
)  # fmt: skip
MESSAGE = Chat(id="3" * 32, sender=ALICE, sender_name="alice", to=ME, text="hi", ts=1)


class Peers(msgspec.Struct):
    id: str
    name: str
    alive: bool
    in_sync: bool = True
    reachable: bool = True
    listed: bool = True


class Views:
    def __init__(self) -> None:
        self.peers = [Peers("a" * 64, "alice", True)]

    def offer_view(self, offer: Any) -> Any:
        return {"id": offer, "seq": 1, "status": "open"}

    def receipt_view(self, receipt: Any) -> Any:
        return {"id": receipt.id, "role": "maker"}

    def message_view(self, direction: str, msg: Any, received_at: int) -> Any:
        return {"id": msg.id, "direction": direction, "received_at": received_at}

    def peers_view(self) -> list[Any]:
        return list(self.peers)


def stand_in() -> Any:
    return SimpleNamespace(
        peer_id=ME,
        events=Listeners(),
        grape=SimpleNamespace(ok=True),
        book=SimpleNamespace(peers=lambda now: [1, 2]),
    )


def decode(chunks: list[bytes]) -> list[dict[str, Any]]:
    text = b"".join(chunks).decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def run_stream(peer: Any, views: Views, during: Any, seconds: float = 0.3) -> list[dict[str, Any]]:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    task = asyncio.ensure_future(events.stream(peer, views).run(send))
    await asyncio.sleep(0)  # subscribed
    await during()
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert peer.events.callbacks == []  # unsubscribed when the client goes
    return decode(sent)


async def test_status_first_then_full_payloads_in_order() -> None:
    peer, views = stand_in(), Views()

    async def during() -> None:
        peer.events.emit({"type": "offer", "offer": "o1"})
        peer.events.emit({"type": "trade", "receipt": RECEIPT})
        peer.events.emit({"type": "message", "message": MESSAGE, "direction": "out", "received_at": 5})
        peer.events.emit({"type": "book"})

    got = await run_stream(peer, views, during)
    assert got[0]["type"] == "status" and got[0]["peers"] == 2 and got[0]["market"] is True
    assert isinstance(got[0]["now"], int)
    kinds = [e["type"] for e in got[1:]]
    assert kinds == ["peers", "offer", "trade", "message", "book"]  # the peers as they are, at once
    assert got[1]["peers"][0]["name"] == "alice"
    assert got[2] == {"type": "offer", "id": "o1", "seq": 1, "status": "open"}
    # notifications carry what node.notify makes of them (otc watch and webhooks read "data")
    assert (
        got[3]["id"] == RECEIPT.id and got[3]["data"]["role"] == "maker" and got[3]["data"]["amount"] == "1"
    )
    message = got[4]
    assert (message["id"], message["direction"], message["received_at"]) == (MESSAGE.id, "out", 5)
    assert message["data"]["text"] == "hi" and "data" not in got[2]  # an offer is not a notification


async def test_peers_are_sent_when_they_change_not_on_every_check() -> None:
    peer, views = stand_in(), Views()

    async def during() -> None:
        await asyncio.sleep(0.05)
        views.peers = [Peers("a" * 64, "alice", False)]  # alice falls silent

    got = await run_stream(peer, views, during, seconds=events.API_EVENT_PEERS_CHECK_S * 2.5)
    changes = [e["peers"][0]["alive"] for e in got if e["type"] == "peers"]
    assert changes == [True, False]


async def test_a_subscriber_that_falls_behind_is_told_to_resync_and_nothing_is_silently_lost() -> None:
    peer, views = stand_in(), Views()

    async def during() -> None:
        for i in range(events.QUEUE + 500):  # all at once: the stream has no turn to send any
            peer.events.emit({"type": "offer", "offer": f"o{i}"})
        await asyncio.sleep(0.05)
        peer.events.emit({"type": "offer", "offer": "after"})  # once it caught up, events flow again

    got = await run_stream(peer, views, during)
    kinds = [e["type"] for e in got if e["type"] not in ("status", "peers")]
    assert kinds == ["resync", "offer"], kinds[:5]
    assert next(e for e in got if e["type"] == "offer")["id"] == "after"


async def test_a_view_that_fails_does_not_break_the_emitter() -> None:
    peer, views = stand_in(), Views()

    def broken(offer: Any) -> Any:
        raise ValueError("no")

    views.offer_view = broken  # type: ignore[method-assign]

    async def during() -> None:
        peer.events.emit({"type": "offer", "offer": "o1"})  # must not raise into the market code
        peer.events.emit({"type": "book"})

    got = await run_stream(peer, views, during)
    assert [e["type"] for e in got if e["type"] not in ("status", "peers")] == ["book"]


def test_every_file_the_page_loads_is_served_and_shipped_in_the_package() -> None:
    import fnmatch
    import re
    import tomllib
    from pathlib import Path

    from otc.web import assets

    served = assets()
    page = served["/"].body.decode()
    wanted = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page))
    static = Path(__file__).parents[2] / "src" / "otc" / "web" / "static"
    for js in (static / "js").glob("*.js"):  # and every module the modules import
        wanted |= {f"/static/js/{m}" for m in re.findall(r'from "\./([a-z]+\.js)"', js.read_text())}
    assert "/static/js/app.js" in wanted and len(wanted) > 10
    assert wanted <= set(served), wanted - set(served)
    # what setuptools puts in the wheel: every file under static/ matches a package-data pattern
    pyproject = tomllib.loads((static.parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["otc"]
    for path in static.rglob("*"):
        if path.is_file():
            relative = str(path.relative_to(static.parents[1]))
            assert any(
                fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns
            ), relative
