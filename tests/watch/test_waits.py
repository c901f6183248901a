"""Waits beyond locks: Condition, Event, Barrier, queues, joins, futures,
threads that exit holding a lock, fork, and the import system.

Each scenario runs in its own interpreter (a broken detector fails the test,
it never hangs the suite): the interleaving is forced with Events and
Barriers, every thread is a daemon, and the detector's ``raise-all`` action
unwinds the deadlocked threads, which print what they got.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _programs import TESTS
from conftest import run_python

PRELUDE = f"""
import os, sys, threading, time
import deadlockwatch
from deadlockwatch import DeadlockError
sys.path.insert(0, {TESTS!r})
from _programs import BOUND, until, wait_blocked, wait_watched
deadlockwatch.enable(
    interval=0.02, threshold=0.05, on_deadlock="raise-all", report=os.environ["REPORT"]
)

def spawn(fn, name):
    t = threading.Thread(target=guard(fn), name=name, daemon=True)
    t.start()
    return t

def guard(fn):
    def run():
        try:
            fn()
        except DeadlockError:
            name = threading.current_thread().name
            print(f"DeadlockError in {{name}}\\n", end="", flush=True)  # one write
    return run

def watcher_passes():
    \"\"\"Until the watcher has made two full passes from now (each one also
    reports what departed threads left held): a probe thread waits on an
    Event meanwhile (the caller runs, so it is no deadlock), then is let go.\"\"\"
    ev = threading.Event()
    probe = threading.Thread(target=ev.wait, name="probe", daemon=True)
    probe.start()
    try:
        wait_watched(2, of=[probe])
    finally:
        ev.set()
        probe.join(BOUND)
"""


def watched(
    tmp_path: Path, body: str, timeout: float = 60.0, as_file: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """Run PRELUDE + ``body`` (with ``-c``, or from ``prog.py`` when its source
    lines must be readable); return its stdout and the findings it reported."""
    report = tmp_path / "report.jsonl"
    program = PRELUDE + textwrap.dedent(body)
    args = None
    if as_file:
        (tmp_path / "prog.py").write_text(program)
        program, args = (
            "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')",
            [str(tmp_path / "prog.py")],
        )
    proc = run_python(program, env={"REPORT": str(report)}, timeout=timeout, args=args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    findings = []
    if report.exists():
        findings = [json.loads(line) for line in report.read_text().splitlines() if line]
    return proc.stdout, findings


def line(body: str, needle: str) -> int:
    """The line of the program (PRELUDE + ``body``) where ``needle`` first appears."""
    lines = (PRELUDE + textwrap.dedent(body)).splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def only(findings: list[dict[str, Any]], kind: str = "deadlock") -> dict[str, Any]:
    matching = [f for f in findings if f["kind"] == kind]
    assert len(matching) == 1, findings
    return matching[0]


def resource(finding: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [r for r in finding["resources"] if r["type"] == type_]
    assert found, finding["resources"]
    return found[0]


# -- deadlocks through signals -----------------------------------------------------


def test_condition_wait_under_a_lock_the_notifier_needs(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        lock = threading.Lock()
        cond = threading.Condition()
        items = []
        waiting = threading.Event()
        def consumer():
            with lock:
                with cond:
                    waiting.set()
                    while not items:
                        cond.wait()
        def producer():
            waiting.wait(10)
            with lock:
                with cond:
                    items.append(1)
                    cond.notify()
        c = spawn(consumer, "consumer")
        p = spawn(producer, "producer")
        try:
            c.join()
        except DeadlockError:
            print("main: DeadlockError")
        c.join(10); p.join(10)
        print("done")
        """,
    )
    f = only(findings)
    assert f["cause"].startswith("'consumer' waits on Condition(created")
    assert "while holding Lock(created" in f["cause"]
    assert "which 'producer' needs before it could notify it" in f["cause"]
    assert {s["thread"] for s in f["cycle"]} == {"consumer", "producer"}
    cond = resource(f, "Condition")
    assert cond["kind"] == "signal" and cond["holders"] == {}
    assert "DeadlockError in consumer" in out and "DeadlockError in producer" in out
    # The consumer does not hold the Condition's own lock while it waits.
    details = {d["name"]: d for d in f["thread_details"]}
    held = {h["resource"] for h in details["consumer"]["holds"]}
    assert held == {resource(f, "Lock")["id"]}


#: The main thread holds the lock its setter needs, and waits for the Event.
EVENT_UNDER_LOCK = """
lock = threading.Lock()
ready = threading.Event()
def setter():
    with lock:
        ready.set()
with lock:
    spawn(setter, "setter")
    try:
        ready.wait()
    except DeadlockError:
        print("main: DeadlockError")
"""


def test_event_that_only_a_blocked_thread_would_set(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        EVENT_UNDER_LOCK,
    )
    f = only(findings)
    assert "waits on Event(created" in f["cause"]
    assert "which 'setter' needs before it could set it" in f["cause"]
    assert "main: DeadlockError" in out


def test_event_nobody_can_set(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        never = threading.Event()
        try:
            never.wait()
        except DeadlockError as e:
            print("main:", e)
        """,
    )
    f = only(findings)
    assert f["cause"].startswith("no thread that can run will ever set Event(created")
    assert f["cycle"] == []
    assert f["conditions"]["circular_wait"] is False
    # Holding nothing: hold and wait does not hold, and the block says so.
    assert f["conditions"]["hold_and_wait"] is False
    assert f["reasons"]["hold_and_wait"] == "'MainThread' holds nothing while it waits"
    assert "main: deadlock: no thread that can run will ever set Event" in out


def test_a_chain_reads_its_conditions_without_contradiction(tmp_path: Path) -> None:
    """A chain, not a cycle: 'holder' waits on an Event nobody can set while
    holding a Lock 'other' needs.  Its Coffman block says who holds what
    while waiting, and that no cycle is needed (it read "hold and wait no:
    'other' holds nothing while it waits" under a DEADLOCK heading)."""
    out, findings = watched(
        tmp_path,
        """
        def setup():
            lock = threading.Lock()
            never = threading.Event()
            holding = threading.Event()
            def holder():
                with lock:
                    holding.set()
                    never.wait()
            def other():
                holding.wait(10)
                with lock:
                    pass
            return [spawn(holder, "holder"), spawn(other, "other")]
        for t in setup():
            t.join(10)
        """,
    )
    f = only(findings)
    assert f["kind"] == "deadlock" and f["cycle"] == []
    conditions, reasons = f["conditions"], f["reasons"]
    assert conditions["hold_and_wait"] is True
    assert reasons["hold_and_wait"].startswith("'holder' waits holding Lock(created")
    assert reasons["hold_and_wait"].endswith("which 'other' need(s)")
    assert conditions["circular_wait"] is False
    assert reasons["circular_wait"] == (
        "none needed: the chain ends in a wait that no thread that can run will ever end"
    )
    assert reasons["mutual_exclusion"] == "no resource they wait for has a free unit"
    assert "DeadlockError in holder" in out


def test_queue_get_under_a_lock_the_producer_needs(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        import queue
        lock = threading.Lock()
        q = queue.Queue()
        def producer():
            with lock:
                q.put(1)
        with lock:
            spawn(producer, "producer")
            try:
                q.get()
            except DeadlockError:
                print("main: DeadlockError")
        """,
    )
    f = only(findings)
    assert "main: DeadlockError" in out
    assert "waits on Queue(created" in f["cause"]
    assert "'producer' needs before it could put an item into it" in f["cause"]
    q = resource(f, "Queue")
    assert q["detail"] == "empty"
    # The wait is placed where the application called get(), not in queue.py.
    main = next(d for d in f["thread_details"] if d["name"] == "MainThread")
    assert main["waits_for"]["at"]["function"] == "<module>"


def test_queue_put_on_a_full_queue_under_a_lock(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        import queue
        lock = threading.Lock()
        q = queue.LifoQueue(maxsize=1)
        q.put(0)
        def consumer():
            with lock:
                q.get()
        with lock:
            spawn(consumer, "consumer")
            try:
                q.put(1)
            except DeadlockError:
                print("main: DeadlockError")
        """,
    )
    f = only(findings)
    assert "main: DeadlockError" in out
    assert "waits on LifoQueue(created" in f["cause"]
    assert "before it could take an item from it" in f["cause"]
    assert resource(f, "LifoQueue")["detail"] == "full, maxsize 1"


def test_barrier_a_party_never_reaches(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        lock = threading.Lock()
        barrier = threading.Barrier(2)
        def late():
            with lock:
                barrier.wait()
        with lock:
            t = spawn(late, "late")
            try:
                barrier.wait()
            except DeadlockError:
                print("main: DeadlockError")
        t.join(10)
        """,
    )
    f = only(findings)
    assert "main: DeadlockError" in out and "DeadlockError in late" in out
    assert "waits on Barrier(created" in f["cause"]
    assert "'late' needs before it could reach it" in f["cause"]
    assert resource(f, "Barrier")["detail"] == "1 of 2 parties waiting"


# -- joins and futures -----------------------------------------------------------


def test_join_of_a_thread_waiting_for_the_joiners_lock(tmp_path: Path) -> None:
    body = """
        lock = threading.Lock()
        def worker():
            with lock:
                pass
        with lock:
            t = spawn(worker, "worker")
            try:
                t.join()
            except DeadlockError:
                print("main: DeadlockError")
        t.join(10)
        print("alive after:", t.is_alive())
        """
    out, findings = watched(tmp_path, body)
    f = only(findings)
    made = line(body, "lock = threading.Lock()")
    assert f["cause"] == (
        f"'MainThread' joins 'worker', which waits for Lock(created <string>:{made}) "
        "held by 'MainThread'"
    )
    thread = resource(f, "Thread")
    assert thread["kind"] == "join" and thread["holders"] == {"worker": 1}
    assert "main: DeadlockError" in out and "alive after: False" in out


@pytest.mark.parametrize("workers", [1, 2])
def test_executor_starvation(tmp_path: Path, workers: int) -> None:
    out, findings = watched(
        tmp_path,
        f"""
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(max_workers={workers}, thread_name_prefix="pool")
        started = threading.Barrier({workers})
        def inner():
            return 1
        def outer():
            started.wait(10)
            return pool.submit(inner).result()
        futures = [pool.submit(outer) for _ in range({workers})]
        for fut in futures:
            try:
                fut.result()
            except DeadlockError:
                print("main: DeadlockError")
        pool.shutdown(wait=False)
        """,
    )
    f = only(findings)
    if workers == 1:
        expected = "the only worker of ThreadPoolExecutor 'pool' waits on a future queued behind it"
    else:
        expected = "all 2 workers of ThreadPoolExecutor 'pool' wait on futures queued behind them"
    assert f["cause"] == expected
    future = resource(f, "Future")
    assert future["detail"] == "pending in ThreadPoolExecutor 'pool'"
    assert future["kind"] == "future"
    names = [d["name"] for d in f["thread_details"]]
    assert {f"pool_{i}" for i in range(workers)} <= set(names)
    assert "MainThread" in names  # stuck behind: it waits on the outer futures
    assert "main: DeadlockError" in out


def test_futures_wait_all_for_futures_queued_behind(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        from concurrent.futures import ThreadPoolExecutor, wait
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="solo")
        def outer():
            inner = [pool.submit(int) for _ in range(3)]
            wait(inner)
        fut = pool.submit(outer)
        try:
            fut.result()
        except DeadlockError:
            print("main: DeadlockError")
        pool.shutdown(wait=False)
        """,
    )
    f = only(findings)
    assert "main: DeadlockError" in out
    assert f["cause"].startswith("the only worker of ThreadPoolExecutor 'solo'")
    futures = resource(f, "Futures")
    assert futures["kind"] == "all" and futures["title"] == "all of 3 futures"
    assert len(futures["parts"]) == 3


def test_as_completed_any_future_that_can_run_is_no_deadlock(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        from concurrent.futures import ThreadPoolExecutor, as_completed
        pool = ThreadPoolExecutor(max_workers=2)
        gate = threading.Event()
        def slow():
            time.sleep(0.4)
            return 1
        fs = [pool.submit(slow) for _ in range(4)]
        print("sum", sum(f.result() for f in as_completed(fs, timeout=20)))
        pool.shutdown()
        """,
    )
    assert "sum 4" in out
    assert findings == []


# -- threads that end holding a lock; fork --------------------------------------


def test_thread_that_died_holding_a_lock(tmp_path: Path) -> None:
    body = """
        lock = threading.Lock()
        def loader():
            lock.acquire()
            raise ValueError("boom")
        t = threading.Thread(target=loader, name="loader")
        t.start(); t.join()
        from deadlockwatch._watch.watcher import DETECTOR
        until(lambda: DETECTOR.findings, what="the held-at-exit warning")
        try:
            with lock:
                pass
        except DeadlockError as e:
            print("main:", e)
        """
    out, findings = watched(tmp_path, body)
    made, taken = line(body, "lock = threading.Lock()"), line(body, "lock.acquire()")
    warning = only(findings, "held-at-exit")
    assert warning["cause"] == (
        f"thread 'loader' exited holding Lock(created <string>:{made}) (acquired at "
        f"<string>:{taken} in loader): any thread that acquires it will block forever"
    )
    dead = warning["thread_details"][0]
    assert dead["alive"] is False and dead["holds"][0]["acquired_at"]["line"] == taken
    f = only(findings)
    assert f["cause"] == f"Lock(created <string>:{made}) is held by thread 'loader', which exited"
    assert f"main: deadlock: Lock(created <string>:{made}) is held by thread 'loader'" in out


def test_thread_ending_after_handing_its_lock_over_is_no_warning(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        lock = threading.Lock()
        def opener():
            lock.acquire()
        t = threading.Thread(target=opener, name="opener")
        t.start(); t.join()
        lock.release()          # a latch: another thread lets it go
        watcher_passes()        # a late warning would show now
        with lock:
            print("acquired")
        """,
    )
    assert "acquired" in out
    assert findings == []


#: The first reader of a readers-writer lock takes the group Lock and returns;
#: it may end before the last reader, which releases it.  The writer waits
#: for the last reader (``RESCUE``), starved for a while, not deadlocked.
HANDED_OVER = """
group = threading.Lock()
def first_reader():
    group.acquire()        # returns normally, leaving it held: handed over
t = threading.Thread(target=first_reader, name="first-reader")
t.start(); t.join()
def last_reader():
    try:
        wait_watched(2, of=[threading.main_thread()])  # the writer waits, looked at
    finally:
        group.release()
RESCUE
try:
    with group:            # the writer
        print("writer ran")
except DeadlockError as e:
    print("writer:", e)
"""


def test_lock_left_held_by_a_thread_that_returned_normally_is_handed_over(
    tmp_path: Path,
) -> None:
    """A plain Lock may be released by any thread: one left held by a thread whose
    function that took it returned normally was handed over (readerwriterlock's
    first reader), not lost: no held-at-exit warning, and its waiter is no
    deadlock while another thread can run."""
    out, findings = watched(
        tmp_path, HANDED_OVER.replace("RESCUE", "spawn(last_reader, 'last-reader')")
    )
    assert "writer ran" in out
    assert findings == []
    # Positive control: nobody left to release it, the writer is reported.
    out, findings = watched(tmp_path, HANDED_OVER.replace("RESCUE", ""))
    assert "writer: deadlock:" in out
    assert [f["kind"] for f in findings] == ["deadlock"]
    assert "held by thread 'first-reader', which exited" in findings[0]["cause"]


def test_rlock_left_held_by_an_exited_thread_is_a_warning(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        from deadlockwatch._watch.watcher import DETECTOR
        lock = threading.RLock()
        t = threading.Thread(target=lock.acquire, name="leaker")
        t.start(); t.join()
        deadline = time.monotonic() + 10
        while not DETECTOR.findings and time.monotonic() < deadline:
            time.sleep(0.02)
        watcher_passes()  # nothing more comes
        print("done")
        """,
    )
    warning = only(findings, "held-at-exit")
    assert "done" in out
    assert warning["cause"].startswith("thread 'leaker' exited holding RLock(created")
    assert [f["kind"] for f in findings] == ["held-at-exit"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_blocking_on_a_lock_held_by_a_parent_thread_at_fork(tmp_path: Path) -> None:
    body = """
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        lock = threading.Lock()
        held = threading.Event()
        release = threading.Event()
        def holder():
            with lock:
                held.set()
                release.wait(10)
        spawn(holder, "holder")
        held.wait(10)
        pid = os.fork()
        if pid == 0:
            try:
                with lock:
                    pass
            except DeadlockError as e:
                print("child:", e, flush=True)
            os._exit(0)
        release.set()
        _, status = os.waitpid(pid, 0)
        print("child status", status)
        """
    out, findings = watched(tmp_path, body)
    made = line(body, "lock = threading.Lock()")
    f = only(findings)
    assert f["cause"] == (
        f"Lock(created <string>:{made}) is held by thread 'holder' of the parent process at "
        "the fork (only the forking thread survives a fork)"
    )
    gone = next(d for d in f["thread_details"] if d["name"] == "holder")
    assert gone["lost_at_fork"] is True
    assert f"child: deadlock: Lock(created <string>:{made}) is held by thread 'holder'" in out
    assert "child status 0" in out
    # No warning about the parent's threads "exiting" in the child.
    assert [x["kind"] for x in findings] == ["deadlock"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs the fork start method")
def test_multiprocessing_fork_child_blocking_on_a_parent_threads_lock(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        import multiprocessing, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        lock = threading.Lock()
        held = threading.Event()
        release = threading.Event()
        def holder():
            with lock:
                held.set()
                release.wait(10)
        def child():
            try:
                with lock:
                    pass
            except DeadlockError as e:
                print("child:", e.finding.kind, e.finding.pid == os.getpid(), flush=True)
        spawn(holder, "holder")
        held.wait(10)
        p = multiprocessing.get_context("fork").Process(target=child, name="worker-process")
        p.start()
        release.set()
        p.join(30)
        print("exitcode", p.exitcode)
        """,
    )
    f = only(findings)
    assert "is held by thread 'holder' of the parent process at the fork" in f["cause"]
    assert "child: deadlock True" in out and "exitcode 0" in out


# -- the import system --------------------------------------------------------------


def test_cycle_between_an_import_and_a_lock(tmp_path: Path) -> None:
    module = tmp_path / "slowmod.py"
    module.write_text(
        textwrap.dedent(
            """
            import threading, __main__
            if threading.current_thread().name == "importer":
                __main__.importing.set()
                __main__.go.wait(10)
                with __main__.lock:
                    pass
            """
        )
    )
    out, findings = watched(
        tmp_path,
        f"""
        sys.path.insert(0, {str(tmp_path)!r})
        lock = threading.Lock()
        importing = threading.Event()
        go = threading.Event()
        def importer():
            import slowmod
        def other():
            with lock:
                go.set()
                import slowmod
        i = spawn(importer, "importer")
        importing.wait(10)
        t = spawn(other, "other")
        i.join(10); t.join(10)
        print("done", i.is_alive(), t.is_alive())
        """,
    )
    f = only(findings)
    assert f["cause"] == (
        "'other' waits for the import of module 'slowmod', in progress in 'importer', "
        "which is blocked behind it"
    )
    imp = resource(f, "import")
    assert imp["kind"] == "import" and imp["holders"] == {"importer": 1}
    # The importer's error ends its import; the other thread then imports it.
    assert "DeadlockError in importer" in out and "done False False" in out


# -- primitives made before enable() ---------------------------------------------


def test_thread_blocked_on_an_untracked_lock_counts_as_running(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        deadlockwatch.disable()
        untracked = threading.Lock()          # made while disabled: invisible
        deadlockwatch.enable(interval=0.02, threshold=0.05, report=os.environ["REPORT"])
        tracked = threading.Lock()
        untracked.acquire()
        holding = threading.Event()
        def middle():
            with tracked:
                holding.set()
                with untracked:               # blocked outside the detector's view
                    pass
        def last():
            holding.wait(10)
            with tracked:
                pass
        m = spawn(middle, "middle")
        l = spawn(last, "last")
        wait_watched(2, of=[l])               # 'last' blocked, looked at
        import io
        buf = io.StringIO()
        deadlockwatch.dump(buf)
        untracked.release()
        m.join(10); l.join(10)
        print(buf.getvalue())
        print("ok", not m.is_alive() and not l.is_alive())
        """,
        as_file=True,
    )
    assert "ok True" in out
    assert findings == []  # 'middle' might be running: 'last' is not deadlocked
    assert "Blocked outside deadlockwatch's view" in out
    assert "'middle' at prog.py:" in out or "'middle' at " + str(tmp_path) in out
    assert "with untracked:" in out


def test_findings_list_threads_blocked_outside_the_view(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        deadlockwatch.disable()
        untracked = threading.Lock()
        deadlockwatch.enable(
            interval=0.02, threshold=0.05, on_deadlock="raise-all", report=os.environ["REPORT"]
        )
        untracked.acquire()
        spawn(lambda: untracked.acquire(), "bystander")
        a, b = threading.Lock(), threading.Lock()
        both = threading.Barrier(2)
        def worker(x, y):
            with x:
                both.wait(10)
                with y:
                    pass
        ts = [spawn(lambda: worker(a, b), "w1"), spawn(lambda: worker(b, a), "w2")]
        for t in ts:
            t.join(10)
        print("done")
        """,
        as_file=True,
    )
    f = only(findings)
    assert "done" in out
    assert len(f["outside_view"]) == 1
    assert f["outside_view"][0].startswith("'bystander' at ")
    assert f["outside_view"][0].endswith('spawn(lambda: untracked.acquire(), "bystander")')
    assert {d["name"] for d in f["thread_details"]} == {"w1", "w2"}


# -- no false alarms ----------------------------------------------------------------

NO_ALARM = {
    "idle_condition": """
        cond = threading.Condition()
        items = []
        def consumer():
            with cond:
                while not items:
                    cond.wait()
        t = spawn(consumer, "consumer")
        wait_watched(2, of=[t])      # looked at while the producer (main) can still notify
        with cond:
            items.append(1)
            cond.notify()
        t.join(10)
        print("ok", not t.is_alive())
    """,
    "semaphore_as_signal": """
        sem = threading.Semaphore(0)
        def signaller():
            time.sleep(0.4)
            sem.release()
        spawn(signaller, "signaller")
        sem.acquire()
        print("ok", True)
    """,
    "lock_handed_over": """
        lock = threading.Lock()
        lock.acquire()
        def releaser():
            time.sleep(0.4)
            lock.release()
        spawn(releaser, "releaser")
        lock.acquire()
        print("ok", True)
    """,
    "busy_executor": """
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=2) as pool:
            fs = [pool.submit(time.sleep, 0.2) for _ in range(4)]
            [f.result() for f in fs]
        print("ok", True)
    """,
    "event_set_by_a_sleeper": """
        ev = threading.Event()
        def sleeper():
            time.sleep(0.4)
            ev.set()
        spawn(sleeper, "sleeper")
        print("ok", ev.wait())
    """,
    "logging_from_many_threads": """
        import io, logging
        log = logging.getLogger("app")
        log.addHandler(logging.StreamHandler(io.StringIO()))
        log.setLevel(logging.INFO)
        def chatter():
            for i in range(300):
                log.info("message %d", i)
        ts = [spawn(chatter, f"chatter-{i}") for i in range(8)]
        for t in ts:
            t.join(20)
        print("ok", not any(t.is_alive() for t in ts))
    """,
    "idle_queue_pipeline": """
        import queue
        q = queue.Queue()
        out = queue.Queue()
        def consumer():
            while (item := q.get()) is not None:
                out.put(item)
        cs = [spawn(consumer, f"consumer-{i}") for i in range(3)]
        for i in range(3):
            time.sleep(0.15)          # the consumers idle in get() meanwhile
            q.put(i)
        for _ in cs:
            q.put(None)
        for t in cs:
            t.join(10)
        print("ok", sorted(out.get(timeout=5) for _ in range(3)) == [0, 1, 2])
    """,
    "join_of_a_sleeping_thread": """
        t = spawn(lambda: time.sleep(0.4), "sleeper")
        t.join()
        print("ok", not t.is_alive())
    """,
    "event_set_by_a_signal_handler": """
        import signal
        ev = threading.Event()
        signal.signal(signal.SIGALRM, lambda *a: ev.set())
        signal.setitimer(signal.ITIMER_REAL, 0.4)
        print("ok", ev.wait())
    """,
    "barrier_all_arrive": """
        b = threading.Barrier(3)
        looked = []
        def party():
            try:
                # main waits at the barrier, looked at, before the parties arrive
                wait_watched(2, of=[threading.main_thread()])
                looked.append(True)
            finally:
                b.wait()
        ts = [spawn(party, f"party-{i}") for i in range(2)]
        b.wait()
        print("ok", looked == [True, True])
    """,
}


@pytest.mark.parametrize("name", sorted(NO_ALARM))
def test_no_false_alarm(tmp_path: Path, name: str) -> None:
    if name == "event_set_by_a_signal_handler" and not hasattr(__import__("signal"), "setitimer"):
        pytest.skip("needs signal.setitimer")
    out, findings = watched(tmp_path, NO_ALARM[name])
    assert "ok True" in out, out
    assert findings == [], findings


# -- transparency of the patched waits ---------------------------------------------


def test_patched_waits_keep_their_results_and_errors(tmp_path: Path) -> None:
    out, _ = watched(
        tmp_path,
        """
        import queue
        cond = threading.Condition()
        try:
            cond.wait()
        except RuntimeError as e:
            print("unowned:", e)
        with cond:
            print("timed:", cond.wait(0.05), cond.wait(0), cond.wait_for(lambda: 7, 1))
        try:
            with cond:
                cond.wait("x")
        except TypeError as e:
            print("type:", type(e).__name__)
        t = threading.Thread(target=lambda: None)
        try:
            t.join()
        except RuntimeError as e:
            print("join:", e)
        try:
            threading.current_thread().join()
        except RuntimeError as e:
            print("self-join:", e)
        t.start(); print("joined:", t.join(), t.is_alive())
        try:
            queue.Queue().get(timeout=0.05)
        except queue.Empty:
            print("empty")
        print("event:", threading.Event().wait(0.05))
        def kinds():
            wait, join = threading.Condition.wait, threading.Thread.join
            return type(wait).__name__, hasattr(wait, "__wrapped__"), type(join).__name__
        print("patched: %s %s %s" % kinds())
        deadlockwatch.disable()
        print("restored: %s %s %s" % kinds())
        """,
    )
    assert "unowned: cannot wait on un-acquired lock" in out
    assert "timed: False False 7" in out
    assert "type: TypeError" in out
    assert "join: cannot join thread before it is started" in out
    assert "self-join: cannot join current thread" in out
    assert "joined: None False" in out
    assert "empty" in out and "event: False" in out
    # Condition.wait is patched as a plain function (functools.wraps), Thread.join
    # with wrapt's wrapper.
    assert "patched: function True BoundMethodWrapper" in out
    assert "restored: function False function" in out


def test_patched_names_pickle_like_the_originals(tmp_path: Path) -> None:
    out, findings = watched(
        tmp_path,
        """
        import pickle, concurrent.futures, multiprocessing
        names = [threading.Lock, threading.RLock, threading.Semaphore, threading.Condition.wait,
                 threading.Thread.join, concurrent.futures.Future.set_running_or_notify_cancel]
        print("factories", [pickle.loads(pickle.dumps(x)) is x for x in names[:3]])
        print("methods", [pickle.loads(pickle.dumps(x)) == x for x in names[3:]])
        if __name__ == "__main__":
            # A manager registers threading.Lock and sends its registry to a
            # spawned server process.
            manager = multiprocessing.get_context("spawn").Manager()
            lock, event = manager.Lock(), manager.Event()
            with lock:
                event.set()
            print("manager", event.is_set())
            manager.shutdown()
        """,
        as_file=True,
    )
    assert "factories [True, True, True]" in out
    assert "methods [True, True, True]" in out
    assert "manager True" in out
    assert findings == []


def test_dump_shows_condition_and_join_waits(tmp_path: Path) -> None:
    out, _ = watched(
        tmp_path,
        """
        import io
        ev = threading.Event()
        t = spawn(ev.wait, "waiter")
        wait_blocked([t])
        buf = io.StringIO()
        deadlockwatch.dump(buf)
        ev.set(); t.join(10)
        print(buf.getvalue())
        """,
    )
    assert "Thread 'waiter'" in out
    assert "for Event(created <string>:" in out
    assert "(not set)" in out or "held by nobody" in out


def test_reports_of_new_kinds_load_and_render(tmp_path: Path) -> None:
    from deadlockwatch._report.dot import to_dot
    from deadlockwatch._report.load import load_findings
    from deadlockwatch._report.text import format_text

    _, findings = watched(
        tmp_path,
        EVENT_UNDER_LOCK,
    )
    assert findings
    loaded = load_findings(str(tmp_path / "report.jsonl"))
    text = format_text(loaded[0])
    assert "'MainThread' waits on Event(created <string>:" in text
    assert "'setter' could set it" in text
    dot = to_dot(loaded)
    assert 'label="could set"' in dot


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX scenarios")
