// Talking to the peer that served this page: JSON calls, and the live event stream.
//
// Every call goes to this page's own origin, so the browser sends the session cookie (HttpOnly,
// SameSite=Strict: this code never sees it) and Sec-Fetch-Site: same-origin, which the API's guard
// accepts. A body is always JSON (the API refuses anything else). Nothing polls: the page reads its
// state once per connection and then follows /api/events.

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status; // 0: the peer did not answer at all
    this.code = code;
    this.body = body;
  }
}

/** A call to the control API; resolves to the decoded JSON answer or rejects with an ApiError. */
export async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "ERR_UNREACHABLE", "your peer does not answer");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // an empty or non-JSON answer: the status says enough
  }
  if (!response.ok) {
    const code = data && typeof data.error === "string" ? data.error : `HTTP_${response.status}`;
    const message = data && typeof data.message === "string" ? data.message : response.statusText;
    throw new ApiError(response.status, code, message, data);
  }
  return data;
}

// The peer sends a status event every 3 s (events.py); hearing nothing for this long means it is
// stopped or frozen, even if the connection still looks open.
const SILENCE_MS = 8000;
const RETRY_MS = [250, 500, 1000, 2000, 3000]; // then every 3 s: reconnecting is one request

/**
 * The live event stream, kept open: on a lost or silent connection it closes it, says so through
 * `onState`, and tries again by itself (GET /api/health first: a 401 means the session is gone,
 * e.g. the peer restarted, which is not worth retrying).
 *
 * Callbacks: onOpen() each time the stream is (re)connected, before any of its events (read the state
 * then); onEvent(event); onState(state, detail) with state "connecting", "live", "lost" (detail:
 * {attempt, retryInMs, why}) or "logged-out".
 */
export class Live {
  constructor({ onOpen, onEvent, onState }) {
    this.onOpen = onOpen;
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.heard = 0; // performance.now() of the last event
    this.watchdog = 0;
    this.retry = 0;
    this.attempt = 0;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.close();
    clearTimeout(this.retry);
  }

  close() {
    clearTimeout(this.watchdog);
    if (this.source) {
      this.source.onopen = this.source.onmessage = this.source.onerror = null;
      this.source.close();
      this.source = null;
    }
  }

  connect() {
    this.close();
    this.onState(this.attempt ? "lost" : "connecting", { attempt: this.attempt, retryInMs: 0, why: "" });
    const source = (this.source = new EventSource("/api/events"));
    source.onopen = () => {
      this.attempt = 0;
      this.hear();
      this.onState("live", {});
      this.onOpen();
    };
    source.onmessage = (message) => {
      this.hear();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not ours to understand; the stream goes on
      }
      this.onEvent(event);
    };
    source.onerror = () => this.lost("the connection to your peer was lost");
  }

  hear() {
    this.heard = performance.now();
    if (!this.watchdog) this.watchdog = setTimeout(() => this.check(), SILENCE_MS);
  }

  /** One timer per silence window, not per event: it re-arms itself for the time left. */
  check() {
    this.watchdog = 0;
    const quiet = performance.now() - this.heard;
    if (quiet >= SILENCE_MS) this.lost(`your peer has said nothing for ${Math.round(quiet / 1000)} s`);
    else this.watchdog = setTimeout(() => this.check(), SILENCE_MS - quiet);
  }

  lost(why) {
    if (this.stopped) return;
    this.close();
    const wait = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt++;
    this.onState("lost", { attempt: this.attempt, retryInMs: wait, why });
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.reconnect(why), wait);
  }

  async reconnect(why) {
    if (this.stopped) return;
    try {
      await call("GET", "/api/health");
    } catch (error) {
      if (error.status === 401) {
        this.stop();
        this.onState("logged-out", { why: "your peer restarted or your session ended" });
      } else this.lost(why); // still away: wait longer
      return;
    }
    this.connect();
  }
}
