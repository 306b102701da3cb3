"""Who a peer is: an Ed25519 key pair. The peer id is the hex public key, so ids are self-certifying:
anyone can check a signature against the id alone, with no directory. Names are mere labels."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

PEER_ID_PATTERN = r"^[0-9a-f]{64}$"
SIG_PATTERN = r"^[0-9a-f]{128}$"


class Identity:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.peer_id = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """The key stored at ``path`` (32 raw bytes, mode 0600), created on first use."""
        if path.exists():
            return cls.from_seed(path.read_bytes())
        identity = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(identity.seed())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return identity

    def seed(self) -> bytes:
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()


@functools.lru_cache(maxsize=4096)
def _public_key(peer_id: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(peer_id))


def verify(peer_id: str, signature: str, message: bytes) -> bool:
    try:
        _public_key(peer_id).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def short(peer_id: str) -> str:
    return peer_id[:8]
