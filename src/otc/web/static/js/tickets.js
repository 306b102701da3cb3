// The order tickets: post an offer, sweep the book up to a limit, take one offer from its row (a
// dialog prefilled with what is available), cancel one of mine. Each is an ordinary form whose inputs
// carry the API's field names; the page checks the input exactly (decimal places of the pair, never a
// float), sends JSON, and says what happened in plain words.

import { call } from "./api.js";
import { $, h, number, setText, who } from "./dom.js";
import { canonical, fixed, isAmount, toUnits } from "./money.js";
import { notify } from "./notify.js";
import { detail, explain } from "./words.js";

const MAX_TTL_S = 30 * 24 * 3600;

export class Tickets {
  constructor(state, { onOffer, onTrade }) {
    this.state = state;
    this.onOffer = onOffer; // an offer of mine changed (posted or cancelled)
    this.onTrade = onTrade; // a receipt of mine arrived (take or sweep)
    this.offerForm = $("#offer-form");
    this.sweepForm = $("#sweep-form");
    this.dialog = $("#take-dialog");
    this.takeForm = $("#take-form");
    this.taking = null; // the offer in the take dialog
    for (const form of [this.offerForm, this.sweepForm]) {
      form.addEventListener("input", () => this.preview(form));
      form.elements.pair.addEventListener("change", () => this.units(form));
    }
    this.offerForm.addEventListener("submit", (event) => (event.preventDefault(), this.postOffer()));
    this.sweepForm.addEventListener("submit", (event) => (event.preventDefault(), this.sweep()));
    this.takeForm.addEventListener("submit", (event) => (event.preventDefault(), this.take()));
    this.takeForm.addEventListener("input", () => this.preview(this.takeForm));
    $("#take-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => (this.taking = null));
  }

  /** Fill the pair pickers (once the peer said which pairs it trades). */
  setPairs(pairs, current) {
    for (const form of [this.offerForm, this.sweepForm]) {
      const select = form.elements.pair;
      select.replaceChildren(...[...pairs.values()].map((p) => h("option", { value: p.symbol }, p.symbol)));
      select.value = current;
      this.units(form);
    }
  }

  /** Follow the pair shown in the book, unless the trader is typing into this form. */
  followPair(symbol) {
    for (const form of [this.offerForm, this.sweepForm]) {
      if (!form.contains(document.activeElement) && form.elements.pair.value !== symbol) {
        form.elements.pair.value = symbol;
        this.units(form);
      }
    }
  }

  pairOf(form) {
    return form === this.takeForm ? this.state.pairs.get(this.taking.pair) : this.state.pairs.get(form.elements.pair.value);
  }

  units(form) {
    const pair = this.pairOf(form);
    for (const el of form.querySelectorAll("[data-unit]")) {
      setText(el, el.dataset.unit === "base" ? pair.base : `${pair.quote}/${pair.base}`);
    }
    this.preview(form);
  }

  /** What the form would cost or bring, exactly, as the trader types. */
  preview(form) {
    const pair = this.pairOf(form);
    const offer = form === this.takeForm ? this.taking : null;
    const out = form.querySelector("[data-total]");
    if (!out || !pair) return;
    const amount = form.elements.amount.value.trim();
    const price = offer ? offer.price : (form.elements.price || form.elements.limit).value.trim();
    if (!isAmount(amount, pair.amount_places) || !isAmount(price, pair.price_places)) {
      setText(out, "");
      return;
    }
    const total = toUnits(price, pair.price_places) * toUnits(amount, pair.amount_places);
    const text = fixed(canonical(total, pair.price_places + pair.amount_places), pair.price_places);
    const word = form === this.sweepForm ? "At most" : "Total";
    setText(out, `${word}: ${text} ${pair.quote}`);
  }

  /** Check one decimal input; an empty optional one is null. Returns the string or throws. */
  field(form, name, places, { optional = false, what = name } = {}) {
    const input = form.elements[name];
    const value = input.value.trim();
    input.setCustomValidity("");
    if (!value && optional) return null;
    if (!isAmount(value, places)) {
      const message = `${what}: a number above zero with at most ${places} decimals, like ${places ? "1.5" : "15"}`;
      input.setCustomValidity(message);
      input.reportValidity();
      throw new Error(message);
    }
    return value;
  }

  async postOffer() {
    const form = this.offerForm;
    const pair = this.pairOf(form);
    const result = form.querySelector(".result");
    const body = { side: form.elements.side.value, pair: pair.symbol };
    try {
      body.amount = this.field(form, "amount", pair.amount_places, { what: "Amount" });
      body.price = this.field(form, "price", pair.price_places, { what: "Price" });
      const minFill = this.field(form, "min_fill", pair.amount_places, { optional: true, what: "Minimum fill" });
      if (minFill !== null) body.min_fill = minFill;
      const ttl = form.elements.ttl_s.value.trim();
      if (ttl) {
        const seconds = Number(ttl);
        if (!/^[1-9][0-9]*$/.test(ttl) || seconds > MAX_TTL_S) throw new Error(`Expiry: whole seconds, 1 to ${MAX_TTL_S}`);
        body.ttl_s = seconds;
      }
    } catch (error) {
      result.replaceChildren(h("span", { className: "error" }, error.message));
      return;
    }
    await this.busy(form, "Posting…", async () => {
      const offer = await call("POST", "/api/offers", body);
      this.onOffer(offer);
      result.replaceChildren(
        h("span", { className: "ok" }, `Posted: ${offer.side} ${offer.amount} ${pair.base} at ${fixed(offer.price, pair.price_places)} ${pair.quote}`),
        " ",
        h("code", { className: "id" }, offer.id.slice(0, 8)),
      );
    });
  }

  async sweep() {
    const form = this.sweepForm;
    const pair = this.pairOf(form);
    const result = form.querySelector(".result");
    const body = { side: form.elements.side.value, pair: pair.symbol, post: form.elements.post.checked };
    try {
      body.amount = this.field(form, "amount", pair.amount_places, { what: "Amount" });
      body.limit = this.field(form, "limit", pair.price_places, { what: "Limit" });
    } catch (error) {
      result.replaceChildren(h("span", { className: "error" }, error.message));
      return;
    }
    await this.busy(form, "Sweeping: asking the makers of the best offers in turn…", async () => {
      const sweep = await call("POST", "/api/sweep", body);
      for (const receipt of sweep.fills) this.onTrade(receipt);
      if (sweep.posted) this.onOffer(sweep.posted);
      result.replaceChildren(...sweepSummary(sweep, pair));
    });
  }

  /** Run a request with the form's button disabled and a note of what is going on. */
  async busy(form, doing, work) {
    const button = form.querySelector('button[type="submit"]');
    const result = form.querySelector(".result");
    button.disabled = true;
    result.replaceChildren(h("span", { className: "doing" }, doing));
    try {
      await work();
    } catch (error) {
      result.replaceChildren(refusal(error));
    } finally {
      button.disabled = false;
    }
  }

  // --- taking from a row ---------------------------------------------------------------------------
  openTake(offer) {
    const pair = this.state.pairs.get(offer.pair);
    this.taking = offer;
    const form = this.takeForm;
    const youDo = offer.side === "sell" ? "buy" : "sell";
    $("#take-title").textContent = `${youDo === "buy" ? "Buy from" : "Sell to"} ${offer.maker_name}`;
    $("#take-what").replaceChildren(
      who(offer.maker_name, offer.maker),
      ` offers to ${offer.side} ${pair.base} at ${fixed(offer.price, pair.price_places)} ${pair.quote} each. You ${youDo}.`,
    );
    this.facts(offer);
    form.elements.amount.value = offer.available;
    this.units(form);
    $("#take-result").replaceChildren();
    $("#take-submit").hidden = false;
    $("#take-submit").disabled = false;
    this.dialog.showModal();
    form.elements.amount.focus();
    form.elements.amount.select();
  }

  facts(offer) {
    const pair = this.state.pairs.get(offer.pair);
    const rows = [
      ["Price", number(offer.price, pair.price_places), ` ${pair.quote}`],
      ["Available now", number(offer.available, pair.amount_places), ` ${pair.base}`],
      ["Minimum fill", offer.min_fill ? number(offer.min_fill, pair.amount_places) : "none", offer.min_fill ? ` ${pair.base}` : ""],
      ["Offer", h("code", { className: "id" }, offer.id.slice(0, 16))],
    ];
    $("#take-facts").replaceChildren(...rows.flatMap(([k, ...v]) => [h("dt", {}, k), h("dd", {}, ...v)]));
  }

  /** The offer in the dialog changed in the book (or left it): show what is available now. */
  refreshTake(book) {
    if (!this.taking || !this.dialog.open) return;
    const e = book.byId.get(this.taking.id);
    if (e && e.offer.seq !== this.taking.seq) {
      this.taking = e.offer;
      this.facts(e.offer);
    }
  }

  async take() {
    const offer = this.taking;
    if (!offer) return;
    const form = this.takeForm;
    const pair = this.state.pairs.get(offer.pair);
    const result = $("#take-result");
    let amount;
    try {
      amount = this.field(form, "amount", pair.amount_places, { what: "Amount" });
    } catch (error) {
      result.replaceChildren(h("span", { className: "error" }, error.message));
      return;
    }
    const button = $("#take-submit");
    button.disabled = true;
    result.replaceChildren(h("span", { className: "doing" }, `Asking ${offer.maker_name} (up to 10 s)…`));
    try {
      const receipt = await call("POST", "/api/trades", { offer_id: offer.id, amount });
      this.onTrade(receipt);
      const did = receipt.taker_side === "buy" ? "bought" : "sold";
      const total = canonical(toUnits(receipt.price, pair.price_places) * toUnits(receipt.amount, pair.amount_places), pair.price_places + pair.amount_places);
      result.replaceChildren(
        h("strong", { className: "ok" }, `Done: you ${did} ${receipt.amount} ${pair.base} at ${fixed(receipt.price, pair.price_places)} ${pair.quote}, ${fixed(total, pair.price_places)} ${pair.quote} in all.`),
        h("br"),
        `Receipt `,
        h("code", { className: "id" }, receipt.id.slice(0, 8)),
        receipt.verified ? ", signed by both (checked)." : ": its signatures do not verify!",
      );
      button.hidden = true;
      $("#take-close").focus();
    } catch (error) {
      result.replaceChildren(refusal(error));
      button.disabled = false;
    }
  }

  // --- cancelling ----------------------------------------------------------------------------------
  async cancel(offer) {
    const pair = this.state.pairs.get(offer.pair);
    try {
      const closed = await call("DELETE", `/api/offers/${encodeURIComponent(offer.id)}`);
      this.onOffer(closed);
      notify(`offer ${offer.id.slice(0, 8)} cancelled`, `${offer.side} ${closed.remaining} ${pair.base} at ${fixed(offer.price, pair.price_places)} ${pair.quote}`);
    } catch (error) {
      notify("the cancel was refused", `${explain(error)} ${detail(error)}`, { kind: "error" });
    }
  }
}

/** A refusal: the plain words first, then the code and the peer's message in small print. */
export function refusal(error) {
  const small = detail(error);
  return h("span", { className: "error", role: "alert" }, explain(error), small ? h("small", {}, ` (${small})`) : "");
}

function sweepSummary(sweep, pair) {
  const pp = pair.price_places;
  const did = sweep.side === "buy" ? "Bought" : "Sold";
  const out = [];
  if (sweep.filled === "0") out.push(h("strong", {}, "Nothing filled: no offer was available at your limit or better."));
  else {
    const fills = sweep.fills.length;
    out.push(
      h("strong", { className: "ok" }, `${did} ${sweep.filled} ${pair.base} for ${fixed(sweep.total, pp)} ${pair.quote}`),
      ` (average price ${sweep.average_price} ${pair.quote}) in ${fills} fill${fills === 1 ? "" : "s"}.`,
    );
  }
  if (sweep.pending !== "0") out.push(h("br"), `${sweep.pending} ${pair.base} more is waiting for makers to answer; it shows under My trades if it completes.`);
  if (sweep.skipped.length) {
    const reasons = sweep.skipped.map((s) => explain({ code: s.error, message: s.message }));
    out.push(h("br"), `${sweep.skipped.length} offer${sweep.skipped.length === 1 ? " was" : "s were"} passed over: ${[...new Set(reasons)].join(" ")}`);
  }
  if (sweep.posted) out.push(h("br"), `The rest, ${sweep.posted.amount} ${pair.base}, is posted as an offer at ${fixed(sweep.posted.price, pp)}.`);
  if (sweep.deadline_reached) out.push(h("br"), "The sweep stopped at its deadline with offers left to try.");
  return out;
}
