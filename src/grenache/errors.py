"""Errors raised by the Grenache library.

Grenache reports errors as bare strings (``"ERR_TIMEOUT"``); we keep that string as ``code`` so callers
can match on it, and carry an optional human message beside it.
"""

from __future__ import annotations


class GrenacheError(Exception):
    """Base of every error this library raises."""

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message or code
        super().__init__(code if message is None else f"{code}: {message}")


class GrapeError(GrenacheError):
    """The Grape refused or failed a request (including errors it sends as HTTP-200 JSON strings)."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        super().__init__(code, message)
        self.status = status


class RPCError(GrenacheError):
    """An RPC failed: the remote handler answered with an error, or the transport failed.

    Raise it inside a handler to send ``code`` back as the error string of the reply.
    """

    def __init__(self, code: str, message: str | None = None, dest: str | None = None) -> None:
        super().__init__(code, message)
        self.dest = dest

    @property
    def wire(self) -> str:
        """The error string sent on the wire: the code, and the message when it adds something."""
        return self.code if self.message == self.code else f"{self.code}: {self.message}"


def split_wire_error(text: str) -> tuple[str, str | None]:
    """``"ERR_X: why"`` -> ``("ERR_X", "why")``; anything else is kept whole as the code."""
    head, sep, tail = text.partition(": ")
    if sep and head.startswith("ERR_") and " " not in head:
        return head, tail
    return text, None
