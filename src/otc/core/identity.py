"""Who a peer is: an Ed25519 key pair. The peer id is the hex public key, so ids are self-certifying:
anyone can check a signature against the id alone, with no directory. Names are mere labels."""

from __future__ import annotations

import functools

# libsodium through PyNaCl: verifies in half the time of OpenSSL's Ed25519 here, and its cffi calls
# release the GIL, so a large batch (a late join) can be verified on every core with threads.
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


class Identity:
    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.peer_id = bytes(key.verify_key).hex()

    @classmethod
    def generate(cls) -> Identity:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        return cls(SigningKey(seed))

    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).signature.hex()


@functools.lru_cache(maxsize=4096)
def _public_key(peer_id: str) -> VerifyKey:
    return VerifyKey(bytes.fromhex(peer_id))


def verify(peer_id: str, signature: str, message: bytes) -> bool:
    try:
        _public_key(peer_id).verify(message, bytes.fromhex(signature))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
