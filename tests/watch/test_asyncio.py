"""asyncio (issue 15): tasks in the wait-for graph.

Programs with a deadlock run in a subprocess with a watchdog
(``faulthandler``, 20 s, in the shared prelude) and a test timeout, their event loop in the main
thread.  A deadlock calls the ``on_deadlock`` callable, which prints what
was found and ends the process; a program that finishes prints how many
passes the watcher made while its tasks waited (a negative test asserts
the watcher looked, and found nothing).  Each negative runs with
``RESCUE=1``; its control, the same program with ``RESCUE=0`` (the rescue
removed), must be reported.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _programs import run_program

from deadlockwatch._report.dot import to_dot
from deadlockwatch._report.load import finding_from_json
from deadlockwatch._report.text import format_text

PRELUDE = """
import asyncio, json, os, sys, time
import deadlockwatch
from deadlockwatch._watch.watcher import DETECTOR

RESCUE = os.environ.get("RESCUE") == "1"
TICKS = [0]
_tick = DETECTOR.tick

def _counting_tick():
    # A pass counts when some task had waited past the threshold as it began.
    from deadlockwatch._track import aio, state
    now = time.monotonic()
    waits = [*aio.waiting.values(), *state.blocked.copy().values()]
    due = any(now - w.since >= DETECTOR.config.threshold for w in waits)
    _tick()
    if due:
        TICKS[0] += 1

DETECTOR.tick = _counting_tick
START = [time.monotonic()]

def found(finding):
    print(json.dumps({
        "kind": finding.kind,
        "cause": finding.cause,
        "tasks": sorted(t.name for t in finding.threads if t.is_task),
        "cycle": [finding.thread(s.thread).name for s in finding.cycle],
        "elapsed": time.monotonic() - START[0],
    }), flush=True)
    os._exit(0)

if os.environ.get("STOP_ON_PROBABLE") == "1":  # a warning: no action ends the program
    _emit = DETECTOR.emit

    def _emit_then_stop(finding):
        _emit(finding)
        if finding.kind == "probable-deadlock":
            found(finding)

    DETECTOR.emit = _emit_then_stop

deadlockwatch.enable(
    interval=0.02,
    threshold=0.05,
    on_deadlock=found,
    report=os.environ["REPORT"],
    probable_after=float(os.environ.get("PROBABLE_AFTER", "5")),
)

def finished():
    print(json.dumps({"finished": True, "ticks": TICKS[0]}), flush=True)

async def watched(n=5):
    # A rescue that comes once the watcher has looked n more times while
    # something waited past the threshold (a state, not a duration: under
    # load 0.6 s was two looks), sleeping meanwhile as a rescuer would.
    start, end = TICKS[0], time.monotonic() + 20
    while TICKS[0] < start + n and time.monotonic() < end:
        await asyncio.sleep(0.01)
"""


def _run(
    tmp_path: Path, body: str, rescue: bool | None = None, **more: str
) -> tuple[dict[str, Any], list[Any]]:
    env = {} if rescue is None else {"RESCUE": "1" if rescue else "0"}
    env.update(more)
    out, findings = run_program(tmp_path, PRELUDE + textwrap.dedent(body), env=env, timeout=40)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines, out
    return lines[-1], findings


def test_lock_abba_between_two_tasks_is_reported_naming_both(tmp_path: Path) -> None:
    result, findings = _run(
        tmp_path,
        """
        async def one(a, b, name):
            async with a:
                await asyncio.sleep(0.05)
                async with b:
                    pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            START[0] = time.monotonic()
            t1 = asyncio.create_task(one(a, b, "transfer"), name="transfer")
            t2 = asyncio.create_task(one(b, a, "audit"), name="audit")
            await asyncio.gather(t1, t2)
            finished()

        asyncio.run(main())
        """,
    )
    assert result["kind"] == "deadlock", result
    assert sorted(result["cycle"]) == ["audit", "transfer"]
    assert result["cause"] == "2 tasks each wait for a resource held by the next"
    assert result["elapsed"] < 1.5, result
    # The inversion, learned as the second task took its second Lock, comes
    # first (issue 15: asyncio Locks' orders), naming both tasks.
    inversion, record = findings
    assert inversion["kind"] == "lock-order-inversion", inversion
    assert sorted(e["thread"] for e in inversion["order"]) == ["task audit", "task transfer"]
    # The JSON report names the tasks, their loop's thread and their await chains.
    details = {d["name"]: d for d in record["thread_details"]}
    assert details["transfer"]["task"] is True
    assert "MainThread" in details["transfer"]["loop_thread"]
    assert details["transfer"]["waits_for"]["at"]["function"] == "one"
    (held,) = details["transfer"]["holds"]
    assert held["acquired_at"]["function"] == "one"
    # The two locks; and the gather() main awaits, stuck behind the cycle.
    types = sorted(r["type"] for r in record["resources"])
    assert types.count("asyncio.Lock") == 2 and "asyncio.gather" in types, types
    assert "Task-1" in details and details["Task-1"]["waits_for"]["at"]["function"] == "main"
    assert any(fr["code"] == "async with b:" for fr in record["stacks"]["audit"])
    # Read back (`deadlockwatch report`), the tasks are tasks again, in text and DOT.
    finding = finding_from_json(record)
    assert {t.name for t in finding.threads if t.is_task} == {"transfer", "audit", "Task-1"}
    text = format_text(finding)
    assert "  Task 'audit' (on the event loop of thread 'MainThread' (ident " in text
    assert "    await chain (most recent call last):" in text
    assert "task on the loop of 'MainThread'" in to_dot([finding])


TWO_TASKS_AWAITING_EACH_OTHER = """
    tasks = {}

    async def a():
        await asyncio.sleep(0.02)
        await tasks["b"]

    async def b():
        await asyncio.sleep(0.02)
        await tasks["a"]

    async def main():
        START[0] = time.monotonic()
        tasks["a"] = asyncio.create_task(a(), name="A")
        tasks["b"] = asyncio.create_task(b(), name="B")
        await asyncio.gather(tasks["a"], tasks["b"])
        finished()

    asyncio.run(main())
"""


def test_two_tasks_awaiting_each_other(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, TWO_TASKS_AWAITING_EACH_OTHER)
    assert result["kind"] == "deadlock", result
    assert sorted(result["cycle"]) == ["A", "B"]
    assert result["cause"] in ("'A' and 'B' await each other", "'B' and 'A' await each other")
    assert result["elapsed"] < 1.5, result


def test_lock_held_across_an_event_only_the_lock_waiter_sets(tmp_path: Path) -> None:
    result, _ = _run(
        tmp_path,
        """
        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def setter(lock, ev):
            await asyncio.sleep(0.05)
            async with lock:
                ev.set()

        async def main():
            lock, ev = asyncio.Lock(), asyncio.Event()
            START[0] = time.monotonic()
            t1 = asyncio.create_task(holder(lock, ev), name="holder")
            t2 = asyncio.create_task(setter(lock, ev), name="setter")
            await asyncio.gather(t1, t2)
            finished()

        asyncio.run(main())
        """,
    )
    assert result["kind"] == "deadlock", result
    assert result["cycle"] == ["holder", "setter"]
    assert result["cause"].startswith("'holder' waits on asyncio.Event(created prog.py:")
    assert "which 'setter' needs before it could set it" in result["cause"]
    assert result["elapsed"] < 1.5, result


def test_a_lone_task_awaiting_a_stop_event_is_no_deadlock(tmp_path: Path) -> None:
    """A task that holds nothing, awaiting an Event nobody can set, blocks
    nobody (a server's ``await stop.wait()``): not reported; the program
    ends after 1.5 s (SIGALRM).  The control (``RESCUE=0``): the same task
    holding a Lock another task awaits is reported."""
    body = """
        import signal

        def alarm(signum, frame):
            finished()
            os._exit(0)

        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, 1.5)

        async def other(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, stop = asyncio.Lock(), asyncio.Event()
            if RESCUE:
                await stop.wait()
            async with lock:
                asyncio.create_task(other(lock), name="other")
                await stop.wait()

        asyncio.run(main())
    """
    result, findings = _run(tmp_path, body, rescue=True)
    assert result.get("finished") and findings == [], (result, findings)
    assert result["ticks"] >= 5, result
    result, findings = _run(tmp_path, body, rescue=False)
    assert result.get("kind") == "deadlock", result
    assert [f["kind"] for f in findings] == ["deadlock"], findings


def test_bounded_queue_put_under_a_lock_the_consumer_needs(tmp_path: Path) -> None:
    result, _ = _run(
        tmp_path,
        """
        async def producer(lock, q):
            async with lock:
                await q.put(1)
                await q.put(2)  # full: waits for the consumer, holding the lock

        async def consumer(lock, q):
            await asyncio.sleep(0.05)
            async with lock:
                await q.get()

        async def main():
            lock, q = asyncio.Lock(), asyncio.Queue(maxsize=1)
            START[0] = time.monotonic()
            await asyncio.gather(
                asyncio.create_task(producer(lock, q), name="producer"),
                asyncio.create_task(consumer(lock, q), name="consumer"),
            )
            finished()

        asyncio.run(main())
        """,
    )
    assert result["kind"] == "deadlock", result
    assert result["cycle"] == ["producer", "consumer"]
    assert result["cause"].startswith("'producer' waits on asyncio.Queue(created prog.py:")
    assert "which 'consumer' needs before it could take an item from it" in result["cause"]
    assert result["elapsed"] < 1.5, result


EXECUTOR_REENTERED = """
    import concurrent.futures

    ex = concurrent.futures.ThreadPoolExecutor(2 if RESCUE else 1, thread_name_prefix="one")

    def blocking_io():
        time.sleep(0.6)
        return 1

    async def inner():
        loop = asyncio.get_running_loop()
        if TO_THREAD:
            return await asyncio.to_thread(blocking_io)
        return await loop.run_in_executor(ex, blocking_io)

    def sync_part(loop):
        # In the executor's worker: back into the loop, and wait for it.
        return asyncio.run_coroutine_threadsafe(inner(), loop).result()

    async def main():
        loop = asyncio.get_running_loop()
        if TO_THREAD:
            loop.set_default_executor(ex)
        START[0] = time.monotonic()
        if TO_THREAD:
            got = await asyncio.to_thread(sync_part, loop)
        else:
            got = await loop.run_in_executor(ex, sync_part, loop)
        assert got == 1
        finished()

    asyncio.run(main())
"""


@pytest.mark.parametrize("to_thread", [False, True], ids=["run_in_executor", "to_thread"])
def test_a_one_worker_executor_reentered_through_the_loop_is_reported(
    tmp_path: Path, to_thread: bool
) -> None:
    """run_in_executor (or to_thread) -> run_coroutine_threadsafe ->
    run_in_executor on a one-worker executor (django/asgiref #249): the
    worker waits for a task that waits for a job queued behind the worker.
    Negative: the same with a second worker, which runs the inner job."""
    body = f"TO_THREAD = {to_thread}\n" + textwrap.dedent(EXECUTOR_REENTERED)
    # The negative first: the report file is the test's, and grows.
    result, findings = _run(tmp_path, body, rescue=True)
    assert result.get("finished") and findings == [], (result, findings)
    assert result["ticks"] >= 5, result
    result, findings = _run(tmp_path, body, rescue=False)
    assert result.get("kind") == "deadlock", result
    assert result["cycle"] == ["one_0", "Task-2"], result
    assert result["tasks"] == ["Task-1", "Task-2"], result
    assert result["elapsed"] < 1.5, result
    (record,) = findings
    steps = {s["thread"]: s for s in record["cycle"]}
    assert steps["one_0"]["held_by"] == "Task-2" and steps["Task-2"]["held_by"] == "one_0"
    details = {d["name"]: d for d in record["thread_details"]}
    assert details["Task-2"]["waits_for"]["at"]["function"] == "inner"
    assert details["Task-1"]["waits_for"]["at"]["function"] == "main"  # behind the cycle
    text = format_text(finding_from_json(record))
    assert re.search(
        r"'one_0' waits for Future\(created \S*prog.py:\d+\) "
        r"\(running in a task\), run by 'Task-2'",
        text,
    ), text
    assert re.search(
        r"'Task-2' waits for Future\(created \S*prog.py:\d+\) "
        r"\(pending in ThreadPoolExecutor 'one'\), queued behind 'one_0'",
        text,
    ), text


LOOP_STOPPED = """
    import threading

    M = threading.Lock()

    async def needs(L):
        async with L:
            return 42

    async def holder(L, taken):
        async with L:
            taken.set()
            await asyncio.sleep(0.1)

    async def main():
        loop = asyncio.get_running_loop()
        L, taken, asked = asyncio.Lock(), asyncio.Event(), threading.Event()
        got = []

        def worker():
            with M:
                fut = asyncio.run_coroutine_threadsafe(needs(L), loop)
                asked.set()
                if RESCUE:
                    time.sleep(0.6)  # busy a while, and lets go of M before it waits
                else:
                    fut.result()  # waits for the loop, holding M
            got.append(fut.result())

        h = asyncio.create_task(holder(L, taken), name="holder")
        await taken.wait()
        t = threading.Thread(target=worker, name="worker", daemon=True)
        t.start()
        await asyncio.to_thread(asked.wait)
        while not L._waiters:  # the worker's coroutine awaits L
            await asyncio.sleep(0.005)
        START[0] = time.monotonic()
        with M:  # no await: the loop's thread blocks, and with it 'holder'
            pass
        await h
        await asyncio.to_thread(t.join)
        assert got == [42]
        finished()

    asyncio.run(main())
"""


def test_a_task_stopped_by_its_loops_blocked_thread_is_in_the_cycle(tmp_path: Path) -> None:
    """A task holds asyncio.Lock L; the loop's thread blocks on a threading
    Lock held by a thread that waits (run_coroutine_threadsafe().result())
    for a coroutine that needs L.  'holder' cannot release L: its loop's
    thread is blocked.  Negative: the same, the thread letting go of the
    threading Lock (after a while) before it waits."""
    body = textwrap.dedent(LOOP_STOPPED)
    # The negative first: the report file is the test's, and grows.
    result, findings = _run(tmp_path, body, rescue=True)
    assert result.get("finished") and findings == [], (result, findings)
    assert result["ticks"] >= 5, result
    result, findings = _run(tmp_path, body, rescue=False)
    assert result.get("kind") == "deadlock", result
    # The coroutine's task (unnamed: its number differs between versions).
    (task,) = [n for n in result["cycle"] if n.startswith("Task-")]
    assert sorted(result["cycle"]) == sorted(["MainThread", task, "holder", "worker"]), result
    assert result["elapsed"] < 1.5, result
    (record,) = findings
    text = format_text(finding_from_json(record))
    assert "'holder' cannot run: its event loop's thread 'MainThread' is blocked" in text, text
    assert re.search(
        r"'worker' waits for Future\(created \S*prog.py:\d+\) "
        rf"\(running in a task\), run by '{task}'",
        text,
    ), text
    assert re.search(
        rf"'{task}' waits for asyncio.Lock\(created \S*prog.py:\d+\) held by 'holder'", text
    ), text


RAISE_IN_TASKS = """
    import threading

    deadlockwatch.enable(
        interval=0.02, threshold=0.05, on_deadlock=os.environ["ACTION"], report=os.environ["REPORT"]
    )

    async def one(a, b, timed):
        try:
            async with a:
                await asyncio.sleep(0.05)
                if timed:  # the rescue: a timeout (a timed cycle at most)
                    try:
                        await asyncio.wait_for(b.acquire(), 0.6)
                    except asyncio.TimeoutError:
                        return "timeout"
                    b.release()
                    return "done"
                async with b:
                    return "done"
        except deadlockwatch.DeadlockError:
            return "DeadlockError"

    async def main():
        loop = asyncio.get_running_loop()
        home = threading.get_ident()
        foreign = []
        original = loop.call_soon_threadsafe

        def counted(callback, *args, **kwargs):
            # What other threads (the watcher) hand the loop to run.
            if threading.get_ident() != home:
                foreign.append(getattr(callback, "__name__", "?"))
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted
        a, b = asyncio.Lock(), asyncio.Lock()
        got = await asyncio.gather(
            asyncio.create_task(one(a, b, RESCUE), name="transfer"),
            asyncio.create_task(one(b, a, False), name="audit"),
        )
        print(json.dumps({
            "got": got, "foreign": foreign, "locked": [a.locked(), b.locked()], "ticks": TICKS[0]
        }), flush=True)

    asyncio.run(main())
"""


@pytest.mark.parametrize("action", ["raise", "raise-all"])
def test_raise_gives_tasks_of_the_cycle_deadlock_error_at_their_await(
    tmp_path: Path, action: str
) -> None:
    """``on_deadlock="raise"`` outside pytest: a task of an asyncio.Lock ABBA
    gets DeadlockError at its ``async with``, unwinds and releases its lock,
    and the other task goes on (``raise-all``: both get it).  The watcher
    hands the loop one callback for it (``call_soon_threadsafe``), and
    nothing while no deadlock is confirmed: the negative, the same program
    with one side's second acquire under a timeout, gets no error and no
    callback (the control for the counting: the deadlock's callback is seen)."""
    body = textwrap.dedent(RAISE_IN_TASKS)
    out, findings = run_program(
        tmp_path, PRELUDE + body, env={"ACTION": action, "RESCUE": "1"}, timeout=40
    )
    result = json.loads(out.splitlines()[-1])
    assert result["got"] == ["timeout", "done"], result
    assert result["foreign"] == [] and result["ticks"] >= 5, result
    assert [f["kind"] for f in findings if f["kind"] != "timed-cycle"] == [], findings

    out, findings = run_program(
        tmp_path, PRELUDE + body, env={"ACTION": action, "RESCUE": "0"}, timeout=40
    )
    result = json.loads(out.splitlines()[-1])
    expected = (
        [["DeadlockError", "DeadlockError"]]
        if action == "raise-all"
        else [["DeadlockError", "done"], ["done", "DeadlockError"]]
    )
    assert result["got"] in expected, result
    assert result["locked"] == [False, False], result
    assert result["foreign"] == ["_interrupt"], result
    assert [f["kind"] for f in findings if f["kind"] != "timed-cycle"] == [
        "lock-order-inversion",
        "deadlock",
    ], findings


# Each: the tasks look stuck for a while (the watcher makes many passes),
# then the rescue comes; without it (the control) they are stuck for good.
NOT_A_DEADLOCK = {
    # Twenty tasks through a Semaphore(2); in the control each holder keeps
    # its unit and awaits an Event nobody sets.
    "semaphore_contended_correctly": """
        async def worker(sem, never):
            async with sem:
                if RESCUE:
                    await asyncio.sleep(0.03)
                else:
                    await never.wait()

        async def main():
            sem, never = asyncio.Semaphore(2), asyncio.Event()
            await asyncio.gather(*(worker(sem, never) for _ in range(20)))
    """,
    # A task holds a lock and awaits an Event that loop.call_later sets; a
    # second task awaits the lock.
    "event_set_by_call_later": """
        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, ev = asyncio.Lock(), asyncio.Event()
            if RESCUE:
                loop, start = asyncio.get_running_loop(), TICKS[0]

                def later():
                    # A timer, again and again until the watcher has looked
                    # 5 times (a state, not a duration), then the set.
                    if TICKS[0] >= start + 5:
                        ev.set()
                    else:
                        loop.call_later(0.01, later)

                loop.call_later(0.01, later)
            await asyncio.gather(holder(lock, ev), waiter(lock))
    """,
    # The Event is set by a task that sleeps first.
    "event_set_after_asyncio_sleep": """
        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def sleeper(ev):
            await watched()  # asyncio.sleep until the watcher has looked 5 times
            ev.set()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, ev = asyncio.Lock(), asyncio.Event()
            extra = [sleeper(ev)] if RESCUE else []
            await asyncio.gather(holder(lock, ev), waiter(lock), *extra)
    """,
    # The Event is set by a task reading a socket, whose data comes from
    # another process 0.6 s later; in the control nothing is connected and
    # the reader awaits an Event nobody sets.
    "event_set_by_a_task_reading_a_socket": """
        import socket, subprocess

        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def reader(ev, never):
            if RESCUE:
                srv = socket.socket()
                srv.bind(("127.0.0.1", 0))
                srv.listen()
                port = srv.getsockname()[1]
                code = (
                    "import socket, time; s = socket.create_connection(('127.0.0.1', %d)); "
                    "time.sleep(0.6); s.sendall(b'x'); s.close()" % port
                )
                child = subprocess.Popen([sys.executable, "-c", code])
                srv.setblocking(False)
                conn, _ = await asyncio.get_running_loop().sock_accept(srv)
                data = await asyncio.get_running_loop().sock_recv(conn, 1)
                assert data == b"x"
                conn.close()
                srv.close()
                child.wait()
            else:
                await never.wait()
            ev.set()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, ev, never = asyncio.Lock(), asyncio.Event(), asyncio.Event()
            await asyncio.gather(holder(lock, ev), waiter(lock), reader(ev, never))
    """,
    # The Event is set by a protocol (no task: a callback of the loop's I/O)
    # when data comes on a connection its server accepted, from another
    # process 0.6 s later; in the control there is no server.
    "event_set_by_a_protocol": """
        import subprocess

        EV = []

        class Setter(asyncio.Protocol):
            def data_received(self, data):
                EV[0].set()

        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock = asyncio.Lock()
            EV.append(asyncio.Event())
            if RESCUE:
                srv = await asyncio.get_running_loop().create_server(Setter, "127.0.0.1", 0)
                code = (
                    "import socket, time; time.sleep(0.6); "
                    "s = socket.create_connection(('127.0.0.1', %d)); s.sendall(b'x'); "
                    "time.sleep(1); s.close()" % srv.sockets[0].getsockname()[1]
                )
                child = subprocess.Popen([sys.executable, "-c", code])
            await asyncio.gather(holder(lock, EV[0]), waiter(lock))
            if RESCUE:
                srv.close()
                child.wait()
    """,
    # As above, but the protocol calls a helper that sets the global Event:
    # its own code does not name the global, so what it may do through it
    # cannot be read off it; with the server there, no certain deadlock (at
    # most a probable one, after probable_after, 5 s here).
    "event_set_by_a_helper_of_a_protocol": """
        import subprocess

        EV = []

        def notify():
            EV[0].set()

        class Caller(asyncio.Protocol):
            def data_received(self, data):
                notify()

        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock = asyncio.Lock()
            EV.append(asyncio.Event())
            if RESCUE:
                srv = await asyncio.get_running_loop().create_server(Caller, "127.0.0.1", 0)
                code = (
                    "import socket, time; time.sleep(0.6); "
                    "s = socket.create_connection(('127.0.0.1', %d)); s.sendall(b'x'); "
                    "time.sleep(1); s.close()" % srv.sockets[0].getsockname()[1]
                )
                child = subprocess.Popen([sys.executable, "-c", code])
            await asyncio.gather(holder(lock, EV[0]), waiter(lock))
            if RESCUE:
                srv.close()
                child.wait()
    """,
    # asgiref's sync_to_async -> async_to_sync shape: a task holding a Lock
    # awaits an executor job, which schedules a coroutine on the loop and
    # waits on a threading Condition notified when that coroutine is done;
    # the coroutine needs the Lock only in the control.  The Condition is
    # reached by the task's coroutine, stuck itself: before stop 28 its
    # loop's thread counted as able to notify it (it runs the task), and the
    # walk stopped 12 levels up, short of the worker's frame.
    "thread_waits_on_a_condition_a_task_notifies": """
        import threading

        async def main():
            loop = asyncio.get_running_loop()
            lock, done = asyncio.Lock(), threading.Condition()
            box = []

            async def inner():
                if RESCUE:
                    await watched()  # sleeping meanwhile: a task that can run
                else:
                    async with lock:
                        pass
                with done:
                    box.append(1)
                    done.notify_all()

            def job():
                asyncio.run_coroutine_threadsafe(inner(), loop)
                with done:
                    while not box:
                        done.wait()

            async with lock:
                await loop.run_in_executor(None, job)
    """,
    # The same, as asgiref's sync_to_async -> async_to_sync has it: the Lock
    # a module global, the Condition in a context variable the task reads
    # (to_thread and run_coroutine_threadsafe copy the context).  The task's
    # context is its own: the future it waits on in the Lock keeps it (a C
    # future keeps its first callback's context), which led the walk up to
    # the global, and every thread counted as able to notify (probable only).
    "thread_waits_on_a_condition_a_task_notifies_through_its_context": """
        import contextvars, threading
        DONE = contextvars.ContextVar("DONE")
        LOCK = None

        async def main():
            global LOCK
            loop = asyncio.get_running_loop()
            LOCK, box = asyncio.Lock(), []
            DONE.set(threading.Condition())

            async def inner():
                if RESCUE:
                    await watched()  # sleeping meanwhile: a task that can run
                else:
                    async with LOCK:
                        pass
                with DONE.get():
                    box.append(1)
                    DONE.get().notify_all()

            def job():
                asyncio.run_coroutine_threadsafe(inner(), loop)
                with DONE.get():
                    while not box:
                        DONE.get().wait()

            async with LOCK:
                await asyncio.to_thread(job)
    """,
    # The Event is set by a heartbeat task gathered with the holder once the
    # watcher has looked; in the control the heartbeat beats on, without the
    # Event.  A task's done callbacks (gather's) lead to its siblings: not a
    # way for one sibling to reach what another holds.
    "event_set_by_a_heartbeat_in_the_same_gather": """
        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def heartbeat(ev):
            start = TICKS[0]
            while True:
                await asyncio.sleep(0.01)
                if ev is not None and TICKS[0] >= start + 5:
                    ev.set()
                    return

        async def main():
            lock, ev = asyncio.Lock(), asyncio.Event()
            await asyncio.gather(holder(lock, ev), waiter(lock), heartbeat(ev if RESCUE else None))
    """,
    # The Event is set by a server's client handler (a closure over it) when
    # another process connects, 0.6 s later; in the control the server is
    # there, and the client connects, but its handler does not have it.
    "event_set_by_a_server_client_handler": """
        import subprocess

        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, ev = asyncio.Lock(), asyncio.Event()

            async def client(reader, writer):
                writer.close()
                if RESCUE:
                    ev.set()

            async def other(reader, writer):
                writer.close()

            srv = await asyncio.start_server(client if RESCUE else other, "127.0.0.1", 0)
            code = (
                "import socket, time; time.sleep(0.6); "
                "s = socket.create_connection(('127.0.0.1', %d)); "
                "time.sleep(1); s.close()" % srv.sockets[0].getsockname()[1]
            )
            child = subprocess.Popen([sys.executable, "-c", code])
            try:
                await asyncio.gather(holder(lock, ev), waiter(lock))
            finally:
                srv.close()
                child.wait()
    """,
    # The Event is set from another thread (``call_soon_threadsafe``) once
    # the watcher has looked; in the control that thread has the loop, and
    # hands it callbacks, but has not the Event.
    "event_set_from_a_thread": """
        import threading

        async def holder(lock, ev):
            async with lock:
                await ev.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        def poke(loop, ev):
            start = TICKS[0]
            while TICKS[0] < start + 5:
                time.sleep(0.01)
                loop.call_soon_threadsafe(lambda: None)
            loop.call_soon_threadsafe(ev.set)

        def idle(loop):
            while True:
                time.sleep(0.01)
                loop.call_soon_threadsafe(lambda: None)

        async def main():
            loop = asyncio.get_running_loop()
            lock, ev = asyncio.Lock(), asyncio.Event()
            if RESCUE:
                threading.Thread(target=poke, args=(loop, ev), daemon=True).start()
            else:
                threading.Thread(target=idle, args=(loop,), daemon=True).start()
            await asyncio.gather(holder(lock, ev), waiter(lock))
    """,
    # A task holds a lock and awaits a stop Event that a signal handler of
    # the loop sets (the signal comes from another process, 0.6 s later).
    "event_set_by_a_signal_handler": """
        import signal, subprocess

        async def holder(lock, stop):
            async with lock:
                await stop.wait()

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, stop = asyncio.Lock(), asyncio.Event()
            if RESCUE:
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
                code = (
                    "import os, signal, time; time.sleep(0.6); os.kill(%d, signal.SIGUSR1)"
                    % os.getpid()
                )
                child = subprocess.Popen([sys.executable, "-c", code])
            await asyncio.gather(holder(lock, stop), waiter(lock))
            if RESCUE:
                child.wait()
    """,
    # A thread holding a threading.Lock waits on run_coroutine_threadsafe(
    # ...).result(); the loop's thread, in the control, blocks on that lock
    # (across the two worlds); with the rescue only for a while (a timeout).
    "loop_thread_and_run_coroutine_threadsafe": """
        import threading

        lock, ready = threading.Lock(), threading.Event()

        async def answer():
            return 42

        async def main():
            loop = asyncio.get_running_loop()
            got = []

            def worker():
                with lock:
                    ready.set()
                    time.sleep(0.1)  # the loop's thread blocks on the lock meanwhile
                    got.append(asyncio.run_coroutine_threadsafe(answer(), loop).result())

            t = threading.Thread(target=worker, name="worker", daemon=True)
            t.start()
            await asyncio.to_thread(ready.wait)
            # No await from here to the lock: the loop's thread blocks on it and
            # the worker's coroutine cannot run.  With the rescue, for 0.6 s.
            if lock.acquire(timeout=0.6 if RESCUE else -1):
                lock.release()
            await asyncio.to_thread(t.join)
            assert got == [42]
    """,
    # A task holding a Lock awaits a future of its own (loop.create_future())
    # that a task completes once the watcher has looked; a second task would
    # complete it too, but only after taking the lock.  In the control only
    # that second task can.
    "future_completed_by_a_task": """
        async def holder(lock, fut):
            async with lock:
                await fut

        async def completer(fut):
            await watched()
            fut.set_result(1)

        async def waiter(lock, fut):
            await asyncio.sleep(0.02)
            async with lock:
                if not fut.done():
                    fut.set_result(2)

        async def main():
            lock, fut = asyncio.Lock(), asyncio.get_running_loop().create_future()
            tasks = [
                asyncio.create_task(holder(lock, fut), name="holder"),
                asyncio.create_task(waiter(lock, fut), name="waiter"),
            ]
            if RESCUE:
                tasks.append(asyncio.create_task(completer(fut), name="completer"))
            await asyncio.gather(*tasks)
    """,
    # The same future completed from a thread (call_soon_threadsafe), which
    # polls the watcher's looks meanwhile: a thread that can run can hand the
    # loop a callback.
    "future_completed_from_a_thread": """
        import threading

        async def holder(lock, fut):
            async with lock:
                await fut

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            loop = asyncio.get_running_loop()
            lock, fut = asyncio.Lock(), loop.create_future()

            def complete():
                start = TICKS[0]
                while TICKS[0] < start + 5:
                    time.sleep(0.01)
                loop.call_soon_threadsafe(fut.set_result, 1)

            if RESCUE:
                threading.Thread(target=complete, daemon=True).start()
            await asyncio.gather(holder(lock, fut), waiter(lock))
    """,
    # asyncio.shield() of a task: the outer future is completed when the
    # task ends, which it does once the watcher has looked (in the control
    # the task awaits an Event nobody sets).
    "shield_of_a_task_that_ends": """
        async def inner(never):
            if RESCUE:
                await watched()
            else:
                await never.wait()

        async def holder(lock, job):
            async with lock:
                await asyncio.shield(job)

        async def waiter(lock):
            await asyncio.sleep(0.02)
            async with lock:
                pass

        async def main():
            lock, never = asyncio.Lock(), asyncio.Event()
            job = asyncio.create_task(inner(never), name="job")
            await asyncio.gather(holder(lock, job), waiter(lock))
    """,
    # The loop's thread calls .result() on a run_coroutine_threadsafe future
    # for its own loop (aiomqtt #174): only that loop can complete it.  With
    # the rescue the wait has a timeout, and the coroutine runs after it.
    "loop_thread_waits_on_its_own_run_coroutine_threadsafe": """
        import concurrent.futures

        async def answer():
            return 42

        async def main():
            await watched(0)  # the watcher runs
            fut = asyncio.run_coroutine_threadsafe(answer(), asyncio.get_running_loop())
            try:
                fut.result(timeout=0.6 if RESCUE else None)
            except concurrent.futures.TimeoutError:
                pass
            await asyncio.wrap_future(fut)
            assert fut.result() == 42
    """,
    # The loop's thread joins a thread that waits on
    # run_coroutine_threadsafe(...).result() for that loop (griptape #4469's
    # shape); with the rescue the join has a timeout.
    "loop_thread_joins_a_thread_waiting_on_its_loop": """
        import threading

        async def answer():
            return 42

        async def main():
            loop = asyncio.get_running_loop()
            got, asked = [], threading.Event()

            def worker():
                fut = asyncio.run_coroutine_threadsafe(answer(), loop)
                asked.set()
                got.append(fut.result())

            t = threading.Thread(target=worker, name="worker", daemon=True)
            t.start()
            asked.wait(5)
            t.join(timeout=0.6 if RESCUE else None)
            await asyncio.to_thread(t.join)
            assert got == [42]
    """,
    # An ABBA in which one side takes its second lock under a timeout (a
    # timed cycle at most); in the control without it.
    "abba_broken_by_a_timeout": """
        async def one(a, b, timed):
            async with a:
                await asyncio.sleep(0.05)
                if timed:
                    try:
                        await asyncio.wait_for(b.acquire(), 0.6)
                    except asyncio.TimeoutError:
                        return
                    b.release()
                else:
                    async with b:
                        pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            await asyncio.gather(one(a, b, RESCUE), one(b, a, False))
    """,
    # A task holding a Lock awaits asyncio.wait() for a task that needs it;
    # with the rescue, under a timeout.
    "asyncio_wait_for_a_task_that_needs_a_held_lock": """
        async def needs(lock):
            async with lock:
                return 1

        async def parent(lock):
            async with lock:
                child = asyncio.create_task(needs(lock), name="child")
                done, _ = await asyncio.wait([child], timeout=0.6 if RESCUE else None)
            if child not in done:
                await child

        async def main():
            await asyncio.create_task(parent(asyncio.Lock()), name="parent")
    """,
    # A task holding a Lock leaves a TaskGroup whose task needs it; with the
    # rescue it lets go of the Lock first (after a while).
    "task_group_exit_awaiting_a_task_that_needs_a_held_lock": """
        async def needs(lock):
            async with lock:
                return 1

        async def parent(lock):
            await lock.acquire()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(needs(lock), name="child")
                if RESCUE:
                    await watched()  # the child waits for the Lock meanwhile
                    lock.release()
            if not RESCUE:
                lock.release()

        async def main():
            await asyncio.create_task(parent(asyncio.Lock()), name="parent")
    """,
    # Queue.join() under a Lock the consumer needs before its task_done();
    # with the rescue the consumer calls task_done() first (after a while).
    "queue_join_under_a_lock_the_consumer_needs": """
        async def producer(lock, q):
            async with lock:
                await q.put(1)
                await q.join()

        async def consumer(lock, q):
            await q.get()
            if RESCUE:
                await watched()  # the producer waits in join() meanwhile
                q.task_done()
            async with lock:
                pass
            if not RESCUE:
                q.task_done()

        async def main():
            lock, q = asyncio.Lock(), asyncio.Queue()
            await asyncio.gather(
                asyncio.create_task(producer(lock, q), name="producer"),
                asyncio.create_task(consumer(lock, q), name="consumer"),
            )
    """,
    # A Barrier(2) awaited under a Lock the other party needs before it
    # reaches the Barrier; with the rescue it reaches it first (after a while).
    "barrier_awaited_under_a_lock_the_other_party_needs": """
        async def first(barrier, lock):
            async with lock:
                await barrier.wait()

        async def second(barrier, lock):
            await asyncio.sleep(0.02)
            if RESCUE:
                await watched()  # the first party waits meanwhile
                await barrier.wait()
            async with lock:
                pass
            if not RESCUE:
                await barrier.wait()

        async def main():
            barrier, lock = asyncio.Barrier(2), asyncio.Lock()
            await asyncio.gather(
                asyncio.create_task(first(barrier, lock), name="first"),
                asyncio.create_task(second(barrier, lock), name="second"),
            )
    """,
    # A task holding a Lock iterates as_completed() over a task that needs
    # it (as_completed fills a queue of its own from the task's done
    # callback: a closure on 3.10-3.12, a bound method of its iterator on
    # 3.13); with the rescue as_completed has a timeout (a timer).
    "as_completed_of_a_task_that_needs_a_held_lock": """
        async def child(lock):
            async with lock:
                return 1

        async def parent(lock):
            async with lock:
                c = asyncio.create_task(child(lock), name="child")
                for f in asyncio.as_completed([c], timeout=0.6 if RESCUE else None):
                    try:
                        await f
                    except asyncio.TimeoutError:
                        pass
            await c

        async def main():
            await asyncio.create_task(parent(asyncio.Lock()), name="parent")
    """,
    # A task holds a threading Lock across an await of an Event (loguru
    # #906's shape); an executor job waits on that Lock.  The Lock is the
    # task's, not its loop thread's (which runs on); a task sets the Event
    # once the watcher has looked.
    "threading_lock_held_by_a_task_across_an_event_a_task_sets": """
        import threading

        async def holder(lock, ev):
            with lock:
                await ev.wait()

        def needs(lock):
            with lock:
                pass

        async def setter(ev):
            await watched()
            ev.set()

        async def main():
            lock, ev = threading.Lock(), asyncio.Event()
            loop = asyncio.get_running_loop()
            h = asyncio.create_task(holder(lock, ev), name="holder")
            await asyncio.sleep(0.02)
            tasks = [h, loop.run_in_executor(None, needs, lock)]
            if RESCUE:
                tasks.append(asyncio.create_task(setter(ev), name="setter"))
            await asyncio.gather(*tasks)
    """,
    # A task holds a threading Lock across an await of the executor job it
    # runs, which needs that Lock: with a timeout on the job's wait it gives
    # up, and the task goes on; without one, both wait for ever.
    "threading_lock_held_by_a_task_awaiting_a_job_that_needs_it": """
        import threading

        def needs(lock):
            if RESCUE:
                if lock.acquire(timeout=1.0):
                    lock.release()
            else:
                with lock:
                    pass

        async def holder(lock):
            with lock:
                await asyncio.get_running_loop().run_in_executor(None, needs, lock)

        async def main():
            await asyncio.create_task(holder(threading.Lock()), name="holder")
    """,
}
# The same as future_completed_by_a_task, the holder handing its future to
# asyncio.wait_for without a timeout (asyncio's frame awaits it: before, no
# tracked wait, and the control hung unreported).
_WAIT_FOR = "future_awaited_through_wait_for_completed_by_a_task"
NOT_A_DEADLOCK[_WAIT_FOR] = NOT_A_DEADLOCK["future_completed_by_a_task"].replace(
    "                await fut\n", "                await asyncio.wait_for(fut, None)\n"
)
assert "wait_for(fut, None)" in NOT_A_DEADLOCK[_WAIT_FOR]
# The same, the holder gathering its future (a gather of a plain future:
# before, the future was taken for a gather of nothing, and the control hung
# unreported).
_GATHER = "future_gathered_completed_by_a_task"
NOT_A_DEADLOCK[_GATHER] = NOT_A_DEADLOCK["future_completed_by_a_task"].replace(
    "                await fut\n", "                await asyncio.gather(fut)\n"
)
assert "gather(fut)" in NOT_A_DEADLOCK[_GATHER]
#: The cases of asyncio classes new in 3.11.
NEEDS_311 = {
    "task_group_exit_awaiting_a_task_that_needs_a_held_lock",
    "barrier_awaited_under_a_lock_the_other_party_needs",
}
#: Cases stuck with no cycle: the one a chain ends at waits on a signal no
#: thread or task that can run can give (the executor's worker, which could
#: hand the loop ``call_soon_threadsafe(ev.set)``, has no way to the Event:
#: until stop 28 every thread counted as a giver, and this read as a cycle).
STUCK = {
    "threading_lock_held_by_a_task_across_an_event_a_task_sets": (
        ["asyncio_0", "holder"],
        "for which 'holder' waits holding Lock(created prog.py:",
    ),
}

#: For the controls of the later cases: the cycle, and the wait that names
#: what the first of it awaits.
CYCLES = {
    "threading_lock_held_by_a_task_awaiting_a_job_that_needs_it": (
        ["asyncio_0", "holder"],
        ") held by 'holder'",
    ),
    "as_completed_of_a_task_that_needs_a_held_lock": (
        ["child", "parent"],
        "which 'child' needs before it could put an item into it",
    ),
    "asyncio_wait_for_a_task_that_needs_a_held_lock": (
        ["child", "parent"],
        "'parent' awaits asyncio.wait() for all of 'child'; 'child' has not ended",
    ),
    "task_group_exit_awaiting_a_task_that_needs_a_held_lock": (
        ["child", "parent"],
        "'parent' awaits TaskGroup 'child'; 'child' has not ended",
    ),
    "queue_join_under_a_lock_the_consumer_needs": (
        ["consumer", "producer"],
        "which 'consumer' needs before it could finish the tasks of it",
    ),
    "barrier_awaited_under_a_lock_the_other_party_needs": (
        ["first", "second"],
        "which 'second' needs before it could reach it",
    ),
    "future_completed_by_a_task": (
        ["holder", "waiter"],
        "'holder' waits on asyncio.Future(0x",
    ),
    "future_awaited_through_wait_for_completed_by_a_task": (
        ["holder", "waiter"],
        "'holder' waits on asyncio.Future(0x",
    ),
    "future_gathered_completed_by_a_task": (
        ["holder", "waiter"],
        "'holder' waits on asyncio.Future(0x",
    ),
    "loop_thread_waits_on_its_own_run_coroutine_threadsafe": (
        ["MainThread"],
        "which only its own event loop can complete, and that loop cannot run while "
        "'MainThread' waits",
    ),
    "loop_thread_joins_a_thread_waiting_on_its_loop": (
        ["MainThread", "worker"],
        "'MainThread' joins 'worker', which waits for Future(created prog.py:",
    ),
}


def _skip_old(case: str) -> None:
    if case in NEEDS_311 and sys.version_info < (3, 11):
        pytest.skip("asyncio.TaskGroup and asyncio.Barrier are new in 3.11")


_MAIN = """
if os.environ.get("BUSY") == "1":
    import threading

    _program_main = main
    KEEP = []

    async def main():
        # What a real program has alive besides the tasks that hang: a
        # server listening, a heartbeat task, an idle executor worker, a
        # thread handing the loop callbacks.  None of them can reach what the
        # tasks wait for.
        loop = asyncio.get_running_loop()

        async def serve(reader, writer):
            writer.close()

        async def heartbeat():
            while True:
                await asyncio.sleep(0.01)

        def poke():
            while True:
                time.sleep(0.01)
                try:
                    loop.call_soon_threadsafe(lambda: None)
                except RuntimeError:  # closed
                    return

        KEEP.append(await asyncio.start_server(serve, "127.0.0.1", 0))
        KEEP.append(asyncio.create_task(heartbeat(), name="heartbeat"))
        await asyncio.to_thread(lambda: None)
        threading.Thread(target=poke, daemon=True, name="poker").start()
        await _program_main()

if os.environ["LOOP"] == "uvloop-unread":  # as a loop that cannot be read
    from deadlockwatch._track import loopread
    loopread._uv_fields = lambda loop: None
if os.environ["LOOP"].startswith("uvloop"):
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
finished()
"""

#: Each case on asyncio's loop and on uvloop's (read through the collector).
LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def _program(case: str, loop: str) -> str:
    _skip_old(case)
    if loop.startswith("uvloop"):
        pytest.importorskip("uvloop")
    return textwrap.dedent(NOT_A_DEADLOCK[case]) + _MAIN


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "uvloop-unread"])
@pytest.mark.parametrize("case", sorted(NOT_A_DEADLOCK))
def test_not_a_deadlock(tmp_path: Path, case: str, loop: str) -> None:
    """Each negative on asyncio's loop, on uvloop's, and on uvloop's as a loop
    that cannot be read (no false alarm there either: what cannot be read
    counts as able to run).  There, a Lock taken under a timeout (3.12+'s
    ``wait_for``) teaches its order: the ABBA's inversion, the one finding
    allowed besides a timed cycle."""
    result, findings = _run(tmp_path, _program(case, loop), rescue=True, LOOP=loop)
    assert result.get("finished"), result
    allowed = {"timed-cycle"}
    if loop == "uvloop-unread" and case == "abba_broken_by_a_timeout":
        allowed.add("lock-order-inversion")
    assert [f["kind"] for f in findings if f["kind"] not in allowed] == [], findings
    # The watcher looked, many times, while tasks had waited past the
    # threshold (for 0.6 s, at a pass every 0.02 s; the semaphore's last
    # waiters wait about 0.3 s).
    assert result["ticks"] >= 5, result


@LOOPS
@pytest.mark.parametrize("case", sorted(NOT_A_DEADLOCK))
def test_not_a_deadlock_control_without_the_rescue_is_reported(
    tmp_path: Path, case: str, loop: str
) -> None:
    result, findings = _run(tmp_path, _program(case, loop), rescue=False, LOOP=loop)
    assert result.get("kind") == "deadlock", result
    # An ABBA of Locks is also a lock-order inversion, learned before it hangs.
    findings = [f for f in findings if f["kind"] != "lock-order-inversion"]
    assert [f["kind"] for f in findings] == ["deadlock"], findings
    if case == "loop_thread_and_run_coroutine_threadsafe":
        # Across the two worlds: the worker thread and the loop's thread.
        (record,) = findings
        assert record["threads"] == ["worker", "MainThread"] or record["threads"] == [
            "MainThread",
            "worker",
        ]
        step = next(s for s in record["cycle"] if s["thread"] == "worker")
        assert step["held_by"] == "MainThread"
        assert result["elapsed"] < 1.5 + 0.7, result
    if case in STUCK:
        names, words = STUCK[case]
        assert result["cycle"] == [], result
        (record,) = findings
        text = format_text(finding_from_json(record))
        assert words in text and re.search(
            r"which '(asyncio_|uvloop_|ThreadPoolExecutor-\d+_)0' need\(s\)", text
        ), text
        # Tasks are among those that cannot run: the words say so; and the
        # chain's conditions say who holds what, and that it needs no cycle.
        assert record["cause"].startswith("no thread or task that can run will ever "), record
        assert record["conditions"]["hold_and_wait"] is True, record["reasons"]
        assert record["reasons"]["circular_wait"].startswith("none needed"), record["reasons"]
        assert sorted(names) == sorted(
            "asyncio_0" if n.startswith(("asyncio_", "uvloop_", "ThreadPool")) else n
            for n in record["threads"]
            if n != "Task-1"
        ), record
    if case.startswith("thread_waits_on_a_condition_a_task_notifies"):
        # The worker holds nothing the task that would notify waits for: that
        # task waits for the worker through the rest of the cycle (asgiref's
        # shape: 'asyncio_0' -> 'Task-2' -> 'Task-1'; where the main task's
        # context has the Condition too, it is the one that could notify).
        (record,) = [f for f in findings if f["kind"] == "deadlock"]
        assert re.fullmatch(
            r"'(asyncio|uvloop)_0' waits on Condition\(created prog\.py:\d+\), which "
            r"'(Task-\d)' could notify, and '\2' waits(, through 'Task-\d',)? for "
            r"'\1_0'",
            record["cause"],
        ), record["cause"]
    if case in CYCLES:
        names, words = CYCLES[case]
        # The default executor's threads: asyncio_0; uvloop's uvloop_0 (0.21+)
        # or ThreadPoolExecutor-0_0.
        worker = re.compile(r"(asyncio|uvloop)_\d+|ThreadPoolExecutor-\d+_\d+")
        cycle = ["asyncio_0" if worker.fullmatch(n) else n for n in result["cycle"]]
        assert sorted(cycle) == names, result
        (record,) = findings
        text = format_text(finding_from_json(record))
        assert words in text, text
        # A thread of the cycle that holds no lock still holds what the one
        # before it waits for (its end, its loop, the one way to signal).
        assert "    hold and wait     yes  " in text, text


#: Controls whose signal the tasks reach only through a module global: with
#: other code alive on the loop (any of it might call code that names the
#: global) they are only probably deadlocked.
THROUGH_A_GLOBAL = {"event_set_by_a_protocol", "event_set_by_a_helper_of_a_protocol"}


@LOOPS
@pytest.mark.parametrize("case", sorted(NOT_A_DEADLOCK))
def test_control_is_reported_among_companions(tmp_path: Path, case: str, loop: str) -> None:
    """Each control with what a real program has alive besides (`_MAIN`'s
    BUSY: a listening server, a heartbeat task, an idle executor worker, a
    thread handing the loop callbacks) is still reported, as the same kind
    of finding naming the same tasks: none of them can reach what the
    tasks wait for (until stop 28 any of them hid every signal deadlock of
    the loop).  Where the tasks reach their signal only through a global,
    a probable deadlock."""
    result, findings = _run(
        tmp_path,
        _program(case, loop),
        rescue=False,
        LOOP=loop,
        BUSY="1",
        PROBABLE_AFTER="1",
        STOP_ON_PROBABLE="1",
    )
    kind = "probable-deadlock" if case in THROUGH_A_GLOBAL else "deadlock"
    assert result.get("kind") == kind, result
    assert [f["kind"] for f in findings if f["kind"] != "lock-order-inversion"] == [kind], findings
    (record,) = [f for f in findings if f["kind"] == kind]
    names = {t for t in record["threads"]}
    assert not names & {"heartbeat", "poker"}, record
    if case in CYCLES:
        worker = re.compile(r"(asyncio|uvloop)_\d+|ThreadPoolExecutor-\d+_\d+")
        cycle = ["asyncio_0" if worker.fullmatch(n) else n for n in result["cycle"]]
        assert sorted(cycle) == CYCLES[case][0], result
    if case in THROUGH_A_GLOBAL:
        text = format_text(finding_from_json(record))
        assert "the module global 'EV'" in text and "heartbeat" in text, text


@LOOPS
def test_code_that_names_the_global_is_a_rescuer_not_a_guess(tmp_path: Path, loop: str) -> None:
    """A protocol whose ``data_received`` names the module global the Event
    is reached through (``EV[0].set()``) can give it: with probable_after
    at 0.2 s, far before its rescue comes (0.6 s), no finding at all.  The
    same with the protocol calling a helper that names it instead: what
    the helper does cannot be read off the protocol, so the tasks are
    probably stuck (a warning, before the rescue ends the program)."""
    result, findings = _run(
        tmp_path,
        _program("event_set_by_a_protocol", loop),
        rescue=True,
        LOOP=loop,
        PROBABLE_AFTER="0.2",
        STOP_ON_PROBABLE="1",
    )
    assert result.get("finished") and findings == [], (result, findings)
    assert result["ticks"] >= 5, result
    result, findings = _run(
        tmp_path,
        _program("event_set_by_a_helper_of_a_protocol", loop),
        rescue=True,
        LOOP=loop,
        PROBABLE_AFTER="0.2",
        STOP_ON_PROBABLE="1",
    )
    assert result.get("kind") == "probable-deadlock", result
    (record,) = findings
    text = format_text(finding_from_json(record))
    assert "watched by the loop: none of them has asyncio.Event" in text, text


@pytest.mark.parametrize("case", sorted(NOT_A_DEADLOCK))
def test_not_a_deadlock_among_companions(tmp_path: Path, case: str) -> None:
    """The negatives with the same companions: still no finding (the rescue
    is still seen as one, among code that cannot give the signal)."""
    result, findings = _run(
        tmp_path, _program(case, "asyncio"), rescue=True, LOOP="asyncio", BUSY="1"
    )
    assert result.get("finished"), result
    assert [f["kind"] for f in findings if f["kind"] != "timed-cycle"] == [], findings
    assert result["ticks"] >= 5, result


# -- activation and transparency (in a fresh interpreter each) ------------------


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_nothing_imported_or_patched_when_the_program_never_imports_asyncio() -> None:
    out = _python(
        """
        import sys, threading
        import deadlockwatch
        deadlockwatch.enable()
        lock = threading.Lock()
        with lock:
            pass
        from deadlockwatch._track import aio
        print("asyncio" in sys.modules, aio.active, len(aio._originals))
        deadlockwatch.disable()
        print("asyncio" in sys.modules)
        """
    )
    assert out.split() == ["False", "True", "0", "False"]


@pytest.mark.parametrize("order", ["enable_first", "import_first"])
def test_patched_on_import_or_at_enable_and_removed_by_disable(order: str) -> None:
    out = _python(
        f"""
        import deadlockwatch
        if {order == "import_first"!r}:
            import asyncio
        deadlockwatch.enable()
        import asyncio, inspect
        from deadlockwatch._track import aio
        patched = lambda f: hasattr(f, "_dw_original")
        # Module functions too: run_coroutine_threadsafe where asyncio.tasks
        # and the package have it.
        functions = lambda: [
            patched(asyncio.Lock.release),
            patched(asyncio.tasks.run_coroutine_threadsafe),
            patched(asyncio.run_coroutine_threadsafe),
        ]
        # The waits are read off suspended tasks' frames by their code, not
        # patched (asyncio.wait's own wait, a queue's get, an Event's wait).
        waits = lambda: [
            asyncio.Queue.get.__code__ in aio.CODES,
            asyncio.Event.wait.__code__ in aio.CODES,
            asyncio.tasks._wait.__code__ in aio.CODES,
        ]
        print(len(aio._originals) > 0, patched(asyncio.Lock.acquire),
              inspect.iscoroutinefunction(asyncio.Lock.acquire), *functions(), *waits(),
              patched(asyncio.Event.wait), patched(asyncio.Queue.get),
              patched(asyncio.tasks._wait))
        deadlockwatch.disable()
        print(len(aio._originals), patched(asyncio.Lock.acquire), *functions(), *waits())
        """
    )
    assert out.split() == ["True"] * 9 + ["False"] * 3 + ["0"] + ["False"] * 7


def test_transparent_values_and_errors() -> None:
    out = _python(
        """
        import deadlockwatch
        deadlockwatch.enable()
        import asyncio
        results = []

        async def main():
            lock = asyncio.Lock()
            results.append(await lock.acquire())
            try:
                await asyncio.wait_for(lock.acquire(), 0.05)
            except asyncio.TimeoutError:
                results.append("timeout")
            lock.release()
            try:
                lock.release()
            except RuntimeError as exc:
                results.append(str(exc))
            ev = asyncio.Event()
            asyncio.get_running_loop().call_later(0.02, ev.set)
            results.append(await ev.wait())
            q = asyncio.Queue(maxsize=1)
            await q.put(1)
            putter = asyncio.create_task(q.put(2))
            await asyncio.sleep(0.01)
            results.append(await q.get())
            await putter
            results.append(await q.get())
            sem = asyncio.BoundedSemaphore(1)
            results.append(await sem.acquire())
            waiting = asyncio.create_task(sem.acquire())
            await asyncio.sleep(0.01)
            waiting.cancel()
            try:
                await waiting
            except asyncio.CancelledError:
                results.append("cancelled")
            sem.release()
            try:
                sem.release()
            except ValueError as exc:
                results.append(str(exc))
            cond = asyncio.Condition()
            async def notifier():
                async with cond:
                    cond.notify_all()
            async with cond:
                asyncio.create_task(notifier())
                results.append(await cond.wait())
            from deadlockwatch._track import aio
            # No task left recorded in a wait it has left (the watcher reads
            # waits off suspended tasks; it drops a stale record at its next scan).
            results.append(sum(
                1 for t, w in list(aio.waiting.items())
                if not t.done() and aio.still_in(w, t._fut_waiter)
            ))

        asyncio.run(main())
        print(results)
        """
    )
    assert out.strip() == (
        "[True, 'timeout', 'Lock is not acquired.', True, 1, 2, True, 'cancelled', "
        "'BoundedSemaphore released too many times', True, 0]"
    )


def test_a_task_left_waiting_on_a_closed_loop_is_forgotten() -> None:
    """A loop closed with a task still waiting on a Lock: its record is
    dropped (the task is collected, and the watcher ends), as without the
    detector the task is destroyed pending."""
    out = _python(
        """
        import asyncio, gc, time, weakref
        import deadlockwatch
        deadlockwatch.enable()
        from deadlockwatch._track import aio
        from deadlockwatch._watch.watcher import DETECTOR

        async def stuck(lock):
            async with lock:
                pass

        async def main():
            lock = asyncio.Lock()
            await lock.acquire()
            t = asyncio.create_task(stuck(lock))
            # Until the watcher has read the task's wait off its frames.
            deadline = time.monotonic() + 5
            while not aio.waiting and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return weakref.ref(t)

        loop = asyncio.new_event_loop()
        ref = loop.run_until_complete(main())
        loop.close()
        print(len(aio.waiting))
        deadline = time.monotonic() + 5
        while (aio.waiting or DETECTOR._running) and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        print(len(aio.waiting), DETECTOR._running, ref() is None)
        """
    )
    assert out.split() == ["1", "0", "False", "True"]


def test_dump_shows_the_tasks_in_tracked_waits() -> None:
    out = _python(
        """
        import asyncio, io, threading, time
        import deadlockwatch
        deadlockwatch.enable(interval=5, threshold=5)  # dump only, no finding
        from deadlockwatch._track import aio

        async def one(a, b):
            async with a:
                await asyncio.sleep(0.05)
                async with b:
                    pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            await asyncio.gather(
                asyncio.create_task(one(a, b), name="transfer"),
                asyncio.create_task(one(b, a), name="audit"),
            )

        threading.Thread(target=asyncio.run, args=(main(),), name="loop", daemon=True).start()
        deadline = time.monotonic() + 5
        while len(aio.waiting) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        buf = io.StringIO()
        deadlockwatch.dump(buf)
        print(buf.getvalue())
        """
    )
    assert "Task 'transfer' (on the event loop of thread 'loop' (ident " in out, out
    assert "Task 'audit' (on the event loop of thread 'loop' (ident " in out, out
    assert " held by 'audit' at " in out and " held by 'transfer' at " in out, out
    assert "thread(s) and 3 task(s) (pid " in out, out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_an_abba_under_asyncio_timeout_is_a_timed_cycle(tmp_path: Path) -> None:
    """The task waits for its second Lock inside ``asyncio.timeout()``, in
    its own task (no inner task, as wait_for has on 3.10/3.11): the cycle is
    seen, as a timed cycle (a warning), never a deadlock; and it breaks."""
    result, findings = _run(
        tmp_path,
        """
        async def one(a, b, timed):
            async with a:
                await asyncio.sleep(0.05)
                if timed:
                    try:
                        async with asyncio.timeout(0.8):
                            await b.acquire()
                    except TimeoutError:
                        return
                    b.release()
                else:
                    async with b:
                        pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            await asyncio.gather(one(a, b, True), one(b, a, False))
            finished()

        asyncio.run(main())
        """,
    )
    assert result.get("finished"), result
    assert [f["kind"] for f in findings] == ["timed-cycle"], findings
    (record,) = findings
    assert record["cause"].endswith("; a timeout will break the cycle"), record


LOOP_METHODS_COUNTED = """
        import threading

        async def main():
            loop = asyncio.get_running_loop()
            home = threading.get_ident()
            foreign = []
            for name in ("is_closed", "is_running", "time"):
                original = getattr(loop, name)
                def counted(*a, _original=original, _name=name):
                    if threading.get_ident() != home:
                        foreign.append(_name)
                    return _original(*a)
                setattr(loop, name, counted)
            ev = asyncio.Event()
            lock = asyncio.Lock()
            async def waiter():
                async with lock:
                    await ev.wait()
            task = asyncio.create_task(waiter(), name="waiter")
            deadline = time.monotonic() + 10
            while TICKS[0] < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if not RESCUE:
                t = threading.Thread(target=loop.is_closed)
                t.start()
                t.join(5)
            ev.set()
            await task
            print(json.dumps({"ticks": TICKS[0], "foreign": foreign}), flush=True)

        asyncio.run(main())
"""


def test_the_watcher_calls_no_method_of_the_applications_loop(tmp_path: Path) -> None:
    """janus's test_closed_loop_non_failing patches ``loop.is_closed`` and
    counts its calls: the watcher reads a loop's state (``_closed``,
    ``_thread_id``, the clock) without calling the loop.  While a task waits
    and the watcher makes its passes, no call of ``is_closed``, ``is_running``
    or ``time`` comes from a thread other than the loop's.  The control
    (``RESCUE=0``): a call made from another thread on purpose is counted,
    so the counting can see one."""
    result, _ = _run(tmp_path, LOOP_METHODS_COUNTED, rescue=True)
    assert result["ticks"] >= 3, result
    assert result["foreign"] == [], result
    control, _ = _run(tmp_path, LOOP_METHODS_COUNTED, rescue=False)
    assert control["foreign"] == ["is_closed"], control


@pytest.mark.parametrize("where", ["inside_the_loop", "loop_in_another_thread"])
def test_enabled_while_a_loop_runs(where: str) -> None:
    """enable() from inside a running loop, or while a loop already runs in
    another thread: that loop's ``run_forever`` began unpatched, and the
    waits are read off its tasks by the watcher, so the watcher must find
    the loop (noted at enable(), or through the tasks holding a Lock) and
    run.  An asyncio.Lock ABBA in it is reported."""
    out = _python(
        f"""
        import asyncio, os, threading, time
        import deadlockwatch

        def found(f):
            print("found", f.kind, len([t for t in f.threads if t.is_task]), flush=True)
            os._exit(0)

        def enable():
            deadlockwatch.enable(interval=0.05, threshold=0.05, on_deadlock=found, text=False)

        async def one(a, b):
            async with a:
                await asyncio.sleep(0.05)
                async with b:
                    pass

        async def main():
            if {where == "inside_the_loop"!r}:
                enable()
            else:
                started.set()
                while not enabled.is_set():  # enabled meanwhile, from the main thread
                    await asyncio.sleep(0.01)
            a, b = asyncio.Lock(), asyncio.Lock()
            await asyncio.gather(one(a, b), one(b, a))

        started, enabled = threading.Event(), threading.Event()
        if {where == "inside_the_loop"!r}:
            threading.Timer(10, lambda: (print("not found", flush=True), os._exit(1))).start()
            asyncio.run(main())
        else:
            threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
            started.wait(10)
            enable()
            enabled.set()
            time.sleep(10)
            print("not found", flush=True)
        """
    )
    assert out.split()[:2] == ["found", "deadlock"], out


def test_a_task_whose_done_callback_completes_a_future_can_complete_it() -> None:
    """Who can complete a future of the program's own (a signal): a task
    whose coroutine holds it, and a task whose done callback reaches it
    (``shield``'s outer future; a lambda, a bound method, a partial).  A
    task with no such callback is none; the helper reads, never calls."""
    import asyncio
    import functools

    from deadlockwatch._watch.tasks import _sets_when_done

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Event()

        async def job() -> None:
            await gate.wait()

        shielded, plain = asyncio.create_task(job()), asyncio.create_task(job())
        outer = asyncio.shield(shielded)
        fut, other = loop.create_future(), loop.create_future()
        by_lambda, by_method, by_partial = (asyncio.create_task(job()) for _ in range(3))
        by_lambda.add_done_callback(lambda t: fut.set_result(1))
        by_method.add_done_callback(fut.cancel)
        by_partial.add_done_callback(functools.partial(lambda f, t: f.cancel(), fut))
        await asyncio.sleep(0)
        assert _sets_when_done(shielded, outer)
        assert not _sets_when_done(plain, outer)
        for task in (by_lambda, by_method, by_partial):
            assert _sets_when_done(task, fut)
            assert not _sets_when_done(task, other)
        assert not fut.done() and not outer.done()
        gate.set()
        await asyncio.gather(shielded, plain, by_lambda, by_method, by_partial)
        await outer

    asyncio.run(main())


# -- a Lock cycle on asyncio's loop and on uvloop's (in C, read through the collector)

LOCK_ABBA_ON_A_LOOP = """
    async def one(a, b):
        async with a:
            await asyncio.sleep(0.05)
            if TIMED == "wait_for":
                try:
                    await asyncio.wait_for(b.acquire(), 0.8)
                except asyncio.TimeoutError:
                    return
                b.release()
            elif TIMED == "timeout":
                try:
                    async with asyncio.timeout(0.8):
                        await b.acquire()
                except TimeoutError:
                    return
                b.release()
            else:
                async with b:
                    pass

    async def main():
        a, b = asyncio.Lock(), asyncio.Lock()
        START[0] = time.monotonic()
        t1 = asyncio.create_task(one(a, b), name="transfer")
        t2 = asyncio.create_task(one(b, a), name="audit")
        await asyncio.gather(t1, t2)
        finished()

    TIMED = os.environ["TIMED"]
    if os.environ["LOOP"] == "uvloop-unread":  # as a loop that cannot be read
        from deadlockwatch._track import loopread
        loopread._uv_fields = lambda loop: None
    if os.environ["LOOP"].startswith("uvloop"):
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "uvloop-unread"])
@pytest.mark.parametrize(
    "timed",
    [
        "",
        "wait_for",
        pytest.param(
            "timeout",
            marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout: 3.11+"),
        ),
    ],
)
def test_a_lock_abba_is_a_deadlock_and_under_a_timeout_a_timed_cycle(
    tmp_path: Path, timed: str, loop: str
) -> None:
    """On asyncio's loop and on uvloop's (whose running thread is the one
    its patched ``run_forever`` noted, and whose timers are read off the
    collector's view of it), the cycle of two tasks is found, naming both; a
    timeout around each second take makes it a timed cycle, which breaks,
    and never a deadlock; and the orders taken under a timeout teach no
    lock-order inversion (a timed take ends).  ``uvloop-unread``: uvloop as
    a loop whose timers cannot be read, the timeout read off each task's
    await chain instead (there an order taken under it is learned)."""
    if loop.startswith("uvloop"):
        pytest.importorskip("uvloop")
    result, findings = _run(tmp_path, LOCK_ABBA_ON_A_LOOP, TIMED=timed, LOOP=loop)
    kinds = [f["kind"] for f in findings]
    if not timed:
        assert result.get("kind") == "deadlock", result
        assert sorted(result["cycle"]) == ["audit", "transfer"], result
        assert result["elapsed"] < 1.5, result
        record = findings[-1]
        details = {d["name"]: d for d in record["thread_details"]}
        assert "MainThread" in details["transfer"]["loop_thread"], details["transfer"]
        return
    assert result.get("finished"), result
    if timed == "wait_for" and sys.version_info < (3, 12):
        # wait_for runs the take in an inner task there, and the outer one
        # awaits a future of its own: the cycle is not seen, so there is no
        # timed cycle either.
        assert kinds == [], findings
        return
    if loop == "uvloop-unread":
        kinds = [k for k in kinds if k != "lock-order-inversion"]
    assert kinds == ["timed-cycle"], findings
    (record,) = [f for f in findings if f["kind"] == "timed-cycle"]
    assert record["cause"].endswith("; a timeout will break the cycle"), findings


def test_uvloop_two_tasks_awaiting_each_other(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    body = textwrap.dedent(TWO_TASKS_AWAITING_EACH_OTHER).replace(
        "asyncio.run(main())", "import uvloop\nuvloop.run(main())"
    )
    result, _ = _run(tmp_path, body)
    assert result.get("kind") == "deadlock", result
    assert sorted(result["cycle"]) == ["A", "B"], result


def test_uvloop_a_task_stopped_by_its_loops_blocked_thread(tmp_path: Path) -> None:
    """LOOP_STOPPED on uvloop: the loop's thread blocks on a threading Lock
    held by a thread waiting on ``run_coroutine_threadsafe(...).result()``
    for a coroutine that needs the asyncio Lock a task of that loop holds.
    Negative: the thread lets go of the threading Lock before it waits."""
    pytest.importorskip("uvloop")
    body = textwrap.dedent(LOOP_STOPPED).replace(
        "asyncio.run(main())", "import uvloop\nuvloop.run(main())"
    )
    result, findings = _run(tmp_path, body, RESCUE="1")
    assert result.get("finished") and findings == [], (result, findings)
    assert result["ticks"] >= 5, result
    result, findings = _run(tmp_path, body, RESCUE="0")
    assert result.get("kind") == "deadlock", result
    (task,) = [n for n in result["cycle"] if n.startswith("Task-")]
    assert sorted(result["cycle"]) == sorted(["MainThread", task, "holder", "worker"]), result


def test_uvloop_patched_while_enabled_and_removed_by_disable() -> None:
    """``uvloop.Loop`` gets a ``run_forever`` of its own only while enabled
    (imported before or after enable()); the loop runs as without it."""
    pytest.importorskip("uvloop")
    code = """
        import asyncio, sys
        first = sys.argv[1]
        if first == "import":
            import uvloop
        import deadlockwatch
        deadlockwatch.enable(text=False)
        import uvloop
        patched = "run_forever" in uvloop.Loop.__dict__
        async def main():
            await asyncio.sleep(0)
            return 7
        got = uvloop.run(main())
        deadlockwatch.disable()
        print(patched, got, "run_forever" in uvloop.Loop.__dict__, uvloop.run(main()))
    """
    for first in ("import", "enable"):
        r = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), first],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["True", "7", "False", "7"], (first, r.stdout, r.stderr)


# -- timers that cancel a task: anyio's deadlines, call_later(task.cancel) --------

CANCELLED_BY_A_TIMER = """
    import anyio

    async def one(a, b, rescue):
        async with a:
            await asyncio.sleep(0.05)
            if rescue == "anyio":  # a cancel scope with a deadline
                with anyio.move_on_after(1.0):
                    async with b:
                        pass
                return
            try:
                async with b:
                    pass
            except asyncio.CancelledError:
                return

    async def main():
        a, b = asyncio.Lock(), asyncio.Lock()
        START[0] = time.monotonic()
        t1 = asyncio.create_task(one(a, b, RESCUE_BY), name="transfer")
        t2 = asyncio.create_task(one(b, a, ""), name="audit")
        if RESCUE_BY == "timer":
            asyncio.get_running_loop().call_later(1.0, t1.cancel)
        await asyncio.gather(t1, t2)
        finished()

    RESCUE_BY = os.environ["RESCUE_BY"]
    if os.environ["LOOP"] == "uvloop-unread":  # as a loop that cannot be read
        from deadlockwatch._track import loopread
        loopread._uv_fields = lambda loop: None
    if os.environ["LOOP"].startswith("uvloop"):
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("loop", "rescue"),
    [
        ("asyncio", "anyio"),
        ("asyncio", "timer"),
        ("asyncio", ""),
        ("uvloop", "anyio"),
        ("uvloop", "timer"),
        ("uvloop", ""),
        ("uvloop-unread", "anyio"),
    ],
)
def test_a_lock_cycle_a_timer_will_cancel_is_a_timed_cycle(
    tmp_path: Path, loop: str, rescue: str
) -> None:
    """An asyncio Lock ABBA that a pending timer breaks by cancelling a task
    of it: anyio's ``move_on_after`` (a cancel scope whose timer is its own
    bound method, the task its ``_host_task``; on uvloop, read off the
    collector's view of the loop, and off the task's stack as its
    ``__exit__``), or ``loop.call_later(d, task.cancel)``.  A timed cycle,
    which breaks; never a deadlock.  The control (no rescue) is a
    deadlock.  ``uvloop-unread``: as a loop that cannot be read,
    anyio's deadline read off the task's stack."""
    if loop.startswith("uvloop"):
        pytest.importorskip("uvloop")
    result, findings = _run(tmp_path, CANCELLED_BY_A_TIMER, LOOP=loop, RESCUE_BY=rescue, RESCUE="0")
    kinds = [f["kind"] for f in findings if f["kind"] != "lock-order-inversion"]
    if not rescue:
        assert result.get("kind") == "deadlock", result
        assert sorted(result["cycle"]) == ["audit", "transfer"], result
        return
    assert result.get("finished"), result
    assert kinds == ["timed-cycle"], findings
    assert findings[-1]["cause"].endswith("; a timeout will break the cycle"), findings[-1]
