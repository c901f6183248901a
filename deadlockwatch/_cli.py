"""The command line: ``demo`` runs built-in deadlocks and shows their reports."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    from ._demo import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="python -m deadlockwatch",
        description="Find deadlocks between Python threads as they happen.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run built-in scenarios that really deadlock")
    demo.add_argument(
        "name", nargs="?", choices=sorted(SCENARIOS), help="one scenario (default: all)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args.name)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _demo(name: str | None) -> int:
    from . import _api
    from ._demo import SCENARIOS

    names = [name] if name else list(SCENARIOS)
    with _api.watching(on_deadlock="raise"):
        for n in names:
            scenario = SCENARIOS[n]
            print(f"=== {n}: {(scenario.__doc__ or '').strip()}", flush=True)
            try:
                outcome = scenario()
            except RuntimeError as exc:
                print(f"deadlockwatch demo: {n}: {exc}", file=sys.stderr)
                return 1
            sys.stderr.flush()
            for line in outcome:
                print(f"    {line}", flush=True)
    return 0
