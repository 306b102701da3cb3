"""TLS between peers, bound to their Ed25519 identities.

Each peer serves RPC over TLS with a self-signed certificate whose key *is* its identity key, so the
handshake proves the server holds the key of the peer id it claims. A caller pins it: for a request to
``otc:peer:<id>`` the certificate's public key must be ``<id>``, checked after the handshake and before
any byte of the request is written (``grenache``'s ``verify_peer``). Whoever else answers on that name
(a squatter) fails at once, and the request goes to the next destination. For the market key, any
identity will do (what travels there is signed by its author), but it is encrypted all the same, as is
chat on the wire.

Callers present no certificate: the server learns who calls from the signed messages themselves
(Python's ssl cannot accept unknown self-signed client certificates without a CA).
"""

from __future__ import annotations

import ssl

from grenache.tls import client_context, public_key_of, self_signed, server_context

from ..core.identity import Identity
from .directory import peer_key

PEER_PREFIX = peer_key("")


def contexts(identity: Identity) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for a peer: its identity-bound certificate, and a client that pins
    by ``verify_peer`` rather than by a CA."""
    cert_pem, key_pem = self_signed(identity.seed(), f"otc peer {identity.peer_id[:16]}")
    return server_context(cert_pem, key_pem), client_context()


def verify_peer(dest: str, key: str, cert_der: bytes | None) -> bool:
    """A server answering ``otc:peer:<id>`` must hold ``<id>``'s key; any other must speak TLS."""
    if cert_der is None:
        return False
    if not key.startswith(PEER_PREFIX):
        return True
    try:
        return public_key_of(cert_der) == bytes.fromhex(key[len(PEER_PREFIX) :])
    except ValueError:
        return False
