// Chat by conversation: one per peer (by id: names are claims anyone can make), newest activity first,
// each with its unread count. A conversation counts as read once it is open while the page is in
// view; what was read is remembered in this browser (localStorage: times only, no text).

import { call } from "./api.js";
import { $, h, keyed, setText, when, who } from "./dom.js";
import { detail, explain } from "./words.js";

export class Chat {
  constructor(state, { onChange }) {
    this.state = state;
    this.onChange = onChange; // something to redraw (the unread counts live in the header too)
    this.open = null; // the peer id of the open conversation
    this.read = {}; // peer id -> received_at of the newest message read
    this.form = $("#chat-form");
    this.form.addEventListener("submit", (event) => (event.preventDefault(), this.send()));
    $("#conversations").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-peer]");
      if (button) this.show(button.dataset.peer);
    });
    $("#new-chat").addEventListener("change", (event) => {
      if (event.target.value) this.show(event.target.value, { focus: true });
      event.target.value = "";
    });
    document.addEventListener("visibilitychange", () => this.markRead());
    window.addEventListener("focus", () => this.markRead());
  }

  storageKey() {
    return `otc-desk:${this.state.me.peer_id}:read`;
  }

  load() {
    try {
      this.read = JSON.parse(localStorage.getItem(this.storageKey()) || "{}") || {};
    } catch {
      this.read = {};
    }
  }

  save() {
    try {
      localStorage.setItem(this.storageKey(), JSON.stringify(this.read));
    } catch {
      // storage full or disabled: unread counts start again at the next visit
    }
  }

  /** The counterpart of a message: the sender of what came in, the addressee of what went out. */
  static peerOf(m) {
    return m.direction === "in" ? m.sender : m.to;
  }

  conversations() {
    const byPeer = new Map();
    for (const m of this.state.messages.values()) {
      const id = Chat.peerOf(m);
      let c = byPeer.get(id);
      if (!c) byPeer.set(id, (c = { id, messages: [], last: 0, unread: 0, claimed: null }));
      c.messages.push(m);
      c.last = Math.max(c.last, m.received_at);
      if (m.direction === "in") {
        c.claimed = m.sender_name;
        if (m.received_at > (this.read[id] || 0)) c.unread++;
      }
    }
    if (this.open && !byPeer.has(this.open)) byPeer.set(this.open, { id: this.open, messages: [], last: Infinity, unread: 0, claimed: null });
    for (const c of byPeer.values()) c.messages.sort((a, b) => a.received_at - b.received_at || (a.id < b.id ? -1 : 1));
    return [...byPeer.values()].sort((a, b) => b.last - a.last || (a.id < b.id ? -1 : 1));
  }

  /** The name to show for a peer: the one it heartbeats under, else the one its messages claim. */
  nameOf(id, claimed) {
    const peer = this.state.peers.get(id);
    return peer ? peer.name : claimed || "unknown";
  }

  /** Messages of a Grapevine (Node chat) peer: no key, no id, nothing signed; they are shown as such,
   * and answered from the command line (`otc chat send --grapevine NAME`), not from here. */
  static grapevine(conversation) {
    return conversation.messages.some((m) => m.via === "grapevine");
  }

  unreadTotal() {
    return this.conversations().reduce((n, c) => n + c.unread, 0);
  }

  show(id, { focus = false } = {}) {
    this.open = id;
    this.markRead();
    this.render();
    if (focus) $("#chat-text").focus();
  }

  /** Everything in the open conversation counts as read, if the trader can see it. */
  markRead() {
    if (!this.open || document.visibilityState !== "visible") return;
    let newest = this.read[this.open] || 0;
    for (const m of this.state.messages.values()) {
      if (m.direction === "in" && m.sender === this.open) newest = Math.max(newest, m.received_at);
    }
    if (newest !== (this.read[this.open] || 0)) {
      this.read[this.open] = newest;
      this.save();
      this.onChange();
    }
  }

  render() {
    const list = this.conversations();
    keyed(
      $("#conversations"),
      list,
      (c) => c.id,
      (c) => h("li", {}, h("button", { type: "button", className: "conversation", "data-peer": c.id })),
      (li, c) => {
        const button = li.firstChild;
        const name = Chat.grapevine(c) ? `Grapevine ${c.id}` : this.nameOf(c.id, c.claimed);
        const v = `${name}/${c.unread}/${c.id === this.open}`;
        if (li._v === v) return;
        li._v = v;
        button.replaceChildren(
          Chat.grapevine(c) ? h("span", { className: "name" }, name) : who(name, c.id),
          Chat.grapevine(c) ? h("span", { className: "badge warn" }, "unsigned") : "",
          c.unread ? h("span", { className: "badge unread" }, `${c.unread} unread`) : "",
        );
        button.setAttribute("aria-current", c.id === this.open ? "true" : "false");
      },
    );
    const total = list.reduce((n, c) => n + c.unread, 0);
    setText($("#unread-total"), total ? `(${total} unread)` : "");
    // the peers one can start a conversation with
    const options = [...this.state.peers.values()].filter((p) => p.alive).sort((a, b) => (a.name < b.name ? -1 : 1));
    keyed(
      $("#new-chat"),
      [{ id: "", name: "with…" }, ...options],
      (p) => p.id,
      (p) => h("option", { value: p.id }),
      (o, p) => setText(o, p.id ? `${p.name} (${p.id.slice(0, 8)})` : p.name),
    );
    this.renderOpen(list.find((c) => c.id === this.open));
  }

  renderOpen(conversation) {
    const box = $("#messages");
    this.form.hidden = !conversation || Chat.grapevine(conversation);
    if (!conversation) {
      box.replaceChildren(h("p", { className: "empty" }, "Pick a conversation, or start one with a peer."));
      delete box.dataset.peer;
      box._keyed = null;
      return;
    }
    if (box.dataset.peer !== conversation.id) {
      box.replaceChildren();
      box._keyed = null;
      box.dataset.peer = conversation.id;
      this.form.elements.to.value = conversation.id;
    }
    const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    keyed(
      box,
      conversation.messages,
      (m) => m.id,
      (m) =>
        h(
          "div",
          { className: `message ${m.direction}`, "data-id": m.id },
          h(
            "p",
            { className: "meta" },
            m.direction === "in" ? sender(m) : "You",
            m.verified === false ? h("span", { className: "badge warn" }, "unsigned: Grapevine") : "",
            " · ",
            h("time", { dateTime: new Date(m.received_at).toISOString() }, when(m.received_at)),
          ),
          h("p", { className: "text" }, m.text),
        ),
      () => {},
    );
    if (stick) box.scrollTop = box.scrollHeight;
    $("#messages").setAttribute("aria-label", `Messages with ${this.nameOf(conversation.id, conversation.claimed)}`);
  }

  async send() {
    const text = this.form.elements.text.value;
    const to = this.form.elements.to.value;
    const result = this.form.querySelector(".result");
    if (!text.trim()) return;
    const button = this.form.querySelector("button");
    button.disabled = true;
    setText(result, "Sending…");
    try {
      const message = await call("POST", "/api/messages", { to, text });
      this.state.messages.set(message.id, message);
      this.form.elements.text.value = "";
      setText(result, "");
      this.render();
    } catch (error) {
      setText(result, `Not sent. ${explain(error)} ${detail(error)}`);
    } finally {
      button.disabled = false;
    }
  }
}

/** Who sent a message: the name it claims (anyone can claim any name) and the id that proves who. */
function sender(m) {
  if (m.via === "grapevine") return h("span", { className: "who" }, `a Grapevine peer at ${m.sender}`);
  return h(
    "span",
    { className: "who", title: `${m.sender}: "${m.sender_name}" is the name this sender claims; the id is who it is` },
    h("span", { className: "name claimed" }, m.sender_name),
    " ",
    h("code", { className: "id" }, m.sender.slice(0, 8)),
  );
}
