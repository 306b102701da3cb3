"""The control API token: a random secret at ``<data-dir>/api.token`` (mode 0600), created on first use.

Webhook notifications are signed with an HMAC keyed by it, so a receiver that knows the token can tell
our notifications from forgeries. (The control API's own authentication reads the same file.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TOKEN_FILE = "api.token"


def api_token(data_dir: Path) -> str:
    """The token stored in ``data_dir``, created atomically (mode 0600) if there is none yet. Two
    processes creating it at once end with the same token: the first link wins, the other reads it."""
    path = data_dir / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic, and never replaces a token another process just wrote
    finally:
        os.unlink(tmp)
    return path.read_text().strip()
