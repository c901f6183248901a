"""Built-in scenarios that really deadlock, for ``python -m deadlockwatch demo``.

Each runs with ``on_deadlock="raise"``: the detector reports the deadlock and
breaks it with DeadlockError in one thread, and the scenario ends cleanly.
The asyncio ones break a deadlock among tasks themselves, in the loop's
thread, once the watcher has reported it (as the pytest plugin does; the watcher runs no
code on a loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from deadlockwatch._errors import DeadlockError

_BOUND = 10.0


def _run_threads(targets: list[tuple[str, Callable[[], None]]]) -> list[str]:
    outcome: list[str] = []

    def wrap(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
                outcome.append(f"{name}: finished")
            except DeadlockError:
                outcome.append(f"{name}: got DeadlockError, released its locks")

        return run

    threads = [threading.Thread(target=wrap(n, f), name=n, daemon=True) for n, f in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(_BOUND)
    if any(t.is_alive() for t in threads):
        raise RuntimeError("the scenario did not recover from its deadlock")
    return sorted(outcome)


def abba() -> list[str]:
    """Two threads take two locks in opposite orders."""
    accounts = threading.Lock()
    audit_log = threading.Lock()
    both_hold_one = threading.Barrier(2)

    def transfer() -> None:
        with accounts:
            both_hold_one.wait(_BOUND)
            with audit_log:
                pass

    def audit() -> None:
        with audit_log:
            both_hold_one.wait(_BOUND)
            with accounts:
                pass

    return _run_threads([("transfer", transfer), ("audit", audit)])


def philosophers(n: int = 5) -> list[str]:
    """Dining philosophers: each takes the left fork, then the right one."""
    forks = [threading.Lock() for _ in range(n)]
    all_seated = threading.Barrier(n)

    def dine(i: int) -> Callable[[], None]:
        def run() -> None:
            with forks[i]:
                all_seated.wait(_BOUND)
                with forks[(i + 1) % n]:
                    pass

        return run

    return _run_threads([(f"philosopher-{i}", dine(i)) for i in range(n)])


def self_deadlock() -> list[str]:
    """A method that holds a Lock calls another that takes it again."""
    lock = threading.Lock()

    def deposit() -> None:
        with lock:
            pass

    def transfer() -> None:
        with lock:
            deposit()

    return _run_threads([("transfer", transfer)])


def pool_exhaustion(size: int = 3) -> list[str]:
    """Each of N workers holds one of N connections and waits for a second."""
    pool = threading.BoundedSemaphore(size)
    all_connected = threading.Barrier(size)

    def work() -> None:
        with pool:
            all_connected.wait(_BOUND)
            with pool:
                pass

    return _run_threads([(f"worker-{i}", work) for i in range(size)])


def inversion() -> list[str]:
    """Two code paths take two locks in opposite orders, one after the other:
    no hang this time, but a potential deadlock, reported at the second acquire."""
    cache = threading.Lock()
    index = threading.Lock()

    def update() -> None:
        with cache, index:
            pass

    def rebuild() -> None:
        with index, cache:
            pass

    first = _run_threads([("update", update)])
    return first + _run_threads([("rebuild", rebuild)])


def wait_under_lock() -> list[str]:
    """A loader publishes its state under a lock, then sets an Event; a reader
    waits for the Event holding that lock: no hang this time (the loader came
    first, so the Event is set), but a potential deadlock, reported at the wait."""
    state_lock = threading.Lock()
    loaded = threading.Event()
    state: dict[str, int] = {}

    def loader() -> None:
        with state_lock:
            state["rows"] = 3
        loaded.set()

    def reader() -> None:
        with state_lock:
            loaded.wait()  # set already: returns at once

    first = _run_threads([("loader", loader)])
    return first + _run_threads([("reader", reader)])


def condition() -> list[str]:
    """A consumer waits on a Condition while holding the lock its producer
    needs before it can notify."""
    lock = threading.Lock()
    ready = threading.Condition()
    items: list[int] = []
    locked = threading.Event()

    def consumer() -> None:
        with lock, ready:
            locked.set()
            while not items:
                ready.wait()

    def producer() -> None:
        locked.wait(_BOUND)
        with lock, ready:
            items.append(1)
            ready.notify()

    # The consumer is the calling thread, and nothing else waits with a
    # timeout meanwhile: a thread that will wake up could still notify, and
    # this would only be a timed cycle.
    outcome: list[str] = []

    def run(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            outcome.append(f"{name}: finished")
        except DeadlockError:
            outcome.append(f"{name}: got DeadlockError, released its locks")

    t = threading.Thread(target=run, args=("producer", producer), name="producer", daemon=True)
    t.start()
    run("consumer", consumer)
    t.join(_BOUND)
    if t.is_alive():
        raise RuntimeError("the scenario did not recover from its deadlock")
    return sorted(outcome)


def signal_with_bystanders() -> list[str]:
    """Two workers deadlock through an Event while other threads keep running
    (a heartbeat, and the main thread in a timed join): only a thread that can
    reach the Event could set it, and the only one that can is stuck."""
    state = threading.Lock()
    ready = threading.Event()
    holding = threading.Event()
    stop = threading.Event()

    def starter() -> None:
        with state:
            holding.set()
            ready.wait()

    def service() -> None:
        holding.wait(_BOUND)
        with state:
            ready.set()

    def heartbeat() -> None:
        while not stop.wait(0.01):
            pass

    beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beat.start()
    try:
        return _run_threads([("starter", starter), ("service", service)])
    finally:
        stop.set()
        beat.join(_BOUND)


def starvation(workers: int = 2) -> list[str]:
    """Every worker of a ThreadPoolExecutor waits on a future queued behind it."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pool")
    all_busy = threading.Barrier(workers)

    def step() -> int:
        return 1

    def job() -> int:
        all_busy.wait(_BOUND)
        return pool.submit(step).result()

    outer = [pool.submit(job) for _ in range(workers)]
    outcome = []
    for i, future in enumerate(outer):
        try:
            future.result(_BOUND)
            outcome.append(f"job-{i}: finished")
        except DeadlockError:
            outcome.append(f"job-{i}: got DeadlockError, its worker is free again")
    pool.shutdown(wait=True, cancel_futures=True)
    return outcome


def died_holding_lock() -> list[str]:
    """A thread dies of an exception between acquire and release; another then
    needs the lock.  (One that *returned* holding a Lock handed it over: any
    thread may release a Lock.)"""
    from deadlockwatch._watch.watcher import DETECTOR

    lock = threading.Lock()
    seen = len(DETECTOR.findings)

    def loader() -> None:
        lock.acquire()
        raise OSError("load failed")  # before its release

    t = threading.Thread(target=loader, name="loader")
    previous = threading.excepthook
    threading.excepthook = lambda args: None  # the demo says what happened itself
    try:
        t.start()
        t.join(_BOUND)
    finally:
        threading.excepthook = previous
    deadline = time.monotonic() + _BOUND  # the warning comes a threshold later
    while len(DETECTOR.findings) == seen and time.monotonic() < deadline:
        time.sleep(0.01)

    def reader() -> None:
        with lock:
            pass

    return ["loader: died of an exception holding the lock", *_run_threads([("reader", reader)])]


def _fork_context() -> Any:
    """Children forked from here run the detector the demo enabled."""
    import multiprocessing

    return multiprocessing.get_context("fork")


def _auditor(accounts: Any, audit_log: Any, ready: Any, go: Any) -> None:
    import sys

    with audit_log:
        ready.set()
        go.wait(_BOUND)
        try:
            with accounts:
                pass
        except DeadlockError:
            sys.exit(3)


def two_process_abba() -> list[str]:
    """Two processes take two multiprocessing locks in opposite orders."""
    import warnings

    ctx = _fork_context()
    accounts, audit_log = ctx.Lock(), ctx.Lock()
    ready, go = ctx.Event(), ctx.Event()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        p = ctx.Process(target=_auditor, args=(accounts, audit_log, ready, go), name="auditor")
        p.start()
    outcome = []
    try:
        with accounts:
            ready.wait(_BOUND)
            go.set()
            try:
                with audit_log:
                    pass
                outcome.append("MainProcess: finished")
            except DeadlockError:
                outcome.append("MainProcess: got DeadlockError, released its lock")
        p.join(_BOUND)
    finally:
        if p.is_alive():
            p.kill()
            raise RuntimeError("the scenario did not recover from its deadlock")
    if p.exitcode == 3:
        outcome.append("auditor: got DeadlockError, released its lock")
    else:
        outcome.append(f"auditor: finished (exit status {p.exitcode})")
    return sorted(outcome)


def _loader(lock: Any, held: Any) -> None:
    lock.acquire()
    held.set()
    time.sleep(60)  # killed before it releases the lock


def killed_holder() -> list[str]:
    """A process is killed while it holds a multiprocessing lock; another needs it."""
    import os
    import signal
    import warnings

    ctx = _fork_context()
    lock, held = ctx.Lock(), ctx.Event()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        p = ctx.Process(target=_loader, args=(lock, held), name="loader-process", daemon=True)
        p.start()
    held.wait(_BOUND)
    os.kill(p.pid, signal.SIGKILL)
    outcome = ["loader-process: killed holding the lock"]
    try:
        with lock:
            outcome.append("MainProcess: finished")
    except DeadlockError:
        outcome.append("MainProcess: got DeadlockError instead of waiting forever")
    p.join(_BOUND)
    return outcome


def _run_loop(body: Callable[[Any], Any]) -> None:
    """``asyncio.run(body(asyncio))``, with a callback on the loop that breaks
    a deadlock among its tasks once the watcher has reported it: in the
    loop's thread, as the pytest plugin's guard does (the watcher runs no
    code on a loop)."""
    import asyncio

    from deadlockwatch._track.aio import break_deadlock
    from deadlockwatch._watch.watcher import DETECTOR

    found: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _BOUND

        def look() -> None:
            # No timeout on the loop: a wait_for would make it a timed cycle.
            for finding in found:
                if finding.kind == "deadlock":
                    break_deadlock(asyncio, loop, finding, DeadlockError(finding))
            found.clear()
            if loop.time() > give_up:
                loop.stop()
            handle[0] = loop.call_later(0.05, look)

        look._dw_own = True  # type: ignore[attr-defined]  # gives no signal
        handle = [loop.call_later(0.05, look)]
        try:
            await body(asyncio)
        finally:
            handle[0].cancel()

    DETECTOR.listeners.append(found.append)
    try:
        asyncio.run(main())
    except RuntimeError as exc:  # the loop stopped: not broken in time
        raise RuntimeError("the scenario did not recover from its deadlock") from exc
    finally:
        DETECTOR.listeners.remove(found.append)


def asyncio_abba() -> list[str]:
    """Two asyncio tasks take two asyncio.Locks in opposite orders."""
    outcome: list[str] = []

    async def body(asyncio: Any) -> None:
        async def one(name: str, first: Any, second: Any) -> None:
            try:
                async with first:
                    await asyncio.sleep(0.05)  # both hold one
                    async with second:
                        pass
                outcome.append(f"{name}: finished")
            except DeadlockError:
                outcome.append(f"{name}: got DeadlockError, released its locks")

        accounts, audit_log = asyncio.Lock(), asyncio.Lock()
        await asyncio.gather(
            asyncio.create_task(one("transfer", accounts, audit_log), name="transfer"),
            asyncio.create_task(one("audit", audit_log, accounts), name="audit"),
        )

    _run_loop(body)
    return sorted(outcome)


def asyncio_event_under_lock() -> list[str]:
    """A task holding an asyncio.Lock awaits an Event that only another task
    sets, after taking that Lock."""
    outcome: list[str] = []

    async def body(asyncio: Any) -> None:
        state, loaded, holding = asyncio.Lock(), asyncio.Event(), asyncio.Event()

        async def loader() -> None:
            try:
                async with state:
                    holding.set()
                    await loaded.wait()
                outcome.append("loader: finished")
            except DeadlockError:
                outcome.append("loader: got DeadlockError, released its lock")

        async def publisher() -> None:
            try:
                await holding.wait()
                async with state:
                    loaded.set()
                outcome.append("publisher: finished")
            except DeadlockError:
                outcome.append("publisher: got DeadlockError")

        await asyncio.gather(
            asyncio.create_task(loader(), name="loader"),
            asyncio.create_task(publisher(), name="publisher"),
        )

    _run_loop(body)
    return sorted(outcome)


def asyncio_result_on_loop() -> list[str]:
    """The event loop's thread calls .result() on a run_coroutine_threadsafe
    future for its own loop (aiomqtt #174): only that loop can complete it."""
    outcome: list[str] = []

    async def body(asyncio: Any) -> None:
        async def answer() -> int:
            return 42

        future = asyncio.run_coroutine_threadsafe(answer(), asyncio.get_running_loop())
        try:
            future.result()
            outcome.append("MainThread: finished")
        except DeadlockError:
            outcome.append("MainThread: got DeadlockError from result(), the loop runs again")
        outcome.append(f"answer: {await asyncio.wrap_future(future)}")

    _run_loop(body)
    return outcome


SCENARIOS: dict[str, Callable[[], list[str]]] = {
    "abba": abba,
    "philosophers": philosophers,
    "self-deadlock": self_deadlock,
    "pool-exhaustion": pool_exhaustion,
    "inversion": inversion,
    "wait-under-lock": wait_under_lock,
    "condition": condition,
    "signal-with-bystanders": signal_with_bystanders,
    "starvation": starvation,
    "died-holding-lock": died_holding_lock,
    "two-process-abba": two_process_abba,
    "killed-holder": killed_holder,
    "asyncio-abba": asyncio_abba,
    "asyncio-event-under-lock": asyncio_event_under_lock,
    "asyncio-result-on-loop": asyncio_result_on_loop,
}

#: Scenarios whose every stuck thread must unwind (``raise-all``): breaking
#: one thread would leave the other waiting for a signal that never comes.
RAISE_ALL = frozenset({"condition", "starvation"})
