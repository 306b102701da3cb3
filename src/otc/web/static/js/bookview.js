// The book table: asks above the spread (best at the bottom), bids below it (best at the top), each
// row with its cumulative depth, the maker (name and short id), and what can be done with it: take
// it, or cancel it if it is mine. Only the best rows of each side are in the DOM (more on request);
// rows are reused by offer id, so an event changes a few cells, not the table.

import { $, h, keyed, setNumber, setText, who } from "./dom.js";
import { canonical, fromUnits } from "./money.js";

const ROWS = 50; // rows per side at first; "show more" adds as many

export class BookView {
  constructor(state, { onTake, onCancel }) {
    this.state = state;
    this.onTake = onTake;
    this.onCancel = onCancel;
    this.shown = { asks: ROWS, bids: ROWS };
    this.drawn = null; // what was drawn: book version, pair, rows shown, peers version
    this.asksScroll = $("#asks-scroll");
    this.pinned = true; // the asks stay scrolled to the best (bottom) unless the trader scrolls up
    this.asksScroll.addEventListener("scroll", () => {
      const s = this.asksScroll;
      this.pinned = s.scrollHeight - s.scrollTop - s.clientHeight < 4;
    });
    for (const side of ["asks", "bids"]) {
      $(`#${side}-more`).addEventListener("click", () => {
        this.shown[side] += ROWS;
        this.render();
      });
    }
    // one listener for every row's button (rows come and go)
    for (const id of ["#asks", "#bids"]) {
      $(id).addEventListener("click", (event) => {
        const button = event.target.closest("button[data-action]");
        if (!button) return;
        const e = this.state.book.byId.get(button.closest("tr").dataset.id);
        if (!e) return;
        if (button.dataset.action === "take") this.onTake(e.offer);
        else this.onCancel(e.offer);
      });
    }
  }

  resetRows() {
    this.shown = { asks: ROWS, bids: ROWS };
    this.pinned = true;
  }

  render() {
    const { book, peersVersion } = this.state;
    const key = `${book.version}/${book.pair.symbol}/${this.shown.asks}/${this.shown.bids}/${peersVersion}`;
    if (key === this.drawn) return;
    this.drawn = key;
    const asks = cumulate(book.asks.slice(0, this.shown.asks));
    const bids = cumulate(book.bids.slice(0, this.shown.bids));
    let deepest = 1n; // the longest depth bar: the deepest cumulative shown on either side
    for (const rows of [asks, bids]) if (rows.length && rows[rows.length - 1].cum > deepest) deepest = rows[rows.length - 1].cum;
    const id = (r) => r.e.offer.id;
    const make = (r) => this.make(r);
    const update = (el, r) => this.update(el, r, deepest);
    keyed($("#asks"), asks.reverse(), id, make, update); // the best ask last, next to the spread
    keyed($("#bids"), bids, id, make, update);
    this.more("asks", book.asks.length);
    this.more("bids", book.bids.length);
    this.spread();
    setText($("#book-count"), `${book.asks.length} asks · ${book.bids.length} bids`);
    setText($("#book-title"), `Book ${book.pair.symbol}`);
    $("#book").dataset.offers = String(book.size);
    if (this.pinned) this.asksScroll.scrollTop = this.asksScroll.scrollHeight;
  }

  make(r) {
    const tr = h("tr", { "data-id": r.e.offer.id, className: r.e.offer.side === "buy" ? "bid" : "ask" });
    for (const name of ["price", "amount", "cum", "maker", "act"]) tr.append(h("td", { className: name }));
    const button = h("button", { type: "button", className: "small" });
    tr.lastChild.append(button);
    return tr;
  }

  update(tr, r, deepest) {
    const { e, cum } = r;
    const offer = e.offer;
    const { pair } = this.state.book;
    const peer = this.state.peers.get(offer.maker);
    const reachable = offer.mine || (peer ? peer.reachable : offer.reachable);
    const version = `${offer.seq}/${cum}/${deepest}/${reachable}/${peer ? peer.name : ""}`;
    if (tr._version === version) return; // nothing about this row changed
    tr._version = version;
    const [price, amount, depth, maker, act] = tr.children;
    const ap = pair.amount_places;
    setNumber(price, offer.price, pair.price_places);
    setNumber(amount, offer.available, ap);
    amount.title = offer.reserved !== "0" ? `${offer.available} of ${offer.remaining} ${pair.base} available: ${offer.reserved} held for takers confirming` : "";
    setNumber(depth, canonical(cum, ap), ap);
    tr.style.setProperty("--depth", `${Number((cum * 1000n) / deepest) / 10}%`);
    tr.classList.toggle("mine", offer.mine);
    tr.classList.toggle("unreachable", !reachable);
    maker.replaceChildren(
      who(offer.maker_name, offer.maker, { you: offer.mine }),
      reachable ? "" : h("span", { className: "badge warn" }, "not answering"),
    );
    const button = act.firstChild;
    const what = `${offer.side === "buy" ? "buy" : "sell"} ${offer.available} ${pair.base} at ${offer.price} ${pair.quote}`;
    if (offer.mine) {
      button.dataset.action = "cancel";
      button.textContent = "Cancel";
      button.setAttribute("aria-label", `Cancel your offer to ${what}`);
    } else {
      button.dataset.action = "take";
      button.textContent = "Take";
      button.setAttribute("aria-label", `Take: ${offer.maker_name} offers to ${what}`);
    }
  }

  more(side, total) {
    const button = $(`#${side}-more`);
    const shown = Math.min(total, this.shown[side]);
    button.hidden = total <= this.shown[side];
    setText(button, `Showing the best ${shown} of ${total}: show ${Math.min(ROWS, total - shown)} more`);
  }

  spread() {
    const { book } = this.state;
    const { pair } = book;
    const bid = book.bids[0];
    const ask = book.asks[0];
    const el = $("#spread");
    if (!bid || !ask) {
      setText(el, !bid && !ask ? "No offers in this book yet." : !bid ? "No bids: nobody offers to buy." : "No asks: nobody offers to sell.");
      return;
    }
    const pp = pair.price_places;
    const gap = ask.price - bid.price;
    const mid = ask.price + bid.price; // twice the mid price: the ratio below needs no division by 2
    const pct = Number((gap * 2000000n) / mid) / 10000; // a percentage, shown rounded and marked so
    const crossed = gap < 0n ? " (crossed: a bid above an ask; nothing matches them by itself)" : "";
    setText(
      el,
      `Spread ${fromUnits(gap, pp)} ${pair.quote} (≈ ${pct.toFixed(3)} %)${crossed} · best bid ${fromUnits(bid.price, pp)} · best ask ${fromUnits(ask.price, pp)}`,
    );
  }
}

function cumulate(entries) {
  let cum = 0n;
  return entries.map((e) => ((cum += e.available), { e, cum }));
}
