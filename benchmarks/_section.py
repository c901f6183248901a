"""Run one section in this (fresh) interpreter and write its JSON to a file.

    python -m benchmarks._section NAME --out FILE [--quick]

The runner starts one interpreter per section, so that no section inherits
another's threads, locks or learned lock orders.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    status = 0
    try:
        module = importlib.import_module(f"benchmarks.bench_{args.name}")
        data = module.run(args.quick).to_json()
    except BaseException:
        data = {"error": traceback.format_exc()}
        status = 1
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    sys.stdout.flush()
    sys.stderr.flush()
    # No waiting at exit for threads a benchmark could not end (all are bounded
    # and daemon, but an executor's workers are joined at exit).
    os._exit(status)


if __name__ == "__main__":
    main()
