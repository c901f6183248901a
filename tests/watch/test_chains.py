"""A thread blocked behind a thread that waits for a signal nobody can give:
the main thread in ``join()`` of a producer whose bounded queue nobody
drains any more (its consumer has ended), while a heartbeat thread runs.

No cycle and nobody holds anything, yet the program never ends: reported as
a probable deadlock (the heartbeat could still reach the queue through the
module global), naming the heartbeat as what could rescue them.  With a
thread that can run and names the queue (a drainer waiting for its turn),
it is not reported, and the program ends once the drainer drains.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_python

PROGRAM = """
import json, os, queue, sys, threading, time
import deadlockwatch
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR

RESCUE, POLLING = sys.argv[1], sys.argv[2] == "polling"
deadlockwatch.enable(interval=0.02, threshold=0.02, probable_after=0.3, on_deadlock="report")
q = queue.Queue(maxsize=2)
go = threading.Event()

def consumer():
    q.get()               # takes one item, then ends: nobody takes any more

def producer():
    for i in range(6):
        q.put(i)

def drainer():
    go.wait()             # untimed: it can run only once set
    while True:
        q.get()

def beat():
    while True:
        time.sleep(0.02)

drain = threading.Event()

def joiner():
    if not POLLING:
        p.join()          # untimed: blocked behind the producer
    elif RESCUE == "poller":
        while p.is_alive():
            p.join(0.01)  # polling, and its loop names the queue: it could drain it
            if drain.is_set():
                q.get()
    else:
        while p.is_alive():
            p.join(0.01)  # polling, back to back

threading.Thread(target=beat, name="heartbeat", daemon=True).start()
if RESCUE == "drainer":
    threading.Thread(target=drainer, name="drainer", daemon=True).start()
c = threading.Thread(target=consumer, name="consumer", daemon=True)
c.start()
p = threading.Thread(target=producer, name="producer", daemon=True)
p.start()
p_started = time.monotonic()
j = threading.Thread(target=joiner, name="joiner", daemon=True)
j.start()

def quiet():
    # A polling wait is a new record at each call: compare the others.
    waits = [w for w in _state.blocked.copy().values() if w.polled_since is None]
    return (
        DETECTOR._quiet is not None
        and frozenset((id(w), w.since) for w in waits) <= DETECTOR._quiet[0]
        and len(waits) >= 1
        and time.monotonic() - p_started > 1.0  # past probable_after: a finding would be due
    )

deadline = time.monotonic() + 20
while time.monotonic() < deadline and not DETECTOR.findings and not quiet():
    time.sleep(0.02)
out = {
    "kinds": [f.kind for f in DETECTOR.findings],
    "threads": sorted(t.name for f in DETECTOR.findings for t in f.threads),
    "rescuers": [r.split(" ")[0] for f in DETECTOR.findings for r in f.rescuers],
    "causes": [f.cause for f in DETECTOR.findings],
    "quiet": quiet(),
}
if RESCUE != "none":
    go.set()
    drain.set()
    j.join(10)
    out["ended"] = not j.is_alive() and not p.is_alive()
print(json.dumps(out), flush=True)
os._exit(0)
"""


def _run(rescue: str, join: str) -> dict[str, object]:
    r = run_python(PROGRAM, args=[rescue, join], timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("join", ["untimed", "polling"])
def test_a_join_behind_a_producer_nobody_drains_is_a_probable_deadlock(join: str) -> None:
    out = _run("none", join)
    assert out["kinds"] == ["probable-deadlock"]
    if join == "untimed":
        assert out["threads"] == ["joiner", "producer"]
        assert sorted(out["rescuers"]) == ["'MainThread'", "'heartbeat'"]
    else:
        # The poller runs code between its joins: it is named as one that
        # could rescue, and as polling for them.
        assert out["threads"] == ["producer"]
        assert sorted(out["rescuers"]) == ["'MainThread'", "'heartbeat'", "'joiner'"]
        assert "'joiner' polling for them" in str(out["causes"])


@pytest.mark.parametrize(
    ("rescue", "join"), [("drainer", "untimed"), ("drainer", "polling"), ("poller", "polling")]
)
def test_with_a_thread_that_names_the_queue_it_is_not_reported(rescue: str, join: str) -> None:
    # The same program with a thread that can run and names the queue (a
    # drainer waiting for its turn, or the polling joiner itself): the
    # watcher looked, and concluded nothing, before the rescue was let go.
    out = _run(rescue, join)
    assert out == {
        "kinds": [],
        "threads": [],
        "rescuers": [],
        "causes": [],
        "quiet": True,
        "ended": True,
    }


NOTIFIED = """
import json, sys, threading, time
import deadlockwatch
from deadlockwatch._analysis.deadlock import analyze
from deadlockwatch._track import state as _state
from deadlockwatch._watch.capture import capture
from deadlockwatch._watch.watcher import DETECTOR

# The watcher never looks on its own here: the test looks, at chosen moments.
deadlockwatch.enable(interval=3600, threshold=3600, lock_order=False)
lock = threading.Lock()

def waiter(cond):
    with lock:
        with cond:
            cond.wait()       # only this thread has cond: nobody else can notify

def blocked(t):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rec = next((r for r in _state.blocked.copy() if r.ident == t.ident), None)
        if rec is not None:
            return rec.wait
        time.sleep(0.005)
    raise SystemExit("not blocked")

def kinds():
    snap, _ = capture(list(_state.blocked.copy().values()), DETECTOR._exclude())
    return [f.kind for f in analyze(snap)]

w = threading.Thread(target=waiter, args=(threading.Condition(),), daemon=True)
w.start()
wait = blocked(w)
out = {"before": kinds()}
# What notify does is release the wait's waiter lock; the thread then runs as
# soon as it has the GIL.  The state between the two (fasteners' writer was
# seen in it) is made here without a race: the wait is shown a released
# waiter lock while its own stays held, so the thread really stays blocked.
real = wait.waiter
notified = threading.Lock()   # released, as notify leaves the real one
wait.waiter = notified
out["notified"] = kinds()
out["still in its wait"] = w.ident in {r.ident for r in _state.blocked.copy()}
wait.waiter = real
out["waiting again"] = kinds()
real.release()                # the notify itself
w.join(10)
out["ended"] = not w.is_alive()
print(json.dumps(out))
"""


def test_a_notified_waiter_not_yet_running_is_not_stuck() -> None:
    """fasteners' contention test under DEADLOCKWATCH=1 was reported "no thread
    that can run will ever notify": the watcher looked after a notify, before
    the notified writer had run.  Control: before the notify it is a deadlock."""
    r = run_python(NOTIFIED, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out == {
        "before": ["deadlock"],
        "notified": [],
        "still in its wait": True,
        "waiting again": ["deadlock"],
        "ended": True,
    }, out
