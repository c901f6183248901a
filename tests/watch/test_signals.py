"""Who can signal (issue 13): a thread waiting for a signal (an Event, a
Condition, a full queue's room, a Barrier, a Semaphore used as a signal, a bare
Future) is rescued only by a thread that can still run *and can reach* what it
waits for.  Bystanders (the main thread polling or in a timed join, a Timer,
a heartbeat thread, a logging QueueListener) no longer hide a deadlock.

Each scenario is a program run as ``python prog.py`` in its own interpreter:
the interleaving is forced with Events, every thread is a daemon, every wait
of the harness is bounded, and ``raise-all`` unwinds the deadlocked threads.
The objects live in function locals (only the threads given them can reach
them), except in the module-global variants, where any thread might reach
them: those are only *probably* deadlocked (kind ``probable-deadlock``, a
warning after ``probable_after`` seconds, with the threads that could still
rescue them listed in ``rescuers``).

Negative scenarios (a real rescue that comes later than the detector looks)
each have a positive control: the same program with the rescue removed.
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
from _programs import TESTS

from deadlockwatch._config import OPTIONS, ConfigError

#: probable_after=1.0 (or $PROBABLE_AFTER) where the option exists: the
#: negative scenarios and the controls run against versions without it too.
PRELUDE = """\
import faulthandler, os, sys, threading, time
# A watchdog that no analysis sees (a C thread): a program the detector fails
# to unblock ends with every thread's stack instead of hanging to the timeout.
faulthandler.dump_traceback_later(20, exit=True)
import deadlockwatch
from deadlockwatch import DeadlockError
from deadlockwatch._track import state as _state
from deadlockwatch._config import OPTIONS
from deadlockwatch._watch.watcher import DETECTOR
_options = dict(
    interval=0.02, threshold=0.05, on_deadlock="raise-all", report=os.environ["REPORT"]
)
if any(o.name == "probable_after" for o in OPTIONS):
    _options["probable_after"] = float(os.environ.get("PROBABLE_AFTER", "1.0"))
deadlockwatch.enable(**_options)

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
            print(f"DeadlockError in {name}\\n", end="", flush=True)  # one write
    return run

def blocked(*names):
    '''Every named thread is blocked in a tracked wait now.'''
    return set(names) <= {w.rec.name for w in _state.blocked.copy().values()}

def settle(done, step, seconds):
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        step()
"""


def program(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def run_program(
    tmp_path: Path, text: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> tuple[str, list[Any]]:
    """Run ``text`` as ``python prog.py``; its stdout and the findings it reported.

    The program runs in a session of its own, killed as a whole when it ends:
    a process pool's workers it leaves behind (it was stopped by its watchdog)
    neither outlive the test nor keep its output open.
    """
    report = tmp_path / "report.jsonl"
    prog = tmp_path / "prog.py"
    prog.write_text(text)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    full_env.update(env or {})
    full_env["REPORT"] = str(report)
    full_env.setdefault("PYTHONFAULTHANDLER", "1")
    with open(tmp_path / "stdout", "w+") as out, open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(prog)],
            env=full_env,
            stdout=out,
            stderr=err,
            text=True,
            cwd=str(tmp_path),
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert returncode == 0, stdout + stderr
    findings = []
    if report.exists():
        findings = [json.loads(x) for x in report.read_text().splitlines() if x]
    return stdout, findings


def line_of(text: str, needle: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)


def only(findings: list[Any], kind: str) -> Any:
    assert [f["kind"] for f in findings] == [kind], findings
    return findings[0]


def details(finding: Any, name: str) -> Any:
    return next(d for d in finding["thread_details"] if d["name"] == name)


def indent(code: str, n: int) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * n)


# -- the shapes: a waiter holds a lock and waits for a signal that only a
#    thread blocked on that lock would give -------------------------------------------

#: name -> (objects, the waiter's wait, the signaller's signal, the global the
#: module variant keeps the waited-for object in)
SHAPES: dict[str, tuple[str, str, str, str]] = {
    "event": ("ev = threading.Event()", "ev.wait()", "ev.set()", "ev"),
    "condition": (
        "cond = threading.Condition()\nitems = []",
        "with cond:\n    while not items:\n        cond.wait()",
        "with cond:\n    items.append(1)\n    cond.notify()",
        "cond",
    ),
    "queue_full": ("q = queue.Queue(maxsize=1)\nq.put(0)", "q.put(1)", "q.get()", "q"),
    "barrier": ("barrier = threading.Barrier(2)", "barrier.wait()", "barrier.wait()", "barrier"),
    # Released once by a thread that holds no unit: a signal from then on.
    "semaphore": (
        "sem = threading.Semaphore(0)\nsem.release(); sem.acquire()",
        "sem.acquire()",
        "sem.release()",
        "sem",
    ),
    "future": ("fut = Future()", "fut.result()", "fut.set_result(1)", "fut"),
}

WORKERS = """
def waiter():
    with lock:
        holding.set()
{wait}
    print("waiter done\\n", end="", flush=True)
def signaller():
    holding.wait(10)
    with lock:
{signal}
"""

#: Bystanders: (code that starts it in main(), code that checks and stops it).
BYSTANDERS: dict[str, tuple[str, str]] = {
    "timer": (
        """
        timer = threading.Timer(60, print, args=("tick",))
        timer.daemon = True
        timer.start()
        """,
        """
        alive.append(timer.is_alive())
        timer.cancel()
        """,
    ),
    "heartbeat": (
        """
        stop_beat = threading.Event()
        def heartbeat():
            beats = 0
            while not stop_beat.is_set():
                beats += sum(range(100))
                time.sleep(0.01)
        beat = spawn(heartbeat, "heartbeat")
        """,
        """
        alive.append(beat.is_alive())
        stop_beat.set()
        beat.join(5)
        """,
    ),
    "listener": (
        """
        log_q = queue.Queue()
        listener = logging.handlers.QueueListener(log_q, logging.StreamHandler(io.StringIO()))
        listener.start()
        log = logging.getLogger("bystander")
        log.propagate = False
        log.addHandler(logging.handlers.QueueHandler(log_q))
        log.warning("started")
        """,
        """
        log.warning("stopping")
        alive.append(listener._thread is not None and listener._thread.is_alive())
        listener.stop()
        """,
    ),
}

#: How the main thread waits for the workers: both leave it able to run.
MAIN_STEPS = {
    "poll": "lambda: time.sleep(0.05)",
    "join": "lambda: workers[0].join(timeout=0.2) or time.sleep(0.01)",
}

HEADER = """
import io, logging, logging.handlers, queue
from concurrent.futures import Future
"""


def shape_program(shape: str, main: str, extras: tuple[str, ...], where: str) -> str:
    """The two workers of ``shape`` (objects in ``setup()``'s locals, or module
    globals), the main thread waiting as ``main`` beside ``extras``."""
    objects, wait, signal, _ = SHAPES[shape]
    workers = WORKERS.format(wait=indent(wait, 8), signal=indent(signal, 8))
    if where == "local":
        text = "def setup():\n"
        text += indent("lock = threading.Lock()\nholding = threading.Event()", 4) + "\n"
        text += indent(objects, 4) + "\n"
        text += indent(workers, 4) + "\n"
        text += '    return [spawn(waiter, "waiter"), spawn(signaller, "signaller")]\n'
        done = "lambda: not any(t.is_alive() for t in workers)"
    else:
        text = "lock = threading.Lock()\nholding = threading.Event()\n"
        text += textwrap.dedent(objects).strip() + "\n"
        text += textwrap.dedent(workers).strip() + "\n"
        text += "def setup():\n"
        text += '    return [spawn(waiter, "waiter"), spawn(signaller, "signaller")]\n'
        done = "lambda: DETECTOR.findings or not any(t.is_alive() for t in workers)"
    text += "\ndef main():\n    workers = setup()\n    alive = []\n"
    for name in extras:
        text += indent(BYSTANDERS[name][0], 4) + "\n"
    text += f"    settle({done}, {MAIN_STEPS[main]}, 5.0)\n"
    text += '    print("workers alive:", [t.is_alive() for t in workers])\n'
    for name in extras:
        text += indent(BYSTANDERS[name][1], 4) + "\n"
    text += '    print("bystanders alive:", all(alive))\n'
    text += "main()\n"
    return PRELUDE + textwrap.dedent(HEADER) + text


#: (shape, how main waits, other bystanders): every shape and every bystander
#: at least once, and three bystanders together.
LOCAL_CASES = [
    ("event", "poll", ()),
    ("event", "join", ("timer", "heartbeat", "listener")),
    ("condition", "join", ()),
    ("queue_full", "poll", ("timer",)),
    ("barrier", "join", ("heartbeat",)),
    ("semaphore", "poll", ("listener",)),
    ("future", "join", ("timer",)),
]

GLOBAL_CASES = [
    ("event", "poll", ()),
    ("condition", "poll", ("timer",)),
    ("queue_full", "join", ("heartbeat",)),
    ("barrier", "poll", ("listener",)),
    ("semaphore", "join", ()),
    ("future", "poll", ("timer", "heartbeat")),
]

_TYPES = {
    "event": "Event",
    "condition": "Condition",
    "queue_full": "Queue",
    "barrier": "Barrier",
    "semaphore": "Semaphore",
    "future": "Future",
}


_VERBS = {
    "event": "set",
    "condition": "notify",
    "queue_full": "take an item from",
    "barrier": "reach",
    "semaphore": "release",
    "future": "complete",
}


def _case_id(case: tuple[str, str, tuple[str, ...]]) -> str:
    return "-".join([case[0], case[1], *case[2]])


# Fails before issue 13: the bystanders count as possible signallers, so
# nothing is reported and the workers stay blocked until main gives up.
@pytest.mark.parametrize("case", LOCAL_CASES, ids=_case_id)
def test_deadlock_through_a_signal_is_reported_beside_bystanders(
    tmp_path: Path, case: tuple[str, str, tuple[str, ...]]
) -> None:
    shape, main, extras = case
    text = shape_program(shape, main, extras, "local")
    out, findings = run_program(tmp_path, text)
    f = only(findings, "deadlock")
    assert f["threads"] == ["waiter", "signaller"] or f["threads"] == ["signaller", "waiter"]
    assert {s["thread"] for s in f["cycle"]} == {"waiter", "signaller"}
    made = line_of(text, SHAPES[shape][0].splitlines()[0])
    lock = line_of(text, "lock = threading.Lock()")
    assert f["cause"] == (
        f"'waiter' waits on {_TYPES[shape]}(created prog.py:{made}) while holding "
        f"Lock(created prog.py:{lock}), which 'signaller' needs before it could "
        f"{_VERBS[shape]} it"
    )
    # Within about a second of the workers blocking (generous: a shared machine).
    assert details(f, "waiter")["waits_for"]["blocked_for"] < 3.0
    assert "DeadlockError in waiter" in out and "DeadlockError in signaller" in out
    assert "workers alive: [False, False]" in out
    assert "bystanders alive: True" in out  # reported while they still ran


# Fails before issue 13: no probable-deadlock kind; nothing is reported.
@pytest.mark.parametrize("case", GLOBAL_CASES, ids=_case_id)
def test_deadlock_through_a_module_global_is_probable(
    tmp_path: Path, case: tuple[str, str, tuple[str, ...]]
) -> None:
    shape, main, extras = case
    text = shape_program(shape, main, extras, "global")
    out, findings = run_program(tmp_path, text)
    f = only(findings, "probable-deadlock")
    assert sorted(f["threads"]) == ["signaller", "waiter"]
    # Only after probable_after (1 s) of being blocked.
    assert details(f, "waiter")["waits_for"]["blocked_for"] >= 0.9
    # A warning: nobody gets DeadlockError, the workers stay blocked.
    assert "DeadlockError" not in out
    assert "workers alive: [True, True]" in out
    assert "bystanders alive: True" in out
    rescuers = f["rescuers"]
    assert rescuers and all(isinstance(r, str) for r in rescuers), rescuers
    assert not any(r.startswith(("'waiter'", "'signaller'")) for r in rescuers), rescuers
    main_rescuer = [r for r in rescuers if r.startswith("'MainThread'")]
    assert len(main_rescuer) == 1, rescuers
    name = SHAPES[shape][3]
    assert "prog.py:" in main_rescuer[0]
    assert f"module global {name!r}" in main_rescuer[0], main_rescuer[0]
    made = line_of(text, SHAPES[shape][0].splitlines()[0])
    assert f"{_TYPES[shape]}(created prog.py:{made})" in main_rescuer[0], main_rescuer[0]
    if "heartbeat" in extras:
        assert any(r.startswith("'heartbeat'") for r in rescuers), rescuers


# -- blame: the thread that would signal, not a bystander or a joiner ------------------

BLAME_LOCAL = """
def main():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    def starter():
        with lock:
            holding.set()
            settle(lambda: blocked("service"), lambda: time.sleep(0.01), 5.0)
            ready.wait()
    def service():
        holding.wait(10)
        with lock:
            ready.set()
    s = spawn(starter, "starter")
    v = spawn(service, "service")
    settle(lambda: blocked("service", "starter"), lambda: time.sleep(0.01), 5.0)
    try:
        s.join()
    except DeadlockError:
        print("main: DeadlockError")
    s.join(10); v.join(10)
    print("alive after:", s.is_alive(), v.is_alive())
main()
"""

BLAME_GLOBAL = """
lock = threading.Lock()
ready = threading.Event()
holding = threading.Event()
def starter():
    with lock:
        holding.set()
        settle(lambda: blocked("service"), lambda: time.sleep(0.01), 5.0)
        ready.wait()
def service():
    holding.wait(10)
    with lock:
        ready.set()
def main():
    s = spawn(starter, "starter")
    v = spawn(service, "service")
    settle(lambda: blocked("service", "starter"), lambda: time.sleep(0.01), 5.0)
    try:
        s.join()
    except DeadlockError:
        print("main: DeadlockError")
    s.join(10); v.join(10)
    print("alive after:", s.is_alive(), v.is_alive())
main()
"""


# The service blocked first, the main thread joins last: before issue 13 the
# cause says "'starter' waits on Event(...) while holding what 'MainThread'
# needs before it could set it" (the walk of the cycle from the longest-blocked
# thread, 'service', goes through the untimed joiner).
@pytest.mark.parametrize("body", [BLAME_LOCAL, BLAME_GLOBAL], ids=["local", "global"])
def test_blame_names_the_thread_that_would_signal(tmp_path: Path, body: str) -> None:
    text = program(body)
    out, findings = run_program(tmp_path, text)
    f = only(findings, "deadlock")
    ev = line_of(text, "ready = threading.Event()")
    lock = line_of(text, "lock = threading.Lock()")
    assert f["cause"] == (
        f"'starter' waits on Event(created prog.py:{ev}) while holding "
        f"Lock(created prog.py:{lock}), which 'service' needs before it could set it"
    )
    step = next(s for s in f["cycle"] if s["thread"] == "starter")
    assert step["held_by"] == "service"
    assert all(s["held_by"] != "MainThread" for s in f["cycle"] if s["thread"] == "starter")
    assert "'MainThread' could set" not in json.dumps(f)
    assert "DeadlockError in starter" in out and "DeadlockError in service" in out
    assert "alive after: False False" in out


# -- liveness: a local the rest of the function never loads reaches nothing ------------

LIVENESS = """
def main():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    def waiter():
        with lock:
            holding.set()
            ready.wait()
        print("waiter ok\\n", end="", flush=True)
    def signaller():
        holding.wait(10)
        with lock:
            ready.set()
    workers = [spawn(waiter, "waiter"), spawn(signaller, "signaller")]
    settle(lambda: not any(t.is_alive() for t in workers), lambda: time.sleep(0.05), 2.5)
    RESCUE
    for t in workers:
        t.join(10)
    print("workers alive:", [t.is_alive() for t in workers])
main()
"""


def test_a_live_local_of_a_running_thread_can_signal(tmp_path: Path) -> None:
    # main() sets the Event itself once it stops polling: not a deadlock.
    out, findings = run_program(tmp_path, program(LIVENESS.replace("RESCUE", "ready.set()")))
    # No deadlock; but the waiter waits for ready holding the lock that the
    # signaller takes to set it: the potential deadlock is reported (issue 14).
    (potential,) = findings
    assert potential["kind"] == "wait-under-lock", findings
    assert "waiter ok" in out and "workers alive: [False, False]" in out


# Fails before issue 13 (the polling main thread counts as a signaller).
def test_a_dead_local_of_a_running_thread_cannot_signal(tmp_path: Path) -> None:
    out, findings = run_program(tmp_path, program(LIVENESS.replace("RESCUE", "pass")))
    f = only(findings, "deadlock")
    assert sorted(f["threads"]) == ["signaller", "waiter"]
    assert "DeadlockError in waiter" in out and "workers alive: [False, False]" in out


# -- no false alarms, each with its positive control ------------------------------------

#: The main thread holds ``lock`` and waits (untimed) for ``ready``, while
#: 'blocker' waits for ``lock``: a real hold-and-wait that only the rescue ends.
#: RESCUER is whether the would-be rescuer still runs when the deadlock is
#: found (a control must be reported while it does, not once it has ended).
MAIN_WAITS = """
    with lock:
        holding.set()
        settle(lambda: blocked("blocker"), lambda: time.sleep(0.01), 5.0)
        try:
            print("ok", ready.wait())
        except DeadlockError:
            print(f"main: DeadlockError; rescuer alive: {RESCUER}")
    b.join(10)
"""

SETUP = """
def setup():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    def blocker():
        holding.wait(10)
        with lock:
            pass
    return lock, ready, holding, spawn(blocker, "blocker")
"""

NO_ALARM: dict[str, tuple[str, str, str, str]] = {
    # name: (program with RESCUE, the rescue, what replaces it in the control,
    # whether the thread that would rescue still runs)
    "timer_sets_the_event": (
        SETUP
        + """
def main():
    lock, ready, holding, b = setup()
    timer = threading.Timer(1.5, RESCUE)
    timer.daemon = True
    timer.start()
"""
        + MAIN_WAITS
        + """
    timer.cancel()
main()
""",
        "ready.set",
        "int",
        "timer.is_alive()",
    ),
    # The rescuer has the Event only through a weak reference to the object
    # holding it (an object handing its thread ``weakref.ref(self)``): a
    # weak reference is a way to the object (before stop 28 the walk, which
    # follows what the collector reports, did not see it: a false DEADLOCK).
    "thread_holding_a_weak_reference": (
        "import weakref\n"
        + SETUP
        + """
class Box:
    pass

def main():
    lock, ready, holding, b = setup()
    box = Box()
    box.ready = ready
    ref = weakref.ref(box)
    def helper():
        time.sleep(1.5)
        RESCUE
    h = spawn(helper, "helper")
"""
        + MAIN_WAITS
        + """
    h.join(10)
main()
""",
        "ref().ready.set()",
        "pass",
        "h.is_alive()",
    ),
    "signal_handler_sets_the_event": (
        "import signal\n"
        + SETUP
        + """
def main():
    lock, ready, holding, b = setup()
    RESCUE
"""
        + MAIN_WAITS
        + "main()\n",
        "signal.signal(signal.SIGALRM, lambda *a: ready.set()); "
        "signal.setitimer(signal.ITIMER_REAL, 1.5)",
        "pass",
        "True",
    ),
    "event_sent_through_a_queue": (
        "import queue\n"
        + SETUP
        + """
def start_worker():
    jobs = queue.Queue()
    def worker():
        while True:
            try:
                op, arg = jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            if op == "sleep":
                time.sleep(arg)
            elif op == "set":
                arg.set()
            elif op == "stop":
                return
    return jobs, spawn(worker, "worker")

def main():
    lock, ready, holding, b = setup()
    jobs, w = start_worker()
    jobs.put(("sleep", 1.5))
    RESCUE
"""
        + MAIN_WAITS
        + """
    jobs.put(("stop", None))
    w.join(10)
main()
""",
        'jobs.put(("set", ready))',
        'jobs.put(("noop", None))',
        "w.is_alive()",
    ),
    "setter_started_later_by_a_thread_holding_the_event": (
        "import queue\n"
        + SETUP
        + """
def start_launcher():
    handoff = queue.Queue()
    def launcher():
        got = handoff.get()
        time.sleep(1.5)
        RESCUE
    return handoff, spawn(launcher, "launcher")

def main():
    lock, ready, holding, b = setup()
    handoff, launcher = start_launcher()
    handoff.put(ready)
    settle(handoff.empty, lambda: time.sleep(0.01), 5.0)  # in the launcher's local now
"""
        + MAIN_WAITS
        + """
    launcher.join(10)
main()
""",
        'spawn(got.set, "setter")',
        'spawn(int, "setter")',  # `got` is never loaded again: a dead local
        "launcher.is_alive()",
    ),
    "executor_idle_before_work_arrives": (
        "from concurrent.futures import ThreadPoolExecutor\n"
        + SETUP
        + """
def start_scheduler():
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool")
    pool.submit(int).result()      # its worker exists, and idles from now on
    return pool

def main():
    lock, ready, holding, b = setup()
    pool = start_scheduler()
    jobs = [RESCUE]
    def scheduler():
        time.sleep(1.5)
        for job in jobs:
            pool.submit(job)
    s = spawn(scheduler, "scheduler")
"""
        + MAIN_WAITS
        + """
    s.join(10)
    pool.shutdown(wait=False)
main()
""",
        "ready.set",
        "int",
        "s.is_alive()",
    ),
    "future_completed_by_a_process_pool": (
        """
import multiprocessing, warnings
from concurrent.futures import Future, ProcessPoolExecutor
warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)

def setup():
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(int).result()      # the worker process exists before our threads
    lock = threading.Lock()
    holding = threading.Event()
    def blocker():
        holding.wait(10)
        with lock:
            pass
    return pool, lock, holding, spawn(blocker, "blocker")

def main():
    pool, lock, holding, b = setup()
    fut = RESCUE
    with lock:
        holding.set()
        settle(lambda: blocked("blocker"), lambda: time.sleep(0.01), 5.0)
        try:
            print("ok", fut.result() is None)
        except DeadlockError:
            print(f"main: DeadlockError; rescuer alive: {RESCUER}")
    b.join(10)
    pool.shutdown(wait=True)
main()
""",
        "pool.submit(time.sleep, 1.5)",
        "Future()",  # a future nobody will complete
        "pool._executor_manager_thread.is_alive()",
    ),
    "condition_notified_from_a_finalizer": (
        "import queue, weakref\n"
        + """
class Token:
    pass

def setup():
    lock = threading.Lock()
    holding = threading.Event()
    cond = threading.Condition()
    state = []
    def notify():
        with cond:
            state.append(1)
            cond.notify_all()
    def blocker():
        holding.wait(10)
        with lock:
            pass
    return lock, holding, cond, state, notify, spawn(blocker, "blocker")

def start_dropper():
    handoff = queue.Queue()
    def dropper():
        token = handoff.get()
        time.sleep(1.0)            # shorter than probable_after (2 s here)
        del token                  # the last reference: the finalizer runs here
    return handoff, spawn(dropper, "dropper")

def main():
    lock, holding, cond, state, notify, b = setup()
    handoff, d = start_dropper()
    token = Token()
    RESCUE
    handoff.put(token)
    del token, notify
    with lock:
        holding.set()
        settle(lambda: blocked("blocker"), lambda: time.sleep(0.01), 5.0)
        try:
            with cond:
                while not state:
                    cond.wait()
            print("ok", True)
        except DeadlockError:
            print(f"main: DeadlockError; rescuer alive: {RESCUER}")
    b.join(10); d.join(10)
main()
""",
        "weakref.finalize(token, notify)",
        "None",
        "d.is_alive()",
    ),
}

#: probable_after for the scenarios whose rescue comes through a class attribute.
PROBABLE_AFTER = {"condition_notified_from_a_finalizer": "2.0"}


def _skip_unsupported(name: str) -> None:
    if name == "signal_handler_sets_the_event" and not hasattr(signal, "setitimer"):
        pytest.skip("needs signal.setitimer")
    if name == "future_completed_by_a_process_pool" and not hasattr(os, "fork"):
        pytest.skip("needs the fork start method")


def _probable_after(name: str) -> dict[str, str]:
    return {"PROBABLE_AFTER": PROBABLE_AFTER[name]} if name in PROBABLE_AFTER else {}


@pytest.mark.parametrize("name", sorted(NO_ALARM))
def test_no_false_alarm_when_a_rescue_comes(tmp_path: Path, name: str) -> None:
    _skip_unsupported(name)
    body, rescue, _, running = NO_ALARM[name]
    text = program(body.replace("RESCUER", running).replace("RESCUE", rescue))
    out, findings = run_program(tmp_path, text, env=_probable_after(name))
    assert "ok True" in out, (out, findings)
    assert findings == [], findings


# Before issue 13 these controls are reported only once the thread that does
# not rescue has ended (the Timer, the launcher, the scheduler, the dropper),
# or never (the polling worker, the process pool's manager thread); only the
# signal handler's control (no other thread) is reported already.
@pytest.mark.parametrize("name", sorted(NO_ALARM))
def test_control_without_the_rescue_is_reported(tmp_path: Path, name: str) -> None:
    _skip_unsupported(name)
    body, _, control, running = NO_ALARM[name]
    text = program(body.replace("RESCUER", running).replace("RESCUE", control))
    out, findings = run_program(tmp_path, text, env=_probable_after(name))
    f = only(findings, "deadlock")
    assert sorted(f["threads"]) == ["MainThread", "blocker"], f["threads"]
    # Found while the thread that did not rescue still ran (before its sleep ended).
    assert "main: DeadlockError; rescuer alive: True" in out, out
    assert "ok True" not in out


#: 'waiter' holds a Lock and waits on an Event kept in the module-level dict
#: REGISTRY; 'blocker' waits for the Lock.
_SETUP = """
def setup():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    REGISTRY["ready"] = ready
    def waiter():
        with lock:
            holding.set()
            ready.wait()
        print("waiter ok\\n", end="", flush=True)
    def blocker():
        holding.wait(10)
        with lock:
            pass
    return [spawn(waiter, "waiter"), spawn(blocker, "blocker")]
"""


#: The Event is reached only through a module-level dict: 'late' names that
#: global and sets it after DELAY seconds (below, then above probable_after).
REGISTRY = (
    """
REGISTRY = {}

def late():
    time.sleep(DELAY)
    RESCUE

"""
    + _SETUP
    + """

def main():
    workers = setup()
    spawn(late, "late")
    settle(
        lambda: DETECTOR.findings or not any(t.is_alive() for t in workers),
        lambda: time.sleep(0.05),
        5.0,
    )
    print("workers alive:", [t.is_alive() for t in workers])
main()
"""
)


@pytest.mark.parametrize("delay", [0.7, 1.8])
def test_no_false_alarm_for_a_global_set_by_a_sleeper(tmp_path: Path, delay: float) -> None:
    body = REGISTRY.replace("DELAY", str(delay)).replace("RESCUE", 'REGISTRY["ready"].set()')
    out, findings = run_program(tmp_path, program(body))
    assert findings == [], findings
    assert "waiter ok" in out and "workers alive: [False, False]" in out


# Fails before issue 13: no probable-deadlock kind, and main's polling hides it.
def test_control_global_nobody_names_is_probable(tmp_path: Path) -> None:
    body = REGISTRY.replace("DELAY", "0.7").replace("RESCUE", 'print("late: idle")')
    out, findings = run_program(tmp_path, program(body))
    f = only(findings, "probable-deadlock")
    assert sorted(f["threads"]) == ["blocker", "waiter"]
    assert any(
        r.startswith("'MainThread'") and "module global 'REGISTRY'" in r for r in f["rescuers"]
    ), f["rescuers"]
    assert "DeadlockError" not in out and "workers alive: [True, True]" in out


#: Where the Event is kept besides the stuck threads' own frames: each makes it
#: reachable by every thread, so that nobody reaching it is only probable.
HOLDERS = {
    "class_attribute": ("class Registry:\n    ready = None\n", "Registry.ready = ready"),
    "atexit": ("import atexit\n", "atexit.register(ready.set)"),
}

HELD = """
def setup():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    KEEP
    def waiter():
        with lock:
            holding.set()
            ready.wait()
    def blocker():
        holding.wait(10)
        with lock:
            pass
    return [spawn(waiter, "waiter"), spawn(blocker, "blocker")]

def main():
    workers = setup()
    settle(
        lambda: DETECTOR.findings or not any(t.is_alive() for t in workers),
        lambda: time.sleep(0.05),
        5.0,
    )
    print("workers alive:", [t.is_alive() for t in workers])
main()
"""


# Fails before issue 13 (no probable-deadlock kind; the polling main hides it).
@pytest.mark.parametrize("holder", sorted(HOLDERS))
def test_signal_held_by_a_class_attribute_or_unseen_holder_is_probable(
    tmp_path: Path, holder: str
) -> None:
    header, keep = HOLDERS[holder]
    out, findings = run_program(tmp_path, program(header + HELD.replace("KEEP", keep)))
    f = only(findings, "probable-deadlock")
    assert sorted(f["threads"]) == ["blocker", "waiter"]
    assert any(r.startswith("'MainThread'") for r in f["rescuers"]), f["rescuers"]
    assert "DeadlockError" not in out and "workers alive: [True, True]" in out


#: A lone thread idles on an Event kept in a module global, holding nothing.
IDLE = """
READY = threading.Event()

def idler():
    READY.wait()
    print("idler woke\\n", end="", flush=True)

def main():
    t = spawn(idler, "idler")
    settle(lambda: blocked("idler"), lambda: time.sleep(0.01), 5.0)
    time.sleep(2.0)                # twice probable_after: no hold-and-wait, no warning
    print("findings:", len(DETECTOR.findings))
    release()
    t.join(10)

def release():
    READY.set()
main()
"""


def test_a_lone_idle_waiter_on_a_global_is_not_reported(tmp_path: Path) -> None:
    out, findings = run_program(tmp_path, program(IDLE))
    assert findings == [], findings
    assert "findings: 0" in out and "idler woke" in out


#: The lone idler beside the same state with a thread behind it (`HELD`'s
#: waiter and blocker, the Event reached through a module global): the
#: waiter is a probable deadlock (the control), the idler, stuck in the same
#: way but with nobody behind it, is none.  The idler is blocked first, so
#: that it is due no later than the waiter.
IDLE_BESIDE_HELD = f"""
sys.path.insert(0, {TESTS!r})
from _programs import wait_watched
IDLE_READY = threading.Event()
REGISTRY = {{}}

def idler():
    IDLE_READY.wait()
    print("idler woke\\n", end="", flush=True)

def setup():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    REGISTRY["ready"] = ready
    def waiter():
        with lock:
            holding.set()
            ready.wait()
    def blocker():
        holding.wait(10)
        with lock:
            pass
    return [spawn(waiter, "waiter"), spawn(blocker, "blocker")]

def main():
    idle = spawn(idler, "idler")
    settle(lambda: blocked("idler"), lambda: time.sleep(0.01), 5.0)
    workers = setup()
    settle(lambda: DETECTOR.findings, lambda: time.sleep(0.02), 10.0)
    wait_watched(2)  # the pass that reported the waiter has ended, and one more
    print("workers alive:", [t.is_alive() for t in workers])
    wake()
    idle.join(10)

def wake():
    IDLE_READY.set()
main()
"""


def test_a_lone_idle_waiter_beside_a_probable_deadlock_is_not_reported(tmp_path: Path) -> None:
    out, findings = run_program(tmp_path, program(IDLE_BESIDE_HELD))
    f = only(findings, "probable-deadlock")  # the control: a thread behind it
    assert sorted(f["threads"]) == ["blocker", "waiter"]
    assert "workers alive: [True, True]" in out and "idler woke" in out


def test_workers_given_the_objects_as_thread_arguments(tmp_path: Path) -> None:
    # The main thread holds the Thread objects, and so their arguments, in a
    # live local: they are the workers' own, not a way for main to signal.
    # Fails before issue 13 (main's timed joins count as a possible signaller).
    out, findings = run_program(
        tmp_path,
        program(
            """
            def waiter(lock, holding, ready):
                try:
                    with lock:
                        holding.set()
                        ready.wait()
                except DeadlockError:
                    print("DeadlockError in waiter\\n", end="", flush=True)

            def signaller(lock, holding, ready):
                try:
                    holding.wait(10)
                    with lock:
                        ready.set()
                except DeadlockError:
                    print("DeadlockError in signaller\\n", end="", flush=True)

            def main():
                objects = (threading.Lock(), threading.Event(), threading.Event())
                workers = [
                    threading.Thread(target=fn, args=objects, name=fn.__name__, daemon=True)
                    for fn in (waiter, signaller)
                ]
                del objects
                for t in workers:
                    t.start()
                deadline = time.monotonic() + 5.0
                while any(t.is_alive() for t in workers) and time.monotonic() < deadline:
                    for t in workers:
                        t.join(timeout=0.2)
                print("workers alive:", [t.is_alive() for t in workers])
            main()
            """
        ),
    )
    f = only(findings, "deadlock")
    assert sorted(f["threads"]) == ["signaller", "waiter"]
    assert "which 'signaller' needs before it could set it" in f["cause"]
    assert "DeadlockError in waiter" in out and "DeadlockError in signaller" in out
    assert "workers alive: [False, False]" in out


# -- pytest: findings charged to the test that started the threads --------------------

RECORDER = """
import json

def pytest_runtest_logreport(report):
    sections = [name for name, _ in report.sections if name.startswith("deadlockwatch")]
    with open("reports.jsonl", "a") as f:
        row = [report.nodeid, report.when, report.outcome, sections, report.duration]
        f.write(json.dumps(row) + "\\n")
"""

ATTRIBUTION = """
import threading, time
from deadlockwatch._track import state as _state

def blocked(*names):
    return set(names) <= {w.rec.name for w in _state.blocked.copy().values()}

def test_a():
    lock = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    def starter():
        with lock:
            holding.set()
            ready.wait()
    def setter():
        holding.wait(10)
        with lock:
            ready.set()
    threads = [
        threading.Thread(target=starter, name="starter", daemon=True),
        threading.Thread(target=setter, name="setter", daemon=True),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while not blocked("starter", "setter") and time.monotonic() < deadline:
        time.sleep(0.01)
    for t in threads:
        t.join(timeout=JOIN)
    assert len(threads) == 2

def test_b():
    # Time for a late finding to land here, wrongly: the watcher passes twice
    # over a probe waiting on an Event (this thread runs: no deadlock).
    import sys
    sys.path.insert(0, TESTS)
    from _programs import wait_watched
    ev = threading.Event()
    probe = threading.Thread(target=ev.wait, name="probe", daemon=True)
    probe.start()
    try:
        wait_watched(2, of=[probe])
    finally:
        ev.set()
        probe.join(5)
    assert sum(range(4)) == 6
""".replace("TESTS", repr(TESTS))


def _reports(pytester: pytest.Pytester) -> list[Any]:
    path = pytester.path / "reports.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


# Fails before issue 13: the timed join counts as a possible signaller (JOIN=5),
# and nothing analyses when a test ends with its threads blocked (JOIN=0.1).
@pytest.mark.parametrize("join", [5.0, 0.1])
def test_pytest_charges_the_deadlock_to_the_test_that_started_it(
    pytester: pytest.Pytester, join: float
) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_attr=ATTRIBUTION.replace("JOIN", str(join)))
    result = pytester.runpytest_subprocess(
        "--deadlockwatch", "-p", "no:cacheprovider", "-p", "no:xdist", timeout=60
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*'starter' waits on Event(created test_attr.py:*) while holding Lock(created"
            " test_attr.py:*), which 'setter' needs before it could set it*",
            "FAILED test_attr.py::test_a*",
        ]
    )
    reports = _reports(pytester)
    a = [r for r in reports if r[0].endswith("::test_a")]
    b = [r for r in reports if r[0].endswith("::test_b")]
    assert any(r[2] == "failed" and "deadlockwatch deadlock" in r[3] for r in a), a
    assert all(r[2] == "passed" and r[3] == [] for r in b), b
    assert result.duration < 30
    if join > 1:
        # Found by the watcher during the first timed join (the joining test
        # is a bystander), which DeadlockError then ends; not at the test's end.
        call = next(r for r in a if r[1] == "call")
        assert call[4] < join, call


PROBABLE_TEST = """
import threading, time
from deadlockwatch._watch.watcher import DETECTOR

LOCK = threading.Lock()
READY = threading.Event()
HOLDING = threading.Event()

def starter():
    with LOCK:
        HOLDING.set()
        READY.wait()

def setter():
    HOLDING.wait(10)
    with LOCK:
        READY.set()

def test_probable():
    for target in (starter, setter):
        threading.Thread(target=target, name=target.__name__, daemon=True).start()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not any(
        f.kind == "probable-deadlock" for f in DETECTOR.findings
    ):
        time.sleep(0.05)
    assert time.monotonic() < deadline

def test_after():
    pass
"""


# Fails before issue 13 (no probable findings, no such options).
@pytest.mark.parametrize("mode", ["default", "warn", "fail", "ini-fail"])
def test_pytest_probable_findings_warn_or_fail(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_prob=PROBABLE_TEST)
    args = ["--deadlockwatch", "--deadlockwatch-probable-after=0.5"]
    if mode in ("warn", "fail"):
        args.append(f"--deadlockwatch-probable={mode}")
    if mode == "ini-fail":
        pytester.makeini("[pytest]\ndeadlockwatch_probable = fail\n")
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=60)
    failing = mode in ("fail", "ini-fail")
    result.assert_outcomes(passed=1 if failing else 2, failed=1 if failing else 0)
    reports = _reports(pytester)
    prob = [r for r in reports if r[0].endswith("::test_probable")]
    assert any("deadlockwatch probable-deadlock" in r[3] for r in prob), prob
    after = [r for r in reports if r[0].endswith("::test_after")]
    assert all(r[2] == "passed" and r[3] == [] for r in after), after
    result.stdout.fnmatch_lines(["*deadlockwatch: 1 probable-deadlock*"])


#: The control's probable deadlock again and again in one process: 'waiter'
#: waits, holding the Lock 'blocker' needs, on one Event of the global after
#: another; main sets each once the deadlock through it is reported.  Each
#: new wait's record often takes the last one's address (3.10 to 3.12),
#: while 'blocker' stays in the same wait.
AGAIN = """
import json
REGISTRY = {"events": [threading.Event() for _ in range(4)]}
lock, holding = threading.Lock(), threading.Event()

def waiter():
    with lock:
        holding.set()
        for ev in REGISTRY["events"]:
            ev.wait()

def blocker():
    holding.wait(10)
    with lock:
        pass

def wait_of(name):
    return next((w for w in _state.blocked.copy().values() if w.rec.name == name), None)

workers = [spawn(waiter, "waiter"), spawn(blocker, "blocker")]
reported, reused, last = [], [], None
for n in range(4):
    settle(lambda: len(DETECTOR.findings) > n, lambda: time.sleep(0.02), 8.0)
    reported.append(len(DETECTOR.findings))
    w = wait_of("waiter")
    if w is None:
        break
    if last is not None:
        reused.append(id(w) == last[0])
    last, since = (id(w), w.since), w.since
    del w
    # The rescue: the global's name spelt so that main's code does not name
    # it (main, which runs, would then be able to set it: nothing reported).
    globals()["REGIS" + "TRY"]["events"][n].set()
    settle(
        lambda: getattr(wait_of("waiter"), "since", since) != since,
        lambda: time.sleep(0.005),
        5.0,
    )
print(json.dumps({"reported": reported, "reused": reused}), flush=True)
"""


def test_the_same_probable_deadlock_again_is_reported_again(tmp_path: Path) -> None:
    """The probable deadlocks reported are remembered by their waits, so as
    not to report one twice; a rescue that leaves the threads stuck again,
    in a new wait, is a new warning.  A wait's token is its record's id, and
    the new record often takes the last one's address: by ids alone the new
    deadlock was taken for the one reported and never reported (3.10 to
    3.12; now by each wait's token and start)."""
    out, findings = run_program(tmp_path, program(AGAIN))
    result = json.loads(out.splitlines()[-1])
    assert result["reported"] == [1, 2, 3, 4], (result, findings)
    assert [f["kind"] for f in findings] == ["probable-deadlock"] * 4, findings
    # (No check that an address was reused: on 3.12, 4 runs of 5 reused
    # one; the code before failed this test 5 times of 5.)


# -- the probable_after option, from every source ---------------------------------------


def _has_probable_after() -> bool:
    return any(o.name == "probable_after" for o in OPTIONS)


# Fails before issue 13: enable() has no probable_after option.
def test_probable_after_option_is_validated() -> None:
    assert _has_probable_after()
    from deadlockwatch._api import configure

    assert configure(probable_after=2.5).probable_after == 2.5
    for bad in ("soon", -1, float("nan"), True):
        with pytest.raises(ConfigError) as info:
            configure(probable_after=bad)
        assert str(info.value).startswith(
            f"deadlockwatch: invalid value {bad!r} for enable(probable_after=...): expected "
        )
    from deadlockwatch._config import Config

    env = Config().with_environ({"DEADLOCKWATCH_PROBABLE_AFTER": "0.75"})
    assert env.probable_after == 0.75
    with pytest.raises(ConfigError, match="environment variable DEADLOCKWATCH_PROBABLE_AFTER"):
        Config().with_environ({"DEADLOCKWATCH_PROBABLE_AFTER": "later"})


# Fails before issue 13 (an unknown flag is an error of its own, not this message).
def test_runner_rejects_a_bad_probable_after(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    proc = subprocess.run(
        [sys.executable, "-m", "deadlockwatch", "--probable-after", "soon", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ran" not in proc.stdout
    assert "invalid value 'soon' for command-line option --probable-after" in proc.stderr, (
        proc.stderr
    )


# Fails before issue 13 (unknown options).
@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (
            ["--deadlockwatch", "--deadlockwatch-probable-after=soon"],
            "",
            "*invalid value 'soon' for command-line option --deadlockwatch-probable-after*",
        ),
        (
            [],
            "deadlockwatch = true\ndeadlockwatch_probable_after = -1",
            "*invalid value '-1' for ini option deadlockwatch_probable_after*",
        ),
        (
            ["--deadlockwatch", "--deadlockwatch-probable=sometimes"],
            "",
            "*invalid value 'sometimes' for command-line option --deadlockwatch-probable:"
            " expected one of warn, fail*",
        ),
    ],
)
def test_pytest_rejects_bad_probable_settings(
    pytester: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX scenarios")
