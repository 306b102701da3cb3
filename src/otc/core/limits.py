"""Every bound a peer enforces, in one place, each with its reason. A flat module on purpose: one
constant per bound, grouped by the part of the peer that enforces it, so a reviewer can read every limit
on one page and a test can import the number it attacks.

Sizes are bytes, times milliseconds, rates per second unless the name says otherwise.
"""

from __future__ import annotations

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
GOSSIP_IN_FLIGHT = 4  # gossip requests in flight per neighbour; what queues meanwhile goes in one batch
OUTBOX_MAX = 20_000  # items queued for one neighbour; past it the queue is dropped (reconciliation repairs)
