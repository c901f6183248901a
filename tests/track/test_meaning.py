"""What a blocked ``Condition.wait`` means (`deadlockwatch._track.meaning`):
read from the waiting thread's frames when first asked, not as it blocks.

The watcher here sleeps an hour between looks (and its threshold is an
hour), so nothing but the test reads the waits."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _programs import BOUND, until, wait_blocked
from conftest import run_python, start

import deadlockwatch
from deadlockwatch._track import meaning, state
from deadlockwatch._track.meaning import ConditionWait
from deadlockwatch._track.views import EventView, QueueView


@pytest.fixture(params=[True, False], ids=["lazy", "eager"])
def quiet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """The detector on, its watcher idle; ``eager`` as on a free-threaded build."""
    monkeypatch.setattr(meaning, "LAZY", request.param)
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    try:
        yield bool(request.param)
    finally:
        deadlockwatch.disable()


def _blocked_in(call: Callable[[], object]) -> tuple[threading.Thread, ConditionWait]:
    t = start(call)
    (w,) = wait_blocked(t)
    assert isinstance(w, ConditionWait)
    return t, w


def test_an_event_wait_is_read_from_its_frames_when_first_asked(quiet: bool) -> None:
    event = threading.Event()

    def waiter() -> None:
        event.wait(BOUND)  # the wait's site

    t, w = _blocked_in(waiter)
    try:
        # Nothing read yet (lazy), or read as it blocked (eager).
        assert (w._frame is not None) is quiet
        view = w.resource
        assert isinstance(view, EventView) and view.obj is event
        assert w.site is not None
        assert (w.site.file, w.site.line, w.site.function) == (
            __file__,
            waiter.__code__.co_firstlineno + 1,
            "waiter",
        )
        assert w._frame is None  # the frame is let go once read
        assert w.resource is view  # every reader gets the same view
    finally:
        event.set()
        t.join(BOUND)
    assert not t.is_alive()


def test_queue_waits_for_items_and_for_room_are_told_apart(quiet: bool) -> None:
    empty: queue.Queue[int] = queue.Queue()
    full: queue.Queue[int] = queue.Queue(maxsize=1)
    full.put(1)
    getter, got = _blocked_in(lambda: empty.get(timeout=BOUND))
    putter, put = _blocked_in(lambda: full.put(2, timeout=BOUND))
    try:
        for w, q, op in ((got, empty, "get"), (put, full, "put")):
            view = w.resource
            assert isinstance(view, QueueView) and view.obj is q and view.op == op
    finally:
        empty.put(0)
        full.get()
    for t in (getter, putter):
        t.join(BOUND)
        assert not t.is_alive()


def test_a_timed_wait_that_times_out_reads_itself_for_the_polling_loop(quiet: bool) -> None:
    event = threading.Event()
    done = threading.Event()
    polls: list[Any] = []

    def poller() -> None:
        while not done.is_set():
            event.wait(0.01)
            polls.append(state.current_record().poll)

    t = start(poller)
    try:
        until(lambda: len(polls) >= 3)
    finally:
        done.set()
        t.join(BOUND)
    # What a wait that timed out leaves for the next one names the Event and
    # the poller's site; the next wait continues the polling loop.
    what, site, since, _at = polls[1]
    assert what == id(event)
    assert site is not None and site.function == "poller"
    assert polls[2][2] == since


def test_a_child_forked_while_a_wait_was_being_read_reads_its_own() -> None:
    """The lock that makes every reader of a wait get the same view is made
    anew in a forked child: held by a parent's thread at the fork, the
    child's timed-out wait, which reads itself, would wait forever."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    code = """
    import os, signal, threading, deadlockwatch
    from deadlockwatch._track import meaning, state
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    held, release = threading.Event(), threading.Event()
    def holder():
        with meaning._resolving:
            held.set()
            release.wait(30)
    t = threading.Thread(target=holder, daemon=True)
    t.start()
    held.wait(30)
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # never left behind, should it hang
        timed_out = threading.Event().wait(0.01) is False
        os._exit(0 if timed_out and state.current_record().poll is not None else 1)
    release.set()
    t.join(30)
    print("child", os.waitpid(pid, 0)[1])
    deadlockwatch.disable()
    """
    r = run_python(code, timeout=60)
    # A child that hung was killed by its alarm (SIGALRM, 14).
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["child", "0"], r.stdout
