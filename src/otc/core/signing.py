"""Signing and verifying messages (see messages.py for what is signed and why the domain tags)."""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

import msgspec

from .errors import OTCError
from .identity import Identity, verify
from .messages import (
    Chat,
    Confirm,
    Head,
    Offer,
    Quote,
    QuoteRequest,
    Receipt,
    ReceiptsRequest,
    SettleStep,
    SettleSync,
    Take,
    Terms,
    TradeRefusal,
)
from .offer import check_consistent

_encoder = msgspec.json.Encoder()
T = TypeVar("T", bound=msgspec.Struct)

DOMAINS: dict[type[Any], bytes] = {
    Offer: b"grenache-otc/1 offer\n",
    Head: b"grenache-otc/1 head\n",
    Take: b"grenache-otc/1 take\n",
    Terms: b"grenache-otc/1 terms\n",
    Chat: b"grenache-otc/1 chat\n",
    TradeRefusal: b"grenache-otc/1 refusal\n",
}
REQUEST_DOMAINS: dict[type[Any], bytes] = {
    Take: b"grenache-otc/1 take request\n",
    Confirm: b"grenache-otc/1 confirm request\n",
}


def signing_bytes(msg: msgspec.Struct) -> bytes:
    if isinstance(msg, Receipt):
        return DOMAINS[Terms] + _encoder.encode(terms_of(msg))
    domain = DOMAINS[type(msg)]
    if type(msg) is Terms:
        return domain + _encoder.encode(msg)
    return domain + _encoder.encode(msgspec.structs.replace(msg, sig=""))


def sign(identity: Identity, msg: T) -> T:
    return msgspec.structs.replace(msg, sig=identity.sign(signing_bytes(msg)))


def signer_of(msg: Offer | Head | Take | Chat | TradeRefusal) -> str:
    if isinstance(msg, (Offer, Head, TradeRefusal)):
        return msg.maker
    if isinstance(msg, Take):
        return msg.taker
    return msg.sender


def is_signed(msg: Offer | Head | Take | Chat | TradeRefusal) -> bool:
    return bool(msg.sig) and verify(signer_of(msg), msg.sig, signing_bytes(msg))


def offer_is_valid(offer: Offer) -> bool:
    """Consistent and signed by its maker: what a book requires of an update from the network."""
    try:
        check_consistent(offer)
    except OTCError:
        return False
    return is_signed(offer)


def terms_of(receipt: Receipt) -> Terms:
    return Terms(**{f: getattr(receipt, f) for f in Terms.__struct_fields__})


def receipt_of(terms: Terms, maker_sig: str, taker_sig: str) -> Receipt:
    return Receipt(
        **{f: getattr(terms, f) for f in Terms.__struct_fields__}, maker_sig=maker_sig, taker_sig=taker_sig
    )


def receipt_is_valid(receipt: Receipt) -> bool:
    data = signing_bytes(receipt)
    return verify(receipt.maker, receipt.maker_sig, data) and verify(receipt.taker, receipt.taker_sig, data)


def request_digest(request: Take | Confirm) -> str:
    """SHA-256 of a trade request's whole encoding, signatures included: what a refusal names."""
    return hashlib.sha256(REQUEST_DOMAINS[type(request)] + _encoder.encode(request)).hexdigest()


# --- requests for quote and settlement (issue 12) ------------------------------------------------------
DOMAINS.update(
    {
        QuoteRequest: b"grenache-otc/1 rfq\n",
        Quote: b"grenache-otc/1 quote\n",
        SettleStep: b"grenache-otc/1 settle-step\n",
        SettleSync: b"grenache-otc/1 settle-sync\n",
    }
)


def is_signed_by(msg: QuoteRequest | Quote | SettleStep | SettleSync, signer: str) -> bool:
    """Whether ``msg`` carries ``signer``'s valid signature (the caller names who must have signed)."""
    return bool(msg.sig) and verify(signer, msg.sig, signing_bytes(msg))


def terms_digest(terms: Terms) -> str:
    """What settlement steps name a trade by: the hash of its signed terms (the same on both sides)."""
    return hashlib.sha256(signing_bytes(terms)).hexdigest()[:32]


# --- recovery of a peer's own history (issue 8 item 7) ----------------------------------------------------
DOMAINS[ReceiptsRequest] = b"grenache-otc/1 receipts request\n"
