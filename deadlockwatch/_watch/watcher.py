"""The running detector: enable/disable, the watcher thread, reports and actions.

The watcher is a bare ``_thread`` thread (invisible to ``threading.enumerate``)
that sleeps on an untracked lock.  It exists only while there is something to
watch: the first tracked wait that blocks starts it (from its slow path,
through ``_state.resume_watcher``), and so do a thread that ends holding a
lock and a shared lock taken; at a tick that finds nothing blocked, nothing
left held by an ended thread and nothing shared held or published, it ends.
Each tick costs one dict copy while nothing is blocked.  When some wait is
older than the threshold it captures a
snapshot, analyses it, and if that finds something new, takes a second
capture shortly after: only a finding whose waits are the very same in both
(a thread's wait record is new for every wait) is real, since a thread that
stayed in one wait across both captures was blocked all along.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from deadlockwatch._analysis import graph as _graph
from deadlockwatch._analysis.deadlock import analyze, held_at_exit
from deadlockwatch._config import ABORT_EXIT_STATUS, Config
from deadlockwatch._errors import DeadlockError
from deadlockwatch._model import DEADLOCK, PROBABLE_DEADLOCK, Finding, ResourceInfo, ThreadInfo
from deadlockwatch._report.text import format_dump, format_text, to_json_line
from deadlockwatch._track import aio as _aio
from deadlockwatch._track import native as _native
from deadlockwatch._track import patch as _patch
from deadlockwatch._track import primitives as _primitives
from deadlockwatch._track import signals as _signals
from deadlockwatch._track import state as _state
from deadlockwatch._track.aio import AioWait
from deadlockwatch._track.order import ORDER, PENDING_BOUND, held_as_token
from deadlockwatch._track.state import WaitRecord
from deadlockwatch._watch.capture import (
    capture,
    capture_all,
    capture_departed,
    outside_view,
    with_stacks,
)

#: The file of the tracked primitives' Python path (`learn_order` skips its frames).
_PRIMITIVES_FILE = _primitives.__file__

_state.internal_file(__file__)
#: Idents of the short-lived threads the detector starts (networkx's import,
#: a report's logging), while they run: not the
#: application's, never in a report, never a thread that "could rescue".
_HELPERS: set[int] = set()


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data``: a write may take only part of it (a signal, a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            return
        view = view[written:]


#: How many helpers were started and have not ended (under its lock).
_helpers_live = [0]
_helpers_lock = _native.allocate_lock()


def _helper_count(step: int) -> int:
    with _helpers_lock:
        _helpers_live[0] += step
        return _helpers_live[0]


def _start_helper(run: Callable[..., object], args: tuple[Any, ...] = ()) -> None:
    def helper() -> None:
        ident = _native.get_ident()
        _HELPERS.add(ident)
        try:
            run(*args)
        finally:
            _forget_dummy(ident)
            _HELPERS.discard(ident)
            _helper_count(-1)

    _helper_count(1)
    try:
        _native.start_new_thread(helper, ())
    except BaseException:
        _helper_count(-1)
        raise


def _forget_dummy(ident: int) -> None:
    """Take out of threading's table of threads the ``_DummyThread`` that code
    run in a thread of the detector's made by asking for the current thread
    (a logging record does, for its ``threadName``).  threading keeps a
    dummy for good (3.10 to 3.12), so ``threading.enumerate()`` listed a thread
    the program never had, and a later thread given the same ident (the
    watcher, say) was listed under it (a 3.10 CI failure)."""
    threading_ = sys.modules.get("threading")
    active = getattr(threading_, "_active", None)
    dummy = getattr(threading_, "_DummyThread", None)
    lock = getattr(threading_, "_active_limbo_lock", None)
    if not isinstance(active, dict) or not isinstance(dummy, type) or lock is None:
        return
    try:
        with lock:
            if isinstance(active.get(ident), dummy):
                del active[ident]
    except Exception:
        pass


def _wait_helpers(timeout: float) -> None:
    """Wait, at most ``timeout``, until no helper runs.  At exit: a helper
    still importing networkx when the interpreter finalizes is frozen
    holding the import system's lock, and a finalizer that imports (a
    ``__del__``, asyncio's "exception never retrieved" log) then blocks for
    good (found on a real-world trial: 1 exit in 3 hung after a finding)."""
    deadline = _native.monotonic() + timeout
    while _helper_count(0) > 0 and _native.monotonic() < deadline:
        time.sleep(0.001)


# networkx is imported in an untracked thread of the watcher's making.
_graph.start_thread = _start_helper


class Extension(Protocol):
    """What the watcher calls in an extension that sees beyond this process's
    threads (the multiprocessing one, `deadlockwatch._processes.shared`).

    An extension imports the watcher, never the reverse: it is registered
    (`register`) by the surface that starts the detector (`_api.start`).
    """

    def patch(self) -> None:
        """Install its patches (on `_Detector.start`); all or nothing."""

    def unpatch(self) -> None:
        """Remove them (on `_Detector.stop`, or when `patch` failed)."""

    def idle(self) -> bool:
        """Nothing of its own left for the watcher to look at (it may end)."""

    def tick(self, detector: Any) -> None:
        """One look, at each tick of the watcher."""

    def local_findings(self, findings: list[Finding]) -> list[Finding]:
        """This process's findings, less those the extension reports itself."""

    def check(self, detector: Any) -> list[Finding]:
        """Its findings now, for `deadlockwatch.check()`."""

    def remote_snapshot(self) -> tuple[list[ThreadInfo], dict[int, ResourceInfo]]:
        """Threads and resources seen elsewhere, for `deadlockwatch.dump()`."""


#: The registered extensions, in registration order.
EXTENSIONS: list[Extension] = []


def register(extension: Extension) -> None:
    """Let the watcher call ``extension`` (once, however often registered)."""
    if extension not in EXTENSIONS:
        EXTENSIONS.append(extension)


def _local(findings: list[Finding]) -> list[Finding]:
    for extension in EXTENSIONS:
        findings = extension.local_findings(findings)
    return findings


_CONFIRM_DELAY = 0.02
_MAIN_IDENT = threading.main_thread().ident


class _Watcher:
    """One watcher thread, with its own stop flag and wake lock.

    ``disable()`` waits 2 s at most for the watcher; one still in a long tick
    (a heap walk on a loaded machine) outlives that.  Stopped, it is no longer
    the detector's watcher: an ``enable()`` meanwhile starts one of its own at
    the first blocking wait, and the old one, its tick over, ends without
    acting on (or reporting for) what the new run watches.
    """

    __slots__ = ("done", "ident", "join", "native_id", "stop", "stopped_at", "wake")

    def __init__(self) -> None:
        #: Set once, when this watcher is stopped (it never runs again).
        self.stop = False
        #: When it was stopped (`_Detector.stale_watchers`).
        self.stopped_at: float | None = None
        #: Held until stopped: the watcher sleeps on it between ticks.
        self.wake = _native.allocate_lock()
        self.wake.acquire()
        #: Released by the thread as it ends.
        self.done = _native.allocate_lock()
        self.done.acquire()
        self.ident: int | None = None
        self.native_id = 0
        self.join: Any = None


class _Detector:
    """Module-level singleton holding the enabled state (see `_api`)."""

    def __init__(self) -> None:
        self.config = Config()
        self.enabled = False
        #: The watcher (started, and neither stopped nor decided to end).
        self._watcher: _Watcher | None = None
        #: Every watcher started and not yet pruned (`_start_watcher`): the
        #: current one, and stopped ones maybe still in their last tick.
        self._watchers: list[_Watcher] = []
        #: Held while a watcher acts on a finding (after checking it is still
        #: the current one, and the finding still unreported): two watchers
        #: never report one deadlock twice.  Only the detector takes it.
        self._act_lock = _native.allocate_lock()
        #: At interpreter exit: no watcher is started any more.
        self._exiting = False
        self._emit_lock = _native.allocate_lock()
        self._quiet: tuple[frozenset[tuple[int, float]], int] | None = None
        self._resume_lock = _native.allocate_lock()
        self._native_id = 0
        self._paused_for_fork = False
        self._errors_seen: set[tuple[str, tuple[tuple[str, int | None, str], ...]]] = set()
        #: Send findings to the ``deadlockwatch`` logger too (the pytest plugin
        #: attaches them to the test report instead).
        self.log = True
        self._atexit_registered = False
        #: In a child forked from a thread other than the main one, the process
        #: ends when that thread does (no interpreter finalization follows):
        #: the watcher must then end too, or it would keep the process alive.
        self._anchor: _state.ThreadRecord | None = None
        #: Every finding recorded, in order (`check`, `deadlockwatch.forget`).
        self.findings: list[Finding] = []
        #: Called with each finding as it is recorded (the pytest plugin's
        #: queue): cheap and lock-free, from whichever thread records it.
        self.listeners: list[Callable[[Finding], object]] = []
        self._green_once = _native.allocate_lock()
        #: Keys of the probable deadlocks reported: they leave their waits
        #: unmarked, so that the same threads found certainly stuck later
        #: are reported again, as a deadlock.
        self._probable_reported: set[frozenset[tuple[int, float]]] = set()
        #: The tokens of the findings handled that are no wait record's id
        #: (`_reported`).
        self._reported_tokens: set[int] = set()

    # -- life cycle ---------------------------------------------------------
    def start(self, config: Config) -> None:
        self.config = config
        ORDER.suppress = config.suppress
        _primitives.learn_order = self.learn_order if config.lock_order else None
        _signals.report = self._learned
        _aio.report = self._learned if config.lock_order else None
        _primitives.on_probe = _signals.on_probe if config.lock_order else None
        _primitives.on_semaphore = _signals.on_semaphore if config.lock_order else None
        _patch.learn_signals(config.lock_order)
        if self.enabled:
            return
        try:
            _patch.patch()
            for extension in EXTENSIONS:
                extension.patch()
        except BaseException:
            # Never leave the program half-patched.
            for extension in EXTENSIONS:
                extension.unpatch()
            _patch.unpatch()
            raise
        _primitives.self_wait_hook[:] = [self.on_self_wait]
        _state.on_green = self.stand_down_for_green_threads
        _state.watch_thread_ends(True)
        self.enabled = True
        self._exiting = False
        # No thread yet: the first blocking wait starts the watcher (or a
        # running event loop, enabled from inside it: its tasks' waits are
        # read by the watcher, and nothing else would start it).
        _state.resume_watcher = self._resume
        if _aio.loops:
            self._resume()
        if not self._atexit_registered:
            # After threading's own shutdown (so a deadlock that hangs it is
            # still reported): stop the watcher before the interpreter ends.
            atexit.register(self._at_exit)
            self._atexit_registered = True

    @property
    def watcher_ident(self) -> int | None:
        """The current watcher thread's ident (None before it runs)."""
        watcher = self._watcher
        return watcher.ident if watcher is not None else None

    @property
    def _running(self) -> bool:
        """A watcher thread exists (started, not stopped, not decided to end)."""
        return self._watcher is not None

    def stale_watchers(self, older_than: float) -> list[int]:
        """Idents of the stopped watcher threads still running ``older_than``
        seconds after they were stopped (none should: a tick ends)."""
        now = _native.monotonic()
        return [
            w.ident or 0
            for w in list(self._watchers)
            if w.done.locked() and w.stopped_at is not None and now - w.stopped_at > older_than
        ]

    def _start_watcher(self) -> None:
        """Start a watcher thread (with ``_resume_lock`` held)."""
        # Those that ended are forgotten; a stopped one still in its last
        # tick is kept, to be excluded from captures and joined at exit.
        self._watchers = [w for w in self._watchers if w.done.locked()]
        watcher = _Watcher()
        self._watcher = watcher
        self._watchers.append(watcher)
        try:
            watcher.join = _native.start_joinable(lambda: self._run(watcher))
        except BaseException:
            self._watcher = None
            self._watchers.remove(watcher)
            watcher.done.release()
            raise

    def stop(self) -> None:
        if not self.enabled:
            return
        self.settle_inversions()
        self.enabled = False
        _state.resume_watcher = None
        self._paused_for_fork = False
        _patch.learn_signals(False)
        _patch.unpatch()
        for extension in EXTENSIONS:
            extension.unpatch()
        _primitives.self_wait_hook[:] = []
        _primitives.learn_order = None
        _aio.report = None
        _primitives.on_probe = None
        _primitives.on_semaphore = None
        _state.on_green = None
        _state.watch_thread_ends(False)
        self._stop_watcher()

    def stand_down_for_green_threads(self) -> None:
        """eventlet or gevent monkey-patched ``_thread`` while enabled: their green
        threads share OS threads, so deadlockwatch can neither tell them apart
        nor block them the green way; it switches itself off (restoring only
        the names its own wrappers still hold), with one warning line, rather
        than hang the program or report waits it cannot see."""
        if not self._green_once.acquire(False):
            return
        try:
            if not self.enabled:
                return
            which = next((m for m in ("eventlet", "gevent") if m in sys.modules), None)
            self.write_text(
                f"deadlockwatch: warning: {which or 'a green-thread library'} monkey-patched "
                "threading: green threads are not tracked; deadlockwatch switches itself off"
            )
            self.stop()
        finally:
            self._green_once.release()

    def _stop_watcher(self) -> None:
        """Stop the watcher: at once it is no longer the detector's (a new
        one may start); wait a moment for it to end."""
        with self._resume_lock:
            watcher = self._watcher
            self._watcher = None
            if watcher is None:
                return
            watcher.stop = True
            watcher.stopped_at = _native.monotonic()
            watcher.wake.release()  # held until now: only here is it released
        # The watcher exits within a tick; never wait on it for long.
        if watcher.ident != _native.get_ident() and watcher.done.acquire(True, 2.0):
            watcher.done.release()

    def _at_exit(self) -> None:
        self._exiting = True
        _state.resume_watcher = None
        if self.enabled:
            # No thread for the logger at exit (3.12+ refuses new threads in
            # atexit): the text and the report file still get them.
            self.log = False
            self.settle_inversions()
            self._stop_watcher()
        # Gone before the interpreter finalizes, OS thread included: a daemon
        # thread still tearing its state down (callbacks run in it) while
        # the main thread clears every thread state is what CPython's
        # shutdown handles worst, and this one is ours, not the program's.
        self._join_watcher(1.0)
        _wait_helpers(5.0)

    def _join_watcher(self, timeout: float) -> None:
        """Wait, at most ``timeout`` and a moment, until the watcher threads
        are gone (their thread states, then their OS threads)."""
        me = _native.get_ident()
        deadline = _native.monotonic() + timeout
        for watcher in list(self._watchers):
            join = watcher.join
            if join is None or watcher.ident == me:
                continue
            join(max(0.0, deadline - _native.monotonic()))
            # The OS thread outlives the interpreter's view of it by a moment.
            native = watcher.native_id
            task = f"/proc/self/task/{native}"
            gone = _native.monotonic() + 0.2
            while native and os.path.exists(task) and _native.monotonic() < gone:
                time.sleep(0.0002)

    def before_fork(self) -> None:
        """No watcher is started while a fork is under way; on 3.12+ a running
        one is stopped for it (CPython warns about forking a process with
        other threads, and the watcher must not be why)."""
        if not self.enabled:
            return
        me = _native.get_ident()
        with self._resume_lock:
            self._paused_for_fork = True
            _state.resume_watcher = None
            running = [w for w in self._watchers if w.done.locked() and w.ident != me]
        if not running or sys.version_info < (3, 12):
            return
        self._stop_watcher()
        self._join_watcher(1.0)

    def after_fork_in_parent(self) -> None:
        # Not now: CPython counts the threads right after this hook.  The
        # next blocking wait (or the next slice of one in progress) restarts
        # the watcher; nothing can deadlock without one.
        if self._paused_for_fork:
            self._paused_for_fork = False
            self._arm()

    def _arm(self) -> None:
        """No watcher runs: the next blocking wait (or the next slice of one
        in progress) starts one."""
        if self.enabled and not self._exiting and not self._paused_for_fork:
            _state.resume_watcher = self._resume

    def _resume(self) -> None:
        """Start the watcher if none runs (called from the slow path of a
        tracked wait, by a thread that ends holding a lock, and by the taking
        of a shared lock).  Never raises into the caller's wait."""
        with self._resume_lock:
            if not self.enabled or self._exiting or self._paused_for_fork or self._running:
                _state.resume_watcher = None
                return
            _state.resume_watcher = None
            try:
                self._start_watcher()
            except Exception:  # no new threads (interpreter shutting down)
                return

    def _retire(self, watcher: _Watcher) -> bool:
        """At a tick with nothing to watch: end this watcher (True), unless a
        wait began meanwhile.  A thread that registers its wait and then reads
        ``resume_watcher`` either sees the watcher stay or starts a new one
        (and its next slice looks again, whatever the memory order)."""
        with self._resume_lock:
            if watcher.stop or watcher is not self._watcher:
                return True
            if self._paused_for_fork or not self.enabled or self._exiting:
                return False
            _state.resume_watcher = self._resume
            if not self._idle():
                _state.resume_watcher = None
                return False
            self._watcher = None
            return True

    @staticmethod
    def _idle() -> bool:
        return (
            not _state.blocked
            and not _state.departed
            and not _aio.waiting
            and not _aio.loops
            and all(extension.idle() for extension in EXTENSIONS)
        )

    def after_fork_in_child(self) -> None:
        """Only the forking thread survives a fork: it gets a new watcher."""
        self._paused_for_fork = False
        _state.resume_watcher = None
        self._resume_lock = _native.allocate_lock()
        self._act_lock = _native.allocate_lock()
        self._emit_lock = _native.allocate_lock()
        _graph.after_fork_in_child()
        ORDER.pending.clear()  # the parent's: reported by the parent
        # The parent's watchers did not come along.
        self._watcher = None
        self._watchers = []
        me = _native.get_ident()
        self._anchor = _state.current_record() if me != _MAIN_IDENT else None
        for rec in list(_state.blocked):
            if rec.ident != me:
                _state.blocked.pop(rec, None)
        for rec in list(_state.records.values()):
            if rec.ident == me:
                rec.pid = os.getpid()
            else:
                rec.lost_at_fork = True
                rec.alive = False
        # The parent's threads did not exit: what they held is reported when
        # a thread of the child blocks on it.
        _state.departed.clear()
        # Not at once: a child that checks its threads right after the
        # fork must see only its own.  The first blocking wait starts it.
        self._arm()

    # -- the watcher ----------------------------------------------------------
    def _run(self, watcher: _Watcher) -> None:
        watcher.ident = _native.get_ident()
        watcher.native_id = self._native_id = _native.get_native_id()
        try:
            while not watcher.stop:
                if watcher.wake.acquire(True, self.config.interval):
                    break  # stopped
                if self._anchor is not None and not self._anchor.alive:
                    break
                try:
                    self.tick()
                except Exception as exc:  # the watcher must outlive its own bugs
                    self._internal_error(exc)
                if self._idle() and self._retire(watcher):
                    return
        except BaseException:  # interpreter shutdown tearing things down
            pass
        finally:
            with contextlib.suppress(Exception), self._resume_lock:
                if self._watcher is watcher:
                    self._watcher = None
            with contextlib.suppress(Exception):
                watcher.done.release()

    def _mine(self) -> _Watcher | None:
        """The watcher the calling thread runs, if it is one."""
        me = _native.get_ident()
        return next((w for w in list(self._watchers) if w.ident == me and w.done.locked()), None)

    def _acting(self) -> bool:
        """Whether the calling thread may act on what it found: not a watcher
        stopped (by disable) or superseded since its tick began."""
        watcher = self._mine()
        return watcher is None or (watcher is self._watcher and not watcher.stop)

    def tick(self) -> None:
        # Each step first checks that this watcher is still the detector's: a
        # stopped one (its disable() may be followed by an enable()) acts on
        # nothing more.
        if not self._acting():
            return
        if _state.green():
            self.stand_down_for_green_threads()
            return
        if _state.departed:
            self._departed()
        for extension in EXTENSIONS:
            if not self._acting():
                return
            try:
                extension.tick(self)
            except Exception as exc:
                self._internal_error(exc)
        if ORDER.pending and self._acting():
            self.settle_inversions(PENDING_BOUND)
        if not self._acting():
            return
        waits = _waits()
        if not waits:
            return
        now = _native.monotonic()
        # A polling loop's timed waits (``while not lock.acquire(timeout=0.05)``)
        # are each shorter than the threshold: counted from the first.
        if not any(now - _began(w) >= self.config.threshold for w in waits):
            return
        # The same waits and the same threads as at the last analysis that
        # found nothing new: nothing new can be found (a deadlock needs a
        # thread to start waiting, or one to end), so skip the capture.
        quiet = (_quiet_key(waits), _native.thread_count())
        if quiet == self._quiet:
            return
        snap, _ = capture(waits, self._exclude())
        first = _local(analyze(snap))
        if not self._acting():
            return
        due = [f for f in first if self._due(f)]
        new = {f.key for f in due if f.key and not self._seen(f, waits)}
        if not new:
            # Unless a probable deadlock is still to come due, or who can
            # reach a signal is still to be worked out.
            if len(due) == len(first) and not snap.reach_deferred:
                self._quiet = quiet
            return
        watcher = self._mine()
        if watcher is not None:
            if watcher.wake.acquire(True, min(_CONFIRM_DELAY, self.config.interval)):
                return  # stopped
        else:
            time.sleep(min(_CONFIRM_DELAY, self.config.interval))
        self._confirm(new)

    def _confirm(
        self,
        new: set[frozenset[int]],
        probable_after: float | None = None,
        kinds: set[str] | None = None,
    ) -> None:
        """Capture again and act on the findings of ``new`` still there (of ``kinds``)."""
        waits2 = _waits(force=True)
        snap, frames = capture(waits2, self._exclude(), budget=probable_after is None)
        by_token = {id(w): w for w in waits2}
        for f in _local(analyze(snap)):
            if kinds is not None and f.kind not in kinds:
                continue
            if f.key in new and self._due(f, probable_after) and not self._seen(f, waits2):
                with self._act_lock:
                    if not self._acting():
                        return
                    if not self._seen(f, waits2):  # by another watcher meanwhile
                        self.handle(self.complete(f, frames), by_token)

    def _due(self, f: Finding, probable_after: float | None = None) -> bool:
        """A probable deadlock is reported once its threads have been stuck
        ``probable_after`` seconds: a rescue may still come meanwhile."""
        if f.kind != PROBABLE_DEADLOCK:
            return True
        after = self.config.probable_after if probable_after is None else probable_after
        blocked = [t.wait.blocked_for for t in f.threads if t.wait is not None]
        return bool(blocked) and min(blocked) >= after

    def _seen(self, f: Finding, waits: Iterable[WaitRecord | AioWait]) -> bool:
        if f.kind == PROBABLE_DEADLOCK:
            return _probable_key(f.key, waits) in self._probable_reported
        return self._reported(f.key, waits)

    def sweep(self, idents: Iterable[int]) -> list[Finding]:
        """Analyse at once what threads ``idents`` wait for (a test's threads,
        as the test ends) and act on it, probable deadlocks included; returns
        the findings handled."""
        idents = set(idents)
        waits = list(_state.blocked.copy().values())
        if not self.enabled or not any(w.rec.ident in idents for w in waits):
            return []
        # A probable finding may rest on a transient holder (a frame's
        # temporary the collector cannot see): look a few times, and take a
        # certain deadlock if one shows.
        found: list[Finding] = []
        for attempt in range(3):
            if attempt:
                time.sleep(_CONFIRM_DELAY)
            waits = list(_state.blocked.copy().values())
            snap, _ = capture(waits, self._exclude(), budget=False)
            found = [
                f
                for f in _local(analyze(snap))
                if f.key and any(t.ident in idents for t in f.threads) and self._due(f, 0.0)
            ]
            if any(f.kind == DEADLOCK for f in found):
                break
            if not found and self._frozen(waits):
                return []  # another look would see the same
        if not found:
            return []
        certain = any(f.kind == DEADLOCK for f in found)
        kinds = {DEADLOCK} if certain else None
        before = len(self.findings)
        time.sleep(_CONFIRM_DELAY)
        self._confirm({f.key for f in found}, probable_after=0.0, kinds=kinds)
        return self.findings[before:]

    def _frozen(self, waits: Iterable[object]) -> bool:
        """Whether nothing the analysis sees can change while the calling
        thread sleeps: every other live thread (the watcher's aside) is
        blocked in a tracked, untimed wait of this process, on something with
        no free unit, so none of them runs, and none can be woken but by a
        thread that runs (this one, sleeping in `sweep`).  Then a look that
        found nothing finds nothing again: the later looks of `sweep` are for
        a state that moves (a thread running, with a transient temporary that
        makes it a rescuer, or a thread about to block).  A thread notified
        but not yet scheduled is taken for blocked: if it goes on to deadlock,
        the watcher's next tick reports it."""
        me = threading.get_ident()
        skip = {me, *self._exclude()}
        blocked: dict[int, WaitRecord] = {}
        for one in waits:
            if not isinstance(one, WaitRecord):
                return False  # asyncio: a loop thread runs its tasks
            blocked[one.rec.ident] = one
        for ident in sys._current_frames():
            if ident in skip:
                continue
            w = blocked.get(ident)
            if w is None or w.timeout is not None:
                return False  # running, or in a wait that ends by itself
            obj = getattr(w.resource, "obj", w.resource)
            if type(obj).__module__.startswith("multiprocessing"):
                return False  # another process may give it
            try:
                if w.resource._dw_free() > 0:
                    return False
            except Exception:
                return False
        return True

    def _departed(self) -> None:
        """Report what threads that ended a threshold ago still hold (another
        thread had that long to release a Lock handed over to it)."""
        now = _native.monotonic()
        due = [(rec, t) for rec, t in list(_state.departed) if now - t >= self.config.threshold]
        for item in due:
            if not self._acting():
                return
            try:
                _state.departed.remove(item)
            except ValueError:
                continue  # taken by another watcher
            rec = item[0]
            snap, _ = capture_departed(rec, self._exclude())
            finding = held_at_exit(snap, id(rec))
            if finding is not None:
                finding = replace(finding, pid=os.getpid(), time=time.time())
                self.record(finding)
                self.emit(finding)

    def _analyse(self, waits: list[WaitRecord | AioWait]) -> list[Finding]:
        snap, _ = capture(waits, self._exclude())
        return _local(analyze(snap))

    def _exclude(self) -> list[int]:
        """The detector's own threads: its helpers and its watchers (a
        stopped one may still be in its last tick)."""
        # Not one that ended: its ident may be a new thread's already.
        watchers = [w.ident for w in list(self._watchers) if w.ident and w.done.locked()]
        return [*watchers, *_HELPERS]

    def _reported(self, key: frozenset[int], waits: Iterable[WaitRecord | AioWait]) -> bool:
        """Whether every wait of ``key`` is part of a finding already handled.
        A token that is no wait record's id (a polling loop's, the same for
        each of its timed waits; an import's) is looked up among those
        handled: before, it counted as handled, so a cycle of polling
        threads was never reported."""
        by_id = {id(w): w for w in waits}
        for token in key:
            w = by_id.get(token)
            if not (token in self._reported_tokens if w is None else w.reported):
                return False
        return True

    def _internal_error(self, exc: BaseException) -> None:
        # Once per kind of error and place, whatever its message says: a message
        # with an id or a count in it would otherwise be new at every tick.
        import traceback  # here: imported with threading, it costs a few ms

        frames = traceback.extract_tb(exc.__traceback__)
        key = (type(exc).__qualname__, tuple((f.filename, f.lineno, f.name) for f in frames))
        if key in self._errors_seen:
            return
        self._errors_seen.add(key)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.write_text("deadlockwatch: internal error in the watcher (it keeps running):\n" + text)

    # -- findings -------------------------------------------------------------
    @staticmethod
    def complete(finding: Finding, frames: dict[int, Any]) -> Finding:
        return replace(
            finding,
            threads=with_stacks(finding.threads, frames),
            pid=os.getpid(),
            time=time.time(),
            outside=outside_view(frames, (t.ident for t in finding.threads)),
        )

    def check(self) -> list[Finding]:
        """Analyse now (with the confirming second capture) and return every
        finding; the pending lock-order inversions are settled first."""
        self.settle_inversions()
        # Across processes: what this process's blocked threads are part of.
        shared = [
            replace(f, pid=os.getpid(), time=time.time())
            for extension in EXTENSIONS
            for f in extension.check(self)
        ]
        waits = _waits(force=True)
        if not waits:
            return shared
        first = {f.key for f in self._analyse(waits)}
        if not first:
            return shared
        snap, frames = capture(_waits(force=True), self._exclude())
        found = _local(analyze(snap))
        return [self.complete(f, frames) for f in found if f.key in first] + shared

    def handle(
        self,
        finding: Finding,
        waits: Mapping[int, WaitRecord | AioWait],
        current: WaitRecord | None = None,
        report: bool = True,
    ) -> None:
        """Record, report and act on a confirmed finding: the one action policy.

        ``current`` is the calling thread's own wait when the finding is made
        at an acquire (self-deadlock): an error meant for it is raised here.
        With ``report=False`` (a finding another process reported), only act
        on this process's threads: raise in them, or abort; the reporter
        records it and calls the callable.
        """
        if finding.kind == PROBABLE_DEADLOCK:
            if not report:
                return
            if len(self._probable_reported) > 10_000:
                self._probable_reported.clear()
            self._probable_reported.add(_probable_key(finding.key, waits.values()))
            self.record(finding)
            self.emit(finding)
            return
        # Every wait of the finding, not only the cycle's: the same threads
        # seen through another cycle later are the same deadlock.
        tokens = set(finding.key) | {t.wait.token for t in finding.threads if t.wait is not None}
        if len(self._reported_tokens) > 10_000:
            self._reported_tokens.clear()
        for token in tokens:
            w = waits.get(token)
            if w is not None:
                w.reported = True
            else:
                self._reported_tokens.add(token)
        if report:
            self.record(finding)
            self.emit(finding)
        if finding.kind != DEADLOCK:
            return
        action = self.config.on_deadlock
        if action in ("raise", "raise-all"):
            # One exception per victim: an instance raised in several threads
            # would collect all their frames in one traceback.
            victims = _victims(finding, waits, every=action == "raise-all")
            tasks: list[tuple[AioWait, BaseException]] = [
                (v, DeadlockError(finding)) for v in victims if isinstance(v, AioWait)
            ]
            threads = [v for v in victims if isinstance(v, WaitRecord)]
            _state.deliver([(v, DeadlockError(finding)) for v in threads if v is not current])
            if tasks:
                _aio.interrupt(tasks)  # one callback on each loop: see there
            if current is not None and current in threads:
                raise DeadlockError(finding)
        elif action == "abort":
            self.abort()
        elif callable(action) and report:
            _native.start_new_thread(self._call, (action, finding))

    def _call(self, action: Callable[[Finding], object], finding: Finding) -> None:
        try:
            action(finding)
        except BaseException as exc:
            import traceback

            self.write_text(
                "deadlockwatch: the on_deadlock callable raised:\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            )
        finally:
            _forget_dummy(_native.get_ident())

    @staticmethod
    def abort() -> None:
        os._exit(ABORT_EXIT_STATUS)

    def on_self_wait(self, wait: WaitRecord, ctx: bool) -> None:
        """A thread blocks on a Lock it holds: report at once when that is certain.

        It is certain when the Lock was taken in a ``with`` block: only this
        thread's ``__exit__`` releases it.  Otherwise it may be a latch that
        another thread (maybe one just started, not yet visible) will release;
        the watcher decides, by reduction, once it has been blocked a while.
        """
        if not self.enabled or not ctx:
            return
        wait.rec.wait = wait
        try:
            snap, frames = capture([wait], self._exclude())
        finally:
            wait.rec.wait = None
        for f in analyze(snap):
            if id(wait) in f.key:
                self.handle(self.complete(f, frames), {id(wait): wait}, current=wait)
                return

    def learn_order(self, held: Any, lock: Any, rec: _state.ThreadRecord) -> None:
        """A blocking acquire of ``lock`` right after ``held``, in an order not
        known yet: learn it, and report the inversion it closes, if any."""
        try:
            frame = _native.caller_frame(1)
            # The Python path's own methods (the C path has no frame): the
            # take is from the caller of the tracked lock's method.
            while frame is not None and frame.f_code.co_filename == _PRIMITIVES_FILE:
                frame = frame.f_back
            signal_call = _signals.acquiring(lock, frame)
            first = held
            if signal_call and ORDER.knows(first, lock):
                return  # learned; left unknown to the fast path (see below)
            if held_as_token(held, frame):
                # Not an order (see _order): the order is after the nearest lock
                # held in a frame still running, if there is one not known yet.
                running = (h for h in reversed(rec.held) if not held_as_token(h, frame))
                held = next((h for h in running if h is not lock), None)
                if held is None or id(lock) in held._dw_after:
                    return
            name = _state.thread_name(rec.ident, rec.name)
            finding = ORDER.learn(held, lock, list(rec.held), name, rec.ident, rec.serial)
            if signal_call and type(first._dw_after) is set:
                # A signal's lock taken by a call of its object that does not
                # wait (set(), done()...): a wait under the same lock later
                # must come here too, to be learned (`signals`).
                first._dw_after.discard(id(lock))
        except Exception as exc:
            self._internal_error(exc)
            return
        if finding is not None and self.enabled:
            self.record(finding)
            self.emit(finding)

    def _learned(self, finding: Finding) -> None:
        """A potential deadlock learned in an application thread (`signals`)."""
        if self.enabled:
            self.record(finding)
            self.emit(finding)

    def settle_inversions(self, older_than: float | None = None) -> None:
        """Report the pending lock-order inversions still through no hand-off
        Lock (`LockOrder.settle`): at the end of a test, at `check`, when
        switched off, at exit, and at a watcher tick once ``older_than``
        seconds old."""
        try:
            due = ORDER.settle(older_than)
        except Exception as exc:
            self._internal_error(exc)
            return
        for finding in due:
            self.record(finding)
            self.emit(finding)

    # -- output ---------------------------------------------------------------
    def record(self, finding: Finding) -> None:
        """Keep ``finding`` and hand it to the listeners."""
        self.findings.append(finding)
        for listener in list(self.listeners):
            try:
                listener(finding)
            except Exception as exc:
                self._internal_error(exc)

    def emit(self, finding: Finding) -> None:
        """Write the text report to stderr and the JSON line to the report file."""
        text = format_text(finding)
        path = self.config.report
        with self._emit_lock:
            if self.config.text:
                self.write_text(text)
            if path:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        _write_all(fd, to_json_line(finding).encode())
                    finally:
                        os.close(fd)
                except OSError as exc:
                    self.write_text(f"deadlockwatch: cannot write report {path}: {exc}\n")
        # A logging handler's lock may be part of the deadlock: log from a
        # thread of its own, after the report is out.
        if self.log:
            _start_helper(_log, (finding, text))

    @staticmethod
    def write_text(text: str, file: Any = None) -> None:
        """Write without any lock a deadlocked thread might hold: straight to
        the file descriptor when there is one."""
        stream = file if file is not None else sys.stderr
        if stream is None:
            return
        data = text if text.endswith("\n") else text + "\n"
        try:
            fd = stream.fileno()
        except Exception:
            fd = None
        if fd is not None and file is None:
            try:
                _write_all(fd, data.encode("utf-8", "replace"))
                return
            except OSError:
                pass
        stream.write(data)
        with contextlib.suppress(Exception):
            stream.flush()

    def dump(self, file: Any = None) -> None:
        snap, frames = capture_all(self._exclude())
        threads = with_stacks(snap.threads.values(), frames)
        waiting = (t.ident for t in snap.threads.values() if t.wait is not None)
        outside = outside_view(frames, waiting)
        text = format_dump(threads, snap.resources, outside)
        for extension in EXTENSIONS:
            remote, resources = extension.remote_snapshot()
            if not remote:
                continue
            title = f"{len(remote)} thread(s) of other processes, as they last published"
            text += "\n" + format_dump(remote, resources, title=title)
        self.write_text(text, file)


def _began(w: WaitRecord | AioWait) -> float:
    """When the wait began: for a polling loop's, its first."""
    polled = getattr(w, "polled_since", None)
    return w.since if polled is None else float(polled)


def _stamped(
    tokens: Iterable[int], waits: Iterable[WaitRecord | AioWait]
) -> frozenset[tuple[int, float]]:
    """Wait tokens with the time each wait began: a token is the wait
    record's id, which a later wait takes over once the record is freed (a
    test's two waits at the addresses of the last test's two), so tokens
    alone would take the new waits for the old ones."""
    since = {id(w): w.since for w in waits}
    return frozenset((token, since.get(token, 0.0)) for token in tokens)


def _quiet_key(waits: Iterable[WaitRecord | AioWait]) -> frozenset[tuple[int, float]]:
    """The waits as the skip of `tick` compares them: each by its token and
    start, a polling loop's (``while not t.join(0.2)``: a new record at
    each take) as one wait, by its thread, object and first take."""
    out = set()
    for w in waits:
        polled = getattr(w, "polled_since", None)
        if polled is None:
            out.add((id(w), w.since))
        else:
            out.add((hash((w.rec.ident, id(w.resource))), float(polled)))  # type: ignore[union-attr]
    return frozenset(out)


def _probable_key(
    key: frozenset[int], waits: Iterable[WaitRecord | AioWait]
) -> frozenset[tuple[int, float]]:
    """How a probable deadlock reported is remembered: by its waits."""
    return _stamped(key, waits)


def _waits(force: bool = False) -> list[WaitRecord | AioWait]:
    """The waits in progress: threads' and, once asyncio is tracked, tasks'
    (`_watch.tasks`; ``force``: scan the loops' tasks now)."""
    waits: list[WaitRecord | AioWait] = list(_state.blocked.copy().values())
    if _aio.active and (_aio.waiting or _aio.loops or _aio.held):
        from deadlockwatch._watch import tasks as _tasks  # only once asyncio runs

        waits.extend(_tasks.collect(force=force))
    return waits


def _interruptible(w: WaitRecord | AioWait | None) -> bool:
    """A thread's wait, or a task's in a tracked asyncio primitive (not a task
    awaiting a task or an executor's job: it wakes when that one ends)."""
    return isinstance(w, WaitRecord) or (isinstance(w, AioWait) and w.op in _aio.INTERRUPTIBLE)


def _victims(
    finding: Finding, waits: Mapping[int, WaitRecord | AioWait], every: bool
) -> list[WaitRecord | AioWait]:
    """Who gets DeadlockError: every stuck thread (and task) of the finding, or
    only the one that closed the cycle (its most recent wait)."""
    ok = [
        t for t in finding.threads if t.wait is not None and _interruptible(waits.get(t.wait.token))
    ]
    if not every:
        keys = [s.thread for s in finding.cycle] or [t.key for t in finding.threads]
        # The thread that closed the cycle, among those whose unwinding frees
        # something: in a cycle through a signal, the one that would give it
        # may hold nothing, and raising in it would break nothing.
        ok = [t for t in ok if t.key in keys]
        ok.sort(key=lambda t: (not t.held, t.wait.blocked_for if t.wait else 0.0))
        ok = ok[:1]
    found = [waits.get(t.wait.token) for t in ok if t.wait is not None]
    return [w for w in found if w is not None]


def _log(finding: Finding, text: str) -> None:
    """Send the finding to the ``deadlockwatch`` logger (ERROR for a deadlock,
    WARNING otherwise), if the application configured logging at all."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    try:
        logger = logging.getLogger("deadlockwatch")
        if logger.hasHandlers():
            level = logging.ERROR if finding.kind == DEADLOCK else logging.WARNING
            logger.log(level, "%s", text.rstrip("\n"), extra={"deadlockwatch_finding": finding})
    except Exception:
        pass


DETECTOR = _Detector()


def _at_fork_child() -> None:
    DETECTOR.after_fork_in_child()


def _before_fork() -> None:
    DETECTOR.before_fork()


def _at_fork_parent() -> None:
    DETECTOR.after_fork_in_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_at_fork_parent, after_in_child=_at_fork_child
    )
