"""The market overlay's timings, each with its reason. One frozen dataclass, handed to the replication
core (core/replication.py) and its failure detector (core/membership.py): real peers and the simulator
run the same numbers. All in milliseconds.

The budget they serve: a dead maker must vanish from every book within 15 s. The worst case is a
neighbour probed just before the death: the next probe comes within ``probe_period_ms`` (4 s), fails after
``probe_timeout_ms`` (1 s), the indirect probes after ``indirect_timeout_ms`` (2 s more), the suspicion
lasts ``suspect_ms`` (3 s), and the notice then floods the overlay in well under a second: ~10.5 s. The
typical case is far shorter, since every one of the maker's ~7 neighbours probes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    # failure detection (SWIM among neighbours) --------------------------------------------------------
    probe_interval_ms: int = 500  # at most one probe per tick: at idle, ~2 pings sent per peer per s
    probe_period_ms: int = 4_000  # but each neighbour at least this often (12 neighbours: every 333 ms)
    probe_timeout_ms: int = 1_000  # a loopback ping answers in ~1 ms, a WAN one in <300 ms; a loaded
    #                                 2-core machine running 150 peers still answers well inside 1 s
    indirect_timeout_ms: int = 2_000  # helpers ping with probe_timeout_ms, plus their round trips
    helpers: int = 2  # neighbours asked to ping a target that did not answer us (a bad link is not death)
    suspect_ms: int = 3_000  # a suspect gets this long (and a direct retry each second) to be heard
    suspect_retry_ms: int = 1_000
    health_window_ms: int = 10_000  # if most peers we probed in this window failed, the fault is likely
    #                                 ours (cut off, overloaded): we drop them but accuse nobody
    other_probe_ms: int = 5_000  # one probe of a random live maker that is not a neighbour: every maker
    #                              is then probed by someone ~every 5 s, neighbours or not (constant cost)
    # the overlay --------------------------------------------------------------------------------------
    dial_timeout_ms: int = 2_000
    dial_backoff_ms: int = 30_000  # an address that refused or failed is not dialled again for this long
    lookup_ms: int = 15_000  # Grape sample of otc:market at steady state (Grape load: N / 15 lookups/s)
    lookup_fast_ms: int = 2_000  # ... while below the target degree (starting, or after losses)
    rewire_ms: int = 30_000  # one extra link to a random candidate this often (and one dropped if above
    #                          the target): the graph keeps mixing, and heals across a healed partition
    # reconciliation and repair -------------------------------------------------------------------------
    settle_ms: int = 1_000  # an item enters the fingerprints this long after it changed: a flood in
    #                         flight (p99 < 300 ms) does not make neighbours reconcile what it brings anyway
    reconcile_ms: int = 1_000  # at most one reconciliation started per second
    pull_delay_ms: int = 500  # a difference found is pulled only if it still stands this much later
    rpc_timeout_ms: int = 3_000  # gossip, reconciliation and pull requests
    # pushing -------------------------------------------------------------------------------------------
    publish_gap_ms: int = 200  # a maker signs at most one head this often (a change after a quiet spell
    #                           goes at once): a maker filled hundreds of times a second floods the
    #                           market 20 times a second, each carrying the newest state of what changed
    gossip_gap_ms: int = 200  # likewise at most one gossip request per neighbour this often (the first
    #                          after a quiet spell at once): a peer's traffic is bounded by its degree,
    #                          not by how busy the market is
    # joining ------------------------------------------------------------------------------------------
    join_hedge_ms: int = 250  # ask one more snapshot source this often until one answers
    join_first_page_ms: int = 4_000  # give up waiting for a first page after this (strangers that never
    #                                  answer must not hold a newcomer up): reconciliation fills in later
    snapshot_timeout_ms: int = 3_000  # per page
    # forgetting and accusations ------------------------------------------------------------------------
    forget_dead_ms: int = 600_000  # a dead maker is forgotten 10 min after the notice (by its clock)
    forget_silent_ms: int = 600_000  # offers of a maker whose head never came: forgotten after 10 min
    forget_proven_ms: int = 86_400_000  # an equivocator stays hidden (and known) for a day
    death_future_ms: int = 60_000  # a notice dated further ahead of our clock is refused
    refute_window_ms: int = 30_000  # a notice refuted this soon counts against its accuser ...
    strikes: int = 3  # ... and an accuser with this many within strike_window_ms is ignored for as long
    strike_window_ms: int = 600_000
    forget_tombstones_ms: int = 2_000
