"""Range fingerprints over the makers a peer holds, for range-based set reconciliation. Pure.

Each maker a peer holds is one *item*: its id, its newest head's (seq, ts), and its state (``STATES``).
Two peers that hold the same items hold the same market: a head commits to its maker's open offers, and
an item in state ``IN_STEP`` says our copy is exactly that list. An item's hash is 63 bits of BLAKE2b over
those four fields; a range's fingerprint is the count and the sum (mod 2**63) of its items' hashes, for
the ranges of maker ids sharing a prefix of 0, 1 or 2 hex digits (1 + 16 + 256 ranges). A sum is cheap to
keep up to date (one subtraction and one addition per range an item lies in) and equal sums with equal
counts mean equal sets but for a 2**-63 chance; a hostile maker cannot use a collision to hide anything
but its own state from reconciliation, and the eager push does not depend on fingerprints at all.

Reconciliation (core/replication.py) compares the root first; where ranges differ it descends to the 16
children, then lists the items of a 2-digit range (about N/256 of them). At idle that is one fingerprint
per probe; a single difference in a 10,000-maker market costs three small round trips.
"""

from __future__ import annotations

import hashlib
from typing import Final

from .messages import Range

IN_STEP: Final = 0  # alive, and we hold exactly the offers its head commits to
DRIFTED: Final = 1  # alive (or awaiting a sync), our copy differs from what its head commits to
DEAD: Final = 2  # a death notice covers its newest head
EQUIVOCATING: Final = 3  # it signed two different states of one thing: hidden for good
STATES = (IN_STEP, DRIFTED, DEAD, EQUIVOCATING)

MASK = (1 << 63) - 1  # sums mod 2**63: JSON integers a strict decoder checks within int64
DEPTH = 2  # prefixes of 0, 1 and 2 hex digits
NODES = 1 + 16 + 256


def item_hash(maker: str, seq: int, ts: int, state: int) -> int:
    data = f"{maker}:{seq}:{ts}:{state}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & MASK or 1  # 0: none


def _nodes(key: str) -> tuple[int, int, int]:
    hi = int(key[0], 16)
    return 0, 1 + hi, 17 + hi * 16 + int(key[1], 16)


def node_of(prefix: str) -> int:
    if not prefix:
        return 0
    if len(prefix) == 1:
        return 1 + int(prefix, 16)
    return 17 + int(prefix[:2], 16)


def children(prefix: str) -> list[str]:
    return [prefix + c for c in "0123456789abcdef"]


class Fingerprints:
    """Counts and sums of item hashes per prefix range. ``update(key, old, new)`` with 0 for "absent".

    Arrays may start shared between books (the simulator starts thousands of identical books): they are
    copied on the first write."""

    __slots__ = ("_shared", "counts", "sums")

    def __init__(self, counts: list[int] | None = None, sums: list[int] | None = None) -> None:
        self._shared = counts is not None
        self.counts = counts if counts is not None else [0] * NODES
        self.sums = sums if sums is not None else [0] * NODES

    def share(self) -> Fingerprints:
        """Another set of fingerprints equal to these, sharing the arrays until either is written."""
        self._shared = True
        return Fingerprints(self.counts, self.sums)

    def update(self, key: str, old: int, new: int) -> None:
        if old == new:
            return
        if self._shared:
            self.counts, self.sums, self._shared = list(self.counts), list(self.sums), False
        delta = (old != 0) - (new != 0)  # 1: removed, -1: added
        for node in _nodes(key):
            self.sums[node] = (self.sums[node] - old + new) & MASK
            self.counts[node] -= delta

    def range(self, prefix: str) -> Range:
        node = node_of(prefix)
        return Range(prefix, self.counts[node], self.sums[node])

    def root(self) -> Range:
        return Range("", self.counts[0], self.sums[0])

    def differing(self, theirs: list[Range]) -> list[str]:
        """The prefixes of ``theirs`` whose fingerprints differ from ours."""
        out = []
        for r in theirs:
            if len(r.prefix) <= DEPTH:
                node = node_of(r.prefix)
                if self.counts[node] != r.count or self.sums[node] != r.fp:
                    out.append(r.prefix)
        return out
