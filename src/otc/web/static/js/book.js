// The book of one pair as this page holds it: a copy of GET /api/book, patched by offer events.
//
// Each side is an array kept in the peer's own order (bids: highest price first, asks: lowest first;
// older first at an equal price, then by id), so the top rows, the cumulative depth and the depth
// chart are read straight off it. An event moves one offer: a binary search finds its place, one
// splice moves it; nothing is sorted again. A newer `seq` of an offer replaces an older one; an older
// one (a late event, or one that crossed a fresh snapshot) is ignored.

import { toUnits } from "./money.js";

/** Whether the peer would show this offer in its book (GET /api/book's rule). */
export function visible(offer, serverNow) {
  return (
    offer.status === "open" &&
    offer.available !== "0" &&
    (offer.expires_at === null || offer.expires_at > serverNow)
  );
}

export class Book {
  /** `pair`: the pair's description from GET /api/pairs (symbol and decimal places). */
  constructor(pair) {
    this.pair = pair;
    this.bids = []; // entries {offer, price (units), available (units)}
    this.asks = [];
    this.byId = new Map(); // id -> entry, for the offers shown
    this.seqs = new Map(); // id -> the newest seq seen, shown or not (so an older event cannot revive it)
    this.expiring = new Set(); // entries with an expiry: checked by `expire`
    this.version = 0; // bumped by every change: renderers compare it with what they drew
  }

  entry(offer) {
    return {
      offer,
      price: toUnits(offer.price, this.pair.price_places),
      available: toUnits(offer.available, this.pair.amount_places),
    };
  }

  /** Replace everything with a snapshot (GET /api/book: both sides, already in order). */
  load(snapshot) {
    this.byId.clear();
    this.seqs.clear();
    this.expiring.clear();
    const side = (offers) =>
      offers.map((offer) => {
        const e = this.entry(offer);
        this.byId.set(offer.id, e);
        this.seqs.set(offer.id, offer.seq);
        if (offer.expires_at !== null) this.expiring.add(e);
        return e;
      });
    this.bids = side(snapshot.bids);
    this.asks = side(snapshot.asks);
    this.version++;
  }

  /**
   * An offer event: returns true if the book changed. `hidden(maker)` says whether a maker's offers
   * are hidden right now (silent, or awaiting a sync with it); the peer hides them too.
   */
  apply(offer, serverNow, hidden) {
    if (offer.pair !== this.pair.symbol) return false;
    const seen = this.seqs.get(offer.id);
    if (seen !== undefined && seen >= offer.seq) return false;
    this.seqs.set(offer.id, offer.seq);
    const old = this.byId.get(offer.id);
    if (old) this.remove(old);
    if (visible(offer, serverNow) && !hidden(offer.maker)) this.insert(this.entry(offer));
    else if (!old) return false;
    this.version++;
    return true;
  }

  /** Drop offers whose expiry has passed (by the peer's clock); returns the time of the next one. */
  expire(serverNow) {
    let next = Infinity;
    for (const e of [...this.expiring]) {
      if (e.offer.expires_at <= serverNow) {
        this.remove(e);
        this.version++;
      } else next = Math.min(next, e.offer.expires_at);
    }
    return next;
  }

  sideOf(offer) {
    return offer.side === "buy" ? this.bids : this.asks;
  }

  insert(e) {
    const list = this.sideOf(e.offer);
    list.splice(this.position(list, e), 0, e);
    this.byId.set(e.offer.id, e);
    if (e.offer.expires_at !== null) this.expiring.add(e);
  }

  remove(e) {
    const list = this.sideOf(e.offer);
    let i = this.position(list, e);
    // `position` finds where the entry sorts; the same key is the same offer (ids are unique)
    if (list[i] !== e) i = list.indexOf(e);
    if (i >= 0) list.splice(i, 1);
    this.byId.delete(e.offer.id);
    this.expiring.delete(e);
  }

  /** The first index whose entry does not come before `e` in the side's order. */
  position(list, e) {
    const bids = e.offer.side === "buy";
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(list[mid], e, bids)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get size() {
    return this.bids.length + this.asks.length;
  }
}

/** Price-time priority: better price first, then older, then by id (the peer's order). */
function before(a, b, bids) {
  if (a.price !== b.price) return bids ? a.price > b.price : a.price < b.price;
  if (a.offer.created_at !== b.offer.created_at) return a.offer.created_at < b.offer.created_at;
  return a.offer.id < b.offer.id;
}

/**
 * Price levels of one side for the depth chart: [{price, amount, cumulative}] best first, in units,
 * at most `limit` levels.
 */
export function levels(side, limit) {
  const out = [];
  let cumulative = 0n;
  for (const e of side) {
    cumulative += e.available;
    const last = out[out.length - 1];
    if (last && last.price === e.price) {
      last.amount += e.available;
      last.cumulative = cumulative;
    } else if (out.length < limit) {
      out.push({ price: e.price, amount: e.available, cumulative });
    } else break;
  }
  return out;
}
