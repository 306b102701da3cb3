"""Background work of a peer: every task is referenced until done and cancelled at stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .clock import now_ms

log = logging.getLogger("otc.node")
T = TypeVar("T")
IDLE_WAKE_S = 60.0  # a deadline loop's longest sleep with nothing due (a safety net: changes wake it)


async def deadline_loop(
    wake: asyncio.Event,
    next_deadline: Callable[[], int | None],
    blocked: Callable[[], object | None],
    tick: Callable[[int], None],
) -> None:
    """Call ``tick(now)`` when the earliest deadline (ms) passes or ``wake`` is set (every change that
    may set an earlier deadline sets it). While ``blocked()`` nothing is ticked, and we look again each
    second. An idle desk so costs one wake-up a minute, not one a second."""
    while True:
        deadline = next_deadline()
        if blocked() is not None:
            delay = 1.0
        elif deadline is None:
            delay = IDLE_WAKE_S
        else:
            delay = max(0.0, min(IDLE_WAKE_S, (deadline - now_ms()) / 1000))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
        wake.clear()
        if blocked() is None:
            tick(now_ms())


class Tasks:
    def __init__(self) -> None:
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[Any]] = set()
        self.stopping = False

    def loop(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body`` for the peer's lifetime; an unexpected error is logged and the loop started
        again, because a dead tick or timer loop would silently take the peer out of the market."""

        async def forever() -> None:
            while True:
                try:
                    await body()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s failed; restarting it", body.__name__)
                    await asyncio.sleep(1.0)

        self._loops.append(asyncio.create_task(forever(), name=body.__name__))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Fire and forget (but keep a reference, and cancel it at stop)."""
        if self.stopping:
            coro.close()
            return
        self.track(asyncio.ensure_future(coro))

    def track(self, task: asyncio.Future[T]) -> asyncio.Future[T]:
        """Keep a background task referenced until done, and cancelled by stop()."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def stop(self) -> None:
        self.stopping = True  # no new background work from here on
        every = self._loops + list(self._background)
        for task in every:
            task.cancel()
        for task in every:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
