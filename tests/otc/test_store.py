"""The SQLite store, on a real file: what a restarting desk loads, and what it can recall later."""

from __future__ import annotations

from pathlib import Path

from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.taker import Taker
from otc.core.trade import MakerState
from otc.node.store import Store

MAKER = Identity.from_seed(bytes([1]) * 32)
TAKER = Taker(Identity.from_seed(bytes([2]) * 32), "taker")
T0 = 1_700_000_000_000


def test_a_restart_loads_open_offers_live_reservations_and_recent_history(tmp_path: Path) -> None:
    store = Store(tmp_path / "peer.sqlite")
    desk = Desk(MAKER, "maker", reserve_ms=1_000)
    offer, effects = desk.create(side="sell", amount="10", price="100", pair="BTC/USD", now=T0)
    store.save(seq=desk.seq, offers=effects.offers)
    for n in range(5):  # trades 0..3 done in turn, trade 4 left reserved
        trade = TAKER.new_trade(desk.offers[offer.id], "1", f"{n:032x}", T0 + n)
        reply, effects = desk.take(trade.take, T0 + n)
        store.save(maker_trades=effects.trades)
        if n < 4:
            confirm = TAKER.next_request(TAKER.on_reply(trade, reply, T0 + n))
            _, effects = desk.confirm(confirm, T0 + n)  # type: ignore[arg-type]
            store.save(seq=desk.seq, offers=effects.offers, maker_trades=effects.trades)
    gone, effects = desk.create(side="buy", amount="1", price="90", pair="BTC/USD", now=T0)
    store.save(seq=desk.seq, offers=effects.offers)
    _, effects = desk.cancel(gone.id, T0)
    store.save(seq=desk.seq, offers=effects.offers)
    store.close()

    store = Store(tmp_path / "peer.sqlite")  # the restart
    assert [o.id for o in store.open_offers()] == [offer.id]
    assert store.open_offers()[0].remaining == "6"
    assert {o.id for o in store.offers()} == {offer.id, gone.id}
    loaded = store.maker_trades_to_load(recent=2)
    assert [(t.terms.id[-1], t.state) for t in loaded] == [
        ("4", MakerState.RESERVED),
        ("2", MakerState.DONE),
        ("3", MakerState.DONE),
    ]
    old = store.maker_trade(f"{0:032x}")
    assert old is not None and old == desk.trades[f"{0:032x}"]
    assert store.maker_trade(f"{9:032x}") is None
    assert store.offer(gone.id) == desk.offers[gone.id] and store.offer("0" * 32) is None
    assert store.seq() == desk.seq
    store.close()


def test_the_inbox_keeps_the_latest_messages_by_arrival_and_contacts_are_bounded(tmp_path: Path) -> None:
    from otc.core.identity import Identity
    from otc.core.messages import Chat
    from otc.core.signing import sign

    store = Store(tmp_path / "peer.sqlite")
    me, them = Identity.generate(), Identity.generate()

    def chat(n: int, ts: int) -> Chat:
        return sign(them, Chat(id=f"{n:032x}", sender=them.peer_id, sender_name="x", to=me.peer_id,
                               text=f"m{n}", ts=ts))  # fmt: skip

    for n in range(30):
        # the sender dates half of them ten days ahead: it cannot reorder or push anything out with that
        ts = 10**13 if n % 2 else 1_700_000_000_000 + n
        assert store.add_message(chat(n, ts), "in", received_at=1_000 + n, keep=20)
    assert not store.add_message(chat(29, 1), "in", received_at=5_000, keep=20)  # a duplicate delivery
    kept = store.messages(limit=100)
    assert [m.text for _, m, _ in kept] == [f"m{n}" for n in range(10, 30)]
    assert [at for _, _, at in kept] == list(range(1_010, 1_030))
    for n in range(50):
        store.add_contact(f"{n:064x}", "same", n)
    store.prune_contacts(keep=10)
    assert sorted(store.contacts_named("SAME")) == [f"{n:064x}" for n in range(40, 50)]
    store.close()


def test_saves_of_one_loop_turn_share_one_commit_and_the_later_state_wins(tmp_path: Path) -> None:
    """Group commit (``save_soon``): everything saved in one turn of the event loop is on disk, in one
    transaction, before any saver's future is done; a plain ``save`` meanwhile writes the waiting
    saves first, so the newest state of a row is what stays."""
    import asyncio
    import sqlite3

    path = tmp_path / "peer.sqlite"
    store = Store(path)
    desk = Desk(MAKER, "maker")
    offers = [
        desk.create(side="sell", amount="1", price=str(100 + n), pair="BTC/USD", now=T0)[0] for n in range(5)
    ]
    commits: list[str] = []
    store.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)

    async def savers() -> None:
        futures = [store.save_soon(seq=n + 1, offers=[offer]) for n, offer in enumerate(offers)]
        assert len({id(f) for f in futures}) == 1 and not futures[0].done()
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM offers").fetchone() == (0,), "nothing before the turn ends"
        await asyncio.gather(*futures)
        assert other.execute("SELECT count(*) FROM offers").fetchone() == (5,)
        other.close()
        _, effects = desk.cancel(offers[0].id, T0)
        waiting = store.save_soon(seq=desk.seq, offers=effects.offers)
        store.save(offers=[offers[0]])  # an older state saved later, synchronously: written after it
        assert waiting.done()

    asyncio.run(savers())
    assert commits == ["COMMIT", "COMMIT"]
    assert store.offer(offers[0].id) == offers[0] and store.seq() == desk.seq
    store.close()


def test_a_failed_group_commit_fails_every_saver_and_calls_on_failure_first(tmp_path: Path) -> None:
    """A write that fails must never be silent: every future of the batch fails, a plain ``save``
    meanwhile raises too, and ``on_failure`` (the peer stops there) runs before anything else can."""
    import asyncio
    import sqlite3

    import pytest

    store = Store(tmp_path / "peer.sqlite")
    desk = Desk(MAKER, "maker")
    offer = desk.create(side="sell", amount="1", price="100", pair="BTC/USD", now=T0)[0]
    failures: list[BaseException] = []
    store.on_failure = failures.append
    store.db.execute("DROP TABLE offers")  # every write of an offer now fails

    async def savers() -> None:
        pending = store.save_soon(offers=[offer])
        with pytest.raises(sqlite3.OperationalError):
            store.save(seq=1)  # writes the waiting batch first: its failure is the caller's too
        assert pending.done() and isinstance(pending.exception(), sqlite3.OperationalError)
        assert len(failures) == 1
        later = store.save_soon(offers=[offer])
        with pytest.raises(sqlite3.OperationalError):
            await later
        assert len(failures) == 2

    asyncio.run(savers())
    assert store.meta("seq") is None, "nothing of a failed batch is written"
