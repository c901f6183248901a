"""Deadlocks across processes: ``multiprocessing``'s locks and semaphores.

``multiprocessing.synchronize.SemLock`` (Lock, RLock, Semaphore,
BoundedSemaphore, and Condition, Event, Barrier, ``Value``/``Array`` locks
built on them) is patched at class level when that module is imported while
the detector is on.  The uncontended path stays local: a successful attempt
records the hold in the calling thread's record and on the object, nothing
else.  A blocking acquire is a sliced `wait_until` wait, as for threading's
locks.  Each semaphore has a name (``_semlock.name``) that is the same in
every process that unpickled it: that is its identity across processes (a
fork-context one, unlinked at once, is named after its creating process and
handle, which forked children share).

Processes exchange what they hold and wait for through a run directory
(named at start-up in ``DEADLOCKWATCH_RUN_DIR``, which children inherit; made
``0700`` by the first process that needs it): no server, no port.  A process
writes ``<pid>.json`` (atomically) only while one of its threads has waited
for a shared Lock or RLock longer than the threshold, or holds one across two
ticks of its watcher, or holds one while
another process has a file there; it removes it when it holds and waits for
nothing shared.  The file is the process's local snapshot (its blocked threads,
the holders they reach, the holders of shared locks), so cycles that pass
through threading locks inside a process are seen too.  A process with such an
old shared wait reads every file, merges them into one `Snapshot` whose
threads are (pid, thread) pairs and whose shared resources are keyed by name,
and runs the same analysis.  What a process that is gone (or a zombie) left
held comes from its ``<pid>.holds`` file (`_ledger`), which it updated in
memory as it took and released shared locks, so a process killed before it
ever published is named too (else from the last snapshot it published).  A
finding is confirmed over a few ticks, reported by the one participant that
creates its marker file first (``O_EXCL``), and acted on by each participant
for its own threads.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from deadlockwatch._model import (
    Finding,
    ResourceInfo,
    ThreadInfo,
)
from deadlockwatch._processes import exchange as _exchange
from deadlockwatch._processes import ledger as _ledger
from deadlockwatch._processes import rundir as _rundir
from deadlockwatch._processes import semlock as _semlock
from deadlockwatch._track import state as _state
from deadlockwatch._track.state import (
    internal_file,
    remove_held,
)

internal_file(__file__)


def patch() -> None:
    """Track multiprocessing's locks (now, or when the program imports them)."""
    _semlock.patch()


def unpatch() -> None:
    _semlock.unpatch()
    _rundir._remove_own()
    _ledger.close()


def tick(detector: Any) -> None:
    _exchange.tick(detector)


def check(detector: Any) -> list[Finding]:
    return _exchange.check(detector)


def remote_snapshot() -> tuple[list[ThreadInfo], dict[int, ResourceInfo]]:
    return _exchange.remote_snapshot()


def idle() -> bool:
    """Nothing shared to watch: no shared Lock or RLock held here, no snapshot
    published (the watcher may end)."""
    if not _semlock.active or _semlock._cls is None:
        return True
    if _rundir.OWN.written is not None:
        return False
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if _semlock.is_shared(obj) and _semlock._is_mutex(obj):
                return False
    return True


def involves_shared(finding: Finding) -> bool:
    """Does some thread of a local finding wait for a shared primitive?  Such
    findings are left to the analysis across processes (a shared lock's other
    holders live elsewhere)."""
    for t in finding.threads:
        if t.wait is not None:
            with contextlib.suppress(KeyError):
                if finding.resource(t.wait.resource).type.startswith("mp."):
                    return True
    return False


def local_findings(findings: list[Finding]) -> list[Finding]:
    if _semlock._cls is None:
        return findings
    return [f for f in findings if not involves_shared(f)]


def _after_fork_in_child() -> None:
    """A forked child holds none of its parent's shared locks (the parent's
    threads still do, in the parent)."""
    _exchange._EX.__init__()  # type: ignore[misc]
    _rundir.OWN.__init__()  # type: ignore[misc]
    _ledger.after_fork_in_child()
    _rundir._own_dir_pid = 0
    if _semlock._cls is None:
        return
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if _semlock.is_shared(obj):
                remove_held(rec, obj, len(rec.held))
                with contextlib.suppress(Exception):
                    obj._dw_units.clear()
                    obj._dw_sites.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
