"""Peers' TLS is bound to their identities: the pin accepts the holder of the named key only."""

from __future__ import annotations

import ssl

from grenache.tls import self_signed
from otc.core.identity import Identity
from otc.node import tls


def der(identity: Identity) -> bytes:
    cert_pem, _ = self_signed(identity.seed(), "x")
    return ssl.PEM_cert_to_DER_cert(cert_pem.decode())


def test_the_pin_accepts_only_the_key_a_peer_name_names() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    key = f"otc:peer:{alice.peer_id}"
    assert tls.verify_peer("127.0.0.1:1", key, der(alice))
    assert not tls.verify_peer("127.0.0.1:1", key, der(mallory))  # a squatter on alice's name
    assert not tls.verify_peer("127.0.0.1:1", key, None)  # no certificate, no request
    assert not tls.verify_peer("127.0.0.1:1", "otc:peer:zz", der(alice))  # not an id at all
    # the market key: anyone may serve it (what travels there is signed), but over TLS
    assert tls.verify_peer("127.0.0.1:1", "otc:market", der(mallory))
    assert not tls.verify_peer("127.0.0.1:1", "otc:market", None)


def test_a_peers_contexts_serve_its_identity() -> None:
    alice = Identity.generate()
    server, client = tls.contexts(alice)
    assert server.verify_mode is ssl.CERT_NONE  # callers are known by their signed messages
    assert client.verify_mode is ssl.CERT_NONE and not client.check_hostname  # pinned instead
