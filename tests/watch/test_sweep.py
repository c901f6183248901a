"""The end-of-test sweep (`_Detector.sweep`, run by the pytest plugin as each
test ends, so that what a test's threads are stuck in is charged to it): one
look when nothing can move, the later looks when something runs, and what a
test leaves deadlocked found either way.  Each program runs in a subprocess:
a pytest-xdist worker has threads of its own that run (its channel), and the
sweep must see only the program's."""

from __future__ import annotations

import pytest
from conftest import run_python

_PROGRAM = """
import sys, threading, time
import deadlockwatch
from deadlockwatch._track import state
from deadlockwatch._watch import watcher

deadlockwatch.enable()
looks = []
capture = watcher.capture

def counting(*args, **kwargs):
    if kwargs.get("budget") is False:  # the sweep's looks (the watcher's ticks budget theirs)
        looks.append(1)
    return capture(*args, **kwargs)

watcher.capture = counting

def start(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t

mode = sys.argv[1]
threads = []
if mode in ("idle", "idle-beside-a-runner"):
    # pykka's actors as a test ends: each blocked on its empty inbox.
    threads = [start(threading.Event().wait) for _ in range(4)]
elif mode == "abba":
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    def worker(x, y):
        with x:
            barrier.wait(10)
            with y:
                pass
    threads = [start(worker, a, b), start(worker, b, a)]
elif mode == "wait-under-lock":
    def make():  # locals, out of the main thread's reach once it returns
        lock, ready, setter_may_go = threading.Lock(), threading.Event(), threading.Event()
        def waiter():
            with lock:
                setter_may_go.set()
                ready.wait()
        def setter():
            setter_may_go.wait(10)
            with lock:
                ready.set()
        return [start(waiter).ident, start(setter).ident]
    threads = make()
stop = threading.Event()
if mode == "idle-beside-a-runner":
    def spin():
        while not stop.is_set():
            time.sleep(0.001)  # untracked: this thread runs
    runner = start(spin)
deadline = time.monotonic() + 10
idents = {t if isinstance(t, int) else t.ident for t in threads}
del threads
def blocked():  # in their untimed waits (not on the way, in a Barrier's or an Event's)
    return {w.rec.ident for w in state.blocked.copy().values() if w.timeout is None}
while not idents <= blocked() and time.monotonic() < deadline:
    time.sleep(0.01)
assert idents <= blocked(), "threads not blocked"
found = watcher.DETECTOR.sweep(idents)
stop.set()
print(len(looks), sorted(f.kind for f in found))
"""


def _sweep(mode: str) -> tuple[int, list[str]]:
    r = run_python(_PROGRAM, args=[mode], timeout=60)
    assert r.returncode == 0, r.stderr
    looks, kinds = r.stdout.split(" ", 1)
    return int(looks), eval(kinds)  # a list of kind names, printed by the program


def test_threads_left_idle_are_looked_at_once() -> None:
    """pykka's suite: 76 tests end with actor threads blocked on their empty
    inboxes, and each sweep looked three times, 20 ms apart (x4.4-5.95 on a
    1.2 s suite).  With every other thread blocked in an untimed wait on
    something with no free unit, nothing can change while the sweep sleeps:
    one look.  Control: the same beside a thread that runs (its state may
    move): three looks, as before."""
    assert _sweep("idle") == (1, [])
    assert _sweep("idle-beside-a-runner") == (3, [])


@pytest.mark.parametrize("mode", ["abba", "wait-under-lock"])
def test_a_deadlock_left_behind_is_found_in_one_look(mode: str) -> None:
    """What a test leaves deadlocked (a Lock ABBA; a wait for an Event whose
    setter needs the Lock the waiter holds), every other thread blocked: the
    first look finds it, certain."""
    looks, kinds = _sweep(mode)
    assert kinds == ["deadlock"]
    assert looks >= 1
