"""Per-thread bookkeeping shared by the tracked primitives and the watcher.

The hot path only ever touches the calling thread's own record (found through
a C-level thread-local) and the primitive itself: no global lock, no graph.
A thread that is about to block registers one `WaitRecord` in `blocked`, the
only global structure it writes, and removes it when the wait ends; that dict
is all the watcher reads when nothing is blocked.
"""

from __future__ import annotations

import _thread
import functools
import itertools
import linecache
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, Protocol

from deadlockwatch._model import Frame, Site
from deadlockwatch._track import native as _native

#: Source files whose frames are never named as a creation or acquisition
#: site: threading's own, and deadlockwatch's modules that stand between the
#: application and the raw lock (each adds itself with `internal_file`).
INTERNAL_FILES: set[str] = {threading.__file__, os.path.abspath(threading.__file__)}


def internal_file(path: str) -> None:
    INTERNAL_FILES.add(path)
    INTERNAL_FILES.add(os.path.abspath(path))


internal_file(__file__)

#: How long a tracked blocking wait sleeps before it looks for a pending
#: interruption (``on_deadlock="raise"``); a wait is woken at once when the
#: resource comes free, so this only bounds how quickly a victim reacts.
WAIT_SLICE = 0.05


_serials = itertools.count(1)
_serial_lock = _native.allocate_lock()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held it at the fork; it is gone in
    # the child, which would wait for it forever.
    global _serial_lock
    _serial_lock = _native.allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def next_serial() -> int:
    """A new serial, as a thread record's (an asyncio task's in lock orders)."""
    with _serial_lock:
        return next(_serials)


class ThreadRecord:
    """What one thread holds (in acquisition order) and what it waits for."""

    __slots__ = (
        "__weakref__",
        "_gone",
        "alive",
        "daemon",
        "died",
        "ends_known",
        "held",
        "ident",
        "lost_at_fork",
        "name",
        "pid",
        "poll",
        "probe",
        "serial",
        "wait",
    )

    def __init__(self, ident: int, name: str, daemon: bool = True) -> None:
        self.serial = next_serial()
        self.ident = ident
        #: The thread's name and daemon flag when the record was made, for
        #: reports about it once it has exited (live threads are looked up).
        self.name = name
        self.daemon = daemon
        self.held: list[Any] = []
        self.wait: WaitRecord | None = None
        self.alive = True
        self.probe: Any = None
        self._gone: Any = None
        self.pid = os.getpid()
        #: In a forked child: this thread was the parent's, gone at the fork.
        self.lost_at_fork = False
        #: A threading.Thread started while enabled: an uncaught exception
        #: sets ``died`` (`watch_thread_ends`), so an end without one is known.
        self.ends_known = False
        #: The code objects its uncaught exception unwound, if it died of one.
        self.died: frozenset[CodeType] | None = None
        #: Its last timed wait that timed out: (what, where, polling since,
        #: when it timed out), to tell a thread polling in a loop.
        self.poll: tuple[int, Any, float, float] | None = None

    def __repr__(self) -> str:
        return f"<ThreadRecord {self.name!r} ident={self.ident}>"


class WaitRecord:
    """One blocking wait, from just before the thread blocks until it returns.

    Its identity is the wait's token: a thread continuously blocked in one
    wait shows the same record in every snapshot taken meanwhile.
    """

    __slots__ = (
        "gate",
        "interrupt",
        "polled_since",
        "rec",
        "reported",
        "resource",
        "self_wait",
        "since",
        "site",
        "timeout",
        "waiter",
    )

    def __init__(
        self, rec: ThreadRecord, resource: Any, timeout: float | None, site: Site | None
    ) -> None:
        self.rec = rec
        self.resource = resource
        self.timeout = timeout
        self.site = site
        self.since = _native.monotonic()
        self.interrupt: BaseException | None = None
        #: ``gate[0]`` says whether ``interrupt`` may be raised yet (see `deliver`).
        self.gate = _OPEN
        self.reported = False
        self.self_wait = False
        #: A timed wait that repeats, back to back, the same wait that just
        #: timed out (``while t.is_alive(): t.join(0.1)``): since when the
        #: thread has been polling (`wait_until`); None otherwise.
        self.polled_since: float | None = None
        #: A Condition wait's own waiter lock, released by ``notify``.
        self.waiter: Any = None

    def woken(self) -> bool:
        """Notified, and about to run: a Condition wait whose waiter lock
        ``notify`` has released, though the thread has not left the wait yet
        (it waits for the GIL).  Not stuck, whatever else it waits for."""
        waiter = self.waiter
        return waiter is not None and not waiter.locked()


#: A timed wait made again within this many seconds of the same one timing
#: out, on the same object at the same place, continues a polling loop.
POLL_GAP = 0.05

_OPEN = [True]


def deliver(errors: list[tuple[WaitRecord, BaseException]]) -> None:
    """Give each wait its error, all at once.

    No victim raises before every victim has its error: one that unwound
    first could free what another waits for, and that one's wait would then
    end normally before its own error was set (a ``join`` of the thread that
    unwound, a lock that thread held).  An error that arrives as the wait
    succeeds still wins (`wait_until`), so every victim raises.
    """
    gate = [False]
    for wait, error in errors:
        wait.gate = gate
        wait.interrupt = error
    gate[0] = True


#: Every thread that has used a tracked primitive, by ident.
records: dict[int, ThreadRecord] = {}
#: Threads that ended while holding something, with when: the watcher
#: reports what they left held (``held-at-exit``).
departed: list[tuple[ThreadRecord, float]] = []
#: The waits in progress, by thread record.
blocked: dict[ThreadRecord, WaitRecord] = {}

tls = _native.ThreadLocal()

#: Set while enabled and no watcher thread runs (see `_detector`): the next
#: blocking wait, or the next slice of one, starts one.
resume_watcher: Callable[[], None] | None = None


class _Guard:
    """Lives in a thread's locals only, so it dies when the thread ends."""

    __slots__ = ("__weakref__",)


#: Set by `_primitives` when the C hot path is in use: called in an exiting
#: thread whose record is gone, so the C side forgets it too.
forget_current: Callable[[], object] | None = None


def _thread_gone(rec: ThreadRecord, _ref: object) -> None:
    # Runs while the thread's state is torn down, possibly at interpreter
    # shutdown when module globals are already gone: never raise.
    try:
        rec.alive = False
        if forget_current is not None and rec.ident == _native.get_ident():
            forget_current()
        if records.get(rec.ident) is rec:
            del records[rec.ident]
        if rec.pid != os.getpid():
            # Cleared in a forked child: a thread of the parent.
            rec.lost_at_fork = True
        elif rec.held and not rec.lost_at_fork:
            departed.append((rec, _native.monotonic()))
            # The watcher reports it a threshold from now: it must be running.
            wake = resume_watcher
            if wake is not None:
                wake()
    except Exception:
        pass


def _thread_object(ident: int) -> threading.Thread | None:
    # A thread's first tracked acquire can come before threading lists it in
    # _active: Thread._bootstrap_inner sets its _started Event first, while
    # the thread is still in _limbo.  _limbo is looked at first: _active may
    # still hold a stale _DummyThread under the same ident (a finished thread
    # not started by threading that called current_thread(); idents are reused).
    try:
        starting = list(threading._limbo)  # type: ignore[attr-defined]
    except RuntimeError:  # changed meanwhile (free-threaded builds)
        starting = []
    for t in starting:
        if getattr(t, "_ident", None) == ident:
            return t  # type: ignore[no-any-return]
    thread: threading.Thread | None = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread


_ORIGINAL_MAKE_INVOKE: Any = getattr(threading, "_make_invoke_excepthook", None)


def _make_invoke_excepthook() -> Any:
    """threading's, for a Thread made while enabled: its ``_invoke_excepthook``,
    called in the thread when ``run`` raised, first notes what the exception
    unwound in the thread's record."""
    invoke = _ORIGINAL_MAKE_INVOKE()

    def invoke_excepthook(thread: Any) -> Any:
        try:
            rec: ThreadRecord | None = tls.rec
        except AttributeError:
            rec = None
        if rec is not None:
            codes = set()
            tb = sys.exc_info()[2]
            while tb is not None:
                codes.add(tb.tb_frame.f_code)
                tb = tb.tb_next
            rec.died = frozenset(codes)
        return invoke(thread)

    invoke_excepthook._dw_ends_known = True  # type: ignore[attr-defined]
    return invoke_excepthook


def watch_thread_ends(on: bool) -> None:
    """Install (or take back, if still ours) `_make_invoke_excepthook`."""
    if _ORIGINAL_MAKE_INVOKE is None:
        return
    current = getattr(threading, "_make_invoke_excepthook", None)
    if on and current is _ORIGINAL_MAKE_INVOKE:
        threading._make_invoke_excepthook = _make_invoke_excepthook  # type: ignore[attr-defined]
    elif not on and current is _make_invoke_excepthook:
        threading._make_invoke_excepthook = _ORIGINAL_MAKE_INVOKE  # type: ignore[attr-defined]


def returned_holding(rec: ThreadRecord, site: tuple[CodeType, int] | None) -> bool:
    """True if ``rec``'s thread has ended and the user function that took a lock
    at ``site`` had returned normally, leaving it held: the lock was handed over
    on purpose (a plain Lock may be released by any thread).  False when the
    thread is alive, died of an exception that unwound that function, or its end
    or the function is not known."""
    if rec.alive or not rec.ends_known or site is None:
        return False
    code = site[0]
    if code.co_filename in INTERNAL_FILES:
        return False
    died = rec.died
    return died is None or code not in died


def new_record() -> ThreadRecord:
    """Create the calling thread's record (once per thread)."""
    ident = _native.get_ident()
    thread = _thread_object(ident)
    if thread is not None:
        rec = ThreadRecord(ident, thread.name, thread.daemon)
        invoke = getattr(thread, "_invoke_excepthook", None)
        rec.ends_known = bool(getattr(invoke, "_dw_ends_known", False))
    else:
        rec = ThreadRecord(ident, f"thread-{ident}")
    guard = _Guard()
    rec._gone = weakref.ref(guard, functools.partial(_thread_gone, rec))
    tls.guard = guard
    tls.rec = rec
    records[ident] = rec
    return rec


def current_record() -> ThreadRecord:
    try:
        rec: ThreadRecord = tls.rec
    except AttributeError:
        rec = new_record()
    return rec


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The nearest frame, from ``frame`` outwards, that is not threading's or ours."""
    while frame is not None and frame.f_code.co_filename in INTERNAL_FILES:
        frame = frame.f_back
    return frame


#: Where the hot path says a primitive was taken: the code object and the
#: instruction offset (``f_lasti``), which cost nothing to read.  It is the
#: only other shape a site has: everything past the hot path (records,
#: views, the watcher, reports) holds a `Site`, made from it by `site_at`.
#: It stays raw for cost (issue 12): a `Site` at every take would look the
#: line up and make an object on the uncontended acquire, which stores two
#: references instead (the C core too); only holds the watcher sees, and
#: creation and wait sites (made once per object or blocked wait), become
#: `Site`s.
RawSite = tuple[CodeType, int]

#: (id(code), instruction offset) -> (code, its Site): the line of an offset
#: is looked up once (most primitives are made and taken at a few places,
#: over and over: a Future's Condition).  The entry holds the code object, so
#: its id is not reused while cached.
_SITES: dict[tuple[int, int], tuple[CodeType, Site]] = {}
_SITES_MAX = 4096


def site_at(raw: RawSite | None) -> Site | None:
    """The `Site` of a raw site: the one place where a site gets its line."""
    if raw is None:
        return None
    code, lasti = raw
    key = (id(code), lasti)
    hit = _SITES.get(key)
    if hit is not None and hit[0] is code:
        return hit[1]
    line = 0
    for start, end, number in code.co_lines():
        if start <= lasti < end:
            line = number or 0
            break
    site = Site(code.co_filename, line, code.co_name)
    if len(_SITES) >= _SITES_MAX:
        _SITES.clear()
    _SITES[key] = (code, site)
    return site


def raw_site_of(frame: FrameType | None) -> RawSite | None:
    """The raw site of the nearest frame, from ``frame`` outwards, that is not
    threading's or ours."""
    frame = user_frame(frame)
    if frame is None:
        return None
    return frame.f_code, frame.f_lasti


def frame_site(frame: FrameType | None) -> Site | None:
    return site_at(raw_site_of(frame))


def creation_site() -> Site | None:
    """Where the primitive being constructed was asked for (cheap: a few frames)."""
    return frame_site(_native.caller_frame(2))


#: Called when a tracked wait finds green threads (see `green`); set by the
#: detector while enabled: it switches itself off, with one warning line.
on_green: Callable[[], object] | None = None


def green() -> bool:
    """True once eventlet or gevent has monkey-patched ``_thread``.  Their green
    threads share one OS thread (and, for us, one record) and switch only when
    one waits the green way: a wait on a raw OS lock would block every green
    thread of its OS thread, the one that would release it included."""
    return _thread.allocate_lock is not _native.allocate_lock


def green_wait(attempt: Callable[[float], bool], timeout: float | None) -> bool:
    """``attempt`` (never blocking) until it succeeds or ``timeout`` passes,
    sleeping between tries with the patched ``time.sleep``, which lets the
    other green threads run; untracked."""
    deadline = None if timeout is None else _native.monotonic() + timeout
    pause = 0.0005
    while True:
        if attempt(0.0):
            return True
        if deadline is not None:
            left = deadline - _native.monotonic()
            if left <= 0:
                return False
            pause = min(pause, left)
        time.sleep(pause)
        pause = min(pause * 2, WAIT_SLICE)


def wait_until(
    wait: WaitRecord,
    attempt: Callable[[float], bool],
    timeout: float | None,
    undo: Callable[[], object],
) -> bool:
    """Block in ``attempt`` (which waits at most its argument, in seconds) until it
    succeeds or ``timeout`` passes, registering ``wait`` meanwhile.

    The wait is sliced so that the detector can interrupt it: a pending
    ``wait.interrupt`` is raised in this thread between slices.  One that
    arrives as the attempt succeeds (another victim of the same deadlock let
    go first) still wins: ``undo`` gives back what was just acquired.

    Under green threads (`green`) nothing is registered: the detector stands
    down and the wait is made the green way.
    """
    if green():
        hook = on_green
        if hook is not None:
            hook()
        return green_wait(attempt, timeout)
    rec = wait.rec
    poll = rec.poll
    what = _what(wait)
    if (
        poll is not None
        and timeout is not None
        and poll[0] == what
        and poll[1] == wait.site
        and wait.since - poll[3] <= POLL_GAP
    ):
        wait.polled_since = poll[2]
    rec.wait = wait
    blocked[rec] = wait
    timed_out = False
    try:
        deadline = None if timeout is None else wait.since + timeout
        while True:
            if resume_watcher is not None:
                resume_watcher()
            remaining = WAIT_SLICE if deadline is None else deadline - _native.monotonic()
            got = attempt(min(WAIT_SLICE, max(remaining, 0.0)))
            error = wait.interrupt
            if error is not None and wait.gate[0]:
                if got:
                    undo()
                raise error
            if got:
                return True
            if deadline is not None and remaining <= WAIT_SLICE:
                timed_out = True
                return False
    finally:
        rec.wait = None
        blocked.pop(rec, None)
        if timed_out:
            since = wait.since if wait.polled_since is None else wait.polled_since
            rec.poll = (what, wait.site, since, _native.monotonic())
        else:
            rec.poll = None


def wait_lock(wait: WaitRecord, waiter: Any, timeout: float | None) -> bool:
    """`wait_until` for a raw lock another thread releases (a Condition
    wait's own waiter lock, which ``notify`` releases), with nothing to give
    back: the same steps, written out for every blocking Condition wait
    (each turn of a ping-pong), and what the wait is (``wait.resource``,
    ``wait.site``) read only where a polling loop needs it."""
    acquire = waiter.acquire
    if _thread.allocate_lock is not _native.allocate_lock:  # green(), written out
        hook = on_green
        if hook is not None:
            hook()
        return green_wait(lambda s: bool(acquire(True, s)), timeout)
    rec = wait.rec
    poll = rec.poll
    if (
        poll is not None
        and timeout is not None
        and wait.since - poll[3] <= POLL_GAP
        and poll[0] == _what(wait)
        and poll[1] == wait.site
    ):
        wait.polled_since = poll[2]
    rec.wait = wait
    blocked[rec] = wait
    timed_out = False
    try:
        if timeout is None:
            while True:
                if resume_watcher is not None:
                    resume_watcher()
                got = acquire(True, WAIT_SLICE)
                error = wait.interrupt
                if error is not None and wait.gate[0]:
                    raise error
                if got:
                    return True
        deadline = wait.since + timeout
        while True:
            if resume_watcher is not None:
                resume_watcher()
            remaining = deadline - _native.monotonic()
            # min(WAIT_SLICE, max(remaining, 0.0)), without the builtins'
            # argument parsing (about 700 instructions a wait)
            got = acquire(
                True, WAIT_SLICE if remaining > WAIT_SLICE else remaining if remaining > 0 else 0.0
            )
            error = wait.interrupt
            if error is not None and wait.gate[0]:
                raise error
            if got:
                return True
            if remaining <= WAIT_SLICE:
                timed_out = True
                return False
    finally:
        rec.wait = None
        blocked.pop(rec, None)
        if timed_out:
            since = wait.since if wait.polled_since is None else wait.polled_since
            rec.poll = (_what(wait), wait.site, since, _native.monotonic())
        else:
            rec.poll = None


def poll_start(wait: WaitRecord) -> None:
    """`wait_lock`'s first step for a timed wait whose thread has a polling
    loop on record (``rec.poll``): whether this wait continues it (the C
    core's wait calls it then, `_speedups.wait_fast`)."""
    poll = wait.rec.poll
    if (
        poll is not None
        and wait.timeout is not None
        and wait.since - poll[3] <= POLL_GAP
        and poll[0] == _what(wait)
        and poll[1] == wait.site
    ):
        wait.polled_since = poll[2]


def poll_end(wait: WaitRecord) -> None:
    """`wait_lock`'s last step for a wait that timed out (see `poll_start`)."""
    since = wait.since if wait.polled_since is None else wait.polled_since
    wait.rec.poll = (_what(wait), wait.site, since, _native.monotonic())


def _what(wait: WaitRecord) -> int:
    """What a wait is on, as a polling loop compares it."""
    resource = wait.resource
    return id(getattr(resource, "obj", resource))


def remove_held(rec: ThreadRecord, resource: object, count: int = 1) -> None:
    """Remove ``count`` entries of ``resource`` from ``rec.held``.

    ``list.remove`` is a single atomic operation, so this is safe even when the
    caller is not ``rec``'s thread (a Lock released by another thread).
    """
    held = rec.held
    for _ in range(count):
        try:
            held.remove(resource)
        except ValueError:
            return


def thread_name(ident: int, fallback: str) -> str:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread.name if thread is not None else fallback


def thread_daemon(ident: int, fallback: bool = True) -> bool:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return bool(thread.daemon) if thread is not None else fallback


#: How many frames of a thread's stack a report keeps (innermost first).
MAX_STACK = 64


#: A stack as the hot path keeps it: (code, offset of its last instruction)
#: per frame, outermost first, resolved to `Frame`s (with their line numbers
#: and source lines) only when someone reads it: a frame's ``f_lineno`` decodes
#: the code's line table, which made up more than half of the walk (about 40
#: of 60 us for a stack of 60 frames, 3.11; pykka's suite learns 1,000 orders).
RawStack = tuple[tuple[CodeType, int], ...]


def raw_stack_of(frame: FrameType | None) -> RawStack:
    """`stack_of` without its lines: what lock order keeps for every order it
    learns (a report reads a few of them, `frames_of`)."""
    return raw_stack_and_line(frame)[0]


def raw_stack_and_line(frame: FrameType | None) -> tuple[RawStack, int]:
    """`raw_stack_of`, and the line of its innermost frame (0 if empty)."""
    out: list[tuple[CodeType, int]] = []
    f = frame
    while f is not None and len(out) < MAX_STACK:
        out.append((f.f_code, f.f_lasti))
        f = f.f_back
    skip = 0  # deadlockwatch's own frames on top (innermost, first here)
    while skip < len(out) and out[skip][0].co_filename in INTERNAL_FILES:
        skip += 1
    if skip == len(out):
        return (), 0
    f = frame
    for _ in range(skip):
        f = f.f_back  # type: ignore[union-attr]
    line = f.f_lineno if f is not None else 0
    return tuple(reversed(out[skip:])), line or 0


def line_at(code: CodeType, offset: int) -> int:
    """The line of the instruction at ``offset`` of ``code`` (what a frame
    stopped there gives as ``f_lineno``), 0 when it has none."""
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line or 0
    return 0


def code_frame(code: CodeType, line: int) -> Frame:
    """The `Frame` of ``code`` at ``line``, with its source line."""
    return Frame(
        code.co_filename, line, code.co_name, linecache.getline(code.co_filename, line).strip()
    )


def frames_of(raw: RawStack) -> tuple[Frame, ...]:
    """The `Frame`s of a raw stack, with their lines and source lines."""
    return tuple(code_frame(code, line_at(code, offset)) for code, offset in raw)


def stack_of(frame: FrameType | None) -> tuple[Frame, ...]:
    """A thread's stack, outermost first, without deadlockwatch's own frames on
    top (read at once: each frame's ``f_lineno``, not `line_at`)."""
    out: list[tuple[CodeType, int]] = []
    f = frame
    while f is not None and len(out) < MAX_STACK:
        out.append((f.f_code, f.f_lineno or 0))
        f = f.f_back
    skip = 0
    while skip < len(out) and out[skip][0].co_filename in INTERNAL_FILES:
        skip += 1
    return tuple(
        Frame(
            code.co_filename,
            line,
            code.co_name,
            linecache.getline(code.co_filename, line).strip(),
        )
        for code, line in reversed(out[skip:])
    )


#: Who holds a tracked primitive, as `Tracked._dw_holders` says.
Holder = tuple[ThreadRecord | int, int, Site | None]


class Tracked(Protocol):
    """What the watcher reads from a tracked primitive (Lock, RLock,
    Semaphore, a multiprocessing SemLock) or from a view of a wait (a
    Condition, Event, queue, Barrier, future, join: `_track.views.View`).

    Required:

    - ``_dw_type``: the type's name in reports (``"Lock"``, ``"Event"``...);
    - ``_dw_holders()``: (thread record, or the ident of a thread of another
      process or one not seen yet, units held, site of the take: `Holder`);
    - ``_dw_free()``: units free now (0 for a held Lock);
    - ``_dw_owner_bound()``: only a holder can give it back (RLock, a Lock
      taken in a ``with`` block); a free-for-all Lock is not.

    Optional, read with ``getattr`` and a default: ``_dw_kind`` (lock or
    signal), ``_dw_verb`` (what a rescuer would do: "release", "set"...),
    ``_dw_detail()``, ``_dw_title()``, ``_dw_group()`` and ``_dw_parts()`` (the
    report's wording and the objects a wait is made of), ``_dw_id`` (identity
    across processes), ``_dw_created`` (creation site), ``_dw_sites`` and
    ``_dw_units`` (raw take sites, per-thread units of a semaphore),
    ``_dw_signal`` (a semaphore used as a signal), ``_dw_after`` (the lock
    order's known successors).
    """

    _dw_type: str

    def _dw_holders(self) -> list[Holder]: ...

    def _dw_free(self) -> int: ...

    def _dw_owner_bound(self) -> bool: ...
