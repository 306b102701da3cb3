"""Where peers live on this machine: a data directory per name, the API token in it, and a small record
of each running peer, so that ``otc --as alice`` finds alice's API and token by itself.

- data: ``$XDG_DATA_HOME/otc/<name>`` (default ``~/.local/share/otc/<name>``): key, SQLite store, and
  while the peer runs ``api.token`` (one line, mode 0600, new at every start).
- running peers: ``$XDG_RUNTIME_DIR/otc/<pid>.json`` (or ``$XDG_DATA_HOME/otc/.running/`` where no
  runtime directory is set): name, peer id, API URL, pid, data directory. Written at start, removed at
  stop; a record whose process is gone (killed) is ignored and deleted when seen.

Both directories are created mode 0700 and are trusted only if they belong to the current user and no one
else may write to them: a record there tells the CLI where to send the token, so a planted one could
steal it. Standard library only: the ``otc`` CLI imports this on every command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

TOKEN_FILE = "api.token"
HOME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class HomeError(Exception):
    """A data or runtime directory that cannot be used (wrong owner, open to others, a bad name)."""


# --- directories --------------------------------------------------------------------------------------
def data_home() -> Path:
    """``$XDG_DATA_HOME/otc`` (the XDG default ``~/.local/share`` when unset or not absolute)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "otc"


def default_data_dir(name: str) -> Path:
    """The data directory of the peer called ``name``: ``$XDG_DATA_HOME/otc/<name>``."""
    if not HOME_NAME.fullmatch(name):
        raise HomeError(
            f"{name!r} cannot name a data directory (letters, digits, '.', '_' and '-', not starting "
            "with '.'): give --data-dir or --ephemeral"
        )
    return data_home() / name


def runtime_dir() -> Path:
    """Where running peers leave their record: ``$XDG_RUNTIME_DIR/otc`` (a per-user tmpfs, emptied at
    logout), else ``$XDG_DATA_HOME/otc/.running``."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isabs(base):
        return Path(base) / "otc"
    return data_home() / ".running"


def private_dir(path: Path) -> Path:
    """``path``, created mode 0700 if missing; refused if another user owns it or may write to it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(path)
    return path


def check_private(path: Path) -> None:
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise HomeError(f"{path} belongs to another user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HomeError(f"{path} may be written by other users (chmod go-w {path})")


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600: a reader sees the old file or the whole new
    one, never a part, and the file is never readable by others, not even for a moment."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --- the API token ------------------------------------------------------------------------------------
def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def write_token(data_dir: Path, token: str) -> Path:
    path = data_dir / TOKEN_FILE
    write_private(path, token.encode() + b"\n")
    return path


def read_token(data_dir: Path) -> str:
    """The token of the peer running on ``data_dir``; ``OSError`` if there is none (or we may not read
    it: it is the owner's alone)."""
    text = (data_dir / TOKEN_FILE).read_text().strip()
    if not text:
        raise FileNotFoundError(f"{data_dir / TOKEN_FILE} is empty")
    return text


def remove_token(data_dir: Path, token: str) -> None:
    """Remove the token file if it still holds ``token`` (a newer peer may have replaced it)."""
    with contextlib.suppress(OSError):
        if read_token(data_dir) == token:
            (data_dir / TOKEN_FILE).unlink()


# --- running peers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    """A peer running on this machine, as its own record says."""

    name: str
    peer_id: str
    api: str  # http://127.0.0.1:PORT
    pid: int
    data_dir: str
    started: int = 0  # the process's start time (Linux clock ticks since boot): tells pid reuse apart

    def token(self) -> str:
        return read_token(Path(self.data_dir))


def _start_time(pid: int) -> int:
    """The start time of process ``pid`` (Linux); 0 where /proc is not there."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw.rsplit(")", 1)[1].split()[19])  # field 22; the name in parentheses may hold spaces
    except (OSError, ValueError, IndexError):
        return 0


def _alive(record: Running) -> bool:
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the pid
        return False
    started = _start_time(record.pid)
    return started == 0 or record.started == 0 or started == record.started


def register(name: str, peer_id: str, api: str, data_dir: Path) -> Path:
    """Record this process as a running peer; returns the record's path (``unregister`` it at stop)."""
    directory = private_dir(runtime_dir())
    pid = os.getpid()
    record = Running(name, peer_id, api, pid, str(data_dir.resolve()), _start_time(pid))
    path = directory / f"{pid}.json"
    write_private(path, json.dumps(asdict(record)).encode())
    return path


def unregister(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def running() -> list[Running]:
    """Peers running on this machine for this user, oldest first; records of dead processes are
    deleted. Nothing (not an error) when the directory is missing or not trustworthy."""
    directory = runtime_dir()
    try:
        check_private(directory)
        entries = list(directory.glob("*.json"))
    except (OSError, HomeError):
        return []
    out = []
    for path in entries:
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            fields = json.loads(path.read_bytes())
            record = Running(**fields)
        except (OSError, ValueError, TypeError):
            continue
        if _alive(record):
            out.append(record)
        else:
            unregister(path)
    return sorted(out, key=lambda r: (r.started, r.pid))


def by_name(name: str) -> list[Running]:
    """Running peers called ``name``: exact matches, else case-insensitive ones."""
    peers = running()
    exact = [r for r in peers if r.name == name]
    return exact or [r for r in peers if r.name.lower() == name.lower()]


def serving(url: str) -> Running | None:
    """The running peer whose control API is at ``url`` (a loopback URL with the same port)."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.hostname not in LOOPBACK_HOSTS or port is None:
        return None
    for record in running():
        if urllib.parse.urlsplit(record.api).port == port:
            return record
    return None


@contextlib.contextmanager
def registered(name: str, peer_id: str, api: str, data_dir: Path) -> Iterator[Path]:
    path = register(name, peer_id, api, data_dir)
    try:
        yield path
    finally:
        unregister(path)
