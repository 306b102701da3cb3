"""Decoding what peers send: a payload that does not fit its schema is an RPC error, never a crash."""

from __future__ import annotations

from typing import Any

import msgspec

from grenache import RPCError

from ..core import errors as E


def decode(payload: Any, kind: Any) -> Any:
    try:
        return msgspec.convert(payload, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise RPCError(E.ERR_INVALID_PAYLOAD, str(exc)) from None
