"""``otc`` commands for requests for quote, quoting rules, settlement, offer templates and amendments,
notifications and webhooks (registered on the main group by commands.py)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click
import msgspec
from rich.table import Table
from rich.text import Text

from ..core.money import PAIRS
from ..core.settlement import OPEN
from . import render
from .client import APIError, ClientError

Json = dict[str, Any]
ApiCommand = Callable[..., Callable[[Callable[..., None]], click.Command]]  # commands.api_command
STEPS = ("payment_sent", "payment_received", "delivery_sent", "settled", "disputed")


class DefaultGroup(click.Group):
    """A group whose first argument, when it is not one of its commands, goes to a default command:
    ``otc offer sell 1 8000`` is ``otc offer post sell 1 8000``, ``otc rfq buy 5`` is
    ``otc rfq request buy 5``."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def parse_deadlines(values: Sequence[str]) -> dict[str, int]:
    """``STATE=SECONDS`` options into ms per open settlement state."""
    out: dict[str, int] = {}
    states = sorted(s.value for s in OPEN)
    for value in values:
        name, _, seconds = value.partition("=")
        if name not in states:
            raise click.BadParameter(
                f"{name!r} is not an open state: {', '.join(states)}", param_hint="--settlement-deadline"
            )
        try:
            ms = round(float(seconds) * 1000)
        except ValueError:
            ms = 0
        if not 0 < ms <= 365 * 24 * 3600_000:
            raise click.BadParameter(
                f"{value!r}: give seconds, more than 0", param_hint="--settlement-deadline"
            )
        out[name] = ms
    return out


# --- rendering ------------------------------------------------------------------------------------------
def _hms(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


def quotes_table(rfq: Json) -> Table:
    pair = rfq["pair"]
    base, quote = render.units(pair)
    mine = rfq["mine"]
    title = f"quotes for {rfq['side']} {rfq['amount']} {base} ({rfq['id'][:8]}, {rfq['status']}" + (
        f", reached {rfq['delivered']} peers)" if rfq.get("delivered") is not None else ")"
    )
    table = Table(title=title, title_justify="left", box=render.BOX)
    for col, just in (
        ("#", "right"),
        ("maker", "left"),
        ("price", "right"),
        ("amount", "right"),
        ("valid until", "left"),
        ("status", "left"),
        ("quote", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    prices = render.aligned([q["price"] for q in rfq["quotes"]])
    amounts = render.aligned([q["amount"] for q in rfq["quotes"]])
    for i, q in enumerate(rfq["quotes"]):
        who = q["maker_name"] if mine else "you"
        table.add_row(
            str(i + 1), who, prices[i], amounts[i], _hms(q["valid_until"]), q["status"], q["id"][:12]
        )
    if not rfq["quotes"]:
        table.caption = f"no quotes yet ({quote} per {base}, best first)"
    return table


def rfqs_table(rfqs: list[Json]) -> Table:
    table = Table(title="requests for quote", title_justify="left", box=render.BOX)
    for col in ("id", "from", "side", "amount", "pair", "until", "status", "quotes", "best"):
        table.add_column(col)
    for r in rfqs:
        best = r["quotes"][0]["price"] if r["quotes"] else ""
        table.add_row(
            r["id"][:12],
            "me" if r["mine"] else r["requester_name"],
            render.side_text(r["side"]),
            r["amount"],
            r["pair"],
            _hms(r["valid_until"]),
            r["status"],
            str(len(r["quotes"])),
            best,
        )
    return table


def rules_table(rules: list[Json]) -> Table:
    table = Table(title="quoting rules", title_justify="left", box=render.BOX)
    for col in (
        "pair",
        "side",
        "price",
        "spread",
        "max size",
        "balance",
        "committed",
        "available",
        "ttl ms",
        "auto",
    ):
        table.add_column(col)
    for r in rules:
        table.add_row(
            r["pair"],
            render.side_text(r["side"]),
            r["price"] or "",
            r["spread"] or "",
            r["max_size"] or "",
            r["balance"] or "",
            r["committed"],
            r["available"] or "",
            str(r["ttl_ms"]),
            "yes" if r["automatic"] else "no",
        )
    return table


def settlement_text(s: Json) -> Text:
    out = Text()
    out.append(f"trade {s['trade_id'][:12]}  ", style="dim")
    out.append(s["state"], style="red" if s["state"] == "disputed" or s["overdue"] else "bold")
    if s["overdue"]:
        out.append(" (overdue)", style="red")
    pays, gives = s["pays"], s["delivers"]
    who = {s["buyer"]: "buyer", s["seller"]: "seller"}
    out.append(
        f"\n  the {who[pays['from']]} pays {pays['amount']} {pays['currency']}; "
        f"the {who[gives['from']]} delivers {gives['amount']} {gives['currency']}; you are the {s['role']}"
    )
    if s["due_at"] is not None:
        out.append(f"\n  due {datetime.fromtimestamp(s['due_at'] / 1000):%Y-%m-%d %H:%M:%S}")
    if s["next_steps"]:
        out.append(f"\n  your next steps: {', '.join(s['next_steps'])}")
    for step in s["steps"]:
        note = f"  “{step['note']}”" if step.get("note") else ""
        out.append(
            f"\n  {_hms(step['ts'])}  {step['step']:<17} by {who.get(step['actor'], '?')}{note}", style="dim"
        )
    return out


def settlements_table(items: list[Json]) -> Table:
    table = Table(title="settlements", title_justify="left", box=render.BOX)
    for col in ("trade", "state", "you", "you pay", "you get", "due", "next"):
        table.add_column(col)
    for s in items:
        buyer = s["role"] == "buyer"
        pay, get = (s["pays"], s["delivers"]) if buyer else (s["delivers"], s["pays"])
        state = Text(s["state"] + (" (overdue)" if s["overdue"] else ""), style="red" if s["overdue"] else "")
        table.add_row(
            s["trade_id"][:12],
            state,
            s["role"],
            f"{pay['amount']} {pay['currency']}",
            f"{get['amount']} {get['currency']}",
            _hms(s["due_at"]),
            ", ".join(s["next_steps"]),
        )
    return table


def note_line(event: Json) -> str:
    """One line for a notification (``otc notify``, ``otc watch``)."""
    kind, d = event["type"], event.get("data") or {}
    with contextlib.suppress(KeyError, TypeError):
        if kind == "trade":
            base, quote = render.units(d["pair"])
            mine = d["side"] if d["role"] == "maker" else ("sell" if d["side"] == "buy" else "buy")
            verb = "bought" if mine == "buy" else "sold"
            what = f"{verb} {d['amount']} {base} at {d['price']} {quote}"
            return f"fill: {what} as {d['role']} (trade {d['id'][:8]})"
        if kind == "rfq":
            return (
                f"request for quote from {d['requester_name']}: {d['side']} {d['amount']} {d['pair']} "
                f"until {_hms(d['valid_until'])} (rfq {d['quote_req_id'][:8]})"
            )
        if kind == "quote":
            return (
                f"quote from {d['maker_name']}: {d['side']}s {d['amount']} at {d['price']} until "
                f"{_hms(d['valid_until'])} (quote {d['quote_id'][:8]}, rfq {d['quote_req_id'][:8]})"
            )
        if kind == "settlement":
            by = "you" if d.get("by") == "me" else "the other party"
            return f"settlement {d['trade_id'][:8]}: {d['step']['step']} by {by}, now {d['state']}"
        if kind == "overdue":
            steps = ", ".join(d["next_steps"])
            return f"settlement {d['trade_id'][:8]} is overdue in {d['state']} (next: {steps})"
        if kind == "message":
            if d.get("grapevine"):
                return "an unsigned Grapevine message (otc chat inbox shows it)"
            return f"message from {d['sender_name']}: {d['text']}"
    return str(kind)


# --- commands -------------------------------------------------------------------------------------------
def register(main: click.Group, api_command: ApiCommand) -> None:
    """Add this module's commands to the ``otc`` group (``api_command`` is commands.py's decorator)."""
    pair_option = click.option(
        "--pair", type=click.Choice(list(PAIRS)), help="Trading pair (default: the peer's)."
    )

    # --- offers: again, amend (``offer`` itself is a group whose default command posts) ---
    offer = main.commands["offer"]
    assert isinstance(offer, click.Group)

    @api_command(offer, "again")
    @click.argument("offer_id")
    def offer_again(out: Any, offer_id: str) -> None:
        """Post one of your offers again with the same terms (it may be cancelled, expired or filled).

        \b
        Example:
          otc offer again 9b5e46ed"""
        data, raw = out.client.call("POST", f"/api/offers/{offer_id}/again")
        out.show(raw, lambda: render.offer_line(data, "Posted again"))

    @api_command(offer, "amend")
    @click.argument("offer_id")
    @click.option("--price", help="The new price.")
    @click.option("--amount", help="The new amount (default: what remains).")
    def offer_amend(out: Any, offer_id: str, price: str | None, amount: str | None) -> None:
        """Replace an open offer by one with a new price and/or amount, in one signed update.

        \b
        Example:
          otc offer amend 9b5e46ed --price 8010"""
        if price is None and amount is None:
            raise click.UsageError("give --price, --amount or both")
        body = {k: v for k, v in (("price", price), ("amount", amount)) if v is not None}
        data, raw = out.client.call("PATCH", f"/api/offers/{offer_id}", body)
        out.show(
            raw,
            lambda: Text.assemble(
                render.offer_line(data["cancelled"], "Replaced"), "\n", render.offer_line(data["offer"], "by")
            ),
        )

    # --- requests for quote ---
    @main.group(cls=DefaultGroup, default="request")
    def rfq() -> None:
        """Requests for quote: `otc rfq buy 50` asks every live peer for a firm quote.

        \b
        Example:
          otc rfq buy 50 --wait 2"""

    @api_command(rfq, "request")
    @click.argument("side", type=click.Choice(["buy", "sell"]))
    @click.argument("amount")
    @pair_option
    @click.option(
        "--ttl",
        type=click.FloatRange(0.001, 120),
        metavar="SECONDS",
        help="Take quotes this long (default 10).",
    )
    @click.option(
        "--wait",
        type=click.FloatRange(0, 120),
        default=2.0,
        show_default=True,
        metavar="SECONDS",
        help="Collect quotes this long, then show them.",
    )
    @click.option("--accept", "choice", metavar="best|N", help="Accept the best quote, or the Nth shown.")
    @click.option("--amount-to-accept", "take", metavar="AMOUNT", help="Accept only part of the quote.")
    def rfq_request(
        out: Any,
        side: str,
        amount: str,
        pair: str | None,
        ttl: float | None,
        wait: float,
        choice: str | None,
        take: str | None,
    ) -> None:
        """Ask every live peer to quote for buying or selling AMOUNT; show the quotes, best first; accept one
        (with --accept, or when asked on a terminal).

        \b
        Example:
          otc rfq buy 5 --wait 2 --accept best"""
        body: Json = {"side": side, "amount": amount}
        if pair is not None:
            body["pair"] = pair
        if ttl is not None:
            body["ttl_ms"] = max(1, round(ttl * 1000))
        made = out.client.post("/api/rfqs", body)
        deadline = time.monotonic() + wait
        data, raw = made, b""
        while True:
            data, raw = out.client.call("GET", f"/api/rfqs/{made['id']}")
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        open_quotes = [q for q in data["quotes"] if q["status"] == "open"]
        if choice is None and not out.as_json and sys.stdin.isatty() and open_quotes:
            out.console.print(quotes_table(data))
            picked = click.prompt(
                "Accept which quote (number, or Enter for none)", default="", show_default=False
            )
            choice = picked.strip() or None
        elif not out.as_json:
            out.console.print(quotes_table(data))
        if choice is None:
            if out.as_json:
                out.json(raw)
            return
        quote = _pick(data["quotes"], choice)
        receipt = out.client.post(
            f"/api/quotes/{quote['id']}/accept", {} if take is None else {"amount": take}
        )
        if out.as_json:
            out.json(msgspec.json.encode({"rfq": data, "receipt": receipt}))
        else:
            out.console.print(render.receipt_line(receipt))

    def _pick(quotes: list[Json], choice: str) -> Json:
        if not quotes:
            raise APIError(404, "ERR_QUOTE_NOT_FOUND", "no quotes to accept")
        if choice == "best":
            return quotes[0]
        if choice.isdigit() and 1 <= int(choice) <= len(quotes):
            return quotes[int(choice) - 1]
        raise click.BadParameter(f"'best' or 1..{len(quotes)}", param_hint="--accept")

    @api_command(rfq, "list")
    def rfq_list(out: Any) -> None:
        """Your recent requests for quote, and the open requests others sent you.

        \b
        Example:
          otc rfq list"""
        data, raw = out.client.call("GET", "/api/rfqs")
        out.show(raw, lambda: rfqs_table(data))

    @api_command(rfq, "show")
    @click.argument("rfq_id")
    def rfq_show(out: Any, rfq_id: str) -> None:
        """One request for quote with its quotes, best first (for a request sent to you: your quotes).

        \b
        Example:
          otc rfq show bda82de2"""
        data, raw = out.client.call("GET", f"/api/rfqs/{rfq_id}")
        out.show(raw, lambda: quotes_table(data))

    @api_command(rfq, "quote")
    @click.argument("rfq_id")
    @click.argument("price")
    @click.argument("amount", required=False)
    @click.option(
        "--ttl", type=click.FloatRange(0.001, 60), metavar="SECONDS", help="Firm this long (default 5)."
    )
    def rfq_quote(out: Any, rfq_id: str, price: str, amount: str | None, ttl: float | None) -> None:
        """Answer a request for quote with a firm quote at PRICE for AMOUNT (default: all requested).

        \b
        Example:
          otc rfq quote bda82de2 8002 3"""
        body: Json = {"price": price}
        if amount is not None:
            body["amount"] = amount
        if ttl is not None:
            body["ttl_ms"] = max(1, round(ttl * 1000))
        data, raw = out.client.call("POST", f"/api/rfqs/{rfq_id}/quotes", body)
        reached = "delivered" if data["delivered"] else "NOT delivered (the requester did not answer)"
        out.show(
            raw,
            lambda: Text(
                f"Quoted {data['side']} {data['amount']} at {data['price']} until "
                f"{_hms(data['valid_until'])}: quote {data['id'][:12]}, {reached}"
            ),
        )

    @api_command(rfq, "accept")
    @click.argument("quote_id")
    @click.argument("amount", required=False)
    def rfq_accept(out: Any, quote_id: str, amount: str | None) -> None:
        """Trade on a quote you were sent (AMOUNT: part of it; default all).

        \b
        Example:
          otc rfq accept 14339c83 1.5"""
        data, raw = out.client.call(
            "POST", f"/api/quotes/{quote_id}/accept", {} if amount is None else {"amount": amount}
        )
        out.show(raw, lambda: render.receipt_line(data))

    # --- quoting rules ---
    @main.group()
    def quoting() -> None:
        """Your quoting rules: answer requests for quote automatically, within a balance.

        \b
        Example:
          otc quoting set sell --price 8005 --max-size 5 --balance 20"""

    @api_command(quoting, "show")
    def quoting_show(out: Any) -> None:
        """Your quoting rules, with what open quotes commit and what the balance leaves.

        \b
        Example:
          otc quoting show"""
        data, raw = out.client.call("GET", "/api/quoting")
        out.show(raw, lambda: rules_table(data))

    @api_command(quoting, "set")
    @click.argument("side", type=click.Choice(["buy", "sell"]))
    @pair_option
    @click.option("--price", help="Quote this fixed price.")
    @click.option(
        "--spread", help="Quote your best ask plus this (selling), or best bid minus this (buying)."
    )
    @click.option("--max-size", help="Quote at most this much per request.")
    @click.option("--balance", help="Trade at most this much through quotes (fills reduce it).")
    @click.option("--ttl", type=click.FloatRange(0.001, 60), metavar="SECONDS", help="Quotes firm this long.")
    def quoting_set(
        out: Any,
        side: str,
        pair: str | None,
        price: str | None,
        spread: str | None,
        max_size: str | None,
        balance: str | None,
        ttl: float | None,
    ) -> None:
        """Set the rule for SIDE (your side: `sell` answers requests to buy). With --price or --spread it
        answers automatically; with neither it only caps your quotes by --balance.

        \b
        Example:
          otc quoting set sell --spread 0.1 --max-size 5 --balance 20"""
        body: Json = {"side": side}
        for k, v in (
            ("pair", pair),
            ("price", price),
            ("spread", spread),
            ("max_size", max_size),
            ("balance", balance),
        ):
            if v is not None:
                body[k] = v
        if ttl is not None:
            body["ttl_ms"] = max(1, round(ttl * 1000))
        data, raw = out.client.call("PUT", "/api/quoting", body)
        out.show(raw, lambda: rules_table([data]))

    @api_command(quoting, "off")
    @click.argument("side", type=click.Choice(["buy", "sell"]))
    @pair_option
    def quoting_off(out: Any, side: str, pair: str | None) -> None:
        """Remove the rule for SIDE.

        \b
        Example:
          otc quoting remove sell"""
        data, raw = out.client.call("DELETE", "/api/quoting", query={"side": side, "pair": pair})
        out.show(raw, lambda: Text(f"Removed the {data['pair']} {data['side']} quoting rule"))

    # --- settlement ---
    @api_command(main, "settle")
    @click.argument("trade_id")
    @click.argument("step", type=click.Choice(STEPS), required=False)
    @click.option("--note", help="A payment reference or transaction id, shown to the other party.")
    def settle(out: Any, trade_id: str, step: str | None, note: str | None) -> None:
        """Show a trade's settlement, or make STEP: payment_sent and settled (buyer), payment_received and
        delivery_sent (seller), disputed (either). TRADE_ID may be a unique prefix.

        \b
        Example:
          otc settle 55f082ef payment_sent --note wire-ref-1"""
        trade_id = _trade_id(out, trade_id)
        if step is None:
            data, raw = out.client.call("GET", f"/api/trades/{trade_id}/settlement")
        else:
            body: Json = {"step": step}
            if note is not None:
                body["note"] = note
            data, raw = out.client.call("POST", f"/api/trades/{trade_id}/settlement", body)
        out.show(raw, lambda: settlement_text(data))

    def _trade_id(out: Any, prefix: str) -> str:
        if len(prefix) == 32:
            return prefix
        ids = [t["id"] for t in out.client.get("/api/trades") if t["id"].startswith(prefix.lower())]
        if len(ids) > 1:
            raise APIError(400, "ERR_AMBIGUOUS_ID", f"trade id prefix {prefix!r} matches {len(ids)} trades")
        return ids[0] if ids else prefix

    @api_command(main, "settlements")
    @click.option("--open", "only_open", is_flag=True, help="Only those not settled or disputed.")
    def settlements(out: Any, only_open: bool) -> None:
        """Your trades' settlements: who pays what, the state, what is due when.

        \b
        Example:
          otc settlements"""
        data, raw = out.client.call("GET", "/api/settlements", query={"open": "1" if only_open else None})
        out.show(raw, lambda: settlements_table(data))

    # --- notifications ---
    @api_command(main, "notify")
    def notify(out: Any) -> None:
        """Print notifications as they come (fills, requests for quote, quotes, settlement steps and
        deadlines, messages), one per line; --json: the event's JSON per line. Until Ctrl-C.

        \b
        Example:
          otc notify --json"""
        client = out.client
        client.get("/api/health")  # no peer there: exit now, with the hint
        try:
            while True:
                with contextlib.suppress(ClientError):
                    for event in client.events(
                        on_open=lambda: click.echo(f"listening to {client.base}", err=True)
                    ):
                        if "data" not in event:
                            continue
                        if out.as_json:
                            click.echo(msgspec.json.encode(event).decode())
                        else:
                            click.echo(f"{time.strftime('%H:%M:%S')}  {note_line(event)}")
                        sys.stdout.flush()
                time.sleep(1.0)  # the stream was lost: reconnect
        except KeyboardInterrupt:
            pass

    @main.group()
    def webhooks() -> None:
        """Webhooks: every notification POSTed as JSON, signed with an HMAC of the API token.

        \b
        Example:
          otc webhooks add http://127.0.0.1:9000/hook"""

    @api_command(webhooks, "add")
    @click.argument("url")
    def webhooks_add(out: Any, url: str) -> None:
        """POST notifications to URL from now on (kept across restarts).

        \b
        Example:
          otc webhooks add http://127.0.0.1:9000/hook"""
        data, raw = out.client.call("POST", "/api/webhooks", {"url": url})
        out.show(raw, lambda: Text(f"Webhook {data['id']}: {data['url']}"))

    @api_command(webhooks, "list")
    def webhooks_list(out: Any) -> None:
        """The webhooks, with their delivery counts.

        \b
        Example:
          otc webhooks list"""
        data, raw = out.client.call("GET", "/api/webhooks")

        def table() -> Table:
            t = Table(title="webhooks", title_justify="left", box=render.BOX)
            for col in ("id", "url", "queued", "delivered", "failed", "dropped", "last error"):
                t.add_column(col)
            for h in data:
                t.add_row(
                    h["id"],
                    h["url"],
                    str(h["queued"]),
                    str(h["delivered"]),
                    str(h["failed"]),
                    str(h["dropped"]),
                    h["last_error"] or "",
                )
            return t

        out.show(raw, table)

    @api_command(webhooks, "remove")
    @click.argument("hook_id")
    def webhooks_remove(out: Any, hook_id: str) -> None:
        """Stop POSTing to a webhook.

        \b
        Example:
          otc webhooks remove 1"""
        data, raw = out.client.call("DELETE", f"/api/webhooks/{hook_id}")
        out.show(raw, lambda: Text(f"Removed webhook {data['id']}: {data['url']}"))
