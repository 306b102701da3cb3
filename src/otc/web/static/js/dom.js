// Small DOM helpers. Text always goes in as text (textContent, never HTML): names, chat and anything
// else a stranger chose cannot become markup. The page's CSP (Trusted Types) would refuse HTML strings
// anyway.

import { padded } from "./money.js";

/** An element: h("td", {className: "num"}, "text", child, ...). Attributes set as properties, except
 * data-*, aria-* and role, which are attributes. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") el.setAttribute(key, value);
    else el[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Set an element's text only when it changes (cheap, and screen readers hear only real changes). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** A decimal right-aligned in its column: real digits, then the padding zeros dimmed. */
export function number(text, places) {
  const [digits, pad] = padded(text, places);
  const el = h("span", { className: "num" }, digits);
  if (pad) el.append(h("span", { className: "pad", "aria-hidden": "true" }, pad));
  return el;
}

/** Show a decimal in a cell, touching the DOM only when the value changes: the cell keeps two text
 * nodes (the digits, and the dimmed padding zeros) and only their text is set. */
export function setNumber(el, text, places) {
  if (el._value === text && el._places === places) return;
  el._value = text;
  el._places = places;
  if (!el._digits) {
    el._digits = document.createTextNode("");
    el._pad = document.createTextNode("");
    el.replaceChildren(h("span", { className: "num" }, el._digits, h("span", { className: "pad", "aria-hidden": "true" }, el._pad)));
  }
  const [digits, pad] = padded(text, places);
  if (el._digits.data !== digits) el._digits.data = digits;
  if (el._pad.data !== pad) el._pad.data = pad;
}

/** A peer as everywhere on the desk: the name it claims, and the short id that says who it is. */
export function who(name, id, { you = false } = {}) {
  return h(
    "span",
    { className: "who", title: id },
    h("span", { className: "name" }, name),
    " ",
    h("code", { className: "id" }, id.slice(0, 8)),
    you ? h("span", { className: "badge you" }, "you") : null,
  );
}

/**
 * Keep a container's children equal to `items` rendered by key, reusing elements: `make(item)`
 * creates one, `update(el, item)` refreshes it (called for every item; make it cheap when nothing
 * changed). Elements that left are removed first, so a list that shifts by one row (a new best offer
 * in, the last one out) moves nothing else.
 */
export function keyed(container, items, key, make, update) {
  const old = container._keyed || new Map();
  const next = new Map();
  for (const item of items) {
    const k = key(item);
    next.set(k, old.get(k) || null);
  }
  for (const [k, el] of old) if (!next.has(k)) el.remove();
  let cursor = container.firstElementChild;
  for (const item of items) {
    const k = key(item);
    let el = next.get(k);
    if (!el) next.set(k, (el = make(item)));
    update(el, item);
    if (el === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(el, cursor);
  }
  container._keyed = next;
}

/** Local time of a ms timestamp: HH:MM:SS today, else the date too. */
export function when(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}
