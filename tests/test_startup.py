"""Switching the detector on from the environment, its settings, reports and
actions: each case in a fresh interpreter, killed if it ever hangs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
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
        ABBA.replace("t1.join(", "import time; time.sleep(0.5); t1.join(")
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
    from deadlockwatch._detector import DETECTOR
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
        + "\nimport time as _t\n_t.sleep(0.5)\nprint(records)\n"
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
from deadlockwatch._detector import DETECTOR

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
    """With DEADLOCKWATCH=1, logging (imported at start-up by wrapt, through
    asyncio) makes its module lock after threading's factories are patched."""
    r = run_python(LOGGING_DEADLOCK, env={"DEADLOCKWATCH": "1"}, args=["10"], timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "deadlock ['holds_app', 'holds_logging'] ['<string>', '__init__.py']" in lines, (
        r.stdout,
        r.stderr,
    )


def test_modules_enabling_imports_make_tracked_locks() -> None:
    """What enabling imports (wrapt, and with it asyncio and logging) is
    imported after the factories are patched; a module the program imported
    first keeps the locks it made then (they cannot be swapped safely)."""
    code = """
    import threading
    import logging, wrapt.synchronization as ws  # both imported at start-up already
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
