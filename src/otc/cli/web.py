"""``otc web``: open a running peer's web desk, logged in through a one-time link.

The link carries a login code the peer mints for the token's holder (``POST /api/login-codes``), not
the token: it works once, within a minute, and the code rides in the URL's fragment, which browsers
never send to a server. The page trades it for its own session cookie at once and takes it out of the
address bar.
"""

from __future__ import annotations

import os
import sys
import webbrowser

import click
import msgspec

from .commands import Out, api_command, main


def graphical() -> bool:
    """Whether a browser can open a window here (never on a headless box, where ``webbrowser`` would
    start a text browser in the terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@api_command(main)
@click.option(
    "--open/--no-open",
    "open_browser",
    default=None,
    help="Open the link in the browser (default: only in a terminal of a graphical session, not in CI).",
)
def web(out: Out, open_browser: bool | None) -> None:
    """Print a one-time login link to the peer's web desk, and open it in your browser.

    The link works once, within a minute, and holds no token. The desk then keeps a session of its own
    (a cookie) for a day, until you log out, or until the peer restarts.

    \b
    Examples:
      otc --as alice web
      otc --as alice web --no-open"""
    data, _ = out.client.call("POST", "/api/login-codes")
    url = out.client.base + data["path"]
    if out.as_json:
        out.json(msgspec.json.encode({**data, "url": url}))
    else:
        click.echo(url)
        click.echo("open it within a minute: it logs one browser in, once", err=True)
    if open_browser is None:
        open_browser = sys.stdout.isatty() and graphical() and not os.environ.get("CI")
    if open_browser and not webbrowser.open(url):
        click.echo("(no browser could be started here: open the link yourself)", err=True)
