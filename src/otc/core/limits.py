"""Every bound a peer enforces, in one place, each with the reason for its number.

A peer talks to strangers: anything a stranger can make it hold (memory, disk, descriptors, time) has a
bound here. Sections are by concern; add new limits to the section they belong to, with their reason.
Sizes are bytes, times milliseconds, rates per second unless the name says otherwise. A test can import
the number it attacks.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

# --- reservations: what one taker may hold at a maker (issue 8 item 3) --------------------------------------
# A reservation holds liquidity until the taker's confirm, which an honest taker sends automatically within
# a round trip; holding and never confirming is free, so a maker bounds what each taker id may hold.

NEW_TAKER_SHARE: Final = Decimal("0.2")
NEW_TAKER_HOLDS: Final = 2
"""A taker that has not completed a trade with this maker (or has a strike since) gets at most 20 % of an
offer's amount, in at most two reservations, actually *held* for it at once: one key that never confirms
keeps at most a fifth of an offer out of reach. Beyond that its takes are still answered, but hold
nothing: its confirm is filled if the amount is still there (an honest newcomer confirms within a round
trip, so it rarely notices)."""

NEW_TAKER_RESERVATIONS: Final = 8
"""Reservations (held or not) a new taker may have pending at one maker: bounds the records one key
can make a maker keep, well above what a sweep (one offer at a time) or a bot needs."""

KNOWN_TAKER_RESERVATIONS_PER_OFFER: Final = 8
KNOWN_TAKER_RESERVATIONS: Final = 32
"""Takers with a completed trade confirm within milliseconds; these bound a busy bot's concurrency, not
its size (a known taker may hold a whole offer)."""

NEW_TAKER_TAKES_PER_MINUTE: Final = 600
"""Reservations made for new takers, all together, per minute at one maker (bursts of a tenth of it):
fresh keys are free, so this, with how long released reservations are kept, bounds what a storm of tiny
takes can make a maker store (about 1,200 records at any time). Known takers are not counted."""

MAX_LIVE_RESERVATIONS: Final = 4096
"""Live reservations at one maker across all takers: memory and the timer's work per tick stay bounded
even against many fresh keys (each of which is a new taker with the limits above)."""

STRIKES_TO_SUSPEND: Final = 3
STRIKE_WINDOW_MS: Final = 10 * 60_000
SUSPEND_MS: Final = 10 * 60_000
MAX_SUSPEND_MS: Final = 24 * 3600_000
"""A reservation that expires unconfirmed is a strike against its taker (and makes it new again). Three
strikes within ten minutes suspend the taker for ten minutes, doubling with each suspension up to a day:
a flaky honest taker loses little, a griefer is shut out after three windows."""

TAKERS_TRACKED: Final = 10_000
"""Taker records (strikes, completed trades) a maker keeps, least recently seen dropped first: an
attacker with many keys can only push its own keys (and the oldest honest ones) out."""

TAKE_MAX_AGE_MS: Final = 60_000
"""A take dated more than a minute from the maker's clock (either way) is refused: a taker gives up on
an unanswered take after 10 s, so an older one is a replay, which could otherwise earn the honest
taker strikes once its released record is forgotten."""

KEEP_RELEASED_MS: Final = 2 * TAKE_MAX_AGE_MS
"""Released reservations are kept (in memory and SQLite) this long for idempotent answers, then
deleted: a storm of tiny takes that are never confirmed leaves nothing behind. Longer than the take
window, so any take still accepted finds its earlier record."""

# --- reaching makers (issue 8 item 6) -----------------------------------------------------------------------
UNREACHABLE_S: Final = 10.0
MAX_UNREACHABLE_S: Final = 300.0
"""A peer that did not answer a request (timeout, refused connection) is unreachable for 10 s, doubling
with each failure in a row up to 5 minutes; any answer clears it. Its offers are shown as such and
skipped by sweeps, so one silent maker costs a sweep one timeout, not one per offer."""

PROBE_TIMEOUT_S: Final = 1.0
ANSWERED_RECENTLY_S: Final = 30.0
PROBE_AHEAD: Final = 16
"""Before taking from makers it has not heard answer in the last 30 s, a sweep pings the makers of its
next 16 offers all at once and skips those that do not answer within a second: silent makers cost a
sweep one second in all, instead of a take timeout each (a 1 BTC sweep over four fake offers took 40 s)."""

SWEEP_DEADLINE_S: Final = 30.0
"""What a sweep may spend in all unless the caller says otherwise: every take within it gets at most
what is left, so no number of slow makers makes a sweep hang."""

PEERS_TRACKED: Final = 10_000
"""Per-peer records kept for reachability and rate limits (least recently used dropped first)."""

# --- chat (issue 8 items 5 and 9) ---------------------------------------------------------------------------
CHAT_TEXT_MAX: Final = 2000
CHAT_PER_SENDER_PER_MINUTE: Final = 30
CHAT_BURST: Final = 10
"""A person types a few lines a minute; 30 a minute with bursts of 10 leaves room for a bot and
refuses a flood (3,500 messages a second were accepted before)."""

CHAT_PER_MINUTE: Final = 600
"""All senders together: bounds how fast fresh keys can fill the inbox and the disk."""

INBOX_MAX: Final = 10_000
"""Messages kept (both directions), by arrival; older ones are deleted. Ordered by our receive time, so
messages dated in the future cannot push real ones out of view."""

CONTACTS_MAX: Final = 10_000
"""Peers remembered by the names they used with us (chat sent, trades): a name we know for one id is
never silently given to another (see chat.py)."""

# --- control API: what a local process or a web page can make the peer hold (issue 8 items 1 and 5) ------
# The control API listens on loopback only, but every process on the machine (any user's) and every web
# page in the trader's browser can connect to it. Until a request proves it holds the token, it may cost
# the peer only these bounded amounts, and it must never crowd out the owner's own requests. Enforced by
# api/server.py and api/auth.py; each bound is attacked by a test in tests/otc/test_api_limits.py.

KiB: Final = 1024

API_MAX_CONNECTIONS: Final = 256
"""Open control-API connections at once (clamped to a quarter of the process's descriptor limit, see
``API_FD_SHARE``). The owner needs a handful (one per CLI command, two for ``otc watch``, six for a
browser tab, a few dozen for a bot); 1,100 idle sockets once exhausted the descriptors so the trader
could not even cancel. When the cap is reached, the connection idle (or unauthenticated) the longest is
closed to make room, so a flood of idle or trickling sockets cannot lock the owner out; only when every
connection is busy with an authenticated request is the new one answered 503 and closed at once."""

API_FD_SHARE: Final = 4
"""The control API uses at most 1/4 of the descriptor limit; the RPC server's cap is 1/2 (grenache
limits), and the rest stays for outgoing RPC, the Grape link and SQLite: a flood of either port cannot
starve the other or the peer's own outgoing connections."""

API_IDLE_TIMEOUT_S: Final = 5.0
"""A connection with no request under way is closed after 5 s of silence (from its opening or its last
response): clients on loopback send at once or reuse a connection within milliseconds (Node's and
uvicorn's keep-alive timeout is the same 5 s). Idle sockets then cost a slot for 5 s at most."""

API_HEAD_TIMEOUT_S: Final = 5.0
"""From a request's first byte to the end of its headers: a deadline, not an inactivity timer, so a
slowloris client trickling one header byte a second is answered 408 and closed after 5 s. A local
client writes its whole head in one packet."""

API_BODY_TIMEOUT_S: Final = 5.0
"""From the end of the headers to the end of the body (at most ``API_MAX_BODY_BYTES``): a stalled
upload is answered 408 and closed."""

API_MAX_URL_BYTES: Final = 8 * KiB
"""The request target, counted as llhttp delivers it (``on_url``): longer is 414 and close (a 64 MiB
URL was once read into memory). The longest real target is a book query, under 100 bytes; 8 KiB is
nginx's default line limit."""

API_MAX_HEAD_BYTES: Final = 16 * KiB
"""The whole request head (request line and headers): more is 431 and close (73 MB of headers were once
read into memory). Counted as the bytes are fed to the parser, since httptools buffers a header value
whole before it reports it; a browser's head is under 2 KiB; 16 KiB is Node's default."""

API_MAX_HEADERS: Final = 100
"""Header lines per request (a browser sends about 15): a guard against many tiny headers."""

API_MAX_BODY_BYTES: Final = 64 * KiB
"""One request body; a declared length above it is answered 413 at once, without reading the body. The
largest real body (a chat message of 2,000 characters, escaped) is under 16 KiB."""

API_MAX_PIPELINED: Final = 8
"""Requests of one connection parsed and waiting for their turn (HTTP/1.1 pipelining); beyond it the
server stops reading that connection until answers go out (backpressure, not an error)."""

API_LINGER_S: Final = 2.0
API_LINGER_BYTES: Final = 256 * KiB
"""After refusing a request whose client may still be sending, the server half-closes and reads and
discards for up to 2 s or 256 KiB before closing, so the refusal is not destroyed by a reset."""

API_MAX_EVENT_STREAMS: Final = 32
"""Concurrent ``/api/events`` subscribers (each costs a queue of up to 1,000 events and a slot in every
event fan-out): a watch or a desk tab uses one; more are answered 503."""

API_MAX_STREAM_BACKLOG: Final = 1024 * KiB
"""Bytes of events a subscriber may leave unread before the stream is cut (a stalled watcher)."""

API_MAX_SESSIONS: Final = 16
"""Browser sessions (cookies) alive at once; a new login beyond it ends the oldest session. One trader
uses one or two browsers; the bound keeps a script that logs in in a loop from growing memory."""

API_SESSION_TTL_S: Final = 24 * 3600
"""A session lasts a trading day from its login, then the desk asks for the token again."""
# --- requests for quote (issue 12) --------------------------------------------------------------------------
# Rates are per sending key: keys are free, so a rate bounds what one key costs, the caps bound memory.

RFQ_PER_PEER_PER_MIN: Final = 30
"""Requests for quote a maker takes from one requester a minute (bursts of as many): a desk asks a few
times a minute, a bot more; each costs the maker a signature check and perhaps a signed, stored quote.
Every request counts, refused or not."""

RFQ_MAX_OPEN_IN: Final = 2000
"""Open requests a maker holds from all requesters: each is ~600 bytes and lives at most
RFQ_MAX_TTL_MS, so ~1.2 MB at worst."""

RFQ_MAX_OPEN_PER_PEER: Final = 5
"""Open requests a maker holds from one requester: a desk compares a few at a time; without it one key
could hold 30 x 2 minutes' worth of the slots above."""

RFQ_MAX_OPEN_OUT: Final = 50
"""A requester's own open requests: every open request takes quotes, so this bounds those too."""

RFQ_DEFAULT_TTL_MS: Final = 10_000
RFQ_MAX_TTL_MS: Final = 120_000
"""How long a request takes quotes: OTC quotes come in seconds (AirSwap's default is 60 s)."""

RFQ_FANOUT_CONCURRENCY: Final = 32
RFQ_SEND_TIMEOUT_S: Final = 1.0
"""A request goes to every live peer, 32 at once, 1 s each, failures ignored: a market of hundreds with
a few dead peers is asked within about a second, and no slow peer holds it up."""

MAX_CLOCK_SKEW_MS: Final = 30_000
"""How far in our future a request, quote or settlement step may be dated (clocks differ)."""

# --- quotes (issue 12) --------------------------------------------------------------------------------------
QUOTES_PER_PEER_PER_MIN: Final = 120
"""Quotes a requester takes from one maker a minute (bursts of as many): a maker quotes each open
request at most QUOTES_PER_MAKER_PER_RFQ times."""

QUOTES_PER_RFQ: Final = 100
QUOTES_PER_MAKER_PER_RFQ: Final = 5
"""Quotes kept per request (the best of 100 makers is plenty), and per maker per request (a re-quote
improves a price; five is generous). Only peers the request was sent to may quote at all."""

QUOTE_DEFAULT_TTL_MS: Final = 5_000
QUOTE_MAX_TTL_MS: Final = 60_000
"""A firm quote binds its maker for its lifetime: seconds, as on every RFQ venue (FIX ValidUntilTime)."""

QUOTES_MAX_OPEN: Final = 10_000
"""Open quotes a maker holds (private offers of its quote desk, with their reservations): bounds its
memory and the balance bookkeeping scanned when it quotes."""

QUOTES_KEEP_CLOSED: Final = 1000
"""Closed quotes (and a requester's closed requests) kept in memory for retries; SQLite has them all."""

QUOTING_RULES_MAX: Final = 32
"""Quoting rules: at most one per pair and side (5 pairs x 2 sides today), room for more pairs."""

# --- settlement (issue 12) ----------------------------------------------------------------------------------
SETTLE_SYNCS_PER_PEER_PER_MIN: Final = 240
"""Settlement exchanges a peer answers from one counterparty a minute (bursts of as many): an honest
one sends one per step and retries with backoff."""

SETTLE_MAX_STEPS: Final = 16
SETTLE_NOTE_MAX: Final = 200
"""Steps in one exchange (four of the happy path and a dispute each, with room), and a step's note."""

SETTLE_BATCH: Final = 200
SETTLE_RETRY_MAX_S: Final = 10.0
"""Settlements the background loop re-sends or checks per pass; an unanswered exchange is retried
from 0.5 s doubling up to 10 s, so a returning peer is brought level within seconds."""

# --- notifications (issue 12) -------------------------------------------------------------------------------
WEBHOOKS_MAX: Final = 8
WEBHOOK_URL_MAX: Final = 2000
"""Webhook endpoints per peer (a bot, a phone bridge, a log), each with its own queue and worker."""

WEBHOOK_QUEUE: Final = 1000
"""Undelivered notifications queued per webhook: a receiver down for a while loses the oldest (counted),
never slows trading, and holds at most ~1000 x 1 kB."""

WEBHOOK_ATTEMPTS: Final = 8
WEBHOOK_BACKOFF_MAX_S: Final = 30.0
WEBHOOK_TIMEOUT_S: Final = 5.0
"""A delivery is retried with exponential backoff (0.5 s, 1 s, 2 s ... up to 30 s) eight times, each
attempt given 5 s, then that one notification is given up (counted)."""

# --- recovery of a peer's own history (issue 8 item 7; core/recovery.py) -----------------------------------
CHECK_PEERS: Final = 8
CHECK_TIMEOUT_S: Final = 2.0
CHECK_JOIN_WAIT_S: Final = 3.0
"""At every start with a key it had before, a peer asks up to 8 peers (the most recently heard first) what
they hold of it, and waits at most 2 s in all: enough to catch a store that is behind (every live peer
holds our latest head), short enough that silent or slow peers cannot hold the control API up. It learns
whom to ask from the late join (the heads in its snapshot), waiting for the join at most 3 s: a join from a
live peer takes well under a second, and membership of the overlay waits for the check, so a slow join
must not hold it up."""

RECOVER_PEERS: Final = 256
RECOVER_CONCURRENCY: Final = 16
"""``--recover`` asks every peer it knows (up to 256, 16 at a time), since only the counterparties of our
trades hold their receipts; beyond 256 peers a receipt held only by an unasked counterparty is missed."""

RECOVER_PAGES_PER_PEER: Final = 1000
"""Receipts pages ``--recover`` reads from one peer (a million trades with it); it also stops at a page that
brings no receipt of ours it did not have (the end, or a peer repeating or forging): nobody can keep a
recovery paging forever."""

RECOVER_RETRY_S: Final = 5.0
"""``--recover`` with nobody answering waits and asks again: without one answer we cannot know which seqs
we signed, so trading stays refused rather than risk reusing one."""

SEQ_MARGIN: Final = 1000
"""After a loss the desk's seq jumps this far past the highest seq of ours the network showed: seqs are
free (2**53), and the margin covers updates the peers we asked may have missed (pushes in flight when the
store was lost), so a seq, and an offer id derived from one, is never signed twice."""

HELD_OFFERS_MAX: Final = 1000
"""Offers of one maker sent in an answer to ``held`` (the highest seqs): evidence and the phantoms to cancel
explicitly; any others are dropped by every book anyway once our new, higher head reaches it (``sync``)."""

HELD_PER_MINUTE: Final = 600
"""``held`` requests answered per minute in all (bursts of a tenth): anyone may ask, the answer is public
(it is in every book), and this bounds the work strangers can make us do with them."""

RECEIPTS_PAGE_MAX: Final = 1000
RECEIPTS_PER_MINUTE: Final = 120
RECEIPTS_BURST: Final = 60
RECEIPTS_PER_MINUTE_ALL: Final = 600
"""A page of receipts is at most 1,000 (about 1 MB); each peer may ask for 120 pages a minute in bursts of
60 (2,400 receipts come back in 3 requests), all peers together 600 a minute (fresh keys are free, and a
page of quote trades costs a scan). Only the owner of a key can ask about it (signed requests)."""

SIGNED_REQUEST_MAX_AGE_MS: Final = 60_000
REPLAYS_TRACKED: Final = 10_000
"""A signed receipts request dated more than a minute from our clock is refused, and one seen before
within that minute too: a request captured on the way cannot be replayed to read someone's history."""

# --- the web desk (issue 11): login links and the page's event stream --------------------------------------
# The desk is served by the control API (api/routes.py, web/); these bound what its login links and its
# live stream may make the peer hold or send.

API_LOGIN_CODE_TTL_S: Final = 60
"""A login link (``otc web``) works once, within a minute of being printed: long enough to click it,
short enough that one left in a terminal's scrollback or a browser's history is worthless by then."""

API_MAX_LOGIN_CODES: Final = 8
"""Login codes waiting to be used; minting another ends the oldest. Only the token can mint them, so
this only keeps a script that mints in a loop from growing memory."""

API_EVENT_STATUS_S: Final = 3.0
"""Every event stream gets a small ``status`` event (the peer's clock, live peers, whether its Grape
answers) at least this often: it is the stream's keep-alive, and a page that hears nothing for a few
of them knows the peer is stopped or frozen even though the TCP connection looks open."""

API_EVENT_PEERS_CHECK_S: Final = 1.0
"""How often a stream compares the peers' state (alive, in sync, reachable) with what it last sent:
liveness changes with time, not with a message, so it is checked rather than signalled."""

API_RECEIPT_CHECKS_CACHED: Final = 20_000
"""Receipts whose two signatures the API has checked, remembered so that listing the trades again does
not verify them again (two Ed25519 checks, about 0.1 ms, per receipt)."""

# --- market replication: what a book accepts -----------------------------------------------------------
# Open offers of one maker a book holds. Ten times what an OTC desk quotes at once in practice; a maker at
# the cap costs every book ~0.5 MB and fits in one snapshot page. A head committing to more is refused
# (its maker is not shown at all), so a book never shows part of a list.
MAX_OFFERS_PER_MAKER = 1_000

# Makers a book holds (live, dead and equivocating alike). Twice the largest market we simulate (10,000
# peers); at ~1 KB of heads and views per maker a full book stays near 20 MB.
MAX_MAKERS = 20_000

# New makers (ids a book has never held) it accepts per source. Honest newcomers reach us through the
# overlay: a neighbour relays their heads (or a join reads them from a snapshot source we picked). A
# stranger pushing to us directly (not one of our neighbours) has no such role, so all strangers share one
# small allowance: this is what stops 200 fresh keys from filling every book in a minute.
NEW_MAKERS_STRANGER_BURST = 20
NEW_MAKERS_STRANGER_PER_MINUTE = 10
# A neighbour relays whole markets when we (or it) just joined: a 1,000-peer market starting at once has
# each peer learn ~1,000 makers through ~7 neighbours, so ~150 each; the burst covers three times that.
NEW_MAKERS_NEIGHBOUR_BURST = 500
NEW_MAKERS_NEIGHBOUR_PER_MINUTE = 120

# Offer updates accepted from strangers (all of them together). Honest updates come from neighbours;
# this only leaves room for an update relayed by a peer that still thinks it is our neighbour.
STRANGER_OFFERS_BURST = 1_000
STRANGER_OFFERS_PER_S = 100

# A book remembers a forgotten dead or equivocating maker's last (seq, ts) so a replayed old head cannot
# bring it back; ~150 bytes each, so 100,000 of them cost ~15 MB at most.
GRAVEYARD_SIZE = 100_000

# --- market replication: messages ------------------------------------------------------------------------
# Items in one gossip request. A maker republishing after a restart sends at most MAX_OFFERS_PER_MAKER
# offers; the rest of a flood is batched per neighbour, so this is two makers' worth.
MAX_GOSSIP_OFFERS = 2_000
MAX_GOSSIP_HEADS = 2_000
MAX_GOSSIP_DEATHS = 2_000
MAX_GOSSIP_PROOFS = 64

# Snapshot and pull replies: at most this many (estimated) bytes of records per page. One maker at the
# offer cap (~450 KB) fits; a 60-byte request can no longer ask for megabytes.
PAGE_BYTES = 1 << 20
MAX_PULL_MAKERS = 256  # makers one pull request may name
# Reconciliation: ranges and listed items in one request (256 leaf buckets; a leaf of a 20,000-maker book
# holds ~80 items).
MAX_RECONCILE_RANGES = 512
MAX_RECONCILE_ITEMS = 8_192

# Serving budget for pages (snapshots and pulls), all askers together: requests are not authenticated
# (until links carry identities), so the budget is global. 16 MiB/s lets a newcomer load 100,000 offers in
# about 3 s and caps what a flood of 60-byte requests can make us encode; past it: ERR_BUSY.
SERVE_BYTES_BURST = 64 << 20
SERVE_BYTES_PER_S = 16 << 20
# Reconciliation steps that list items cost a scan of the book: at most this many per second in total.
RECONCILE_STEPS_BURST = 100
RECONCILE_STEPS_PER_S = 50
# Indirect probes we run for others at once (each costs one outgoing ping): no amplification past this.
MAX_PING_REQS_IN_FLIGHT = 16

# --- overlay --------------------------------------------------------------------------------------------
# Neighbours: we dial until we hold NEIGHBOURS_TARGET, accept dials up to NEIGHBOURS_MAX. Every update is
# pushed to each neighbour once, so the copies a peer receives per update are about its degree minus one:
# 6-8 keeps that under 8 while a random graph of that degree stays connected through heavy churn.
NEIGHBOURS_TARGET = 6
NEIGHBOURS_MAX = 12
CANDIDATES_MAX = 128  # addresses we could dial (Grape samples, peers' suggestions, relayed heads)
GOSSIP_IN_FLIGHT = 2  # gossip requests in flight per neighbour; what queues meanwhile goes in the next
#                       one, so the slower a neighbour answers the bigger (and fewer) the batches. At 4,
#                       a 150-peer market on 2 cores sent ~8 gossip requests per peer per second, each
#                       one more in flight on a new TLS connection, and never calmed down again
GOSSIP_IN_FLIGHT_FRESH = 4  # ... but a new or closed offer may go with this many in flight: on 20-80 ms
#                             links, waiting for a reply first took the simulator's p99 from 242 to 340 ms
MARKET_CONNS_PER_PEER = GOSSIP_IN_FLIGHT_FRESH + 1  # the overlay's data connections to one peer (its
#                            gossip, and a repair); more requests wait for one, up to their deadline
PROBE_CONNS_PER_PEER = 2  # probes (ours, and those others ask us to make) and goodbyes, apart: never
#                           queued behind data (node/peer.py)
OUTBOX_MAX = 20_000  # items queued for one neighbour; past it the queue is dropped (reconciliation repairs)
