"""The web desk: a live trading page that every peer serves on its control-API port (issue 11).

The page is static files shipped inside this package (``static/``: HTML, CSS, JavaScript modules and one
vendored charting library, each with its licence), committed as sources: nothing is built at install
time, fetched from a CDN or loaded at run time. It holds no data: everything it shows comes from the
control API once the browser has logged in, so these files are served to anyone who passes the API's
Host and Origin checks (``Auth.public``), and every ``/api/...`` path still needs the session.

The HTML goes out with its own strict Content-Security-Policy: scripts and styles only from this
origin, no inline script or style, no eval, no plugin, no frame, no form posted anywhere, connections
only back to this API, and Trusted Types required (so no string ever becomes HTML: the page builds its
DOM with ``textContent``, and names or chat text a stranger chose cannot run as code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable

HTML_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HTML_HEADERS = {
    "Content-Security-Policy": HTML_CSP,
    "Cross-Origin-Opener-Policy": "same-origin",  # a page that opened the desk gets no handle on it
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)  # beyond the API's own security headers


def assets() -> dict[str, Asset]:
    """Every file the desk needs, by the path it is served at: ``/`` (the page) and ``/static/...``.
    Read once when the API is made (about 130 KB in all)."""
    root = resources.files(__name__) / "static"
    out: dict[str, Asset] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            kind = TYPES.get("." + entry.name.rpartition(".")[2])
            if kind is None:
                continue  # licences and notes ship beside the files, but are not served
            path = f"/static/{prefix}{entry.name}"
            if path == "/static/index.html":
                out["/"] = Asset(entry.read_bytes(), kind, dict(HTML_HEADERS))
            else:
                out[path] = Asset(entry.read_bytes(), kind)

    walk(root, "")
    return out


__all__ = ["HTML_CSP", "Asset", "assets"]
