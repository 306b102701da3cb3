"""Login codes (``otc web``'s links), in-process: single use, a minute long, bounded in number."""

from __future__ import annotations

import json

import pytest

from otc.api import auth
from otc.api.server import HTTPError, Request
from otc.core.limits import API_LOGIN_CODE_TTL_S, API_MAX_LOGIN_CODES


def login(guard: auth.Auth, body: dict[str, str]) -> int:
    import asyncio

    request = Request("POST", auth.SESSION_PATH, {}, {}, json.dumps(body).encode())
    try:
        return asyncio.run(guard.login(request)).status
    except HTTPError as exc:
        return exc.status


def test_a_code_works_once_and_only_within_its_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    guard = auth.Auth("the-token")
    first, second = guard.mint_code(), guard.mint_code()
    assert first.code != second.code and "the-token" not in first.code + first.path
    assert login(guard, {"code": first.code}) == 201
    assert login(guard, {"code": first.code}) == 401  # used
    clock[0] += API_LOGIN_CODE_TTL_S + 0.001
    assert login(guard, {"code": second.code}) == 401  # too late, and gone now
    clock[0] -= 10
    assert login(guard, {"code": second.code}) == 401  # a late try used it up
    assert login(guard, {"code": "x" * 43}) == 401
    assert login(guard, {"token": "the-token"}) == 201
    assert login(guard, {}) == 400 and login(guard, {"token": "the-token", "code": "x"}) == 400


def test_codes_are_bounded_and_only_their_digests_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = auth.Auth("t")
    codes = [guard.mint_code().code for _ in range(API_MAX_LOGIN_CODES + 3)]
    assert len(guard.codes) == API_MAX_LOGIN_CODES
    assert not any(code.encode() in key for key in guard.codes for code in codes)
    assert [login(guard, {"code": c}) for c in codes[:3]] == [401] * 3  # the oldest ended
    assert login(guard, {"code": codes[-1]}) == 201
