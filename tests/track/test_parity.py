"""Parity: the tracked primitives behave exactly like CPython's originals.

Most tests run one scenario against the original (``deadlockwatch._track.native``)
and against the tracked type, and compare the transcripts: return values
with their types, exception types and messages.  The running interpreter's
original is the reference, so version differences (3.10/3.11 reject
``blocking="x"``, 3.12+ accept it; OverflowError messages) need no
hard-coding.  Tracked-only checks then look at the bookkeeping behind the
behaviour: who holds what, per `deadlockwatch._track.state.records`.

Every thread is a daemon, every wait and join is bounded by ``BOUND``, and
threads are ordered with Events; the only timed waits are the ones whose
duration is checked.
"""

from __future__ import annotations

import contextlib
import copy
import decimal
import fractions
import pickle
import queue
import re
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import pytest
from conftest import BOUND, start

import deadlockwatch
from deadlockwatch._model import Site
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.primitives import (
    TrackedBoundedSemaphore,
    TrackedLock,
    TrackedRLock,
    TrackedSemaphore,
)

T = TypeVar("T")
Factory = Callable[..., Any]
Outcome = tuple[Any, ...]

ORIG_LOCK: Any = _native.ORIGINAL_LOCK
ORIG_RLOCK: Any = _native.ORIGINAL_RLOCK
ORIG_SEMAPHORE: Any = _native.ORIGINAL_SEMAPHORE
ORIG_BOUNDED: Any = _native.ORIGINAL_BOUNDED_SEMAPHORE
ORIG_CONDITION: Any = _native.ORIGINAL_CONDITION

#: (name, original, tracked)
PAIRS: dict[str, tuple[Factory, Factory]] = {
    "Lock": (ORIG_LOCK, TrackedLock),
    "RLock": (ORIG_RLOCK, TrackedRLock),
    "Semaphore": (ORIG_SEMAPHORE, TrackedSemaphore),
    "BoundedSemaphore": (ORIG_BOUNDED, TrackedBoundedSemaphore),
}
LOCK_KINDS = ["Lock", "RLock"]
SEM_KINDS = ["Semaphore", "BoundedSemaphore"]
TRACKED_LOCKS = (TrackedLock, TrackedRLock)
TRACKED_SEMS = (TrackedSemaphore, TrackedBoundedSemaphore)

#: A timeout short enough to wait for in a test, and one spanning several
#: of the tracked wait's slices (`_state.WAIT_SLICE`).
SHORT = 0.05
SLICED = 0.12


# -- helpers ---------------------------------------------------------------
@pytest.fixture(autouse=True)
def _forget_what_the_test_left_held() -> Iterator[None]:
    """Some cases leave a primitive of theirs held by this thread (a semaphore
    unit taken and dropped): such an entry would stay in the thread's held
    list and act as a gate lock for the lock-order tests run after these in
    the same process."""
    me = _state.current_record()
    before = list(me.held)
    yield
    if me.held != before:
        me.held[:] = before


def outcome(fn: Callable[[], object]) -> Outcome:
    """What calling ``fn`` did: its value with its type, or its exception and message."""
    try:
        value = fn()
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    return ("returned", type(value), value)


def returned_true(result: Outcome) -> bool:
    return result[0] == "returned" and bool(result[2])


def in_thread(
    fn: Callable[[], T], name: str = "scenario", unblock: Callable[[], object] | None = None
) -> T:
    """Run ``fn`` in a fresh daemon thread (a fresh thread record); fail if it
    does not finish within BOUND, after calling ``unblock`` to free it (so that
    a failure does not leave a blocked thread behind for the next tests)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = start(run, name=name)
    t.join(BOUND)
    if t.is_alive() and unblock is not None:
        with contextlib.suppress(Exception):
            unblock()
        t.join(BOUND)
        pytest.fail(f"{name} did not finish within {BOUND}s")
    assert not t.is_alive(), f"{name} did not finish within {BOUND}s"
    if errors:
        raise errors[0]
    return box[0]


def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for a state another thread reaches without signalling it."""
    deadline = time.monotonic() + BOUND
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def is_blocked(ident: int | None) -> bool:
    return any(w.rec.ident == ident for w in _state.blocked.copy().values())


@contextlib.contextmanager
def held_by_other(lock: Any, name: str = "holder") -> Iterator[threading.Thread]:
    """``lock`` held by another (daemon) thread for the duration of the block."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        lock.acquire()
        taken.set()
        done.wait(BOUND)
        lock.release()

    t = start(hold, name=name)
    assert taken.wait(BOUND)
    try:
        yield t
    finally:
        done.set()
        t.join(BOUND)
    assert not t.is_alive()


def my_record() -> _state.ThreadRecord:
    return _state.current_record()


def record_of(t: threading.Thread) -> _state.ThreadRecord:
    assert t.ident is not None
    return _state.records[t.ident]


def kind_of(obj: object) -> type[Any]:
    """The tracked type of ``obj`` (what stands in ``threading`` for a semaphore
    class while enabled is a subclass of the tracked type)."""
    t = type(obj)
    return t.__mro__[1] if "_dw_stands_for" in t.__dict__ else t


def assert_not_held_by(rec: _state.ThreadRecord, obj: object) -> None:
    assert not any(h is obj for h in rec.held), f"{obj!r} left in {rec!r}.held: {rec.held}"


def assert_free_bookkeeping(obj: Any) -> None:
    """A tracked primitive that nobody holds: no owner, in nobody's held list."""
    if isinstance(obj, TRACKED_LOCKS):
        assert obj._owner is None
    if isinstance(obj, TRACKED_SEMS):
        assert obj._dw_units == {}
    for rec in list(_state.records.values()):
        assert_not_held_by(rec, obj)


def owned(lock: Any) -> bool:
    """RLock: owned by the calling thread; Lock: locked by anyone."""
    return bool(lock._is_owned()) if hasattr(lock, "_is_owned") else bool(lock.locked())


class BadBool:
    """An argument whose truth value raises."""

    def __bool__(self) -> bool:
        raise ZeroDivisionError("no truth value")


# -- acquire(blocking, timeout): every argument, in every state -------------
# (id, args, kwargs, may block forever when the lock is unavailable)
ACQUIRE_ARGS: list[tuple[str, tuple[Any, ...], dict[str, Any], bool]] = [
    ("no-args", (), {}, True),
    ("True", (True,), {}, True),
    ("False", (False,), {}, False),
    ("1", (1,), {}, True),
    ("0", (0,), {}, False),
    ("True,-1", (True, -1), {}, True),
    ("True,-1.0", (True, -1.0), {}, True),
    ("True,0", (True, 0), {}, False),
    ("True,0.0", (True, 0.0), {}, False),
    ("True,-0.0", (True, -0.0), {}, False),
    ("True,short", (True, SHORT), {}, False),
    ("1,short", (1, SHORT), {}, False),
    ("False,-1", (False, -1), {}, False),
    ("False,0", (False, 0), {}, False),
    ("False,short", (False, SHORT), {}, False),
    ("0,short", (0, SHORT), {}, False),
    ("True,-2", (True, -2), {}, False),
    ("True,-0.5", (True, -0.5), {}, False),
    ("True,-inf", (True, float("-inf")), {}, False),
    ("True,1e300", (True, 1e300), {}, False),
    ("True,inf", (True, float("inf")), {}, False),
    ("True,nan", (True, float("nan")), {}, False),
    ("True,2*TIMEOUT_MAX", (True, 2 * threading.TIMEOUT_MAX), {}, False),
    ("True,10**30", (True, 10**30), {}, False),
    ("True,10**400", (True, 10**400), {}, False),
    ("True,'x'", (True, "x"), {}, False),
    ("True,None", (True, None), {}, False),
    ("True,Fraction", (True, fractions.Fraction(1, 20)), {}, False),
    ("True,Decimal", (True, decimal.Decimal("0.05")), {}, False),
    # Accepted as a truth value on 3.12+, TypeError on 3.10/3.11.
    ("'x'", ("x",), {}, True),
    ("'x',short", ("x", SHORT), {}, False),
    ("None", (None,), {}, False),
    ("None,short", (None, SHORT), {}, False),
    ("1.5", (1.5,), {}, True),
    ("1.5,short", (1.5, SHORT), {}, False),
    ("[]", ([],), {}, False),
    ("BadBool", (BadBool(),), {}, False),
    ("BadBool,short", (BadBool(), SHORT), {}, False),
    ("blocking=False", (), {"blocking": False}, False),
    ("blocking=True", (), {"blocking": True}, True),
    ("timeout=0", (), {"timeout": 0}, False),
    ("timeout=short", (), {"timeout": SHORT}, False),
    ("timeout=-1", (), {"timeout": -1}, True),
    ("timeout=-2", (), {"timeout": -2}, False),
    ("timeout=1e300", (), {"timeout": 1e300}, False),
    ("blocking=True,timeout=short", (), {"blocking": True, "timeout": SHORT}, False),
    ("blocking=False,timeout=1", (), {"blocking": False, "timeout": 1}, False),
    ("blocking=False,timeout=-1", (), {"blocking": False, "timeout": -1}, False),
    ("True,timeout=short", (True,), {"timeout": SHORT}, False),
]


def _acquire_params() -> list[Any]:
    params = []
    for kind in LOCK_KINDS:
        for state in ("free", "mine", "other"):
            for name, args, kwargs, forever in ACQUIRE_ARGS:
                reentrant = kind == "RLock" and state == "mine"
                if forever and state != "free" and not reentrant:
                    continue  # blocks for ever on the original too
                params.append(pytest.param(kind, state, args, kwargs, id=f"{kind}-{state}-{name}"))
    return params


def acquire_transcript(
    lock: Any, state: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Outcome]:
    log: list[Outcome] = []
    with contextlib.ExitStack() as stack:
        if state == "mine":
            log.append(outcome(lock.acquire))
        elif state == "other":
            stack.enter_context(held_by_other(lock))
        result = outcome(lambda: lock.acquire(*args, **kwargs))
        log.append(result)
        log.append(outcome(lambda: owned(lock)))
        if returned_true(result):
            log.append(outcome(lock.release))
        if state == "mine":
            log.append(outcome(lock.release))
        log.append(outcome(lambda: owned(lock)))
    # Free again, and fully working.
    log.append(outcome(lambda: lock.acquire(False)))
    log.append(outcome(lock.release))
    log.append(outcome(lock.release))  # one too many
    if isinstance(lock, TRACKED_LOCKS):
        assert_free_bookkeeping(lock)
    return log


@pytest.mark.parametrize(("kind", "state", "args", "kwargs"), _acquire_params())
def test_acquire_arguments_match(
    kind: str, state: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    original, tracked = PAIRS[kind]
    results = []
    for lock in (original(), tracked()):
        # A Lock may be released by any thread: that frees a wrongly blocked scenario.
        unblock = lock.release if kind == "Lock" else None
        results.append(
            in_thread(partial(acquire_transcript, lock, state, args, kwargs), unblock=unblock)
        )
    expected, got = results
    assert got == expected


def test_blocking_x_follows_the_running_version() -> None:
    # Not hard-coded in the matrix above; spelled out here so a reader sees it.
    lock: Any = TrackedLock()
    result = outcome(lambda: lock.acquire("x"))
    assert result == outcome(lambda: ORIG_LOCK().acquire("x"))
    if sys.version_info < (3, 12):
        assert result[:2] == ("raised", TypeError)
    else:
        assert result == ("returned", bool, True)
        lock.release()


@pytest.mark.parametrize("timeout", [SHORT, SLICED])
@pytest.mark.parametrize("keyword", [False, True], ids=["positional", "keyword"])
@pytest.mark.parametrize(
    ("kind", "holder"),
    [("Lock", "other"), ("Lock", "me"), ("RLock", "other")],
    ids=["Lock-held-by-other", "Lock-held-by-me", "RLock-held-by-other"],
)
@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_timed_acquire_times_out(
    kind: str, holder: str, keyword: bool, timeout: float, tracked: bool
) -> None:
    lock = PAIRS[kind][tracked]()

    def attempt() -> tuple[bool, float]:
        t0 = time.monotonic()
        got = lock.acquire(timeout=timeout) if keyword else lock.acquire(True, timeout)
        return got, time.monotonic() - t0

    if holder == "me":
        lock.acquire()
        got, elapsed = attempt()
        lock.release()
    else:
        with held_by_other(lock):
            got, elapsed = attempt()
    assert got is False
    assert timeout * 0.8 <= elapsed < BOUND
    assert not lock.locked() if kind == "Lock" else not lock._is_owned()
    if tracked:
        assert_free_bookkeeping(lock)


@pytest.mark.parametrize("kind", LOCK_KINDS)
@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_acquire_timeout_zero_does_not_wait(kind: str, tracked: bool) -> None:
    lock = PAIRS[kind][tracked]()
    with held_by_other(lock):
        t0 = time.monotonic()
        assert lock.acquire(timeout=0) is False
        assert lock.acquire(True, 0) is False
        assert lock.acquire(False) is False
        assert time.monotonic() - t0 < SHORT
    assert lock.acquire(timeout=0) is True
    lock.release()


@pytest.mark.parametrize("kind", LOCK_KINDS)
@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_timed_acquire_succeeds_when_released_meanwhile(kind: str, tracked: bool) -> None:
    lock = PAIRS[kind][tracked]()
    lock.acquire()
    ready = threading.Event()
    results: list[Any] = []

    def waiter() -> None:
        ready.set()
        results.append(lock.acquire(timeout=BOUND))
        results.append(owned(lock))
        lock.release()

    t = start(waiter, name="waiter")
    assert ready.wait(BOUND)
    if tracked:
        # The wait went through the tracked slow path (registered, sliced).
        until(lambda: is_blocked(t.ident), "the waiter to block")
    lock.release()
    t.join(BOUND)
    assert not t.is_alive()
    assert results == [True, True]
    if tracked:
        assert_free_bookkeeping(lock)


# -- release, locked, context manager, aliases ------------------------------
def lock_api_transcript(factory: Factory) -> list[Outcome]:
    lock = factory()
    log = [
        outcome(lock.locked),
        outcome(lock.release),  # release unlocked lock
        outcome(lock.release_lock),
        outcome(lock.acquire_lock),
        outcome(lock.locked_lock),
        outcome(lock.locked),
        outcome(lambda: lock.acquire_lock(False)),
        outcome(lambda: lock.acquire_lock(True, 0)),
        outcome(lambda: lock.acquire_lock(timeout=0)),
        outcome(lambda: lock.acquire_lock(False, 1)),
        outcome(lock.release_lock),
        outcome(lock.locked_lock),
        outcome(lock.release),
    ]
    with lock as entered:
        log.append(("entered", type(entered), entered))
        log.append(outcome(lock.locked))
        log.append(outcome(lambda: lock.acquire(False)))
    log.append(outcome(lock.locked))
    log.append(outcome(lock.__enter__))
    log.append(outcome(lambda: lock.__exit__(None, None, None)))
    log.append(outcome(lambda: lock.__exit__(None, None, None)))  # not held any more
    with contextlib.suppress(KeyError), lock:
        raise KeyError("propagates through the with block")
    log.append(outcome(lock.locked))
    return log


@pytest.mark.parametrize("thread", ["main", "fresh"])
def test_lock_api_matches(thread: str) -> None:
    def both() -> tuple[list[Outcome], list[Outcome]]:
        return lock_api_transcript(ORIG_LOCK), lock_api_transcript(TrackedLock)

    expected, got = both() if thread == "main" else in_thread(both)
    assert got == expected
    assert ("raised", RuntimeError, "release unlocked lock") in got


def rlock_api_transcript(factory: Factory) -> list[Outcome]:
    lock = factory()
    log = [
        outcome(lock.release),  # never acquired
        outcome(lock._is_owned),
        outcome(lock.acquire),
        outcome(lambda: lock.acquire(False)),
        outcome(lambda: lock.acquire(True, SHORT)),
        outcome(lambda: lock.acquire(timeout=0)),
        outcome(lock._is_owned),
    ]
    if hasattr(lock, "_recursion_count"):
        log.append(outcome(lock._recursion_count))
    with lock as entered:
        log.append(("entered", type(entered), entered))
        if hasattr(lock, "_recursion_count"):
            log.append(outcome(lock._recursion_count))
    for _ in range(4):
        log.append(outcome(lock.release))
        log.append(outcome(lock._is_owned))
        if hasattr(lock, "_recursion_count"):
            log.append(outcome(lock._recursion_count))
    log.append(outcome(lock.release))  # one too many
    log.append(outcome(lambda: lock.__exit__(None, None, None)))
    return log


def test_rlock_reentry_matches() -> None:
    expected = rlock_api_transcript(ORIG_RLOCK)
    got = rlock_api_transcript(TrackedRLock)
    assert got == expected
    assert got.count(("raised", RuntimeError, "cannot release un-acquired lock")) == 3


def test_rlock_tracked_count_and_held_entry() -> None:
    lock = TrackedRLock()
    rec = my_record()
    for depth in range(1, 4):
        assert lock.acquire()
        assert lock._count == depth
        assert [h for h in rec.held if h is lock] == [lock]  # one entry, however deep
    assert lock._owner is rec
    for _ in range(3):
        lock.release()
    assert_free_bookkeeping(lock)


def test_recursion_count_exists_exactly_where_the_original_has_it() -> None:
    assert hasattr(ORIG_RLOCK(), "_recursion_count") == hasattr(TrackedRLock(), "_recursion_count")
    assert hasattr(TrackedRLock(), "_recursion_count") == (sys.version_info >= (3, 11))


@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_rlock_release_from_another_thread_fails(tracked: bool) -> None:
    lock = PAIRS["RLock"][tracked]()
    lock.acquire()
    lock.acquire()
    other = in_thread(lambda: (outcome(lock.release), outcome(lock._is_owned), owned(lock)))
    assert other == (
        ("raised", RuntimeError, "cannot release un-acquired lock"),
        ("returned", bool, False),
        False,
    )
    # Still ours, twice.
    assert lock._is_owned()
    lock.release()
    assert lock._is_owned()
    lock.release()
    assert not lock._is_owned()
    if tracked:
        assert_free_bookkeeping(lock)


def rlock_condition_protocol_transcript(factory: Factory) -> list[Outcome]:
    lock = factory()
    me = threading.get_ident()
    log = [outcome(lock._release_save)]  # not held
    lock.acquire()
    lock.acquire()
    state = lock._release_save()
    log.append(("state", type(state), state[0], state[1] == me, len(state)))
    log.append(outcome(lock._is_owned))
    log.append(outcome(lock.release))
    # Really released: another thread can take it meanwhile.
    log.append(in_thread(lambda: outcome(lambda: (lock.acquire(False), lock.release()))))
    log.append(outcome(lambda: lock._acquire_restore(state)))
    log.append(outcome(lock._is_owned))
    if hasattr(lock, "_recursion_count"):
        log.append(outcome(lock._recursion_count))
    log.append(in_thread(lambda: outcome(lambda: lock.acquire(False))))
    log.append(outcome(lock.release))
    log.append(outcome(lock.release))
    log.append(outcome(lock._is_owned))
    log.append(outcome(lock.release))
    return log


def test_rlock_release_save_acquire_restore_match() -> None:
    expected = rlock_condition_protocol_transcript(ORIG_RLOCK)
    got = rlock_condition_protocol_transcript(TrackedRLock)
    assert got == expected
    assert got[0] == ("raised", RuntimeError, "cannot release un-acquired lock")
    assert got[1] == ("state", tuple, 2, True, 2)


@pytest.mark.parametrize(
    "state",
    [5, None, (), (1,), (1, 2, 3), ("a", 1), (1, "b")],
    ids=["int", "None", "empty", "one", "three", "str-count", "str-owner"],
)
def test_acquire_restore_argument_errors_match(state: Any) -> None:
    expected = outcome(lambda: ORIG_RLOCK()._acquire_restore(state))
    lock = TrackedRLock()
    assert outcome(lambda: lock._acquire_restore(state)) == expected
    assert expected[:2] == ("raised", TypeError)
    assert not lock._is_owned()
    assert_free_bookkeeping(lock)


@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_rlock_release_save_from_a_non_owner(tracked: bool) -> None:
    # Neither checks the calling thread: it releases every level of the lock.
    lock = PAIRS["RLock"][tracked]()
    lock.acquire()
    lock.acquire()
    rec = my_record()
    result = in_thread(lambda: outcome(lock._release_save))
    assert result == ("returned", tuple, (2, threading.get_ident()))
    assert not lock._is_owned()
    assert outcome(lock.release) == ("raised", RuntimeError, "cannot release un-acquired lock")
    assert in_thread(lambda: outcome(lambda: (lock.acquire(False), lock.release()))) == (
        "returned",
        tuple,
        (True, None),
    )
    if tracked:
        assert_not_held_by(rec, lock)
        assert_free_bookkeeping(lock)


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_at_fork_reinit_matches(kind: str) -> None:
    def transcript(factory: Factory) -> list[Outcome]:
        lock = factory()
        lock.acquire()
        if kind == "RLock":
            lock.acquire()
        log = [outcome(lock._at_fork_reinit), outcome(lambda: owned(lock))]
        if kind == "Lock":
            log.append(outcome(lock.locked))
        log += [
            outcome(lambda: lock.acquire(False)),
            outcome(lambda: owned(lock)),
            outcome(lock.release),
            outcome(lock.release),
        ]
        if isinstance(lock, TRACKED_LOCKS):
            assert_free_bookkeeping(lock)
        return log

    original, tracked = PAIRS[kind]
    assert in_thread(lambda: transcript(tracked)) == in_thread(lambda: transcript(original))


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_at_fork_reinit_leaves_no_held_entry(kind: str) -> None:
    lock = PAIRS[kind][1]()
    rec = my_record()
    lock.acquire()
    assert any(h is lock for h in rec.held)
    lock._at_fork_reinit()
    assert_not_held_by(rec, lock)
    assert lock._owner is None
    assert lock._dw_holders() == []


# -- a Lock released by another thread (hand-off) ---------------------------
@pytest.mark.parametrize("releaser", ["with-record", "without-record", "main"])
@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_lock_handoff(tracked: bool, releaser: str) -> None:
    lock = PAIRS["Lock"][tracked]()
    taken, finish = threading.Event(), threading.Event()
    acquirer_rec: list[_state.ThreadRecord] = []

    def acquirer() -> None:
        assert lock.acquire()
        acquirer_rec.append(my_record())
        taken.set()
        finish.wait(BOUND)  # stays alive (its record too) until checked

    a = start(acquirer, name="acquirer")
    try:
        assert taken.wait(BOUND)

        def release() -> tuple[bool, Outcome]:
            if releaser == "with-record":
                my_record()
            had_record = hasattr(_state.tls, "rec")
            return had_record, outcome(lock.release)

        if releaser == "main":
            my_record()
            had_record, result = release()
        else:
            had_record, result = in_thread(release, name="releaser")
        assert had_record is (releaser != "without-record")
        assert result == ("returned", type(None), None)
        assert not lock.locked()
        if tracked:
            assert lock._handoff is True
            assert lock._owner is None
            assert_not_held_by(acquirer_rec[0], lock)
            assert lock._dw_holders() == []
            assert lock._dw_owner_bound() is False
    finally:
        finish.set()
        a.join(BOUND)
    assert not a.is_alive()
    # Still a working lock, with working bookkeeping.
    assert outcome(lock.release) == ("raised", RuntimeError, "release unlocked lock")
    with lock:
        assert lock.locked()
        if tracked:
            assert lock._owner is my_record()
    assert not lock.locked()
    if tracked:
        assert_free_bookkeeping(lock)


# -- Condition on tracked locks ----------------------------------------------
COND_FACTORIES = [
    pytest.param(ORIG_LOCK, id="original-Lock"),
    pytest.param(TrackedLock, id="tracked-Lock"),
    pytest.param(ORIG_RLOCK, id="original-RLock"),
    pytest.param(TrackedRLock, id="tracked-RLock"),
]


def condition_transcript(factory: Factory) -> tuple[list[Outcome], list[float]]:
    cond = ORIG_CONDITION(factory())
    log = [
        outcome(lambda: cond.wait(0)),
        outcome(cond.notify),
        outcome(cond.notify_all),
        outcome(lambda: cond.wait_for(lambda: 0, 0)),
        outcome(lambda: cond.wait_for(lambda: 7)),  # true at once: never waits
    ]
    durations = []
    with cond:
        for call in (lambda: cond.wait(SHORT), lambda: cond.wait_for(lambda: 0, SHORT)):
            t0 = time.monotonic()
            log.append(outcome(call))
            durations.append(time.monotonic() - t0)
        log += [
            outcome(lambda: cond.wait(0)),
            outcome(lambda: cond.wait_for(lambda: "ready", SHORT)),
            outcome(lambda: cond.wait_for(lambda: [], 0)),
            outcome(cond.notify),
            outcome(lambda: cond.notify(5)),
            outcome(cond.notify_all),
            outcome(cond._is_owned),
        ]
    log.append(outcome(cond._is_owned))
    log.append(outcome(cond.release))
    return log, durations


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_condition_timeouts_and_errors_match(kind: str) -> None:
    original, tracked = PAIRS[kind]
    expected, _ = condition_transcript(original)
    got, durations = condition_transcript(tracked)
    assert got == expected
    assert got[0] == ("raised", RuntimeError, "cannot wait on un-acquired lock")
    assert got[1] == ("raised", RuntimeError, "cannot notify on un-acquired lock")
    assert all(SHORT * 0.8 <= d < BOUND for d in durations), durations


@pytest.mark.parametrize("factory", COND_FACTORIES)
def test_condition_waiter_does_not_hold_the_lock(factory: Factory) -> None:
    lock = factory()
    cond = ORIG_CONDITION(lock)
    reentrant = hasattr(lock, "_is_owned")
    ready = threading.Event()
    seen: dict[str, Any] = {}

    def waiter() -> None:
        with cond:
            if reentrant:
                lock.acquire()  # held twice while waiting
            ready.set()
            seen["woken"] = cond.wait(BOUND)
            seen["owned"] = owned(lock)
            if isinstance(lock, TRACKED_LOCKS):
                rec = my_record()
                seen["owner is waiter"] = lock._owner is rec
                seen["held entries"] = sum(h is lock for h in rec.held)
                seen["count"] = getattr(lock, "_count", 1)
            if reentrant:
                lock.release()

    t = start(waiter, name="waiter")
    assert ready.wait(BOUND)
    # The waiter held the lock when it set `ready`; we get it only once
    # wait() has released it, so the waiter is now inside wait().
    with cond:
        if isinstance(lock, TRACKED_LOCKS):
            waiter_rec = record_of(t)
            assert_not_held_by(waiter_rec, lock)
            assert lock._owner is my_record()
            assert [h for h in my_record().held if h is lock] == [lock]
        if reentrant:
            assert lock._is_owned()
        cond.notify()
        # The waiter wakes and must wait for us to release the lock.
    t.join(BOUND)
    assert not t.is_alive()
    assert seen.pop("woken") is True
    assert seen.pop("owned") is True
    if isinstance(lock, TRACKED_LOCKS):
        assert seen == {"owner is waiter": True, "held entries": 1, "count": 2 if reentrant else 1}
        assert_free_bookkeeping(lock)
    assert not owned(lock)


@pytest.mark.parametrize("factory", COND_FACTORIES)
def test_condition_notify_n_and_notify_all(factory: Factory) -> None:
    lock = factory()
    cond = ORIG_CONDITION(lock)
    # The waiters report to the main thread on a second Condition over the
    # same lock, so that only the main thread's notify wakes them from `cond`.
    report = ORIG_CONDITION(lock)
    n = 3
    state = {"waiting": 0, "woken": 0}
    results: list[bool] = []

    def waiter() -> None:
        with cond:
            state["waiting"] += 1
            report.notify()
            got = cond.wait(BOUND)
            results.append(got)
            state["woken"] += 1
            report.notify()

    threads = [start(waiter, name=f"waiter-{i}") for i in range(n)]
    with cond:
        assert report.wait_for(lambda: state["waiting"] == n, BOUND)
        # Every waiter is inside cond.wait() now (each released the lock there).
        assert len(cond._waiters) == n
        cond.notify(2)
        assert report.wait_for(lambda: state["woken"] == 2, BOUND)
        assert len(cond._waiters) == 1
        cond.notify_all()
        assert report.wait_for(lambda: state["woken"] == n, BOUND)
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    assert results == [True] * n
    if isinstance(lock, TRACKED_LOCKS):
        assert_free_bookkeeping(lock)


def produce_consume(factory: Factory, n: int = 300, capacity: int = 3) -> list[Any]:
    lock = factory()
    not_empty, not_full = ORIG_CONDITION(lock), ORIG_CONDITION(lock)
    buf: deque[int] = deque()
    out: list[Any] = []

    def producer() -> None:
        for i in range(n):
            with not_full:
                if not not_full.wait_for(lambda: len(buf) < capacity, BOUND):
                    out.append("producer timed out")
                    return
                buf.append(i)
                not_empty.notify()

    def consumer() -> None:
        for _ in range(n):
            with not_empty:
                if not not_empty.wait_for(lambda: buf, BOUND):
                    out.append("consumer timed out")
                    return
                out.append(buf.popleft())
                not_full.notify()

    threads = [start(consumer, name="consumer"), start(producer, name="producer")]
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    if isinstance(lock, TRACKED_LOCKS):
        assert_free_bookkeeping(lock)
    return out


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_condition_producer_consumer_matches(kind: str) -> None:
    original, tracked = PAIRS[kind]
    expected = produce_consume(original)
    assert expected == list(range(300))
    assert produce_consume(tracked) == expected


# -- Semaphore and BoundedSemaphore ------------------------------------------
SEM_ARGS: list[tuple[str, tuple[Any, ...], dict[str, Any], bool]] = [
    ("no-args", (), {}, True),
    ("True", (True,), {}, True),
    ("False", (False,), {}, False),
    ("0", (0,), {}, False),
    ("None", (None,), {}, False),
    ("BadBool", (BadBool(),), {}, False),
    ("False,None", (False, None), {}, False),
    ("False,1", (False, 1), {}, False),
    ("False,0", (False, 0), {}, False),
    ("False,-1", (False, -1), {}, False),
    ("0,short", (0, SHORT), {}, False),
    ("True,None", (True, None), {}, True),
    ("True,0", (True, 0), {}, False),
    ("True,0.0", (True, 0.0), {}, False),
    ("True,-1", (True, -1), {}, False),
    ("True,-0.5", (True, -0.5), {}, False),
    ("True,short", (True, SHORT), {}, False),
    ("True,sliced", (True, SLICED), {}, False),
    ("'x',short", ("x", SHORT), {}, False),
    ("True,1e300", (True, 1e300), {}, False),
    ("True,inf", (True, float("inf")), {}, False),
    ("True,2*TIMEOUT_MAX", (True, 2 * threading.TIMEOUT_MAX), {}, False),
    ("True,10**30", (True, 10**30), {}, False),
    ("True,10**400", (True, 10**400), {}, False),
    ("True,'x'", (True, "x"), {}, False),
    ("True,Fraction", (True, fractions.Fraction(1, 20)), {}, False),
    ("True,Decimal", (True, decimal.Decimal("0.05")), {}, False),
    ("True,nan", (True, float("nan")), {}, True),  # the original spins for ever
    ("blocking=False", (), {"blocking": False}, False),
    ("timeout=0", (), {"timeout": 0}, False),
    ("timeout=short", (), {"timeout": SHORT}, False),
    ("timeout=1e300", (), {"timeout": 1e300}, False),
    ("blocking=False,timeout=1", (), {"blocking": False, "timeout": 1}, False),
]


def _sem_params() -> list[Any]:
    params = []
    for kind in SEM_KINDS:
        for value in (1, 0):
            for name, args, kwargs, forever in SEM_ARGS:
                if forever and value == 0:
                    continue
                params.append(pytest.param(kind, value, args, kwargs, id=f"{kind}-{value}-{name}"))
    return params


def make_sem(factory: Factory, value: int) -> Any:
    """A semaphore with ``value`` units left, made so that a release always fits."""
    sem = factory(1)
    if value == 0:
        sem.acquire()
    return sem


def sem_acquire_transcript(
    sem: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Outcome]:
    result = outcome(lambda: sem.acquire(*args, **kwargs))
    log = [result, ("value", sem._value)]
    if returned_true(result):
        log.append(outcome(sem.release))
        log.append(("value", sem._value))
    log.append(outcome(lambda: sem.acquire(False)))
    if isinstance(sem, TRACKED_SEMS):
        # This thread holds exactly the unit its last acquire took, if any.
        mine = 1 if log[-1] == ("returned", bool, True) else 0
        assert sem._dw_units.get(my_record(), 0) == mine
    return log


@pytest.mark.parametrize(("kind", "value", "args", "kwargs"), _sem_params())
def test_semaphore_acquire_arguments_match(
    kind: str, value: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    original, tracked = PAIRS[kind]
    results = []
    for sem in (make_sem(original, value), make_sem(tracked, value)):
        results.append(
            in_thread(partial(sem_acquire_transcript, sem, args, kwargs), unblock=sem.release)
        )
    expected, got = results
    assert got == expected


@pytest.mark.parametrize("timeout", [1e300, float("inf"), 2 * threading.TIMEOUT_MAX, 10**400])
@pytest.mark.parametrize("kind", SEM_KINDS)
def test_semaphore_oversized_timeout_raises_instead_of_waiting(kind: str, timeout: float) -> None:
    # The original's Condition.wait hands the timeout to a raw lock, which
    # rejects it at once; the tracked wait must not slice it into a wait
    # that never ends.
    original, tracked = PAIRS[kind]
    orig = original(1)
    orig.acquire()
    expected = outcome(lambda: orig.acquire(True, timeout))
    assert expected[:2] == ("raised", OverflowError)
    sem = tracked(1)
    sem.acquire()
    got = in_thread(lambda: outcome(lambda: sem.acquire(timeout=timeout)), unblock=sem.release)
    assert got == expected


@pytest.mark.parametrize("timeout", [SHORT, SLICED])
@pytest.mark.parametrize("kind", SEM_KINDS)
@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_semaphore_timed_acquire_times_out(kind: str, tracked: bool, timeout: float) -> None:
    sem = PAIRS[kind][tracked](0)
    t0 = time.monotonic()
    assert sem.acquire(timeout=timeout) is False
    assert timeout * 0.8 <= time.monotonic() - t0 < BOUND
    t0 = time.monotonic()
    assert sem.acquire(True, 0) is False
    assert sem.acquire(False) is False
    assert time.monotonic() - t0 < SHORT
    assert sem._value == 0


@pytest.mark.parametrize("kind", SEM_KINDS)
@pytest.mark.parametrize("tracked", [False, True], ids=["original", "tracked"])
def test_semaphore_wait_is_ended_by_a_release(kind: str, tracked: bool) -> None:
    sem = PAIRS[kind][tracked](1)
    assert sem.acquire()
    ready = threading.Event()
    results: list[Any] = []

    def waiter() -> None:
        ready.set()
        results.append(sem.acquire(timeout=BOUND))
        results.append(sem._value)
        sem.release()

    t = start(waiter, name="waiter")
    assert ready.wait(BOUND)
    if tracked:
        until(lambda: is_blocked(t.ident), "the waiter to block")
    sem.release()
    t.join(BOUND)
    assert not t.is_alive()
    assert results == [True, 0]
    assert sem._value == 1
    if tracked:
        assert_free_bookkeeping(sem)


def sem_release_transcript(factory: Factory) -> list[Outcome]:
    sem = factory(2)
    log = [
        outcome(sem.acquire),
        outcome(sem.acquire),
        outcome(lambda: sem.acquire(False)),
        ("value", sem._value),
        outcome(lambda: sem.release(0)),
        outcome(lambda: sem.release(-1)),
        outcome(lambda: sem.release("x")),
        ("value", sem._value),
        outcome(lambda: sem.release(2)),
        ("value", sem._value),
        outcome(sem.release),  # over-release: ValueError only when bounded
        ("value", sem._value),
        outcome(lambda: sem.release(5)),
        ("value", sem._value),
        outcome(lambda: sem.release(n=1)),
        ("value", sem._value),
    ]
    with sem as entered:
        log.append(("entered", type(entered), entered))
        log.append(("value", sem._value))
    log.append(("value", sem._value))
    log.append(outcome(sem.__enter__))
    log.append(outcome(lambda: sem.__exit__(None, None, None)))
    log.append(("value", sem._value))
    return log


@pytest.mark.parametrize("kind", SEM_KINDS)
def test_semaphore_counts_and_release_match(kind: str) -> None:
    original, tracked = PAIRS[kind]
    expected = sem_release_transcript(original)
    assert sem_release_transcript(tracked) == expected
    assert ("raised", ValueError, "n must be one or more") in expected
    if kind == "BoundedSemaphore":
        assert ("raised", ValueError, "Semaphore released too many times") in expected


@pytest.mark.parametrize("kind", SEM_KINDS)
def test_semaphore_constructor_matches(kind: str) -> None:
    original, tracked = PAIRS[kind]

    def transcript(factory: Factory) -> list[Outcome]:
        def made(*args: Any, **kwargs: Any) -> Outcome:
            def make() -> tuple[Any, Any]:
                sem = factory(*args, **kwargs)
                return sem._value, getattr(sem, "_initial_value", None)

            return outcome(make)

        return [
            made(),
            made(0),
            made(3),
            made(value=4),
            made(1.5),
            made(-1),
            made(value=-5),
            made("x"),
            made(None),
        ]

    expected = transcript(original)
    assert transcript(tracked) == expected
    assert ("raised", ValueError, "semaphore initial value must be >= 0") in expected


def test_semaphore_tracks_units_per_thread() -> None:
    sem = TrackedBoundedSemaphore(3)
    rec = my_record()
    assert sem.acquire()
    with sem:
        assert sem._dw_units == {rec: 2}
        assert sum(h is sem for h in rec.held) == 2
    assert sem._dw_units == {rec: 1}
    sem.release()
    assert_free_bookkeeping(sem)
    assert sem._value == 3


@pytest.mark.parametrize("kind", SEM_KINDS)
def test_signal_semaphore_units_belong_to_nobody(kind: str) -> None:
    """A semaphore released by a thread that holds no unit is a signal: a
    consumer that only ever takes piles up no held entries."""
    tracked = PAIRS[kind][1]
    sem = tracked(1)
    rec = my_record()
    assert sem.acquire()
    assert sem._dw_units == {rec: 1}
    released = threading.Event()

    def producer() -> None:
        for _ in range(500):
            sem.release()  # this thread holds no unit: a signal
        released.set()

    sem._initial_value = 1000  # BoundedSemaphore: room for the producer's units
    t = start(producer)
    assert released.wait(BOUND)
    t.join(BOUND)
    # The unit taken before the first signal is forgotten too.
    assert sem._dw_units == {} and sem not in rec.held
    for _ in range(500):
        assert sem.acquire(timeout=BOUND)
    assert sem._dw_units == {} and sem not in rec.held
    assert sem._dw_holders() == [] and not sem._dw_owner_bound()
    assert sem._value == 0


# -- the rest of the surface ------------------------------------------------
PROTOCOL_NAMES = [
    "acquire",
    "release",
    "locked",
    "acquire_lock",
    "release_lock",
    "locked_lock",
    "__enter__",
    "__exit__",
    "_at_fork_reinit",
    "_is_owned",
    "_release_save",
    "_acquire_restore",
    "_recursion_count",
]


@pytest.mark.parametrize("kind", list(PAIRS))
def test_attribute_surface_matches(kind: str) -> None:
    original, tracked = PAIRS[kind]
    orig, trk = original(), tracked()
    missing = {n for n in dir(orig) if not n.startswith("__")} - set(dir(trk))
    assert not missing
    for name in PROTOCOL_NAMES:
        assert hasattr(trk, name) == hasattr(orig, name), name


@pytest.mark.parametrize("kind", list(PAIRS))
def test_copy_pickle_weakref_match(kind: str) -> None:
    original, tracked = PAIRS[kind]

    def transcript(obj: Any) -> list[Outcome]:
        log = [
            outcome(lambda: pickle.dumps(obj)),
            outcome(lambda: copy.deepcopy(obj)),
            outcome(lambda: weakref.ref(obj)() is obj),
            outcome(lambda: bool(obj)),
            outcome(lambda: obj == obj),
        ]
        if kind in LOCK_KINDS:
            # A copy of a lock would share the raw lock: both refuse.
            log.append(outcome(lambda: copy.copy(obj)))
        return log

    expected = transcript(original())
    assert transcript(tracked()) == expected
    assert expected[0][:2] == ("raised", TypeError)


# -- threading's factories while enabled ---------------------------------------
@pytest.fixture
def enabled() -> Iterator[None]:
    deadlockwatch.enable()
    try:
        yield
    finally:
        deadlockwatch.disable()


def test_factories_return_tracked_objects_while_enabled(enabled: None) -> None:
    assert kind_of(threading.Lock()) is TrackedLock
    assert kind_of(threading.RLock()) is TrackedRLock
    sem = threading.Semaphore(2)
    bounded: Any = threading.BoundedSemaphore(value=2)
    assert kind_of(sem) is TrackedSemaphore
    assert kind_of(bounded) is TrackedBoundedSemaphore
    assert isinstance(sem, threading.Semaphore)
    assert isinstance(bounded, threading.Semaphore)
    assert isinstance(bounded, threading.BoundedSemaphore)
    assert not isinstance(sem, threading.BoundedSemaphore)
    assert isinstance(sem, ORIG_SEMAPHORE)
    assert isinstance(bounded, ORIG_BOUNDED)
    assert issubclass(TrackedBoundedSemaphore, ORIG_BOUNDED)
    assert sem._value == 2 and bounded._initial_value == 2


def test_factory_argument_errors_match_while_enabled(enabled: None) -> None:
    th: Any = threading  # names looked up at call time, patched or not
    calls: list[Callable[[], object]] = [
        lambda: th.Lock(1),
        lambda: th.Lock(blocking=True),
        lambda: th.Semaphore(-1),
        lambda: th.Semaphore(foo=1),
        lambda: th.Semaphore(1, 2),
        lambda: th.Semaphore("x"),
        lambda: th.BoundedSemaphore(1, 2),
        lambda: th.BoundedSemaphore(value=-1),
        lambda: type(th.RLock(1)),  # the original, untracked: it takes arguments
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # RLock(1) on 3.13+
        got = [outcome(call) for call in calls]
        deadlockwatch.disable()
        expected = [outcome(call) for call in calls]
    assert got == expected
    assert got[-1] == ("returned", type, type(ORIG_RLOCK()))


def test_disable_restores_the_originals_and_tracked_objects_keep_working() -> None:
    deadlockwatch.enable()
    try:
        lock, rlock = threading.Lock(), threading.RLock()
        sem, bounded = threading.Semaphore(1), threading.BoundedSemaphore(1)
        cond, event = threading.Condition(), threading.Event()
    finally:
        deadlockwatch.disable()
    assert threading.Lock is _native.ORIGINAL_LOCK
    assert threading.RLock is _native.ORIGINAL_RLOCK
    assert threading.Semaphore is _native.ORIGINAL_SEMAPHORE
    assert threading.BoundedSemaphore is _native.ORIGINAL_BOUNDED_SEMAPHORE
    assert threading.Condition is _native.ORIGINAL_CONDITION
    assert kind_of(threading.Lock()) is type(ORIG_LOCK())
    assert kind_of(threading.Semaphore()) is ORIG_SEMAPHORE
    assert kind_of(lock) is TrackedLock and kind_of(rlock) is TrackedRLock

    # Tracked objects made while enabled still work, contended ones included.
    for obj in (lock, rlock, sem, bounded):
        with held_by_other(obj):
            t0 = time.monotonic()
            assert obj.acquire(timeout=SHORT) is False
            assert time.monotonic() - t0 >= SHORT * 0.8
        assert obj.acquire(timeout=BOUND) is True
        obj.release()
        assert_free_bookkeeping(obj)
    assert outcome(bounded.release) == ("raised", ValueError, "Semaphore released too many times")
    assert outcome(lock.release) == ("raised", RuntimeError, "release unlocked lock")

    ready = threading.Event()
    woken: list[bool] = []

    def waiter() -> None:
        with cond:
            ready.set()
            woken.append(cond.wait(BOUND))
        woken.append(event.wait(BOUND))

    t = start(waiter, name="waiter")
    assert ready.wait(BOUND)
    with cond:
        cond.notify()
    event.set()
    t.join(BOUND)
    assert not t.is_alive()
    assert woken == [True, True]


def test_isinstance_of_threading_lock_matches(enabled: None) -> None:
    th: Any = threading
    got = outcome(lambda: isinstance(th.Lock(), th.Lock))
    deadlockwatch.disable()
    expected = outcome(lambda: isinstance(th.Lock(), th.Lock))
    assert got == expected


@pytest.mark.parametrize("name", list(PAIRS))
def test_factories_copy_and_pickle_as_themselves_while_enabled(enabled: None, name: str) -> None:
    """As the originals (functions or classes): a copy is the factory itself, and a
    pickle is a reference by name (multiprocessing's managers pickle them)."""
    factory = getattr(threading, name)
    assert copy.copy(factory) is factory
    assert copy.deepcopy({"f": [factory]})["f"][0] is factory
    streams = [pickle.dumps(factory, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    for stream in streams:
        assert pickle.loads(stream) is factory
        assert b"deadlockwatch" not in stream
    deadlockwatch.disable()
    # Loaded where the detector is off: the original.
    original = getattr(threading, name)
    assert original is not factory
    assert all(pickle.loads(stream) is original for stream in streams)


def test_subclasses_of_the_original_semaphores_work_while_enabled(enabled: None) -> None:
    class MySemaphore(threading.Semaphore):
        pass

    s = MySemaphore(2)
    assert isinstance(s, ORIG_SEMAPHORE)
    assert s.acquire() and s._value == 1
    s.release()
    # threading's own factory is unharmed by that.
    assert kind_of(threading.Semaphore(1)) is TrackedSemaphore


def test_original_bounded_semaphore_made_while_enabled(enabled: None) -> None:
    # e.g. a name bound by ``from threading import BoundedSemaphore`` before enable()
    b = ORIG_BOUNDED(2)
    assert b._value == 2
    assert b.acquire() and b._value == 1
    b.release()
    assert kind_of(threading.Semaphore(1)) is TrackedSemaphore


@pytest.mark.parametrize("value", ["x", None])
def test_bounded_semaphore_value_error_while_enabled(enabled: None, value: Any) -> None:
    # TrackedBoundedSemaphore rejects the value with TypeError, so the
    # factory asks the original for its own error.
    got = outcome(lambda: threading.BoundedSemaphore(value))
    deadlockwatch.disable()
    expected = outcome(lambda: threading.BoundedSemaphore(value))
    assert expected[:2] == ("raised", TypeError)
    assert got == expected


def test_condition_made_while_enabled(enabled: None) -> None:
    cond = threading.Condition()
    assert kind_of(cond._lock) is TrackedRLock  # type: ignore[attr-defined]
    on_lock = threading.Condition(threading.Lock())
    assert kind_of(on_lock._lock) is TrackedLock  # type: ignore[attr-defined]
    for c in (cond, on_lock):
        ready = threading.Event()
        results: list[Any] = []

        def waiter(
            c: threading.Condition = c,
            ready: threading.Event = ready,
            results: list[Any] = results,
        ) -> None:
            with c:
                ready.set()
                results.append(c.wait_for(lambda: "go" in results, BOUND))

        t = start(waiter, name="waiter")
        assert ready.wait(BOUND)
        with c:
            assert_not_held_by(record_of(t), c._lock)  # type: ignore[attr-defined]
            results.append("go")
            c.notify_all()
        t.join(BOUND)
        assert not t.is_alive()
        assert results == ["go", True]
        with c:
            assert c.wait(SHORT) is False
        assert_free_bookkeeping(c._lock)  # type: ignore[attr-defined]


def test_event_made_while_enabled(enabled: None) -> None:
    event = threading.Event()
    assert kind_of(event._cond._lock) is TrackedLock  # type: ignore[attr-defined]
    assert event.wait(0) is False
    t0 = time.monotonic()
    assert event.wait(SHORT) is False
    assert time.monotonic() - t0 >= SHORT * 0.8
    ready = threading.Event()
    results: list[bool] = []

    def waiter() -> None:
        ready.set()
        results.append(event.wait(BOUND))

    t = start(waiter, name="waiter")
    assert ready.wait(BOUND)
    event.set()
    t.join(BOUND)
    assert not t.is_alive()
    assert results == [True] and event.is_set()
    event.clear()
    assert not event.is_set() and event.wait(0) is False


def test_barrier_made_while_enabled(enabled: None) -> None:
    n = 3
    barrier = threading.Barrier(n)
    assert kind_of(barrier._cond._lock) is TrackedLock  # type: ignore[attr-defined]
    indices: list[int] = []
    threads = [
        start(lambda: indices.append(barrier.wait(BOUND)), name=f"party-{i}") for i in range(n)
    ]
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    assert sorted(indices) == list(range(n))
    lonely = threading.Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        lonely.wait(SHORT)
    assert lonely.broken


def test_queue_made_while_enabled(enabled: None) -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=2)
    assert kind_of(q.mutex) is TrackedLock
    with pytest.raises(queue.Empty):
        q.get(timeout=SHORT)
    n = 200
    got: list[int] = []

    def consumer() -> None:
        for _ in range(n):
            got.append(q.get(timeout=BOUND))
            q.task_done()

    t = start(consumer, name="consumer")
    for i in range(n):
        q.put(i, timeout=BOUND)
    t.join(BOUND)
    assert not t.is_alive()
    assert got == list(range(n))
    assert q.unfinished_tasks == 0
    q.put(1)
    q.put(2)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=SHORT)
    assert time.monotonic() - t0 >= SHORT * 0.8
    assert_free_bookkeeping(q.mutex)


def test_semaphore_made_while_enabled_works_across_threads(enabled: None) -> None:
    sem = threading.Semaphore(0)
    ready = threading.Event()
    results: list[bool] = []

    def waiter() -> None:
        ready.set()
        results.append(sem.acquire(timeout=BOUND))
        sem.release()

    t = start(waiter, name="waiter")
    assert ready.wait(BOUND)
    sem.release()
    t.join(BOUND)
    assert not t.is_alive()
    assert results == [True]
    assert_free_bookkeeping(sem)


# -- repr ----------------------------------------------------------------------
def site_here(offset: int, function: str) -> str:
    """The Site text of the caller's line plus ``offset``."""
    frame = sys._getframe(1)
    return str(Site(__file__, frame.f_lineno + offset, function))


def test_lock_repr() -> None:
    created = site_here(1, "test_lock_repr")
    lock = TrackedLock()
    text = repr(lock)
    assert text.startswith("<unlocked deadlockwatch.TrackedLock object (tracked; created at ")
    assert f"created at {created}" in text
    assert text.endswith(f" at {hex(id(lock))}>")
    assert re.fullmatch("<unlocked .* object (.*)?at .*>", text)  # CPython's lock_tests
    me = threading.current_thread()
    taken = site_here(1, "test_lock_repr")
    with lock:
        text = repr(lock)
    assert text.startswith(
        f"<locked deadlockwatch.TrackedLock object (tracked; held by {me.name!r} (ident {me.ident})"
    )
    assert f" since {taken}" in text and f"created at {created}" in text
    assert re.fullmatch("<locked .* object (.*)?at .*>", text)
    assert repr(lock).startswith("<unlocked ")
    with held_by_other(lock, name="holder-thread") as holder:
        text = repr(lock)
    assert f" by 'holder-thread' (ident {holder.ident}) since " in text
    assert "in hold" in text  # taken in the holder's function


def test_rlock_repr() -> None:
    created = site_here(1, "test_rlock_repr")
    lock = TrackedRLock()
    assert repr(lock).startswith(
        "<unlocked deadlockwatch.TrackedRLock object owner=0 count=0 (tracked; created at "
    )
    assert f"created at {created}" in repr(lock)
    me = threading.current_thread()
    taken = site_here(1, "test_rlock_repr")
    with lock, lock:
        text = repr(lock)
    assert text.startswith(
        f"<locked deadlockwatch.TrackedRLock object owner={me.ident} count=2 "
        f"(tracked; held by {me.name!r} (ident {me.ident}) since {taken}"
    )
    assert re.fullmatch("<locked .* object (.*)?at .*>", text)
    assert repr(lock).startswith("<unlocked ")


@pytest.mark.parametrize("kind", SEM_KINDS)
def test_semaphore_repr(kind: str) -> None:
    created = site_here(1, "test_semaphore_repr")
    sem = PAIRS[kind][1](2)
    value = "{}/2" if kind == "BoundedSemaphore" else "{}"
    text = repr(sem)
    assert text == (
        f"<deadlockwatch.{kind} at {hex(id(sem))} (tracked; created at {created}): "
        f"value={value.format(2)}>"
    )
    me = threading.current_thread().name
    with sem:
        text = repr(sem)
    assert f"(tracked; held by {me!r}x1; created at " in text
    # The shape CPython's own lock_tests expect (3.11+).
    assert re.fullmatch(rf"<\w+\.{kind} at .*: value={value.format(1)}>", text)


def test_repr_of_objects_made_through_threading_names_the_caller(enabled: None) -> None:
    created = site_here(1, "test_repr_of_objects_made_through_threading_names_the_caller")
    objs = [threading.Lock(), threading.RLock(), threading.Semaphore(), threading.Condition()]
    cond = objs.pop()
    objs.append(cond._lock)  # type: ignore[attr-defined]
    for obj in objs:
        assert "(tracked" in repr(obj)
        assert f"created at {created}" in repr(obj), repr(obj)


@pytest.mark.parametrize("tracked", [0, 1], ids=["original", "tracked"])
@pytest.mark.parametrize("kind", SEM_KINDS)
def test_semaphore_release_wakes_a_blocked_acquire_itself(kind: str, tracked: int) -> None:
    """A release hands its unit to a blocked acquire by notifying it, as the
    original does: the waiter has left the Condition's waiters when
    ``release()`` returns (a tracked wait is sliced, so without the notify it
    would still be taken later: a release that forgets it is otherwise
    invisible)."""
    sem = PAIRS[kind][tracked](1)
    sem.acquire()
    cond: Any = sem._cond  # type: ignore[attr-defined]
    t = start(lambda: sem.acquire(timeout=BOUND))
    deadline = time.monotonic() + BOUND
    while not cond._waiters:
        assert time.monotonic() < deadline, "the second acquire never blocked"
        time.sleep(0.001)
    sem.release()
    assert not cond._waiters
    t.join(BOUND)
    assert not t.is_alive()
    sem.release()


def test_tracked_lock_classes_name_the_module_of_the_raw_ones() -> None:
    """trio's entry queue asserts ``self.lock.__class__.__module__ == "_thread"``
    of the RLock it makes, to be sure it has the C lock; with the detector on
    (anyio's trio test runner under ``pytest --deadlockwatch``) that assertion
    failed inside trio, and the test runner's queue was never fed.  The
    tracked classes name ``_thread``, as the raw ones do; their own names and
    reprs still say what they are."""
    from deadlockwatch._track.primitives import PURE_LOCK, PURE_RLOCK

    deadlockwatch.enable()
    try:
        made = [threading.Lock(), threading.RLock()]
    finally:
        deadlockwatch.disable()
    assert [type(x) for x in made] == [TrackedLock, TrackedRLock]  # tracked at all
    raw = [ORIG_LOCK(), ORIG_RLOCK()]
    for tracked, original in zip([*made, PURE_LOCK(), PURE_RLOCK()], raw + raw, strict=True):
        assert type(tracked).__module__ == type(original).__module__ == "_thread"
        assert type(tracked).__name__.startswith("Tracked")
        assert "deadlockwatch.Tracked" in repr(tracked)
