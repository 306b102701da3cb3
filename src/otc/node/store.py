"""SQLite persistence for one peer: its own offers, its trades (as maker and as taker), its chat log,
and the last seq it signed. Every desk decision is written in one transaction before it is answered.

WAL with ``synchronous=NORMAL``: a committed transaction survives the process being killed (the data is
in the OS page cache); only an OS crash or power loss may lose the last commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec

from ..core.messages import Chat, GrapevineNote, Offer, Quote, QuoteRequest
from ..core.rfq import Rule
from ..core.settlement import Record
from ..core.trade import MakerTrade, TakerTrade

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offers (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,
                                   body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS maker_trades (id TEXT PRIMARY KEY, state TEXT NOT NULL,
                                         created_at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS taker_trades (id TEXT PRIMARY KEY, state TEXT NOT NULL,
                                         updated_at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS offers_by_status ON offers (status, seq);
CREATE INDEX IF NOT EXISTS maker_trades_by_state ON maker_trades (state, created_at);
CREATE INDEX IF NOT EXISTS taker_trades_by_state ON taker_trades (state, updated_at);
CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, direction TEXT NOT NULL, ts INTEGER NOT NULL,
                                     body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (peer_id TEXT PRIMARY KEY, name TEXT NOT NULL,
                                     last_seen INTEGER NOT NULL);
"""

# schema changes since the first release, applied to older files (each is idempotent)
MIGRATIONS = [
    # a sender's timestamp is its claim: the inbox is ordered by when we received a message
    ("messages", "received_at", "ALTER TABLE messages ADD COLUMN received_at INTEGER NOT NULL DEFAULT 0"),
    # 'otc' (a signed Chat) or 'grapevine' (an unsigned GrapevineNote)
    ("messages", "kind", "ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'otc'"),
    # the other party of each trade, so a peer recovering its history gets its receipts from us by an
    # index (issue 8 item 7); filled in from the records of older files once
    ("maker_trades", "party", "ALTER TABLE maker_trades ADD COLUMN party TEXT; UPDATE maker_trades SET "
     "party = json_extract(CAST(body AS TEXT), '$.terms.taker')"),
    ("taker_trades", "party", "ALTER TABLE taker_trades ADD COLUMN party TEXT; UPDATE taker_trades SET "
     "party = json_extract(CAST(body AS TEXT), '$.maker')"),
]  # fmt: skip
INDEXES = """
CREATE INDEX IF NOT EXISTS messages_by_arrival ON messages (received_at);
CREATE INDEX IF NOT EXISTS contacts_by_time ON contacts (last_seen);
CREATE INDEX IF NOT EXISTS maker_trades_done_by_party ON maker_trades (party, created_at, id)
    WHERE state = 'done';
CREATE INDEX IF NOT EXISTS taker_trades_done_by_party ON taker_trades (party, updated_at, id)
    WHERE state = 'done';
"""

INSERT_MESSAGE = """INSERT OR IGNORE INTO messages (id, direction, ts, body, received_at, kind)
                    VALUES (?, ?, ?, ?, ?, ?)"""

_enc = msgspec.json.Encoder()
_offer = msgspec.json.Decoder(Offer)
_maker = msgspec.json.Decoder(MakerTrade)
_taker = msgspec.json.Decoder(TakerTrade)
_chat = msgspec.json.Decoder(Chat)
_note = msgspec.json.Decoder(GrapevineNote)


class StoreDamaged(Exception):
    """peer.sqlite cannot be used: not a database, failing ``PRAGMA quick_check``, or another identity's."""

    code = "ERR_STORE_DAMAGED"

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{self.code}: {path} is damaged: {why}")
        self.path = path
        self.why = why


@dataclass(slots=True)
class _Batch:
    """Saves to write in one transaction, in order (a later state of a row replaces an earlier one)."""

    seq: int | None = None
    offers: list[Offer] = field(default_factory=list)
    maker_trades: list[MakerTrade] = field(default_factory=list)
    taker_trades: list[TakerTrade] = field(default_factory=list)
    contacts: list[tuple[str, str, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.seq is not None or self.offers or self.maker_trades or self.taker_trades or self.contacts
        )

    def add(
        self,
        seq: int | None,
        offers: Iterable[Offer],
        maker_trades: Iterable[MakerTrade],
        taker_trades: Iterable[TakerTrade],
        contacts: Iterable[tuple[str, str, int]],
    ) -> None:
        if seq is not None:
            self.seq = seq if self.seq is None else max(self.seq, seq)
        self.offers.extend(offers)
        self.maker_trades.extend(maker_trades)
        self.taker_trades.extend(taker_trades)
        self.contacts.extend(contacts)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:  # a damaged file is a clear error, never a traceback half-way through the start
            problems = [str(row[0]) for row in self.db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreDamaged(path, "; ".join(problems))
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            for table, column, sql in MIGRATIONS:
                columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self.db.executescript(sql)
            self.db.executescript(INDEXES)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreDamaged(path, str(exc)) from None
        except StoreDamaged:
            self.db.close()
            raise
        # requests for quote, settlement, notifications: their own tables (end of file)
        self.rfq = RfqTables(self.db)
        self.settlements = SettlementTables(self.db)
        self.webhooks = WebhookTables(self.db)
        self._batch = _Batch()  # saves waiting for the group commit (``save_soon``)
        self._batch_done: asyncio.Future[None] | None = None
        # called when a group commit fails, before anything else runs (the peer stops there: see
        # node/trading.py); the batch's future fails too
        self.on_failure: Callable[[BaseException], None] | None = None

    def close(self) -> None:
        self._flush_batch(raise_error=True)
        # closed cleanly: SQLite checkpoints and deletes the WAL; a later start finding no WAL after a
        # run that did not get here knows commits may be lost (see node/recovery.py)
        self.set_meta("lifecycle", "closed")
        self.db.close()

    # writes ------------------------------------------------------------------------------------------
    def save(
        self,
        *,
        seq: int | None = None,
        offers: Iterable[Offer] = (),
        maker_trades: Iterable[MakerTrade] = (),
        taker_trades: Iterable[TakerTrade] = (),
        contacts: Iterable[tuple[str, str, int]] = (),
    ) -> None:
        """One transaction: a decision and everything it changed (``contacts``: (peer id, name, when)),
        with whatever waits for the group commit before it (so the later state wins)."""
        self._batch.add(seq, offers, maker_trades, taker_trades, contacts)
        self._flush_batch(raise_error=True)

    def save_soon(
        self,
        *,
        seq: int | None = None,
        offers: Iterable[Offer] = (),
        maker_trades: Iterable[MakerTrade] = (),
        taker_trades: Iterable[TakerTrade] = (),
        contacts: Iterable[tuple[str, str, int]] = (),
    ) -> asyncio.Future[None]:
        """Group commit: what every caller saves in this turn of the event loop goes in one transaction
        at its end; the future is done once it is on disk (or fails with the error). Whoever acts on a
        decision (answers a counterparty) awaits it first. Under load this is one commit for many
        trades instead of two or three each; alone, the commit runs as soon as the caller yields."""
        self._batch.add(seq, offers, maker_trades, taker_trades, contacts)
        if self._batch_done is None:
            loop = asyncio.get_running_loop()
            self._batch_done = loop.create_future()
            loop.call_soon(self._flush_batch)
        return self._batch_done

    def pending(self) -> asyncio.Future[None] | None:
        """The group commit in progress, if any: whoever repeats an answer waits for it too."""
        return self._batch_done

    def _flush_batch(self, *, raise_error: bool = False) -> None:
        batch, done = self._batch, self._batch_done
        self._batch, self._batch_done = _Batch(), None
        try:
            if batch:
                self._write(batch)
        except BaseException as exc:
            if done is not None and not done.done():
                done.set_exception(exc)
            if self.on_failure is not None:
                self.on_failure(exc)  # at once, before any other callback can act on what is lost
            if raise_error or done is None:
                raise
            return
        if done is not None and not done.done():
            done.set_result(None)

    def _write(self, b: _Batch) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            if b.seq is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(b.seq),))
            if b.offers:
                db.executemany(
                    "INSERT OR REPLACE INTO offers VALUES (?, ?, ?, ?)",
                    [(o.id, o.seq, o.status, _enc.encode(o)) for o in b.offers],
                )
            if b.maker_trades:
                db.executemany(
                    "INSERT OR REPLACE INTO maker_trades (id, state, created_at, body, party) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (t.terms.id, t.state.value, t.terms.created_at, _enc.encode(t), t.terms.taker)
                        for t in b.maker_trades
                    ],
                )
            if b.taker_trades:
                db.executemany(
                    "INSERT OR REPLACE INTO taker_trades (id, state, updated_at, body, party) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (t.take.trade_id, t.state.value, t.updated_at, _enc.encode(t), t.maker)
                        for t in b.taker_trades
                    ],
                )
            if b.contacts:
                db.executemany("INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)", b.contacts)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def delete_maker_trades(self, trade_ids: list[str]) -> None:
        """Forget maker-side trades (released reservations nobody can ask about any more)."""
        if trade_ids:
            self.db.executemany("DELETE FROM maker_trades WHERE id = ?", [(t,) for t in trade_ids])

    def add_message(self, msg: Chat | GrapevineNote, direction: str, received_at: int, keep: int) -> bool:
        """Store a chat message once (False if it was already stored: a duplicate delivery), keeping
        only the latest ``keep`` messages by arrival."""
        kind = "grapevine" if isinstance(msg, GrapevineNote) else "otc"
        row = (msg.id, direction, msg.ts, _enc.encode(msg), received_at, kind)
        cur = self.db.execute(INSERT_MESSAGE, row)
        if cur.rowcount != 1:
            return False
        self.db.execute(
            "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages ORDER BY received_at DESC, "
            "rowid DESC LIMIT -1 OFFSET ?)",
            (keep,),
        )
        return True

    def add_contact(self, peer_id: str, name: str, now: int) -> None:
        """Remember a peer we chatted or traded with under the name it used (see chat.py: names)."""
        self.db.execute("INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)", (peer_id, name, now))

    def prune_contacts(self, keep: int) -> None:
        """Keep the ``keep`` most recently seen contacts."""
        self.db.execute(
            "DELETE FROM contacts WHERE peer_id IN (SELECT peer_id FROM contacts ORDER BY last_seen DESC "
            "LIMIT -1 OFFSET ?)",
            (keep,),
        )

    def contacts_named(self, name: str) -> list[str]:
        rows = self.db.execute("SELECT peer_id FROM contacts WHERE lower(name) = lower(?)", (name,))
        return [str(row[0]) for row in rows]

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # reads -------------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def seq(self) -> int:
        """The last seq signed: the meta record, floored by every offer stored (seqs never go back)."""
        value = self.meta("seq")
        (top,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM offers").fetchone()
        return max(int(value) if value else 0, int(top))

    def offers(self) -> list[Offer]:
        sql = "SELECT body FROM offers ORDER BY seq"
        return [_offer.decode(row[0]) for row in self.db.execute(sql)]

    def open_offers(self) -> list[Offer]:
        sql = "SELECT body FROM offers WHERE status = 'open' ORDER BY seq"
        return [_offer.decode(row[0]) for row in self.db.execute(sql)]

    def maker_trades(self) -> list[MakerTrade]:
        rows = self.db.execute("SELECT body FROM maker_trades ORDER BY created_at")
        return [_maker.decode(row[0]) for row in rows]

    def maker_trades_to_load(self, recent: int) -> list[MakerTrade]:
        """What a restarting desk needs in memory: every live reservation, and the latest ``recent``
        settled trades (the rest are recalled one by one if ever asked about)."""
        live = self.db.execute("SELECT body FROM maker_trades WHERE state = 'reserved'").fetchall()
        settled = self.db.execute(
            "SELECT body FROM maker_trades WHERE state != 'reserved' ORDER BY created_at DESC LIMIT ?",
            (recent,),
        ).fetchall()
        return [_maker.decode(row[0]) for row in live + settled[::-1]]

    def maker_trade(self, trade_id: str) -> MakerTrade | None:
        row = self.db.execute("SELECT body FROM maker_trades WHERE id = ?", (trade_id,)).fetchone()
        return None if row is None else _maker.decode(row[0])

    def offer(self, offer_id: str) -> Offer | None:
        row = self.db.execute("SELECT body FROM offers WHERE id = ?", (offer_id,)).fetchone()
        return None if row is None else _offer.decode(row[0])

    def taker_trades(self, *, open_only: bool = False) -> list[TakerTrade]:
        """Our takes, oldest first; ``open_only``: those not yet done or failed."""
        where = " WHERE state IN ('requested', 'reserved')" if open_only else ""
        return [
            _taker.decode(row[0])
            for row in self.db.execute(f"SELECT body FROM taker_trades{where} ORDER BY updated_at")
        ]

    def recent_taker_trades(self, limit: int) -> list[TakerTrade]:
        """Our latest ``limit`` takes, newest first, whatever became of them."""
        rows = self.db.execute("SELECT body FROM taker_trades ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [_taker.decode(row[0]) for row in rows]

    def messages(self, limit: int = 500) -> list[tuple[str, Chat | GrapevineNote, int]]:
        """The latest ``limit`` messages, oldest first, by when we received (or sent) them: a sender's
        own timestamp is never trusted for order. Each: (direction, message, received_at)."""
        rows = self.db.execute(
            "SELECT direction, body, received_at, kind FROM messages ORDER BY received_at DESC, rowid DESC "
            "LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            (str(d), _note.decode(b) if k == "grapevine" else _chat.decode(b), int(r))
            for d, b, r, k in reversed(rows)
        ]

    # --- recovery (issue 8 item 7; node/recovery.py) ------------------------------------------------
    def checkpoint(self) -> None:
        """Move everything committed into the main file (the start-up markers must not live only in
        the WAL, or losing the WAL would lose the evidence that it was lost)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def is_initialised(self) -> bool:
        """Whether this store was ever used by a peer (any meta record, offer or trade)."""
        return any(
            self.db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
            for table in ("meta", "offers", "maker_trades", "taker_trades")
        )

    def taker_trade(self, trade_id: str) -> TakerTrade | None:
        row = self.db.execute("SELECT body FROM taker_trades WHERE id = ?", (trade_id,)).fetchone()
        return None if row is None else _taker.decode(row[0])

    def done_trades_with(
        self, peer_id: str, before: tuple[int, str] | None, limit: int
    ) -> list[tuple[MakerTrade | TakerTrade, int, bool]]:
        """Our done trades with ``peer_id`` (as maker, of offers or of quotes, or as taker), newest first
        by (time, id), those before the cursor only; each with its time (a maker's trade: when it was
        made; a taker's: when it was done, which never changes after) and whether it is the quote
        desk's. Indexed by the other party (the quote desk's, fewer, by a scan)."""
        at, tid = before if before is not None else (2**63 - 1, "")
        maker = self.db.execute(
            "SELECT body, created_at FROM maker_trades WHERE state = 'done' AND party = ? AND "
            "(created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?",
            (peer_id, at, tid, limit),
        ).fetchall()
        taker = self.db.execute(
            "SELECT body, updated_at FROM taker_trades WHERE state = 'done' AND party = ? AND "
            "(updated_at, id) < (?, ?) ORDER BY updated_at DESC, id DESC LIMIT ?",
            (peer_id, at, tid, limit),
        ).fetchall()
        quotes = self.db.execute(
            "SELECT body, created_at FROM quote_trades WHERE state = 'done' AND "
            "json_extract(CAST(body AS TEXT), '$.terms.taker') = ? AND (created_at, id) < (?, ?) "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (peer_id, at, tid, limit),
        ).fetchall()
        rows: list[tuple[MakerTrade | TakerTrade, int, bool]] = [
            (_maker.decode(b), int(c), False) for b, c in maker
        ]
        rows += [(_taker.decode(b), int(c), False) for b, c in taker]
        rows += [(_maker.decode(b), int(c), True) for b, c in quotes]
        rows.sort(key=lambda r: (r[1], _trade_id(r[0])), reverse=True)
        return rows[:limit]


def _trade_id(trade: MakerTrade | TakerTrade) -> str:
    return trade.terms.id if isinstance(trade, MakerTrade) else trade.take.trade_id


# --- requests for quote, settlement, notifications (issue 12) ------------------------------------------
# Their own tables on the same connection (and file): one transaction may span them and the trading
# tables, and nothing above needs to know them.
RFQ_SCHEMA = """
CREATE TABLE IF NOT EXISTS rfq_sent (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rfq_quotes_in (id TEXT PRIMARY KEY, rfq_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS rfq_quotes_in_by_rfq ON rfq_quotes_in (rfq_id);
CREATE TABLE IF NOT EXISTS quote_offers (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,
                                         body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS quotes_out (id TEXT PRIMARY KEY, rfq_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS quote_trades (id TEXT PRIMARY KEY, state TEXT NOT NULL,
                                         created_at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS quote_trades_by_state ON quote_trades (state, created_at);
CREATE TABLE IF NOT EXISTS quoting_rules (pair TEXT NOT NULL, side TEXT NOT NULL, body BLOB NOT NULL,
                                          PRIMARY KEY (pair, side));
"""
SETTLEMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS settlements (id TEXT PRIMARY KEY, state TEXT NOT NULL, due_at INTEGER,
                                        overdue INTEGER NOT NULL, unacked INTEGER NOT NULL,
                                        body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS settlements_due ON settlements (due_at) WHERE due_at IS NOT NULL AND overdue = 0;
CREATE INDEX IF NOT EXISTS settlements_unacked ON settlements (unacked) WHERE unacked = 1;
"""
WEBHOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, url TEXT NOT NULL, created_at INTEGER NOT NULL);
"""

_request = msgspec.json.Decoder(QuoteRequest)
_quote = msgspec.json.Decoder(Quote)
_rule = msgspec.json.Decoder(Rule)
_record = msgspec.json.Decoder(Record)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class RfqTables:
    """Our requests and the quotes they got; the quote desk (its offers, trades and seq), the quotes
    we gave, our quoting rules."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(RFQ_SCHEMA)

    def save(
        self,
        *,
        seq: int | None = None,
        requests: Iterable[QuoteRequest] = (),
        received: Iterable[Quote] = (),
        offers: Iterable[Offer] = (),
        given: Iterable[Quote] = (),
        trades: Iterable[MakerTrade] = (),
        rules: Iterable[Rule] = (),
        removed_rules: Iterable[tuple[str, str]] = (),
    ) -> None:
        with transaction(self.db) as db:
            if seq is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('quote_seq', ?)", (str(seq),))
            db.executemany(
                "INSERT OR REPLACE INTO rfq_sent VALUES (?, ?, ?)",
                [(r.quote_req_id, r.created_at, _enc.encode(r)) for r in requests],
            )
            db.executemany(
                "INSERT OR IGNORE INTO rfq_quotes_in VALUES (?, ?, ?)",
                [(q.quote_id, q.quote_req_id, _enc.encode(q)) for q in received],
            )
            db.executemany(
                "INSERT OR REPLACE INTO quote_offers VALUES (?, ?, ?, ?)",
                [(o.id, o.seq, o.status, _enc.encode(o)) for o in offers],
            )
            db.executemany(
                "INSERT OR REPLACE INTO quotes_out VALUES (?, ?, ?)",
                [(q.quote_id, q.quote_req_id, _enc.encode(q)) for q in given],
            )
            db.executemany(
                "INSERT OR REPLACE INTO quote_trades VALUES (?, ?, ?, ?)",
                [(t.terms.id, t.state.value, t.terms.created_at, _enc.encode(t)) for t in trades],
            )
            db.executemany(
                "INSERT OR REPLACE INTO quoting_rules VALUES (?, ?, ?)",
                [(r.pair, r.side, _enc.encode(r)) for r in rules],
            )
            db.executemany("DELETE FROM quoting_rules WHERE pair = ? AND side = ?", list(removed_rules))

    # requester side
    def sent(self, limit: int) -> list[QuoteRequest]:
        rows = self.db.execute("SELECT body FROM rfq_sent ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_request.decode(r[0]) for r in rows.fetchall()[::-1]]

    def request(self, rfq_id: str) -> QuoteRequest | None:
        row = self.db.execute("SELECT body FROM rfq_sent WHERE id = ?", (rfq_id,)).fetchone()
        return None if row is None else _request.decode(row[0])

    def received(self, rfq_ids: Iterable[str]) -> list[Quote]:
        ids = list(rfq_ids)
        out: list[Quote] = []
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            sql = f"SELECT body FROM rfq_quotes_in WHERE rfq_id IN ({','.join('?' * len(part))})"
            out += [_quote.decode(r[0]) for r in self.db.execute(sql, part)]
        return out

    def accepted(self, quote_ids: Iterable[str]) -> dict[str, Decimal]:
        """What we took of each of these quotes in done trades (a quote is the offer id of its takes)."""
        ids, out = list(quote_ids), dict[str, Decimal]()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            sql = (
                "SELECT json_extract(CAST(body AS TEXT), '$.take.offer_id'), "
                "json_extract(CAST(body AS TEXT), '$.take.amount') FROM taker_trades "
                f"WHERE state = 'done' AND json_extract(CAST(body AS TEXT), '$.take.offer_id') IN "
                f"({','.join('?' * len(part))})"
            )
            for quote_id, amount in self.db.execute(sql, part):
                out[quote_id] = out.get(quote_id, Decimal(0)) + Decimal(amount)
        return out

    def received_quote(self, quote_id: str) -> Quote | None:
        row = self.db.execute("SELECT body FROM rfq_quotes_in WHERE id = ?", (quote_id,)).fetchone()
        return None if row is None else _quote.decode(row[0])

    # maker side: the quote desk
    def seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'quote_seq'").fetchone()
        (top,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM quote_offers").fetchone()
        return max(int(row[0]) if row else 0, int(top))

    def open_offers(self) -> list[Offer]:
        sql = "SELECT body FROM quote_offers WHERE status = 'open' ORDER BY seq"
        return [_offer.decode(r[0]) for r in self.db.execute(sql)]

    def offer(self, quote_id: str) -> Offer | None:
        row = self.db.execute("SELECT body FROM quote_offers WHERE id = ?", (quote_id,)).fetchone()
        return None if row is None else _offer.decode(row[0])

    def given(self, quote_ids: Iterable[str] | None = None, *, rfq_id: str | None = None) -> list[Quote]:
        if rfq_id is not None:
            rows = self.db.execute("SELECT body FROM quotes_out WHERE rfq_id = ?", (rfq_id,)).fetchall()
            return [_quote.decode(r[0]) for r in rows]
        out: list[Quote] = []
        ids = list(quote_ids or ())
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            sql = f"SELECT body FROM quotes_out WHERE id IN ({','.join('?' * len(part))})"
            out += [_quote.decode(r[0]) for r in self.db.execute(sql, part)]
        return out

    def trades_to_load(self, recent: int) -> list[MakerTrade]:
        live = self.db.execute("SELECT body FROM quote_trades WHERE state = 'reserved'").fetchall()
        settled = self.db.execute(
            "SELECT body FROM quote_trades WHERE state != 'reserved' ORDER BY created_at DESC LIMIT ?",
            (recent,),
        ).fetchall()
        return [_maker.decode(r[0]) for r in live + settled[::-1]]

    def delete_trades(self, trade_ids: list[str]) -> None:
        if trade_ids:
            self.db.executemany("DELETE FROM quote_trades WHERE id = ?", [(t,) for t in trade_ids])

    def trade(self, trade_id: str) -> MakerTrade | None:
        row = self.db.execute("SELECT body FROM quote_trades WHERE id = ?", (trade_id,)).fetchone()
        return None if row is None else _maker.decode(row[0])

    def done_trades(self) -> list[MakerTrade]:
        rows = self.db.execute("SELECT body FROM quote_trades WHERE state = 'done' ORDER BY created_at")
        return [_maker.decode(r[0]) for r in rows]

    def rules(self) -> list[Rule]:
        return [_rule.decode(r[0]) for r in self.db.execute("SELECT body FROM quoting_rules")]


class SettlementTables:
    """One row per done trade: its settlement record, with the columns the background loop scans."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SETTLEMENT_SCHEMA)

    def save(self, rows: Iterable[tuple[Record, str, int | None, bool, bool]]) -> None:
        """(record, state, due_at, overdue, unacked) each, in one transaction."""
        with transaction(self.db) as db:
            db.executemany(
                "INSERT OR REPLACE INTO settlements VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.receipt.id, state, due, int(over), int(un), _enc.encode(r))
                    for r, state, due, over, un in rows
                ],
            )

    def get(self, trade_id: str) -> Record | None:
        row = self.db.execute("SELECT body FROM settlements WHERE id = ?", (trade_id,)).fetchone()
        return None if row is None else _record.decode(row[0])

    def all(self, *, open_only: bool = False, limit: int = 1000) -> list[Record]:
        where = "WHERE state NOT IN ('settled', 'disputed')" if open_only else ""
        sql = f"SELECT body FROM settlements {where} ORDER BY rowid DESC LIMIT ?"
        return [_record.decode(r[0]) for r in self.db.execute(sql, (limit,)).fetchall()[::-1]]

    def due(self, now: int, limit: int) -> list[Record]:
        sql = "SELECT body FROM settlements WHERE due_at IS NOT NULL AND overdue = 0 AND due_at <= ? LIMIT ?"
        return [_record.decode(r[0]) for r in self.db.execute(sql, (now, limit))]

    def unacked(self, limit: int) -> list[Record]:
        sql = "SELECT body FROM settlements WHERE unacked = 1 LIMIT ?"
        return [_record.decode(r[0]) for r in self.db.execute(sql, (limit,))]

    def next_due(self) -> int | None:
        """The earliest deadline not yet flagged (both indexed: the background loop's idle wake-up)."""
        sql = "SELECT min(due_at) FROM settlements WHERE due_at IS NOT NULL AND overdue = 0"
        row = self.db.execute(sql).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def any_unacked(self) -> bool:
        return self.db.execute("SELECT 1 FROM settlements WHERE unacked = 1 LIMIT 1").fetchone() is not None

    def taker_trade(self, trade_id: str) -> TakerTrade | None:
        row = self.db.execute("SELECT body FROM taker_trades WHERE id = ?", (trade_id,)).fetchone()
        return None if row is None else _taker.decode(row[0])

    def missing(self) -> list[MakerTrade | TakerTrade]:
        """Done trades with no settlement row yet (rows are added just after a trade is done; a crash
        in between leaves these)."""
        out: list[MakerTrade | TakerTrade] = []
        for table, decoder in (("maker_trades", _maker), ("quote_trades", _maker)):
            sql = f"SELECT body FROM {table} WHERE state = 'done' AND id NOT IN (SELECT id FROM settlements)"
            out += [decoder.decode(r[0]) for r in self.db.execute(sql)]
        sql = "SELECT body FROM taker_trades WHERE state = 'done' AND id NOT IN (SELECT id FROM settlements)"
        out += [_taker.decode(r[0]) for r in self.db.execute(sql)]
        return out


class WebhookTables:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(WEBHOOK_SCHEMA)

    def add(self, hook_id: str, url: str, created_at: int) -> None:
        self.db.execute("INSERT INTO webhooks VALUES (?, ?, ?)", (hook_id, url, created_at))

    def remove(self, hook_id: str) -> bool:
        return self.db.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,)).rowcount == 1

    def all(self) -> list[tuple[str, str, int]]:
        rows = self.db.execute("SELECT id, url, created_at FROM webhooks ORDER BY created_at")
        return [(str(i), str(u), int(c)) for i, u, c in rows]
