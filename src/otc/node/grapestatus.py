"""Whether this peer reaches its Grape, said once when it changes.

A peer that reaches no Grape is out of the market: nobody can look it up, and it finds nobody it has not
heard from already. That is easy to miss (its API works, its book is merely empty), so the peer says it
when it happens and again when it is over, instead of one warning per failed announce. Every Grape
request the market makes anyway (its lookups, every 15 s; the first announces) reports here;
an answer of any kind, even "nothing announced under that name", means the Grape is there. The change
goes to the peer's event listeners (``{"type": "grape", ...}``): ``otc peer`` prints it, ``otc watch``
shows it, the API's health has it.
"""

from __future__ import annotations

import logging

from grenache import GrenacheError
from grenache.link import ERR_GRAPE_TIMEOUT, ERR_GRAPE_UNREACHABLE

from .clock import now_ms
from .events import Listeners

log = logging.getLogger("otc.node.grape")
DOWN = frozenset({ERR_GRAPE_UNREACHABLE, ERR_GRAPE_TIMEOUT})


class GrapeStatus:
    def __init__(self, grape: str, events: Listeners) -> None:
        self.grape = grape
        self.events = events
        self.ok: bool | None = None  # None: not asked yet
        self.error: str | None = None
        self.since = now_ms()

    def note(self, outcome: GrenacheError | None) -> None:
        """The outcome of one request to the Grape: None (answered) or the error it failed with."""
        down = outcome is not None and outcome.code in DOWN
        if down == (self.ok is False):
            return
        self.ok, self.since = not down, now_ms()
        if down:
            assert outcome is not None
            self.error = _why(outcome)
            log.debug("cannot reach the Grape at %s (%s)", self.grape, self.error)
        else:
            log.debug("reached the Grape at %s", self.grape)
            self.error = None
        self.events.emit({"type": "grape", "ok": self.ok, "grape": self.grape, "error": self.error})


def _why(exc: GrenacheError) -> str:
    text = exc.message
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused: is a Grape running there?"
    if exc.code == ERR_GRAPE_TIMEOUT:
        return "no answer in time"
    return text.rsplit(": ", 1)[-1]
