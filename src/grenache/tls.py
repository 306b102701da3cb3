"""TLS for the Grenache transports: contexts, self-signed certificates, and identity pinning.

Two ways to use it:

* **A CA**, as grenache-nodejs-http's ``secure`` mode does (``{key, cert, ca}``): every peer holds a
  certificate signed by a CA all of them trust; :func:`server_context` / :func:`client_context` with
  ``ca=...`` verify the chain (and, on the client, that the certificate names the IP dialled).
* **Pinned self-signed certificates**: a peer's certificate is signed by its own identity key (any key
  ``cryptography`` can sign with; Ed25519 works in TLS 1.3 with this OpenSSL), so the certificate proves
  possession of the key. The client verifies nothing at the TLS layer (``client_context()`` without a
  CA = ``CERT_NONE``) and pins instead: ``PeerRPCClient(link, ssl=ctx, verify_peer=pin_public_key(...))``
  checks, after the handshake and before any byte of the request is written, that the server's public
  key is the one expected for the service key.

Python's ``ssl`` has no verify callback, so a *server* cannot accept unknown self-signed client
certificates: with ``require_client_cert`` it needs a CA. Servers that want to know their callers
without a CA authenticate them in the application (signed payloads).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

VerifyPeer = Callable[[str, str, bytes | None], bool]
"""``(dest "ip:port", service key, server certificate DER or None) -> allowed``."""

PrivateKey = CertificateIssuerPrivateKeyTypes


def load_private_key(key: PrivateKey | bytes) -> PrivateKey:
    """A ``cryptography`` private key, a 32-byte raw Ed25519 seed (e.g. ``bytes(nacl SigningKey)``),
    or PEM bytes."""
    if isinstance(key, bytes):
        if len(key) == 32:
            return ed25519.Ed25519PrivateKey.from_private_bytes(key)
        loaded = serialization.load_pem_private_key(key, password=None)
        return loaded  # type: ignore[return-value]
    return key


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    # Ed25519/Ed448 sign the message itself; the others need a digest
    return None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()


def _names(ips: Iterable[str], dns: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.DNSName(d) for d in dns]
    return names


def _build(
    subject: str,
    public_key: Any,
    issuer: x509.Name,
    signer: PrivateKey,
    *,
    ca: bool,
    days: int,
    ips: Iterable[str] = (),
    dns: Iterable[str] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    names = _names(ips, dns)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, _hash_for(signer))  # type: ignore[arg-type]


def pem_of_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def self_signed(
    key: PrivateKey | bytes,
    common_name: str = "grenache",
    *,
    days: int = 3650,
    ips: Iterable[str] = (),
    dns: Iterable[str] = (),
) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``key``: ``(cert_pem, key_pem)``. Its public key is ``key``'s, so
    pinning that public key pins the peer that holds ``key``."""
    private = load_private_key(key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = _build(common_name, private.public_key(), name, private, ca=False, days=days, ips=ips, dns=dns)
    return cert.public_bytes(serialization.Encoding.PEM), pem_of_key(private)


class CertificateAuthority:
    """A small CA for tests and private deployments (Node's ``secure`` mode expects one)."""

    def __init__(self, name: str = "grenache test CA", key: PrivateKey | None = None) -> None:
        self.key: PrivateKey = key or ed25519.Ed25519PrivateKey.generate()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = _build(name, self.key.public_key(), self.name, self.key, ca=True, days=3650)
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        key: PrivateKey | None = None,
        ips: Iterable[str] = ("127.0.0.1",),
        dns: Iterable[str] = ("localhost",),
        days: int = 365,
    ) -> tuple[bytes, bytes]:
        """A certificate signed by this CA: ``(cert_pem, key_pem)``; a new key unless one is given."""
        private = key or ed25519.Ed25519PrivateKey.generate()
        cert = _build(
            common_name, private.public_key(), self.name, self.key, ca=False, days=days, ips=ips, dns=dns
        )
        return cert.public_bytes(serialization.Encoding.PEM), pem_of_key(private)


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl only loads a certificate chain from files: write both to a private directory, then remove it
    with tempfile.TemporaryDirectory(prefix="grenache-tls-") as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)


def server_context(
    cert_pem: bytes, key_pem: bytes, *, ca_pem: bytes | None = None, require_client_cert: bool = False
) -> ssl.SSLContext:
    """A server context. With ``ca_pem`` client certificates signed by that CA are asked for (and
    required with ``require_client_cert``, as grenache-nodejs-ws's secure server does); handlers see
    them as ``request.cert``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert_pem, key_pem)
    if ca_pem is not None:
        ctx.load_verify_locations(cadata=ca_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("require_client_cert needs ca_pem (ssl cannot accept unknown self-signed clients)")
    return ctx


def client_context(
    *, cert_pem: bytes | None = None, key_pem: bytes | None = None, ca_pem: bytes | None = None
) -> ssl.SSLContext:
    """A client context. With ``ca_pem`` the server's chain and its name (the IP dialled) are verified;
    without, nothing is (pin with ``verify_peer`` instead). ``cert_pem``/``key_pem``: our certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem is not None:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_pem is not None and key_pem is not None:
        _load_chain(ctx, cert_pem, key_pem)
    return ctx


def public_key_of(cert_der: bytes) -> bytes:
    """The certificate's public key: raw bytes for Ed25519/Ed448 (32/57 bytes), otherwise DER
    SubjectPublicKeyInfo."""
    key = x509.load_der_x509_certificate(cert_der).public_key()
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pin_public_key(expected: Callable[[str], bytes | None] | bytes) -> VerifyPeer:
    """A ``verify_peer`` hook: the server's certificate must carry the expected public key.

    ``expected`` is one public key (raw Ed25519 bytes, or what :func:`public_key_of` returns), or a
    function of the service key giving it (``None``: refuse). A missing or unparsable certificate is
    refused.
    """

    def verify(dest: str, key: str, cert_der: bytes | None) -> bool:
        want = expected if isinstance(expected, bytes) else expected(key)
        if want is None or cert_der is None:
            return False
        try:
            return public_key_of(cert_der) == want
        except ValueError:
            return False

    return verify
