// The book table: asks above the spread (best at the bottom), bids below it (best at the top), each
// row with its cumulative depth, the maker (name and short id), and what can be done with it: take
// it, or cancel it if it is mine. Only the best rows of each side are in the DOM (more on request);
// rows are reused by offer id, so an event changes a few cells, not the table.

import { $, h, keyed, setNumber, setText, who } from "./dom.js";
import { canonical, fromUnits } from "./money.js";

const ROWS = 25; // rows per side at first (twice what a 1280x800 screen shows); "show more" adds as many

export class BookView {
  constructor(state, { onTake, onCancel }) {
    this.state = state;
    this.onTake = onTake;
    this.onCancel = onCancel;
    this.shown = { asks: ROWS, bids: ROWS };
    this.drawn = null; // what was drawn: book version, pair, rows shown, peers version
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
  }

  render() {
    const { book, peersVersion } = this.state;
    const key = `${book.version}/${book.pair.symbol}/${this.shown.asks}/${this.shown.bids}/${peersVersion}`;
    if (key === this.drawn) return;
    this.drawn = key;
    const asks = cumulate(book.asks.slice(0, this.shown.asks));
    const bids = cumulate(book.bids.slice(0, this.shown.bids));
    const id = (r) => r.e.offer.id;
    const make = (r) => this.make(r);
    const update = (el, r) => this.update(el, r);
    keyed($("#asks"), asks.reverse(), id, make, update); // the best ask last, next to the spread
    keyed($("#bids"), bids, id, make, update);
    this.more("asks", book.asks.length);
    this.more("bids", book.bids.length);
    this.spread();
    setText($("#book-count"), `${book.asks.length} asks · ${book.bids.length} bids`);
    setText($("#book-title"), `Book ${book.pair.symbol}`);
    $("#book").dataset.offers = String(book.size);
    // (the asks' scroll box is a reversed flex column: it starts at its end, the best ask, and stays
    // there as rows come and go, without reading the layout back here)
  }

  make(r) {
    const tr = h("tr", { "data-id": r.e.offer.id, className: r.e.offer.side === "buy" ? "bid" : "ask" });
    for (const name of ["price", "amount", "cum", "maker", "act"]) tr.append(h("td", { className: name }));
    const button = h("button", { type: "button", className: "small" });
    tr.lastChild.append(button);
    return tr;
  }

  /** Refresh one row, touching only the cells whose content changed: a new best offer shifts the
   * cumulative depth of every row below it, which must stay cheap at hundreds of events a second. */
  update(tr, r) {
    const { e, cum } = r;
    const offer = e.offer;
    const { pair } = this.state.book;
    const [price, amount, depth, maker, act] = tr.children;
    const ap = pair.amount_places;
    if (tr._seq !== offer.seq) {
      tr._seq = offer.seq;
      setNumber(price, offer.price, pair.price_places);
      setNumber(amount, offer.available, ap);
      amount.title = offer.reserved !== "0" ? `${offer.available} of ${offer.remaining} ${pair.base} available: ${offer.reserved} held for takers confirming` : "";
      tr.classList.toggle("mine", offer.mine);
      const button = act.firstChild;
      const what = `${offer.side} ${offer.available} ${pair.base} at ${offer.price} ${pair.quote}`;
      button.dataset.action = offer.mine ? "cancel" : "take";
      button.textContent = offer.mine ? "Cancel" : "Take";
      button.setAttribute("aria-label", offer.mine ? `Cancel your offer to ${what}` : `Take: ${offer.maker_name} offers to ${what}`);
    }
    if (tr._cum !== cum) {
      tr._cum = cum;
      setNumber(depth, canonical(cum, ap), ap);
    }
    const peer = this.state.peers.get(offer.maker);
    const reachable = offer.mine || (peer ? peer.reachable : offer.reachable);
    const name = peer ? peer.name : offer.maker_name;
    const who_ = `${name}/${reachable}`;
    if (tr._who !== who_) {
      tr._who = who_;
      tr.classList.toggle("unreachable", !reachable);
      maker.replaceChildren(
        who(name, offer.maker, { you: offer.mine }),
        reachable ? "" : h("span", { className: "badge warn" }, "not answering"),
      );
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
