"""Break one rule of deadlockwatch at a time, and see which tests notice.

For each mutation of `MUTATIONS` (a file, the exact text of a rule in it, a
replacement that breaks the rule, and what the rule says), this script copies
the checkout to a temporary directory (it never edits a shared tree), applies
the mutation there, runs the negative tests and their controls (`SELECTION`)
against the copy (``PYTHONPATH`` puts it first, subprocesses included), and
prints the tests that fail.  An original text that is not found fails at once,
loudly: the table must follow the code.

Not a test module (pytest collects ``test_*.py`` only)::

    .venv/bin/python tests/mutate.py                # every mutation
    .venv/bin/python tests/mutate.py releasable-false owner-bound-holders
    .venv/bin/python tests/mutate.py --list
    .venv/bin/python tests/mutate.py --json out.json
    .venv/bin/python tests/mutate.py wakeable-ignored --tests tests/processes/test_processes.py

The results are written up in ``tests/MUTATIONS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the checkout
    original: str  # exact text, found once
    replacement: str
    rule: str  # the rule the replacement breaks


A = "deadlockwatch/_analysis/deadlock.py"
C = "deadlockwatch/_watch/capture.py"
R = "deadlockwatch/_watch/reach.py"
L = "deadlockwatch/_watch/liveness.py"
O = "deadlockwatch/_track/order.py"  # noqa: E741
P = "deadlockwatch/_track/primitives.py"
S = "deadlockwatch/_track/state.py"
W = "deadlockwatch/_watch/watcher.py"
G = "deadlockwatch/_track/signals.py"
T = "deadlockwatch/_watch/tasks.py"

MUTATIONS = [
    Mutation(
        "releasable-false",
        A,
        '    """Can some thread that can progress release (signal, finish) ``key``?"""\n',
        '    """Can some thread that can progress release (signal, finish) ``key``?"""\n'
        "    return False\n",
        "_releasable: whatever waits, nothing can release it (the issue's mutation)",
    ),
    Mutation(
        "owner-bound-holders",
        A,
        "return any(h in progress or h not in snap.threads for h, _ in r.holders)",
        "return False",
        "an owner-bound resource is releasable when one of its holders can progress",
    ),
    Mutation(
        "owner-bound-unknown-holder",
        A,
        "return any(h in progress or h not in snap.threads for h, _ in r.holders)",
        "return any(h in progress for h, _ in r.holders)",
        "a holder missing from the snapshot is a thread we know nothing against: it can progress",
    ),
    Mutation(
        "free-unit",
        A,
        "if r is None or r.free > 0 or (not r.holders",
        "if r is None or (not r.holders",
        "a resource with a free unit is releasable",
    ),
    Mutation(
        "no-reach-others-running",
        A,
        "        return snap.others_running or bool(progress)\n",
        "        return False\n",
        "a signal whose reach is not worked out: any thread that can progress may give it",
    ),
    Mutation(
        "rescuers-none",
        A,
        "    found = [i for i, _ in reach.threads if i in running]\n",
        "    found = []\n",
        "_rescuers: a running thread that reaches the signal can give it",
    ),
    Mutation(
        "rescues-ignored",
        A,
        "    if reach.rescues:\n",
        "    if False:\n",
        "_rescuers: a signal handler's main thread, or a thread starting, can give it",
    ),
    Mutation(
        "incomplete-reach-no-rescuer",
        A,
        "    if not reach.complete or (reach.shared and mode == CERTAIN):\n"
        "        return sorted(running)\n",
        "    if not reach.complete or (reach.shared and mode == CERTAIN):\n        return []\n",
        "_rescuers: reach cut short, or through a global: every running thread may give it",
    ),
    Mutation(
        "running-is-not-progress",
        A,
        "        if t.wait is None or (timed_waits_progress and t.wait.timeout is not None):\n",
        "        if timed_waits_progress and t.wait is not None and t.wait.timeout is not None:\n",
        "a running thread (in no tracked wait) can progress",
    ),
    Mutation(
        "timed-wait-is-not-progress",
        A,
        "        if t.wait is None or (timed_waits_progress and t.wait.timeout is not None):\n",
        "        if t.wait is None:\n",
        "a thread in a timed wait can progress (its timeout ends the wait)",
    ),
    Mutation(
        "wakeable-ignored",
        A,
        "    if t.key in snap.wakeable:\n        return True\n",
        "    if False:\n        return True\n",
        "wakeable: the main thread waiting on a signal while a Python signal handler"
        " is set, or a thread waiting on a signal another process can give, can"
        " progress (guarded outside the selection: processes/, watch/test_signals.py)",
    ),
    Mutation(
        "timed-cycle-lone-self-wait",
        A,
        "            if len(threads) > 1 and not threads <= stuck and not polling:\n",
        "            if not threads <= stuck and not polling:\n",
        "a thread alone in a timed wait on what it holds itself is no warning",
    ),
    Mutation(
        "probable-needs-someone-behind",
        A,
        "        if (\n            not f.cycle\n            and not behind\n",
        "        if (\n            False\n            and not behind\n",
        "a probable deadlock needs a thread blocked behind it: an idle waiter alone is none",
    ),
    Mutation(
        "latch-stays-owner-bound",
        C,
        "                self.resources[key] = replace(r, owner_bound=False)\n",
        "                pass\n",
        "a Lock a thread blocks on after a bare acquire() of its own is a latch while "
        "other threads exist: not owner-bound",
    ),
    Mutation(
        "handoff-stays-owner-bound",
        P,
        "        if self._handoff:\n            return False\n        owner = self._owner\n",
        "        owner = self._owner\n",
        "a Lock seen released by another thread is handed over: not owner-bound",
    ),
    Mutation(
        "returned-holding-never",
        S,
        "    died = rec.died\n    return died is None or code not in died\n",
        "    return False\n",
        "a Lock left held by a thread whose function returned normally is handed over",
    ),
    Mutation(
        "thread-own-args-shared",
        R,
        "                    if via is None or via in _THREAD_OWN:\n"
        "                        continue  # its target and arguments are that thread's alone\n",
        "                    if via is None:\n                        continue\n",
        "reach: a Thread's target and arguments belong to that thread alone",
    ),
    Mutation(
        "dead-locals-live",
        L,
        "    found = table.get(lasti)\n    if found is not None:\n        return found\n",
        "    return all_locals(code)\n",
        "liveness: a local the rest of its function never loads again reaches nothing",
    ),
    Mutation(
        "no-locals-live",
        L,
        "    found = table.get(lasti)\n    if found is not None:\n        return found\n",
        "    return frozenset()\n",
        "liveness: a local the rest of its function loads is live (its thread reaches it)",
    ),
    Mutation(
        "order-gate-ignored",
        O,
        "        if gates and any(_same_gate(g, edges) for g in gates):\n",
        "        if False:\n",
        "lock order: an inversion under a common gate lock is harmless",
    ),
    Mutation(
        "order-any-lock-a-gate",
        O,
        '    return (\n        getattr(lock, "_dw_type", "") in ("Lock", "RLock", "asyncio.Lock")\n'
        '        and not getattr(lock, "_handoff", False)\n'
        '        and not getattr(lock, "_dw_shared", False)\n    )\n',
        "    return True\n",
        "lock order: only a mutex (Lock, RLock, not handed over) is a gate",
    ),
    Mutation(
        "order-handoff-is-a-mutex",
        O,
        '            lock is None or getattr(lock, "_handoff", False)'
        ' or getattr(lock, "_dw_shared", False)\n',
        '            lock is None or getattr(lock, "_dw_shared", False)\n',
        "lock order: a Lock handed between threads is a latch, not a mutex",
    ),
    Mutation(
        "order-pending-ignores-handoff",
        O,
        '                if any(getattr(lock, "_handoff", False) for lock in locks) or any(\n'
        "                    site in HANDOFF_SITES for site in p.sites\n"
        "                ):\n",
        "                if False:\n",
        "lock order: a pending inversion through a Lock handed over later in its window is none",
    ),
    Mutation(
        "order-pending-dropped",
        O,
        "                due.append(p.finding)\n",
        "                pass\n",
        "lock order: a pending inversion still through no hand-off Lock is reported",
    ),
    Mutation(
        "order-every-cycle-pending",
        O,
        "        if any(e.bare for e in edges):\n",
        "        if True:\n",
        "lock order: a cycle of Locks all held by `with` is reported at once",
    ),
    Mutation(
        "order-never-pending",
        O,
        "        if any(e.bare for e in edges):\n",
        "        if False:\n",
        "lock order: a cycle through a Lock held by bare acquire() waits for its window's end",
    ),
    Mutation(
        "order-pending-no-bound",
        W,
        "            self.settle_inversions(PENDING_BOUND)\n",
        "            self.settle_inversions(0.0)\n",
        "lock order: a watcher tick reports a pending inversion only once PENDING_BOUND old",
    ),
    Mutation(
        "order-pending-no-tick",
        W,
        "        if ORDER.pending:\n            self.settle_inversions(PENDING_BOUND)\n",
        "        if False:\n            self.settle_inversions(PENDING_BOUND)\n",
        "lock order: a pending inversion is reported by a watcher tick past its bound",
    ),
    Mutation(
        "order-token-never",
        P,
        '    if getattr(lock, "_dw_type", None) != "Lock":\n        return False\n'
        '    site = getattr(lock, "_site", None)\n',
        '    return False\n    site = getattr(lock, "_site", None)\n',
        "lock order: a Lock held past the return of the function that took it is a token, no order",
    ),
    Mutation(
        "order-released-later-never",
        P,
        "    if not held_as_token(lock, frame):\n        return\n",
        "    return\n",
        "lock order: a Lock left held across its taker's return and released by a"
        " later call makes its creation site a hand-off class",
    ),
    Mutation(
        "order-released-in-call-marks",
        P,
        "    if not held_as_token(lock, frame):\n        return\n",
        "",
        "lock order: a Lock released in the call that took it is a critical section:"
        " its class stays ordered",
    ),
    Mutation(
        "order-gate-by-address",
        O,
        "        if gates and any(_same_gate(g, edges) for g in gates):\n",
        "        if gates:\n",
        "lock order: a gate is the same lock around every order of the cycle, not a new"
        " lock at a collected one's address",
    ),
    Mutation(
        "order-released-later-no-guard",
        P,
        "        id(above) == guard\n",
        "        True\n",
        "lock order: only a Lock released by a later call under the lock it was taken"
        " under, dropped and taken again since (a count's lock), is a group lock; node"
        " locks released hand over hand stay ordered",
    ),
    Mutation(
        "task-held-lock-is-the-threads",
        T,
        "    _held_by_tasks(b, thread_ident, nodes)\n",
        "",
        "asyncio: a threading Lock taken by a suspended task's coroutine frame is that"
        " task's, not its loop thread's (a Lock held across an await)",
    ),
    Mutation(
        "loop-no-rescues",
        T,
        "    holding = sorted({job.owners[i] for i in found.watched})\n",
        "    holding = []\n",
        "asyncio: of what the loop can still run (a task, a callback ready or scheduled,"
        " a server, a transport, a reader, a signal handler), what holds the signal may"
        " still give it or complete the future",
    ),
    Mutation(
        "thread-no-rescue-of-a-task",
        T,
        "    threads += [(i, how) for i, how in found.givers(nodes) if i != job.thread]\n",
        "    threads += []\n",
        "asyncio: a thread that can run and whose live locals reach a signal may hand the"
        " loop a callback that gives it",
    ),
    Mutation(
        "loop-rescuer-names-unread",
        T,
        "            hit = next(filter(None, (_names(o, found.names, job.loop)"
        ' for o in group)), "")\n',
        '            hit = ""\n',
        "asyncio: what the loop can still run whose code names the global a signal is"
        " reached through (a protocol's method) may give it",
    ),
    Mutation(
        "loop-busy-ignored",
        A,
        "    if reach.loop_thread is not None and not (reach.shared and reach.loop_busy"
        " and mode == CERTAIN):\n",
        "    if reach.loop_thread is not None:\n",
        "asyncio: through a global, anything else of the loop that can run might give a"
        " signal (code it calls may name the global): at most a probable deadlock",
    ),
    Mutation(
        "task-walked-through",
        R,
        "                        out.tasks[rid] = (loop_thread, _loopread.task_name(r))\n"
        "                        continue\n",
        "                        out.tasks[rid] = (loop_thread, _loopread.task_name(r))\n"
        "                        ancestors[rid] = r\n",
        "the walk stops at a pending task of a running loop: what holds a task (a gather's"
        " done callback, a sibling's) can cancel it, not reach into its coroutine",
    ),
    Mutation(
        "weakrefs-unfollowed",
        R,
        "            refs = weakref.getweakrefs(o)\n",
        "            refs = []\n",
        "a weak reference holds its object: a thread with weakref.ref() to what holds a"
        " signal can give it",
    ),
    Mutation(
        "stuck-task-not-a-giver",
        R,
        "            if key in nodes:\n",
        "            if False:\n",
        "a task whose coroutine holds a signal gives it itself when it is a node of the"
        " graph (stuck), not its loop's thread",
    ),
    Mutation(
        "first-callbacks-unread",
        T,
        "    hidden = _first_callbacks()\n",
        "    hidden: dict[int, list[Any]] = {}\n",
        "asyncio on 3.10/3.11: a C future's first done callback, which the collector does"
        " not report, holds what it reaches (shield's outer future, a task it wakes)",
    ),
    Mutation(
        "uvloop-timeouts-unread",
        T,
        "        return _spread(_timed_by_frames(loop, now), out)\n",
        "        return out\n",
        "asyncio: on a loop whose timers cannot be read (uvloop), a timeout in a task's"
        " await chain still makes its waits timed",
    ),
    Mutation(
        "uvloop-timers-unread",
        "deadlockwatch/_track/loopread.py",
        '    if not str(getattr(type(loop), "__module__", "")).startswith("uvloop"):\n',
        "    if True:\n",
        "asyncio: uvloop's pending timers are read off the collector's view of its loop"
        " (a timer that cancels a task; no order learned under a timeout)",
    ),
    Mutation(
        "uvloop-io-unread",
        "deadlockwatch/_track/loopread.py",
        '        io=io,\n        signal_handlers=list(fields["_signal_handlers"].values()),\n',
        '        io=[],\n        signal_handlers=list(fields["_signal_handlers"].values()),\n',
        "asyncio: on uvloop, its servers, transports and watched descriptors (read off"
        " its referents) may still give a signal",
    ),
    Mutation(
        "uvloop-handlers-unread",
        "deadlockwatch/_track/loopread.py",
        '        signal_handlers=list(fields["_signal_handlers"].values()),\n',
        "        signal_handlers=[],\n",
        "asyncio: on uvloop, its signal handlers (add_signal_handler) may still give a signal",
    ),
    Mutation(
        "loop-io-unread",
        "deadlockwatch/_track/loopread.py",
        "                io.extend(h for h in handles if h is not None)\n",
        "                pass\n",
        "asyncio: the file descriptors asyncio's loop watches may still give a signal",
    ),
    Mutation(
        "wait-timeout-unread",
        T,
        '            elif code.co_name == "_wait" and code.co_filename.startswith(home):\n',
        "            elif False:\n",
        "asyncio: on a loop whose timers cannot be read, asyncio.wait(fs, timeout=...)"
        " on a task's await chain makes its wait timed",
    ),
    Mutation(
        "callback-owner-unread",
        T,
        "    if owner is obj or (owner is not None and _has(owner, obj)):\n",
        "    if owner is obj:\n",
        "asyncio: a done callback that is a bound method reaches what its object holds"
        " (3.13's as_completed iterator and its queue)",
    ),
    Mutation(
        "signal-waiter-not-first",
        A,
        "            any(r.kind == SIGNAL_KIND for r in waited(snap, snap.threads[k])),\n",
        "            False,\n",
        "of waiters waiting as long (tasks one scan found), a cycle starts at the one"
        " waiting on a signal",
    ),
    Mutation(
        "uvloop-thread-unknown",
        "deadlockwatch/_track/loopread.py",
        '        ident = None if getattr(loop, "_closed", False) else loops.get(loop)\n',
        "        ident = None\n",
        "asyncio: a loop in C (uvloop) runs in the thread its patched run_forever noted",
    ),
    Mutation(
        "timer-refers-no-task",
        T,
        "            todo.extend((t, left) for t in _tasks_referred(cb, h.args, tasks))\n",
        "            pass\n",
        "asyncio: a pending timer whose callback refers to a task (task.cancel, anyio's"
        " cancel scope) may cancel it: its waits are timed",
    ),
    Mutation(
        "anyio-deadline-unread",
        T,
        '                    when = getattr(cm, "_deadline", None)\n',
        "                    when = None\n",
        "asyncio: on a loop whose timers cannot be read, anyio's cancel scope with a"
        " deadline on a task's stack makes its waits timed",
    ),
    Mutation(
        "no-confirmation",
        W,
        "            if f.key in new and self._due(f, probable_after)"
        " and not self._seen(f, waits2):\n",
        "            if self._due(f, probable_after) and not self._seen(f, waits2):\n",
        "a finding is real only if the second capture shows the very same waits",
    ),
    Mutation(
        "signal-own-lock-counted",
        G,
        "        held = [h for h in held if h is not own and h is not cond]\n        mine =",
        "        mine =",
        "wait-under-lock: the signal's own lock is released by the wait, neither needed nor held",
    ),
    Mutation(
        "signal-earlier-any-offset",
        G,
        "    if not signalled or site is None or site[0] is not code or site[1] <= offset:\n",
        "    if not signalled or site is None or site[0] is not code:\n",
        "wait-under-lock: a lock taken after the signal, in the same call, is not needed by it",
    ),
    Mutation(
        "signal-handler-locks-counted",
        G,
        "            [] if rec.wait is not None else [h for h in rec.held if h is not own"
        " and h is not cond]\n",
        "            [h for h in rec.held if h is not own and h is not cond]\n",
        "wait-under-lock: a signal given from a handler inside a wait needs none of the "
        "interrupted code's locks",
    ),
    Mutation(
        "signal-timed-wait-counted",
        G,
        "            if timeout and local.get(timeout) is not None:\n                return True\n",
        "",
        "wait-under-lock: a timed wait cannot hang forever: it teaches nothing",
    ),
    Mutation(
        "condition-shortcut-any-original",
        "deadlockwatch/_track/waits.py",
        "            or code.co_names != names\n",
        "",
        "a Condition method is replaced by its C shortcut only where threading's code is "
        "what the shortcut does",
    ),
    Mutation(
        "waits-frames-counted",
        "deadlockwatch/_track/waits.py",
        "internal_file(__file__)\n\n_STDLIB",
        "_STDLIB",
        "a take of a Condition's lock on the way out of a wait (its C _acquire_restore) "
        "is the application's call, not the wait wrapper's",
    ),
    Mutation(
        "semaphore-release-ignores-waiters",
        G,
        "        return node is None or not node.waiters\n",
        "        return True\n",
        "wait-under-lock: a Semaphore's release by a thread that holds no lock still checks"
        " the locks its earlier waiters held (issue 17's early answer)",
    ),
    Mutation(
        "pure-take-no-guard",
        P,
        "                    self._dw_guard = id(last)\n",
        "                    self._dw_guard = 0\n",
        "the Python path's bare acquire() notes the lock it was taken under (its guard),"
        " which tells a group lock released by a later call (issue 17 wrote the take out)",
    ),
    Mutation(
        "pure-enter-no-order",
        P,
        "            held = rec.held\n            if held and learn_order is not None:\n",
        "            held = rec.held\n            if False:\n",
        "the Python path's Lock __enter__ teaches the order after the lock held last",
    ),
    Mutation(
        "pure-rlock-no-order",
        P,
        "                held = rec.held\n                if held and learn_order is not None:\n",
        "                held = rec.held\n                if False:\n",
        "the Python path's RLock acquire (and __enter__) teaches the order after the lock"
        " held last",
    ),
    Mutation(
        "wait-for-future-unread",
        T,
        '        return given.f_locals.get("fut") is fut\n',
        "        return False\n",
        "a future the task's own frame hands to asyncio to await (wait_for(fut, None)) is"
        " a bare future of the task's",
    ),
    Mutation(
        "gathered-future-unread",
        T,
        '            and chained_source(getattr(fut, "_callbacks", None)) is None\n        ):\n',
        "            and False\n        ):\n",
        "a plain future gathered is a signal whoever holds it may complete",
    ),
    Mutation(
        "contexts-walked-through",
        R,
        "    return not (callable(r) or isinstance(r, types.FrameType))\n",
        "    return False\n",
        "what merely keeps a task's context (a future's callback entry, a Runner) is no way"
        " into its context variables",
    ),
    Mutation(
        "helper-dummy-kept",
        W,
        "            _forget_dummy(ident)\n",
        "            pass\n",
        "a helper thread of the detector's leaves threading no _DummyThread",
    ),
    Mutation(
        "quiet-by-ids",
        W,
        "            out.add((id(w), w.since))\n",
        "            out.add((id(w), 0.0))\n",
        "the waits already looked at are told apart from new ones by their start, not"
        " only their records' ids (freed records' addresses go to later waits)",
    ),
    Mutation(
        "probable-reported-by-ids",
        W,
        "    return _stamped(key, waits)\n",
        "    return _stamped(key, ())\n",
        "a probable deadlock reported is remembered by its waits' ids and starts",
    ),
    Mutation(
        "polling-from-the-last-take",
        W,
        "    return w.since if polled is None else float(polled)\n",
        "    return w.since\n",
        "a polling loop's waits are past the threshold counted from its first take",
    ),
    Mutation(
        "unknown-tokens-reported",
        W,
        "            if not (token in self._reported_tokens if w is None else w.reported):\n",
        "            if not (True if w is None else w.reported):\n",
        "a token that is no wait record's id (a polling loop's) is handled once it is"
        " in a finding handled, not before",
    ),
]

#: The negative tests and their controls: whole modules of them, and the
#: negative tests of the other modules by name (a module name is a keyword).
SELECTION = [
    "tests/watch/test_deadlocks.py",
    "tests/analysis/test_analysis.py",
    "tests/watch/test_chains.py",
    "tests/track/test_lock_order.py",
    "tests/watch/test_reach.py",
    "tests/track/test_wait_under_lock.py",
    # probable-needs-someone-behind: the one test of test_signals that can tell.
    "tests/watch/test_signals.py::test_a_lone_idle_waiter_beside_a_probable_deadlock_is_not_reported",
]
#: With --wide: the negative tests of the subprocess-heavy modules too (by
#: name: a module name is a keyword), a few minutes a mutation.
WIDE = [
    *(s for s in SELECTION if "::" not in s),
    "tests/watch/test_signals.py",
    "tests/watch/test_waits.py",
]
KEYWORDS = (
    "test_deadlocks or test_analysis or test_chains or test_lock_order or test_reach"
    " or false_alarm or control or lone or running or no_deadlock or no_warning"
    " or handed or notifier or reported or dead_local or live_local or probable"
    " or test_wait_under_lock or signal_handler"
)

_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def _copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def run(
    mutation: Mutation | None,
    workers: int,
    timeout: float,
    wide: bool = False,
    tests: list[str] | None = None,
) -> tuple[list[str], str]:
    """The tests of the selection that fail with ``mutation`` applied (none:
    the checkout as it is), and pytest's summary line.  ``tests`` (node ids
    or files, run whole) replaces the selection and its keywords."""
    with tempfile.TemporaryDirectory(prefix="dlw-mutant-") as tmp:
        copy = Path(tmp) / "repo"
        _copy(copy)
        if mutation is not None:
            target = copy / mutation.path
            text = target.read_text()
            count = text.count(mutation.original)
            if count != 1:
                raise SystemExit(
                    f"{mutation.name}: the original text is found {count} times in "
                    f"{mutation.path}, not once: update the table"
                )
            target.write_text(text.replace(mutation.original, mutation.replacement))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
        env["PYTHONPATH"] = str(copy)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        where = subprocess.run(
            [sys.executable, "-c", "import deadlockwatch; print(deadlockwatch.__file__)"],
            env=env,
            capture_output=True,
            text=True,
            cwd=copy,
        ).stdout.strip()
        if not where.startswith(str(copy)):
            raise SystemExit(f"the copy is not what gets imported: {where}")
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-n",
            str(workers),
            *(tests or ["-k", KEYWORDS, *(WIDE if wide else SELECTION)]),
        ]
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, cwd=copy, timeout=timeout
            )
            out = proc.stdout
        except subprocess.TimeoutExpired as exc:
            raw = exc.stdout or b""
            out = raw.decode() if isinstance(raw, bytes) else raw
            out += "\nTIMEOUT"
    failed = sorted({m.group(2) for line in out.splitlines() if (m := _FAILED.match(line))})
    summary = next(
        (line for line in reversed(out.splitlines()) if " in " in line and "=" not in line[:1]),
        out.splitlines()[-1] if out else "",
    )
    return failed, summary.strip("= ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations")
    parser.add_argument("--baseline", action="store_true", help="run unmutated first")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("-n", "--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--wide", action="store_true", help="test_signals, test_waits too")
    parser.add_argument(
        "--tests", nargs="+", help="run these tests (node ids or files) instead of the selection"
    )
    args = parser.parse_args()
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:32} {m.path}: {m.rule}")
        return 0
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutations: {sorted(unknown)}")
    results: dict[str, dict[str, object]] = {}
    if args.baseline:
        failed, summary = run(None, args.workers, args.timeout, args.wide, args.tests)
        print(f"baseline: {summary}", flush=True)
        for t in failed:
            print(f"    {t}", flush=True)
        results["(none)"] = {"failed": failed, "summary": summary}
    for m in chosen:
        began = time.monotonic()
        failed, summary = run(m, args.workers, args.timeout, args.wide, args.tests)
        took = time.monotonic() - began
        print(f"{m.name}: {len(failed)} failing ({summary}, {took:.0f} s)", flush=True)
        for t in failed:
            print(f"    {t}", flush=True)
        results[m.name] = {"rule": m.rule, "path": m.path, "failed": failed, "summary": summary}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
