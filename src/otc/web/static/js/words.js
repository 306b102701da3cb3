// Refusals in plain words. The API answers {"error": "ERR_...", "message": "..."}; the trader reads a
// sentence that says what happened and what to do, with the code and the peer's own message beside it
// for reference.

const WORDS = {
  ERR_UNREACHABLE: "Your peer does not answer. The desk reconnects by itself; try again in a moment.",
  ERR_UNAUTHORIZED: "You are not logged in to this peer (it may have restarted). Log in again.",
  ERR_INSUFFICIENT_REMAINING: "Less is available than you asked for: other takers got there first, or part of the offer is held for them.",
  ERR_OFFER_CLOSED: "The offer is gone: it was filled or cancelled before your take reached its maker.",
  ERR_OFFER_EXPIRED: "The offer expired before your take reached its maker.",
  ERR_OFFER_NOT_FOUND: "That offer is no longer in the book.",
  ERR_BELOW_MIN_FILL: "The maker does not accept takes that small (see the offer's minimum fill).",
  ERR_PRICE_CHANGED: "The offer's price is not what you saw. Look at the book again.",
  ERR_SELF_TRADE: "That is your own offer: you cannot take it.",
  ERR_MAKER_UNREACHABLE: "The maker does not answer right now. Its offers are marked unreachable for a while.",
  ERR_TRADE_PENDING: "The maker has not answered in time. Your peer keeps asking in the background; the trade shows under My trades when it is done.",
  ERR_TOO_MANY_RESERVATIONS: "You already hold as many pending takes at this maker as it allows. Wait a moment and try again.",
  ERR_MAKER_BUSY: "The maker is too busy right now. Try again in a moment.",
  ERR_TAKER_SUSPENDED: "This maker refuses your takes for a while: earlier takes of yours were left unconfirmed.",
  ERR_TAKE_STALE: "The maker's clock and yours disagree by more than a minute. Check your computer's clock.",
  ERR_INVALID_AMOUNT: "The amount is not valid for this pair.",
  ERR_INVALID_PRICE: "The price is not valid for this pair.",
  ERR_INVALID_TTL: "The expiry must be a whole number of seconds, at most 30 days.",
  ERR_INVALID_SIDE: "Choose buy or sell.",
  ERR_UNKNOWN_PAIR: "This peer does not trade that pair.",
  ERR_TOO_MANY_OFFERS: "You have as many open offers as a peer may have. Cancel some first.",
  ERR_NOT_MAKER: "Only its maker can cancel an offer.",
  ERR_PEER_NOT_FOUND: "That peer is not online.",
  ERR_AMBIGUOUS_PEER: "More than one peer uses that name. Pick the peer by its id.",
  ERR_INVALID_MESSAGE: "A message must be 1 to 2000 characters, to another peer.",
  ERR_RATE_LIMITED: "Too many messages at once: the other peer refuses more for a minute.",
  ERR_FORBIDDEN_ORIGIN: "Your browser sent this from another site, which the peer refuses.",
  ERR_SERVER_BUSY: "Your peer is too busy to answer (too many connections or desk tabs).",
};

/** A plain-words sentence for an ApiError (or any error). */
export function explain(error) {
  return WORDS[error.code] || error.message || "Something went wrong.";
}

/** The code and the peer's message, for the small print under the sentence. */
export function detail(error) {
  if (!error.code || error.code === "ERR_UNREACHABLE") return "";
  return `${error.code}: ${error.message}`;
}
