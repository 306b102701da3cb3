// The depth chart, drawn by uPlot (vendor/, MIT): cumulative amount against price, bids on the left
// stepping down towards the spread, asks on the right stepping up. Positions on the canvas are
// approximate numbers; every number printed (the read-out under the cursor) is an exact decimal
// string from the book's units. The book table holds the same data for keyboards and screen readers.

import { levels } from "./book.js";
import { approx, canonical, fromUnits } from "./money.js";
import { setText } from "./dom.js";

const LEVELS = 400; // price levels drawn per side: the nearest ones, which is what a depth chart is for
const WINDOW_PERCENT = 15n; // the chart spans the mid price ± 15 % (or ± the spread, if wider)
const MIN_REDRAW_MS = 100; // at most ten redraws a second: the table shows every change, the chart its shape

export class DepthChart {
  constructor(container, readout) {
    this.container = container;
    this.readout = readout;
    this.plot = null;
    this.points = []; // per x index: {price, bids, asks} as exact strings, for the read-out
    this.drawn = -1;
    this.lastDraw = 0;
    this.timer = 0;
    this.pair = null;
    new ResizeObserver(() => this.resize()).observe(container);
  }

  colors() {
    const style = getComputedStyle(document.documentElement);
    const v = (name) => style.getPropertyValue(name).trim();
    return { bid: v("--bid"), ask: v("--ask"), bidFill: v("--bid-fill"), askFill: v("--ask-fill"), grid: v("--grid"), text: v("--muted") };
  }

  create() {
    const c = this.colors();
    const stepped = (align) => globalThis.uPlot.paths.stepped({ align });
    const axis = { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid } };
    const { width, height } = this.size();
    this.plot = new globalThis.uPlot(
      {
        width,
        height,
        legend: { show: false },
        cursor: { y: false, points: { show: false }, drag: { x: false, y: false } },
        scales: { x: { time: false } },
        axes: [
          { ...axis, values: (u, splits) => splits.map((v) => this.tick(v, this.pair.price_places)) },
          { ...axis, size: 60, values: (u, splits) => splits.map((v) => this.tick(v, 8)) },
        ],
        series: [
          {},
          { label: "bids", stroke: c.bid, fill: c.bidFill, width: 2, paths: stepped(-1), points: { show: false } },
          { label: "asks", stroke: c.ask, fill: c.askFill, width: 2, paths: stepped(1), points: { show: false } },
        ],
        hooks: { setCursor: [(u) => this.showAt(u.cursor.idx)] },
      },
      [[], [], []],
      this.container,
    );
  }

  /** An axis label: the grid line's position, with no more decimals than the pair uses. */
  tick(value, places) {
    const text = value.toFixed(Math.min(places, 8));
    return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
  }

  size() {
    const box = this.container.getBoundingClientRect();
    return { width: Math.max(200, Math.floor(box.width)), height: Math.max(140, Math.floor(box.height)) };
  }

  resize() {
    if (this.plot) this.plot.setSize(this.size());
  }

  /** Draw `book` if it changed since the last drawing; at most every MIN_REDRAW_MS. */
  update(book) {
    if (book.version === this.drawn && book.pair === this.pair) return;
    const wait = this.lastDraw + MIN_REDRAW_MS - performance.now();
    if (wait > 0) {
      if (!this.timer) this.timer = setTimeout(() => ((this.timer = 0), this.update(book)), wait);
      return;
    }
    this.draw(book);
  }

  draw(book) {
    if (!globalThis.uPlot) return; // the library failed to load: the table still shows everything
    if (!this.plot) this.create();
    this.pair = book.pair;
    this.drawn = book.version;
    this.lastDraw = performance.now();
    const { price_places: pp, amount_places: ap } = book.pair;
    // The window: around the mid price (or the best price of the only side), wide enough for both
    // best prices, so one far-off offer cannot squash the part of the book that matters.
    const bestBid = book.bids[0]?.price;
    const bestAsk = book.asks[0]?.price;
    if (bestBid === undefined && bestAsk === undefined) {
      this.points = [];
      this.plot.setData([[], [], []]);
      return;
    }
    const center = bestBid !== undefined && bestAsk !== undefined ? (bestBid + bestAsk) / 2n : (bestBid ?? bestAsk);
    const spread = bestBid !== undefined && bestAsk !== undefined ? bestAsk - bestBid : 0n;
    let half = (center * WINDOW_PERCENT) / 100n;
    if (spread > half) half = spread;
    const lo = center - half > 0n ? center - half : 0n;
    const hi = center + half;
    // Both step functions at every price where either changes: an OTC book may be crossed (a bid
    // above an ask: nothing matches them automatically), so the two sides can overlap.
    const bids = levels(book.bids, LEVELS).filter((l) => l.price >= lo).reverse(); // ascending x
    const asks = levels(book.asks, LEVELS).filter((l) => l.price <= hi);
    const prices = merge([lo], merge(merge(bids.map((l) => l.price), asks.map((l) => l.price)), [hi]));
    const x = [];
    const yb = [];
    const ya = [];
    this.points = [];
    let b = 0; // bids[b]: the lowest bid level at or above the price
    let a = -1; // asks[a]: the highest ask level at or below the price
    for (const price of prices) {
      while (b < bids.length && bids[b].price < price) b++;
      while (a + 1 < asks.length && asks[a + 1].price <= price) a++;
      const bidDepth = b < bids.length ? bids[b].cumulative : null; // lo: all the bids in the window
      const askDepth = a >= 0 ? asks[a].cumulative : null; // hi: all the asks in the window
      x.push(approx(price, pp));
      yb.push(bidDepth === null ? null : approx(bidDepth, ap));
      ya.push(askDepth === null ? null : approx(askDepth, ap));
      this.points.push({
        price: fromUnits(price, pp),
        bids: bidDepth === null ? null : canonical(bidDepth, ap),
        asks: askDepth === null ? null : canonical(askDepth, ap),
      });
    }
    this.plot.setData([x, yb, ya]);
    this.container.dataset.levels = String(x.length);
    this.showAt(this.plot.cursor.idx);
  }

  showAt(idx) {
    const p = idx === null || idx === undefined ? null : this.points[idx];
    if (!p) {
      setText(this.readout, `Within ${WINDOW_PERCENT} % of the mid price. Point at the chart for the depth at a price.`);
      return;
    }
    const base = this.pair.base;
    const parts = [`At ${p.price} ${this.pair.quote}:`];
    if (p.bids !== null) parts.push(`bids at this price or higher: ${p.bids} ${base}`);
    if (p.asks !== null) parts.push(`asks at this price or lower: ${p.asks} ${base}`);
    setText(this.readout, parts.join(" "));
  }
}

/** Two ascending lists of BigInt prices as one ascending list without repeats. */
function merge(a, b) {
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const next = j >= b.length || (i < a.length && a[i] <= b[j]) ? a[i++] : b[j++];
    if (out.length === 0 || out[out.length - 1] !== next) out.push(next);
  }
  return out;
}
