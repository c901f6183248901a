"""Waiting for states, not durations: helpers shared by the tests.

In the spirit of trio's ``wait_all_tasks_blocked``, a test waits until the
program is in the state it means to test, read from deadlockwatch's own
bookkeeping, instead of sleeping and hoping:

- `wait_blocked`: the given threads are blocked in a tracked wait (each has a
  `WaitRecord` in ``_state.blocked``, which a tracked wait registers just
  before it blocks and removes as it returns);
- `wait_watched`: the watcher has since completed ``n`` more passes (calls of
  ``DETECTOR.tick``) that each started with every wait then blocked older
  than the threshold: a pass that would have analysed them, and reported
  (and acted on) anything it found.  A negative test calls it while the
  state holds, so that it knows the watcher looked, and found nothing.

Both poll with short sleeps under a deadline, and raise AssertionError when
the state does not come: a broken detector fails a test, never hangs it.

The module imports nothing from the test suite, so a program run in a
subprocess can import it too (with this directory on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR

#: Upper bound for any wait for a state.
BOUND = 10.0
_POLL = 0.002


def _idents(threads: threading.Thread | int | Iterable[threading.Thread | int]) -> list[int]:
    items = [threads] if isinstance(threads, (threading.Thread, int)) else list(threads)
    out = []
    for t in items:
        ident = t if isinstance(t, int) else t.ident
        assert ident is not None, f"{t!r} is not started"
        out.append(ident)
    return out


def junit_times(path: str | Path) -> dict[str, float]:
    """Each test case's time, by name, from a JUnit XML report."""
    root = ET.parse(path).getroot()
    return {case.get("name", ""): float(case.get("time", "0")) for case in root.iter("testcase")}


def run_flagged(pytester: Any, source: str, timeout: float = 120) -> tuple[Any, dict[str, float]]:
    """``source`` as a test file run by ``pytest --deadlockwatch -v`` in a
    subprocess (a pytester's, with ``timeout``): its result, and each test's
    time from the JUnit report."""
    pytester.makepyfile(source)
    xml = str(pytester.path / "out.xml")
    result = pytester.runpytest_subprocess(
        "--deadlockwatch", "-p", "no:cacheprovider", f"--junitxml={xml}", "-v", timeout=timeout
    )
    return result, junit_times(xml)


def blocked_waits() -> dict[int, _state.WaitRecord]:
    """The tracked waits in progress, by thread ident."""
    return {w.rec.ident: w for w in _state.blocked.copy().values()}


def until(condition: Callable[[], object], timeout: float = BOUND, what: str = "") -> None:
    """Poll ``condition`` until it is true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(_POLL)


def wait_blocked(
    threads: threading.Thread | int | Iterable[threading.Thread | int],
    timeout: float = BOUND,
) -> list[_state.WaitRecord]:
    """Wait until every thread given (Thread objects or idents) is blocked in
    a tracked wait; return those waits, in the order given."""
    idents = _idents(threads)
    found: dict[int, _state.WaitRecord] = {}

    def all_blocked() -> bool:
        nonlocal found
        found = blocked_waits()
        return all(i in found for i in idents)

    until(all_blocked, timeout, f"threads {idents} blocked in a tracked wait")
    return [found[i] for i in idents]


# -- the watcher's passes ----------------------------------------------------
# The detector keeps no pass counter.  The watcher calls ``self.tick()`` at
# each turn, looked up on the instance: a wrapper set as an instance attribute
# (for the time of `wait_watched` only, then deleted, which restores the
# method) counts the passes that started with every blocked wait past the
# threshold, once they have ended.
_lock = threading.Lock()
_users = 0
_looked = 0


_of: list[set[int] | None] = []


def _counting_tick(original: Callable[[], None]) -> Callable[[], None]:
    def tick() -> None:
        global _looked
        waits = list(_state.blocked.copy().values())
        of = _of[-1] if _of else None
        if of is not None:
            waits = [w for w in waits if w.rec.ident in of]
        now = time.monotonic()
        full = bool(waits) and all(now - w.since >= DETECTOR.config.threshold for w in waits)
        if of is not None and {w.rec.ident for w in waits} != of:
            full = False
        try:
            original()
        finally:
            if full:
                _looked += 1

    return tick


def _install() -> None:
    global _users
    with _lock:
        if _users == 0:
            DETECTOR.tick = _counting_tick(DETECTOR.tick)  # type: ignore[method-assign]
        _users += 1


def _uninstall() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users == 0:
            DETECTOR.__dict__.pop("tick", None)


def wait_watched(
    n: int = 2,
    timeout: float = BOUND,
    of: threading.Thread | int | Iterable[threading.Thread | int] | None = None,
) -> None:
    """Wait until the watcher has completed ``n`` more passes over the waits
    blocked now, each past the threshold (anything found in them is then
    reported, and its victims given their errors).  Call it while the state
    to be looked at holds: at least one thread blocked, the detector on.

    A pass counts when every blocked wait was older than the threshold as it
    started; with ``of`` (threads or idents), when each of those threads was
    blocked, in a wait older than the threshold (other threads may churn)."""
    assert DETECTOR.enabled, "the detector is off: no watcher will look"
    idents = None if of is None else _idents(of)
    held: list[_state.WaitRecord] = []
    if idents is not None:
        # Each blocked in a wait older than the threshold, all at once: not a
        # passing wait (a Condition's lock, an Event on the way).
        def settled() -> bool:
            nonlocal held
            held = wait_blocked(idents, timeout)
            now = time.monotonic()
            return all(now - w.since >= DETECTOR.config.threshold for w in held)

        until(settled, timeout, f"threads {idents} blocked past the threshold")
    _of.append(None if idents is None else set(idents))
    _install()
    try:
        start = _looked

        def looked() -> bool:
            now = blocked_waits()
            left = [w.rec.name for w in held if now.get(w.rec.ident) is not w]
            # The state must hold while the watcher looks: a thread that left
            # its wait (say with a DeadlockError) fails at once.
            assert not left, f"{left} left the wait before the watcher had looked"
            return _looked >= start + n

        until(looked, timeout, f"{n} passes of the watcher")
    finally:
        _uninstall()
        _of.pop()


def started(target: Callable[..., Any], *args: Any, name: str | None = None) -> threading.Thread:
    """A daemon thread running ``target(*args)``, started."""
    t = threading.Thread(target=target, args=args, name=name, daemon=True)
    t.start()
    return t


#: This directory, for a subprocess program to import this module:
#: ``sys.path.insert(0, TESTS); from _programs import lock_cycle``.
TESTS = os.path.dirname(os.path.abspath(__file__))

#: The line that makes `lock_cycle` (and the rest) importable in a program run
#: in a subprocess.
IMPORT = f"import sys; sys.path.insert(0, {TESTS!r}); from _programs import lock_cycle"


def lock_cycle(
    a: Any = None,
    b: Any = None,
    names: tuple[str, str] = ("worker-1", "worker-2"),
    timeout: float = BOUND,
    errors: dict[str, BaseException] | None = None,
) -> dict[str, str]:
    """The two-thread ABBA: daemon threads ``names[0]`` and ``names[1]`` take
    ``a`` then ``b`` and ``b`` then ``a`` (two new Locks by default), forced
    into the cycle by a Barrier; both are joined (bounded).  Returns how each
    ended, by name: ``"done"``, the name of the exception it raised (say
    ``"DeadlockError"``), or ``"stuck"`` if it was still blocked at the bound;
    the exceptions themselves go to ``errors``, if given."""
    if a is None:
        a = threading.Lock()
    if b is None:
        b = threading.Lock()
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def worker(x: Any, y: Any) -> None:
        name = threading.current_thread().name
        try:
            with x:
                barrier.wait(timeout)
                with y:
                    outcome[name] = "done"
        except Exception as exc:
            outcome[name] = type(exc).__name__
            if errors is not None:
                errors[name] = exc

    threads = [started(worker, a, b, name=names[0]), started(worker, b, a, name=names[1])]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for t in threads:
        if t.is_alive():
            outcome[t.name] = "stuck"
    return outcome


# -- programs run in a subprocess ---------------------------------------------
#: The start of a program run by `run_program`: a watchdog (a C thread no
#: analysis sees) that ends a hung program with every thread's stack, the
#: detector enabled (``raise-all``, reporting to $REPORT), ``RESCUE`` (from
#: $RESCUE: run the rescue, or leave it out for the control), `spawn`, and
#: the helpers above.
PRELUDE = f"""\
import faulthandler, os, sys, threading, time
faulthandler.dump_traceback_later(20, exit=True)
import deadlockwatch
from deadlockwatch import DeadlockError
sys.path.insert(0, {TESTS!r})
from _programs import BOUND, lock_cycle, wait_blocked, wait_watched, until
deadlockwatch.enable(
    interval=0.02, threshold=0.05, on_deadlock="raise-all", report=os.environ["REPORT"]
)
RESCUE = os.environ.get("RESCUE") == "1"
outcome = {{}}

def spawn(fn, name, *args):
    def run():
        try:
            fn(*args)
            outcome[name] = "done"
        except DeadlockError:
            outcome[name] = "DeadlockError"
    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t

def rescue(fn, *waiters):
    \"\"\"Once ``waiters`` are blocked and the watcher has looked twice, call
    ``fn`` (in a thread of its own), unless this is the control.\"\"\"
    if not RESCUE:
        return
    def run(fn, waiters):
        try:
            wait_watched(2, of=waiters)
        finally:
            fn()
    threading.Thread(target=run, args=(fn, waiters), name="rescuer", daemon=True).start()

def join(*threads):
    \"\"\"Join untimed (a raise-all victim joins again), then print the outcome.\"\"\"
    for t in threads:
        try:
            t.join()
        except DeadlockError:
            outcome["main"] = "DeadlockError"
            t.join(BOUND)
    print(sorted(outcome.items()), flush=True)
"""


def run_program(
    tmp_path: Path, body: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[str, list[dict[str, Any]]]:
    """Run `PRELUDE` + ``body`` as ``python prog.py``, in a session of its own
    killed as a whole when it ends; its stdout and the findings it reported.
    A program that fails (its watchdog fired) fails the test."""
    report = tmp_path / "report.jsonl"
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + textwrap.dedent(body))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    full_env.update(env or {})
    full_env["REPORT"] = str(report)
    full_env.setdefault("PYTHONFAULTHANDLER", "1")
    proc = subprocess.Popen(
        [sys.executable, str(prog)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out + err
    findings = []
    if report.exists():
        findings = [json.loads(x) for x in report.read_text().splitlines() if x]
    return out, findings
