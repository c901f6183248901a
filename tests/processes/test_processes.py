"""Deadlocks between multiprocessing locks across processes.

Each scenario is a program of its own, run with ``DEADLOCKWATCH=1`` in its
environment (so every child process, whatever its start method, runs the
detector too) in a session of its own: at the end, whatever is left of it
(children included) is killed.  Interleavings are forced with events; every
wait is bounded; the ``raise-all`` action breaks the deadlocks, and the
processes print what they got.  All processes append to one JSON Lines
report, which is read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from deadlockwatch._config import unknown_env
from deadlockwatch._report.load import load_findings

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "fork"), reason="POSIX processes"
)

PRELUDE = """
import multiprocessing as mp, os, signal, sys, threading, time
from deadlockwatch import DeadlockError

def attempt(lock, who):
    try:
        with lock:
            print(f"{who}: acquired", flush=True)
    except DeadlockError as e:
        print(f"{who}: DeadlockError", flush=True)
"""


def run(
    tmp_path: Path, body: str, timeout: float = 90.0, **env: str
) -> tuple[str, list[dict[str, Any]]]:
    """Run PRELUDE + ``body`` as ``prog.py`` with the detector on; return its
    output and the findings every process of it reported."""
    report = tmp_path / "report.jsonl"
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + textwrap.dedent(body))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    full_env.update(
        DEADLOCKWATCH="1",
        DEADLOCKWATCH_INTERVAL="0.02",
        DEADLOCKWATCH_THRESHOLD="0.05",
        DEADLOCKWATCH_ACTION="raise-all",
        DEADLOCKWATCH_REPORT=str(report),
        PYTHONFAULTHANDLER="1",
    )
    full_env.update(env)
    proc = subprocess.Popen(
        [sys.executable, str(prog)],
        cwd=tmp_path,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the scenario hung:\n{out}\n{err}")
    finally:
        # Every child of the scenario, whatever state it is in.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out + err
    assert "internal error" not in err, err
    _LAST[:] = [out, err]
    findings = []
    if report.exists():
        findings = [json.loads(line) for line in report.read_text().splitlines() if line]
    return out, findings


#: The last scenario's output, for failure messages.
_LAST: list[str] = []


def deadlocks(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f["kind"] == "deadlock"]


def only_deadlock(findings: list[dict[str, Any]]) -> dict[str, Any]:
    found = deadlocks(findings)
    assert len(found) == 1, (findings, _LAST)
    return found[0]


ABBA = """
def child(a, b, ready, go):
    with b:
        ready.set()
        go.wait(10)
        attempt(a, "child")

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1] if len(sys.argv) > 1 else "{method}")
    a = ctx.Lock()
    b = ctx.Lock()
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=child, args=(a, b, ready, go), name="child-proc", daemon=True)
    p.start()
    with a:
        assert ready.wait(30)
        go.set()
        start = time.monotonic()
        attempt(b, "parent")
        print(f"latency {{time.monotonic() - start:.3f}}", flush=True)
    p.join(30)
    print("child exit", p.exitcode, flush=True)
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_two_process_abba(tmp_path: Path, method: str) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method")
    out, findings = run(tmp_path, ABBA.format(method=method))
    f = only_deadlock(findings)
    assert f["cause"] == "2 threads each wait for a resource held by the next"
    assert len(f["cycle"]) == 2
    assert all(f["conditions"].values()), f["reasons"]
    details = {d["name"]: d for d in f["thread_details"]}
    processes = sorted(d["process"] for d in details.values())
    assert processes == ["MainProcess", "child-proc"], details
    assert len({d["pid"] for d in details.values()}) == 2
    for d in details.values():
        assert d["waits_for"]["resource"] in {r["id"] for r in f["resources"]}
        assert [h["resource"] for h in d["holds"]] != [d["waits_for"]["resource"]]
        assert d["holds"][0]["acquired_at"]["file"].endswith("prog.py")
    locks = [r for r in f["resources"] if r["type"] == "mp.Lock"]
    assert len(locks) == 2 and all(r["created_at"] for r in locks), locks
    assert all(s[-1]["code"] == "with lock:" for s in f["stacks"].values()), f["stacks"]
    assert "DeadlockError" in out and "child exit 0" in out
    # The saved report reads back, processes and all.
    (loaded,) = load_findings(str(tmp_path / "report.jsonl"))
    assert sorted(t.process for t in loaded.threads) == ["MainProcess", "child-proc"]


def test_three_processes_in_a_cycle_with_junk_in_the_run_dir(tmp_path: Path) -> None:
    out, findings = run(
        tmp_path,
        """
        def member(i, locks, holding, name):
            with locks[i]:
                holding.wait(10)
                attempt(locks[(i + 1) % 3], name)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            locks = [ctx.Lock() for _ in range(3)]
            holding = ctx.Barrier(3)
            # Files another process left half written, or not ours at all,
            # are skipped.
            run_dir = os.environ["DEADLOCKWATCH_RUN_DIR"]
            for name, text in [("1.json", '{"version": 1, "pid": 1, "thr'),
                               ("2.json", '{"version": 1, "pid": 2, "threads": 7}'),
                               ("3.json", "[]"), ("notes.txt", "x")]:
                with open(os.path.join(run_dir, name), "w") as f:
                    f.write(text)
            ps = [ctx.Process(target=member, args=(i, locks, holding, f"member-{i}"),
                              name=f"member-{i}", daemon=True) for i in (1, 2)]
            for p in ps:
                p.start()
            member(0, locks, holding, "member-0")
            for p in ps:
                p.join(30)
            print("exits", [p.exitcode for p in ps], flush=True)
        """,
    )
    f = only_deadlock(findings)
    assert f["cause"] == "3 threads each wait for a resource held by the next"
    assert sorted(d["process"] for d in f["thread_details"]) == [
        "MainProcess",
        "member-1",
        "member-2",
    ]
    assert "DeadlockError" in out and "exits [0, 0]" in out


def test_a_process_killed_holding_a_lock(tmp_path: Path) -> None:
    out, findings = run(
        tmp_path,
        """
        def holder(lock, held):
            lock.acquire()
            held.set()
            time.sleep(60)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            lock = ctx.Lock()
            held = ctx.Event()
            p = ctx.Process(target=holder, args=(lock, held), name="holder-proc", daemon=True)
            p.start()
            assert held.wait(30)
            time.sleep(0.5)  # held a while: published in the run directory
            os.kill(p.pid, signal.SIGKILL)
            time.sleep(0.1)  # not reaped: a zombie still has its pid
            attempt(lock, "parent")
            p.join(10)
            print("holder exit", p.exitcode, flush=True)
        """,
    )
    f = only_deadlock(findings)
    assert f["cause"].startswith("mp.Lock(created prog.py:")
    assert "is held by process" in f["cause"] and "(holder-proc), which exited" in f["cause"]
    holder = next(d for d in f["thread_details"] if d["process"] == "holder-proc")
    assert holder["alive"] is False
    assert "parent: DeadlockError" in out and "holder exit -9" in out


KILLED_AT_ONCE = """
def holder(lock):
    with lock:
        os.kill(os.getpid(), signal.SIGKILL)  # before its watcher's first tick

def exits_holding(lock):
    lock.acquire()  # and returns: the process ends normally, holding it

if __name__ == "__main__":
    ctx = mp.get_context("{method}")
    lock = ctx.Lock()
    target = exits_holding if "{how}" == "exits" else holder
    p = ctx.Process(target=target, args=(lock,), name="holder-proc", daemon=True)
    p.start()
    p.join(30)
    print("holder exit", p.exitcode, flush=True)
    import io, deadlockwatch
    buf = io.StringIO()
    deadlockwatch.dump(buf)
    other = buf.getvalue().split("of other processes")[-1]
    print("dump", "in holder-proc (pid" in other, "exited" in other, "prog.py" in other,
          flush=True)
    attempt(lock, "parent")
"""


@pytest.mark.parametrize(
    ("method", "how"), [("fork", "killed"), ("spawn", "killed"), ("forkserver", "exits")]
)
def test_a_holder_gone_before_it_published_anything(tmp_path: Path, method: str, how: str) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method")
    out, findings = run(tmp_path, KILLED_AT_ONCE.format(method=method, how=how))
    assert ("holder exit -9" if how == "killed" else "holder exit 0") in out, out
    f = only_deadlock(findings)
    assert f["cause"].startswith("mp.Lock(created prog.py:")
    assert "is held by process" in f["cause"] and "(holder-proc), which exited" in f["cause"]
    holder = next(d for d in f["thread_details"] if d["process"] == "holder-proc")
    assert holder["alive"] is False and holder["name"].startswith("MainThread in holder-proc")
    (held,) = holder["holds"]
    assert held["acquired_at"]["file"].endswith("prog.py")
    assert held["acquired_at"]["function"] in ("holder", "exits_holding")
    assert "parent: DeadlockError" in out
    assert "dump True True True" in out, out


@pytest.mark.parametrize("published", [False, True])
def test_a_killed_process_that_had_let_go_is_no_holder(tmp_path: Path, published: bool) -> None:
    """Its slot was cleared before it let go: another process holding the lock
    a while (alive, running, its detector off so it publishes nothing) is no
    deadlock.  Also when the killed process had published the hold (it held
    the lock a while) and was killed before its watcher took that back: its
    .holds file, not that stale snapshot, says what it held when it died."""
    out, findings = run(
        tmp_path,
        """
        def brief(lock):
            with lock:
                time.sleep(0.5 if {published} else 0)  # published: held across ticks
            os.kill(os.getpid(), signal.SIGKILL)

        def slow(lock, held):
            import deadlockwatch
            deadlockwatch.disable()
            with lock:
                held.set()
                time.sleep(0.6)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            lock, held = ctx.Lock(), ctx.Event()
            p = ctx.Process(target=brief, args=(lock,), name="brief", daemon=True)
            p.start()
            p.join(30)
            run_dir = os.environ["DEADLOCKWATCH_RUN_DIR"]
            print("left", os.path.exists(os.path.join(run_dir, f"{p.pid}.json")), flush=True)
            q = ctx.Process(target=slow, args=(lock, held), name="slow", daemon=True)
            q.start()
            assert held.wait(30)
            attempt(lock, "parent")
            q.join(30)
            print("exits", p.exitcode, q.exitcode, flush=True)
        """.replace("{published}", str(published)),
    )
    assert deadlocks(findings) == []
    assert "parent: acquired" in out and "exits -9 0" in out
    assert f"left {published}" in out, out


def test_a_holder_with_more_locks_than_its_holds_file_has_slots(tmp_path: Path) -> None:
    """The lock past the last slot is in no slot: the file says it is
    incomplete, and the snapshot the process published is used instead."""
    out, findings = run(
        tmp_path,
        """
        from deadlockwatch._processes import ledger as _ledger

        _ledger.SLOTS = 4  # as if it had 1,024 locks held already

        def holder(locks, held):
            for lock in locks:
                lock.acquire()
            held.set()
            time.sleep(60)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            locks = [ctx.Lock() for _ in range(_ledger.SLOTS + 1)]
            held = ctx.Event()
            p = ctx.Process(target=holder, args=(locks, held), name="holder-proc", daemon=True)
            p.start()
            assert held.wait(30)
            time.sleep(0.5)  # held a while: published in the run directory
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
            attempt(locks[-1], "parent")
        """,
    )
    f = only_deadlock(findings)
    assert "(holder-proc), which exited" in f["cause"]
    assert "parent: DeadlockError" in out


def test_signals_across_processes_that_can_still_come_are_no_deadlock(tmp_path: Path) -> None:
    """Waits on multiprocessing Events, Conditions, Semaphores and a full
    Queue, each of which another process (running, not blocked) ends a while
    later: none is a deadlock.  The waits have no timeout (the run's own
    timeout bounds them).  (A Queue's writer holds units of its
    BoundedSemaphore that its reader releases: counted as owned, it would be
    waiting for itself.)"""
    out, findings = run(
        tmp_path,
        """
        def later(what, ev, cond, sem, q):
            time.sleep(0.6)
            if what == "event":
                ev.set()
            elif what == "condition":
                with cond:
                    cond.notify_all()
            elif what == "semaphore":
                sem.release()
            else:
                q.get(timeout=10)

        def holds_sem(sem, held):
            sem.acquire()
            sem.acquire()
            held.set()
            time.sleep(0.6)
            sem.release()

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            ev, cond, sem = ctx.Event(), ctx.Condition(), ctx.Semaphore(0)
            q = ctx.Queue(maxsize=2)
            for what in ("event", "condition", "semaphore", "queue"):
                if what == "queue":
                    q.put(1); q.put(2)
                p = ctx.Process(target=later, args=(what, ev, cond, sem, q),
                                name=f"later-{what}", daemon=True)
                if what == "condition":
                    cond.acquire()
                p.start()
                if what == "event":
                    print("event", ev.wait(), flush=True)
                elif what == "condition":
                    print("condition", cond.wait(), flush=True)
                    cond.release()
                elif what == "semaphore":
                    print("semaphore", sem.acquire(), flush=True)
                else:
                    q.put(3)
                    print("queue", "put", flush=True)
                p.join(30)
            pool, held = ctx.BoundedSemaphore(2), ctx.Event()
            p = ctx.Process(target=holds_sem, args=(pool, held), name="sem-holder", daemon=True)
            p.start()
            assert held.wait(30)
            print("pool", pool.acquire(), flush=True)
            p.join(30)
            print("exit", p.exitcode, flush=True)
        """,
    )
    assert deadlocks(findings) == [], [(f["cause"], f["thread_details"]) for f in findings]
    for line in ("event True", "condition True", "semaphore True", "queue put", "pool True"):
        assert line in out, out
    assert "exit 0" in out


POOL_ABBA = """
import concurrent.futures

def init(a, b, barrier):
    global LOCKS, BARRIER
    LOCKS, BARRIER = (a, b), barrier

def task(i):
    first, second = LOCKS if i == 0 else LOCKS[::-1]
    with first:
        BARRIER.wait(20)  # each task in its own worker: the other one is busy
        try:
            with second:
                return f"task {{i}}: acquired"
        except DeadlockError:
            return f"task {{i}}: DeadlockError"

if __name__ == "__main__":
    ctx = mp.get_context("{method}")
    a, b, barrier = ctx.Lock(), ctx.Lock(), ctx.Barrier(2)
    if "{kind}" == "pool":
        with ctx.Pool(2, initializer=init, initargs=(a, b, barrier)) as pool:
            print(pool.map(task, [0, 1], chunksize=1), flush=True)
    else:
        with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=ctx, initializer=init, initargs=(a, b, barrier)
        ) as ex:
            print(list(ex.map(task, [0, 1])), flush=True)
"""


@pytest.mark.parametrize(("kind", "method"), [("pool", "spawn"), ("executor", "forkserver")])
def test_a_deadlock_between_pool_workers(tmp_path: Path, kind: str, method: str) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method")
    out, findings = run(tmp_path, POOL_ABBA.format(kind=kind, method=method))
    f = only_deadlock(findings)
    assert f["cause"] == "2 threads each wait for a resource held by the next"
    details = f["thread_details"]
    assert len({d["pid"] for d in details}) == 2
    prefix = "SpawnPoolWorker-" if kind == "pool" else "ForkServerProcess-"
    assert all(d["process"].startswith(prefix) for d in details), details
    for d in details:
        (held,) = d["holds"]
        assert held["acquired_at"]["function"] == "task"
        assert d["waits_for"]["at"]["function"] == "task"
    # Each worker acts when it has confirmed the finding itself: the one that
    # is later may find the lock already let go by the other.
    assert "DeadlockError" in out and "task 0: " in out and "task 1: " in out, out


def test_value_and_array_locks(tmp_path: Path) -> None:
    out, findings = run(
        tmp_path,
        """
        def child(v, arr, ready, go):
            with arr.get_lock():
                ready.set()
                go.wait(10)
                attempt(v.get_lock(), "child")

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            v = ctx.Value("i", 0)
            arr = ctx.Array("i", 3)
            ready, go = ctx.Event(), ctx.Event()
            p = ctx.Process(target=child, args=(v, arr, ready, go), name="child-proc", daemon=True)
            p.start()
            with v.get_lock():
                assert ready.wait(30)
                go.set()
                attempt(arr.get_lock(), "parent")
            p.join(30)
            print("child exit", p.exitcode, flush=True)
        """,
    )
    f = only_deadlock(findings)
    assert {r["type"] for r in f["resources"] if r["id"] in str(f["cycle"])} == {"mp.RLock"}
    assert "DeadlockError" in out and "child exit 0" in out


def test_busy_pools_and_a_lock_held_a_while_are_no_deadlock(tmp_path: Path) -> None:
    out, findings = run(
        tmp_path,
        """
        import concurrent.futures

        def work(x):
            time.sleep(0.01)
            return x * x

        def slow_holder(lock, held):
            with lock:
                held.set()
                time.sleep(0.6)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            with ctx.Pool(2) as pool:
                print("pool", sum(pool.map(work, range(60), chunksize=1)), flush=True)
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
                print("executor", sum(ex.map(work, range(60))), flush=True)
            lock, held = ctx.Lock(), ctx.Event()
            p = ctx.Process(target=slow_holder, args=(lock, held), name="slow", daemon=True)
            p.start()
            assert held.wait(30)
            attempt(lock, "parent")  # blocks 0.6 s: held, not deadlocked
            p.join(30)
            print("slow exit", p.exitcode, flush=True)
        """,
    )
    assert deadlocks(findings) == []
    assert "pool 70210" in out and "executor 70210" in out
    assert "parent: acquired" in out and "slow exit 0" in out


def test_a_cycle_through_a_thread_and_a_process(tmp_path: Path) -> None:
    out, findings = run(
        tmp_path,
        """
        def child(a, b, ready, go):
            with b:
                ready.set()
                go.wait(10)
                attempt(a, "child")

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            a, b = ctx.Lock(), ctx.Lock()
            local = threading.Lock()
            ready, go = ctx.Event(), ctx.Event()
            p = ctx.Process(target=child, args=(a, b, ready, go), name="child-proc", daemon=True)
            p.start()
            assert ready.wait(30)
            worker_holds = threading.Event()
            def worker():
                with local:
                    worker_holds.set()
                    attempt(b, "worker")
            t = threading.Thread(target=worker, name="worker", daemon=True)
            with a:
                t.start()
                assert worker_holds.wait(10)
                go.set()
                attempt(local, "main")
            t.join(30)
            p.join(30)
            print("child exit", p.exitcode, flush=True)
        """,
    )
    f = only_deadlock(findings)
    assert f["cause"] == "3 threads each wait for a resource held by the next"
    names = sorted(d["name"] for d in f["thread_details"])
    assert [n.split(" in ")[0] for n in names] == ["MainThread", "MainThread", "worker"], names
    assert {r["type"] for r in f["resources"]} >= {"Lock", "mp.Lock"}
    assert "DeadlockError" in out and "child exit 0" in out


def test_the_run_directory_variable_is_no_unknown_option() -> None:
    assert unknown_env({"DEADLOCKWATCH_RUN_DIR": "/tmp/x", "DEADLOCKWATCH_TYPO": "1"}) == [
        "DEADLOCKWATCH_TYPO"
    ]


def test_check_and_dump_see_the_other_process(tmp_path: Path) -> None:
    out, findings = run(
        tmp_path,
        """
        import io
        import deadlockwatch

        def child(a, b, ready, go):
            with b:
                ready.set()
                go.wait(10)
                with a:
                    pass

        def reported():
            # Either process may be the one that reports the cycle, and a
            # finding is kept (DETECTOR.findings) before its line is written:
            # wait for the line itself, whoever writes it.
            try:
                with open(os.environ["DEADLOCKWATCH_REPORT"]) as f:
                    return any('"kind": "deadlock"' in line and line.endswith("\\n")
                               for line in f)
            except FileNotFoundError:
                return False

        def look(p):
            deadline = time.monotonic() + 20
            while not reported() and time.monotonic() < deadline:
                time.sleep(0.02)
            found = deadlockwatch.check()
            print("check", [(f.kind, sorted(t.process for t in f.threads)) for f in found],
                  flush=True)
            buf = io.StringIO()
            deadlockwatch.dump(buf)
            text = buf.getvalue()
            print("dump other", "of other processes, as they last published" in text,
                  "in child-proc (pid" in text.split("of other processes")[-1], flush=True)
            p.kill()
            os._exit(0)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            a, b = ctx.Lock(), ctx.Lock()
            ready, go = ctx.Event(), ctx.Event()
            p = ctx.Process(target=child, args=(a, b, ready, go), name="child-proc", daemon=True)
            p.start()
            threading.Thread(target=look, args=(p,), daemon=True).start()
            with a:
                assert ready.wait(30)
                go.set()
                with b:
                    pass
        """,
        DEADLOCKWATCH_ACTION="report",
    )
    assert "check [('deadlock', ['MainProcess', 'child-proc'])]" in out, out
    assert "dump other True True" in out, out
    only_deadlock(findings)


def _ledger_file(path: Path, slots: dict[int, tuple[Any, Any]], header: Any) -> None:
    from deadlockwatch._processes import ledger as _ledger

    buf = bytearray(_ledger.HEADER + _ledger.SLOT * 4)
    head = _ledger._encoded(header, _ledger.HEADER - 4)
    assert head is not None
    buf[: 4 + len(head)] = _ledger.MAGIC + head
    for index, (lock, holder) in slots.items():
        offset = _ledger.HEADER + index * _ledger.SLOT
        buf[offset] = 1
        for at, value in ((offset + 8, lock), (offset + _ledger._HOLDER, holder)):
            data = value if isinstance(value, bytes) else _ledger._encoded(value, 500)
            assert data is not None
            buf[at : at + len(data)] = data
    path.write_bytes(bytes(buf))


def test_a_holds_file_is_read_slot_by_slot_and_malformed_slots_are_skipped(
    tmp_path: Path,
) -> None:
    from deadlockwatch._processes import ledger as _ledger

    good = (["/mp-x", "mp.Lock", ["app.py", 3, "<module>"]], [7, "worker", False, None])
    _ledger_file(
        tmp_path / "4242.holds",
        {
            0: good,
            1: (["/mp-y", "mp.RLock", None], [7, ["not", "a", "name"], False, 5]),  # bad site
            2: (["/mp-z"], [8, "t", True, None]),  # too short
            3: (["/mp-w", "mp.Lock", None], b"\xff\xff{{{"),  # torn
        },
        {"pid": 4242, "start": 1, "process": "gone"},
    )
    (tmp_path / "4243.holds").write_bytes(b"nope")
    _ledger_file(tmp_path / "4244.holds", {}, {"pid": 4244, "start": 1, "process": "full"})
    with open(tmp_path / "4244.holds", "r+b") as f:
        f.seek(_ledger.HEADER - 1)
        f.write(b"\x01")
    assert _ledger.header(str(tmp_path / "4244.holds"))["incomplete"] is True  # type: ignore[index]
    assert sorted(pid for pid, _ in _ledger.files(str(tmp_path))) == [4242, 4243, 4244]
    assert _ledger.header(str(tmp_path / "4243.holds")) is None
    head = _ledger.header(str(tmp_path / "4242.holds"))
    assert head == {"pid": 4242, "start": 1, "process": "gone", "incomplete": False}
    data = _ledger.snapshot(str(tmp_path / "4242.holds"), head)
    assert data is not None
    (thread,) = data["threads"]
    assert (thread["ident"], thread["name"], thread["alive"]) == (7, "worker", False)
    assert thread["held"] == [[0, 1, None]]
    (res,) = data["resources"]
    assert (res["name"], res["type"], res["created_at"]) == (
        "/mp-x",
        "mp.Lock",
        ["app.py", 3, "<module>"],
    )
    assert res["holders"] == [[7, 1]]
