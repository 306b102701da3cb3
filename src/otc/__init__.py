"""Grenache OTC: a peer-to-peer OTC desk on the Grenache DHT.

The tree is the architecture:

- ``core``: the pure core. Money, identities and signatures, message schemas, the offer and trade
  state machines, the maker's desk, the taker, the replicated book, sweep planning. No sockets, clocks,
  files or threads: every decision is a function of the events handed in, so every race replays.
- ``node``: one running peer, the I/O edge around the core: Grenache RPC, timers, SQLite. ``Peer`` is
  a thin composition of parts with one concern each.
- ``api``: the peer's local control API (JSON over HTTP on loopback).
- ``cli``: the ``otc`` command line, a client of that API.
- ``launch``: starting peer processes (demo, tests, benchmarks, chaos).
"""
