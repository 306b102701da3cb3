"""Driving a peer's web desk in a real browser (Playwright on Debian's chromium), for the browser tests.

``Desk`` is one browser context (a fresh profile: its own cookies) with one page on a peer's desk. An
init script records, from the page's first moment, what a test must see to be sure the page behaved:
Content-Security-Policy violations (there must be none: the desk runs under a strict policy) and
desktop notifications (the browser's ``Notification`` is wrapped to count them). ``away()`` plays a
trader who is looking at another window (a headless window always has the focus).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from otc.launch import PeerProcess, wait_for

from .browser import ARTIFACTS

WATCH = """(() => {
  const seen = (window.__otc = { violations: [], notifications: [], away: false });
  // a headless window always has the focus; a test sets away to play a trader looking elsewhere
  const hasFocus = Document.prototype.hasFocus;
  Document.prototype.hasFocus = function () { return seen.away ? false : hasFocus.call(this); };
  document.addEventListener("securitypolicyviolation", (e) =>
    seen.violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
  const Real = window.Notification;
  if (Real) {
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        seen.notifications.push({ title, body: (options && options.body) || "" });
      }
    };
  }
})();"""


class Desk:
    """One browser profile with a page on ``peer``'s desk."""

    def __init__(
        self,
        browser: Any,
        peer: PeerProcess,
        *,
        width: int = 1280,
        height: int = 800,
        dark: bool = False,
        notifications: bool = True,
    ) -> None:
        self.peer = peer
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, color_scheme="dark" if dark else "light"
        )
        if notifications:
            self.context.grant_permissions(["notifications"], origin=peer.url)
        self.context.add_init_script(WATCH)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # a refused request (a 401 before the login, a stopped peer) is logged by the browser itself as
        # "Failed to load resource": the network's doing, not the page's; every other error counts
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(f"console: {message.text}")

    # --- logging in ---------------------------------------------------------------------------------
    def link(self) -> str:
        """A one-time login link, as `otc web` prints it."""
        minted = self.peer.post("/api/login-codes", None)
        return f"{self.peer.url}{minted['path']}"

    def open(self, link: str | None = None) -> Desk:
        self.page.goto(link or self.link())
        self.wait_live()
        return self

    def wait_live(self, timeout_ms: float = 20_000) -> None:
        self.page.wait_for_selector('body[data-view="desk"] #conn[data-state="live"]', timeout=timeout_ms)

    @property
    def view(self) -> str:
        return str(self.page.evaluate("document.body.dataset.view"))

    # --- reading the page ---------------------------------------------------------------------------
    def row(self, offer_id: str) -> Any:
        return self.page.locator(f'#asks tr[data-id="{offer_id}"], #bids tr[data-id="{offer_id}"]')

    def cells(self, offer_id: str) -> list[str]:
        """A book row's text, cell by cell (padding zeros included, as the row shows them)."""
        return [c.strip() for c in self.row(offer_id).locator("td").all_inner_texts()]

    def wait_row(self, offer_id: str, timeout_ms: float = 15_000) -> None:
        self.row(offer_id).wait_for(state="visible", timeout=timeout_ms)

    def wait_gone(self, offer_id: str, timeout_ms: float = 15_000) -> None:
        self.row(offer_id).wait_for(state="detached", timeout=timeout_ms)

    def toasts(self, kind: str | None = None) -> list[str]:
        selector = "#toasts .toast" + (f'[data-kind="{kind}"]' if kind else "")
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]

    def wait_toast(self, kind: str, text: str, timeout: float = 15.0) -> str:
        def found() -> str | None:
            return next((t for t in self.toasts(kind) if text in t), None)

        return wait_for(found, timeout, what=f"a {kind} notification with {text!r}")

    def notifications(self) -> list[dict[str, str]]:
        return list(self.page.evaluate("window.__otc.notifications"))

    def away(self, away: bool = True) -> None:
        self.page.evaluate("away => { window.__otc.away = away; }", away)

    def tab(self, name: str) -> None:
        self.page.click(f"#tab-{name}")

    # --- checks and artefacts -----------------------------------------------------------------------
    def check_clean(self) -> None:
        """No CSP violation and no script error, ever, in this page."""
        violations = self.page.evaluate("window.__otc.violations")
        assert violations == [], violations
        assert self.errors == [], self.errors

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)  # not in the repository: made by the run
        path = ARTIFACTS / f"webdesk-{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()
