"""Grenache for Python: a Grape client (``Link``) and the HTTP RPC transport, wire-compatible with
grenache-nodejs-link / grenache-nodejs-http 1.0.2. Knows nothing of trading."""

from .client import PeerRPCClient
from .errors import GrapeError, GrenacheError, RPCError
from .link import Link
from .server import PeerRPCServer

__all__ = ["GrapeError", "GrenacheError", "Link", "PeerRPCClient", "PeerRPCServer", "RPCError"]
