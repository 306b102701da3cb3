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

from ..core.messages import Chat, GrapevineNote, Offer
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
]
INDEXES = """
CREATE INDEX IF NOT EXISTS messages_by_arrival ON messages (received_at);
CREATE INDEX IF NOT EXISTS contacts_by_time ON contacts (last_seen);
"""

INSERT_MESSAGE = """INSERT OR IGNORE INTO messages (id, direction, ts, body, received_at, kind)
                    VALUES (?, ?, ?, ?, ?, ?)"""

_enc = msgspec.json.Encoder()
_offer = msgspec.json.Decoder(Offer)
_maker = msgspec.json.Decoder(MakerTrade)
_taker = msgspec.json.Decoder(TakerTrade)
_chat = msgspec.json.Decoder(Chat)
_note = msgspec.json.Decoder(GrapevineNote)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        for table, column, sql in MIGRATIONS:
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self.db.execute(sql)
        self.db.executescript(INDEXES)

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
        contacts: Iterable[tuple[str, str, int]] = (),
    ) -> None:
        """One transaction: a decision and everything it changed (``contacts``: (peer id, name, when))."""
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
            db.executemany("INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)", contacts)
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
