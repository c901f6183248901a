"""The C hot path (``deadlockwatch._track._speedups``) against the Python one.

Both variants of the tracked Lock and RLock are run through the same checks
here; the whole parity and lock-order suites are run once more with the
Python hot path forced (``DEADLOCKWATCH_PURE=1``) in a subprocess.
"""

from __future__ import annotations

import gc
import os
import signal as signal_module
import subprocess
import sys
import sysconfig
import threading
import tracemalloc
from typing import Any

import pytest
from conftest import BOUND, run_python, start

from deadlockwatch._track import primitives as _primitives
from deadlockwatch._track import state as _state

VARIANTS = [
    pytest.param((_primitives.TrackedLock, _primitives.TrackedRLock), id="default"),
    pytest.param((_primitives.PURE_LOCK, _primitives.PURE_RLOCK), id="python"),
]


@pytest.fixture(params=VARIANTS)
def kinds(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    pair: tuple[Any, Any] = request.param
    return pair


def _line() -> int:
    return sys._getframe(1).f_lineno


def _site_line(lock: Any) -> int:
    holders = lock._dw_holders()
    assert len(holders) == 1
    site = holders[0][2]
    assert site is not None
    return int(site.line)


def test_built_where_it_can_be() -> None:
    """The C path is what a GIL interpreter with a compiler gets (CI checks
    after its install that it was built; here it may not have been)."""
    if sysconfig.get_config_var("Py_GIL_DISABLED") or os.environ.get(
        "DEADLOCKWATCH_PURE", ""
    ) not in ("", "0"):
        assert not _primitives.ACCELERATED
    elif not _primitives.ACCELERATED:
        pytest.skip("deadlockwatch._track._speedups is not built in this installation")
    else:
        core = type(_primitives.TrackedLock()).__mro__[1]
        assert core.__module__ == "deadlockwatch._track._speedups"
        assert _primitives.PURE_LOCK is not _primitives.TrackedLock


def test_acquisition_site_is_the_callers_line(kinds: tuple[Any, Any]) -> None:
    for kind in kinds:
        lock = kind()
        with lock:
            line = _line() - 1
            assert _site_line(lock) == line
        assert lock.acquire()
        line = _line() - 1
        assert _site_line(lock) == line
        lock.release()
        assert lock.acquire(True)
        line = _line() - 1
        assert _site_line(lock) == line
        lock.release()


def test_site_inside_threading_is_the_user_line(kinds: tuple[Any, Any]) -> None:
    """A lock taken by threading's own code (a Condition's ``with``) is
    reported where the user called threading."""
    for kind in kinds:
        cond = threading.Condition(kind())
        with cond:
            line = _line() - 1
            assert _site_line(cond._lock) == line  # type: ignore[attr-defined]


def test_a_file_made_internal_later_is_walked_past(kinds: tuple[Any, Any]) -> None:
    """The C walk remembers per filename whether it is internal (issue 17):
    a file added to INTERNAL_FILES after a site in it was seen is internal
    from then on (the control: before, the site is in that file)."""
    fake = f"<issue 17 helper {id(kinds)}>"
    space: dict[str, Any] = {}
    exec(compile("def take(lock):\n    lock.acquire()\n", fake, "exec"), space)
    try:
        for kind in kinds:
            before = kind()
            space["take"](before)
            site = before._dw_holders()[0][2]
            assert site is not None and (site.file, site.line) == (fake, 2)
            before.release()
        _state.internal_file(fake)
        for kind in kinds:
            after = kind()  # a lock of its own: a lock remembers its last user code
            space["take"](after)
            line = _line() - 1
            assert _site_line(after) == line
            after.release()
    finally:
        _state.INTERNAL_FILES.discard(fake)
        _state.INTERNAL_FILES.discard(os.path.abspath(fake))


def test_creation_site_is_the_callers_line(kinds: tuple[Any, Any]) -> None:
    for kind in kinds:
        lock = kind()
        line = _line() - 1
        assert lock._created is not None and lock._created.line == line
        assert lock._created.file == __file__ and lock._created.function.startswith("test_")
        cond = threading.Condition(kind())
        assert cond._lock._created.line == _line() - 1  # type: ignore[attr-defined]
        lock._created = None  # settable, as the Python attribute
        assert lock._created is None


def test_held_list_and_owner_follow_every_path(kinds: tuple[Any, Any]) -> None:
    lock_kind, rlock_kind = kinds
    me = _state.current_record()
    before = list(me.held)
    a, b, r = lock_kind(), lock_kind(), rlock_kind()
    with a:
        assert me.held[-1] is a and a._owner is me
        assert b.acquire(False)
        with r, r:
            assert me.held[-2:] == [b, r] and r._count == 2
        assert r._owner is None and r._count == 0
        a.release()  # not the newest entry: taken out from the middle
        assert me.held[-1] is b and a not in me.held
        assert a.acquire()  # re-taken, so that the with's exit releases it
        b.release()
    assert me.held == before
    assert a._owner is None and b._owner is None and r._owner is None


def test_non_blocking_failure_and_blocking_false(kinds: tuple[Any, Any]) -> None:
    lock_kind, _ = kinds
    me = _state.current_record()
    lock = lock_kind()
    assert lock.acquire(False) is True
    assert lock.acquire(False) is False
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0) is False
    assert me.held.count(lock) == 1
    lock.release()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    assert lock not in me.held


def test_a_lock_released_by_another_thread_is_a_handoff(kinds: tuple[Any, Any]) -> None:
    lock_kind, _ = kinds
    me = _state.current_record()
    lock = lock_kind()
    lock.acquire()
    start(lock.release).join(BOUND)
    assert not lock.locked() and lock not in me.held and lock._handoff


def test_each_thread_gets_its_own_record_even_as_threads_come_and_go(
    kinds: tuple[Any, Any],
) -> None:
    """Thread states and idents are reused as threads end and start: the
    record the hot path finds must always be the running thread's."""
    lock_kind, rlock_kind = kinds
    lock, rlock = lock_kind(), rlock_kind()
    seen: list[tuple[bool, bool, str]] = []

    def body() -> None:
        me = _state.current_record()
        with lock:
            ok_lock = lock._owner is me and me.held[-1] is lock
        with rlock:
            ok_rlock = rlock._owner is me and me.held[-1] is rlock
        seen.append((ok_lock, ok_rlock, me.name))

    for i in range(60):
        t = threading.Thread(target=body, name=f"short-{i}", daemon=True)
        t.start()
        t.join(BOUND)
    assert seen == [(True, True, f"short-{i}") for i in range(60)]


def test_no_reference_or_memory_leak_on_the_hot_path(kinds: tuple[Any, Any]) -> None:
    lock_kind, rlock_kind = kinds
    lock, rlock, inner = lock_kind(), rlock_kind(), lock_kind()
    me = _state.current_record()

    def churn(n: int) -> None:
        for _ in range(n):
            with lock, inner:
                pass
            lock.acquire()
            lock.release()
            with rlock, rlock:
                pass
            rlock.acquire()
            rlock.release()

    churn(1000)
    code = churn.__code__
    counts = [sys.getrefcount(x) for x in (lock, rlock, inner, me, code)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        churn(20000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(x) for x in (lock, rlock, inner, me, code)] == counts
    assert grown < 20_000, grown  # 100,000 acquisitions: well under a byte each


def test_each_uncontended_take_teaches_its_order(kinds: tuple[Any, Any]) -> None:
    """The take's bookkeeping is written out in each hot method (issue 17):
    a blocking take under another lock teaches (held, lock) through each of
    them (Lock ``with`` and ``acquire()``, RLock ``with`` and ``acquire()``),
    with the lock on the held list and its owner set.  Controls: an order
    already known, a non-blocking take and an RLock's re-entry teach none."""
    lock_kind, rlock_kind = kinds
    calls: list[tuple[Any, Any]] = []
    saved = _primitives.learn_order
    _primitives.learn_order = lambda held, lock, rec: calls.append((held, lock))
    me = _state.current_record()
    try:
        for kind in (lock_kind, rlock_kind):
            outer, inner = kind(), kind()
            with outer, inner:
                assert me.held[-2:] == [outer, inner]
                assert inner._owner is me
                if kind is rlock_kind:
                    with inner:  # re-entry: no order
                        pass
            assert calls == [(outer, inner)]
            calls.clear()
            outer.acquire()
            assert inner.acquire()
            assert me.held[-2:] == [outer, inner] and inner._owner is me
            inner.release()
            outer.release()
            assert calls == [(outer, inner)]
            calls.clear()
            outer._dw_after = frozenset({id(inner)})  # known now
            with outer, inner:
                pass
            with outer:
                assert inner.acquire(False) if kind is lock_kind else inner.acquire(blocking=False)
                inner.release()
            assert calls == []
            assert outer not in me.held and inner not in me.held
    finally:
        _primitives.learn_order = saved


def test_learned_order_is_seen_by_the_c_path(kinds: tuple[Any, Any]) -> None:
    lock_kind, _ = kinds
    calls: list[tuple[Any, Any]] = []
    saved = _primitives.learn_order
    _primitives.learn_order = lambda held, lock, rec: calls.append((held, lock))
    try:
        a, b = lock_kind(), lock_kind()
        with a, b:
            pass
        assert calls == [(a, b)]
        a._dw_after = frozenset({id(b)})  # known now: no second call
        with a, b:
            pass
        assert a.acquire() and b.acquire(False)  # a non-blocking acquire teaches no order
        b.release()
        a.release()
        assert calls == [(a, b)]
    finally:
        _primitives.learn_order = saved


def test_the_python_hot_path_passes_parity_and_lock_order() -> None:
    """The whole parity, lock-order and wait-under-lock suites with
    DEADLOCKWATCH_PURE=1 (the default run above covers the C path wherever it
    is built).  Wait-under-lock once failed 10 of its 15 tests there: the
    order hook read the Python core's own frame as the taking call, and the
    take before was overwritten before the hook read it."""
    if not _primitives.ACCELERATED:
        pytest.skip("the default run already uses the Python hot path")
    here = os.path.dirname(os.path.abspath(__file__))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    env["DEADLOCKWATCH_PURE"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "test_parity.py",
            "test_lock_order.py",
            "test_wait_under_lock.py",
            "test_speedups.py::test_built_where_it_can_be",
        ],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_a_bad_pure_setting_is_refused_by_name() -> None:
    proc = run_python(
        "import deadlockwatch; deadlockwatch.enable()", env={"DEADLOCKWATCH_PURE": "sometimes"}
    )
    assert proc.returncode != 0
    assert (
        "invalid value 'sometimes' for environment variable DEADLOCKWATCH_PURE: "
        "expected one of 1, 0, true, false, yes, no, on, off"
    ) in proc.stderr


def test_a_second_interpreter_gets_the_python_path() -> None:
    """The C module keeps the first interpreter's objects: a legacy
    subinterpreter importing deadlockwatch again runs the Python path, and
    the main interpreter's C path goes on working."""
    pytest.importorskip("_testcapi")
    proc = run_python(
        """
        import os, tempfile
        import _testcapi
        import deadlockwatch._track.primitives as p
        out = os.path.join(tempfile.mkdtemp(), "sub.txt")
        code = f'''
        import deadlockwatch._track.primitives as p
        lock = p.TrackedLock()
        with lock:
            ok = lock._owner is not None
        with open({out!r}, "w") as f:
            f.write(f"{{p.ACCELERATED}} {{ok}} {{lock.locked()}}")
        '''.replace("\\n        ", "\\n")
        assert _testcapi.run_in_subinterp(code) == 0
        lock = p.TrackedLock()
        with lock:
            assert lock._owner is not None
        print(p.ACCELERATED, open(out).read())
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    main, sub = proc.stdout.split(" ", 1)
    assert main == str(_primitives.ACCELERATED)
    assert sub.strip() == "False True False"


def test_an_instance_never_initialised_raises_instead_of_crashing() -> None:
    """``TrackedLock.__new__(TrackedLock)`` has no raw lock: every method
    raises AttributeError, as the Python path does (run apart: a crash here
    would take the test process with it)."""
    proc = run_python(
        """
        from deadlockwatch._track import primitives as p
        for kind in (p.TrackedLock, p.TrackedRLock, p.PURE_LOCK, p.PURE_RLOCK):
            lock = kind.__new__(kind)
            for method in ("acquire", "release", "__enter__", "locked"):
                try:
                    getattr(lock, method)()
                except AttributeError:
                    print("AttributeError")
                else:
                    print("returned")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["AttributeError"] * 16


@pytest.mark.parametrize("pure", ["0", "1"], ids=["default", "python"])
def test_a_lock_taken_by_a_finalizer_at_thread_exit_has_a_registered_owner(pure: str) -> None:
    """A finalizer run while a thread is torn down (``__del__`` of an object in
    a ``threading.local``) takes a lock: its owner is a record the watcher
    knows (``_state.records``), whatever order the interpreter tears the
    thread's locals and state down in."""
    proc = run_python(
        """
        import gc, threading
        from deadlockwatch._track import state as _state
        from deadlockwatch._track.primitives import TrackedLock
        lock = TrackedLock()
        out = []
        class Finalizer:
            def __del__(self):
                lock.acquire()
                owner = lock._owner
                out.append(_state.records.get(owner.ident) is owner and owner.held[-1] is lock)
                lock.release()
        local = threading.local()
        def body():
            with lock:
                pass
            local.f = Finalizer()
        for _ in range(20):
            t = threading.Thread(target=body, daemon=True)
            t.start()
            t.join(10)
            gc.collect()
        print(out.count(True), len(out))
        """,
        env={"DEADLOCKWATCH_PURE": pure},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["20", "20"]


#: A finalizer that runs after the main thread's state dict is gone: an
#: object in the main thread's contextvars context dies after that dict when
#: the interpreter clears the thread's state at exit (module globals and
#: builtins are gone by then: everything it uses is bound beforehand).
EXIT_FINALIZER = """
import contextvars, os, sys, threading
if sys.argv[1] == "on":
    import deadlockwatch
    deadlockwatch.enable()

class Finalizer:
    def __init__(self):
        self.locks = [(threading.Lock(), False), (threading.RLock(), True),
                      (threading.Lock(), False), (threading.RLock(), True)]
    def __del__(self, write=os.write, repr=repr, BaseException=BaseException):
        for lock, reentrant in self.locks:
            try:
                with lock:
                    if reentrant:
                        with lock:
                            pass
                lock.acquire()
                lock.release()
                write(1, b"took\\n")
            except BaseException as e:
                write(1, repr(e).encode() + b"\\n")

contextvars.ContextVar("finalizer").set(Finalizer())
with threading.Lock():  # the main thread has a record, kept for the next take
    pass
"""


@pytest.mark.parametrize(
    "pure",
    [
        "0",
        pytest.param(
            "1",
            marks=pytest.mark.xfail(
                strict=True,
                reason="the Python path reads its module's globals, None once "
                "modules are torn down at exit (README: What it cannot see)",
            ),
        ),
    ],
    ids=["default", "python"],
)
def test_a_finalizer_taking_locks_after_the_main_threads_state_went_works_as_without(
    pure: str,
) -> None:
    """At exit, once the main thread's state dict is gone with its record,
    its locks work as without the detector: taken untracked, never an error,
    never a crash.  Before: the C core's per-thread cache still named the
    freed record, and a new dict made at the old one's address (dicts are
    reused from a free list) made it look valid: segmentation fault."""
    runs = {
        mode: run_python(EXIT_FINALIZER, args=[mode], env={"DEADLOCKWATCH_PURE": pure})
        for mode in ("off", "on")
    }
    for proc in runs.values():
        assert proc.returncode == 0, proc.stderr
    assert runs["off"].stdout.split() == ["took"] * 4  # the control: it runs at all
    assert runs["on"].stdout == runs["off"].stdout


def test_odd_values_and_arguments_get_python_errors_not_crashes(kinds: tuple[Any, Any]) -> None:
    lock_kind, rlock_kind = kinds
    lock, rlock = lock_kind(), rlock_kind()
    lock._site = None
    code = sys._getframe().f_code
    lock._site = (code, 2)
    assert lock._site == (code, 2)
    if lock_kind is _primitives.TrackedLock and _primitives.ACCELERATED:
        with pytest.raises(TypeError, match="_site is"):
            lock._site = [code, 2]
    # An RLock's __enter__ takes acquire's arguments, as threading's does.
    assert rlock.__enter__(False) is True
    rlock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock", "PURE_LOCK", "PURE_RLOCK", "Semaphore"])
def test_a_blocked_acquire_from_no_python_frame_waits_and_takes_it(kind: str) -> None:
    """A thread started from C on ``acquire`` itself, while another thread
    holds the lock: the slow path registers its wait with no site and takes
    the lock once it is free (run apart: the thread cannot be joined)."""
    name = {"Lock": "TrackedLock", "RLock": "TrackedRLock"}.get(kind, kind)
    proc = run_python(
        f"""
        import _thread, time
        from deadlockwatch._track import primitives as p
        kind = {kind!r}
        lock = p.TrackedSemaphore(1) if kind == "Semaphore" else getattr(p, {name!r})()
        lock.acquire()
        _thread.start_new_thread(lock.acquire, ())
        from deadlockwatch._track import state
        deadline = time.monotonic() + 10
        while not state.blocked and time.monotonic() < deadline:
            time.sleep(0.002)  # until its slow path has registered the wait
        if not state.blocked:
            raise SystemExit("the frame-less thread never blocked")
        lock.release()
        for _ in range(500):
            if (lock._value == 0) if kind == "Semaphore" else (lock._owner is not None):
                break
            time.sleep(0.01)
        else:
            raise SystemExit("the frame-less thread never took it")
        print("taken")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["taken"]
    assert "Traceback" not in proc.stderr


def test_an_acquire_called_from_no_python_frame_returns(kinds: tuple[Any, Any]) -> None:
    """A thread started from C on ``lock.acquire`` itself: no caller frame."""
    import _thread

    lock_kind, _ = kinds
    lock = lock_kind()
    _thread.start_new_thread(lock.acquire, ())
    for _ in range(1000):
        if lock.locked():
            break
        threading.Event().wait(0.01)
    assert lock.locked()
    assert lock._site is None


def test_the_c_module_unconfigured_raises() -> None:
    """With DEADLOCKWATCH_PURE=1 nothing configures ``_speedups``: using it
    raises RuntimeError (not a crash)."""
    if not _primitives.ACCELERATED:
        pytest.skip("deadlockwatch._track._speedups is not built in this installation")
    proc = run_python(
        """
        from deadlockwatch._track import primitives as _primitives
        from deadlockwatch._track import _speedups as _speedups
        assert not _primitives.ACCELERATED
        for make in (_speedups.LockCore, _speedups.RLockCore):
            try:
                make()
            except RuntimeError as exc:
                print(exc)
        """,
        env={"DEADLOCKWATCH_PURE": "1"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["deadlockwatch._track._speedups is not configured"] * 2


def _speedups_or_skip() -> Any:
    if not _primitives.ACCELERATED:
        pytest.skip("the C hot path is not in use here")
    from deadlockwatch._track import _speedups

    return _speedups


def test_the_c_path_takes_the_raw_locks_directly_on_every_supported_version() -> None:
    """The uncontended take skips the raw acquire's argument parsing: the
    raw Lock and RLock layouts checked at configure() are _thread's own on
    3.10 to 3.13, so the direct take is on wherever the C path is."""
    speedups = _speedups_or_skip()
    assert speedups.direct() == (True, True)


def test_a_direct_take_is_a_take_for_the_raw_lock() -> None:
    """What the raw lock's own methods see after a direct take: locked, owned
    (with the recursion count of an RLock), released by the raw release."""
    _speedups_or_skip()
    lock = _primitives.TrackedLock()
    assert lock.acquire() is True
    assert lock._raw.locked() and lock.locked()
    assert lock.acquire(False) is False
    assert lock._raw.acquire(False) is False
    lock.release()
    assert not lock._raw.locked()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    rlock = _primitives.TrackedRLock()
    with rlock:
        assert rlock.acquire() is True  # re-entry
        assert rlock._raw._is_owned()
        assert "count=2" in repr(rlock._raw)
        rlock.release()
        assert "count=1" in repr(rlock._raw)
    assert not rlock._raw._is_owned()
    assert "count=0" in repr(rlock._raw)
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        rlock.release()


def test_a_raw_lock_held_by_another_thread_is_not_taken_directly() -> None:
    _speedups_or_skip()
    lock, rlock = _primitives.TrackedLock(), _primitives.TrackedRLock()
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock, rlock:
            taken.set()
            done.wait(BOUND)

    t = start(hold)
    try:
        assert taken.wait(BOUND)
        assert lock.acquire(False) is False
        assert rlock.acquire(False) is False
        assert lock.acquire(timeout=0.01) is False
        assert rlock.acquire(timeout=0.01) is False
    finally:
        done.set()
        t.join(BOUND)
    assert lock.acquire(timeout=BOUND) and rlock.acquire(timeout=BOUND)
    lock.release()
    rlock.release()


def test_an_acquire_set_by_hand_is_called_not_bypassed() -> None:
    """Setting ``_acq`` (or ``_raw``) means that acquire is to be called: the
    direct take is off for that lock."""
    _speedups_or_skip()
    for kind in (_primitives.TrackedLock, _primitives.TrackedRLock):
        lock = kind()
        calls: list[tuple[Any, ...]] = []
        raw_acquire = lock._acq

        def counting(*args: Any, _raw: Any = raw_acquire, calls: Any = calls) -> Any:
            calls.append(args)
            return _raw(*args)

        lock._acq = counting
        assert lock._acq is counting
        with lock:
            pass
        assert calls == [(False,)]
        del lock._acq
        with pytest.raises(AttributeError):
            del lock._acq
        lock._acq = raw_acquire
        replaced = kind()
        replaced._raw = replaced._raw  # the same raw lock, set by hand
        with replaced:
            raw: Any = replaced._raw
            assert raw.locked() if kind is _primitives.TrackedLock else raw._is_owned()


def test_a_condition_wait_gives_back_the_rlock_as_it_was(kinds: tuple[Any, Any]) -> None:
    """Condition's protocol on a tracked RLock (``_release_save`` and
    ``_acquire_restore``, in C on the C path): released at every level while
    waiting, then taken back by the waiter with its count, held once, its
    site the waiting line."""
    _, rlock_kind = kinds
    me = _state.current_record()
    before = list(me.held)
    r = rlock_kind()
    cond = threading.Condition(r)
    seen: list[Any] = []

    def other() -> None:
        with cond:  # only possible while the waiter is inside wait()
            seen.append((r._owner, r._count, r._raw._is_owned()))
            cond.notify()

    with r, r:
        t = threading.Thread(target=other, daemon=True)
        t.start()
        line = _line() + 1
        assert cond.wait(BOUND) is True
        assert r._owner is me and r._count == 2 and me.held.count(r) == 1
        assert r._raw._is_owned() and "count=2" in repr(r._raw)
        assert _site_line(r) == line
    t.join(BOUND)
    assert len(seen) == 1 and seen[0][1] == 1 and seen[0][0] is not me and seen[0][2]
    assert me.held == before and r._owner is None and not r._raw._is_owned()


@pytest.mark.parametrize("env", [{}, {"DEADLOCKWATCH_PURE": "1"}], ids=["default", "python"])
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_condition_wait_interrupted_by_a_signal_gives_its_lock_back(
    env: dict[str, str], kind: str
) -> None:
    """Ctrl-C in a blocking ``Condition.wait`` (in C where the C core runs:
    `waits._fast`): KeyboardInterrupt, the Condition's lock held again, the
    wait unregistered and its waiter gone, as without the detector."""
    r = run_python(
        f"""
        import json, signal, sys, threading, time
        import deadlockwatch
        from deadlockwatch._track import primitives, state, waits
        # (a job started in the background ignores SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        deadlockwatch.enable(interval=3600.0, threshold=3600.0)
        cond = threading.Condition(threading.{kind}())
        main = threading.main_thread().ident
        def interrupter():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until main waits on cond
                w = state.blocked.get(state.records.get(main))
                if w is not None and getattr(w, "_cond", None) is cond:
                    break
                time.sleep(0.001)
            out["registered"] = type(w).__name__
            signal.pthread_kill(main, signal.SIGINT)
        out = {{"fast": waits._fast is not None, "accelerated": primitives.ACCELERATED}}
        threading.Thread(target=interrupter, daemon=True).start()
        with cond:
            try:
                cond.wait(20)
                out["outcome"] = "returned"
            except KeyboardInterrupt:
                out["outcome"] = "KeyboardInterrupt"
            out["owned"] = cond._is_owned()
            out["waiters"] = len(cond._waiters)
        rec = state.current_record()
        out["blocked"] = rec in state.blocked or rec.wait is not None
        out["held"] = len(rec.held)
        print(json.dumps(out))
        """,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    out = __import__("json").loads(r.stdout)
    assert out["fast"] is (out["accelerated"] and not env)
    assert out == {
        "fast": out["fast"],
        "accelerated": out["accelerated"],
        "registered": "ConditionWait",
        "outcome": "KeyboardInterrupt",
        "owned": True,
        "waiters": 0,
        "blocked": False,
        "held": 0,
    }


# -- Semaphore and BoundedSemaphore: the C core against the Python path ----------


def _pure_semaphore(bounded: bool) -> type[Any]:
    mixin = _primitives._TrackedSemaphoreMixin
    if bounded:
        base = _primitives._OrigBoundedSemaphore
        body: dict[str, Any] = {"_dw_type": "BoundedSemaphore", "_dw_bounded": True}

        def __init__(self: Any, value: int = 1) -> None:
            mixin.__init__(self, value)
            self._initial_value = value

        body["__init__"] = __init__
    else:
        base = _primitives._OrigSemaphore
        body = {"__init__": mixin.__init__}
    return type("PureSemaphore", (mixin, base), body)


SEMAPHORES = [
    pytest.param((_primitives.TrackedSemaphore, False), id="c-Semaphore"),
    pytest.param((_primitives.TrackedBoundedSemaphore, True), id="c-BoundedSemaphore"),
    pytest.param((_pure_semaphore(False), False), id="python-Semaphore"),
    pytest.param((_pure_semaphore(True), True), id="python-BoundedSemaphore"),
]


def test_the_semaphores_have_the_c_core_where_it_is_built() -> None:
    for cls in (_primitives.TrackedSemaphore, _primitives.TrackedBoundedSemaphore):
        core = cls.__mro__[1]
        if _primitives.ACCELERATED:
            assert core.__module__ == "deadlockwatch._track._speedups"
        else:
            assert core is _primitives._PySemCore


@pytest.mark.parametrize("variant", SEMAPHORES)
def test_a_semaphore_unit_is_held_at_the_line_that_took_it(variant: tuple[Any, bool]) -> None:
    """The site of a unit is acquire()'s caller (``with``: the with line),
    and each thread's units are counted and given back."""
    cls, bounded = variant
    sem = cls(2)
    me = _state.current_record()

    def take() -> int:
        line = _line() + 1
        assert sem.acquire(timeout=5) is True
        return line

    line = take()
    assert _site_line(sem) == line
    assert sem._dw_units == {me: 1}
    assert me.held.count(sem) == 1
    with sem:
        line = _line() - 1
        assert sem._dw_units == {me: 2}
        assert sem._dw_holders()[0][2].line == line
        assert sem._value == 0
        assert sem.acquire(timeout=0) is False
        assert sem.acquire(blocking=False) is False
    assert sem._dw_units == {me: 1}
    sem.release()
    assert sem._dw_units == {}
    assert sem not in me.held
    assert sem._value == 2
    assert not sem._dw_signal
    if bounded:
        with pytest.raises(ValueError, match="released too many times"):
            sem.release()
        assert sem._value == 2
    else:
        # A release by a thread that holds no unit: a signal, whose units
        # belong to nobody.
        sem.release()
        assert sem._dw_signal
        assert sem._value == 3
        assert sem.acquire() is True
        assert sem._dw_units == {}
        assert sem not in me.held


@pytest.mark.parametrize("variant", SEMAPHORES)
def test_a_semaphore_answers_its_arguments_as_threadings_does(variant: tuple[Any, bool]) -> None:
    cls, _ = variant
    sem = cls(1)
    with pytest.raises(ValueError, match="can't specify timeout"):
        sem.acquire(False, 1)
    with pytest.raises(TypeError):
        sem.acquire(True, None, 3)
    with pytest.raises(TypeError):
        sem.acquire(nothing=1)
    with pytest.raises(ValueError, match="n must be one or more"):
        sem.release(0)
    assert sem.acquire(True, None) is True
    sem.release(1)
    assert sem.acquire(blocking=True, timeout=1) is True
    sem.release(n=1)
    assert sem._value == 1
    assert sem._dw_units == {}


@pytest.mark.parametrize("variant", SEMAPHORES)
def test_a_semaphore_wakes_a_waiter_on_release(variant: tuple[Any, bool]) -> None:
    cls, _ = variant
    sem = cls(1)
    sem.acquire()
    got = threading.Event()

    def wait() -> None:
        if sem.acquire(timeout=BOUND):
            got.set()
            sem.release()

    t = start(wait)
    deadline = threading.Event()
    for _ in range(1000):  # until the waiter waits on the Condition
        if sem._cond._waiters:
            break
        deadline.wait(0.005)
    assert sem._cond._waiters
    sem.release()
    assert got.wait(BOUND)
    t.join(BOUND)
    assert sem._value == 1
    assert sem._dw_units == {}


_SIGNAL_TO_ANOTHER_THREAD = """
import signal, sys, threading, time
import deadlockwatch
from deadlockwatch._track import primitives
deadlockwatch.enable(interval=3600.0, threshold=3600.0)
ev = threading.Event()
signal.signal(signal.SIGUSR1, lambda *a: ev.set())
main_waits = threading.Event()

def sender():
    main_waits.wait(10)
    time.sleep(0.2)  # the main thread in its untimed wait by now
    # To this thread: the main thread's OS wait is not interrupted; only
    # the interpreter's flag says a handler is due.
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

threading.Thread(target=sender, daemon=True).start()
main_waits.set()
print(primitives.ACCELERATED, ev.wait())
"""


@pytest.mark.skipif(not hasattr(signal_module, "pthread_kill"), reason="needs pthread_kill")
def test_a_signal_taken_by_another_thread_runs_its_handler_in_an_untimed_wait() -> None:
    # The wait is sliced: the main thread runs the handlers due after a
    # slice runs out (as the Python loop's next bytecode does), else an
    # untimed wait whose waker is a signal handler never returns.
    r = run_python(_SIGNAL_TO_ANOTHER_THREAD, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1:] == ["True"]
