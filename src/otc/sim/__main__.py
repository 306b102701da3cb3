"""``make sim``: ``python -m otc.sim [--peers N] [--seed S]``. Prints one summary line, then any invariant
violations (exit status 1 if there are any)."""

from __future__ import annotations

import argparse
import sys

from .market import Scenario, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otc.sim", description=__doc__)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--offers", type=int, default=0, help="offers published (0: by size)")
    parser.add_argument("--verbose", action="store_true", help="also print wall time and event count")
    args = parser.parse_args(argv)
    summary = simulate(Scenario(peers=args.peers, seed=args.seed, offers=args.offers))
    print(summary.line(), flush=True)
    kinds: dict[str, list[str]] = {}
    for violation in summary.violations:
        kinds.setdefault(violation.split(":", 1)[0], []).append(violation)
    for kind, found in kinds.items():  # every kind, its count and its first few
        print(f"  {len(found)} {kind} violation(s)")
        for violation in found[:5]:
            print(f"    {violation}")
    if args.verbose:
        print(f"  ({summary.events:,} events in {summary.wall_s:.1f} s of wall time)")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
