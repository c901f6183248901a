"""Switching the detector on from the environment, its settings, reports and
actions: each case in a fresh interpreter, killed if it ever hangs."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from _programs import TESTS
from conftest import ABBA_START, run_python

#: A program that really deadlocks (daemon threads, so the process can still end).
ABBA = (
    ABBA_START
    + """t1.join(float(sys.argv[1]) if len(sys.argv) > 1 else 3)
print("main done", flush=True)
"""
)


def test_env_var_enables_and_reports_on_stderr() -> None:
    r = run_python(ABBA, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert "main done" in r.stdout
    assert "deadlockwatch: DEADLOCK" in r.stderr
    assert "'worker-1' waits for Lock(created <string>:4) held by 'worker-2'" in r.stderr
    assert "'worker-2' waits for Lock(created <string>:3) held by 'worker-1'" in r.stderr
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    for condition in (
        "mutual exclusion  yes",
        "hold and wait     yes",
        "no preemption     yes",
        "circular wait     yes",
    ):
        assert condition in r.stderr


def test_unset_env_var_loads_nothing() -> None:
    r = run_python("import sys; print('deadlockwatch' in sys.modules, 'threading' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]
    assert r.stderr == ""


@pytest.mark.parametrize("value", ["0", "false", "off", "no"])
def test_env_var_false_leaves_threading_alone(value: str) -> None:
    r = run_python(
        "import threading, _thread; print(threading.Lock is _thread.allocate_lock"
        " or threading.Lock is getattr(_thread, 'lock', None))",
        env={"DEADLOCKWATCH": value},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("var", "value", "accepted"),
    [
        ("DEADLOCKWATCH", "maybe", "one of 1, 0, true, false"),
        ("DEADLOCKWATCH_INTERVAL", "fast", "a number of seconds"),
        ("DEADLOCKWATCH_INTERVAL", "-1", "a number of seconds"),
        ("DEADLOCKWATCH_INTERVAL", "nan", "a number of seconds"),
        ("DEADLOCKWATCH_THRESHOLD", "-0.5", "a number of seconds >= 0"),
        ("DEADLOCKWATCH_ACTION", "explode", "one of report, raise, raise-all, abort"),
        ("DEADLOCKWATCH_REPORT", "/no/such/dir/r.jsonl", "existing directory"),
    ],
)
def test_bad_env_value_stops_startup_with_one_line(var: str, value: str, accepted: str) -> None:
    env = {"DEADLOCKWATCH": "1", var: value}
    r = run_python("print('program ran')", env=env)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert var in lines[0] and repr(value) in lines[0] and accepted in lines[0]


def test_unknown_variable_gets_a_warning() -> None:
    r = run_python("print('ok')", env={"DEADLOCKWATCH": "1", "DEADLOCKWATCH_INTERVL": "1"})
    assert r.returncode == 0
    assert "unknown environment variable DEADLOCKWATCH_INTERVL" in r.stderr


def test_json_lines_report(tmp_path: Path) -> None:
    report = tmp_path / "findings.jsonl"
    r = run_python(ABBA, env={"DEADLOCKWATCH": "1", "DEADLOCKWATCH_REPORT": str(report)})
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600
    records = [json.loads(line) for line in report.read_text().splitlines()]
    # The inversion is reported as the cycle forms, the deadlock once it is confirmed.
    assert [r["kind"] for r in records] == ["lock-order-inversion", "deadlock"]
    record = records[1]
    assert sorted(record["threads"]) == ["worker-1", "worker-2"]
    assert record["conditions"] == {
        "mutual_exclusion": True,
        "hold_and_wait": True,
        "no_preemption": True,
        "circular_wait": True,
    }
    assert [set(step) >= {"thread", "waits_for", "held_by"} for step in record["cycle"]] == [
        True
    ] * 2
    ids = {res["id"] for res in record["resources"]}
    assert {step["waits_for"] for step in record["cycle"]} == ids
    assert all(
        res["type"] == "Lock" and res["created_at"]["file"] == "<string>"
        for res in record["resources"]
    )
    assert set(record["stacks"]) == {"worker-1", "worker-2"}
    top = record["stacks"]["worker-1"][-1]
    assert set(top) == {"file", "line", "function", "code"} and top["function"] == "worker"
    assert record["pid"] > 0 and record["time"] > 0


def test_abort_exits_with_documented_status() -> None:
    import deadlockwatch

    r = run_python(ABBA, env={"DEADLOCKWATCH": "1", "DEADLOCKWATCH_ACTION": "abort"}, args=["30"])
    assert r.returncode == deadlockwatch.ABORT_EXIT_STATUS
    assert "deadlockwatch: DEADLOCK" in r.stderr
    assert "main done" not in r.stdout


def test_raise_lets_the_program_recover() -> None:
    code = """
    import threading, deadlockwatch
    deadlockwatch.enable(on_deadlock="raise")
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    out = []
    def worker(x, y):
        try:
            with x:
                barrier.wait(10)
                with y:
                    out.append("done")
        except deadlockwatch.DeadlockError as e:
            out.append(type(e).__name__ + ": " + str(e).split(":")[0])
    ts = [threading.Thread(target=worker, args=p, daemon=True) for p in [(a, b), (b, a)]]
    [t.start() for t in ts]; [t.join(10) for t in ts]
    print(sorted(out))
    """
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['DeadlockError: deadlock', 'done']"


def test_callable_action_receives_the_finding() -> None:
    code = """
    import threading, deadlockwatch
    got = threading.Event()
    def on_deadlock(finding):
        print(finding.kind, len(finding.cycle), sorted(t.name for t in finding.threads), flush=True)
        got.set()
    deadlockwatch.enable(on_deadlock=on_deadlock)
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    def worker(x, y):
        with x:
            barrier.wait(10)
            with y:
                pass
    for i, p in enumerate([(a, b), (b, a)]):
        threading.Thread(target=worker, args=p, daemon=True, name=f"w{i}").start()
    print("callback ran", got.wait(10), flush=True)
    """
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "deadlock 2 ['w0', 'w1']"
    assert lines[1] == "callback ran True"


def test_check_returns_the_finding_in_report_mode() -> None:
    assert "import os, sys, threading, time" in ABBA
    code = (
        ABBA.replace(
            "t1.join(",
            f"sys.path.insert(0, {TESTS!r}); from _programs import wait_watched\n"
            "wait_watched(2, of=[t1, t2])  # the cycle formed, looked at\n"
            "t1.join(",
        )
        + """
import deadlockwatch
(f,) = deadlockwatch.check()
print(f.kind, len(f.cycle), f.conditions.all_hold())
"""
    )
    r = run_python(code, env={"DEADLOCKWATCH": "1"}, args=["0.1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "deadlock 2 True"


def test_single_thread_bare_self_acquire_is_reported_by_the_watcher() -> None:
    code = """
    import threading, deadlockwatch
    deadlockwatch.enable(on_deadlock="raise")
    lock = threading.Lock()
    lock.acquire()
    try:
        lock.acquire()
    except deadlockwatch.DeadlockError as e:
        print("raised:", e.finding.cause)
    """
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "raised:" in r.stdout and "which it holds itself" in r.stdout


def test_self_deadlock_in_report_mode_prints_and_keeps_blocking() -> None:
    code = """
    import threading, deadlockwatch
    deadlockwatch.enable()
    lock = threading.Lock()
    def f():
        with lock:
            with lock:
                pass
    t = threading.Thread(target=f, daemon=True, name="selfish")
    t.start(); t.join(1.0)
    print("still blocked:", t.is_alive())
    """
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "still blocked: True"
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    assert "'selfish' waits for Lock(created <string>:4), which it holds itself" in r.stderr


def test_stacks_never_contain_local_values() -> None:
    code = ABBA.replace("    with x:\n", "    secret = 'hunter2-SECRET'\n    with x:\n")
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert "deadlockwatch: DEADLOCK" in r.stderr
    assert "hunter2" not in r.stderr


def test_import_auto_enables_with_environment_options() -> None:
    code = """
    import deadlockwatch.auto, deadlockwatch, threading
    from deadlockwatch._watch.watcher import DETECTOR
    print(deadlockwatch.is_enabled(), DETECTOR.config.interval, type(threading.Lock()).__name__)
    """
    r = run_python(code, env={"DEADLOCKWATCH_INTERVAL": "0.25"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "0.25", "TrackedLock"]
    off = run_python(code, env={"DEADLOCKWATCH": "0"})
    assert off.stdout.split()[0] == "False"


def test_enable_rejects_bad_arguments_before_patching() -> None:
    code = """
    import threading, deadlockwatch
    original = threading.Lock
    for kwargs in ({"interval": 0}, {"on_deadlock": "explode"}, {"report": 5}, {"intervall": 1}):
        try:
            deadlockwatch.enable(**kwargs)
        except (ValueError, TypeError) as e:
            print(type(e).__name__, "|", e)
        assert threading.Lock is original and not deadlockwatch.is_enabled()
    """
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (
        "ConfigError | deadlockwatch: invalid value 0 for enable(interval=...): "
        "expected a number of seconds >= 0.001 and at most 3600"
    )
    assert "enable(on_deadlock=...)" in lines[1] and "or a callable" in lines[1]
    assert "enable(report=...)" in lines[2] and "a file path" in lines[2]
    assert lines[3].startswith("TypeError | deadlockwatch: unknown option 'intervall'")


def test_clean_exit_prints_nothing() -> None:
    code = """
    import threading, queue
    from concurrent.futures import ThreadPoolExecutor
    q = queue.Queue()
    with ThreadPoolExecutor(4) as ex:
        total = sum(ex.map(lambda x: x * 2, range(200)))
    workers = [threading.Thread(target=lambda: [q.put(i) for i in range(50)]) for _ in range(4)]
    [t.start() for t in workers]
    [t.join() for t in workers]
    print(total, q.qsize())
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0
    assert r.stdout.strip() == "39800 200"
    assert r.stderr == ""


def test_findings_go_to_the_logging_logger_off_the_watcher() -> None:
    assert "import os, sys, threading, time" in ABBA
    code = (
        ABBA.replace(
            "import os, sys, threading, time",
            "import os, sys, threading, time, logging\n"
            "records = []\n"
            "class Keep(logging.Handler):\n"
            "    def emit(self, record):\n"
            "        first = record.getMessage().splitlines()[0]\n"
            "        records.append((record.name, record.levelname, first))\n"
            "logging.getLogger().addHandler(Keep())",
        )
        + f"\nsys.path.insert(0, {TESTS!r}); from _programs import until\n"
        + "until(lambda: records, what='the finding logged')\nprint(records)\n"
    )
    r = run_python(code, env={"DEADLOCKWATCH": "1", "DEADLOCKWATCH_LOCK_ORDER": "0"}, args=["1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith(
        "[('deadlockwatch', 'ERROR', 'deadlockwatch: DEADLOCK (pid"
    )


def test_multiprocessing_manager_with_spawn() -> None:
    """A spawned manager server receives threading.Lock & co. pickled."""
    code = """
    import multiprocessing, threading
    if __name__ == "__main__":
        with multiprocessing.get_context("spawn").Manager() as manager:
            lock, rlock, sem = manager.Lock(), manager.RLock(), manager.Semaphore(2)
            with lock, rlock, sem:
                print("in", type(threading.Lock()).__name__, flush=True)
        print("done", flush=True)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["in", "TrackedLock", "done"]
    assert "deadlockwatch" not in r.stderr


def test_child_forked_from_a_worker_thread_exits() -> None:
    """After fork only the forking thread survives; when it is not the main one,
    the child ends with it, so the child's watcher must not keep it alive."""
    code = """
    import os, threading
    def worker():
        pid = os.fork()
        if pid == 0:
            lock = threading.Lock()
            with lock:
                print("child ran", flush=True)
            return
        os.waitpid(pid, 0)
        print("parent done", flush=True)
    w = threading.Thread(target=worker)
    w.start()
    w.join()
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"}, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["child ran", "parent done"]


#: A deadlock through logging's module lock: a Logger class whose constructor
#: (run by ``logging.getLogger`` under that lock) takes an application lock,
#: while another thread holds the application lock and calls ``getLogger``.
LOGGING_DEADLOCK = """
import logging, os, sys, threading, time
from deadlockwatch._watch.watcher import DETECTOR

app = threading.Lock()
app_held = threading.Event()
in_logging = threading.Event()

class AppLogger(logging.Logger):
    def __init__(self, name):
        super().__init__(name)
        in_logging.set()  # logging's module lock is held here
        with app:
            pass

logging.setLoggerClass(AppLogger)

def holds_app():
    with app:
        app_held.set()
        in_logging.wait(10)
        logging.getLogger("from-holds-app")  # waits for logging's lock

def holds_logging():
    app_held.wait(10)
    logging.getLogger("from-holds-logging")  # takes logging's lock, then waits for app

for fn in (holds_app, holds_logging):
    threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
deadline = time.monotonic() + float(sys.argv[1])
while (
    all(f.kind != "deadlock" for f in DETECTOR.findings) and time.monotonic() < deadline
):
    time.sleep(0.02)
for f in DETECTOR.findings:
    files = sorted(os.path.basename(str(r.created_at.file)) for r in f.resources if r.created_at)
    print(f.kind, sorted(t.name for t in f.threads[: len(f.cycle)]), files)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # the two threads stay deadlocked, one of them inside logging
"""


def test_deadlock_through_loggings_module_lock_is_detected() -> None:
    """With DEADLOCKWATCH=1, logging (which imports threading first) makes its
    module lock after threading's factories are patched."""
    r = run_python(LOGGING_DEADLOCK, env={"DEADLOCKWATCH": "1"}, args=["10"], timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "deadlock ['holds_app', 'holds_logging'] ['<string>', '__init__.py']" in lines, (
        r.stdout,
        r.stderr,
    )


def test_modules_enabling_imports_make_tracked_locks() -> None:
    """Modules imported after threading (logging, wrapt's synchronization
    helpers) make tracked locks; a module the program imported before
    enabling keeps the locks it made then (they cannot be swapped safely)."""
    code = """
    import threading
    import logging, wrapt.synchronization as ws
    print(type(logging._lock).__name__, type(threading.RLock()).__name__)
    print(ws.RLock is threading.RLock, ws.Lock is threading.Lock)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["TrackedRLock TrackedRLock", "True True"]
    first = "import logging, deadlockwatch\ndeadlockwatch.enable()\n" + (
        "import threading\nprint(type(logging._lock).__name__, type(threading.RLock()).__name__)"
    )
    r = run_python(first)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["RLock", "TrackedRLock"]


# -- start-up does the least it can (issue 16) -------------------------------------------

#: What start-up with DEADLOCKWATCH=1 must not import: the detector is enabled
#: when the program imports threading.
HEAVY = (
    "threading",
    "asyncio",
    "logging",
    "concurrent.futures",
    "ssl",
    "socket",
    "subprocess",
    "email",
    "importlib.metadata",
    "inspect",
    "networkx",
    "wrapt",
    "dataclasses",
    "typing",
)


def test_startup_imports_nothing_heavy_and_starts_no_thread() -> None:
    code = f"""
    import sys, _thread
    print(sorted(m for m in {HEAVY!r} if m in sys.modules), _thread._count())
    print(sorted(m for m in sys.modules if m.startswith("deadlockwatch")))
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "[] 0"
    assert lines[1] == (
        "['deadlockwatch', 'deadlockwatch._config', 'deadlockwatch._startup', "
        "'deadlockwatch._track', 'deadlockwatch._track.hook']"
    )


def test_importing_threading_enables_before_any_other_module_sees_it() -> None:
    code = """
    import sys
    from threading import Lock, RLock  # bound at once: already the tracked factories
    import threading, logging, queue
    print(type(Lock()).__name__, type(RLock()).__name__, type(logging._lock).__name__,
          type(queue.Queue().mutex).__name__)
    print(threading.__loader__ is threading.__spec__.loader,
          type(threading.__loader__).__module__)
    print("wrapt" in sys.modules, "asyncio" in sys.modules)
    import deadlockwatch
    print(deadlockwatch.is_enabled())
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.splitlines() == [
        "TrackedLock TrackedRLock TrackedRLock TrackedLock",
        "True _frozen_importlib_external",
        "False False",
        "True",
    ]


def test_a_program_importing_wrapt_gets_all_of_it() -> None:
    """deadlockwatch uses wrapt's C wrappers without importing the package;
    a program that imports wrapt later gets the whole of it, working."""
    code = """
    import sys, threading
    print("wrapt" in sys.modules, "wrapt._wrappers" in sys.modules)
    import wrapt
    @wrapt.decorator
    def plus_one(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs) + 1
    @plus_one
    def two():
        return 2
    print(two(), hasattr(wrapt, "synchronized"), type(threading.Lock()).__name__)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["False False", "3 True TrackedLock"]


def test_threading_first_imported_from_another_thread() -> None:
    """CPython's test_import_from_another_thread, with the detector on."""
    code = """
    import _thread, sys
    event = _thread.allocate_lock()
    event.acquire()
    def import_threading():
        import threading
        event.release()
    if "threading" in sys.modules:
        raise Exception("threading is already imported")
    _thread.start_new_thread(import_threading, ())
    event.acquire()
    event.release()
    import threading, deadlockwatch
    print(deadlockwatch.is_enabled(), type(threading.Lock()).__name__)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.split() == ["True", "TrackedLock"]


def test_deadlockwatch_modules_imported_before_threading() -> None:
    """Enabling waits for the end of a half-done import of deadlockwatch's own
    modules (they import threading)."""
    for first in (
        "from deadlockwatch._watch.watcher import DETECTOR",
        "import deadlockwatch._track.state",
        "import deadlockwatch; deadlockwatch.is_enabled()",
    ):
        code = f"{first}\nimport threading, deadlockwatch\n"
        code += "print(deadlockwatch.is_enabled(), type(threading.Lock()).__name__)"
        r = run_python(code, env={"DEADLOCKWATCH": "1"})
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", (first, r.stderr)
        assert r.stdout.split() == ["True", "TrackedLock"], first


def test_os_environ_never_changes_while_the_program_runs(tmp_path: Path) -> None:
    """The run directory children share is named at start-up; using
    multiprocessing's locks (which makes it) changes nothing in os.environ,
    and a spawned child shares it."""
    code = """
    import os, multiprocessing as mp, threading, time
    def child(lock, q):
        with lock:
            q.put(os.environ.get("DEADLOCKWATCH_RUN_DIR"))
    if __name__ == "__main__":
        before = dict(os.environ)
        named = before.get("DEADLOCKWATCH_RUN_DIR", "")
        print(os.path.basename(named).startswith("deadlockwatch-"), os.path.exists(named))
        ctx = mp.get_context("spawn")
        lock, q = ctx.Lock(), ctx.Queue()
        with lock:
            p = ctx.Process(target=child, args=(lock, q))
            p.start()
            # The child blocks on the lock meanwhile: until it published its wait.
            import sys; sys.path.insert(0, TESTS)
            from _programs import until
            from deadlockwatch._processes.exchange import remote_snapshot
            until(
                lambda: any(t.pid == p.pid and t.wait for t in remote_snapshot()[0]),
                what="the child blocked on the lock",
            )
        print(q.get(timeout=60) == named, os.path.isdir(named))
        p.join(60)
        print(dict(os.environ) == before, p.exitcode)
    """.replace("TESTS", repr(TESTS))
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(code))
    r = run_python(
        f"import runpy; runpy.run_path({str(prog)!r}, run_name='__main__')",
        env={"DEADLOCKWATCH": "1"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", "True", "True", "True", "0"], r.stderr


WATCHER_COUNT = """
import _thread, os, sys, threading, time

def settle(n):
    deadline = time.monotonic() + 10
    while _thread._count() != n and time.monotonic() < deadline:
        time.sleep(0.01)
    return _thread._count()

lock = threading.Lock()
with lock:
    pass
print("uncontended", settle(0))
gate = threading.Event()
t = threading.Thread(target=gate.wait, args=(10,), daemon=True)
t.start()
sys.path.insert(0, TESTS)
from _programs import wait_watched
wait_watched(2, of=[t])  # blocked, and the watcher has looked
print("blocked", _thread._count())  # the waiter and the watcher
gate.set()
t.join()
print("idle", settle(0))
""".replace("TESTS", repr(TESTS))


def test_no_watcher_thread_until_a_wait_blocks() -> None:
    r = run_python(WATCHER_COUNT, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["uncontended 0", "blocked 2", "idle 0"]


def test_a_forked_child_sees_only_its_own_thread() -> None:
    """CPython's test_clear_threads_states_after_fork: the parent's watcher
    runs (its threads block) while it forks; the child must see one thread."""
    code = """
    import os, sys, threading, time
    gate = threading.Event()
    threads = [threading.Thread(target=gate.wait, args=(10,)) for _ in range(4)]
    for t in threads:
        t.start()
    sys.path.insert(0, TESTS)
    from _programs import wait_watched
    wait_watched(2, of=threads)  # blocked, the watcher looking
    from deadlockwatch._watch.watcher import DETECTOR
    running = DETECTOR.watcher_ident is not None or sys.version_info >= (3, 12)
    bad = 0
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            os._exit(51 if len(sys._current_frames()) == 1 else 52)
        _, status = os.waitpid(pid, 0)
        bad += os.waitstatus_to_exitcode(status) != 51
    gate.set()
    for t in threads:
        t.join()
    print(running, bad)
    """.replace("TESTS", repr(TESTS))
    r = run_python(code, env={"DEADLOCKWATCH": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "0"]


def test_a_lock_left_held_by_an_ended_thread_is_reported_with_nothing_blocked() -> None:
    """The watcher starts for a thread that ends holding a lock, though
    nothing ever blocks (the thread is started and awaited untracked)."""
    code = """
    import _thread, sys, threading, time
    from deadlockwatch._watch.watcher import DETECTOR
    lock = threading.Lock()
    ended = _thread.allocate_lock()
    ended.acquire()
    def leave():
        lock.acquire()
        ended.release()
    print("watcher before", DETECTOR.watcher_ident is not None, flush=True)
    _thread.start_new_thread(leave, ())
    ended.acquire()
    deadline = time.monotonic() + 10
    while not DETECTOR.findings and time.monotonic() < deadline:
        time.sleep(0.01)  # untracked: nothing blocks
    print([f.kind for f in DETECTOR.findings], flush=True)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["watcher before False", "['held-at-exit']"]
    assert "a thread exited holding a lock" in r.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="operator.call is 3.11+")
def test_thread_start_waiting_for_a_thread_without_a_frame_yet_is_no_deadlock() -> None:
    """Thread.start() waits for the new thread to signal; on a loaded machine
    that thread may not run Python code (no frame) for a while: it is in
    threading._limbo, and will run.  (CPython 3.13's test_concurrent_futures,
    under load, had it reported as a deadlock.)  Positive control: the same
    wait with no thread to come is reported."""
    code = """
    import _thread, collections, functools, operator, sys, threading, time
    from deadlockwatch._watch.watcher import DETECTOR

    def c_only(*calls):
        # Makes the calls without a Python frame of its own.
        return functools.partial(collections.deque, map(operator.call, calls), 0)

    gate = _thread.allocate_lock()
    gate.acquire()
    t = threading.Thread(target=time.sleep, args=(0,), name="late")
    t._bootstrap = c_only(gate.acquire, t._bootstrap)
    # Releases the gate in 1 s, from a thread without a Python frame either.
    _thread.start_new_thread(c_only(functools.partial(time.sleep, 1.0), gate.release), ())
    t.start()  # waits about 1 s for a thread that has no frame yet
    t.join()
    print([f.kind for f in DETECTOR.findings], flush=True)
    try:
        threading.Event().wait()  # nobody else to set it
    except Exception as e:
        print(type(e).__name__, [f.kind for f in DETECTOR.findings], flush=True)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1", "DEADLOCKWATCH_ACTION": "raise"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "DeadlockError ['deadlock']"]


def test_without_wrapts_extension_wrapt_is_imported_as_usual() -> None:
    code = """
    import sys, threading, concurrent.futures as cf
    print("wrapt" in sys.modules, type(threading.Lock()).__name__)
    with cf.ThreadPoolExecutor(2) as ex:
        print(sum(ex.map(abs, range(-5, 5))), type(threading.Thread.join).__name__)
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1", "WRAPT_DISABLE_EXTENSIONS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.splitlines() == ["True TrackedLock", "25 BoundMethodWrapper"]


def test_module_level_locks_of_logging_futures_and_asyncio_are_tracked() -> None:
    """Each imports threading first, so its locks made at import are tracked
    although nothing was patched at start-up."""
    code = """
    import asyncio.events, asyncio.mixins, concurrent.futures.thread as cft, logging
    locks = (logging._lock, cft._global_shutdown_lock, asyncio.events._lock,
             asyncio.mixins._global_lock)
    print(" ".join(type(lock).__name__ for lock in locks))
    """
    r = run_python(code, env={"DEADLOCKWATCH": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["TrackedRLock", "TrackedLock", "TrackedLock", "TrackedLock"]


def test_the_runner_names_one_run_directory_for_its_children(tmp_path: Path) -> None:
    """``python -m deadlockwatch prog.py``: the program's spawned children
    share its run directory, named before the program runs."""
    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent(
            """
            import os, multiprocessing as mp
            def child(q):
                q.put(os.environ.get("DEADLOCKWATCH_RUN_DIR"))
            if __name__ == "__main__":
                before = dict(os.environ)
                named = os.environ.get("DEADLOCKWATCH_RUN_DIR")
                ctx = mp.get_context("spawn")
                q = ctx.Queue()
                p = ctx.Process(target=child, args=(q,))
                p.start()
                print(named is not None, q.get(timeout=60) == named, dict(os.environ) == before)
                p.join(60)
            """
        )
    )
    r = run_python(
        f"import runpy, sys; sys.argv = ['deadlockwatch', {str(prog)!r}]; "
        "runpy.run_module('deadlockwatch', run_name='__main__')",
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]
