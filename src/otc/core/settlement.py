"""Settlement after "done": the steps both parties agree on while the money moves off the network.

Theory of operation
-------------------
A done trade (a receipt signed by both) obliges its **buyer** to pay ``price x amount`` of the quote
currency to its **seller**, and the seller to deliver ``amount`` of the base currency to the buyer.
Which party is which follows from the trade: the maker is the seller of a ``sell`` offer (or quote) and
the buyer of a ``buy`` one. The payment goes first, then the delivery (the order of Bisq and Mostro,
where the base currency is the one that can be sent last)::

    state              step               made by   next
    -----------------  -----------------  --------  ----------------
    awaiting_payment   payment_sent       buyer     payment_sent
    payment_sent       payment_received   seller    payment_received
    payment_received   delivery_sent      seller    delivery_sent
    delivery_sent      settled            buyer     settled
    any open state     disputed           either    disputed
    settled / disputed: final.

Each step is a ``SettleStep`` signed by the party entitled to make it, naming the trade by its id and by
the hash of its signed terms. Both parties store every step. A settlement's state is a function of the
set of steps held (``fold``): walk the table from ``awaiting_payment`` taking each step that is held; a
dispute held overrides (disputed is absorbing, whoever raised it and whenever). Because the state is a
fold over a set, applying a step twice changes nothing (idempotent), the order steps arrive in does not
matter, and two parties holding the same steps hold the same state: to agree, they only need to bring
their sets level, which one exchange does (``SettleSync`` carries the sender's steps, the answer the
receiver's). A party that was offline catches up at the next exchange; each side re-sends until the
other has acknowledged every step it made (node/settlement.py).

A party makes a step only where its own view allows it; concurrent steps that conflict can only be a
normal step racing a dispute (every other state has one actor), and the fold resolves that the same way
on both sides: disputed.

Deadlines. Every open state has a duration (configurable per peer, ``DEFAULT_DEADLINES_MS``); it is due
at the time the state was entered (the signed ``ts`` of the step that entered it, or the receipt's
``created_at``) plus that duration. Past it the settlement is *overdue*, on both sides: both compute it
from the same signed times (with the same settings, at the same moment).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum, StrEnum
from typing import Any

import msgspec

from . import errors as E
from . import limits as L
from .errors import OTCError
from .identity import Identity
from .messages import Receipt, SettleStep
from .money import CONTEXT, D, canonical, get_pair
from .signing import is_signed_by, sign, terms_digest


class State(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAYMENT_SENT = "payment_sent"
    PAYMENT_RECEIVED = "payment_received"
    DELIVERY_SENT = "delivery_sent"
    SETTLED = "settled"
    DISPUTED = "disputed"


class Role(Enum):
    BUYER = "buyer"
    SELLER = "seller"
    EITHER = "either"


# every step is named after the state it leads to
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAITING_PAYMENT, "payment_sent"): State.PAYMENT_SENT,
    (State.PAYMENT_SENT, "payment_received"): State.PAYMENT_RECEIVED,
    (State.PAYMENT_RECEIVED, "delivery_sent"): State.DELIVERY_SENT,
    (State.DELIVERY_SENT, "settled"): State.SETTLED,
}
ENTITLED: dict[str, Role] = {
    "payment_sent": Role.BUYER,
    "payment_received": Role.SELLER,
    "delivery_sent": Role.SELLER,
    "settled": Role.BUYER,
    "disputed": Role.EITHER,
}
STEPS = tuple(ENTITLED)
FINAL = frozenset({State.SETTLED, State.DISPUTED})
OPEN = frozenset(State) - FINAL
DEFAULT_DEADLINES_MS: dict[State, int] = {
    State.AWAITING_PAYMENT: 2 * 3600_000,  # the buyer sends the payment
    State.PAYMENT_SENT: 24 * 3600_000,  # a bank transfer may take a day to arrive
    State.PAYMENT_RECEIVED: 2 * 3600_000,  # the seller sends the coins
    State.DELIVERY_SENT: 6 * 3600_000,  # confirmations
}


def parties(receipt: Receipt) -> tuple[str, str]:
    """(buyer, seller) of a trade: the maker is the seller of a sell offer and the buyer of a buy one."""
    if receipt.side == "sell":
        return receipt.taker, receipt.maker
    return receipt.maker, receipt.taker


def role_of(receipt: Receipt, peer_id: str) -> Role:
    buyer, seller = parties(receipt)
    if peer_id == buyer:
        return Role.BUYER
    if peer_id == seller:
        return Role.SELLER
    raise OTCError(E.ERR_NOT_ENTITLED, "not a party to this trade")


def key(step: SettleStep) -> str:
    return f"{step.step}:{step.actor}"


def fold(steps: Iterable[SettleStep], receipt: Receipt) -> tuple[State, int]:
    """The state the set of steps leads to, and when that state was entered (ms)."""
    held = list(steps)
    by_step = {s.step: s for s in held if s.step != "disputed"}
    state, entered = State.AWAITING_PAYMENT, receipt.created_at
    while True:
        for (src, name), dst in TRANSITIONS.items():
            if src is state and name in by_step:
                state, entered = dst, by_step[name].ts
                break
        else:
            break
    disputes = [s.ts for s in held if s.step == "disputed"]
    if disputes:
        return State.DISPUTED, min(disputes)  # the same on both sides, whichever copy came first
    return state, entered


class Record(msgspec.Struct, kw_only=True):
    """One trade's settlement as a party stores it."""

    receipt: Receipt
    steps: list[SettleStep] = msgspec.field(default_factory=list)
    acked: list[str] = msgspec.field(default_factory=list)  # keys of our steps the other party holds
    flagged: str | None = None  # the state we flagged overdue (and told of): once per state


class Settlement:
    """One trade's settlement from one party's side: the state, what may be done next, and the merge
    of the other party's steps. Pure; the caller persists ``record`` after every change."""

    def __init__(
        self, record: Record, me: str, deadlines: Mapping[State, int] = DEFAULT_DEADLINES_MS
    ) -> None:
        self.record = record
        self.receipt = record.receipt
        self.me = me
        self.role = role_of(record.receipt, me)
        self.deadlines = deadlines
        self.digest = terms_digest(record.receipt)
        self._steps: dict[str, SettleStep] = {key(s): s for s in record.steps}

    @property
    def trade_id(self) -> str:
        return self.receipt.id

    @property
    def other(self) -> str:
        r = self.receipt
        return r.taker if self.me == r.maker else r.maker

    @property
    def state(self) -> State:
        return fold(self._steps.values(), self.receipt)[0]

    @property
    def entered_at(self) -> int:
        return fold(self._steps.values(), self.receipt)[1]

    def due_at(self) -> int | None:
        state, entered = fold(self._steps.values(), self.receipt)
        if state in FINAL:
            return None
        return entered + self.deadlines.get(state, DEFAULT_DEADLINES_MS[state])

    def is_overdue(self, now: int) -> bool:
        due = self.due_at()
        return due is not None and now >= due

    def flag_overdue(self, now: int) -> bool:
        """Whether the current state has just become overdue (True once per state)."""
        state = self.state
        if not self.is_overdue(now) or self.record.flagged == state.value:
            return False
        self.record.flagged = state.value
        return True

    def columns(self) -> tuple[Record, str, int | None, bool, bool]:
        """What the store indexes: (record, state, due_at, flagged for this state, steps to send)."""
        state = self.state
        return (
            self.record,
            state.value,
            self.due_at(),
            self.record.flagged == state.value,
            bool(self.unacked()),
        )

    def steps(self) -> list[SettleStep]:
        return sorted(self._steps.values(), key=lambda s: (s.ts, STEPS.index(s.step)))

    def next_steps(self) -> list[str]:
        """What we may do now."""
        state = self.state
        if state in FINAL:
            return []
        mine = [name for (src, name) in TRANSITIONS if src is state and ENTITLED[name] is self.role]
        return [*mine, "disputed"]

    # our steps ---------------------------------------------------------------------------------------
    def act(self, identity: Identity, step: Any, now: int, note: str | None = None) -> SettleStep | None:
        """Make ``step`` as this party; returns the new signed step, or None if we had made it already
        (idempotent). Raises ``OTCError`` (changing nothing) for a step not ours or not possible now."""
        if step not in ENTITLED:
            raise OTCError(E.ERR_SETTLEMENT_STEP, f"unknown step {step!r}; steps: {', '.join(STEPS)}")
        if note is not None and (not isinstance(note, str) or not 0 < len(note) <= L.SETTLE_NOTE_MAX
                                 or not note.isprintable()):  # fmt: skip
            raise OTCError(E.ERR_INVALID_MESSAGE, f"a note is 1 to {L.SETTLE_NOTE_MAX} printable characters")
        entitled = ENTITLED[step]
        if entitled is not Role.EITHER and entitled is not self.role:
            raise OTCError(
                E.ERR_NOT_ENTITLED, f"{step} is the {entitled.value}'s step; you are the {self.role.value}"
            )
        if f"{step}:{self.me}" in self._steps:
            return None
        state = self.state
        if state in FINAL or (step != "disputed" and (state, step) not in TRANSITIONS):
            allowed = ", ".join(self.next_steps()) or "none: it is final"
            raise OTCError(
                E.ERR_SETTLEMENT_STEP, f"the settlement is {state.value}; your next steps: {allowed}"
            )
        made = sign(
            identity,
            SettleStep(
                trade_id=self.trade_id, terms=self.digest, step=step, actor=self.me, ts=now, note=note
            ),
        )
        self._steps[key(made)] = made
        self.record.steps = self.steps()
        return made

    def unacked(self) -> list[SettleStep]:
        """Our steps the other party has not confirmed holding: what the next exchange must carry."""
        done = set(self.record.acked)
        return [s for s in self.steps() if s.actor == self.me and key(s) not in done]

    def acknowledge(self, held: Iterable[SettleStep]) -> bool:
        """The other party answered holding these steps: ours among them are acknowledged."""
        ours = {key(s) for s in self._steps.values() if s.actor == self.me}
        new = sorted((ours & {key(s) for s in held}) - set(self.record.acked))
        self.record.acked = sorted({*self.record.acked, *new})
        return bool(new)

    # their steps -------------------------------------------------------------------------------------
    def check(self, step: SettleStep, now: int) -> None:
        """Whether a step from the network may be kept: about this trade, by the party entitled to it,
        signed, and not dated in the future."""
        if step.trade_id != self.trade_id or step.terms != self.digest:
            raise OTCError(E.ERR_INVALID_MESSAGE, "the step is about another trade")
        if step.actor not in (self.receipt.maker, self.receipt.taker):
            raise OTCError(E.ERR_NOT_ENTITLED, "the step is signed by someone outside the trade")
        entitled = ENTITLED[step.step]
        if entitled is not Role.EITHER and role_of(self.receipt, step.actor) is not entitled:
            raise OTCError(E.ERR_NOT_ENTITLED, f"{step.step} is the {entitled.value}'s step")
        if step.ts > now + L.MAX_CLOCK_SKEW_MS:
            raise OTCError(E.ERR_INVALID_MESSAGE, "the step is dated in the future")
        if not is_signed_by(step, step.actor):
            raise OTCError(E.ERR_BAD_SIGNATURE, "the step is not signed by its actor")

    def merge(self, steps: Iterable[SettleStep], now: int) -> list[SettleStep]:
        """Keep the other party's steps we lack; returns those that are new. All are checked first:
        one bad step refuses the lot and changes nothing. A step of our own we do not hold (a record
        restored from an old backup) is taken back like any other: it carries our signature."""
        fresh: dict[str, SettleStep] = {}
        for step in steps:
            k = key(step)
            if k in self._steps or k in fresh:
                continue  # already held: steps are immutable once signed, the first copy stays
            self.check(step, now)
            fresh[k] = step
        self._steps.update(fresh)
        if fresh:
            self.record.steps = self.steps()
        return list(fresh.values())

    # views -----------------------------------------------------------------------------------------
    def summary(self, now: int) -> dict[str, Any]:
        """Who pays what to whom, where it stands and what is due: the API's view."""
        r = self.receipt
        pair = get_pair(r.pair)
        buyer, seller = parties(r)
        state, entered = fold(self._steps.values(), r)
        return {
            "trade_id": r.id,
            "state": state.value,
            "role": self.role.value,
            "buyer": buyer,
            "seller": seller,
            "pays": {"from": buyer, "to": seller, "currency": pair.quote,
                     "amount": canonical(CONTEXT.multiply(D(r.price), D(r.amount)))},
            "delivers": {"from": seller, "to": buyer, "currency": pair.base, "amount": r.amount},
            "entered_at": entered,
            "due_at": self.due_at(),
            "overdue": self.is_overdue(now),
            "next_steps": self.next_steps(),
            "steps": [msgspec.to_builtins(s) for s in self.steps()],
        }  # fmt: skip
