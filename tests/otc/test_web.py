"""The web desk (issue 11), in a real browser against real peer processes on real Grapes.

Debian's chromium (headless, driven by Playwright) logs in with `otc web`'s one-time link, sees the book,
posts an offer through the order form and sees it on another peer's desk without a reload, takes from a
row, is refused in plain words, cancels, sweeps, chats both ways with notifications, and follows its
peer when it freezes, stops and comes back, and when the Grape goes away. Pages without a session, or on
another origin, get nothing. Screenshots of the main views are kept under test-artifacts/ (not
committed). Every page must run without a CSP violation or a script error.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grenache.grapes import GrapeNetwork
from otc.web import HTML_CSP

from ..harness import PeerProcess, start_all, wait_for
from .browser import Recorder, launch
from .rawhttp import request
from .webdesk import Desk

STATIC = Path(__file__).parents[2] / "src" / "otc" / "web" / "static"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def market(
    grapes: GrapeNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PeerProcess]]:
    """alice and bob, for every test of this module that does not stop its peers."""
    tmp = tmp_path_factory.mktemp("web")
    peers = [
        PeerProcess(url, name, log_dir=tmp) for url, name in zip(grapes.urls, ("alice", "bob"), strict=True)
    ]
    try:
        start_all(peers)
        yield {p.name: p for p in peers}
    finally:
        for p in peers:
            p.stop()


@pytest.fixture
def desks(browser: Any) -> Iterator[list[Desk]]:
    """Desks a test opens; every one must have stayed clean (no CSP violation, no script error)."""
    opened: list[Desk] = []
    yield opened
    try:
        for desk in opened:
            desk.check_clean()
    finally:
        for desk in opened:
            desk.close()


# --- what is served, and to whom -------------------------------------------------------------------------
def test_the_page_is_served_with_a_strict_policy_and_holds_no_data(market: dict[str, PeerProcess]) -> None:
    alice = market["alice"]
    port = alice.api_port
    page = request("GET", "/", port)  # no token, no cookie: the page is code, not data
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert csp == HTML_CSP
    directives = dict(d.strip().partition(" ")[::2] for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'" and directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["form-action"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'" and directives["trusted-types"] == "'none'"
    assert "unsafe" not in csp and "data:" not in csp and "*" not in csp
    h = page.headers
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "no-store" and h["cross-origin-opener-policy"] == "same-origin"
    assert not any(name.startswith("access-control-") for name in h)

    # the page itself has no inline script, no inline style, no event-handler attribute
    html = page.body.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=", html, re.I)
    # and the desk's own code never turns a string into HTML or code
    for js in (STATIC / "js").glob("*.js"):
        code = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
            assert sink not in code, (js.name, sink)

    # every file the page loads is served, with its type; nothing else of the package is
    served = (
        ("/static/js/app.js", "text/javascript"),
        ("/static/desk.css", "text/css"),
        ("/static/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/static/icon.svg", "image/svg+xml"),
    )
    for path, kind in served:
        reply = request("GET", path, port)
        assert reply.status == 200 and reply.headers["content-type"].startswith(kind), (path, reply.status)
    for path in ("/static/vendor/uPlot.LICENSE", "/static/vendor/README.md", "/static/index.html", "/x/../"):
        assert request("GET", path, port).status == 401, path  # not public: the guard wants a principal

    # the API's defences hold for the page too: a rebound DNS name, another site
    assert request("GET", "/", port, headers={"Host": f"evil.example:{port}"}).code == "ERR_FORBIDDEN_HOST"
    for site in ("cross-site", "same-site"):
        assert request("GET", "/", port, headers={"Sec-Fetch-Site": site}).code == "ERR_FORBIDDEN_ORIGIN"
    assert request("GET", "/", port, headers={"Origin": "http://evil.example"}).code == "ERR_FORBIDDEN_ORIGIN"
    # and every data endpoint, the new ones included, still wants the token or a session
    for method, path in (("GET", "/api/pairs"), ("POST", "/api/login-codes"), ("GET", "/api/events"),
                         ("GET", "/api/book"), ("GET", "/api/trades")):  # fmt: skip
        reply = request(method, path, port)
        assert (reply.status, reply.code) == (401, "ERR_UNAUTHORIZED"), (path, reply.status)


def login(port: int, body: dict[str, Any], origin: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if origin:
        headers["Origin"] = origin
    return request("POST", "/api/session", port, headers=headers, body=json.dumps(body).encode())


def test_login_codes_are_minted_with_the_token_only_and_work_once(market: dict[str, PeerProcess]) -> None:
    alice, bob = market["alice"], market["bob"]
    port = alice.api_port
    minted = request("POST", "/api/login-codes", port, token=alice.token)
    assert minted.status == 201
    code = minted.json()["code"]
    assert minted.json()["path"] == f"/#login={code}" and len(code) >= 43 and alice.token not in code
    assert 50_000 < minted.json()["expires_at"] - time.time() * 1000 <= 60_000

    # a foreign page cannot spend it (refused before the body is read: the code is not used up)
    assert login(port, {"code": code}, origin="http://127.0.0.1:1").code == "ERR_FORBIDDEN_ORIGIN"
    assert login(bob.api_port, {"code": code}).code == "ERR_UNAUTHORIZED"  # another peer's code is nothing
    assert login(port, {"code": code, "token": alice.token}).code == "ERR_INVALID_PAYLOAD"
    first = login(port, {"code": code})
    assert first.status == 201 and first.headers["set-cookie"].startswith(f"otc_session_{port}=")
    again = login(port, {"code": code})
    assert (again.status, again.code) == (401, "ERR_UNAUTHORIZED")
    assert "used already" in again.json()["message"]

    # a session is not the token: it cannot mint links for other browsers
    cookie = {"Cookie": first.headers["set-cookie"].split(";", 1)[0]}
    assert request("GET", "/api/pairs", port, headers=cookie).status == 200
    refused = request("POST", "/api/login-codes", port, headers=cookie)
    assert (refused.status, refused.code) == (403, "ERR_TOKEN_REQUIRED")
    # at most 8 wait at a time: the 9th ends the oldest
    codes = [request("POST", "/api/login-codes", port, token=alice.token).json()["code"] for _ in range(9)]
    assert login(port, {"code": codes[0]}).code == "ERR_UNAUTHORIZED"
    assert login(port, {"code": codes[1]}).status == 201


def test_without_a_session_the_browser_gets_a_login_form_and_no_data(
    market: dict[str, PeerProcess], browser: Any, desks: list[Desk]
) -> None:
    alice = market["alice"]
    alice.offer("sell", "0.25", "99999")  # something a leak would show
    desk = Desk(browser, alice)
    desks.append(desk)
    answers: list[tuple[str, int]] = []
    desk.page.on("response", lambda r: answers.append((r.url.removeprefix(alice.url), r.status)))
    desk.page.goto(alice.url)
    desk.page.wait_for_selector('body[data-view="login"]')
    api = [(url, status) for url, status in answers if url.startswith("/api/")]
    assert api and all(status == 401 for _, status in api), api  # asked, refused, nothing else
    assert desk.page.locator("#desk-view").is_hidden()
    assert "99999" not in desk.page.content() and alice.peer_id not in desk.page.content()
    # the policy holds in the browser: no string becomes code, and no string becomes HTML
    with pytest.raises(Exception, match="unsafe-eval"):
        desk.page.wait_for_function("window.none === 1", timeout=5000)  # polled with a string eval
    sink = "() => { try { document.body.innerHTML = '<b>x</b>'; return 'no'; } catch (e) { return e.name; } }"
    assert desk.page.evaluate(sink) == "TypeError"  # Trusted Types: innerHTML refuses a plain string
    provoked = desk.page.evaluate("() => window.__otc.violations.splice(0)")  # those two, reported
    assert provoked and all(v.startswith("require-trusted-types-for") for v in provoked), provoked
    assert all("requires 'Trusted" in e or "'unsafe-eval'" in e for e in desk.errors), desk.errors
    desk.errors.clear()  # provoked on purpose; from here on the page must stay clean

    # a wrong token is refused in words; a used link too; the right token opens the desk
    desk.page.fill("#token", "not-the-token")
    desk.page.click("#login-form button[type=submit]")
    desk.page.wait_for_selector("#login-error:has-text('not this peer')")
    link = desk.link()
    used = Desk(browser, alice)
    desks.append(used)
    used.open(link)
    desk.page.goto(link)
    desk.page.wait_for_selector("#login-error:has-text('used already')")
    assert "#login=" not in desk.page.url  # the code left the address bar at once
    desk.page.fill("#token", alice.token)
    desk.page.press("#token", "Enter")
    desk.wait_live()
    desk.page.locator("#asks tr:has-text('99999')").wait_for()
    desk.shot("login-then-desk")

    # logging out ends the session at the peer and leaves nothing of the desk in the page
    desk.page.click("#logout")
    desk.page.wait_for_selector('body[data-view="login"]')
    assert "99999" not in desk.page.content() and alice.peer_id not in desk.page.content()
    status = desk.page.evaluate("() => fetch('/api/book').then((r) => r.status)")
    assert status == 401


def test_pages_on_other_origins_cannot_use_a_logged_in_desk(
    market: dict[str, PeerProcess], browser: Any, desks: list[Desk]
) -> None:
    alice = market["alice"]
    desk = Desk(browser, alice).open()
    desks.append(desk)
    attack = Recorder(ATTACK)
    try:
        page = desk.context.new_page()  # same browser profile: the session cookie is there
        page.goto(f"{attack.url}/?target={alice.url}")
        page.wait_for_function("window.done === true", timeout=30_000)
        results = page.evaluate("window.results")
        framed = page.frames[1]
        framed_desk = framed.url.startswith(alice.url) and framed.evaluate(
            "!!document.querySelector('#desk-view')"
        )
        page.close()
    finally:
        attack.close()
    assert results["read book"].startswith("refused") and results["read events"].startswith("refused")
    assert results["mint a link"].startswith("refused") or results["mint a link"] == "opaque 0"
    assert results["log in with json"].startswith("refused")
    assert framed_desk is False  # frame-ancestors 'none' and X-Frame-Options: DENY
    assert alice.get("/api/offers") == [o for o in alice.get("/api/offers") if o["price"] == "99999"]


ATTACK = """<!doctype html><meta charset="utf-8"><title>free coins</title>
<iframe src="TARGET/"></iframe>
<script>
const T = "TARGET";
window.results = {};
async function attempt(name, f) {
  try { window.results[name] = await f(); } catch (e) { window.results[name] = "refused: " + e.name; }
}
(async () => {
  await attempt("read book", () => fetch(T + "/api/book", {credentials: "include"}).then(r => r.text()));
  await attempt("read events", () => fetch(T + "/api/events", {credentials: "include"}).then(r => r.status));
  await attempt("mint a link", () => fetch(T + "/api/login-codes", {method: "POST", mode: "no-cors",
    credentials: "include"}).then(r => r.type + " " + r.status));
  await attempt("log in with json", () => fetch(T + "/api/session", {method: "POST",
    credentials: "include", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: "guess"})}).then(r => r.status));
  await new Promise(done => setTimeout(done, 500));  // the frame's load (or refusal) has happened
  window.done = true;
})();
</script>"""


# --- trading from two desks ------------------------------------------------------------------------------
def otc_web(peer: PeerProcess) -> str:
    """`otc web` as a trader runs it (the peer found by name, its token read from its data directory)."""
    out = subprocess.run(
        [sys.executable, "-m", "otc.cli", "--as", peer.name, "web", "--no-open"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_trade_across_two_desks_live(market: dict[str, PeerProcess], browser: Any, desks: list[Desk]) -> None:
    alice, bob = market["alice"], market["bob"]
    link = otc_web(alice)
    assert link.startswith(f"{alice.url}/#login=") and alice.token not in link
    a = Desk(browser, alice).open(link)
    b = Desk(browser, bob, dark=True).open()
    desks.extend([a, b])
    assert a.page.locator("#me").inner_text().startswith("alice")

    # bob posts an ask through the ordinary form; alice's desk shows it without a reload
    form = b.page.locator("#offer-form")
    form.locator('input[name="side"][value="sell"]').check()
    form.locator('select[name="pair"]').select_option("BTC/USD")
    form.locator('input[name="amount"]').fill("2.5")
    form.locator('input[name="price"]').fill("8123.4")
    form.locator('input[name="min_fill"]').fill("0.5")
    assert form.locator("[data-total]").inner_text() == "Total: 20308.50 USD"  # exact, as typed
    form.locator('button[type="submit"]').click()
    posted = form.locator(".result .ok")
    posted.wait_for()
    offer_id = wait_for(lambda: next((o["id"] for o in bob.get("/api/offers") if o["price"] == "8123.4"), ""))
    assert offer_id[:8] in form.locator(".result").inner_text()
    a.wait_row(offer_id)
    price, amount, _, maker, action = a.cells(offer_id)
    assert (price, amount) == ("8123.40", "2.50000000") and maker.startswith("bob") and action == "Take"
    assert bob.peer_id[:8] in maker
    b.wait_row(offer_id)
    assert "you" in b.cells(offer_id)[3] and b.cells(offer_id)[4] == "Cancel"  # mine, marked in words

    # alice takes 1 of it from its row: the dialog comes prefilled with what is available
    a.row(offer_id).locator("button").click()
    dialog = a.page.locator("#take-dialog")
    assert dialog.is_visible()
    amount_input = dialog.locator('input[name="amount"]')
    assert amount_input.input_value() == "2.5"
    amount_input.fill("0.1")  # below the maker's minimum fill: refused, in words
    dialog.locator("#take-submit").click()
    dialog.locator("#take-result:has-text('does not accept takes that small')").wait_for()
    assert "ERR_BELOW_MIN_FILL" in dialog.locator("#take-result").inner_text()
    amount_input.fill("3")  # more than there is
    dialog.locator("#take-submit").click()
    dialog.locator("#take-result .error").wait_for()
    refusal = dialog.locator("#take-result").inner_text()
    assert "Less is available" in refusal or "not valid" in refusal, refusal
    amount_input.fill("1")
    dialog.locator("#take-submit").click()
    done = dialog.locator("#take-result .ok")
    done.wait_for(timeout=20_000)
    assert done.inner_text() == "Done: you bought 1 BTC at 8123.40 USD, 8123.40 USD in all."
    assert "signed by both" in dialog.locator("#take-result").inner_text()
    a.shot("take-dialog")
    a.page.keyboard.press("Escape")
    assert not dialog.is_visible()

    # both desks follow: the row now shows 1.5, bob is told of the fill, both hold the verified receipt
    a.page.locator(f'tr[data-id="{offer_id}"] td.amount:has-text("1.5")').wait_for()
    b.page.locator(f'tr[data-id="{offer_id}"] td.amount:has-text("1.5")').wait_for()
    fill = b.wait_toast("fill", "alice")
    assert "bought 1 BTC" in fill and "8123.40" in fill
    for desk, role in ((a, "taker"), (b, "maker")):
        desk.tab("trades")
        trade = desk.page.locator("#trades tr").first
        trade.wait_for()
        text = trade.inner_text()
        assert role in text and "✓ signed by both" in text and "8123.40" in text, text
    b.tab("offers")
    mine = b.page.locator(f'#my-offers tr[data-id="{offer_id}"]')
    assert mine.locator("td").nth(2).inner_text() == "1.5 of 2.5 BTC"  # remaining, of the amount

    a.shot("desk-1280x800")
    b.shot("desk-dark-1280x800")

    # bob cancels from his offers list: gone from alice's book, live
    mine.locator("button").click()
    a.wait_gone(offer_id)
    b.wait_toast("info", "cancelled")
    assert all(o["id"] != offer_id for o in alice.book()["asks"])


def test_sweep_and_keyboard_only_take(
    market: dict[str, PeerProcess], browser: Any, desks: list[Desk]
) -> None:
    alice, bob = market["alice"], market["bob"]
    cheap = bob.offer("sell", "0.3", "7001.5", pair="BTC/EUR")
    dear = bob.offer("sell", "0.5", "7002", pair="BTC/EUR")
    a = Desk(browser, alice).open()
    desks.append(a)
    a.page.select_option("#pair", "BTC/EUR")
    a.wait_row(dear["id"])

    # the sweep form: buy up to 0.6 at 7002 at worst, across bob's two asks, best first
    form = a.page.locator("#sweep-form")
    assert form.locator('select[name="pair"]').input_value() == "BTC/EUR"  # follows the book's pair
    form.locator('input[name="amount"]').fill("0.6")
    form.locator('input[name="limit"]').fill("7002")
    assert form.locator("[data-total]").inner_text() == "At most: 4201.20 EUR"
    form.locator('button[type="submit"]').click()
    summary = form.locator(".result .ok")
    summary.wait_for(timeout=30_000)
    assert summary.inner_text() == "Bought 0.6 BTC for 4201.05 EUR"  # 0.3 x 7001.5 + 0.3 x 7002, exactly
    assert "in 2 fills" in form.locator(".result").inner_text()
    a.wait_gone(cheap["id"])
    a.page.locator(f'tr[data-id="{dear["id"]}"] td.amount:has-text("0.2")').wait_for()

    # the keyboard alone: Tab reaches the row's Take button, Enter opens the dialog, Enter takes
    a.page.locator(".skip").focus()
    for _ in range(80):
        a.page.keyboard.press("Tab")
        if a.page.evaluate("document.activeElement.closest('tr')?.dataset.id") == dear["id"]:
            break
    else:
        pytest.fail("Tab never reached the row's Take button")
    a.page.keyboard.press("Enter")
    dialog = a.page.locator("#take-dialog")
    assert dialog.is_visible()
    assert a.page.evaluate("document.activeElement.name") == "amount"  # focus is where the typing goes
    assert a.page.evaluate("document.activeElement.value") == "0.2"
    a.page.keyboard.type("0.05")  # replaces the selected amount
    a.page.keyboard.press("Enter")
    dialog.locator("#take-result .ok").wait_for(timeout=20_000)
    assert "you bought 0.05 BTC at 7002.00 EUR" in dialog.locator("#take-result").inner_text()
    a.page.keyboard.press("Escape")
    a.page.locator(f'tr[data-id="{dear["id"]}"] td.amount:has-text("0.15")').wait_for()
    bob.delete(f"/api/offers/{dear['id']}")
    a.wait_gone(dear["id"])


def test_chat_both_ways_with_notifications(
    market: dict[str, PeerProcess], browser: Any, desks: list[Desk]
) -> None:
    alice, bob = market["alice"], market["bob"]
    a = Desk(browser, alice).open()
    b = Desk(browser, bob).open()
    desks.extend([a, b])
    b.away()  # bob looks at another window: a desktop notification too, not only the page's
    # alice starts a conversation with bob from the peers she knows
    a.page.locator("#new-chat").select_option(bob.peer_id)
    a.page.fill("#chat-text", "50 more at 8100?")
    a.page.press("#chat-text", "Enter")
    a.page.locator('#messages .message.out:has-text("50 more at 8100?")').wait_for()

    # bob is told: an in-page notification, a desktop one (he allowed them), an unread count
    toast = b.wait_toast("message", "alice")
    assert "50 more at 8100?" in toast and alice.peer_id[:8] in toast
    conversation = b.page.locator(f'#conversations button[data-peer="{alice.peer_id}"]')
    conversation.locator(".badge.unread:has-text('1 unread')").wait_for()
    assert b.page.locator("#unread-total").inner_text() == "(1 unread)"
    shown = [(n["title"][:21], n["body"]) for n in b.notifications()]
    assert shown == [("Message: from alice (", "50 more at 8100?")]
    b.shot("chat-notification")
    b.away(False)

    # he opens it: read; he answers; alice sees the answer in the open conversation
    conversation.click()
    assert b.page.locator("#unread-total").inner_text() == ""
    assert conversation.locator(".badge.unread").count() == 0
    sender = b.page.locator("#messages .message.in .meta").first.inner_text()
    assert "alice" in sender and alice.peer_id[:8] in sender  # the claimed name, and the id
    b.page.fill("#chat-text", "8000 is my best")
    b.page.click("#chat-form button[type=submit]")
    a.page.locator('#messages .message.in:has-text("8000 is my best")').wait_for()
    assert [m["text"] for m in alice.get("/api/messages")] == ["50 more at 8100?", "8000 is my best"]
    # a message to a conversation not open elsewhere: counted unread, survives a reload
    bob.post("/api/messages", {"to": alice.peer_id, "text": "still there?"})
    a.page.locator('#messages .message.in:has-text("still there?")').wait_for()
    assert a.toasts("message") == [] and a.notifications() == []  # she was looking: nothing to tell
    b.page.reload()
    b.wait_live()
    assert b.page.locator("#unread-total").inner_text() == ""  # read before the reload stays read


def test_phone_width(market: dict[str, PeerProcess], browser: Any, desks: list[Desk]) -> None:
    alice = market["alice"]
    phone = Desk(browser, alice, width=390, height=844).open()
    desks.append(phone)
    overflow = phone.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone"
    for section in ("#book", ".depth", "#offer-form", "#sweep-form", ".activity", ".chat"):
        box = phone.page.locator(section).bounding_box()
        assert box is not None and box["width"] <= 390, (section, box)
    phone.shot("phone-390", full_page=True)


# --- connection: a peer that freezes, stops, comes back; a Grape that goes away ----------------------------
def test_the_banner_shows_when_the_peer_or_the_market_is_unreachable_and_clears_by_itself(
    browser: Any, desks: list[Desk], tmp_path: Path
) -> None:
    with GrapeNetwork(1, log_dir=tmp_path) as net:
        carol = PeerProcess(net.urls[0], "carol", data_dir=tmp_path / "carol", log_dir=tmp_path)
        dave = PeerProcess(net.urls[0], "dave", log_dir=tmp_path)
        try:
            start_all([carol, dave])
            c = Desk(browser, carol).open()
            desks.append(c)
            banner = c.page.locator("#banner")
            assert banner.is_hidden()

            # frozen (SIGSTOP): the connection stays open but says nothing; the desk notices
            carol.signal(signal.SIGSTOP)
            try:
                c.page.wait_for_selector('#banner:not([hidden]):has-text("does not answer")', timeout=20_000)
                assert c.page.locator("#conn").get_attribute("data-state") == "lost"
                c.shot("banner-peer-frozen")
            finally:
                carol.signal(signal.SIGCONT)
            c.wait_live(30_000)  # back by itself, same session: no login
            assert banner.is_hidden() and c.view == "desk"
            posted = dave.offer("buy", "1", "6999")
            c.wait_row(posted["id"])

            # stopped: the banner at once; back with a new token: the session is gone, the desk says so
            carol.stop()
            c.page.wait_for_selector('#banner:not([hidden]):has-text("does not answer")', timeout=10_000)
            carol.start()
            relogin = 'body[data-view="login"] #login-error:has-text("restarted")'
            c.page.wait_for_selector(relogin, timeout=30_000)
            c.page.fill("#token", carol.token)
            c.page.press("#token", "Enter")
            c.wait_live()
            c.wait_row(posted["id"])

            # the Grape goes away: trading with known peers goes on, the desk says the market is away
            net.grapes[0].stop()
            c.page.wait_for_selector('#banner:not([hidden])[data-kind="market"]', timeout=30_000)
            c.shot("banner-market")
            net.restart(0)
            c.page.wait_for_selector("#banner[hidden]", state="attached", timeout=30_000)
        finally:
            for peer in (carol, dave):
                peer.stop()


# --- the page's arithmetic, and what the event stream sends it ------------------------------------------
MONEY = """async () => {
  const m = await import("/static/js/money.js");
  const big = m.toUnits("21000000", 8) * m.toUnits("99999999.99", 2);  // the largest BTC/USD total
  return {
    total: m.canonical(big, 10),
    sum: m.canonical(m.toUnits("0.1", 8) + m.toUnits("0.2", 8), 8),  // 0.30000000000000004 in floats
    fixed: [m.fixed("8000.5", 2), m.fixed("8000", 2), m.fixed("0.123456789", 2)],
    valid: [m.isAmount("1.5", 8), m.isAmount("1.123456789", 8), m.isAmount("0", 8), m.isAmount("1e3", 8),
            m.isAmount("-1", 8), m.isAmount("01", 8), m.isAmount(" 1", 8)],
    negative: m.fromUnits(-5n, 2),
  };
}"""


def test_money_in_the_page_is_exact(market: dict[str, PeerProcess], browser: Any, desks: list[Desk]) -> None:
    desk = Desk(browser, market["alice"])
    desks.append(desk)
    desk.page.goto(market["alice"].url)  # the login page is enough: the module is public code
    got = desk.page.evaluate(MONEY)
    assert got["total"] == "2099999999790000" and got["sum"] == "0.3"  # 21,000,000 x 99,999,999.99
    assert got["fixed"] == ["8000.50", "8000.00", "0.123456789"]  # padded, never rounded
    assert got["valid"] == [True, False, False, False, False, False, False]
    assert got["negative"] == "-0.05"


def test_the_event_stream_carries_what_the_page_shows(market: dict[str, PeerProcess]) -> None:
    alice, bob = market["alice"], market["bob"]
    port = alice.api_port
    import socket

    from .rawhttp import build

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(build("GET", "/api/events", port, token=alice.token))
        seen = b""

        def events() -> list[dict[str, Any]]:
            nonlocal seen
            seen += sock.recv(65536)
            return [json.loads(line[6:]) for line in seen.decode(errors="replace").splitlines()
                    if line.startswith("data: {") and line.endswith("}")]  # fmt: skip

        status = wait_for(lambda: [e for e in events() if e["type"] == "status"], what="a status event")[0]
        assert (
            status["market"] is True
            and status["peers"] >= 1
            and abs(status["now"] - time.time() * 1000) < 5000
        )
        wait_for(lambda: [e for e in events() if e["type"] == "peers"], what="the peers")
        posted = bob.offer("buy", "0.5", "6500.25", min_fill="0.1")
        offer = wait_for(lambda: [e for e in events() if e["type"] == "offer" and e["id"] == posted["id"]])[0]
    shown = next(o for o in alice.book()["bids"] if o["id"] == posted["id"])
    assert offer == {"type": "offer", **shown}  # the very object GET /api/book shows
    assert offer["available"] == "0.5" and offer["mine"] is False and offer["maker_name"] == "bob"
    bob.delete(f"/api/offers/{posted['id']}")
