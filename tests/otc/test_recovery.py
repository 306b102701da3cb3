"""Recovery of a peer's own history (issue 8 item 7): the pure decisions (core/recovery.py), and the local
evidence and receipts queries on real SQLite files (node/recovery.py, node/store.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import msgspec
import pytest

from otc.core import errors as E
from otc.core import limits
from otc.core.book import Applied, Book
from otc.core.desk import Desk
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Head, Held, HeldTrade, MakerOffers, Offer, ReceiptsRequest
from otc.core.recovery import (
    MAKER_RECEIPT,
    OFFER,
    SEQ,
    STANDING,
    STORE,
    TAKER_RECEIPT,
    Event,
    Evidence,
    Local,
    Ours,
    Report,
    Standing,
    as_maker_trade,
    as_taker_trade,
    check_receipts_request,
    findings,
    genuine,
    next_standing,
    plan,
    quote_seq_floor,
    refusal,
    verdict,
)
from otc.core.rfq import QUOTE_SEQ_BASE
from otc.core.signing import receipt_of, sign
from otc.core.taker import Taker, receipt
from otc.core.trade import MakerState, TakerState
from otc.node import store as store_module
from otc.node.recovery import open_store
from otc.node.store import Store, StoreDamaged

ME = Identity.from_seed(bytes([7]) * 32)
OTHER = Identity.from_seed(bytes([8]) * 32)
STRANGER = Identity.from_seed(bytes([9]) * 32)
T0 = 1_700_000_000_000


def kinds(found: list) -> list[str]:
    return [f.kind for f in found]


def trade_between(maker: Identity, taker: Identity, n: int = 0) -> tuple[Desk, HeldTrade]:
    """A done trade: ``maker``'s desk and the receipt both signed, with the taker's take."""
    desk = Desk(maker, "m")
    offer, _ = desk.create(side="sell", amount="10", price="100", pair="BTC/USD", now=T0)
    t = Taker(taker, "t")
    trade = t.new_trade(offer, "1", f"{n:032x}", T0 + n)
    reply, _ = desk.take(trade.take, T0 + n)
    trade = t.on_reply(trade, reply, T0 + n)
    confirm = t.next_request(trade)
    done, _ = desk.confirm(confirm, T0 + n)  # type: ignore[arg-type]
    trade = t.on_reply(trade, done, T0 + n)
    return desk, HeldTrade(take=trade.take, receipt=receipt(trade))


def my_state(seq: int, offers: int = 2) -> tuple[Desk, list[Offer], Head]:
    """Our desk after ``offers`` offers and some churn up to ``seq``: its open offers and signed head."""
    desk = Desk(ME, "me")
    made = [
        desk.create(side="sell", amount="5", price=str(100 + i), pair="BTC/USD", now=T0)[0]
        for i in range(offers)
    ]
    while desk.seq < seq:
        desk.cancel(desk.create(side="buy", amount="1", price="1", pair="BTC/USD", now=T0)[0].id, T0)
    return desk, [desk.offers[o.id] for o in made], desk.head(T0, "127.0.0.1:1")


# --- the standing -----------------------------------------------------------------------------------------
def test_the_standing_table_and_the_verdict() -> None:
    assert next_standing(Standing.CHECKING, Event.CLEAR) is Standing.OK
    assert next_standing(Standing.CHECKING, Event.LOSS) is Standing.NEEDS_RECOVERY
    assert next_standing(Standing.CHECKING, Event.RECOVER) is Standing.RECOVERING
    assert next_standing(Standing.RECOVERING, Event.RECOVERED) is Standing.OK
    for state in Standing:
        for event in Event:
            if (state, event) not in STANDING:
                with pytest.raises(OTCError):
                    next_standing(state, event)
    lost = Local(store_missing=True).findings()
    assert verdict(Local(), [], recover=False) is Event.CLEAR
    assert verdict(Local(store_missing=True), lost, recover=False) is Event.LOSS
    assert verdict(Local(), [], recover=True) is Event.RECOVER
    assert verdict(Local(new_identity=True), [], recover=True) is Event.CLEAR  # nothing to rebuild
    report = Report(reason="x")
    assert refusal(Standing.OK, report) is None
    assert refusal(Standing.NEEDS_RECOVERY, report).code == E.ERR_RECOVERY_NEEDED  # type: ignore[union-attr]
    assert refusal(Standing.RECOVERING, report).code == E.ERR_RECOVERING  # type: ignore[union-attr]
    assert refusal(Standing.CHECKING, report).code == E.ERR_RECOVERING  # type: ignore[union-attr]


def test_local_findings() -> None:
    assert Local().findings() == []
    assert Local(new_identity=True, store_missing=True).findings() == []  # a new key has no history
    assert kinds(Local(store_missing=True).findings()) == [STORE]
    assert kinds(Local(store_empty=True).findings()) == [STORE]
    assert kinds(Local(wal_missing=True).findings()) == [STORE]
    assert kinds(Local(damaged="not a database").findings()) == [STORE]
    assert kinds(Local(pending="earlier").findings()) == [STORE]


# --- evidence: only what we signed counts ---------------------------------------------------------------
def test_evidence_counts_only_what_we_signed() -> None:
    _, offers, head = my_state(seq=20)
    ev = Evidence()
    forged_head = sign(STRANGER, msgspec.structs.replace(head, head=10**9, sig=""))
    forged_offer = sign(STRANGER, msgspec.structs.replace(offers[0], seq=10**9, sig=""))
    other_desk, other_offers, other_head = Desk(OTHER, "o"), [], None
    other_offers = [other_desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=T0)[0]]
    other_head = other_desk.head(T0, "x")
    ev.add_held(ME.peer_id, "p1", Held(head=forged_head, offers=[forged_offer, *other_offers]))
    ev.add_held(ME.peer_id, "p2", Held(head=other_head, offers=[]))
    assert ev.heads == {} and ev.offers == {} and ev.rejected == 4 and ev.answered == 2
    assert findings(ME.peer_id, Local(seq=5), ev, Ours()) == []  # a stranger cannot lock us out

    older = offers[0]
    newer = sign(ME, msgspec.structs.replace(older, seq=21, reserved="1", sig=""))
    ev.add_held(ME.peer_id, "p3", Held(head=head, offers=[newer, offers[1]]))
    ev.add_held(ME.peer_id, "p4", Held(head=None, offers=[older]))
    assert ev.heads == {"p3": head} and ev.offers[older.id] is newer  # the newest copy wins
    assert ev.network_seq == 21


def test_a_head_or_offers_above_our_store_are_a_loss_and_equal_ones_are_not() -> None:
    _, offers, head = my_state(seq=20)
    ev = Evidence()
    ev.add_held(ME.peer_id, "p", Held(head=head, offers=offers))
    ours = Ours(offers={o.id: o for o in offers})
    assert findings(ME.peer_id, Local(seq=20), ev, ours) == []  # we hold exactly that
    found = findings(ME.peer_id, Local(seq=19), ev, ours)
    assert kinds(found) == [SEQ] and "seq 20" in found[0].text
    ev.heads.clear()  # only offers: one of them above our store
    top = max(offers, key=lambda o: o.seq)
    assert kinds(findings(ME.peer_id, Local(seq=top.seq - 1), ev, ours)) == [SEQ]
    # an offer of ours at or below our seq that our store has no record of: the store lost rows
    assert kinds(findings(ME.peer_id, Local(seq=20), ev, Ours())) == [OFFER]


def test_receipts_we_lack_are_a_loss_but_a_take_in_flight_is_not() -> None:
    _, as_maker = trade_between(ME, OTHER, 1)
    _, as_taker = trade_between(OTHER, ME, 2)
    ev = Evidence()
    ev.add_trades(ME.peer_id, [as_maker, as_taker])
    assert set(ev.trades) == {as_maker.receipt.id, as_taker.receipt.id}
    m, t = as_maker.receipt.id, as_taker.receipt.id
    whole = Ours(maker={m: MakerState.DONE}, taker={t: TakerState.DONE})
    assert findings(ME.peer_id, Local(seq=99), ev, whole) == []
    assert kinds(findings(ME.peer_id, Local(seq=99), ev, Ours())) == [MAKER_RECEIPT, TAKER_RECEIPT]
    # as maker, anything but done is a loss (a maker commits done before it answers the confirm)
    for state in (MakerState.RESERVED, MakerState.RELEASED):
        held = Ours(maker={m: state}, taker={t: TakerState.DONE})
        assert kinds(findings(ME.peer_id, Local(seq=99), ev, held)) == [MAKER_RECEIPT]
    # as taker, a reserved take is in flight (our retries finish it); failed or unknown is a loss
    in_flight = Ours(maker={m: MakerState.DONE}, taker={t: TakerState.RESERVED})
    assert findings(ME.peer_id, Local(seq=99), ev, in_flight) == []
    failed = Ours(maker={m: MakerState.DONE}, taker={t: TakerState.FAILED})
    assert kinds(findings(ME.peer_id, Local(seq=99), ev, failed)) == [TAKER_RECEIPT]


def test_only_genuine_receipts_of_ours_count() -> None:
    _, real = trade_between(ME, OTHER)
    assert genuine(ME.peer_id, real)
    _, theirs = trade_between(OTHER, STRANGER)
    assert not genuine(ME.peer_id, theirs)  # not ours
    r = real.receipt
    forged = receipt_of(msgspec.structs.replace(r, amount="5"), r.maker_sig, r.taker_sig)  # type: ignore[arg-type]
    assert not genuine(ME.peer_id, HeldTrade(take=real.take, receipt=forged))
    one_sided = receipt_of(r, r.maker_sig, STRANGER.sign(b"x"))  # type: ignore[arg-type]
    assert not genuine(ME.peer_id, HeldTrade(take=real.take, receipt=one_sided))
    other_take = msgspec.structs.replace(real.take, trade_id="f" * 32)
    assert not genuine(ME.peer_id, HeldTrade(take=other_take, receipt=r))
    unsigned_take = msgspec.structs.replace(real.take, sig="")
    assert not genuine(ME.peer_id, HeldTrade(take=unsigned_take, receipt=r))
    ev = Evidence()
    ev.add_trades(ME.peer_id, [theirs, HeldTrade(take=real.take, receipt=forged)])
    assert ev.trades == {} and ev.rejected == 2


# --- the plan -------------------------------------------------------------------------------------------
def test_the_plan_goes_past_every_seq_cancels_what_may_be_open_and_restores_receipts() -> None:
    _, network_offers, head = my_state(seq=40, offers=3)
    top = head.head  # 40 or 41
    # our store is an older copy: it knows the first two offers at their creation, and its seq is 10
    old_desk, old_offers, _ = my_state(seq=10, offers=2)
    assert [o.id for o in old_offers] == [o.id for o in network_offers[:2]]
    closed = old_desk.cancel(old_offers[1].id, T0)[0]  # ...and it holds the second one cancelled
    shown_open = sign(ME, msgspec.structs.replace(old_offers[1], seq=closed.seq - 1, sig=""))
    _, as_maker = trade_between(ME, OTHER, 1)
    _, as_taker = trade_between(OTHER, ME, 2)
    ev = Evidence()
    filled = sign(ME, msgspec.structs.replace(network_offers[0], remaining="4", seq=top, sig=""))  # lost fill
    ev.add_held(ME.peer_id, "p", Held(head=head, offers=[filled, network_offers[2], shown_open]))
    ev.add_trades(ME.peer_id, [as_maker, as_taker])
    ours = Ours(offers={old_offers[0].id: old_offers[0], closed.id: closed})
    local = Local(seq=old_desk.seq)
    found = findings(ME.peer_id, local, ev, ours)
    assert SEQ in kinds(found)
    p = plan(ME.peer_id, local, ev, ours, found, old_desk.open_offers())
    assert p.seq == top + limits.SEQ_MARGIN
    # offer 0: the network's newer copy is cancelled; offer 2: one our store never knew; offer 1: we
    # hold it closed, newer than the open copy a book shows: that close is published again
    assert [o.id for o in p.cancel] == [network_offers[2].id, network_offers[0].id]  # by seq
    assert p.cancel[1] is filled and [o.id for o in p.republish] == [closed.id]
    assert [t.terms.id for t in p.maker_trades] == [as_maker.receipt.id]
    assert p.maker_trades[0].state is MakerState.DONE and p.maker_trades[0].take == as_maker.take
    assert [t.take.trade_id for t in p.taker_trades] == [as_taker.receipt.id]
    assert receipt(p.taker_trades[0]) == as_taker.receipt  # the same signed bytes as the maker's

    # applied to a desk as node/recovery.py does: every new state is above anything the network held,
    # and a book holding the phantoms accepts the cancels and then our new head's list
    book = Book("b" * 64)
    assert book.sync(MakerOffers(head=head, offers=network_offers), T0) == 3  # the phantoms
    old_desk.load(p.cancel, [], p.seq)
    cancels = [old_desk.cancel(o.id, T0)[0] for o in p.cancel]
    assert all(c.seq > top and c.status == "cancelled" for c in cancels)
    assert [book.receive(c, T0) for c in cancels] == [Applied.CLOSED, Applied.CLOSED]
    new, _ = old_desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=T0)
    assert new.seq > top + limits.SEQ_MARGIN and new.id not in {o.id for o in network_offers}
    assert book.receive(new, T0) is Applied.NEW  # a book that held seq 40 takes it: never ignored
    listed = MakerOffers(head=old_desk.head(T0 + 1, "127.0.0.1:1"), offers=old_desk.open_offers())
    assert book.sync(listed, T0 + 1) is not None
    assert {o.id for o in book.makers[ME.peer_id].offers.values()} == {new.id}  # no phantom left


def test_a_loss_of_takes_only_leaves_our_offers_and_seq_alone() -> None:
    desk, offers, head = my_state(seq=12)
    _, as_taker = trade_between(OTHER, ME, 3)
    ev = Evidence()
    ev.add_held(ME.peer_id, "p", Held(head=head, offers=offers))
    ev.add_trades(ME.peer_id, [as_taker])
    ours = Ours(offers={o.id: o for o in offers})
    found = findings(ME.peer_id, Local(seq=12), ev, ours)
    assert kinds(found) == [TAKER_RECEIPT]
    p = plan(ME.peer_id, Local(seq=12), ev, ours, found, desk.open_offers())
    assert (p.seq, p.cancel, p.maker_trades, len(p.taker_trades)) == (12, [], [], 1)


def test_receipts_of_quotes_go_back_to_the_quote_desk_whose_seq_comes_from_the_clock() -> None:
    _, of_offer = trade_between(ME, OTHER, 1)
    _, of_quote = trade_between(ME, STRANGER, 2)
    of_quote = msgspec.structs.replace(of_quote, quote=True)  # as its holder says (our quote desk's)
    ev = Evidence()
    ev.add_trades(ME.peer_id, [of_offer, of_quote])
    found = findings(ME.peer_id, Local(seq=50), ev, Ours())
    p = plan(ME.peer_id, Local(seq=50), ev, Ours(), found, [])
    assert [t.terms.id for t in p.maker_trades] == [of_offer.receipt.id]
    assert [t.terms.id for t in p.quote_trades] == [of_quote.receipt.id] and p.receipts == 2 and p.lost
    # a quote trade we hold (the quote desk's table) is no loss: a healthy quoting maker is not "behind"
    held = Ours(maker={of_offer.receipt.id: MakerState.DONE, of_quote.receipt.id: MakerState.DONE})
    assert findings(ME.peer_id, Local(seq=50), ev, held) == []
    now = 1_800_000_000_000
    floor = quote_seq_floor(QUOTE_SEQ_BASE + 7, now)
    assert floor == QUOTE_SEQ_BASE + now * 1000 <= 2**53
    assert quote_seq_floor(floor + 5, now) == floor + 5  # never back


def test_a_receipts_request_must_be_the_askers_own_fresh_and_for_us() -> None:
    req = sign(ME, ReceiptsRequest(peer=ME.peer_id, to=OTHER.peer_id, ts=T0, nonce="a" * 32))
    check_receipts_request(OTHER.peer_id, req, T0 + 1000)
    cases = [
        (OTHER.peer_id, msgspec.structs.replace(req, sig=""), T0, E.ERR_BAD_SIGNATURE),
        (OTHER.peer_id, sign(STRANGER, msgspec.structs.replace(req, sig="")), T0, E.ERR_BAD_SIGNATURE),
        (OTHER.peer_id, msgspec.structs.replace(req, before="5:" + "0" * 32), T0, E.ERR_BAD_SIGNATURE),
        (STRANGER.peer_id, req, T0, E.ERR_INVALID_MESSAGE),  # addressed to another peer
        (OTHER.peer_id, req, T0 + limits.SIGNED_REQUEST_MAX_AGE_MS + 1, E.ERR_REQUEST_STALE),
        (OTHER.peer_id, req, T0 - limits.SIGNED_REQUEST_MAX_AGE_MS - 1, E.ERR_REQUEST_STALE),
    ]
    for me, msg, now, code in cases:
        with pytest.raises(OTCError) as err:
            check_receipts_request(me, msg, now)
        assert err.value.code == code


# --- local evidence on real SQLite files ----------------------------------------------------------------
def test_the_data_directory_tells_a_missing_an_empty_and_a_half_store(tmp_path: Path) -> None:
    db = tmp_path / "peer.sqlite"
    store, local = open_store(db, ME.peer_id, had_key=False, recover=False)
    assert local.new_identity and local.findings() == []
    store.close()
    store, local = open_store(db, ME.peer_id, had_key=True, recover=False)
    assert local.findings() == []  # closed cleanly, used before: nothing to say
    desk = Desk(ME, "me")
    _, effects = desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=T0)
    store.save(seq=desk.seq, offers=effects.offers)  # in the WAL only, so far
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(db, half / "peer.sqlite")  # the main file without its WAL, taken while running
    whole = tmp_path / "whole"
    whole.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(tmp_path / f"peer.sqlite{suffix}", whole / f"peer.sqlite{suffix}")  # as after a crash
    store.close()

    store, local = open_store(half / "peer.sqlite", ME.peer_id, had_key=True, recover=False)
    assert local.wal_missing and local.seq == 0 and kinds(local.findings()) == [STORE]
    store.close()
    store, local = open_store(whole / "peer.sqlite", ME.peer_id, had_key=True, recover=False)
    assert not local.wal_missing and local.seq == 1 and local.findings() == []  # a crash loses nothing
    store.close()

    gone = tmp_path / "gone"
    gone.mkdir()
    store, local = open_store(gone / "peer.sqlite", ME.peer_id, had_key=True, recover=False)
    assert local.store_missing and kinds(local.findings()) == [STORE]
    store.close()
    # the loss is remembered in the store itself until --recover: the next start still refuses
    store, local = open_store(gone / "peer.sqlite", ME.peer_id, had_key=True, recover=False)
    assert not local.store_missing and local.pending is not None and kinds(local.findings()) == [STORE]
    store.close()

    imported = tmp_path / "imported"  # a key put in a directory where no peer ever ran: the network decides
    imported.mkdir()
    store, local = open_store(imported / "peer.sqlite", ME.peer_id, had_key=True, ran_before=False)
    assert not local.new_identity and local.findings() == []
    store.close()

    empty = tmp_path / "empty"
    empty.mkdir()
    sqlite3.connect(empty / "peer.sqlite").close()  # a file, but never a peer's store
    assert (empty / "peer.sqlite").exists()
    store, local = open_store(empty / "peer.sqlite", ME.peer_id, had_key=True, recover=False)
    assert local.store_empty and kinds(local.findings()) == [STORE]
    store.close()


def test_a_damaged_or_foreign_store_is_refused_unchanged_or_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "peer.sqlite"
    store, _ = open_store(db, ME.peer_id, had_key=False, recover=False)
    desk = Desk(ME, "me")
    for i in range(300):  # enough rows for several pages
        _, effects = desk.create(side="sell", amount="1", price=str(i + 1), pair="BTC/USD", now=T0)
        store.save(seq=desk.seq, offers=effects.offers)
    store.checkpoint()
    store.close()
    intact = db.read_bytes()
    page = 4096
    assert len(intact) > 8 * page
    torn = intact[: 3 * page] + bytes(range(256)) * (page // 256) * 2 + intact[5 * page :]
    for content, what in ((b"\x00garbage" * 1000, "not a database"), (torn, "quick_check")):
        db.write_bytes(content)
        with pytest.raises(StoreDamaged) as err:
            open_store(db, ME.peer_id, had_key=True, recover=False)
        assert err.value.code == E.ERR_STORE_DAMAGED and str(db) in str(err.value), what
        assert db.read_bytes() == content, what  # nothing changed
    store, local = open_store(db, ME.peer_id, had_key=True, recover=True)
    assert local.damaged is not None and kinds(local.findings()) == [STORE]
    aside = [p for p in tmp_path.glob("peer.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert [p.read_bytes() for p in aside] == [torn]  # kept, never deleted
    store.close()

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "peer.sqlite", other / "peer.sqlite")
    with pytest.raises(StoreDamaged, match="holds the history of peer"):
        open_store(other / "peer.sqlite", OTHER.peer_id, had_key=True, recover=False)


def test_receipts_are_answered_by_counterparty_newest_first_in_pages(tmp_path: Path) -> None:
    store = Store(tmp_path / "peer.sqlite")
    desk = Desk(OTHER, "o")  # we are OTHER: ME and STRANGER traded with us, as takers and as makers
    offer, effects = desk.create(side="sell", amount="1000", price="100", pair="BTC/USD", now=T0)
    store.save(seq=desk.seq, offers=effects.offers)
    mine: list[str] = []
    for n in range(7):
        who = ME if n % 2 == 0 else STRANGER
        t = Taker(who, "t")
        trade = t.new_trade(desk.offers[offer.id], "1", f"{n:032x}", T0 + n)
        reply, effects = desk.take(trade.take, T0 + n)
        confirm = t.next_request(t.on_reply(trade, reply, T0 + n))
        _, more = desk.confirm(confirm, T0 + n)  # type: ignore[arg-type]
        store.save(seq=desk.seq, offers=more.offers, maker_trades=more.trades)
        if who is ME:
            mine.append(trade.take.trade_id)
    _, as_taker = trade_between(ME, OTHER, 50)  # created_at T0 + 50: the newest
    store.save(taker_trades=[as_taker_trade(as_taker)])  # OTHER took from ME: OTHER's taker record
    rows = store.done_trades_with(ME.peer_id, None, 3)
    ids = [r[0].take.trade_id for r in rows]
    assert ids == [as_taker.receipt.id, mine[3], mine[2]]  # newest first, both roles
    assert [(type(r[0]).__name__, r[2]) for r in rows] == [
        ("TakerTrade", False),
        ("MakerTrade", False),
        ("MakerTrade", False),
    ]
    rest = store.done_trades_with(ME.peer_id, (rows[-1][1], ids[-1]), 10)
    assert [r[0].take.trade_id for r in rest] == [mine[1], mine[0]]
    assert store.done_trades_with("c" * 64, None, 10) == []
    store.close()


def test_an_older_store_learns_the_other_party_of_its_trades(tmp_path: Path) -> None:
    """A file from before the ``party`` column: opening it fills the column in from the records."""
    path = tmp_path / "peer.sqlite"
    db = sqlite3.connect(path)
    db.executescript(store_module.SCHEMA)  # the tables as the first release made them
    _, as_maker = trade_between(OTHER, ME, 1)  # OTHER made, ME took: OTHER's maker record
    _, as_taker = trade_between(ME, OTHER, 2)  # ME made, OTHER took: OTHER's taker record
    mt, tt = as_maker_trade(as_maker), as_taker_trade(as_taker)
    enc = msgspec.json.encode
    db.execute(
        "INSERT INTO maker_trades VALUES (?, ?, ?, ?)", (mt.terms.id, "done", mt.terms.created_at, enc(mt))
    )
    db.execute(
        "INSERT INTO taker_trades VALUES (?, ?, ?, ?)", (tt.take.trade_id, "done", tt.updated_at, enc(tt))
    )
    db.commit()
    db.close()
    store = Store(path)
    assert [r[0].take.trade_id for r in store.done_trades_with(ME.peer_id, None, 10)] == [
        as_taker.receipt.id,
        as_maker.receipt.id,
    ]
    store.close()
