"""Shared helpers: a detector fixture and a bounded subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _programs
import pytest

import deadlockwatch
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR

#: Upper bound for any wait in a test: a broken detector fails, never hangs.
BOUND = 10.0

#: The start of a program that really deadlocks: two daemon threads take two
#: locks in opposite orders (created on lines 3 and 4).  Callers add how the
#: main thread waits.
ABBA_START = """
import os, sys, threading, time
a = threading.Lock()
b = threading.Lock()
barrier = threading.Barrier(2)
def worker(x, y):
    with x:
        barrier.wait(10)
        with y:
            pass
t1 = threading.Thread(target=worker, args=(a, b), name="worker-1", daemon=True)
t2 = threading.Thread(target=worker, args=(b, a), name="worker-2", daemon=True)
t1.start(); t2.start()
"""


def run_python(
    code: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    args: list[str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this one's), killed after ``timeout``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    full_env.update(env or {})
    full_env.setdefault("PYTHONFAULTHANDLER", "1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *(args or [])],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def start(target: Any, *args: Any, name: str | None = None) -> threading.Thread:
    t = threading.Thread(target=target, args=args, name=name, daemon=True)
    t.start()
    return t


class Watch:
    """The findings the detector reported since the fixture started."""

    def __init__(self) -> None:
        self._start = len(DETECTOR.findings)

    @property
    def findings(self) -> list[deadlockwatch.Finding]:
        return DETECTOR.findings[self._start :]


@pytest.fixture
def detector(capfd: pytest.CaptureFixture[str]) -> Iterator[Watch]:
    """The detector enabled with ``on_deadlock="raise"`` and a fast watcher."""
    deadlockwatch.enable(interval=0.02, threshold=0.02, on_deadlock="raise")
    try:
        yield Watch()
    finally:
        deadlockwatch.disable()


def _no_watcher_left(bound: float = 15.0) -> None:
    """No watcher of the detector's is left after ``disable()``: a stopped one
    still busy in a long tick (``disable()`` waits 2 s at most; a heap walk on
    a loaded machine takes longer) is no longer the detector's, acts on
    nothing, and the next ``enable()`` starts one of its own at once
    (test_enable_after_disable_watches_at_once_while_the_old_watcher_is_in_a_long_tick).
    No waiting here: it only must not run on for ever (``bound`` seconds after
    it was stopped, far more than any tick)."""
    assert DETECTOR.watcher_ident is None, "disable() left the detector a watcher"
    stale = DETECTOR.stale_watchers(bound)
    assert not stale, f"watcher threads still running {bound} s after disable(): {stale}"


@pytest.fixture(autouse=True)
def _no_leftover_waits() -> Iterator[None]:
    yield
    assert not deadlockwatch.is_enabled(), "a test left the detector enabled"
    _no_watcher_left()
    stale = [w for w in _state.blocked.values() if w.rec.alive]
    assert not stale, f"a test left threads blocked: {stale}"
    # A thread of this test that exited holding a lock (on purpose: a thread
    # started from C on lock.acquire) is this test's: its held-at-exit
    # warning, due a threshold later, must not land in the next test's
    # findings (test_deadlocks' "nothing reported" checks saw it there).
    _state.departed.clear()


@pytest.fixture(name="lock_cycle")
def lock_cycle_fixture() -> Callable[..., dict[str, str]]:
    """`_programs.lock_cycle`: the two-thread ABBA, run and joined (bounded)."""
    return _programs.lock_cycle


pytest_plugins = ["pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stress-seconds",
        type=float,
        default=None,
        help="how long tests/watch/test_stress.py runs (default 5, or $DLW_STRESS_SECONDS)",
    )
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="also run the tests marked slow (CPython's own test suite under the detector)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: minutes long; skipped unless --run-slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for the files of a property test's examples (reused by them)."""
    return tmp_path_factory.mktemp("fuzz")
