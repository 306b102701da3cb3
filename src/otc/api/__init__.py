"""The peer's local control API: JSON over HTTP on loopback, for the ``otc`` CLI, the web desk and bots."""

from .routes import API

__all__ = ["API"]
