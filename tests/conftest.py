"""Shared helpers: a detector fixture and a bounded subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import deadlockwatch
from deadlockwatch import _state

#: Upper bound for any wait in a test: a broken detector fails, never hangs.
BOUND = 10.0


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


@pytest.fixture
def detector() -> Iterator[list[deadlockwatch.Finding]]:
    """The detector enabled with ``on_deadlock="raise"`` and a fast watcher;
    yields the list its findings are appended to."""
    findings: list[deadlockwatch.Finding] = []
    deadlockwatch.enable(interval=0.02, threshold=0.02, on_deadlock="raise")
    from deadlockwatch._detector import DETECTOR

    start_len = len(DETECTOR.findings)
    try:
        yield findings
    finally:
        findings.extend(DETECTOR.findings[start_len:])
        deadlockwatch.disable()


@pytest.fixture(autouse=True)
def _no_leftover_waits() -> Iterator[None]:
    yield
    assert not deadlockwatch.is_enabled(), "a test left the detector enabled"
    stale = [w for w in _state.blocked.values() if w.rec.alive]
    assert not stale, f"a test left threads blocked: {stale}"
