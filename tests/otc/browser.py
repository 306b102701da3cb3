"""A real browser for the tests: Debian's chromium, driven by Playwright (which never downloads one).

The flags keep a headless Chromium off the network (this machine's network is closed, and a test must
not reach beyond loopback): no background requests, component updates, sync or QUIC probes.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# screenshots and figures of the browser tests: kept for a person to look at, never committed
ARTIFACTS = Path(os.environ.get("OTC_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


def require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs it (apt-get install chromium)")


def launch(pw: Any) -> Any:
    """A headless Chromium with no profile of its own (each context is a fresh one)."""
    require_chromium()
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that serves a page (another origin than the peer's), or (as the control)
    records every request, like an API without any of our defences would receive it."""

    def __init__(self, page: str | None = None) -> None:
        self.page = page
        self.seen: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.page is not None:
            target = self.path.partition("target=")[2]
            data = self.server.page.replace("TARGET", target).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            self.server.seen.append({"method": self.command, "path": self.path, "body": body,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}})  # fmt: skip
            data = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass
