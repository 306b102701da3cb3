// Exact money for the desk: decimal strings in, decimal strings out, BigInt in between.
//
// The API sends amounts and prices as canonical decimal strings ("8000.5", never a JSON number). The
// page keeps them as strings for display and as BigInt "units" (the value times 10^places) for
// arithmetic: sums for cumulative depth, price x amount for totals. A JavaScript number is used only
// to place a point on the depth chart, never for anything shown as a number.

const DECIMAL = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;

/** A decimal string as an integer number of 10^-places units; throws if it has more places. */
export function toUnits(text, places) {
  const match = DECIMAL.exec(text);
  if (!match) throw new RangeError(`not a decimal: ${text}`);
  const frac = match[2] ? match[2].slice(1) : "";
  if (frac.length > places) throw new RangeError(`${text} has more than ${places} decimal places`);
  return BigInt(match[1] + frac.padEnd(places, "0"));
}

/** Units back to a decimal string with exactly `places` decimals (padded, never rounded). */
export function fromUnits(units, places) {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(places + 1, "0");
  const whole = digits.slice(0, digits.length - places);
  const text = places ? `${whole}.${digits.slice(digits.length - places)}` : whole;
  return negative ? `-${text}` : text;
}

/** The canonical form (no trailing zeros) of units: what the API accepts and sends. */
export function canonical(units, places) {
  const text = fromUnits(units, places);
  return places ? text.replace(/\.?0+$/, "") || "0" : text;
}

/**
 * A decimal for display: its significant part and the zeros that pad it to `places` (shown dimmer,
 * so columns line up without hiding which digits are real). More places than `places` are kept as
 * they are: a value is never rounded for display.
 */
export function padded(text, places) {
  const dot = text.indexOf(".");
  const have = dot < 0 ? 0 : text.length - dot - 1;
  if (have >= places) return [text, ""];
  return [text, (dot < 0 && places ? "." : "") + "0".repeat(places - have)];
}

/** `padded` joined: "8000.5" with 2 places is "8000.50". */
export function fixed(text, places) {
  return padded(text, places).join("");
}

/** Whether `text` is a positive decimal with at most `places` decimals (what an input may hold). */
export function isAmount(text, places) {
  const match = DECIMAL.exec(text);
  if (!match) return false;
  if (match[2] && match[2].length - 1 > places) return false;
  return /[1-9]/.test(text);
}

/** price x amount, exactly: units with price places + amount places. */
export function times(priceUnits, amountUnits) {
  return priceUnits * amountUnits;
}

/** An approximate number, for positions on a chart only. */
export function approx(units, places) {
  return Number(units) / 10 ** places;
}

/** Compare two decimal strings exactly (-1, 0, 1). */
export function compare(a, b, places) {
  const x = toUnits(a, places);
  const y = toUnits(b, places);
  return x < y ? -1 : x > y ? 1 : 0;
}
