"""Which peer an ``otc`` command talks to, and with which token.

- ``--as NAME`` (env ``OTC_AS``): the peer called NAME running on this machine (its runtime record gives
  the API URL and the data directory, whose ``api.token`` the command reads).
- ``--api URL`` (env ``OTC_API``): that API; the token from ``--token`` / ``OTC_TOKEN``, else from the
  local peer whose record says it serves that URL.
- neither: the only peer running here; none: the historical default ``http://127.0.0.1:8001``.

The token is read, never guessed: it goes only to the API of the record it was found by.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import home
from .client import DEFAULT_API, ClientError, normalize_url


class TargetError(ClientError):
    """No peer, or more than one, matches what the command was told (exit 2)."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    name: str | None = None  # the local peer's name, when known


def _token_of(record: home.Running) -> str | None:
    try:
        return record.token()
    except OSError:  # starting, or stopped since: the API's 401 will say what to do
        return None


def _listing(records: list[home.Running]) -> str:
    return ", ".join(f"{r.name} ({r.api}, pid {r.pid})" for r in records)


def resolve(as_name: str | None, api: str | None, token: str | None) -> Target:
    if as_name and api:
        raise TargetError("--as and --api both say which peer to use: give one of them")
    if as_name:
        matches = home.by_name(as_name)
        if not matches:
            others = home.running()
            known = f" Running here: {_listing(others)}." if others else " No peer is running here."
            raise TargetError(
                f"no otc peer named {as_name!r} is running on this machine.{known}\n"
                f"Start it with:  otc peer --name {as_name}"
            )
        if len(matches) > 1:
            raise TargetError(
                f"{len(matches)} peers named {as_name!r} run here: {_listing(matches)}; "
                "pick one with --api URL"
            )
        record = matches[0]
        return Target(record.api, token or _token_of(record), record.name)
    if api:
        url = normalize_url(api)
        if token:
            return Target(url, token)
        serving = home.serving(url)
        if serving is None:
            return Target(url, None)
        return Target(url, _token_of(serving), serving.name)
    records = home.running()
    if len(records) > 1:
        raise TargetError(
            f"{len(records)} peers run here: {_listing(records)}; say which with --as NAME (or --api URL)"
        )
    if records:
        return Target(records[0].api, token or _token_of(records[0]), records[0].name)
    return Target(DEFAULT_API, token)
