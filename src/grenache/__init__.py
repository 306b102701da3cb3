"""Grenache for Python: a Grape client (``Link``) and the HTTP and WebSocket RPC transports, wire-compatible
with grenache-nodejs-link / -http 1.0.2 and grenache-nodejs-ws 0.7.10 / 1.0.0, with TLS (``grenache.tls``),
streaming, and stated bounds on every resource (``grenache.limits``). Knows nothing of trading."""

from .client import PeerRPCClient
from .errors import GrapeError, GrenacheError, RPCError
from .limits import ClientLimits, ServerLimits
from .link import Link
from .server import PeerRPCServer, Request, RequestStream, StreamReply

__all__ = [
    "ClientLimits",
    "GrapeError",
    "GrenacheError",
    "Link",
    "PeerRPCClient",
    "PeerRPCServer",
    "RPCError",
    "Request",
    "RequestStream",
    "ServerLimits",
    "StreamReply",
]
