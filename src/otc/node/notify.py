"""Notifications: what a trader wants to hear of at once (fills, requests for quote received, quotes
received, settlement steps and deadlines, messages), as JSON for the event stream and for webhooks.

Webhooks. Each is a URL (http or https) that gets one JSON POST per notification,
``{"id", "type", "ts", "peer", "data"}``, with the headers ``X-OTC-Event`` (the type),
``X-OTC-Delivery`` (the id, the same on every retry: receivers drop repeats by it), ``X-OTC-Timestamp``
(ms) and ``X-OTC-Signature: sha256=<hex>``, the HMAC-SHA256 keyed by the peer's API token (the one it
writes to ``<data-dir>/api.token`` at every start) of
``"<timestamp>." + body``. A receiver that knows the token checks the signature, and that the timestamp
is recent, to tell our notifications from forgeries and replays (``verify``).

Delivery never slows trading: an event only appends to each webhook's bounded queue (when full, the
oldest is dropped and counted); one worker per webhook posts in order, retrying a failure (an answer
other than 2xx, a refused connection, a timeout) with exponential backoff, and gives one up after
``WEBHOOK_ATTEMPTS`` (counted). Posts run on a small thread pool with urllib (the standard library's
HTTP and TLS client), so the event loop never waits for a receiver.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import hmac
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..core import errors as E
from ..core import limits as L
from ..core.errors import OTCError
from ..core.messages import Chat, Receipt
from ..home import read_token
from .clock import now_ms
from .events import Listeners
from .store import Store
from .tasks import Tasks

log = logging.getLogger("otc.node.notify")
KINDS = ("trade", "rfq", "quote", "settlement", "overdue", "message")
_encoder = msgspec.json.Encoder()
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def notice(event: dict[str, Any], me: str) -> dict[str, Any] | None:
    """The notification an event makes, as JSON-ready data; None for events that are not one (book
    changes)."""
    kind = event["type"]
    if kind not in KINDS:
        return None
    if kind == "trade":
        r: Receipt = event["receipt"]
        data = msgspec.to_builtins(r)
        data.pop("maker_sig", None)
        data.pop("taker_sig", None)
        data["role"] = "maker" if r.maker == me else "taker"
        return {"type": kind, "data": data}
    if kind == "message":
        m: Chat | None = event.get("message")
        if m is None:  # a Grapevine (Node chat) message: unsigned, its text is in the inbox
            return {"type": kind, "data": {"grapevine": True, "verified": False}}
        data = {"id": m.id, "sender": m.sender, "sender_name": m.sender_name, "text": m.text, "ts": m.ts}
        return {"type": kind, "data": data}

    return {"type": kind, "data": event["data"]}


def signature(token: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(token: str, headers: dict[str, str], body: bytes, now: int, tolerance_ms: int = 300_000) -> bool:
    """What a receiver runs (header names lower-case): the signature matches and the time is recent."""
    stamp = headers.get("x-otc-timestamp", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance_ms:
        return False
    return hmac.compare_digest(signature(token, stamp, body), headers.get("x-otc-signature", ""))


def check_url(url: Any) -> str:
    if (
        not isinstance(url, str)
        or not 0 < len(url) <= L.WEBHOOK_URL_MAX
        or not url.isprintable()
        or " " in url
    ):
        raise OTCError(
            E.ERR_INVALID_WEBHOOK, f"a webhook is an http(s) URL of at most {L.WEBHOOK_URL_MAX} chars"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OTCError(E.ERR_INVALID_WEBHOOK, f"not an http(s) URL: {url!r}")
    return url


@dataclass
class Webhook:
    id: str
    url: str
    created_at: int
    persistent: bool  # added through the API (stored); else given at start (--notify-url)
    queue: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=L.WEBHOOK_QUEUE)
    )
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: int = 0
    failed: int = 0  # given up after every attempt
    dropped: int = 0  # pushed out of a full queue
    last_error: str | None = None
    worker: asyncio.Future[None] | None = None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            resp.read(64 * 1024)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class Notifier:
    def __init__(
        self, peer_id: str, data_dir: Path, store: Store, events: Listeners, tasks: Tasks, urls: list[str]
    ) -> None:
        self.peer_id = peer_id
        self.data_dir = data_dir
        self.store = store
        self.tasks = tasks
        # the control API's token (api/rfq_routes.py hands it over when the API is built); without
        # an API in this process, the one it wrote to <data-dir>/api.token
        self.token: str | None = None
        self.hooks: dict[str, Webhook] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="webhook")
        self._urls = [check_url(u) for u in urls]
        events.callbacks.append(self._on_event)

    def start(self) -> None:
        for n, url in enumerate(self._urls):
            self._run(Webhook(f"start-{n}", url, now_ms(), persistent=False))
        for hook_id, url, created_at in self.store.webhooks.all():
            self._run(Webhook(hook_id, url, created_at, persistent=True))

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the webhooks ---------------------------------------------------------------------------------
    def add(self, url: Any) -> Webhook:
        url = check_url(url)
        if len(self.hooks) >= L.WEBHOOKS_MAX:
            raise OTCError(E.ERR_TOO_MANY_WEBHOOKS, f"at most {L.WEBHOOKS_MAX} webhooks")
        hook = Webhook(uuid.uuid4().hex[:16], url, now_ms(), persistent=True)
        self.store.webhooks.add(hook.id, hook.url, hook.created_at)
        self._run(hook)
        return hook

    def remove(self, hook_id: str) -> Webhook:
        hook = self.hooks.get(hook_id)
        if hook is None:
            raise OTCError(E.ERR_WEBHOOK_NOT_FOUND, f"no webhook {hook_id}")
        if hook.persistent:
            self.store.webhooks.remove(hook_id)
        del self.hooks[hook_id]
        if hook.worker is not None:
            hook.worker.cancel()
        return hook

    def _run(self, hook: Webhook) -> None:
        self.hooks[hook.id] = hook
        hook.worker = self.tasks.track(asyncio.ensure_future(self._work(hook)))

    # --- delivery -------------------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        if not self.hooks:
            return
        note = notice(event, self.peer_id)
        if note is None:
            return
        note = {
            "id": uuid.uuid4().hex,
            "type": note["type"],
            "ts": now_ms(),
            "peer": self.peer_id,
            "data": note["data"],
        }
        for hook in self.hooks.values():
            if len(hook.queue) == hook.queue.maxlen:
                hook.dropped += 1
            hook.queue.append(note)
            hook.wake.set()

    async def _work(self, hook: Webhook) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not hook.queue:
                hook.wake.clear()
                await hook.wake.wait()
            note = hook.queue[0]
            body = _encoder.encode(note)
            delay = 0.5
            for attempt in range(L.WEBHOOK_ATTEMPTS):
                try:
                    token = self.token or read_token(self.data_dir)
                except OSError as exc:  # no API has written one yet: counts as a failed attempt
                    token, hook.last_error = "", f"no API token yet: {exc}"
                stamp = str(now_ms())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "grenache-otc",
                    "X-OTC-Event": note["type"],
                    "X-OTC-Delivery": note["id"],
                    "X-OTC-Timestamp": stamp,
                    "X-OTC-Signature": signature(token, stamp, body),
                }
                try:
                    if not token:
                        raise OSError(hook.last_error)
                    status = await loop.run_in_executor(
                        self._pool, _post, hook.url, body, headers, L.WEBHOOK_TIMEOUT_S
                    )
                except (OSError, ValueError) as exc:  # refused, unreachable, timed out, TLS, bad URL
                    hook.last_error = str(exc) or type(exc).__name__
                else:
                    if 200 <= status < 300:
                        hook.delivered += 1
                        break
                    hook.last_error = f"HTTP {status}"
                if attempt + 1 < L.WEBHOOK_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, L.WEBHOOK_BACKOFF_MAX_S)
            else:
                hook.failed += 1
                log.info("webhook %s: gave up a %s notification: %s", hook.url, note["type"], hook.last_error)
            if hook.queue and hook.queue[0] is note:
                hook.queue.popleft()
