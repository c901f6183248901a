"""Real deadlocks between live threads, detected and broken (``on_deadlock="raise"``).

Every interleaving is forced with a Barrier; every thread is a daemon; every
join is bounded.  A thread that gets DeadlockError leaves its ``with`` blocks,
which releases what it holds and lets the others finish.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _programs import blocked_waits, lock_cycle, run_program, until, wait_blocked, wait_watched
from conftest import BOUND, Watch, start

import deadlockwatch
from deadlockwatch import DeadlockError
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR


def _cycle(n: int, kind: str = "Lock") -> tuple[dict[str, str], list[Any]]:
    """n threads; thread i holds lock i and then wants lock i+1 (mod n)."""
    locks = [getattr(threading, kind)() for _ in range(n)]
    barrier = threading.Barrier(n)
    outcome: dict[str, str] = {}

    def worker(i: int) -> None:
        name = threading.current_thread().name
        try:
            with locks[i]:
                barrier.wait(BOUND)
                with locks[(i + 1) % n]:
                    outcome[name] = "done"
        except DeadlockError:
            outcome[name] = "DeadlockError"

    threads = [start(worker, i, name=f"worker-{i}") for i in range(n)]
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads), "deadlock was not broken"
    return outcome, locks


@pytest.mark.parametrize("n", [2, 3, 4])
def test_lock_cycle_is_found_and_broken(detector: Watch, n: int) -> None:
    outcome, _locks = _cycle(n)
    assert sorted(outcome.values()) == ["DeadlockError"] + ["done"] * (n - 1)
    deadlocks = [f for f in detector.findings if f.kind == "deadlock"]
    assert len(deadlocks) == 1
    f = deadlocks[0]
    assert len(f.cycle) == n
    assert {f.thread_label(s.thread) for s in f.cycle} == {f"worker-{i}" for i in range(n)}
    for i, step in enumerate(f.cycle):
        assert step.held_by == f.cycle[(i + 1) % n].thread
    assert f.conditions.all_hold()
    # Each thread holds one lock and waits for the next one; stacks end in this file.
    for t in f.threads:
        assert t.wait is not None and len(t.held) == 1
        assert t.stack and t.stack[-1].file == __file__
        assert t.stack[-1].code == "with locks[(i + 1) % n]:"
    assert all(r.created_at and r.created_at.file == __file__ for r in f.resources)


def test_rlock_cycle(detector: Watch) -> None:
    outcome, _ = _cycle(2, "RLock")
    assert sorted(outcome.values()) == ["DeadlockError", "done"]
    (f,) = [f for f in detector.findings if f.kind == "deadlock"]
    assert {r.type for r in f.resources} == {"RLock"}


def test_rlock_reentry_is_not_a_deadlock(detector: Watch) -> None:
    r = threading.RLock()
    with r, r, r:
        assert r._is_owned()  # type: ignore[attr-defined]
    assert deadlockwatch.check() == []
    assert detector.findings == []


def test_self_deadlock_in_with_block_is_reported_at_the_acquire() -> None:
    # A watcher that never ticks: only the acquire itself can report this.
    deadlockwatch.enable(interval=3600, on_deadlock="raise")
    try:
        lock = threading.Lock()
        with lock, pytest.raises(DeadlockError) as info:
            lock.acquire()
        f = info.value.finding
        assert f.kind == "deadlock"
        assert len(f.cycle) == 1 and f.cycle[0].held_by == f.cycle[0].thread
        assert "which it holds itself" in f.cause
        assert f.conditions.all_hold()
        assert not lock.locked()
    finally:
        deadlockwatch.disable()


def test_non_blocking_and_timed_self_acquire_are_not_reported(detector: Watch) -> None:
    """A timed self-acquire blocks nobody else: no deadlock, and no warning either."""
    lock = threading.Lock()
    with lock:
        assert lock.acquire(False) is False
        assert lock.acquire(timeout=0.3) is False
    assert detector.findings == []


# -- not a deadlock, and the same program without its rescue ---------------------
# Each program blocks threads in untimed waits (a timed wait always counts as
# progress, and would hide a broken rule).  With $RESCUE=1 a rescuer thread
# waits until the waiters are blocked and the watcher has looked twice
# (`wait_watched`), then rescues them: nothing may be reported.  Without it
# (the control), the same program is a deadlock, reported and broken.  They
# run in a subprocess with a watchdog: a broken detector fails, never hangs.
NOT_A_DEADLOCK = {
    # acquire(); another thread releases; acquire() again: a legal latch.
    "latch_released_by_another_thread": """
        def program():
            latch = threading.Lock()
            def waiter():
                latch.acquire()
                latch.acquire()  # untimed: another thread opens the latch
                latch.release()
            w = spawn(waiter, "waiter")
            rescue(latch.release, w)
            join(w)
        program()
    """,
    # The holder of the only unit waits for an Event the rescuer sets.
    "semaphore_with_a_holder_that_can_progress": """
        def program():
            pool = threading.BoundedSemaphore(1)
            taken, go = threading.Event(), threading.Event()
            def holder():
                with pool:
                    taken.set()
                    go.wait()  # untimed: the rescuer sets it
            def waiter():
                with pool:
                    pass
            h = spawn(holder, "holder")
            taken.wait()
            w = spawn(waiter, "waiter")
            rescue(go.set, h, w)
            join(w, h)
        program()
    """,
    # The holder runs on (in no tracked wait) for as long as it likes; in the
    # control it stops running: it waits for an Event nobody sets.
    "long_held_lock": """
        def program():
            lock = threading.Lock()
            taken, never = threading.Event(), threading.Event()
            stop = []
            def holder():
                with lock:
                    taken.set()
                    while not stop:
                        if not RESCUE:
                            never.wait()
                        time.sleep(0.002)
            def waiter():
                with lock:
                    pass
            h = spawn(holder, "holder")
            taken.wait()
            w = spawn(waiter, "waiter")
            rescue(lambda: stop.append(1), w)
            join(w, h)
        program()
    """,
    # t1 takes `token` (a lock handed between threads) and waits for `guard`,
    # held by t2, which waits for `token`: a cycle only if `token` were owned
    # by t1.  The rescuer, which runs, releases it.
    "handed_off_lock": """
        def program():
            token, guard = threading.Lock(), threading.Lock()
            token.acquire()
            t = threading.Thread(target=token.release)  # teaches: handed over
            t.start(); t.join()
            handed = threading.Event()
            def t1():
                token.acquire()
                handed.set()
                with guard:
                    pass
            def t2():
                with guard:
                    handed.wait()
                    token.acquire()
            g = spawn(t2, "t2")
            wait_blocked(g)
            f = spawn(t1, "t1")
            rescue(token.release, f, g)
            join(f, g)
        program()
    """,
    # The main thread, holding `lock`, waits for an Event that only a Python
    # signal handler sets; the handler reaches it through a weak reference,
    # which the walk of who can reach it does not follow: the rule is that the
    # main thread waiting on a signal with a handler installed can be woken
    # (`snap.wakeable`).  The rescuer sends the signal; in the control no
    # handler is installed and nothing is sent.
    "main_woken_by_a_signal_handler": """
        import signal, weakref
        def program():
            lock, ready = threading.Lock(), threading.Event()
            if RESCUE:
                ref = weakref.ref(ready)
                signal.signal(signal.SIGUSR1, lambda *a: ref().set())
            def blocker():
                with lock:
                    pass
            with lock:
                b = spawn(blocker, "blocker")
                wait_blocked(b)
                rescue(lambda: os.kill(os.getpid(), signal.SIGUSR1), threading.main_thread(), b)
                try:
                    ready.wait()  # untimed: only the handler sets it
                except DeadlockError:
                    outcome["main"] = "DeadlockError"
            join(b)
        program()
    """,
}


@pytest.mark.parametrize("case", sorted(NOT_A_DEADLOCK))
def test_not_a_deadlock(tmp_path: Path, case: str) -> None:
    out, findings = run_program(tmp_path, NOT_A_DEADLOCK[case], env={"RESCUE": "1"})
    assert findings == []
    assert "DeadlockError" not in out
    assert out.strip().startswith("[(") and "'done'" in out


@pytest.mark.parametrize("case", sorted(NOT_A_DEADLOCK))
def test_not_a_deadlock_control_without_the_rescue_is_reported(tmp_path: Path, case: str) -> None:
    out, findings = run_program(tmp_path, NOT_A_DEADLOCK[case], env={"RESCUE": "0"})
    assert [f["kind"] for f in findings] == ["deadlock"], out
    assert "DeadlockError" in out


def test_semaphore_pool_exhaustion(detector: Watch) -> None:
    pool = threading.Semaphore(2)
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def worker() -> None:
        name = threading.current_thread().name
        try:
            with pool:
                barrier.wait(BOUND)
                with pool:
                    outcome[name] = "done"
        except DeadlockError:
            outcome[name] = "DeadlockError"

    threads = [start(worker, name=f"client-{i}") for i in range(2)]
    for t in threads:
        t.join(BOUND)
    assert sorted(outcome.values()) == ["DeadlockError", "done"]
    (f,) = detector.findings
    assert f.kind == "deadlock"
    assert "every unit" in f.cause and "'client-0'" in f.cause and "'client-1'" in f.cause
    assert {r.type for r in f.resources} == {"Semaphore"}
    assert all(len(s.holders) == 2 for s in f.cycle)


def test_a_deadlock_in_the_addresses_of_waits_already_looked_at_is_found(
    detector: Watch,
) -> None:
    """A wait's token is its record's id, and a record freed as its wait ends
    gives its address to the next: two threads, each holding a Lock, wait on
    a Lock the main thread holds (it runs: no deadlock), the watcher looks and
    finds nothing; released, they take each other's Lock, and the two new
    waits often have the two old ones' addresses (3.10 to 3.12; not with
    3.13's allocator).  The watcher skips the waits it has looked at, so a
    skip by ids alone took this deadlock for them and never reported it (the
    3.12 CI hang of stop 28: a pytest-asyncio test's tasks in the last test's
    waits' addresses).  Rounds until one reuses the addresses (5 at most),
    each reported."""
    deadlockwatch.disable()  # again without lock orders: the inversion is not tested here
    deadlockwatch.enable(interval=0.02, threshold=0.02, on_deadlock="raise", lock_order=False)
    rounds: list[bool] = []
    while len(rounds) < 5 and not any(rounds):
        rounds.append(_deadlock_in_the_addresses_of_a_quiet_look(detector, len(rounds) + 1))
    if sys.version_info < (3, 13):
        # Else the test would not test what it is for.
        assert any(rounds), "the second waits never took the first ones' addresses"


def _deadlock_in_the_addresses_of_a_quiet_look(detector: Watch, n: int) -> bool:
    """One round: the deadlock reported; whether its waits reused the addresses."""
    a, b, gate_a, gate_b = (threading.Lock() for _ in range(4))
    gate_a.acquire()
    gate_b.acquire()
    outcome: dict[str, str] = {}

    def worker(mine: Any, gate: Any, other: Any) -> None:
        name = threading.current_thread().name
        try:
            with mine:
                with gate:
                    pass
                with other:
                    outcome[name] = "done"
        except DeadlockError:
            outcome[name] = "DeadlockError"

    one = start(worker, a, gate_a, b, name="one")
    two = start(worker, b, gate_b, a, name="two")
    first = wait_blocked([one, two])
    wait_watched(3, of=[one, two])  # looked at, nothing found
    old = {id(w): w.since for w in first}
    del first
    gate_a.release()
    gate_b.release()

    def blocked_anew() -> bool:
        now = [w for w in blocked_waits().values() if w.rec.ident in (one.ident, two.ident)]
        return len(now) == 2 and not {w.since for w in now} & set(old.values())

    until(blocked_anew, BOUND, "both blocked in their second waits")
    reused = {id(w) for w in blocked_waits().values()} == set(old)
    # Polled, not joined: a join is a wait of its own, new to the watcher.
    until(lambda: len(outcome) == 2, BOUND, f"the deadlock broken (addresses reused: {reused})")
    for t in (one, two):
        t.join(BOUND)
    assert sorted(outcome.values()) == ["DeadlockError", "done"], (outcome, reused)
    assert [f.kind for f in detector.findings] == ["deadlock"] * n, reused
    return reused


def test_timed_cycle_is_a_warning_not_a_deadlock(detector: Watch) -> None:
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}
    seen: list[Any] = []

    def untimed() -> None:
        with a:
            barrier.wait(BOUND)
            with b:
                results["untimed"] = "done"

    def timed() -> None:
        with b:
            barrier.wait(BOUND)
            # Timed takes, again until the watcher has reported (a state, not
            # a duration: under CI's load on 3.10, 0.5 s takes, even repeated
            # for 10 s, ended before the watcher had confirmed one), each
            # twice as long as the last: 0.5, 1, 2, 4 s.
            timeout = 0.5
            got = a.acquire(timeout=timeout)
            while not got and not detector.findings and timeout < 4:
                # What the watcher was doing, for a failure's message (the
                # 3.10 CI failures of stops 27 and 28 are not understood).
                seen.append((timeout, DETECTOR.watcher_ident, len(_state.blocked)))
                timeout *= 2
                got = a.acquire(timeout=timeout)
            results["timed"] = got

    threads = [start(untimed, name="untimed"), start(timed, name="timed")]
    for t in threads:
        t.join(BOUND)
    assert results == {"timed": False, "untimed": "done"}
    assert [f.kind for f in detector.findings] == ["timed-cycle"], (
        seen,
        [(w.ident, w.stop) for w in DETECTOR._watchers],
    )
    f = detector.findings[0]
    assert not f.conditions.no_preemption.holds
    assert "timeout" in f.conditions.no_preemption.reason


def test_a_cycle_of_polling_threads_is_reported_once(detector: Watch) -> None:
    """Two threads in a lock-order cycle, each polling the other's Lock with
    timed takes shorter than the threshold (``while not lock.acquire(timeout=
    0.03)``): a timed cycle that no timeout breaks.  Each take was younger than
    the threshold, so the watcher never looked; and a polling loop's token is
    not a wait record's id, so its finding counted as reported already.  Now
    one warning, saying they poll; not one per take."""
    deadlockwatch.disable()
    deadlockwatch.enable(interval=0.02, threshold=0.1, on_deadlock="raise", lock_order=False)
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    takes: dict[str, int] = {}

    def poller(mine: Any, other: Any) -> None:
        name = threading.current_thread().name
        with mine:
            barrier.wait(BOUND)
            after = count = 0
            # Until found, then 20 takes more (another report would show);
            # at most 10 s.
            while count < BOUND / 0.03 and after <= 20:
                count += 1
                if other.acquire(timeout=0.03):
                    other.release()
                    break
                after += bool(detector.findings)
            takes[name] = count

    threads = [start(poller, a, b, name="one"), start(poller, b, a, name="two")]
    # Polled, not joined: a join past the threshold would make the watcher
    # look at every wait, the short ones too.
    until(lambda: len(takes) == 2, BOUND + 5, "both pollers done")
    for t in threads:
        t.join(BOUND)
    assert [f.kind for f in detector.findings] == ["timed-cycle"], (takes, detector.findings)
    f = detector.findings[0]
    assert f.cause.endswith(
        "time out and wait again, again and again: only giving up would break the cycle"
    ), f.cause
    assert "'one' and 'two' time out" in f.cause or "'two' and 'one' time out" in f.cause
    assert not f.conditions.no_preemption.holds
    assert "polls, again and again" in f.conditions.no_preemption.reason


def test_cross_thread_release_keeps_state_correct(detector: Watch) -> None:
    lock = threading.Lock()
    lock.acquire()
    from deadlockwatch._track import state as _state

    me = _state.current_record()
    assert lock in me.held
    start(lock.release).join(BOUND)
    assert lock not in me.held
    assert not lock.locked()
    assert lock.acquire(timeout=BOUND)
    lock.release()


def test_check_and_dump_show_the_state(detector: Watch) -> None:
    lock = threading.Lock()
    taken = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with lock:
            taken.set()
            done.wait(BOUND)

    t = start(holder, name="the-holder")
    taken.wait(BOUND)
    waiter = start(lambda: lock.acquire(timeout=BOUND) and lock.release(), name="the-waiter")
    wait_blocked(waiter)
    import io

    out = io.StringIO()
    deadlockwatch.dump(out)
    text = out.getvalue()
    assert "Thread 'the-holder'" in text and "Thread 'the-waiter'" in text
    assert "holds Lock(created" in text
    assert "held by 'the-holder'" in text
    done.set()
    t.join(BOUND)
    waiter.join(BOUND)


def test_watcher_is_invisible_to_threading() -> None:
    """The watcher is a real thread, running while a thread is blocked, yet
    threading does not list it, count it, or call it the main thread."""
    import sys

    gate = threading.Event()
    main, hook = threading.main_thread(), threading.excepthook
    # What threading shows with no watcher (none runs before a wait blocks).
    listed = {t.ident for t in threading.enumerate()}
    deadlockwatch.enable(interval=0.02, threshold=0.02)
    try:
        assert DETECTOR.watcher_ident is None
        waiter = start(gate.wait, name="the-waiter")
        wait_blocked(waiter)
        wait_watched(1)
        watcher = DETECTOR.watcher_ident
        # The control: a watcher runs, a real thread with a Python frame.
        frames = sys._current_frames()
        assert watcher is not None and watcher in frames
        # Every thread listed without it still is (less any thread of an
        # earlier test that ended meanwhile), with the waiter, and not it.
        now = {t.ident for t in threading.enumerate()}
        assert watcher not in now
        assert {i for i in listed if i in frames} | {waiter.ident} <= now
        assert threading.active_count() == len(now)
        assert watcher not in threading._active  # type: ignore[attr-defined]
        assert threading.main_thread() is main and threading.excepthook is hook
        assert threading.current_thread() is main
        assert not any(t.name.startswith("deadlockwatch") for t in threading.enumerate())
    finally:
        gate.set()
        deadlockwatch.disable()
    waiter.join(BOUND)
    assert not waiter.is_alive()


def test_disable_restores_the_originals() -> None:
    from deadlockwatch._track import native as _native

    deadlockwatch.enable()
    lock = threading.Lock()
    deadlockwatch.disable()
    assert threading.Lock is _native.ORIGINAL_LOCK
    assert threading.RLock is _native.ORIGINAL_RLOCK
    assert threading.Semaphore is _native.ORIGINAL_SEMAPHORE
    assert threading.BoundedSemaphore is _native.ORIGINAL_BOUNDED_SEMAPHORE
    assert type(threading.Lock()) is not type(lock)
    with lock:
        assert lock.locked()
    assert not lock.locked()


def test_enable_twice_is_harmless() -> None:
    deadlockwatch.enable(interval=0.5)
    try:
        deadlockwatch.enable(interval=0.2)
        from deadlockwatch._watch.watcher import DETECTOR

        assert DETECTOR.config.interval == 0.2
        assert deadlockwatch.is_enabled()
    finally:
        deadlockwatch.disable()
    assert not deadlockwatch.is_enabled()
    deadlockwatch.disable()  # disabling twice too


def test_watching_context_manager() -> None:
    with deadlockwatch.watching(interval=0.5):
        assert deadlockwatch.is_enabled()
    assert not deadlockwatch.is_enabled()


def test_names_bound_while_enabled_make_untracked_locks_after_disable() -> None:
    from deadlockwatch._track import native as _native
    from deadlockwatch._track.primitives import TrackedLock

    deadlockwatch.enable()
    bound_lock = threading.Lock  # as ``from threading import Lock`` would
    assert isinstance(bound_lock(), TrackedLock)
    deadlockwatch.disable()
    made = bound_lock()
    assert not isinstance(made, TrackedLock)
    assert type(made) is type(_native.ORIGINAL_LOCK())


def test_interrupt_wins_over_a_late_success() -> None:
    """A victim whose lock comes free as the error arrives still gets the error,
    and gives back what it had just acquired."""
    from deadlockwatch._track import state as _state

    rec = _state.current_record()
    lock = threading.Lock()  # untracked here: the detector is off
    wait = _state.WaitRecord(rec, lock, None, None)
    wait.interrupt = DeadlockError.__new__(DeadlockError)

    def attempt(seconds: float) -> bool:
        return lock.acquire(timeout=seconds)

    with pytest.raises(DeadlockError):
        _state.wait_until(wait, attempt, None, lock.release)
    assert not lock.locked()
    assert rec.wait is None and rec not in _state.blocked


def test_errors_of_one_finding_are_raised_only_once_all_are_given() -> None:
    """raise-all: no victim raises while another victim's error is still to be
    set (its unwinding could end that one's wait normally: CI saw a main
    thread's ``join`` return because the joined worker unwound first); once
    they are all given, each victim raises even if its wait just succeeded."""
    from deadlockwatch._track import state as _state

    rec = _state.current_record()
    lock = threading.Lock()  # untracked here: the detector is off
    wait = _state.WaitRecord(rec, lock, None, None)
    wait.gate = [False]  # what `deliver` holds while it sets the errors
    wait.interrupt = DeadlockError.__new__(DeadlockError)
    assert _state.wait_until(wait, lambda s: lock.acquire(timeout=s), None, lock.release)
    lock.release()

    other = _state.WaitRecord(rec, lock, None, None)
    _state.deliver([(wait, DeadlockError.__new__(DeadlockError)), (other, KeyError("x"))])
    assert wait.gate is other.gate and wait.gate == [True]
    with pytest.raises(DeadlockError):
        _state.wait_until(wait, lambda s: lock.acquire(timeout=s), None, lock.release)
    assert not lock.locked()


def test_latch_released_by_a_just_started_foreign_thread(detector: Watch) -> None:
    """CPython's test_foreign_thread: the releaser is a bare _thread thread that
    may not be visible yet when the main thread blocks again."""
    import _thread

    mutex = threading.Lock()
    mutex.acquire()
    main = threading.get_ident()
    failed: list[BaseException] = []

    def foreign() -> None:
        try:
            wait_watched(2, of=main)
        except BaseException as exc:
            failed.append(exc)
        finally:
            mutex.release()

    _thread.start_new_thread(foreign, ())
    # Untimed, as in CPython's test: the foreign thread releases it once the
    # watcher has looked twice at main blocked here; a false alarm raises here.
    # (Its control, the latch nobody releases, is
    # test_not_a_deadlock_control_without_the_rescue_is_reported[latch_...].)
    assert mutex.acquire()
    mutex.release()
    assert failed == []
    assert detector.findings == []


def test_raise_all_gives_each_thread_its_own_error() -> None:
    """Each victim's traceback shows its own frames only."""
    deadlockwatch.enable(interval=0.02, threshold=0.02, on_deadlock="raise-all")
    errors: dict[str, BaseException] = {}
    try:
        a, b = threading.Lock(), threading.Lock()
        outcome = lock_cycle(a, b, names=("w1", "w2"), errors=errors)
        assert outcome == {"w1": "DeadlockError", "w2": "DeadlockError"}
        assert errors["w1"] is not errors["w2"]
        assert errors["w1"].finding is errors["w2"].finding  # type: ignore[attr-defined]
    finally:
        deadlockwatch.disable()


def test_semaphore_used_as_a_signal_keeps_no_holders(detector: Watch) -> None:
    # ThreadPoolExecutor's idle semaphore: acquired (timeout=0) by the
    # submitting thread, released by workers.  Its units belong to nobody,
    # so nothing may pile up in the acquiring thread's held list.
    from concurrent.futures import ThreadPoolExecutor

    me = _state.current_record()
    before = len(me.held)
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert [f.result(BOUND) for f in [pool.submit(int, i) for i in range(500)]] == list(
            range(500)
        )
    assert len(me.held) == before
    sem = threading.Semaphore(0)
    start(sem.release).join(BOUND)  # released by a thread that holds no unit
    for _ in range(3):
        assert sem.acquire(timeout=0) in (True, False)
        sem.release()
    assert sem._dw_units == {} and len(me.held) == before  # type: ignore[attr-defined]
    assert detector.findings == []


def test_lock_held_by_an_exited_thread_names_that_thread(detector: Watch) -> None:
    """A thread's first tracked acquire comes before threading lists it as
    active (its start-up Event), so its name and daemon flag are found then."""
    lock = threading.Lock()
    t = threading.Thread(target=lock.acquire, name="the-worker")  # non-daemon
    t.start()
    t.join(BOUND)
    assert not t.is_alive() and lock.locked()
    with pytest.raises(DeadlockError) as info:
        lock.acquire()
    f = info.value.finding
    assert "held by thread 'the-worker', which exited" in f.cause
    gone = next(th for th in f.threads if not th.alive)
    assert (gone.name, gone.daemon) == ("the-worker", False)


def test_a_starting_thread_is_named_from_limbo_before_a_stale_dummy() -> None:
    """Idents are reused: _active can still hold a _DummyThread of a finished
    thread under the ident a new threading.Thread gets, until the new thread
    leaves _limbo.  Its record must take the new thread's name."""
    t = threading.Thread(name="the-new-one")
    ident = 1 << 60  # no real thread has it
    t._ident = ident  # type: ignore[attr-defined]
    stale = threading.Thread(name="Dummy-99")
    with threading._active_limbo_lock:  # type: ignore[attr-defined]
        threading._limbo[t] = t  # type: ignore[attr-defined]
        threading._active[ident] = stale  # type: ignore[attr-defined]
    try:
        found = _state._thread_object(ident)
    finally:
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            del threading._limbo[t]  # type: ignore[attr-defined]
            del threading._active[ident]  # type: ignore[attr-defined]
    assert found is t


@pytest.mark.parametrize("gone", [True, False], ids=["gone-before-the-next-pass", "control"])
def test_a_cycle_only_the_confirming_capture_sees_is_not_acted_on(
    detector: Watch, gone: bool
) -> None:
    """The watcher acts on a finding only if its first capture found it and
    the second (the confirmation, a moment later) shows the very same waits.
    A second cycle, y1 <-> y2, that forms between the two captures (forced:
    a wrapper of the watcher's ``_confirm``, in the watcher thread, lets it
    form, then calls the real one) and is gone before the next pass (the
    wrapper then releases `l1`, a Lock, from another thread) is not acted on;
    the ABBA that made the watcher confirm is.  Control: the second cycle
    left in place is reported (at a later pass, confirmed)."""
    l1, l2 = threading.Lock(), threading.Lock()
    go = threading.Event()
    outcome: dict[str, str] = {}

    def y(first: Any, second: Any, name: str) -> None:
        first.acquire()
        go.wait(BOUND)  # timed: progress, no cycle yet
        try:
            with second:  # untimed: the cycle until `l1` is released
                outcome[name] = "done"
        except DeadlockError:
            outcome[name] = "DeadlockError"
        finally:
            if first is l2:
                l2.release()  # `l1` is released by whoever ends the cycle

    y1 = start(y, l1, l2, "y1", name="y1")
    y2 = start(y, l2, l1, "y2", name="y2")
    until(lambda: {y1.ident, y2.ident} <= set(blocked_waits()), what="y1, y2 at go.wait")
    original = DETECTOR._confirm

    def in_the_cycle() -> bool:
        waits = blocked_waits()
        return (
            getattr(waits.get(y1.ident or 0), "resource", None) is l2
            and getattr(waits.get(y2.ident or 0), "resource", None) is l1
        )

    def confirm(new: Any, *args: Any, **kwargs: Any) -> None:
        if go.is_set():
            original(new, *args, **kwargs)
            return
        go.set()
        until(in_the_cycle, what="y1 and y2 in their cycle")
        try:
            original(new, *args, **kwargs)
        finally:
            if gone:
                l1.release()

    def deadlocks() -> list[deadlockwatch.Finding]:
        return [f for f in detector.findings if f.kind == "deadlock"]  # not the inversions

    DETECTOR._confirm = confirm  # type: ignore[method-assign]
    try:
        assert sorted(lock_cycle().values()) == ["DeadlockError", "done"]
        if not gone:
            until(lambda: len(deadlocks()) == 2, what="the second cycle reported")
            # Its victim has its error before `l1` ends the cycle otherwise.
            until(lambda: "DeadlockError" in outcome.values(), what="y1 or y2 interrupted")
            l1.release()
        for t in (y1, y2):
            t.join(BOUND)
            assert not t.is_alive()
    finally:
        DETECTOR.__dict__.pop("_confirm", None)
    names = [sorted(t.name for t in f.threads) for f in deadlocks()]
    if gone:
        assert names == [["worker-1", "worker-2"]]
        assert outcome == {"y1": "done", "y2": "done"}
    else:
        assert names == [["worker-1", "worker-2"], ["y1", "y2"]]
        assert sorted(outcome.values()) == ["DeadlockError", "done"]


# A thread takes `latch` and ends normally, leaving it held: handed over on
# purpose (`_state.returned_holding`), so a later waiter on it is not stuck
# while a thread that runs (the rescuer) can release it.  Control: nobody
# releases it, reported.  The held-at-exit warning the ended thread gets is
# another finding, set aside here.
LEFT_HELD = """
    def program():
        latch = threading.Lock()
        def closer():
            latch.acquire()  # returns holding it
        c = spawn(closer, "closer")
        c.join()
        def waiter():
            latch.acquire()  # untimed: the rescuer releases it
            latch.release()
        w = spawn(waiter, "waiter")
        rescue(latch.release, w)
        join(w)
    program()
"""


@pytest.mark.parametrize("rescued", [True, False], ids=["rescued", "control"])
def test_a_lock_left_held_by_a_thread_that_returned_is_handed_over(
    tmp_path: Path, rescued: bool
) -> None:
    out, findings = run_program(tmp_path, LEFT_HELD, env={"RESCUE": "1" if rescued else "0"})
    kinds = [f["kind"] for f in findings if f["kind"] != "held-at-exit"]
    if rescued:
        assert kinds == [], findings
        assert "DeadlockError" not in out and "('waiter', 'done')" in out
    else:
        assert kinds == ["deadlock"], findings
        assert "DeadlockError" in out
