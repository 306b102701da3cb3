"""The peer's key on disk: ``identity.key`` in its data directory, 32 raw bytes, mode 0600."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.identity import Identity


def load_or_create(path: Path) -> Identity:
    """The key stored at ``path``, created on first use (written atomically, then fsynced)."""
    if path.exists():
        return Identity.from_seed(path.read_bytes())
    identity = Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(identity.seed())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return identity
