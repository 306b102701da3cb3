"""Death notices and equivocation proofs: signing, checking, and a verifier that can remember.

A death notice is signed by its accuser, behind its own domain tag (see signing.py for why tags), and
carries the accused maker's own signed head, so it names exactly which state of the maker it declares
dead. An equivocation proof needs no new signature: it is two statements the maker signed itself that
cannot both be true.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from .identity import Identity, verify
from .messages import Death, Equivocation, Head, Offer
from .signing import is_signed, offer_is_valid

DEATH_DOMAIN = b"grenache-otc/1 death\n"
_encoder = msgspec.json.Encoder()


def death_bytes(death: Death) -> bytes:
    return DEATH_DOMAIN + _encoder.encode(msgspec.structs.replace(death, sig=""))


def sign_death(identity: Identity, head: Head, ts: int) -> Death:
    death = Death(head=head, accuser=identity.peer_id, ts=ts)
    return msgspec.structs.replace(death, sig=identity.sign(death_bytes(death)))


def head_key(head: Head) -> tuple[int, int]:
    """The order of a maker's heads: a higher seq wins, then a later ts (a head re-signed at the same seq
    to refute a death notice)."""
    return (head.head, head.ts)


def conflict(a: Offer | Head, b: Offer | Head) -> Equivocation | None:
    """The proof, if ``a`` and ``b`` (both assumed validly signed) are two different states of one thing."""
    if isinstance(a, Offer) and isinstance(b, Offer):
        if a.maker == b.maker and a.id == b.id and a.seq == b.seq and a != b:
            return Equivocation(offers=sorted([a, b], key=lambda o: o.sig))
    elif (
        isinstance(a, Head)
        and isinstance(b, Head)
        and a.maker == b.maker
        and a.head == b.head
        and a.digest != b.digest
    ):
        return Equivocation(heads=sorted([a, b], key=lambda h: h.sig))
    return None


def proof_maker(proof: Equivocation) -> str:
    return proof.offers[0].maker if proof.offers else proof.heads[0].maker


class Verifier:
    """Signature checks for everything replication accepts. ``memo`` remembers results by message value:
    the simulator shares one verifier among all its peers (identical bytes verify identically), so each
    message is verified once however many peers receive it. Real peers check each message they accept
    once anyway (duplicates are dropped before any check), so they need no memo."""

    def __init__(self, *, memo: bool = False) -> None:
        self._memo: dict[object, bool] | None = {} if memo else None
        self.checks = 0  # signature checks actually run

    def _cached(self, key: object, check: Callable[[], bool]) -> bool:
        if self._memo is None:
            self.checks += 1
            return check()
        hit = self._memo.get(key)
        if hit is None:
            self.checks += 1
            hit = self._memo[key] = check()
        return hit

    def offer(self, offer: Offer) -> bool:
        """Consistent and signed by its maker."""
        return self._cached(offer, lambda: offer_is_valid(offer))

    def head(self, head: Head) -> bool:
        return self._cached(head, lambda: is_signed(head))

    def death(self, death: Death) -> bool:
        """Signed by its accuser, about a head signed by its maker. A maker's notice of itself is its
        goodbye (``Replica.depart``): signed by its own key, it can only hide the maker who signed it."""
        return self._cached(
            death, lambda: self.head(death.head) and verify(death.accuser, death.sig, death_bytes(death))
        )

    def proof(self, proof: Equivocation) -> bool:
        """Two validly signed, conflicting statements of one maker."""
        pair: list[Offer] | list[Head] = proof.offers or proof.heads
        if len(pair) != 2 or (proof.offers and proof.heads):
            return False
        a, b = pair
        if conflict(a, b) is None:
            return False
        check = self.offer if isinstance(a, Offer) else self.head
        return check(a) and check(b)  # type: ignore[arg-type]
