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


#: Locks of ours a parent's thread may hold at a fork, and what the child
#: does that takes each (exit status 0: done).
_FORK_LOCKS = {
    "meaning._resolving": (
        "threading.Event().wait(0.01) is False and state.current_record().poll is not None"
    ),
    "state._serial_lock": "state.next_serial() > 0",
    "signals._nodes_lock": "signals.forget() is None",
}


@pytest.mark.parametrize("lock", sorted(_FORK_LOCKS))
def test_a_lock_of_ours_held_by_a_parents_thread_at_fork_is_free_in_the_child(lock: str) -> None:
    """Each lock of ours a thread may hold for a moment is made anew in a
    forked child: held by a parent's thread at the fork (that thread is not
    in the child), the child would wait for it forever (the timed-out wait
    that reads itself, a new thread's serial, forgetting signal nodes)."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    code = """
    import os, signal, threading, deadlockwatch
    from deadlockwatch._track import meaning, signals, state
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    held, release = threading.Event(), threading.Event()
    def holder():
        with LOCK:
            held.set()
            release.wait(30)
    t = threading.Thread(target=holder, daemon=True)
    t.start()
    held.wait(30)
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # never left behind, should it hang
        free = LOCK.acquire(False)
        if free:
            LOCK.release()
        os._exit(0 if free and (USE) else 1)
    release.set()
    t.join(30)
    print("child", os.waitpid(pid, 0)[1])
    deadlockwatch.disable()
    """.replace("LOCK", lock).replace("USE", _FORK_LOCKS[lock])
    r = run_python(code, timeout=60)
    # A child that hung was killed by its alarm (SIGALRM, 14).
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["child", "0"], r.stdout


def test_a_reader_does_not_wait_for_a_resolution_stuck_in_another_thread(quiet: bool) -> None:
    """The watcher never waits long on a lock another thread holds: with
    `meaning._resolving` held by a thread stuck inside it, a wait is still
    read (without the lock), and reads as it should."""
    event = threading.Event()
    t, w = _blocked_in(lambda: event.wait(BOUND))
    held, release = threading.Event(), threading.Event()

    def stuck() -> None:
        with meaning._resolving:
            held.set()
            release.wait(BOUND)

    holder = start(stuck)
    assert held.wait(BOUND)
    read: list[Any] = []
    reader = start(lambda: read.append(w.resource))
    try:
        reader.join(BOUND / 4)
        assert not reader.is_alive()  # it did not wait for the holder
        assert holder.is_alive() and not release.is_set()  # which still holds it
        (view,) = read
        assert isinstance(view, EventView) and view.obj is event
    finally:
        release.set()
        event.set()
        holder.join(BOUND)
        t.join(BOUND)
