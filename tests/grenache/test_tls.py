"""TLS on the HTTP transport: both directions against grenache-nodejs-http 1.0.2's ``secure`` mode, the
caller's certificate in handlers, and identity pinning (self-signed Ed25519 certificates, CERT_NONE plus
the ``verify_peer`` hook) with proof that a refused server never receives a byte of the request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from grenache import Link, PeerRPCClient, PeerRPCServer, RPCError, tls
from grenache.grapes import GrapeNetwork
from grenache.server import Request

from .nodeproc import need_node, node_run, node_server
from .test_rpc import wait_dests

pytestmark = pytest.mark.timeout(60)
need_node("grenache-nodejs-http")


def unique(name: str) -> str:
    return f"tls:{name}:{uuid.uuid4().hex[:8]}"


def cn_of(der: bytes | None) -> str | None:
    if der is None:
        return None
    attrs = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


class PKI:
    """A CA with a server and a client certificate, also written as PEM files for Node."""

    def __init__(self, folder: Path) -> None:
        self.ca = tls.CertificateAuthority()
        self.server_cert, self.server_key = self.ca.issue("python-server")
        self.client_cert, self.client_key = self.ca.issue("python-client")
        self.node_dir = folder / "node"
        self.node_dir.mkdir()
        node_cert, node_key = self.ca.issue("node-peer")
        for name, data in (("cert.pem", node_cert), ("key.pem", node_key), ("ca.pem", self.ca.cert_pem)):
            (self.node_dir / name).write_bytes(data)

    @property
    def node_env(self) -> dict[str, str]:
        return {"GRENACHE_TLS_DIR": str(self.node_dir)}

    def server_context(self) -> ssl.SSLContext:
        return tls.server_context(self.server_cert, self.server_key, ca_pem=self.ca.cert_pem)

    def client_context(self) -> ssl.SSLContext:
        return tls.client_context(cert_pem=self.client_cert, key_pem=self.client_key, ca_pem=self.ca.cert_pem)


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path)


@pytest.fixture
async def link(grapes: GrapeNetwork) -> AsyncIterator[Link]:
    async with Link(grapes.urls[0]) as lk:
        yield lk


async def cert_echo_server(link: Link, key: str, ctx: ssl.SSLContext) -> PeerRPCServer:
    server = PeerRPCServer(link, ssl=ctx)

    @server.handle(key)
    async def echo(payload: Any, request: Request) -> Any:
        return {"from": "python", "got": payload, "cn": cn_of(request.cert)}

    await server.listen(0)
    return server


# Node secure server ← Python client ----------------------------------------------------------------------
async def test_python_client_node_secure_server(grapes: GrapeNetwork, pki: PKI, link: Link) -> None:
    key = unique("node")
    with node_server("server.js", grapes.urls[0], key, env=pki.node_env) as port:
        await wait_dests(link, key, 1)
        client = PeerRPCClient(link, ssl=pki.client_context())
        try:
            got = await client.request(key, {"hello": "tls"}, timeout=10)
            assert got == {"from": "node", "got": {"hello": "tls"}, "cn": "python-client"}
            assert (await client.request(key, "z" * 200_000, timeout=10, compress=True))[
                "got"
            ] == "z" * 200_000
            with pytest.raises(RPCError) as info:
                await client.request(key, {"fail": True}, timeout=10)
            assert info.value.code == "ERR_NODE_FAIL"
            # plain HTTP to the TLS server fails promptly instead of hanging
            plain = PeerRPCClient(link)
            with pytest.raises(RPCError) as info:
                await plain.request_dest(f"127.0.0.1:{port}", key, 1, timeout=5)
            assert info.value.code in ("ERR_REQUEST_GENERIC", "ERR_REPLY_EMPTY")
            await plain.stop()
        finally:
            await client.stop()


async def test_python_client_refuses_node_server_of_another_ca(
    grapes: GrapeNetwork, pki: PKI, link: Link
) -> None:
    key = unique("stranger")
    with node_server("server.js", grapes.urls[0], key, env=pki.node_env) as port:
        other_ca = tls.CertificateAuthority("another CA")
        client = PeerRPCClient(link, ssl=tls.client_context(ca_pem=other_ca.cert_pem))
        try:
            with pytest.raises(RPCError) as info:
                await client.request_dest(f"127.0.0.1:{port}", key, 1, timeout=5)
            assert info.value.code == "ERR_PEER_AUTH"
        finally:
            await client.stop()


# Python TLS server ← Node secure client ------------------------------------------------------------------
async def test_node_secure_client_python_tls_server(grapes: GrapeNetwork, pki: PKI, link: Link) -> None:
    key = unique("py")
    server = await cert_echo_server(link, key, pki.server_context())
    await server.announce(key)
    try:
        async with Link(grapes.urls[1]) as other:
            await wait_dests(other, key, 1)
        out = await node_run("client.js", grapes.urls[1], key, json.dumps({"n": 1}), env=pki.node_env)
        assert json.loads(out) == {"from": "python", "got": {"n": 1}, "cn": "node-peer"}
        out = await node_run("client.js", grapes.urls[1], key, '"x"', "map", "compress", env=pki.node_env)
        assert json.loads(out) == [{"from": "python", "got": "x", "cn": "node-peer"}]
        # a Node client without TLS gets an error, and the server goes on serving
        out = await node_run("client.js", grapes.urls[1], key, "1")
        assert out.startswith("ERROR ERR_REQUEST_GENERIC")
        # and a Python client with the CA and no certificate of its own: cert is None
        client = PeerRPCClient(link, ssl=tls.client_context(ca_pem=pki.ca.cert_pem))
        try:
            got = await client.request_dest(f"127.0.0.1:{server.port}", key, 2, timeout=5)
            assert got == {"from": "python", "got": 2, "cn": None}
        finally:
            await client.stop()
    finally:
        await server.stop()


# pinning self-signed identity keys -----------------------------------------------------------------------
class RecordingTLSServer:
    """A TLS server that answers nothing and records every byte it receives after the handshake."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.received = bytearray()
        self.handshakes = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.handshakes += 1
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await reader.read(65536):
                    self.received += data
            writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=self.ctx)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def identity() -> tuple[bytes, bytes, bytes]:
    """A raw Ed25519 seed (as PyNaCl's SigningKey holds it), its public key, and a self-signed cert."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    return seed, key.public_key().public_bytes_raw(), tls.self_signed(seed, "peer")[0]


async def test_pinned_ed25519_identity(link: Link) -> None:
    """Ed25519 self-signed certificates in TLS 1.3; the client verifies nothing but the pinned key."""
    seed, public, _ = identity()
    cert_pem, key_pem = tls.self_signed(seed, "alice")
    server = PeerRPCServer(link, ssl=tls.server_context(cert_pem, key_pem))

    @server.handle("whoami")
    async def whoami(payload: Any) -> Any:
        return payload

    await server.listen(0)
    dest = f"127.0.0.1:{server.port}"
    calls: list[tuple[str, str]] = []
    pin = tls.pin_public_key(public)

    def hook(d: str, key: str, cert: bytes | None) -> bool:
        calls.append((d, key))
        return pin(d, key, cert)

    client = PeerRPCClient(link, ssl=tls.client_context(), verify_peer=hook)
    try:
        for i in range(10):
            assert await client.request_dest(dest, "whoami", i, timeout=5) == i
        assert calls == [(dest, "whoami")]  # once per connection and key: the pooled connection remembers
        conn = client._pools[dest].idle[0]
        assert conn.cert is not None and tls.public_key_of(conn.cert) == public
        assert conn.transport is not None
        assert conn.transport.get_extra_info("ssl_object").version() == "TLSv1.3"
    finally:
        await client.stop()
        await server.stop()


async def test_pin_refusal_sends_nothing(link: Link) -> None:
    impostor_seed, _, _ = identity()
    _, wanted_public, _ = identity()
    cert_pem, key_pem = tls.self_signed(impostor_seed, "impostor")
    impostor = RecordingTLSServer(tls.server_context(cert_pem, key_pem))
    port = await impostor.start()
    dest = f"127.0.0.1:{port}"
    client = PeerRPCClient(link, ssl=tls.client_context(), verify_peer=tls.pin_public_key(wanted_public))
    try:
        for _ in range(3):
            with pytest.raises(RPCError) as info:
                await client.request_dest(dest, "otc:peer:x", {"secret": "order"}, timeout=5)
            assert info.value.code == "ERR_PEER_AUTH"
        [outcome] = await client.map_dests([dest], "otc:peer:x", {"secret": "order"})
        assert isinstance(outcome, RPCError) and outcome.code == "ERR_PEER_AUTH"
        assert impostor.handshakes == 4  # the connection is never reused: a new handshake each time
        await asyncio.sleep(0.2)  # give any stray bytes time to arrive (nothing should)
        assert bytes(impostor.received) == b""
        assert not client._pools[dest].idle
    finally:
        await client.stop()
        await impostor.stop()


async def test_request_skips_an_impostor_announced_under_the_same_name(
    grapes: GrapeNetwork, link: Link
) -> None:
    key = unique("pinned")
    seed, public, _ = identity()
    real = PeerRPCServer(link, ssl=tls.server_context(*tls.self_signed(seed, "real")))

    @real.handle(key)
    async def answer(payload: Any) -> Any:
        return "real"

    await real.listen(0)
    await real.announce(key)
    impostor_seed, _, _ = identity()
    impostor = RecordingTLSServer(tls.server_context(*tls.self_signed(impostor_seed, "impostor")))
    impostor_port = await impostor.start()
    await link.announce(key, impostor_port)
    client = PeerRPCClient(
        link, ssl=tls.client_context(), verify_peer=tls.pin_public_key(lambda k: public if k == key else None)
    )
    try:
        await wait_dests(link, key, 2)
        for _ in range(8):
            link.forget(key)
            assert await client.request(key, None, timeout=5) == "real"
        assert impostor.received == b""
        outcomes = await client.map(key, None, timeout=5)
        assert sorted(str(o) if isinstance(o, RPCError) else o for o in outcomes)[1] == "real"
        assert any(isinstance(o, RPCError) and o.code == "ERR_PEER_AUTH" for o in outcomes)
        # another key has no pin: refused everywhere, with the specific code
        await link.announce(key + ":other", real.port)
        await wait_dests(link, key + ":other", 1)
        with pytest.raises(RPCError) as info:
            await client.request(key + ":other", None, timeout=5)
        assert info.value.code == "ERR_PEER_AUTH"
    finally:
        await client.stop()
        await real.stop()
        await impostor.stop()


def test_self_signed_accepts_key_types() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    for key in (ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()):
        cert_pem, key_pem = tls.self_signed(key, "k", ips=["127.0.0.1"])
        cert = x509.load_pem_x509_certificate(cert_pem)
        assert tls.public_key_of(cert.public_bytes(encoding=_der())) != b""
        tls.server_context(cert_pem, key_pem)  # loads


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER
