"""WebSocket connections on asyncio protocols, driven by the Sans-I/O layer of ``websockets``.

``websockets`` does the protocol: the opening handshake (with its header caps), framing, masking (C
speedups), UTF-8 validation of text frames, the closing handshake, ping/pong, and the message size
cap. We do the I/O, as ``http.py`` does for HTTP: messages are handed to a callback as they complete,
replies are framed and written without a coroutine per frame. Measured reason: the library's own
asyncio connection (a ``recv()`` future and a send lock per message) served 2,900 requests/s on this
machine where this serves several times that (see BENCHMARKS.md).

Bytes held in partly received messages (the library's frame buffer plus the fragments of a message
assembled here) are reported through ``held()`` so servers can charge them to their budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, State

SEND_EOF = b""


class WSProtocol(asyncio.Protocol):
    """One WebSocket connection. Subclasses handle the opening handshake and ``on_message``."""

    def __init__(self, proto: Protocol) -> None:
        self.proto = proto
        self.transport: asyncio.Transport | None = None
        self.parts: list[bytes] = []
        self.parts_size = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self.flush_soon = False
        self.on_write_paused: Callable[[bool], None] | None = None

    # asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.proto.receive_eof()
        self.parts = []
        if self.close_timer is not None:
            self.close_timer.cancel()
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # refused or closed: nothing more is read
        self.proto.receive_data(data)
        self.process()

    def eof_received(self) -> bool | None:
        self.proto.receive_eof()
        self.process()
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.on_write_paused is not None:
            self.on_write_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.on_write_paused is not None:
            self.on_write_paused(False)

    # events --------------------------------------------------------------------------------------------
    def process(self) -> None:
        for event in self.proto.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            else:
                self.on_handshake(event)
            if self.transport is None:
                return
        self.flush()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self.on_message(data)
                return
            self.parts = [data]
            self.parts_size = len(data)
        elif opcode is Opcode.CONT:
            self.parts.append(data)
            self.parts_size += len(data)
            if frame.fin:
                message = b"".join(self.parts)
                self.parts, self.parts_size = [], 0
                self.on_message(message)
        # ping, pong and close are answered by the protocol itself

    def held(self) -> int:
        """Bytes of messages not yet handed to ``on_message``."""
        reader = getattr(self.proto, "reader", None)
        buffered = len(reader.buffer) if reader is not None else 0
        return buffered + self.parts_size

    # output --------------------------------------------------------------------------------------------
    def send_text(self, data: bytes) -> None:
        """Send ``data`` (UTF-8 JSON) as one text frame, as Node's ``ws`` sends strings. Frames sent in
        one turn of the event loop leave in one write (one system call for many replies or requests)."""
        if self.proto.state is State.OPEN:
            self.proto.send_text(data)
            if not self.flush_soon:
                self.flush_soon = True
                asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self.flush_soon = False
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        pending: list[bytes] = []
        for data in self.proto.data_to_send():
            if data:
                pending.append(data)
                continue
            if pending:
                transport.write(b"".join(pending))
                pending = []
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
        if pending:
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        if self.proto.close_expected() and self.close_timer is None:
            # the other side should close the TCP connection now; if it does not, we do
            self.close_timer = asyncio.get_running_loop().call_later(2.0, self.abort)
        if self.proto.state is State.CLOSED and self.transport is not None:
            self.transport.close()

    def fail(self, code: CloseCode, reason: str) -> None:
        """Close with ``code`` (e.g. 1013 "try again later") and stop reading."""
        if self.proto.state is State.OPEN:
            self.proto.fail(code, reason)
            self.flush()
        self.abort()

    def close(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "") -> None:
        if self.proto.state is State.OPEN:
            self.proto.send_close(code, reason)
            self.flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # for subclasses ------------------------------------------------------------------------------------
    def on_handshake(self, event: Any) -> None:
        raise NotImplementedError

    def on_message(self, data: bytes) -> None:
        raise NotImplementedError

    def on_closed(self, exc: Exception | None) -> None:
        pass
