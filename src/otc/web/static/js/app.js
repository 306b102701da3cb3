// The web desk: boot, login, the live state, and rendering once per animation frame.
//
// State is a copy of what the peer's API says (the book of the chosen pair, my offers, my trades, my
// messages, the peers), read once each time the event stream (re)connects and then patched by its
// events. Events only change the state and mark what needs drawing; one requestAnimationFrame callback
// draws what changed, so a burst of events costs one render, and nothing is ever drawn twice in a
// frame. No timer polls the peer: the only timers are the stream's silence watchdog, its reconnection
// back-off, and the expiry of the next offer to expire.

import { Live, call } from "./api.js";
import { Book } from "./book.js";
import { BookView } from "./bookview.js";
import { Chat } from "./chat.js";
import { DepthChart } from "./depth.js";
import { $, setText } from "./dom.js";
import { fixed } from "./money.js";
import { notify, setupToggle } from "./notify.js";
import { renderMyOffers, renderPeers, renderTrades, setupTabs } from "./panels.js";
import { Tickets } from "./tickets.js";
import { explain } from "./words.js";

const state = {
  me: null, // {peer_id, name}
  pairs: new Map(), // symbol -> {symbol, base, quote, amount_places, price_places, ...}
  book: null, // Book of the pair shown
  mine: new Map(), // id -> my open offer
  trades: new Map(), // id -> receipt
  messages: new Map(), // id -> message
  peers: new Map(), // id -> peer
  peersVersion: 0,
  clockOffset: 0, // the peer's clock minus ours (ms): offers expire by the peer's clock
  market: true, // the peer's Grape answers
  livePeers: 0,
};
const serverNow = () => Date.now() + state.clockOffset;
const WHY_KEY = "otc-desk:logged-out";
const hidden = (maker) => maker !== state.me.peer_id && state.peers.get(maker)?.alive === false;

// --- drawing, once per frame ---------------------------------------------------------------------------
const dirty = new Set();
let frame = 0;
let markRendered = false; // a snapshot was loaded: mark when it is on screen (performance timeline)

function invalidate(...parts) {
  for (const part of parts) dirty.add(part);
  if (!frame) frame = requestAnimationFrame(draw);
}

const views = {};

function draw() {
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  if (!state.book) return;
  if (parts.has("book")) {
    views.book.render();
    views.depth.update(state.book);
    views.tickets.refreshTake(state.book);
    scheduleExpiry();
  }
  if (parts.has("mine")) renderMyOffers(state, (o) => views.tickets.cancel(o));
  if (parts.has("trades")) renderTrades(state);
  if (parts.has("peers")) renderPeers(state, (id) => (selectTab("tab-peers"), views.chat.show(id, { focus: true })));
  if (parts.has("chat") || parts.has("peers")) views.chat.render();
  if (parts.has("header")) header();
  if (markRendered && parts.has("book")) {
    markRendered = false;
    performance.mark("otc:book-rendered", { detail: { offers: state.book.size } });
  }
}

let expiryTimer = 0;
function scheduleExpiry() {
  clearTimeout(expiryTimer);
  const next = state.book.expire(serverNow());
  if (next === Infinity) return;
  expiryTimer = setTimeout(() => invalidate("book"), Math.min(2 ** 30, Math.max(50, next - serverNow() + 10)));
}

// --- the live state --------------------------------------------------------------------------------------
let syncing = false;
let generation = 0; // a newer (re)sync makes the answers of an older one worthless
let buffer = []; // events that arrived while the state was being read: applied on top of it

const live = new Live({
  onOpen: () => resync(),
  onEvent: (event) => {
    if (syncing) {
      buffer.push(event);
      if (event.type === "status") status(event);
    } else handle(event, true);
  },
  onState: connection,
});

/** Read everything (after each (re)connection, or when told events were dropped). */
async function resync() {
  const mine = ++generation;
  syncing = true;
  buffer = [];
  const pair = state.book.pair.symbol;
  try {
    const [book, offers, trades, messages, peers] = await Promise.all([
      call("GET", `/api/book?pair=${encodeURIComponent(pair)}`),
      call("GET", "/api/offers"),
      call("GET", "/api/trades"),
      call("GET", "/api/messages"),
      call("GET", "/api/peers?all=1"),
    ]);
    if (mine !== generation) return;
    state.peers = new Map(peers.map((p) => [p.id, p]));
    state.peersVersion++;
    if (book.pair === state.book.pair.symbol) state.book.load(book);
    state.mine = new Map(offers.map((o) => [o.id, o]));
    state.trades = new Map(trades.map((r) => [r.id, r]));
    state.messages = new Map(messages.map((m) => [m.id, m]));
    syncing = false;
    for (const event of buffer) handle(event, false);
    buffer = [];
    markRendered = true;
    invalidate("book", "mine", "trades", "peers", "chat", "header");
  } catch (error) {
    if (mine !== generation) return;
    syncing = false;
    if (error.status === 401) loggedOut("your session ended");
    else live.lost(`reading the desk failed: ${explain(error)}`);
  }
}

/** Read the book of the pair shown again (a maker re-synced, a maker fell silent or came back, or
 * another pair was picked); offer events arriving meanwhile are kept and applied on top. */
let bookReading = null;
let bookAgain = false;
let bookBuffer = null;
async function rereadBook() {
  if (bookReading) {
    bookAgain = true;
    return;
  }
  const book = state.book;
  bookBuffer = [];
  bookReading = call("GET", `/api/book?pair=${encodeURIComponent(book.pair.symbol)}`);
  try {
    const snapshot = await bookReading;
    if (book === state.book) {
      book.load(snapshot);
      for (const offer of bookBuffer) book.apply(offer, serverNow(), hidden);
      markRendered = true;
      invalidate("book");
    }
  } catch (error) {
    if (error.status === 401) loggedOut("your session ended");
  } finally {
    bookReading = null;
    bookBuffer = null;
    if (bookAgain) {
      bookAgain = false;
      rereadBook();
    }
  }
}

/** Apply one event; `fresh`: it happened just now (not replayed after a snapshot), worth a notification. */
function handle(event, fresh) {
  switch (event.type) {
    case "status":
      status(event);
      break;
    case "offer":
      offer(event);
      break;
    case "trade":
      trade(event, fresh);
      break;
    case "message":
      message(event, fresh);
      break;
    case "peers":
      peers(event.peers);
      break;
    case "book":
      rereadBook();
      break;
    case "resync":
      resync();
      break;
    default:
      break; // a newer peer may send more kinds: ignored
  }
}

function status(event) {
  state.clockOffset = event.now - Date.now();
  state.market = event.market;
  state.livePeers = event.peers;
  invalidate("header");
}

function offer(o) {
  if (o.mine) {
    const held = state.mine.get(o.id);
    if (!held || held.seq < o.seq) {
      if (o.status === "open") state.mine.set(o.id, o);
      else state.mine.delete(o.id);
      invalidate("mine");
    }
  }
  if (bookBuffer) bookBuffer.push(o);
  if (state.book.apply(o, serverNow(), hidden)) invalidate("book");
}

function trade(receipt, fresh) {
  if (state.trades.has(receipt.id)) return;
  state.trades.set(receipt.id, receipt);
  invalidate("trades");
  if (fresh && receipt.role === "maker") {
    const pair = state.pairs.get(receipt.pair);
    const did = receipt.taker_side === "buy" ? "bought" : "sold";
    notify(
      `${receipt.taker_name} (${receipt.taker.slice(0, 8)}) ${did} ${receipt.amount} ${pair.base}`,
      `from your ${receipt.side} offer at ${fixed(receipt.price, pair.price_places)} ${pair.quote}`,
      { kind: "fill", onOpen: () => selectTab("tab-trades") },
    );
  }
}

function message(m, fresh) {
  if (state.messages.has(m.id)) return;
  state.messages.set(m.id, m);
  invalidate("chat");
  if (!fresh || m.direction !== "in") return;
  const looking = views.chat.open === m.sender && document.visibilityState === "visible";
  if (looking) views.chat.markRead();
  else {
    const from = m.via === "grapevine" ? `a Grapevine peer at ${m.sender} (unsigned)` : `${m.sender_name} (${m.sender.slice(0, 8)})`;
    notify(`from ${from}`, m.text, { kind: "message", onOpen: () => views.chat.show(m.sender, { focus: true }) });
  }
}

function peers(list) {
  const before = state.peers;
  state.peers = new Map(list.map((p) => [p.id, p]));
  state.peersVersion++;
  invalidate("peers", "book");
  // a maker fell silent or came back: the peer hides or shows its offers, so read the book again
  const changed = list.some((p) => (before.get(p.id)?.alive ?? false) !== p.alive) || [...before.keys()].some((id) => !state.peers.has(id));
  if (changed) rereadBook();
}

// --- connection, header, banner ------------------------------------------------------------------------
function connection(kind, detail) {
  const conn = $("#conn");
  conn.dataset.state = kind;
  if (kind === "live") {
    banner(null);
    invalidate("header");
  } else if (kind === "connecting") setText(conn, "Connecting…");
  else if (kind === "lost") {
    setText(conn, "Reconnecting…");
    const next = detail.retryInMs ? ` Next try in ${Math.max(1, Math.round(detail.retryInMs / 1000))} s.` : "";
    banner(`Your peer does not answer: ${detail.why}. Reconnecting by itself (attempt ${detail.attempt}).${next} What you see may be out of date.`, "peer");
  } else if (kind === "logged-out") loggedOut(detail.why);
}

function header() {
  if (!state.me) return;
  const conn = $("#conn");
  if (conn.dataset.state === "live") {
    const n = state.livePeers;
    setText(conn, `Live · ${n} other peer${n === 1 ? "" : "s"}`);
    if (!state.market) {
      banner("Your peer cannot reach the market's directory (its Grape does not answer). Trading with the peers it knows goes on; new peers, and offers of peers it has not met, wait until it is back. Reconnecting by itself.", "market");
    } else if ($("#banner").dataset.kind === "market") banner(null);
  }
}

function banner(text, kind) {
  const box = $("#banner");
  box.hidden = !text;
  box.dataset.kind = text ? kind : "";
  setText($("#banner-text"), text || "");
}

// --- views: login and desk ------------------------------------------------------------------------------
function show(view) {
  document.body.dataset.view = view;
  $("#login-view").hidden = view !== "login";
  $("#desk-view").hidden = view !== "desk";
  for (const id of ["#me", "#pair-pick", "#header-actions"]) $(id).hidden = view !== "desk";
}

function loggedOut(why) {
  live.stop();
  if (state.me) {
    // a desk was open: start again from a blank page, so that none of its data stays in this one
    try {
      sessionStorage.setItem(WHY_KEY, why || "");
    } catch {
      // not kept: the login form just says nothing about why
    }
    location.replace("/");
    return;
  }
  banner(null);
  $("#conn").dataset.state = "logged-out";
  setText($("#conn"), "Logged out");
  showLogin(why ? `Log in again: ${why}.` : "");
}

function showLogin(message) {
  show("login");
  setText($("#login-where"), `This desk belongs to the peer at ${location.host}.`);
  setText($("#login-error"), message || "");
  $("#token").value = "";
  $("#token").focus();
}

async function openDesk(health, pairsAnswer = call("GET", "/api/pairs")) {
  state.me = { peer_id: health.peer_id, name: health.name };
  const me = $("#me");
  me.replaceChildren();
  me.append(document.createTextNode(`${health.name} `), Object.assign(document.createElement("code"), { className: "id", textContent: health.peer_id.slice(0, 8), title: health.peer_id }));
  const { default: fallback, pairs } = await pairsAnswer;
  state.pairs = new Map(pairs.map((p) => [p.symbol, p]));
  const saved = localStorage.getItem("otc-desk:pair");
  const symbol = state.pairs.has(saved) ? saved : fallback;
  const select = $("#pair");
  select.replaceChildren(...pairs.map((p) => Object.assign(document.createElement("option"), { value: p.symbol, textContent: p.symbol })));
  select.value = symbol;
  state.book = new Book(state.pairs.get(symbol));
  views.tickets.setPairs(state.pairs, symbol);
  views.chat.load();
  show("desk");
  live.start();
}

function choosePair(symbol) {
  try {
    localStorage.setItem("otc-desk:pair", symbol);
  } catch {
    // not remembered: the default pair next time
  }
  state.book = new Book(state.pairs.get(symbol));
  views.book.resetRows();
  views.tickets.followPair(symbol);
  invalidate("book");
  rereadBook();
}

/** A login link carries a single-use code in its fragment (never sent to any server by the browser):
 * take it out of the address bar and the history entry at once, then trade it for a session. */
function takeLoginCode() {
  const match = /^#login=([A-Za-z0-9_-]{16,128})$/.exec(location.hash);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return match ? match[1] : null;
}

let selectTab = () => {};

async function boot() {
  views.book = new BookView(state, { onTake: (o) => views.tickets.openTake(o), onCancel: (o) => views.tickets.cancel(o) });
  views.depth = new DepthChart($("#chart"), $("#readout"));
  views.chat = new Chat(state, { onChange: () => invalidate("chat") });
  views.tickets = new Tickets(state, {
    onOffer: (o) => (offer(o), invalidate("mine")),
    onTrade: (r) => trade(r, false),
  });
  selectTab = setupTabs();
  setupToggle($("#notify-toggle"));
  $("#pair").addEventListener("change", (event) => choosePair(event.target.value));
  $("#logout").addEventListener("click", async () => {
    try {
      await call("DELETE", "/api/session");
    } catch {
      // logged out anyway as far as this page goes; the session ends at its expiry
    }
    loggedOut("");
  });
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (!token) return;
    try {
      await call("POST", "/api/session", { token });
      $("#token").value = "";
      await openDesk(await call("GET", "/api/health"));
    } catch (error) {
      setText($("#login-error"), error.code === "ERR_UNAUTHORIZED" ? "That is not this peer's token (a new one is written at every start)." : explain(error));
    }
  });

  // a login link pasted into a tab that shows the desk already changes only the fragment
  window.addEventListener("hashchange", () => enter());
  await enter();
}

/** Log in with the link's code if there is one, then open the desk (or ask for the token). */
async function enter() {
  const code = takeLoginCode();
  if (!code && state.me) return;
  let why = "";
  try {
    const before = sessionStorage.getItem(WHY_KEY); // why the last page logged out, if it did
    sessionStorage.removeItem(WHY_KEY);
    if (before) why = `Log in again: ${before}.`;
  } catch {
    // no storage: no reason to show
  }
  if (code) {
    try {
      await call("POST", "/api/session", { code });
    } catch (error) {
      why = error.status === 401 ? "This login link was used already or is more than a minute old: run otc web for a new one, or use the token." : explain(error);
    }
  }
  if (state.me) {
    // already open: a new session replaces the old one; a stale link changes nothing
    if (why) notify("the login link did not work", why, { kind: "error" });
    return;
  }
  try {
    // a session from before may still be good; ask for the pairs at once, not one round trip later
    const pairs = call("GET", "/api/pairs");
    pairs.catch(() => {}); // a 401 here is the health check's to report
    await openDesk(await call("GET", "/api/health"), pairs);
  } catch (error) {
    showLogin(why || (error.status === 401 ? "" : explain(error)));
  }
}

boot();
