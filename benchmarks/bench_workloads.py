"""Section 3: end-to-end workloads, detector on / off.

Each workload runs in a process of its own, so that none can leave state
behind that slows another.  Every workload builds its executor, queue,
threads or logging handler inside the timed region, after
``deadlockwatch.enable()`` for the "on" runs (the primitives are patched at
creation time, so objects made before enable() would stay untracked).
enable() and disable() themselves are outside the timed region (their cost
is reported in a note).  Rounds alternate off and on; the medians are
compared.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import deadlockwatch
from deadlockwatch._watch.watcher import DETECTOR

from ._common import Section, interleave, median, ratio

JOIN_TIMEOUT = 300.0


def _square(x: int) -> int:
    return x * x


def executor_tasks(n: int) -> None:
    """A 4-worker ThreadPoolExecutor runs ``n`` small tasks."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_square, i) for i in range(n)]
        total = sum(f.result(JOIN_TIMEOUT) for f in futures)
    if total != sum(i * i for i in range(n)):
        raise RuntimeError("executor workload: wrong result")


def queue_pipeline(items: int, producers: int = 4, consumers: int = 4) -> None:
    """``producers`` threads put ``items`` items in all on one bounded queue.Queue,
    ``consumers`` threads take them until a sentinel each."""
    q: queue.Queue[int | None] = queue.Queue(maxsize=1000)
    per = items // producers
    got = [0] * consumers

    def produce() -> None:
        for i in range(per):
            q.put(i, timeout=JOIN_TIMEOUT)

    def consume(k: int) -> None:
        n = 0
        while q.get(timeout=JOIN_TIMEOUT) is not None:
            n += 1
        got[k] = n

    prod = [threading.Thread(target=produce, daemon=True) for _ in range(producers)]
    cons = [threading.Thread(target=consume, args=(k,), daemon=True) for k in range(consumers)]
    for t in prod + cons:
        t.start()
    for t in prod:
        t.join(JOIN_TIMEOUT)
    for _ in cons:
        q.put(None, timeout=JOIN_TIMEOUT)
    for t in cons:
        t.join(JOIN_TIMEOUT)
    if sum(got) != per * producers:
        raise RuntimeError("queue workload: items lost")


def logging_threads(records: int, threads: int = 8) -> None:
    """``threads`` threads log ``records`` records in all through one
    StreamHandler (made here, so its lock is tracked when enabled) writing
    to an in-memory stream."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
    logger = logging.getLogger("deadlockwatch-benchmark")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    per = records // threads

    def work() -> None:
        for i in range(per):
            logger.info("record %d", i)

    try:
        ts = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(JOIN_TIMEOUT)
    finally:
        logger.removeHandler(handler)
        handler.close()
    if stream.getvalue().count("\n") != per * threads:
        raise RuntimeError("logging workload: records lost")


def condition_ping_pong(rounds: int) -> None:
    """Two threads take turns through one Condition, ``rounds`` times each: every
    turn is a notify and a wait that blocks."""
    cond = threading.Condition()
    turn = [0]

    def player(me: int) -> None:
        for _ in range(rounds):
            with cond:
                while turn[0] != me:
                    if not cond.wait(JOIN_TIMEOUT):
                        raise RuntimeError("ping-pong workload: stuck")
                turn[0] = 1 - me
                cond.notify()

    ts = [threading.Thread(target=player, args=(k,), daemon=True) for k in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(JOIN_TIMEOUT)
    if any(t.is_alive() for t in ts):
        raise RuntimeError("ping-pong workload: did not finish")


def queue_ping_pong(rounds: int) -> None:
    """Two threads pass a number back and forth ``rounds`` times over two
    ``queue.Queue(maxsize=1)`` (each ``get`` blocks: the other thread has not
    put yet), timed waits as a program with a timeout makes them: the bounded
    queue's cost per blocking ``put``/``get`` with a fixed count of blocking
    waits, which the 4-and-4 pipeline's count is not (section
    "instructions")."""
    ping: queue.Queue[int] = queue.Queue(maxsize=1)
    pong: queue.Queue[int] = queue.Queue(maxsize=1)
    got = [0, 0]

    def player(me: int, inbox: queue.Queue[int], outbox: queue.Queue[int]) -> None:
        if me == 0:
            outbox.put(0, timeout=JOIN_TIMEOUT)
        for _ in range(rounds):
            n = inbox.get(timeout=JOIN_TIMEOUT)
            got[me] = n
            if n < 2 * rounds - 1:
                outbox.put(n + 1, timeout=JOIN_TIMEOUT)

    ts = [
        threading.Thread(target=player, args=(0, pong, ping), daemon=True),
        threading.Thread(target=player, args=(1, ping, pong), daemon=True),
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(JOIN_TIMEOUT)
    if any(t.is_alive() for t in ts) or max(got) != 2 * rounds - 1:
        raise RuntimeError("queue ping-pong workload: turns lost")


def event_relay(rounds: int, threads: int = 4) -> None:
    """A ring of ``threads`` threads hands a token on ``rounds`` times, each
    waking the next by setting its Event (Event.set, Event.wait, clear)."""
    events = [threading.Event() for _ in range(threads)]
    done = [0] * threads

    def hop(k: int) -> None:
        mine, nxt = events[k], events[(k + 1) % threads]
        for _ in range(rounds):
            if not mine.wait(JOIN_TIMEOUT):
                raise RuntimeError("event workload: stuck")
            mine.clear()
            done[k] += 1
            nxt.set()

    ts = [threading.Thread(target=hop, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    events[0].set()
    for t in ts:
        t.join(JOIN_TIMEOUT)
    if sum(done) != rounds * threads:
        raise RuntimeError("event workload: hops lost")


def semaphore_pool(uses: int, threads: int = 4, slots: int = 2) -> None:
    """``threads`` threads share ``slots`` units of one Semaphore, taking and
    giving back a unit ``uses`` times in all (a connection-pool limit)."""
    sem = threading.Semaphore(slots)
    per = uses // threads
    counts = [0] * threads

    def work(k: int) -> None:
        for _ in range(per):
            if not sem.acquire(timeout=JOIN_TIMEOUT):
                raise RuntimeError("semaphore workload: stuck")
            try:
                counts[k] += 1
            finally:
                sem.release()

    ts = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(JOIN_TIMEOUT)
    if sum(counts) != per * threads:
        raise RuntimeError("semaphore workload: uses lost")


def asyncio_ping_pong(rounds: int) -> None:
    """Two asyncio tasks pass a number back and forth ``rounds`` times over two
    ``asyncio.Queue(maxsize=1)`` (each get suspends), taking an asyncio.Lock
    each turn; the event loop is made and closed inside (``asyncio.run``).
    asyncio is imported here, so the other workloads' processes never do."""
    import asyncio

    async def player(inbox: Any, outbox: Any, lock: Any, serve: bool) -> int:
        if serve:
            await outbox.put(0)
        n = 0
        for _ in range(rounds):
            n = await inbox.get()
            async with lock:
                await asyncio.sleep(0)
            await outbox.put(n + 1)
        return int(n)

    async def main() -> int:
        lock = asyncio.Lock()
        ping: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        pong: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        a, b = await asyncio.gather(player(pong, ping, lock, True), player(ping, pong, lock, False))
        return max(a, b)

    if asyncio.run(main()) != 2 * rounds - 1:
        raise RuntimeError("asyncio workload: turns lost")


def asyncio_echo(messages: int, clients: int = 4) -> None:
    """An echo server on loopback (``asyncio.start_server``) and ``clients``
    clients, each sending ``messages // clients`` lines one at a time and
    reading each echo back (streams: every read suspends on the socket); the
    event loop is made and closed inside (``asyncio.run``)."""
    import asyncio

    per = messages // clients

    async def echo(reader: Any, writer: Any) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def client(port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got = 0
        for i in range(per):
            writer.write(b"%d\n" % i)
            await writer.drain()
            if await reader.readline() == b"%d\n" % i:
                got += 1
        writer.close()
        await writer.wait_closed()
        return got

    async def main() -> int:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            counts = await asyncio.gather(*(client(port) for _ in range(clients)))
        return sum(counts)

    if asyncio.run(main()) != per * clients:
        raise RuntimeError("asyncio echo workload: lines lost")


def _timed(work: Callable[[], None], on: bool, findings: list[int]) -> Callable[[], float]:
    def run() -> float:
        if not on:
            t0 = time.perf_counter()
            work()
            return time.perf_counter() - t0
        before = len(DETECTOR.findings)
        deadlockwatch.enable(text=False)
        try:
            t0 = time.perf_counter()
            work()
            return time.perf_counter() - t0
        finally:
            deadlockwatch.disable()
            findings.append(len(DETECTOR.findings) - before)

    return run


WORKLOADS = (
    "executor",
    "queue",
    "logging",
    "ping-pong",
    "event",
    "semaphore",
    "asyncio",
    "asyncio-echo",
)


def _workload(name: str, quick: bool) -> tuple[str, Callable[[], None]]:
    tasks, items, records = (2_000, 20_000, 5_000) if quick else (20_000, 200_000, 50_000)
    rounds, uses = (2_000, 20_000) if quick else (20_000, 200_000)
    if name == "ping-pong":
        return (
            f"Condition ping-pong: 2 threads, {rounds:,} turns each",
            lambda: condition_ping_pong(rounds),
        )
    if name == "asyncio":
        return (
            f"asyncio ping-pong: 2 tasks, {rounds:,} turns each (Queue(maxsize=1), Lock)",
            lambda: asyncio_ping_pong(rounds),
        )
    if name == "asyncio-echo":
        return (
            f"asyncio echo server on loopback: 4 clients, {rounds:,} lines",
            lambda: asyncio_echo(rounds),
        )
    if name == "event":
        return f"Event relay: a ring of 4 threads, {rounds:,} laps", lambda: event_relay(rounds)
    if name == "semaphore":
        return (
            f"Semaphore(2): 4 threads, {uses:,} acquire/release",
            lambda: semaphore_pool(uses),
        )
    if name == "executor":
        return f"ThreadPoolExecutor(4): {tasks:,} tasks", lambda: executor_tasks(tasks)
    if name == "queue":
        return (
            f"queue.Queue: 4 producers, 4 consumers, {items:,} items",
            lambda: queue_pipeline(items),
        )
    return f"logging: 8 threads, {records:,} records", lambda: logging_threads(records)


def measure(name: str, quick: bool) -> dict[str, Any]:
    """One workload, off and on alternately (run in a process of its own)."""
    repeat = 2 if quick else 7
    label, work = _workload(name, quick)
    # Warm up: imports (wrapt, networkx in the watcher) and first-call costs.
    deadlockwatch.enable(text=False)
    deadlockwatch.disable()
    for on in (False, True):
        _timed(work, on, [])()
    findings: list[int] = []
    res = interleave(
        {"off": _timed(work, False, findings), "on": _timed(work, True, findings)}, repeat
    )
    off, on = median(res["off"]), median(res["on"])
    return {
        "workload": label,
        "off_s": round(off, 4),
        "on_s": round(on, 4),
        "ratio": ratio(on, off),
        "ratio_best": ratio(min(res["on"]), min(res["off"])),
        "findings": sum(findings),
        "off_samples": [round(x, 4) for x in res["off"]],
        "on_samples": [round(x, 4) for x in res["on"]],
    }


def _in_subprocess(name: str, quick: bool) -> dict[str, Any]:
    fd, out = tempfile.mkstemp(prefix=f"dw-bench-{name}-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "benchmarks.bench_workloads", name, "--out", out]
    try:
        proc = subprocess.run(
            [*cmd, "--quick"] if quick else cmd,
            capture_output=True,
            text=True,
            timeout=120 if quick else 1200,
        )
        with open(out) as f:
            text = f.read()
    finally:
        os.unlink(out)
    if proc.returncode != 0 or not text:
        raise RuntimeError(f"workload {name} failed:\n{proc.stdout}\n{proc.stderr}\n{text}")
    row: dict[str, Any] = json.loads(text)
    return row


def run(quick: bool) -> Section:
    section = Section(
        key="workloads",
        title="Workloads: seconds end to end (median), detector on / off",
        columns=[
            ("workload", "workload"),
            ("off_s", "off s"),
            ("on_s", "on s"),
            ("ratio", "ratio"),
            ("ratio_best", "ratio of bests"),
            ("findings", "findings"),
        ],
        params={"repeat": 2 if quick else 7, "one_process_per_workload": True},
    )
    for name in WORKLOADS:
        section.rows.append(_in_subprocess(name, quick))
    t0 = time.perf_counter()
    deadlockwatch.enable(text=False)
    first_enable = time.perf_counter() - t0
    deadlockwatch.disable()
    toggles = []
    for _ in range(20):
        t0 = time.perf_counter()
        deadlockwatch.enable(text=False)
        deadlockwatch.disable()
        toggles.append(time.perf_counter() - t0)
    section.params["enable_disable_ms"] = round(median(toggles) * 1e3, 3)
    section.params["first_enable_ms"] = round(first_enable * 1e3, 3)
    section.notes.append(
        "each workload runs in a process of its own (warm-up, then off/on alternately); "
        "ratio = median on / median off, ratio of bests = fastest on / fastest off."
    )
    section.notes.append(
        f"enable()+disable() costs {median(toggles) * 1e3:.2f} ms (median, warm); the first "
        f"enable() in a process {first_enable * 1e3:.1f} ms (imports wrapt; the watcher then "
        "imports networkx in the background)."
    )
    section.notes.append("findings: reports made during the 'on' runs (expected 0).")
    return section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=WORKLOADS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    row = measure(args.name, args.quick)
    with open(args.out, "w") as f:
        json.dump(row, f)
    os._exit(0)  # never wait at exit for a thread a workload left behind


if __name__ == "__main__":
    main()
