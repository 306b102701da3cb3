"""The ``otc`` command line: runs a peer (``otc peer``) and talks to running peers' control APIs."""

from . import web  # noqa: F401 - registers `otc web`
from .commands import main

__all__ = ["main"]
