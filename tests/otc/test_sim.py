"""`make sim` in miniature: a few dozen simulated peers running the real replication core through
joins, deaths, a partition and its heal, with 1 % loss; every invariant must hold."""

from __future__ import annotations

import pytest

from otc.sim.__main__ import main
from otc.sim.market import Scenario, simulate


@pytest.mark.parametrize("seed", [1, 2])
def test_a_small_market_delivers_everything_and_breaks_no_invariant(seed: int) -> None:
    summary = simulate(Scenario(peers=40, seed=seed, offers=60))
    assert summary.violations == []
    assert summary.expected > 60 * 30 and summary.delivered == summary.expected
    assert summary.p99 < 300
    assert summary.copies <= 8
    assert summary.idle < 4


def test_the_same_seed_gives_the_same_run() -> None:
    runs = [simulate(Scenario(peers=25, seed=7, offers=20)) for _ in range(2)]
    assert runs[0].line() == runs[1].line() and runs[0].events == runs[1].events


def test_the_command_prints_one_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--peers", "12", "--offers", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        len(out) == 1 and out[0].startswith("peers 12: delivered ") and "idle msgs per peer per s" in out[0]
    )
