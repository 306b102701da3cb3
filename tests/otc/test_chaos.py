"""A short seeded chaos run (the full one is `make chaos`): real peers on real Grapes under SIGKILL,
SIGSTOP and a Grape restart, attacked meanwhile by the adversary (scripts/adversary.py: a squatter, a
griefer, an equivocator, a silent listener), with the invariants checked at the end by the script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_chaos_run_keeps_every_invariant() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--seed", "3", "--peers", "4", "--seconds", "20",
         "--faults-every", "3"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    invariants = ("overfills", "disagreements", "lost trades", "resurrected offers", "equivocator shown",
                  "squatter reached")  # fmt: skip
    for invariant in invariants:
        line = next(line for line in out.splitlines() if line.strip().startswith(invariant))
        assert line.split()[-2:] == ["0", "ok"], line
    trades = next(line for line in out.splitlines() if "trades done (API)" in line)
    assert int(trades.split()[-1]) > 0, "the run traded nothing: it proved nothing"
    assert "SIG" in out or "restarted grape" in out, "no fault was injected"
    adversary = next(line for line in out.splitlines() if line.startswith("adversary:"))
    did = dict(part.rsplit(": ", 1) for part in adversary.removeprefix("adversary: ").split(", "))
    assert int(did["griefer takes"]) > 0 and int(did["equivocations sent"]) > 0, adversary
