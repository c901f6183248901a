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


def _watcher_gone(bound: float = 15.0) -> None:
    """Wait (bounded) until no watcher thread of an earlier run is left.
    ``disable()`` waits 2 s at most for it; one busy in a long tick (a heap
    walk on a loaded machine) outlives that, and until it ends the next
    test's ``enable()`` has no watcher of its own (the old one re-arms the
    start as it leaves): on loaded 3.10 CI runs that cost a test all its
    findings (``test_timed_cycle_is_a_warning_not_a_deadlock``) or found the
    old watcher still there (``test_watcher_is_invisible_to_threading``)."""
    import time

    deadline = time.monotonic() + bound
    while DETECTOR.watcher_ident is not None and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _no_leftover_waits() -> Iterator[None]:
    yield
    assert not deadlockwatch.is_enabled(), "a test left the detector enabled"
    _watcher_gone()
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
