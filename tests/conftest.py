"""Shared fixtures: real Grape nodes from node_modules, started the way `grenache grapes up` does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grenache.grapes import GrapeNetwork


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The whole session (and every process it starts) keeps peers' data and runtime records in a
    temporary directory, never in the real ``~/.local/share/otc`` or ``$XDG_RUNTIME_DIR``."""
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_RUNTIME_DIR", "run")):
            (root / sub).mkdir(mode=0o700)
            mp.setenv(var, str(root / sub))
        for var in ("OTC_AS", "OTC_API", "OTC_TOKEN"):
            mp.delenv(var, raising=False)
        yield root


@pytest.fixture(scope="session")
def grapes() -> Iterator[GrapeNetwork]:
    """Two Grapes bootstrapped to each other, shared by the whole session (documented record lifetime)."""
    with GrapeNetwork(2) as net:
        yield net


@pytest.fixture
def fast_expiry_grapes() -> Iterator[GrapeNetwork]:
    """Two Grapes that forget an announcement 2–5 s after its last refresh (``--dpa 3000``)."""
    with GrapeNetwork(2, dpa_ms=3000) as net:
        yield net
