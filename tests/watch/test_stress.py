"""Stress: 32 threads doing random operations on shared primitives, the watcher
looking every 10 ms with lock-order detection on.

Every nested acquisition follows one global order, so nothing can deadlock
and nothing may be reported: any finding is a false alarm.  Afterwards no
wait may be left registered and no thread may be left holding anything.

The run lasts 5 s by default; ``pytest --stress-seconds=30`` (or the
environment variable ``DLW_STRESS_SECONDS=30``) runs it longer.  It runs in a
subprocess, killed if it ever hangs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_python

#: The program under stress.  argv: seconds, seed.  It prints one JSON line.
STRESS = r'''
import collections, json, os, queue, random, sys, threading, time, traceback
import deadlockwatch
from deadlockwatch._watch import watcher as _detector
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR
from deadlockwatch._track.order import ORDER

# Count the watcher's analyses (each one a snapshot of the waits it saw).
analyses = [0]
_analyze = _detector.analyze
def counting_analyze(snap):
    analyses[0] += 1
    return _analyze(snap)
_detector.analyze = counting_analyze

SECONDS, SEED, N = float(sys.argv[1]), int(sys.argv[2]), 32
assert deadlockwatch.is_enabled() and DETECTOR.config.lock_order
assert DETECTOR.config.interval == 0.01

# The global order: a thread holding ORDERED[i] only ever asks for ORDERED[j], j > i,
# and then only for leaves (queues, events, conditions), which hold nothing while
# they wait.  Semaphores are part of the order: a unit is a resource too.
ORDERED = [
    threading.Lock(), threading.RLock(), threading.Lock(), threading.BoundedSemaphore(3),
    threading.RLock(), threading.Lock(), threading.Semaphore(4), threading.Lock(),
    threading.RLock(), threading.Lock(),
]
SEM_VALUES = {i: p._value for i, p in enumerate(ORDERED) if hasattr(p, "_value")}
cond = threading.Condition()                    # on an RLock
cond_on_lock = threading.Condition(threading.Lock())
shared = {"n": 0}
event = threading.Event()
work = queue.Queue(maxsize=8)
signal = threading.Semaphore(0)                 # released by threads holding no unit
handoff = queue.Queue()
latches = [threading.Lock() for _ in range(4)]
stop = threading.Event()
errors, worker_records = [], []
counts = collections.Counter()
counts_lock = threading.Lock()

# Each latch changes hands once before the run: taken here, released by another thread.
for latch in latches:
    latch.acquire()
    t = threading.Thread(target=latch.release)
    t.start(); t.join(10)
    assert not latch.locked()


def leaf(rng, c):
    """An operation on a leaf: never holds anything while it waits."""
    op = rng.randrange(12)
    if op == 0:
        try:
            work.put(rng.random(), timeout=rng.uniform(0, 0.01)); c["queue.put"] += 1
        except queue.Full:
            c["queue.put full"] += 1
    elif op == 1:
        try:
            work.get(timeout=rng.uniform(0, 0.01)); c["queue.get"] += 1
        except queue.Empty:
            c["queue.get empty"] += 1
    elif op == 2:
        try:
            work.put_nowait(1); c["queue.put_nowait"] += 1
        except queue.Full:
            c["queue.put_nowait full"] += 1
    elif op == 3:
        try:
            work.get_nowait(); c["queue.get_nowait"] += 1
        except queue.Empty:
            c["queue.get_nowait empty"] += 1
    elif op == 4:
        event.set(); c["event.set"] += 1
    elif op == 5:
        event.clear(); c["event.clear"] += 1
    elif op == 6:
        c["event.wait " + str(event.wait(rng.uniform(0, 0.01)))] += 1
    elif op in (7, 8):
        cv = cond if op == 7 else cond_on_lock
        with cv:
            shared["n"] += 1
            if rng.random() < 0.5:
                cv.notify(rng.randint(1, 3)); c["condition.notify"] += 1
            else:
                cv.notify_all(); c["condition.notify_all"] += 1
    elif op in (9, 10):
        cv = cond if op == 9 else cond_on_lock
        with cv:
            if rng.random() < 0.5:
                seen = shared["n"]
                got = cv.wait_for(lambda: shared["n"] > seen, rng.uniform(0.001, 0.02))
                c["condition.wait_for " + str(bool(got))] += 1
            else:
                c["condition.wait " + str(cv.wait(rng.uniform(0.001, 0.02)))] += 1
    else:
        if rng.random() < 0.5:
            signal.release(); c["signal.release"] += 1
        else:
            c["signal.acquire(timeout) " + str(signal.acquire(timeout=0.005))] += 1


def nested(rng, c):
    """Take 1 to 4 resources up the global order (blocking, timed or re-entered),
    maybe a leaf or a non-blocking grab at the top, then release in any order."""
    picks = sorted(rng.sample(range(len(ORDERED)), rng.randint(1, 4)))
    taken = []
    for i in picks:
        p = ORDERED[i]
        how = rng.random()
        if how < 0.15:
            if not p.acquire(timeout=rng.uniform(0, 0.02)):
                c["nested timed acquire timed out"] += 1
                break
            c["nested acquire(timeout)"] += 1
        else:
            p.acquire(); c["nested acquire"] += 1
        taken.append(p)
        if isinstance(p, type(ORDERED[1])) and rng.random() < 0.3:
            p.acquire(); taken.append(p); c["rlock re-entry"] += 1
    if taken and rng.random() < 0.3:
        # A non-blocking grab of anything, out of order: it cannot wait, so it
        # teaches no order; nothing is taken after it.
        p = rng.choice(ORDERED)
        if p.acquire(blocking=False):
            c["non-blocking acquire True"] += 1
            taken.append(p)
        else:
            c["non-blocking acquire False"] += 1
    elif rng.random() < 0.4:
        leaf(rng, c)
    if rng.random() < 0.02:
        time.sleep(0.001)
    rng.shuffle(taken)
    for p in taken:
        p.release()
    c["nested"] += 1


def top_level(rng, c):
    op = rng.randrange(6)
    if op == 0:
        p = rng.choice(ORDERED)
        got = p.acquire(timeout=rng.uniform(0, 0.02))
        c["acquire(timeout) " + str(got)] += 1
        if got:
            p.release()
    elif op == 1:
        p = rng.choice(ORDERED)
        got = p.acquire(False)
        c["acquire(False) " + str(got)] += 1
        if got:
            p.release()
    elif op == 2:
        latch = rng.choice(latches)
        if latch.acquire(timeout=0.01):
            handoff.put(latch); c["hand-off: taken and passed on"] += 1
        else:
            c["hand-off: latch busy"] += 1
    elif op == 3:
        try:
            latch = handoff.get(timeout=0.01)
        except queue.Empty:
            c["hand-off: none waiting"] += 1
        else:
            latch.release(); c["hand-off: released by another thread"] += 1
    else:
        leaf(rng, c)


def worker(k):
    rng = random.Random(SEED * 1000 + k)
    c = collections.Counter()
    try:
        while not stop.is_set():
            if rng.random() < 0.5:
                nested(rng, c)
            else:
                top_level(rng, c)
            c["operations"] += 1
    except BaseException:
        errors.append(traceback.format_exc())
    finally:
        worker_records.append(_state.current_record())
        with counts_lock:
            counts.update(c)


threads = [threading.Thread(target=worker, args=(k,), name=f"stress-{k}", daemon=True)
           for k in range(N)]
for t in threads:
    t.start()
time.sleep(SECONDS)
stop.set()
deadline = time.monotonic() + 30
for t in threads:
    t.join(max(0.0, deadline - time.monotonic()))
alive = [t.name for t in threads if t.is_alive()]
# Latches passed on but not released yet: release them here (a hand-off to main).
while True:
    try:
        handoff.get_nowait().release()
        counts["hand-off: released by main"] += 1
    except queue.Empty:
        break

held = {repr(r): [repr(p) for p in r.held]
        for r in [*worker_records, *_state.records.values()] if r.held}
stuck = [p for p in ORDERED + latches if hasattr(p, "locked") and p.locked()]
for i, value in SEM_VALUES.items():
    if ORDERED[i]._value != value:
        stuck.append(ORDERED[i])
for p in ORDERED:
    if not hasattr(p, "locked"):  # RLock: free only if another thread could take it
        box = []
        t = threading.Thread(target=lambda: box.append(p.acquire(False) and (p.release() or True)))
        t.start(); t.join(10)
        if box != [True]:
            stuck.append(p)
print(json.dumps({
    "counts": dict(sorted(counts.items())),
    "errors": errors,
    "alive": alive,
    "workers": len(worker_records),
    "blocked": [repr(w.rec) for w in _state.blocked.values()],
    "held": held,
    "stuck": [repr(p) for p in stuck],
    "analyses": analyses[0],
    "orders": ORDER.edge_count,
    "findings": [f.kind for f in DETECTOR.findings],
    "check": [f.kind for f in deadlockwatch.check()],
}), flush=True)
'''


@pytest.fixture
def stress_seconds(request: pytest.FixtureRequest) -> float:
    option = request.config.getoption("--stress-seconds")
    if option is not None:
        return float(option)
    return float(os.environ.get("DLW_STRESS_SECONDS", "5"))


def test_stress_no_false_alarm_no_leftovers(
    tmp_path: Path, stress_seconds: float, record_property: pytest.RecordProperty
) -> None:
    report = tmp_path / "findings.jsonl"
    env = {
        "DEADLOCKWATCH": "1",
        "DEADLOCKWATCH_INTERVAL": "0.01",
        "DEADLOCKWATCH_THRESHOLD": "0.01",
        "DEADLOCKWATCH_LOCK_ORDER": "1",
        "DEADLOCKWATCH_REPORT": str(report),
    }
    r = run_python(STRESS, env=env, args=[str(stress_seconds), "7"], timeout=stress_seconds + 120)
    assert r.returncode == 0, r.stderr
    dlw_lines = [line for line in r.stderr.splitlines() if "deadlockwatch:" in line]
    assert dlw_lines == [], r.stderr
    assert not report.exists() or report.read_text() == "", report.read_text()
    result = json.loads(r.stdout.splitlines()[-1])
    counts = result["counts"]
    record_property("operations", counts)
    print(
        f"\nstress {stress_seconds} s, 32 threads, {result['analyses']} analyses by the "
        f"watcher, {result['orders']} lock orders learned: {json.dumps(counts, indent=1)}"
    )
    assert result["errors"] == []
    assert result["alive"] == []
    assert result["workers"] == 32
    assert result["findings"] == [] and result["check"] == []
    assert result["blocked"] == []
    assert result["held"] == {}
    assert result["stuck"] == []
    # Every kind of operation happened, waits that succeed and waits that time out.
    for key in [
        "nested acquire",
        "nested acquire(timeout)",
        "rlock re-entry",
        "non-blocking acquire True",
        "non-blocking acquire False",
        "acquire(timeout) True",
        "acquire(timeout) False",
        "acquire(False) True",
        "acquire(False) False",
        "hand-off: taken and passed on",
        "hand-off: released by another thread",
        "condition.notify",
        "condition.notify_all",
        "condition.wait True",
        "condition.wait False",
        "condition.wait_for True",
        "condition.wait_for False",
        "event.set",
        "event.clear",
        "event.wait True",
        "event.wait False",
        "queue.put",
        "queue.get",
        "queue.get empty",
        "signal.release",
        "signal.acquire(timeout) True",
    ]:
        assert counts.get(key, 0) > 0, (key, counts)
    assert counts["operations"] > 200 * stress_seconds
    # The watcher did look at waits (many are longer than its 10 ms threshold),
    # and the nested acquisitions taught the order graph.
    assert result["analyses"] > 0
    assert result["orders"] > 0
