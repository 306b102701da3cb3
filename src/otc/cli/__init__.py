"""The ``otc`` command line: runs a peer (``otc peer``) and talks to running peers' control APIs."""

from .commands import main

__all__ = ["main"]
