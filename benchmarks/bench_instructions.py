"""Section "instructions" (run when named: ``--only instructions``): what the
workloads of section 3 and the uncontended Lock cost, counted in executed
instructions with valgrind's callgrind instead of timed.

Timing on a shared machine moves by more than the differences being judged
(the same asyncio ping-pong read 0.97 and 1.34 minutes apart); instruction
counts are the same run after run for the same binary, inputs and
environment, whatever else the machine does.  Each case runs in a fresh
interpreter under ``valgrind --tool=callgrind`` at two sizes, detector off and
on, and the row gives the difference divided by the difference in rounds:
start-up, imports and enable() cancel out.  ``PYTHONHASHSEED=0``; the
watcher's interval is 100 s (valgrind slows the clock, and the watcher's ticks
would otherwise count as if seconds passed), so the rows are the cost of the
tracked primitives in the application's threads.  An instruction is not a
nanosecond: the wrappers' frame reads and attribute stores cost more per
instruction than the interpreter's average, so time ratios run a little
higher (README, Speed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

from ._common import Section, ratio

#: name -> (what one round is, the sizes of the two runs (full), (quick)).
CASES: dict[str, tuple[str, tuple[int, int], tuple[int, int]]] = {
    "lock": ("Lock acquire(); release() (vs the raw Lock)", (100_000, 200_000), (20_000, 40_000)),
    "with": ("Lock with (vs the raw Lock)", (100_000, 200_000), (20_000, 40_000)),
    "rlock": ("RLock acquire(); release() (vs the raw RLock)", (100_000, 200_000), (0, 0)),
    "ping-pong": ("Condition ping-pong, one round of 2 threads", (2_000, 4_000), (500, 1_000)),
    "event": ("Event relay, one lap of 4 threads", (1_000, 2_000), (0, 0)),
    "semaphore": ("Semaphore(2) by 4 threads, one use", (4_000, 8_000), (0, 0)),
    "executor": ("ThreadPoolExecutor(4), one task", (2_000, 4_000), (0, 0)),
    "queue": ("queue.Queue, 4 producers and 4 consumers, one item", (4_000, 8_000), (0, 0)),
    "queue-ping-pong": ("queue.Queue(1) ping-pong, one round of 2 threads", (2_000, 4_000), (0, 0)),
    "asyncio": ("asyncio ping-pong, one round of 2 tasks", (1_000, 3_000), (0, 0)),
    "asyncio-echo": ("asyncio echo on loopback, one line", (2_000, 6_000), (0, 0)),
}

CHILD = r"""
import os, sys, threading
name, on, n = sys.argv[1], sys.argv[2] == "on", int(sys.argv[3])
if on:
    import deadlockwatch
    deadlockwatch.enable(text=False, interval=100.0)
from benchmarks import bench_workloads as w
if name in ("lock", "with", "rlock"):
    lk = threading.RLock() if name == "rlock" else threading.Lock()
    if name == "with":
        for _ in range(n):
            with lk:
                pass
    else:
        for _ in range(n):
            lk.acquire()
            lk.release()
else:
    {
        "ping-pong": w.condition_ping_pong, "event": w.event_relay,
        "semaphore": w.semaphore_pool, "executor": w.executor_tasks,
        "queue": w.queue_pipeline, "queue-ping-pong": w.queue_ping_pong,
        "asyncio": w.asyncio_ping_pong,
        "asyncio-echo": w.asyncio_echo,
    }[name](n)
os._exit(0)
"""

_COLLECTED = re.compile(r"Collected : (\d+)")


def _count(name: str, on: bool, n: int) -> int:
    """Instructions of one run of case ``name`` with ``n`` rounds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD,
            name,
            "on" if on else "off",
            str(n),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"{name} ({'on' if on else 'off'}, {n}): {proc.stderr[-2000:]}")
    return int(found.group(1))


def per_round(name: str, on: bool, sizes: tuple[int, int]) -> float:
    small, large = sizes
    return (_count(name, on, large) - _count(name, on, small)) / (large - small)


def run(quick: bool) -> Section:
    section = Section(
        key="instructions",
        title="instructions per round, detector on / off (valgrind's callgrind)",
        columns=[("case", "case"), ("off", "off"), ("on", "on"), ("ratio", "on / off")],
    )
    section.params = {"quick": quick, "PYTHONHASHSEED": "0", "interval": 100.0}
    if shutil.which("valgrind") is None:
        section.notes.append("valgrind is not installed: no rows (apt-get install valgrind)")
        return section
    for name, (what, full, small) in CASES.items():
        sizes = small if quick else full
        if not sizes[1]:
            continue
        off = per_round(name, False, sizes)
        on = per_round(name, True, sizes)
        row: dict[str, Any] = {
            "case": what,
            "key": name,
            "off": round(off),
            "on": round(on),
            "ratio": ratio(on, off),
            "sizes": list(sizes),
        }
        section.rows.append(row)
    section.notes.append(
        "Each row: (I(n2) - I(n1)) / (n2 - n1) over two runs of n1 and n2 rounds, whole "
        "process, all threads; 'off' for lock/with/rlock is the raw lock."
    )
    return section
