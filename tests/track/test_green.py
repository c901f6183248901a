"""Green threads (eventlet, gevent): the detector must never make such a program
hang, nor report the green waits it cannot see.  Once ``_thread`` is
monkey-patched it switches itself off with one warning line, and waits on the
tracked primitives it made before are made the green way."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_python

WARNING = "monkey-patched threading: green threads are not tracked"

#: A green thread notifies the main one, which holds the Condition's lock until
#: it waits: without a green wait, the main thread's OS thread blocks and the
#: green thread never runs.
CONDITION = """
import threading

cond = threading.Condition()
state = []

def other():
    with cond:
        state.append(1)
        cond.notify()

with cond:
    SPAWN(other)
    while not state:
        cond.wait()
print("ok")
"""

#: A semaphore made right after the patching (tracked, if the detector has not
#: noticed yet), held by a green thread while the main one blocks on it.
SEMAPHORE = """
PATCH
import threading
sem = threading.Semaphore(1)
def other():
    with sem:
        SLEEP(0.2)
SPAWN(other)
SLEEP(0.05)
with sem:                        # held by the green thread for 0.2 s
    print("ok")
"""

LIBRARIES = {
    "eventlet": ("import eventlet; eventlet.monkey_patch()", "eventlet.spawn_n", "eventlet.sleep"),
    "gevent": (
        "from gevent import monkey; monkey.patch_all(); import gevent",
        "gevent.spawn",
        "gevent.sleep",
    ),
}


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("program", ["condition", "semaphore"])
def test_green_program_runs_as_without_the_detector(library: str, program: str) -> None:
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    patch, spawn, sleep = LIBRARIES[library]
    if program == "condition":
        code = patch + "\n" + CONDITION.replace("SPAWN", spawn)
    else:
        code = SEMAPHORE.replace("PATCH", patch).replace("SPAWN", spawn).replace("SLEEP", sleep)
    env = {"PYTHONWARNINGS": "ignore"}
    plain = run_python(code, env=env, timeout=60)
    assert plain.stdout.strip() == "ok", plain.stderr
    r = run_python(code, env={**env, "DEADLOCKWATCH": "1"}, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr
    assert r.stderr.count(WARNING) == 1, r.stderr
    assert f"deadlockwatch: warning: {library} {WARNING}" in r.stderr
    assert "DEADLOCK" not in r.stderr


def test_patched_thread_module_switches_the_detector_off() -> None:
    """Without eventlet or gevent: what they do to ``_thread`` (a different
    ``allocate_lock``) is seen at the next tracked wait, which then waits without
    blocking the OS thread for good; nothing is reported."""
    r = run_python(
        """
        import _thread, threading, time
        import deadlockwatch
        from deadlockwatch._watch.watcher import DETECTOR
        deadlockwatch.enable()
        lock = threading.Lock()
        cond = threading.Condition()
        with cond:
            print("before", cond.wait(0.05), DETECTOR.enabled)
        real = _thread.allocate_lock
        _thread.allocate_lock = lambda: real()   # as a green-thread library does
        lock.acquire()
        t = threading.Timer(0.2, lock.release)
        t.start()
        with lock:                               # tracked, contended: waits, then gets it
            print("after", DETECTOR.enabled, hasattr(threading.Condition.wait, "__wrapped__"))
        with cond:
            print("wait", cond.wait(0.05))
        print("findings", DETECTOR.findings)
        """,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == [
        "before False True",
        "after False False",
        "wait False",
        "findings []",
    ], r.stdout
    assert r.stderr.count(WARNING) == 1, r.stderr
    assert "a green-thread library " + WARNING in r.stderr
