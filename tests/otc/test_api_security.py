"""The control API is the trader's alone (issue 8 item 1; docs/security.md, "Control API").

Each attack runs against a real peer process on real Grapes, with requests built by hand (raw sockets) or
sent by a real browser (Debian's chromium, driven by Playwright), and each check fails if its defence is
removed: the token (401), the Host allow-list (403, DNS rebinding), the Origin and Sec-Fetch-Site checks
(403), JSON-only bodies (415). After every attack the peer is unchanged: no offer, no trade, no chat.
"""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..harness import PeerProcess, wait_for
from .browser import CHROMIUM, CHROMIUM_ARGS, Recorder, require_chromium
from .rawhttp import Reply, build, parse, read_all, request

Spawn = Callable[..., PeerProcess]
ASK = json.dumps({"side": "sell", "amount": "50", "price": "0.01"}).encode()  # what the attacker wants
CHAT = json.dumps({"to": "bob", "text": "sent by someone else"}).encode()
SWEEP = json.dumps({"side": "buy", "amount": "1", "limit": "99999999"}).encode()


def unchanged(alice: PeerProcess, bob: PeerProcess) -> None:
    """Nothing was posted, traded or sent in alice's name."""
    assert alice.get("/api/offers?all=1") == []
    assert alice.get("/api/trades") == []
    assert alice.get("/api/messages") == []
    assert bob.get("/api/messages") == []
    assert not any(o["maker"] == alice.peer_id for o in bob.book()["asks"] + bob.book()["bids"])


def refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), (reply.status, reply.body[:300])
    assert reply.json()["message"]
    assert not any(h.startswith("access-control-") for h in reply.headers), reply.headers


@pytest.fixture
def pair(spawn: Spawn) -> tuple[PeerProcess, PeerProcess]:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: alice.get("/api/health")["peers"] == 1, what="alice to see bob")
    return alice, bob


# --- the token ------------------------------------------------------------------------------------------
def test_every_endpoint_needs_the_token(pair: tuple[PeerProcess, PeerProcess]) -> None:
    alice, bob = pair
    port = alice.api_port
    json_type = {"Content-Type": "application/json"}
    endpoints = [
        ("GET", "/api/health", b""), ("GET", "/api/book", b""), ("GET", "/api/offers", b""),
        ("GET", "/api/trades", b""), ("GET", "/api/peers", b""), ("GET", "/api/messages", b""),
        ("GET", "/api/events", b""), ("GET", "/api/openapi.json", b""), ("POST", "/api/offers", ASK),
        ("POST", "/api/messages", CHAT), ("POST", "/api/sweep", SWEEP),
        ("POST", "/api/trades", b'{"offer_id": "abcd"}'), ("DELETE", "/api/offers/abcd", b""),
        ("DELETE", "/api/session", b""), ("GET", "/api/nothing", b""),
    ]  # fmt: skip
    wrong = alice.token[:-1] + ("A" if alice.token[-1] != "A" else "B")
    for method, path, body in endpoints:
        for auth in (None, f"Bearer {wrong}", "Bearer", f"Basic {alice.token}", f"Bearer {alice.token}x"):
            reply = request(method, path, port, headers={**json_type, "Authorization": auth}, body=body)
            refused(reply, 401, "ERR_UNAUTHORIZED")
            assert reply.headers["www-authenticate"].startswith("Bearer")
    # the token is never taken from the URL, nor as a cookie of its own
    refused(request("GET", f"/api/messages?token={alice.token}", port), 401, "ERR_UNAUTHORIZED")
    cookie = {"Cookie": f"otc_session_{port}={alice.token}"}
    refused(request("POST", "/api/offers", port, headers={**json_type, **cookie}, body=ASK), 401,
            "ERR_UNAUTHORIZED")  # fmt: skip
    # with it, the same requests work (the scheme name is case-insensitive)
    ok = request("GET", "/api/health", port, headers={"Authorization": f"bearer {alice.token}"})
    assert ok.status == 200 and ok.json()["peer_id"] == alice.peer_id
    unchanged(alice, bob)


def test_the_token_file_is_the_owners_and_new_at_every_start(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "alice"
    alice = spawn("alice", data_dir=data)
    path = data / "api.token"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1 and len(text.strip()) >= 43  # 256 bits
    assert not [p.name for p in data.iterdir() if p.name.startswith(".api.token")]  # no temporary left
    first = alice.token
    alice.stop()
    assert not path.exists()  # removed at a clean stop
    again = spawn("alice", data_dir=data)
    assert again.token != first
    refused(request("GET", "/api/health", again.api_port, token=first), 401, "ERR_UNAUTHORIZED")
    assert request("GET", "/api/health", again.api_port, token=again.token).status == 200


# --- DNS rebinding, foreign origins, simple requests ----------------------------------------------------
def test_dns_rebinding_foreign_origins_and_simple_bodies_are_refused_even_with_the_token(
    pair: tuple[PeerProcess, PeerProcess],
) -> None:
    alice, bob = pair
    port, token = alice.api_port, alice.token
    json_type = {"Content-Type": "application/json"}

    # DNS rebinding: the page's own name arrives in Host; so does any other name or port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1",
                 f"127.0.0.2:{port}", f"localhost.:{port}", f"0.0.0.0:{port}", "", None):  # fmt: skip
        for method, path, body in (("GET", "/api/messages", b""), ("GET", "/api/trades", b""),
                                   ("GET", "/api/events", b""), ("POST", "/api/offers", ASK)):  # fmt: skip
            reply = request(method, path, port, token=token, headers={**json_type, "Host": host}, body=body)
            refused(reply, 403, "ERR_FORBIDDEN_HOST")
    assert (
        request("GET", "/api/health", port, token=token, headers={"Host": f"LOCALHOST:{port}"}).status == 200
    )
    # two Host headers: refused outright
    twice = request("GET", "/api/health", port, token=token, headers={"host": "evil.example"})
    assert twice.status in (400, 403) and twice.code in ("ERR_INVALID_PAYLOAD", "ERR_FORBIDDEN_HOST")

    # a page on any other origin (other loopback ports included: same site, so cookies go along)
    for origin in (f"http://127.0.0.1:{port + 1}", "http://evil.example", "null", f"https://127.0.0.1:{port}",
                   f"http://localhost:{port}.evil.example"):  # fmt: skip
        for method, path, body in (("POST", "/api/offers", ASK), ("POST", "/api/messages", CHAT),
                                   ("GET", "/api/messages", b""),
                                   ("OPTIONS", "/api/offers", b"")):  # fmt: skip
            headers = {**json_type, "Origin": origin, "Access-Control-Request-Method": "POST"}
            refused(request(method, path, port, token=token, headers=headers, body=body), 403,
                    "ERR_FORBIDDEN_ORIGIN")  # fmt: skip
    for site in ("same-site", "cross-site"):  # what a browser says of a request from another origin
        headers = {**json_type, "Sec-Fetch-Site": site}
        refused(request("POST", "/api/offers", port, token=token, headers=headers, body=ASK), 403,
                "ERR_FORBIDDEN_ORIGIN")  # fmt: skip
        refused(request("GET", "/api/messages", port, token=token, headers={"Sec-Fetch-Site": site}), 403,
                "ERR_FORBIDDEN_ORIGIN")  # fmt: skip
    own = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    assert request("GET", "/api/offers", port, token=token, headers=own).status == 200

    # bodies a page may send without a preflight: text/plain, forms; and untyped ones
    form = b"side=sell&amount=50&price=0.01"
    multipart = b'--x\r\nContent-Disposition: form-data; name="side"\r\n\r\nsell\r\n--x--\r\n'
    for media, body in (("text/plain", ASK), ("text/plain;charset=UTF-8", ASK), (None, ASK),
                        ("application/x-www-form-urlencoded", form), ("multipart/form-data; boundary=x",
                        multipart), ("application/jsonp", ASK), ("text/json", ASK)):  # fmt: skip
        for path in ("/api/offers", "/api/messages", "/api/sweep"):
            reply = request("POST", path, port, token=token, headers={"Content-Type": media}, body=body)
            refused(reply, 415, "ERR_UNSUPPORTED_MEDIA_TYPE")
    unchanged(alice, bob)

    # the same requests, well formed, do act: the refusals above were the defences, not the requests
    posted = request("POST", "/api/offers", port, token=token, headers=json_type, body=ASK)
    assert posted.status == 201 and posted.json()["amount"] == "50"
    cancelled = request("DELETE", f"/api/offers/{posted.json()['id']}", port, token=token)
    assert cancelled.json()["status"] == "cancelled"


def test_absolute_targets_are_refused_and_expect_continue_is_honoured(
    pair: tuple[PeerProcess, PeerProcess],
) -> None:
    alice, bob = pair
    port, token = alice.api_port, alice.token
    # an absolute-form target names a host that would outrank Host: refused whatever it names
    for target in (f"http://evil.example:{port}/api/messages", f"http://127.0.0.1:{port}/api/messages"):
        reply = request("GET", target, port, token=token)
        assert (reply.status, reply.code) == (400, "ERR_INVALID_PAYLOAD"), reply.body
    # curl asks before sending a body: an accepted request gets 100 Continue, a refused one its refusal
    expect = {"Content-Type": "application/json", "Expect": "100-continue"}
    head = build("POST", "/api/messages", port, token=token, body=CHAT, headers=expect)[: -len(CHAT)]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(CHAT)
        reply = parse(read_all(sock))
    assert reply.status == 201 and reply.json()["text"] == "sent by someone else"
    assert [m["text"] for m in bob.get("/api/messages")] == ["sent by someone else"]
    refused(request("POST", "/api/offers", port, body=ASK, headers=expect), 401, "ERR_UNAUTHORIZED")


def test_responses_carry_security_headers_and_no_cors(pair: tuple[PeerProcess, PeerProcess]) -> None:
    alice, _ = pair
    port = alice.api_port
    for reply in (
        request("GET", "/api/health", port, token=alice.token),
        request("GET", "/api/health", port),
        request("GET", "/api/nothing", port, token=alice.token),
        request("OPTIONS", "/api/offers", port, headers={"Origin": "http://evil.example"}),
    ):
        h = reply.headers
        assert h["x-content-type-options"] == "nosniff" and h["cache-control"] == "no-store"
        assert "default-src 'none'" in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"] and h["x-frame-options"] == "DENY"
        assert h["cross-origin-resource-policy"] == "same-origin"
        assert not any(name.startswith("access-control-") for name in h), h


# --- browser sessions -----------------------------------------------------------------------------------
def login(peer: PeerProcess, token: str) -> Reply:
    body = json.dumps({"token": token}).encode()
    return request("POST", "/api/session", peer.api_port, headers={"Content-Type": "application/json"},
                   body=body)  # fmt: skip


def cookie_of(reply: Reply) -> str:
    return reply.headers["set-cookie"].split(";", 1)[0]


def test_login_sets_a_strict_session_cookie_that_is_not_the_token(
    pair: tuple[PeerProcess, PeerProcess],
) -> None:
    alice, bob = pair
    port = alice.api_port
    refused(login(alice, "not-the-token"), 401, "ERR_UNAUTHORIZED")
    refused(login(alice, ""), 401, "ERR_UNAUTHORIZED")
    bad = request(
        "POST", "/api/session", port, headers={"Content-Type": "text/plain"}, body=b'{"token": "x"}'
    )
    refused(bad, 415, "ERR_UNSUPPORTED_MEDIA_TYPE")
    foreign = {"Content-Type": "application/json", "Origin": "http://evil.example"}
    right = json.dumps({"token": alice.token}).encode()
    refused(request("POST", "/api/session", port, headers=foreign, body=right), 403, "ERR_FORBIDDEN_ORIGIN")

    reply = login(alice, alice.token)
    assert reply.status == 201
    attributes = [a.strip() for a in reply.headers["set-cookie"].split(";")]
    name, _, secret = attributes[0].partition("=")
    assert name == f"otc_session_{port}" and len(secret) >= 43 and secret != alice.token
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
    cookie = {"Cookie": f"other=1; {attributes[0]}"}
    assert request("GET", "/api/offers", port, headers=cookie).status == 200
    # a session obeys the same rules: no foreign origin, no text/plain
    refused(request("POST", "/api/offers", port, headers={**cookie, "Content-Type": "text/plain"}, body=ASK),
            415, "ERR_UNSUPPORTED_MEDIA_TYPE")  # fmt: skip
    refused(request("POST", "/api/offers", port, body=ASK,
                    headers={**cookie, "Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}),
            403, "ERR_FORBIDDEN_ORIGIN")  # fmt: skip
    # a wrong bearer token is not made good by a valid cookie
    refused(request("GET", "/api/offers", port, token="wrong", headers=cookie), 401, "ERR_UNAUTHORIZED")

    out = request("DELETE", "/api/session", port, headers=cookie)
    assert out.status == 200 and "Max-Age=0" in out.headers["set-cookie"]
    refused(request("GET", "/api/offers", port, headers=cookie), 401, "ERR_UNAUTHORIZED")

    # sessions are bounded: the 17th login ends the first
    cookies = [cookie_of(login(alice, alice.token)) for _ in range(17)]
    refused(request("GET", "/api/offers", port, headers={"Cookie": cookies[0]}), 401, "ERR_UNAUTHORIZED")
    assert all(request("GET", "/api/offers", port, headers={"Cookie": c}).status == 200 for c in cookies[1:])
    # each peer has its own cookie: alice's session is nothing at bob's
    refused(request("GET", "/api/offers", bob.api_port, headers={"Cookie": cookies[-1]}), 401,
            "ERR_UNAUTHORIZED")  # fmt: skip
    unchanged(alice, bob)


# --- a real browser -------------------------------------------------------------------------------------
# The attacks of issue 8 item 1, from a page on another loopback origin, against TARGET.
ATTACK_PAGE = """<!doctype html><meta charset="utf-8"><title>cheap bitcoin</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" enctype="text/plain" target="sink1" action="TARGET/api/offers">
<input name='{"side":"sell","amount":"50","price":"0.01","pad":"' value='"}'></form>
<form id="urlenc" method="POST" target="sink2" action="TARGET/api/messages">
<input name="to" value="bob"><input name="text" value="sent by a web page"></form>
<script>
const T = "TARGET";
const ask = JSON.stringify({side: "sell", amount: "50", price: "0.01"});
window.results = {};
async function attempt(name, f) {
  try { window.results[name] = await f(); } catch (e) { window.results[name] = "refused: " + e.name; }
}
function post(path, body, type, mode) {
  return fetch(T + path, {method: "POST", mode: mode, credentials: "include",
                          headers: {"Content-Type": type}, body: body}).then(r => r.type + " " + r.status);
}
function submitted(form, frame) {
  return new Promise(done => {
    document.querySelector(`iframe[name=${frame}]`).onload = () => done("submitted");
    document.getElementById(form).submit();
  });
}
(async () => {
  await attempt("text/plain ask", () => post("/api/offers", ask, "text/plain", "no-cors"));
  await attempt("text/plain sweep", () => post("/api/sweep",
    JSON.stringify({side: "buy", amount: "1", limit: "99999999"}), "text/plain", "no-cors"));
  await attempt("text/plain chat", () => post("/api/messages",
    JSON.stringify({to: "bob", text: "sent by a web page"}), "text/plain", "no-cors"));
  await attempt("json ask (preflighted)", () => post("/api/offers", ask, "application/json", "cors"));
  await attempt("beacon", () =>
    navigator.sendBeacon(T + "/api/offers", new Blob([ask], {type: "text/plain"})));
  await attempt("read inbox", () => fetch(T + "/api/messages", {credentials: "include"}).then(r => r.text()));
  await attempt("read trades", () => fetch(T + "/api/trades", {credentials: "include"}).then(r => r.text()));
  await attempt("form text/plain ask", () => submitted("plain", "sink1"));
  await attempt("form chat", () => submitted("urlenc", "sink2"));
  window.done = true;
})();
</script>"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Debian's headless chromium with a fresh profile (Playwright drives it; it never downloads one)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            bypass_csp=True,  # only so that the test can log in from the API's own (JSON) page
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def run_attack(context: Any, page_server: Recorder, target: str) -> dict[str, str]:
    page = context.new_page()
    page.goto(f"{page_server.url}/attack.html?target={target}")
    page.wait_for_function("window.done === true", timeout=30_000)
    results: dict[str, str] = page.evaluate("window.results")
    page.close()
    return results


def test_a_web_page_in_the_traders_logged_in_browser_cannot_trade_chat_or_read(
    pair: tuple[PeerProcess, PeerProcess], browser: Any
) -> None:
    alice, bob = pair
    # the trader logs in to alice's API in this browser, as the web desk will, and the session works
    own = browser.new_page()
    own.goto(alice.url + "/api/health")  # alice's own origin (a 401 JSON page)
    logged_in = own.evaluate(
        """async token => {
             const r = await fetch("/api/session", {method: "POST", body: JSON.stringify({token}),
                                                   headers: {"Content-Type": "application/json"}});
             const mine = await fetch("/api/offers");
             return [r.status, mine.status, await mine.text(), document.cookie];
           }""",
        alice.token,
    )
    assert logged_in[:3] == [201, 200, "[]"], logged_in
    assert logged_in[3] == "", "the session cookie must be HttpOnly"
    own.close()

    page_server, control = Recorder(ATTACK_PAGE), Recorder()
    try:
        # control: an API without our defences receives every attack, with the trader's cookie (another
        # loopback port is the same site, so SameSite=Strict does not hold it back)
        seen_results = run_attack(browser, page_server, control.url)
        posts = [r for r in control.seen if r["method"] == "POST"]
        asks = [r for r in posts if r["path"] == "/api/offers" and b'"amount":"50"' in r["body"]]
        assert len(asks) >= 3, posts  # the fetch, the beacon and the form
        assert {r["headers"].get("content-type", "").split(";")[0] for r in asks} == {"text/plain"}
        assert any(f"otc_session_{alice.api_port}=" in r["headers"].get("cookie", "") for r in asks), asks
        assert any(r["path"] == "/api/messages" for r in posts) and any(
            r["path"] == "/api/sweep" for r in posts
        )
        assert seen_results["form chat"] == "submitted"

        # the attack: the same page against alice's API
        results = run_attack(browser, page_server, alice.url)
    finally:
        page_server.close()
        control.close()
    assert results["read inbox"].startswith("refused") and results["read trades"].startswith("refused")
    assert results["json ask (preflighted)"].startswith("refused")
    # the browser sent it (the control got it) but may not even see an opaque answer: CORP same-origin
    assert seen_results["text/plain ask"] == "opaque 0" and results["text/plain ask"] == "refused: TypeError"
    unchanged(alice, bob)
    assert alice.get("/api/health")["offers"] == 0
