"""Grenache HTTP RPC framing, with no I/O: ``[rid, key, payload]`` in, ``[rid, error, result]`` out.

Bodies are optionally gzipped (header ``grc-compress: gzip``); the reply to a gzipped request is
gzipped too, with no ``Content-Encoding`` header, exactly as grenache-nodejs-http does.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import msgspec

from .errors import RPCError

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder()

ERR_BAD_REQUEST = "ERR_BAD_REQUEST"
ERR_REQUEST_TOO_LARGE = "ERR_REQUEST_TOO_LARGE"
ERR_REQUEST_ENCODING = "ERR_REQUEST_ENCODING_COMPRESSION"
ERR_REPLY_EMPTY = "ERR_REPLY_EMPTY"
ERR_REPLY_INVALID = "ERR_REPLY_INVALID"
ERR_REPLY_UNENCODABLE = "ERR_REPLY_UNENCODABLE"
ERR_REPLY_ENCODING = "ERR_REPLY_ENCODING_COMPRESSION"


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def decode(data: bytes) -> Any:
    return _decoder.decode(data)


def is_gzip(header_value: bytes | str | None) -> bool:
    if header_value is None:
        return False
    if isinstance(header_value, bytes):
        return b"gzip" in header_value.lower()
    return "gzip" in header_value.lower()


def gzip_bytes(data: bytes) -> bytes:
    # wbits=31 -> gzip container, as Node's zlib.gzip produces; level 6 is Node's default
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def gunzip_bytes(data: bytes, limit: int) -> bytes:
    """Gunzip at most ``limit`` bytes of output, so a small bomb cannot exhaust memory."""
    decompressor = zlib.decompressobj(31)
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit or decompressor.unconsumed_tail:
        raise RPCError(ERR_REQUEST_TOO_LARGE, f"decompressed body exceeds {limit} bytes")
    if not decompressor.eof:
        raise zlib.error("truncated gzip stream")
    return out


def parse_request(body: bytes) -> tuple[Any, str, Any]:
    """Decode a request body into ``(rid, key, payload)`` or raise ``RPCError(ERR_BAD_REQUEST)``.

    Use :func:`rid_of` to recover the rid of an invalid request, so its error reply still matches.
    """
    try:
        frame = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RPCError(ERR_BAD_REQUEST, f"body is not JSON: {exc}") from None
    if not isinstance(frame, list) or not 2 <= len(frame) <= 3:
        raise RPCError(ERR_BAD_REQUEST, "body must be a JSON array [rid, key, payload]")
    key = frame[1]
    if not isinstance(key, str) or not key:
        raise RPCError(ERR_BAD_REQUEST, "key must be a non-empty string")
    return frame[0], key, frame[2] if len(frame) == 3 else None


def parse_request_with_info(body: bytes, info: list[Any]) -> tuple[Any, str, Any]:
    """A body that came with a ``_gr: [rid, key]`` header (grenache-nodejs-http's stream requests): rid
    and key come from the header when set there, else from the body; the payload is ``body[2]`` of a
    JSON array body, as Node takes it, or the whole JSON value of any other body (Node would index it)."""
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RPCError(ERR_BAD_REQUEST, f"body is not JSON: {exc}") from None
    frame = data if isinstance(data, list) else []
    rid = info[0] if info and info[0] else (frame[0] if frame else None)
    key = info[1] if len(info) > 1 and info[1] else (frame[1] if len(frame) > 1 else None)
    if not isinstance(key, str) or not key:
        raise RPCError(ERR_BAD_REQUEST, "key must be a non-empty string")
    payload = (frame[2] if len(frame) > 2 else None) if isinstance(data, list) else data
    return rid, key, payload


def rid_of(body: bytes) -> Any:
    """The rid of a request whose other parts may be invalid, or None."""
    try:
        frame = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(frame, list) and frame and isinstance(frame[0], (str, int)):
        return frame[0]
    return None


_RID_HEAD = re.compile(rb'\s*\[\s*("(?:[^"\\]|\\.)*"|-?\d+)\s*,')


def rid_of_head(head: bytes) -> Any:
    """The rid from the first bytes of a request body too large to parse whole (a str or int), or None."""
    match = _RID_HEAD.match(head)
    if match is None:
        return None
    try:
        rid = _decoder.decode(match.group(1))
    except msgspec.DecodeError:
        return None
    return rid if isinstance(rid, (str, int)) else None


def encode_reply(rid: Any, error: str | None, result: Any) -> bytes:
    try:
        return _encoder.encode([rid, error, result])
    except (TypeError, msgspec.EncodeError) as exc:
        return _encoder.encode([rid, f"{ERR_REPLY_UNENCODABLE}: result is not JSON-encodable: {exc}", None])


def encode_request(rid: str, key: str, payload: Any) -> bytes:
    return _encoder.encode([rid, key, payload])


_typed_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def parse_reply(body: bytes, result_type: Any = None) -> tuple[Any, str | None, Any]:
    """Decode ``[rid, error, result]``. With ``result_type`` the result is decoded straight into that
    type (one pass, validated); a result that does not fit raises ``ERR_REPLY_INVALID``."""
    if result_type is not None:
        decoder = _typed_decoders.get(result_type)
        if decoder is None:
            decoder = _typed_decoders[result_type] = msgspec.json.Decoder(
                tuple[Any, str | None, result_type | None]
            )
        try:
            rid, err, result = decoder.decode(body)
            return rid, err, result
        except msgspec.ValidationError as exc:
            rid, err, _ = parse_reply(body)
            if err is not None:
                return rid, err, None
            raise RPCError(ERR_REPLY_INVALID, f"result does not fit {result_type.__name__}: {exc}") from None
        except msgspec.DecodeError:
            pass  # fall through for the precise error
    try:
        frame = _decoder.decode(body)
    except msgspec.DecodeError:
        raise RPCError(ERR_REPLY_EMPTY, "reply is not JSON") from None
    if not isinstance(frame, list) or len(frame) < 2:
        raise RPCError(ERR_REPLY_EMPTY, "reply is not a [rid, error, result] array")
    err = frame[1]
    if err is not None and not isinstance(err, str):
        err = str(err)
    return frame[0], err, frame[2] if len(frame) > 2 else None
