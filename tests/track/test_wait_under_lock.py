"""Potential deadlocks through signals (issue 14, `deadlockwatch._track.signals`):
a wait made while holding a lock that the signal's signaller needs, found in
runs where the signaller won the race, so that nothing blocked.

Every program here runs in-process and never blocks: the signal is always
given before the wait (or the wait's predicate is already true), which is
exactly the run in which nothing hangs and the bug goes unseen.  Each "not a
finding" case has its control: the same program with the rescue removed is
reported.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator

import pytest

import deadlockwatch
from deadlockwatch._report.dot import to_dot
from deadlockwatch._report.load import finding_from_json
from deadlockwatch._report.text import format_text, to_json
from deadlockwatch._track import signals
from deadlockwatch._watch.watcher import DETECTOR

BOUND = 10.0


@pytest.fixture
def found() -> Iterator[list[deadlockwatch.Finding]]:
    """Detector on, lock order on, nothing learned yet; yields the findings
    of kind wait-under-lock made meanwhile (filled in at the end too)."""
    deadlockwatch.enable(interval=1.0, lock_order=True)
    deadlockwatch.forget()
    start = len(DETECTOR.findings)
    out: list[deadlockwatch.Finding] = []
    try:
        yield out
    finally:
        out[:] = [f for f in DETECTOR.findings[start:] if f.kind == "wait-under-lock"]
        deadlockwatch.disable()
        deadlockwatch.forget()


def new(start: int) -> list[deadlockwatch.Finding]:
    return [f for f in DETECTOR.findings[start:] if f.kind == "wait-under-lock"]


def in_thread(fn: Callable[[], object], name: str) -> None:
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    t.join(BOUND)
    assert not t.is_alive()


def line_of(fn: Callable[..., object], text: str) -> int:
    """The line of ``fn``'s source that contains ``text``."""
    import inspect

    lines, first = inspect.getsourcelines(fn)
    (n,) = [i for i, line in enumerate(lines) if text in line]
    return first + n


# -- the three shapes of the issue, each with the signaller winning the race ------
def event_setter_took_the_lock(take_after: bool = False) -> tuple[object, object]:
    state_lock = threading.Lock()
    ready = threading.Event()
    state = {}

    def setter() -> None:
        if not take_after:
            with state_lock:  # publish, then signal
                state["x"] = 1
        ready.set()
        if take_after:
            with state_lock:  # signal, then publish: needs nothing to signal
                state["x"] = 1

    in_thread(setter, "setter")
    with state_lock:
        assert ready.wait()  # set already: nothing blocks
    return state_lock, ready


def notifier_holds_the_lock(other_lock: bool = False) -> tuple[object, object]:
    manager_lock = threading.Lock()
    notifier_lock = threading.Lock() if other_lock else manager_lock
    cond = threading.Condition()
    done = [False]

    def notifier() -> None:
        with notifier_lock, cond:
            done[0] = True
            cond.notify()

    in_thread(notifier, "notifier")
    with manager_lock, cond:
        assert cond.wait_for(lambda: done[0])  # true already
    return manager_lock, cond


def consumer_took_the_lock_before_get() -> tuple[object, object]:
    out_lock = threading.Lock()
    q: queue.Queue[int] = queue.Queue(maxsize=1)
    with out_lock:
        q.put(1)  # room: nothing blocks

    def consumer() -> None:
        with out_lock:  # before get
            pass
        q.get()  # an item: nothing blocks; makes room (signals not_full)

    in_thread(consumer, "consumer")
    return out_lock, q.not_full


@pytest.mark.parametrize(
    ("shape", "waiting", "signalling", "taken"),
    [
        (event_setter_took_the_lock, "assert ready.wait()", "ready.set()", "# publish, then"),
        (notifier_holds_the_lock, "cond.wait_for(", "cond.notify()", "with notifier_lock, cond:"),
        (consumer_took_the_lock_before_get, "q.put(1)", "q.get()", "# before get"),
    ],
)
def test_a_wait_under_a_lock_its_signaller_needs_is_reported(
    found: list[deadlockwatch.Finding],
    shape: Callable[[], tuple[object, object]],
    waiting: str,
    signalling: str,
    taken: str,
) -> None:
    start = len(DETECTOR.findings)
    lock, _signal = shape()
    (f,) = new(start)
    assert {r.key for r in f.resources} >= {id(lock)}
    by_relation = {e.relation: e for e in f.order}
    assert set(by_relation) == {"waits", "signals"}
    wait_edge, signal_edge = by_relation["waits"], by_relation["signals"]
    assert wait_edge.held == id(lock) and signal_edge.acquired == id(lock)
    # Both sites: where the wait was made, where the signal was given, and
    # where the signaller took the lock.
    assert wait_edge.site is not None and wait_edge.site.line == line_of(shape, waiting)
    assert signal_edge.site is not None and signal_edge.site.line == line_of(shape, signalling)
    assert signal_edge.taken_at is not None
    assert signal_edge.taken_at.line == line_of(shape, taken)
    assert wait_edge.stack and signal_edge.stack
    text = format_text(f)
    assert "a wait under a lock its signaller needs" in text
    assert "held while waiting on" in text and "is signalled by" in text


def semaphore_released_after_the_lock(take_the_lock: bool) -> None:
    lock = threading.Lock()
    ready = threading.Semaphore(0)
    in_thread(ready.release, "marker")  # released by a thread that holds none: a signal
    with lock:
        assert ready.acquire()  # a unit is there: nothing blocks; learns lock -> ready

    def releaser() -> None:
        if take_the_lock:
            with lock:
                pass
        ready.release()  # holds nothing now; took the waiter's lock earlier in this call

    in_thread(releaser, "releaser")


def test_a_semaphore_released_by_a_call_that_took_the_lock_before(
    found: list[deadlockwatch.Finding],
) -> None:
    """The release holds no lock but the wait came first: the releaser checks
    its waiters' locks (not skipped by the early "nothing to learn" of a
    release: issue 17); the control releases without taking the lock."""
    start = len(DETECTOR.findings)
    semaphore_released_after_the_lock(take_the_lock=False)
    assert new(start) == []
    semaphore_released_after_the_lock(take_the_lock=True)
    (f,) = new(start)
    assert {r.type for r in f.resources} == {"Lock", "Semaphore"}


# -- no false alarms, each with its control -----------------------------------------
def test_a_setter_that_takes_the_lock_after_it_signals_is_not_reported(
    found: list[deadlockwatch.Finding],
) -> None:
    start = len(DETECTOR.findings)
    event_setter_took_the_lock(take_after=True)
    assert new(start) == []
    event_setter_took_the_lock()  # control: the lock taken before the signal
    assert len(new(start)) == 1


def test_a_notifier_that_takes_a_different_lock_is_not_reported(
    found: list[deadlockwatch.Finding],
) -> None:
    start = len(DETECTOR.findings)
    notifier_holds_the_lock(other_lock=True)
    assert new(start) == []
    notifier_holds_the_lock()  # control: the same lock
    assert len(new(start)) == 1


def condition_over_an_rlock(other_lock: bool) -> None:
    r = threading.RLock()
    other = threading.Lock()
    outer = other if other_lock else r
    cond = threading.Condition(r)
    done = [False]

    def notifier() -> None:
        with outer, cond:
            done[0] = True
            cond.notify()

    in_thread(notifier, "notifier")
    with outer, r, cond:  # r re-entered (held twice) unless other_lock
        assert cond.wait_for(lambda: done[0])


def test_the_conditions_own_rlock_held_twice_is_not_reported(
    found: list[deadlockwatch.Finding],
) -> None:
    """A Condition over an RLock that the waiter holds re-entrantly: the wait
    releases it whole, so the notifier taking it is no deadlock."""
    start = len(DETECTOR.findings)
    condition_over_an_rlock(other_lock=False)
    assert new(start) == []
    # Control: a lock other than the Condition's own, held on both sides.
    condition_over_an_rlock(other_lock=True)
    assert len(new(start)) == 1


def publish_then_wait(timeout: float | None) -> None:
    state_lock = threading.Lock()
    ready = threading.Event()

    def setter() -> None:
        with state_lock:
            pass
        ready.set()

    in_thread(setter, "setter")
    with state_lock:
        assert ready.wait(timeout)


def test_timed_waits_are_not_reported(found: list[deadlockwatch.Finding]) -> None:
    start = len(DETECTOR.findings)
    publish_then_wait(5.0)
    assert new(start) == []
    publish_then_wait(None)  # control: untimed
    assert len(new(start)) == 1


def test_a_lock_held_on_both_sides_is_no_gate_for_a_wait(
    found: list[deadlockwatch.Finding],
) -> None:
    """A lock held on both sides gates a lock order, but never a wait: the
    waiter holds it while it waits, so a signaller that takes it blocks.  The
    cycle is reported, not suppressed.  The control: the same two locks as a
    lock order under the gate are suppressed, as before."""
    gate, lock = threading.Lock(), threading.Lock()
    ready = threading.Event()

    def setter() -> None:
        with gate, lock:
            ready.set()

    start = len(DETECTOR.findings)
    in_thread(setter, "setter")
    with gate, lock:
        assert ready.wait()
    (f,) = new(start)
    assert id(lock) in {r.key for r in f.resources}
    assert [s for s in deadlockwatch.suppressed() if s.kind == "wait-under-lock"] == []
    a, b = threading.Lock(), threading.Lock()

    def ab() -> None:
        with gate, a, b:
            pass

    def ba() -> None:
        with gate, b, a:
            pass

    in_thread(ab, "ab")
    in_thread(ba, "ba")
    assert [x for x in DETECTOR.findings[start:] if x.kind == "lock-order-inversion"] == []
    assert any(s.kind == "lock-order-inversion" for s in deadlockwatch.suppressed())


def test_a_cycle_through_a_lock_order_and_a_signal_is_one_finding(
    found: list[deadlockwatch.Finding],
) -> None:
    """A holds L1 and waits for S; S's signaller needs L2; L2's holder takes
    L1: one finding, with the lock order in it."""
    l1, l2 = threading.Lock(), threading.Lock()
    ready = threading.Event()

    def orderer() -> None:
        with l2, l1:
            pass

    def setter() -> None:
        with l2:
            ready.set()

    start = len(DETECTOR.findings)
    in_thread(orderer, "orderer")
    in_thread(setter, "setter")
    with l1:
        assert ready.wait()
    (f,) = new(start)
    assert [e.relation for e in f.order].count("then") == 1
    assert {r.type for r in f.resources} == {"Lock", "Event"}
    assert {id(l1), id(l2)} < {r.key for r in f.resources} and len(f.resources) == 3


def test_suppressed_by_creation_site_as_lock_order_is(found: list[deadlockwatch.Finding]) -> None:
    site = f"test_wait_under_lock.py:{line_of(event_setter_took_the_lock, 'state_lock = ')}"
    deadlockwatch.enable(interval=1.0, lock_order=True, suppress=[site])
    try:
        start = len(DETECTOR.findings)
        event_setter_took_the_lock()
        assert new(start) == []
        assert any(s.kind == "wait-under-lock" for s in deadlockwatch.suppressed())
    finally:
        deadlockwatch.enable(interval=1.0, lock_order=True, suppress=[])
    start = len(DETECTOR.findings)
    event_setter_took_the_lock()  # control: not suppressed
    assert len(new(start)) == 1


def test_nothing_is_learned_or_patched_with_lock_order_off() -> None:
    wait_for = threading.Condition.__dict__["wait_for"]
    deadlockwatch.enable(interval=1.0, lock_order=False)
    try:
        assert threading.Condition.__dict__["wait_for"] is wait_for
        assert not signals.learning
        start = len(DETECTOR.findings)
        event_setter_took_the_lock()
        assert new(start) == []
        deadlockwatch.enable(interval=1.0, lock_order=True)  # control
        assert threading.Condition.__dict__["wait_for"] is not wait_for
        event_setter_took_the_lock()
        assert len(new(start)) == 1
    finally:
        deadlockwatch.disable()
        deadlockwatch.forget()
    assert threading.Condition.__dict__["wait_for"] is wait_for  # disable() restores it


def test_json_dot_and_the_report_reader_carry_it(found: list[deadlockwatch.Finding]) -> None:
    start = len(DETECTOR.findings)
    event_setter_took_the_lock()
    (f,) = new(start)
    record = json.loads(json.dumps(to_json(f)))
    assert record["kind"] == "wait-under-lock"
    assert {e["relation"] for e in record["order"]} == {"waits", "signals"}
    back = finding_from_json(record)
    assert back.kind == f.kind
    assert [(e.relation, e.taken_at) for e in back.order] == [
        (e.relation, e.taken_at) for e in f.order
    ]
    assert format_text(back) == format_text(f)
    dot = to_dot([f])
    assert "held while waiting on" in dot and "signalled by a call taking" in dot
    bad = dict(record, order=[dict(record["order"][0], relation="sideways")])
    with pytest.raises(ValueError, match="relation"):
        finding_from_json(bad)


def test_in_pytest_it_fails_its_test_like_an_inversion(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        def run(fn):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            t.join(10)

        def test_publish_then_signal():
            lock, ready = threading.Lock(), threading.Event()
            def setter():
                with lock:
                    pass
                ready.set()
            run(setter)
            with lock:
                assert ready.wait()

        def test_signal_then_publish():
            lock, ready = threading.Lock(), threading.Event()
            def setter():
                ready.set()
                with lock:
                    pass
            run(setter)
            with lock:
                assert ready.wait()
        """
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*deadlockwatch wait-under-lock*", "*FAILED*test_publish_then*"])
    result = pytester.runpytest_subprocess(
        "--deadlockwatch", "--deadlockwatch-inversions=warn", "-p", "no:cacheprovider", timeout=60
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*deadlockwatch: 1 wait-under-lock*"])


def semaphore_as_a_signal(release_under_the_lock: bool) -> None:
    lock = threading.Lock()
    ready = threading.Semaphore(0)  # a signal: released by threads that hold none

    def releaser() -> None:
        if release_under_the_lock:
            with lock:
                ready.release()
        else:
            ready.release()

    in_thread(releaser, "releaser")
    with lock:
        assert ready.acquire()  # a unit is there: nothing blocks


def test_a_semaphore_used_as_a_signal(found: list[deadlockwatch.Finding]) -> None:
    start = len(DETECTOR.findings)
    semaphore_as_a_signal(release_under_the_lock=False)
    assert new(start) == []
    semaphore_as_a_signal(release_under_the_lock=True)  # control: the releaser needs it
    (f,) = new(start)
    assert {r.type for r in f.resources} == {"Lock", "Semaphore"}
