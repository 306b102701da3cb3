"""A small synchronous client of a running peer's control API (see otc/api), for the ``otc`` CLI.

Standard library only (urllib), so a CLI command starts fast. JSON is decoded with msgspec, which never
turns the API's decimal strings into floats.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

DEFAULT_API = "http://127.0.0.1:8001"


class ClientError(Exception):
    """Base of what a call can fail with."""


class PeerUnreachable(ClientError):
    """Nothing (or nothing that answers HTTP) listens at the API address, or it did not answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach a peer at {url}: {reason}")
        self.url = url
        self.reason = reason


class BadResponse(ClientError):
    """Something answered, but not like an otc peer's control API."""


class APIError(ClientError):
    """The peer refused the request: ``{"error": "ERR_...", "message": "..."}`` with a 4xx status."""

    def __init__(self, status: int, code: str, message: str, available: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.available = available  # with a refused amount: what could be had instead


def normalize_url(url: str) -> str:
    """``http://HOST:PORT`` from a URL, ``HOST:PORT``, or a bare port (``8003``: on this machine)."""
    url = url.strip().rstrip("/")
    if url.lstrip(":").isdigit():
        return f"http://127.0.0.1:{url.lstrip(':')}"
    return url if "://" in url else f"http://{url}"


class Client:
    def __init__(self, base: str = DEFAULT_API, timeout: float = 30.0, token: str | None = None) -> None:
        self.base = normalize_url(base)
        self.timeout = timeout
        self.token = token  # sent as ``Authorization: Bearer`` with every request
        # the control API is local: never send it through an http_proxy from the environment, and never
        # follow a redirect (it would carry the token elsewhere; the API never redirects)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    # --- plain calls --------------------------------------------------------------------------------
    def get(self, path: str, **query: str | None) -> Any:
        return self.call("GET", path, query=query)[0]

    def post(self, path: str, body: Any, timeout: float | None = None) -> Any:
        return self.call("POST", path, body, timeout=timeout)[0]

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)[0]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str | None] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, bytes]:
        """A 2xx answer, decoded and as the raw bytes (what ``--json`` prints); raises ``APIError``,
        ``PeerUnreachable`` or ``BadResponse``."""
        url = self.url(path, query)
        data = None if body is None else msgspec.json.encode(body)
        req = urllib.request.Request(url, data=data, method=method, headers=self._auth())
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=self.timeout if timeout is None else timeout) as resp:
                raw: bytes = resp.read()
        except urllib.error.HTTPError as exc:
            raise _refusal(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise PeerUnreachable(self.base, _reason(exc.reason)) from None
        except (ConnectionError, OSError) as exc:  # TimeoutError included
            raise PeerUnreachable(self.base, _reason(exc)) from None
        try:
            return msgspec.json.decode(raw), raw
        except msgspec.DecodeError:
            raise BadResponse(f"{url} answered something that is not JSON: {raw[:100]!r}") from None

    def _auth(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def url(self, path: str, query: dict[str, str | None] | None = None) -> str:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return self.base + path + (f"?{urllib.parse.urlencode(params)}" if params else "")

    # --- server-sent events -------------------------------------------------------------------------
    def events(
        self, timeout: float = 40.0, on_open: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The peer's live event stream (``/api/events``), one dict per ``data:`` line, until the
        connection ends; ``on_open`` is called once connected. The peer sends a keep-alive comment
        every 15 s, so a silent ``timeout`` means the connection is dead (``PeerUnreachable``)."""
        req = urllib.request.Request(
            self.url("/api/events"), headers={"Accept": "text/event-stream", **self._auth()}
        )
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                if on_open is not None:
                    on_open()
                for line in resp:
                    if line.startswith(b"data:"):
                        try:
                            event = msgspec.json.decode(line[5:].strip())
                        except msgspec.DecodeError:
                            continue
                        if isinstance(event, dict):
                            yield event
        except urllib.error.HTTPError as exc:
            raise _refusal(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise PeerUnreachable(self.base, _reason(exc.reason)) from None
        except TimeoutError:
            raise PeerUnreachable(self.base, "the event stream went silent") from None
        except (ConnectionError, OSError) as exc:
            raise PeerUnreachable(self.base, _reason(exc)) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx itself is then raised as an HTTPError


def _refusal(status: int, raw: bytes) -> ClientError:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        more = body.get("available")
        return APIError(
            status, body["error"], str(body.get("message", "")), more if isinstance(more, str) else None
        )
    return BadResponse(f"HTTP {status} without an otc error body: {raw[:200]!r}")


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "no answer in time"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)
