"""Node processes for interop tests: servers that print ``READY <port>``, one-shot clients that print one
line. Every process is started from ``tests/node`` or ``node_modules`` (never fetched) and killed by its
Popen object."""

from __future__ import annotations

import asyncio
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
NODE = shutil.which("node")
READY_DEADLINE = 15.0


def need_node(*packages: str) -> None:
    missing = [p for p in packages if not (ROOT / "node_modules" / p).is_dir()]
    if NODE is None or missing:
        pytest.skip(f"node and {', '.join(packages)} are needed (npm ci)", allow_module_level=True)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    return env


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


_pending: dict[int, list[str]] = {}  # per process: complete lines read but not yet taken, then a partial one


def wait_line(proc: subprocess.Popen[str], prefix: str, deadline: float = READY_DEADLINE) -> str:
    """The next stdout line starting with ``prefix`` (earlier lines are skipped); fails the test if none
    comes in time. Reads the pipe's file descriptor itself: a text-mode ``readline`` would buffer lines
    that a later ``select`` cannot see."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffered = _pending.setdefault(proc.pid, [""])
    end = time.monotonic() + deadline
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            while len(buffered) > 1:
                line = buffered.pop(0)
                if line.startswith(prefix):
                    return line
            left = end - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                break  # exited
            parts = (buffered.pop() + chunk).split("\n")
            buffered.extend(parts)
    err = ""
    rc = proc.poll()
    if proc.stderr is not None:
        if rc is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()[-2000:]
    pytest.fail(f"{proc.args} printed no {prefix!r} line within {deadline} s (rc={rc}) {err}")


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A process with piped stdout and stderr (text); stop it with :func:`stop`."""
    return subprocess.Popen(
        list(args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env)
    )


def run_example(grape: str, example: Path) -> subprocess.Popen[str]:
    """One of grenache-nodejs-ws's own examples, unchanged, through ``tests/node/run_example.js``."""
    return spawn(str(NODE), str(NODE_DIR / "run_example.js"), grape, str(example))


@contextmanager
def node_server(script: str | Path, *args: str, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run a Node server script until the block ends; yields the port of its ``READY <port>`` line."""
    path = script if isinstance(script, Path) else NODE_DIR / script
    proc = subprocess.Popen(
        [str(NODE), str(path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(env),
    )
    try:
        yield int(wait_line(proc, "READY ").split()[1])
    finally:
        stop(proc)


async def node_run(
    script: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    deadline: float = 20.0,
    stdin: bytes | None = None,
) -> str:
    """Run a Node script to completion without blocking the event loop; its stdout, stripped."""
    path = script if isinstance(script, Path) else NODE_DIR / script
    proc = await asyncio.create_subprocess_exec(
        str(NODE),
        str(path),
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(env),
    )
    try:
        async with asyncio.timeout(deadline):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"{path.name} failed ({proc.returncode}): {err.decode()[-2000:]}"
    return out.decode().strip()
