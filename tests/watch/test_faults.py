"""Faults: the watcher's own errors, KeyboardInterrupt in a tracked wait,
interpreter shutdown with blocked daemon threads, disable() and enable()
while threads are blocked, and fork.

What can take a process down (signals, shutdown, fork, a broken analysis)
runs in a fresh interpreter, killed if it ever hangs.
"""

from __future__ import annotations

import _thread
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _programs import TESTS, lock_cycle, wait_blocked, wait_watched
from conftest import BOUND, run_python, start

import deadlockwatch
from deadlockwatch._track import patch as _patch
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR

INTERNAL_ERROR = "deadlockwatch: internal error in the watcher (it keeps running):"


# -- errors inside deadlockwatch ---------------------------------------------------------
def test_an_error_in_the_watcher_is_reported_once_and_the_watcher_goes_on() -> None:
    code = """
    import sys, threading, time, deadlockwatch
    from deadlockwatch._watch import watcher as _detector
    real_analyze = _detector.analyze
    calls = []
    def broken(snap):
        calls.append(1)
        # A message that differs every time: still one report.
        raise RuntimeError(f"analysis broke on {id(snap):#x}, call {len(calls)}")
    _detector.analyze = broken
    deadlockwatch.enable(interval=0.01, threshold=0.01, lock_order=False, on_deadlock="raise")
    # A wait the watcher analyses, tick after tick: main holds the lock a while.
    gate = threading.Lock()
    gate.acquire()
    t = threading.Thread(target=lambda: (gate.acquire(), gate.release()), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while len(calls) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.release()
    t.join(10)
    print("broken analyses:", len(calls) >= 10, flush=True)
    _detector.analyze = real_analyze
    # The same watcher still finds a real deadlock, and breaks it.
    sys.path.insert(0, TESTS)
    from _programs import lock_cycle
    print("deadlock broken:", sorted(lock_cycle().values()) == ["DeadlockError", "done"])
    """.replace("TESTS", repr(TESTS))
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["broken analyses: True", "deadlock broken: True"]
    assert r.stderr.count(INTERNAL_ERROR) == 1, r.stderr
    assert r.stderr.count("RuntimeError: analysis broke") == 1
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    assert r.stderr.index("RuntimeError: analysis broke") < r.stderr.index("DEADLOCK")


def test_an_error_in_lock_order_learning_leaves_the_acquire_alone() -> None:
    code = """
    import threading, deadlockwatch
    from deadlockwatch._track.order import ORDER
    def broken(*args):
        raise ValueError("order graph broke")
    ORDER.learn = broken
    deadlockwatch.enable(lock_order=True)
    a, b = threading.Lock(), threading.Lock()
    for _ in range(3):
        with a:
            with b:
                pass
        with b:
            with a:
                pass
    print("acquires fine:", not a.locked() and not b.locked())
    """
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "acquires fine: True"
    # One report for the same error, wherever it happens; never an inversion.
    assert r.stderr.count(INTERNAL_ERROR) == 1, r.stderr
    assert r.stderr.count("ValueError: order graph broke") == 1
    assert "INVERSION" not in r.stderr.upper().replace("INTERNAL", "")


# -- KeyboardInterrupt ---------------------------------------------------------------------
#: The main thread blocks, untimed, on something another thread holds; a third
#: thread interrupts it once it is blocked there.  argv: kind, how, tracked (1/0).
INTERRUPTED = """
import _thread, json, signal, sys, threading, time
# A shell that starts a job in the background makes it ignore SIGINT, and
# children inherit that: Python then installs no handler of its own.
signal.signal(signal.SIGINT, signal.default_int_handler)
kind, how, tracked = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if tracked:
    import deadlockwatch
    from deadlockwatch._track import state as _state
    deadlockwatch.enable(interval=0.01, threshold=0.01)
factory = getattr(threading, kind)
obj = factory() if kind in ("Lock", "RLock") else factory(1)
holding, done = threading.Event(), threading.Event()
def holder():
    obj.acquire()
    holding.set()
    done.wait(5)
    obj.release()
h = threading.Thread(target=holder, name="holder", daemon=True)
h.start()
holding.wait(10)
main = threading.main_thread().ident
def interrupter():
    # Until main is blocked in its acquire: a tracked wait, seen in the
    # bookkeeping; a raw one, blocked in C, seen from main's line (bounded).
    if tracked:
        sys.path.insert(0, TESTS)
        from _programs import wait_blocked
        wait_blocked([main])
    else:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = sys._current_frames()[main]
            while frame.f_back is not None:
                frame = frame.f_back          # main's module frame
            if frame.f_lineno == globals().get("acquire_line"):
                break
            time.sleep(0.002)
    if how == "signal":
        signal.pthread_kill(main, signal.SIGINT)
    else:
        _thread.interrupt_main()
threading.Thread(target=interrupter, daemon=True).start()
t0 = time.monotonic()
acquire_line = sys._getframe().f_lineno + 2
try:
    obj.acquire()
    outcome = "acquired"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
out = {"outcome": outcome, "prompt": time.monotonic() - t0 < 2.5}
out["still held by the holder"] = not obj.acquire(False)
if tracked:
    rec = _state.current_record()
    out["main holds"] = [repr(x) for x in rec.held]
    out["main waits"] = rec in _state.blocked or rec.wait is not None
done.set()
h.join(10)
out["works after"] = obj.acquire(timeout=5)
obj.release()
if tracked:
    out["held after"] = [repr(x) for x in _state.current_record().held]
    out["findings"] = [f.kind for f in deadlockwatch.check()]
print(json.dumps(out))
""".replace("TESTS", repr(TESTS))

KINDS = ["Lock", "RLock", "Semaphore", "BoundedSemaphore"]


def _interrupted(kind: str, how: str, tracked: bool) -> dict[str, Any]:
    r = run_python(INTERRUPTED, args=[kind, how, "1" if tracked else "0"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "deadlockwatch:" not in r.stderr
    result: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("kind", KINDS)
def test_sigint_in_a_blocked_acquire_behaves_as_with_the_raw_primitive(kind: str) -> None:
    """SIGINT sent to the main thread interrupts a blocked acquire (on POSIX, as
    CPython's own acquires are interruptible): KeyboardInterrupt at once, the
    primitive still held by its holder, nothing left in the bookkeeping."""
    raw = _interrupted(kind, "signal", tracked=False)
    tracked = _interrupted(kind, "signal", tracked=True)
    expected = {
        "outcome": "KeyboardInterrupt",
        "prompt": True,
        "still held by the holder": True,
        "works after": True,
    }
    assert raw == expected
    assert tracked == {
        **expected,
        "main holds": [],
        "main waits": False,
        "held after": [],
        "findings": [],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_interrupt_main_in_a_blocked_acquire(kind: str) -> None:
    """``_thread.interrupt_main()`` only simulates a signal: a raw acquire blocked
    in C sees it once it returns (when the holder lets go).  A tracked wait
    returns to Python every slice, so it raises KeyboardInterrupt at once,
    without taking the primitive, which stays consistent."""
    tracked = _interrupted(kind, "interrupt_main", tracked=True)
    assert tracked == {
        "outcome": "KeyboardInterrupt",
        "prompt": True,
        "still held by the holder": True,
        "main holds": [],
        "main waits": False,
        "works after": True,
        "held after": [],
        "findings": [],
    }


# -- interpreter shutdown ------------------------------------------------------------------
def test_shutdown_with_blocked_daemon_threads_is_quiet(tmp_path: Path) -> None:
    """Daemon threads blocked on what the exiting main thread, a sleeping thread
    or nobody holds; a non-daemon thread keeps the shutdown waiting a while, the
    watcher looking every 10 ms.  Nothing of it is a deadlock."""
    report = tmp_path / "report.jsonl"
    code = """
    import threading, time
    main_lock, rlock = threading.Lock(), threading.RLock()
    sem, cond = threading.Semaphore(0), threading.Condition()
    main_lock.acquire()
    holding = threading.Event()
    def sleeper():
        with rlock:
            holding.set()
            time.sleep(60)
    def waits_cond():
        with cond:
            cond.wait()
    threading.Thread(target=sleeper, daemon=True).start()
    holding.wait(10)
    ts = [threading.Thread(target=target, daemon=True)
          for target in (main_lock.acquire, rlock.acquire, sem.acquire, waits_cond)]
    [t.start() for t in ts]
    threading.Thread(target=time.sleep, args=(0.5,)).start()  # shutdown waits for it
    import sys; sys.path.insert(0, TESTS)
    from _programs import wait_watched
    wait_watched(2, of=ts)  # all four blocked, looked at: no deadlock while main runs
    print("main done", flush=True)
    """.replace("TESTS", repr(TESTS))
    env = {
        "DEADLOCKWATCH": "1",
        "DEADLOCKWATCH_INTERVAL": "0.01",
        "DEADLOCKWATCH_THRESHOLD": "0.01",
        "DEADLOCKWATCH_REPORT": str(report),
    }
    for _ in range(3):
        t0 = time.monotonic()
        r = run_python(code, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "main done\n"
        assert r.stderr == ""
        assert not report.exists()
        assert time.monotonic() - t0 < 10


def test_the_watcher_thread_is_gone_before_the_interpreter_finalizes() -> None:
    """At exit the watcher (running: a daemon thread stays blocked) stops and
    its thread is gone, OS thread included, before the interpreter clears
    thread states: no daemon thread of ours tears itself down meanwhile.
    Without the join, the watcher's OS thread was still there 7 times in 8."""
    code = """
    import atexit, os, sys, threading
    def last():  # runs after deadlockwatch's own handler (last in, first out)
        from deadlockwatch._watch.watcher import DETECTOR
        native = DETECTOR._native_id
        print(bool(native), not os.path.exists(f"/proc/self/task/{native}"), flush=True)
    atexit.register(last)
    import deadlockwatch
    deadlockwatch.enable(interval=0.01, threshold=0.01)
    sys.path.insert(0, TESTS)
    from _programs import wait_watched
    lock = threading.Lock()
    lock.acquire()
    t = threading.Thread(target=lock.acquire, daemon=True)
    t.start()
    wait_watched(2, of=[t])  # the watcher runs, and has looked at it twice
    """.replace("TESTS", repr(TESTS))
    for _ in range(3):
        r = run_python(code, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["True", "True"], r.stdout  # ran, and gone


# -- disable() and enable() while threads are blocked --------------------------------------
def test_enable_after_disable_watches_at_once_while_the_old_watcher_is_in_a_long_tick() -> None:
    """disable() waits 2 s at most for the watcher: one still in a long tick
    (a heap walk on a loaded machine) outlives it.  An enable() meanwhile gets
    a watcher of its own at once, which reports a deadlock of the new run
    within about a second; the old watcher, once its tick ends, reports
    nothing (the deadlock is reported once).  Before, the new run had no
    watcher until the old one's tick ended."""
    code = """
    import _thread, sys, threading, time
    import deadlockwatch
    from deadlockwatch._watch.watcher import DETECTOR
    entered, gate = _thread.allocate_lock(), _thread.allocate_lock()
    entered.acquire(); gate.acquire()
    real_tick = DETECTOR.tick
    first = []
    def long_tick():  # the first tick is long (bounded), the others as usual
        if not first:
            first.append(_thread.get_ident())
            entered.release()
            gate.acquire(True, 8)
        real_tick()
    DETECTOR.tick = long_tick
    deadlockwatch.enable(interval=0.01, threshold=0.05, lock_order=False)
    event = threading.Event()
    waiter = threading.Thread(target=event.wait, args=(10,), daemon=True)
    waiter.start()
    assert entered.acquire(True, 10), "the watcher never ticked"
    t0 = time.monotonic()
    deadlockwatch.disable()
    print("disable waited", round(time.monotonic() - t0, 1), file=sys.stderr)
    event.set(); waiter.join(10)
    deadlockwatch.enable(interval=0.01, threshold=0.05, lock_order=False)
    enabled = time.monotonic()
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    def worker(x, y):
        with x:
            barrier.wait(10)
            y.acquire()  # daemon threads: the process still ends
    for x, y in ((a, b), (b, a)):
        threading.Thread(target=worker, args=(x, y), daemon=True).start()
    def deadlocks():
        return [f for f in DETECTOR.findings if f.kind == "deadlock"]
    while not deadlocks() and time.monotonic() - enabled < 4:
        time.sleep(0.01)
    late = time.monotonic() - enabled
    print("found", len(deadlocks()), "after", round(late, 2), flush=True)
    print("old watcher alive", first[0] in sys._current_frames(), flush=True)
    gate.release()  # the old watcher's tick ends
    time.sleep(0.5)
    print("found", len(deadlocks()), flush=True)
    print("old watcher gone", first[0] not in sys._current_frames(), flush=True)
    deadlockwatch.disable()
    """
    r = run_python(code, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("found 1 after "), r.stdout + r.stderr
    assert float(lines[0].split()[-1]) < 1.5, r.stdout + r.stderr
    assert lines[1:] == ["old watcher alive True", "found 1", "old watcher gone True"], r.stdout


def test_disable_while_threads_are_blocked_lets_them_finish() -> None:
    deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
    try:
        lock, rlock, sem = threading.Lock(), threading.RLock(), threading.Semaphore(1)
        cond, event, q = threading.Condition(), threading.Event(), queue.Queue()
        results: dict[str, object] = {}

        def take(name: str, obj: Any) -> None:
            results[name] = obj.acquire()
            obj.release()

        def on_cond() -> None:
            with cond:
                results["cond"] = cond.wait_for(lambda: event.is_set(), BOUND)

        for obj in (lock, rlock, sem):
            obj.acquire()
        threads = [
            start(take, "lock", lock),
            start(take, "rlock", rlock),
            start(take, "sem", sem),
            start(on_cond),
            start(lambda: results.setdefault("event", event.wait(BOUND))),
            start(lambda: results.setdefault("queue", q.get(timeout=BOUND))),
        ]
        # the three acquires, and the Condition, Event and queue waits
        wait_blocked(threads)
        assert len(_state.blocked) == 6
        wait_watched(2)  # the watcher looks at them (they are not deadlocked)
    finally:
        deadlockwatch.disable()
    assert not deadlockwatch.is_enabled()
    # Released after disable(): every waiter finishes normally.
    for obj in (lock, rlock, sem):
        obj.release()
    with cond:
        event.set()
        cond.notify_all()
    q.put("item")
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    assert results == {
        "lock": True,
        "rlock": True,
        "sem": True,
        "cond": True,
        "event": True,
        "queue": "item",
    }
    assert not _state.blocked
    assert _state.current_record().held == []
    assert not lock.locked() and sem._value == 1


def test_disable_then_enable_while_blocked_finds_a_later_deadlock() -> None:
    lock = None
    deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
    try:
        lock = threading.Lock()
        lock.acquire()
        t = start(lambda: (lock.acquire(), lock.release()))
        wait_blocked(t)
        deadlockwatch.disable()
        deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
        start_count = len(DETECTOR.findings)
        wait_watched(2, of=t)
        assert DETECTOR.findings[start_count:] == []  # a plain wait: main runs
        lock.release()
        t.join(BOUND)
        assert not t.is_alive()
        # The watcher is alive: a real deadlock is still found and broken.
        assert sorted(lock_cycle().values()) == ["DeadlockError", "done"]
    finally:
        deadlockwatch.disable()


def _settle(condition: Any) -> bool:
    deadline = time.monotonic() + BOUND
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def test_enable_twice_starts_one_watcher_and_wraps_once() -> None:
    before = _thread._count()
    # A daemon thread an earlier test left may end meanwhile: compare the
    # threads themselves, not only their number.
    idents = set(sys._current_frames())
    deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
    try:
        # No watcher thread until a tracked wait blocks.
        time.sleep(0.05)
        assert DETECTOR.watcher_ident is None and _thread._count() <= before
        lock_factory = threading.Lock
        installed = dict(_patch._installed)
        deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
        deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
        time.sleep(0.05)
        assert _thread._count() <= before and DETECTOR.watcher_ident is None
        assert threading.Lock is lock_factory and _patch._installed == installed
        # A blocking wait starts one watcher; enabling again adds none.
        gate = threading.Event()
        waiter = start(gate.wait, BOUND)
        assert _settle(lambda: DETECTOR.watcher_ident is not None)
        watcher = DETECTOR.watcher_ident
        deadlockwatch.enable(interval=0.01, threshold=0.01, on_deadlock="raise")
        wait_watched(2, of=waiter)
        assert DETECTOR.watcher_ident == watcher
        assert watcher in sys._current_frames()
        gate.set()
        waiter.join(BOUND)
        # Nothing blocked any more: the watcher ends.
        assert _settle(lambda: DETECTOR.watcher_ident is None)
        assert _settle(lambda: watcher not in sys._current_frames())
        # One report per deadlock, not one per enable().
        start_count = len(DETECTOR.findings)
        assert "stuck" not in lock_cycle().values()
        kinds = [f.kind for f in DETECTOR.findings[start_count:]]
        assert kinds.count("deadlock") == 1
    finally:
        deadlockwatch.disable()
    assert _settle(lambda: _thread._count() <= before and set(sys._current_frames()) <= idents)


# -- fork --------------------------------------------------------------------------------
def test_detection_goes_on_in_parent_and_child_after_fork(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    code = """
    import os, sys, threading, time, deadlockwatch
    sys.path.insert(0, TESTS)
    from _programs import lock_cycle
    def abba(tag):
        return sorted(lock_cycle(names=(f"{tag}-0", f"{tag}-1")).values())
    # At the fork, a worker waits (not a deadlock: main, the holder, runs on).
    held = threading.Lock()
    held.acquire()
    waiter = threading.Thread(target=lambda: (held.acquire(), held.release()), daemon=True)
    waiter.start()
    sys.path.insert(0, TESTS)
    from _programs import wait_blocked, wait_watched
    wait_blocked([waiter])
    pid = os.fork()
    if pid == 0:
        print("child", abba("child"), flush=True)
        # Any late (spurious) report would show now: the watcher passes twice
        # over a probe waiting on an Event (main runs: no deadlock).
        status = 1
        try:
            ev = threading.Event()
            probe = threading.Thread(target=ev.wait, daemon=True)
            probe.start()
            try:
                wait_watched(2, of=[probe])
                status = 0
            finally:
                ev.set()
        finally:
            sys.stdout.flush()
            os._exit(status)
    assert os.waitpid(pid, 0)[1] == 0, "the child failed"
    held.release()
    waiter.join(10)
    print("parent", abba("parent"), flush=True)
    print("pids", os.getpid(), pid, flush=True)
    """.replace("TESTS", repr(TESTS))
    env = {
        "DEADLOCKWATCH": "1",
        "DEADLOCKWATCH_ACTION": "raise",
        "DEADLOCKWATCH_LOCK_ORDER": "0",
        "DEADLOCKWATCH_INTERVAL": "0.02",
        "DEADLOCKWATCH_REPORT": str(report),
    }
    r = run_python(code, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [
        "child ['DeadlockError', 'done']",
        "parent ['DeadlockError', 'done']",
    ]
    parent, child = (int(x) for x in lines[2].split()[1:])
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(rec["kind"], rec["pid"]) for rec in records] == [
        ("deadlock", child),
        ("deadlock", parent),
    ]
    assert {n.split("-")[0] for n in records[0]["threads"]} == {"child"}
    assert {n.split("-")[0] for n in records[1]["threads"]} == {"parent"}
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 2
    assert [line for line in r.stderr.splitlines() if line.startswith("deadlockwatch:")] == [
        line for line in r.stderr.splitlines() if line.startswith("deadlockwatch: DEADLOCK")
    ]


def test_fork_right_after_start_up_leaves_the_child_able_to_import_and_detect() -> None:
    """The detector's own start-up imports must be over before enable() returns:
    a fork in the middle of an import in another thread leaves that module's
    import lock held, in the child, by a thread that does not exist there."""
    code = """
    import os, signal, sys, time
    pid = os.fork()  # at once: the detector has just been enabled by the .pth
    if pid == 0:
        import networkx  # what the watcher imports for its analysis
        import threading, deadlockwatch
        a, b = threading.Lock(), threading.Lock()
        barrier = threading.Barrier(2)
        out = []
        def worker(x, y):
            try:
                with x:
                    barrier.wait(10)
                    with y:
                        out.append("done")
            except deadlockwatch.DeadlockError:
                out.append("DeadlockError")
        ts = [threading.Thread(target=worker, args=p, daemon=True) for p in [(a, b), (b, a)]]
        [t.start() for t in ts]
        [t.join(10) for t in ts]
        print("child", sorted(out), flush=True)
        os._exit(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            print("child ended", flush=True)
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        print("child hung", flush=True)
    """
    env = {"DEADLOCKWATCH": "1", "DEADLOCKWATCH_ACTION": "raise", "DEADLOCKWATCH_LOCK_ORDER": "0"}
    for _ in range(3):
        r = run_python(code, env=env, timeout=90)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["child ['DeadlockError', 'done']", "child ended"]


def test_an_unwritable_report_file_is_said_and_detection_goes_on(tmp_path: Path) -> None:
    """The report's directory vanishes after start-up: each finding still gets
    its text report and its action, plus one line saying the file failed."""
    folder = tmp_path / "reports"
    folder.mkdir()
    code = f"""
    import os, sys, threading, deadlockwatch
    os.rmdir({str(folder)!r})
    out = []
    sys.path.insert(0, {TESTS!r})
    from _programs import lock_cycle
    for round in range(2):
        out += [round for how in lock_cycle().values() if how == "DeadlockError"]
    print(out)
    """
    env = {
        "DEADLOCKWATCH": "1",
        "DEADLOCKWATCH_ACTION": "raise",
        "DEADLOCKWATCH_LOCK_ORDER": "0",
        "DEADLOCKWATCH_REPORT": str(folder / "findings.jsonl"),
    }
    r = run_python(code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[0, 1]"
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 2
    failed = [line for line in r.stderr.splitlines() if "cannot write report" in line]
    assert len(failed) == 2 and "No such file or directory" in failed[0]


def test_a_report_write_taken_in_parts_still_gives_whole_lines(tmp_path: Path) -> None:
    """``os.write`` may take only part of a record (a signal, a nearly full
    disk): the rest is written after it, so each finding is one whole line."""
    report = tmp_path / "findings.jsonl"
    code = f"""
    import os, sys, deadlockwatch
    from deadlockwatch._watch import watcher
    real_write = os.write
    parts = []
    def write_in_parts(fd, data):
        parts.append(len(data))
        return real_write(fd, bytes(data[:64]))
    watcher.os = type(sys)("os_in_parts")
    watcher.os.__dict__.update(os.__dict__, write=write_in_parts)
    sys.path.insert(0, {TESTS!r})
    from _programs import lock_cycle
    print(sorted(lock_cycle().values()), len(parts) > 2)
    """
    env = {
        "DEADLOCKWATCH": "1",
        "DEADLOCKWATCH_ACTION": "raise",
        "DEADLOCKWATCH_LOCK_ORDER": "0",
        "DEADLOCKWATCH_TEXT": "0",
        "DEADLOCKWATCH_REPORT": str(report),
    }
    r = run_python(code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(" True")[0].count("DeadlockError") == 1, r.stdout
    assert r.stdout.strip().endswith("True"), r.stdout
    lines = report.read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 2, lines
    assert json.loads(lines[0])["kind"] == "deadlock"


def test_enabled_again_while_the_last_watcher_is_still_busy_gets_a_watcher() -> None:
    """disable() waits at most 2 s for the watcher; one busy longer (a slow
    tick under load) outlives it.  The new run must get a watcher of its own:
    once, the first wait of the new run found the old one "running", disarmed
    the start, and no watcher ran for the rest of the program (and later,
    none until the old one's tick ended: see
    test_enable_after_disable_watches_at_once_while_the_old_watcher_is_in_a_long_tick)."""
    code = f"""
    import sys, threading, time, deadlockwatch
    from deadlockwatch._watch.watcher import DETECTOR
    sys.path.insert(0, {TESTS!r})
    from _programs import lock_cycle
    deadlockwatch.enable(interval=0.02, threshold=0.05, on_deadlock="raise")
    real_tick = DETECTOR.tick
    entered, slow = threading.Event(), [True]

    def tick():
        if slow[0]:
            slow[0] = False
            entered.set()
            time.sleep(3)  # busier than disable() waits for
        real_tick()

    DETECTOR.tick = tick
    held = threading.Lock()
    held.acquire()
    t = threading.Thread(target=held.acquire, args=(True, 10), daemon=True)
    t.start()  # a blocking wait: the watcher starts
    assert entered.wait(10)
    held.release()
    t.join(10)
    deadlockwatch.disable()
    deadlockwatch.enable(interval=0.02, threshold=0.05, on_deadlock="raise")
    print(sorted(lock_cycle().values()))
    deadlockwatch.disable()
    """
    r = run_python(code, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['DeadlockError', 'done']", (r.stdout, r.stderr)


def test_no_helper_thread_of_the_detector_outlives_its_exit_handler() -> None:
    """networkx is imported in a helper thread at the first finding.  At
    exit the detector waits (bounded) until that import is over: a helper
    still importing when the interpreter finalizes is frozen holding the
    import system's lock, and a finalizer that imports then blocks for good
    (a real-world trial saw 1 exit in 3 hang after a finding).  The import is
    made slow here (1 s), so that it is certainly under way as the program
    ends; an exit handler registered before the detector's runs after it and
    counts the helpers still running: none (1 without the wait)."""
    proc = run_python(
        """
        import atexit, threading, time

        def check():
            from deadlockwatch._watch import watcher
            print("helpers at exit:", watcher._helper_count(0), flush=True)

        atexit.register(check)  # before the detector's own: runs after it
        import deadlockwatch
        from deadlockwatch._analysis import graph

        real = graph.load_networkx

        def slow():
            time.sleep(1.0)
            real()

        graph.load_networkx = slow
        deadlockwatch.enable(on_deadlock="raise", text=False, interval=0.05)
        a, b = threading.Lock(), threading.Lock()
        go = threading.Barrier(2)
        got = []

        def worker(first, second):
            with first:
                go.wait(5)
                try:
                    with second:  # untimed; daemon threads, joined with a bound
                        pass
                except deadlockwatch.DeadlockError:
                    got.append("DeadlockError")

        ts = [threading.Thread(target=worker, args=p, daemon=True) for p in ((a, b), (b, a))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        print("found:", got, flush=True)
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "found: ['DeadlockError']" in proc.stdout, proc.stdout + proc.stderr
    assert "helpers at exit: 0" in proc.stdout, proc.stdout + proc.stderr


def test_logging_a_finding_leaves_threading_no_thread_of_the_detectors() -> None:
    """A finding is logged (the application configured logging) from a
    helper thread of the detector's, and a logging record asks threading for
    the current thread: threading made a ``_DummyThread`` for the helper and
    kept it for good (3.10, 3.11), so ``threading.enumerate()`` listed a thread
    the program never had, and a later thread given its ident (the watcher's,
    a 3.10 CI failure of test_watcher_is_invisible_to_threading) was listed
    under it.  The control: a thread of the program's own, not started by
    threading, that asks the same is listed (threading's own behaviour)."""
    proc = run_python(
        """
        import _thread, io, logging, threading, time
        import deadlockwatch
        from deadlockwatch._watch import watcher

        logging.basicConfig(level=logging.WARNING, stream=io.StringIO())
        deadlockwatch.enable(on_deadlock="report", text=False, interval=0.02, threshold=0.02)
        a, b = threading.Lock(), threading.Lock()
        with a:
            with b:
                pass
        with b:
            with a:  # an inversion: reported, and logged from a helper thread
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            watcher.DETECTOR.findings and watcher._helper_count(0) == 0
        ):
            time.sleep(0.01)
        print("findings:", [f.kind for f in watcher.DETECTOR.findings], flush=True)
        print("listed:", sorted(type(t).__name__ for t in threading.enumerate()), flush=True)
        done = []
        _thread.start_new_thread(lambda: done.append(threading.current_thread()), ())
        while not done:
            time.sleep(0.01)
        print("own:", type(done[0]).__name__ in [type(t).__name__ for t in threading.enumerate()])
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "findings: ['lock-order-inversion']" in proc.stdout, proc.stdout + proc.stderr
    assert "listed: ['_MainThread']" in proc.stdout, proc.stdout + proc.stderr
    if sys.version_info < (3, 12):
        assert "own: True" in proc.stdout, proc.stdout  # the control
