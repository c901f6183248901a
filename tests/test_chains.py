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

from conftest import run_python

PROGRAM = """
import json, os, queue, sys, threading, time
import deadlockwatch
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR

RESCUE = sys.argv[1] == "rescue"
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

def joiner():
    p.join()              # untimed: blocked behind the producer

threading.Thread(target=beat, name="heartbeat", daemon=True).start()
if RESCUE:
    threading.Thread(target=drainer, name="drainer", daemon=True).start()
c = threading.Thread(target=consumer, name="consumer", daemon=True)
c.start()
p = threading.Thread(target=producer, name="producer", daemon=True)
p.start()
j = threading.Thread(target=joiner, name="joiner", daemon=True)
j.start()

def quiet():
    waits = frozenset(map(id, _state.blocked.copy().values()))
    return DETECTOR._quiet is not None and DETECTOR._quiet[0] == waits and len(waits) >= 2

deadline = time.monotonic() + 20
while time.monotonic() < deadline and not DETECTOR.findings and not quiet():
    time.sleep(0.02)
out = {
    "kinds": [f.kind for f in DETECTOR.findings],
    "threads": sorted(t.name for f in DETECTOR.findings for t in f.threads),
    "rescuers": [r.split(" ")[0] for f in DETECTOR.findings for r in f.rescuers],
    "quiet": quiet(),
}
if RESCUE:
    go.set()
    j.join(10)
    out["ended"] = not j.is_alive() and not p.is_alive()
print(json.dumps(out), flush=True)
os._exit(0)
"""


def _run(mode: str) -> dict[str, object]:
    r = run_python(PROGRAM, args=[mode], timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout.splitlines()[-1])
    return result


def test_a_join_behind_a_producer_nobody_drains_is_a_probable_deadlock() -> None:
    out = _run("alone")
    assert out["kinds"] == ["probable-deadlock"]
    assert out["threads"] == ["joiner", "producer"]
    assert sorted(out["rescuers"]) == ["'MainThread'", "'heartbeat'"]


def test_with_a_thread_that_names_the_queue_it_is_not_reported() -> None:
    # The same program with a drainer that can run and names the queue: the
    # watcher looked (and concluded nothing) before the drainer was let go.
    out = _run("rescue")
    assert out == {"kinds": [], "threads": [], "rescuers": [], "quiet": True, "ended": True}
