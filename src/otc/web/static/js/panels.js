// The activity panels: my open offers (with cancel), my trades (as maker and as taker, with the
// receipt's signatures as the peer checked them), and the peers this one knows. Plus the tab strip
// that switches between them (arrow keys move along it, as ARIA's tabs pattern says).

import { $, $$, h, keyed, number, setText, when, who } from "./dom.js";
import { canonical, toUnits } from "./money.js";

export function setupTabs() {
  const tabs = $$('[role="tab"]');
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(`#${t.getAttribute("aria-controls")}`).hidden = !on;
    }
    if (focus) tab.focus();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      select(tabs[(to + tabs.length) % tabs.length], true);
    });
  }
  return (id) => select($(`#${id}`), false);
}

const sideWord = (side) => (side === "buy" ? "Buy" : "Sell");

/** My open offers, newest first, each with its cancel button. */
export function renderMyOffers(state, onCancel) {
  const offers = [...state.mine.values()].sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? -1 : 1));
  keyed(
    $("#my-offers"),
    offers,
    (o) => o.id,
    (o) => {
      const tr = h("tr", { "data-id": o.id, className: o.side === "buy" ? "bid" : "ask" });
      for (let i = 0; i < 6; i++) tr.append(h("td"));
      const cancel = h("button", { type: "button", className: "small" }, "Cancel");
      cancel.addEventListener("click", () => onCancel(state.mine.get(o.id) || o));
      tr.append(h("td", {}, cancel));
      return tr;
    },
    (tr, o) => {
      if (tr._seq === o.seq) return;
      tr._seq = o.seq;
      const pair = state.pairs.get(o.pair);
      const c = tr.children;
      c[0].replaceChildren(h("span", { className: `side ${o.side}` }, sideWord(o.side)), h("span", { className: "pair" }, o.pair));
      c[1].replaceChildren(number(o.price, pair.price_places));
      c[2].replaceChildren(plain(o.remaining), h("span", { className: "of" }, ` of ${o.amount} ${pair.base}`));
      c[3].replaceChildren(plain(o.available));
      c[4].replaceChildren(o.min_fill ? plain(o.min_fill) : "—");
      setText(c[5], o.expires_at ? when(o.expires_at) : "never");
      c[6].firstChild.setAttribute("aria-label", `Cancel your offer to ${o.side} ${o.remaining} ${pair.base} at ${o.price}`);
    },
  );
  $("#my-offers-empty").hidden = offers.length > 0;
  setText($("#offers-count"), offers.length ? `(${offers.length})` : "");
}

/** My trades, newest first. "You" says what I did (bought or sold) whichever side I was on. */
export function renderTrades(state) {
  const trades = [...state.trades.values()].sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? -1 : 1));
  keyed(
    $("#trades"),
    trades,
    (r) => r.id,
    (r) => {
      const pair = state.pairs.get(r.pair);
      const mine = r.role === "maker" ? r.side : r.taker_side; // what I did
      const other = r.role === "maker" ? who(r.taker_name, r.taker) : who(r.maker_name, r.maker);
      const total = toUnits(r.price, pair.price_places) * toUnits(r.amount, pair.amount_places);
      const places = pair.price_places + pair.amount_places;
      return h(
        "tr",
        { "data-id": r.id, className: mine === "buy" ? "bid" : "ask" },
        h(
          "td",
          {},
          h("span", { className: `side ${mine}` }, mine === "buy" ? "Bought" : "Sold"),
          h("span", { className: "pair" }, `${r.pair} as ${r.role}, ${when(r.created_at)}`),
        ),
        h("td", {}, plain(r.amount)), // in the pair's units, named under "You"
        h("td", {}, number(r.price, pair.price_places)),
        h("td", {}, number(canonical(total, places), pair.price_places)),
        h("td", {}, other),
        h(
          "td",
          { title: `trade ${r.id}\nmaker signature ${r.maker_sig}\ntaker signature ${r.taker_sig}` },
          r.verified
            ? h("span", { className: "badge ok" }, "✓ signed by both")
            : h("span", { className: "badge bad" }, "✗ signatures do not verify"),
        ),
      );
    },
    () => {},
  );
  $("#trades-empty").hidden = trades.length > 0;
  setText($("#trades-count"), trades.length ? `(${trades.length})` : "");
}

/** An exact amount as the API gave it, in the numbers' font, without padding (lists are not ladders). */
function plain(text) {
  return h("span", { className: "num" }, text);
}

/** The peers this one has heard of (silent ones too), with what the trader needs to judge them. */
export function renderPeers(state, onChat) {
  const peers = [...state.peers.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
  keyed(
    $("#peers"),
    peers,
    (p) => p.id,
    (p) => {
      const tr = h("tr", { "data-id": p.id });
      for (let i = 0; i < 6; i++) tr.append(h("td"));
      const chat = h("button", { type: "button", className: "small" }, "Message");
      chat.addEventListener("click", () => onChat(p.id));
      tr.append(h("td", {}, chat));
      return tr;
    },
    (tr, p) => {
      const c = tr.children;
      const v = `${p.name}/${p.alive}/${p.in_sync}/${p.reachable}/${p.offers}/${p.last_seen}`;
      if (tr._v === v) return;
      tr._v = v;
      c[0].replaceChildren(who(p.name, p.id));
      c[1].replaceChildren(state_(p.alive, "live", "silent"));
      c[2].replaceChildren(state_(p.in_sync, "in sync", "catching up"));
      c[3].replaceChildren(state_(p.reachable, "yes", "not answering"));
      setText(c[4], String(p.offers));
      setText(c[5], p.last_seen ? when(p.last_seen) : "—");
      c[6].firstChild.setAttribute("aria-label", `Message ${p.name} (${p.id.slice(0, 8)})`);
      tr.classList.toggle("silent", !p.alive);
    },
  );
  $("#peers-empty").hidden = peers.length > 0;
  const live = peers.filter((p) => p.alive).length;
  setText($("#peers-count"), `(${live} live)`);
}

/** A yes/no state as a word with a mark: colour helps, the word says it. */
function state_(good, yes, no) {
  return h("span", { className: `state ${good ? "good" : "bad"}` }, good ? `● ${yes}` : `○ ${no}`);
}
