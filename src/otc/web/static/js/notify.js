// Notifications: always in the page (a toast in a live region, read out by screen readers), and through
// the browser's Notification API when the trader allowed it and is looking elsewhere.

import { $, h } from "./dom.js";

const TOAST_MS = 8000;
const TOASTS_SHOWN = 5;

/** Show a notification. `kind`: "fill", "message", "info" or "error" (a word is shown too: colour is
 * never the only sign). `onOpen`: what clicking it does (e.g. open the conversation). */
export function notify(title, body, { kind = "info", onOpen = null } = {}) {
  const box = $("#toasts");
  const label = { fill: "Filled", message: "Message", error: "Problem", info: "Note" }[kind] || "Note";
  const close = h("button", { type: "button", className: "quiet close", "aria-label": "Dismiss" }, "×");
  const toast = h(
    "div",
    { className: `toast ${kind}`, role: kind === "error" ? "alert" : "status", "data-kind": kind },
    h("strong", {}, `${label}: ${title}`),
    body ? h("p", {}, body) : null,
    close,
  );
  close.addEventListener("click", () => toast.remove());
  if (onOpen) {
    const open = h("button", { type: "button", className: "link" }, "Open");
    open.addEventListener("click", () => (toast.remove(), onOpen()));
    toast.insertBefore(open, close);
  }
  box.append(toast);
  while (box.children.length > TOASTS_SHOWN) box.firstElementChild.remove();
  setTimeout(() => toast.remove(), TOAST_MS);
  desktop(`${label}: ${title}`, body, onOpen);
}

function desktop(title, body, onOpen) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (document.visibilityState === "visible" && document.hasFocus()) return; // the toast is enough
  try {
    const n = new Notification(title, { body: body || "", tag: title });
    n.onclick = () => (window.focus(), onOpen && onOpen(), n.close());
  } catch {
    // some platforms allow notifications only from a service worker: the toast still shows
  }
}

/** The header's button that asks the browser for permission (it must come from a click). */
export function setupToggle(button) {
  const show = () => {
    if (!("Notification" in window)) {
      button.textContent = "Notifications: not available";
      button.disabled = true;
      return;
    }
    const state = { granted: "on", denied: "blocked in the browser", default: "off" }[Notification.permission];
    button.textContent = `Notifications: ${state}`;
    button.title = "Desktop notifications of fills and messages (the page shows them in any case)";
    button.disabled = Notification.permission !== "default";
  };
  button.addEventListener("click", async () => {
    await Notification.requestPermission();
    show();
  });
  show();
}
