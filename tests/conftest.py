"""Shared fixtures: real Grape nodes from node_modules, started the way `grenache grapes up` does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grenache.grapes import GrapeNetwork


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
