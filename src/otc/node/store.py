"""SQLite persistence for one peer: its own offers, its trades (as maker and as taker), its chat log,
and the last seq it signed. Every desk decision is written in one transaction before it is answered.

WAL with ``synchronous=NORMAL``: a committed transaction survives the process being killed (the data is
in the OS page cache); only an OS crash or power loss may lose the last commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ..core.messages import Chat, Offer
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
CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, direction TEXT NOT NULL, ts INTEGER NOT NULL,
                                     body BLOB NOT NULL);
"""

_enc = msgspec.json.Encoder()
_offer = msgspec.json.Decoder(Offer)
_maker = msgspec.json.Decoder(MakerTrade)
_taker = msgspec.json.Decoder(TakerTrade)
_chat = msgspec.json.Decoder(Chat)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # writes ------------------------------------------------------------------------------------------
    def save(
        self,
        *,
        seq: int | None = None,
        offers: Iterable[Offer] = (),
        maker_trades: Iterable[MakerTrade] = (),
        taker_trades: Iterable[TakerTrade] = (),
    ) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            if seq is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))
            db.executemany(
                "INSERT OR REPLACE INTO offers VALUES (?, ?, ?, ?)",
                [(o.id, o.seq, o.status, _enc.encode(o)) for o in offers],
            )
            db.executemany(
                "INSERT OR REPLACE INTO maker_trades VALUES (?, ?, ?, ?)",
                [(t.terms.id, t.state.value, t.terms.created_at, _enc.encode(t)) for t in maker_trades],
            )
            db.executemany(
                "INSERT OR REPLACE INTO taker_trades VALUES (?, ?, ?, ?)",
                [(t.take.trade_id, t.state.value, t.updated_at, _enc.encode(t)) for t in taker_trades],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def add_message(self, msg: Chat, direction: str) -> bool:
        """Store a chat message once; False if it was already stored (a duplicate delivery)."""
        row = (msg.id, direction, msg.ts, _enc.encode(msg))
        cur = self.db.execute("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)", row)
        return cur.rowcount == 1

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

    def taker_trades(self) -> list[TakerTrade]:
        return [
            _taker.decode(row[0])
            for row in self.db.execute("SELECT body FROM taker_trades ORDER BY updated_at")
        ]

    def messages(self, limit: int = 500) -> list[tuple[str, Chat]]:
        rows = self.db.execute(
            "SELECT direction, body FROM messages ORDER BY ts DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(str(d), _chat.decode(b)) for d, b in reversed(rows)]
