"""The tracked primitives: drop-in replacements for threading's locks.

Each one wraps the untracked original and behaves exactly like it (same
return values, argument checks, errors and messages); it only adds
bookkeeping.  The uncontended path of Lock and RLock is written out inline:
one non-blocking attempt on the raw lock, one append to the calling thread's
held list, three attribute stores.  Only an acquire that would block goes to
the slow path, which registers a wait the watcher can see.

That uncontended path (and ``__init__``) also exists in C, in the optional
``_speedups`` module: ``TrackedLock``/``TrackedRLock`` put its ``LockCore``/
``RLockCore`` first where it is built, and the same path in Python
(``_PyLockCore``/``_PyRLockCore``) otherwise, or with ``DEADLOCKWATCH_PURE=1``.
The C methods hand everything else to the ``_py_*`` methods below, so there
is one behaviour; ``PURE_LOCK``/``PURE_RLOCK`` are the Python variants, for
checking one against the other.

Ownership: an RLock and a semaphore unit belong to the thread that took them.
A Lock may legally be released by any thread; when that is seen, the Lock is
marked as handed off and is never again treated as owned by its acquirer.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from types import CodeType
from typing import TYPE_CHECKING, Any, SupportsIndex

from deadlockwatch._config import PURE_VAR, parse_bool
from deadlockwatch._model import Site
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.state import (
    INTERNAL_FILES,
    RawSite,
    ThreadRecord,
    WaitRecord,
    creation_site,
    current_record,
    internal_file,
    raw_site_of,
    remove_held,
    site_at,
    tls,
    user_frame,
    wait_until,
)

internal_file(__file__)

_getframe = _native.getframe
_caller_frame = _native.caller_frame
_allocate_lock = _native.allocate_lock
_RawRLock = _native.RawRLock
_OrigSemaphore: Any = _native.ORIGINAL_SEMAPHORE
_OrigBoundedSemaphore: Any = _native.ORIGINAL_BOUNDED_SEMAPHORE
_RawCondition: Any = _native.RawCondition

#: ``learn_order(held_lock, lock, rec)``: called on a blocking acquire of
#: ``lock`` whose order after ``held_lock`` is not yet known (set by the
#: detector while lock-order detection is on; None otherwise).
learn_order: Callable[[Any, Any, ThreadRecord], None] | None = None
#: ``on_probe(lock)``: the calling thread, holding ``lock``, probed it
#: (``Condition.notify``'s ``_is_owned``) while holding other locks too, or
#: ``lock._dw_watched`` is set (set by the detector with `learn_order`).
on_probe: Callable[[Any], None] | None = None
#: ``on_semaphore(sem, waits, depth=2)``: an untimed blocking ``acquire()``
#: (``waits``) or a ``release()`` of a Semaphore used as a signal (set with
#: `on_probe`); ``depth``: frames out of the hook to that call's caller.
on_semaphore: Callable[..., None] | None = None
#: Creation sites of Locks seen handed over: released by a thread other than
#: their taker, or by a later call than the one that took them, left held
#: across its return (`_released_later`): the code there makes hand-off
#: Locks (lockdep's lock class), so a cycle through any Lock made there is
#: ignored (see `_order`), however early.
HANDOFF_SITES: set[Site] = set()
#: A Python-path Lock's take: (code or None, lasti, taker, signalled, ctx)
#: (see `_PyLockCore`).
_Take = tuple[Any, ...]
#: The take of a Lock never taken, or taken with no Python frame to name
#: (by ``acquire``, by ``__enter__``).
_NO_TAKE: _Take = (None, 0, 0, False, False)
_NO_TAKE_CTX: _Take = (None, 0, 0, False, True)
#: What a lock with no learned order has as its known successors.
_NO_ORDERS: frozenset[int] = frozenset()


class _AllOrders:
    """Known successors of a primitive outside the lock order: everything."""

    def __contains__(self, item: object) -> bool:
        return True


#: Called (in the acquiring thread) when a thread blocks on a Lock it holds
#: itself; set by the detector while enabled.
SelfWaitHook = Callable[[WaitRecord, bool], None]
self_wait_hook: list[SelfWaitHook] = []


_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def held_as_token(lock: Any, frame: Any) -> bool:
    """True if ``lock`` is a plain Lock held past the return of the call that
    took it: no frame from ``frame`` outwards is that call.

    The Lock notes the taking call by the address of its frame (``_dw_taker``,
    ``id()``) and by the site (code, offset) it was taken at; it keeps no
    reference to the frame, so a Lock left held does not keep the returned
    call's locals alive (CPython's test_threading checks exactly that).  A frame
    found at that address is that call while it runs; once it has returned, a
    later call of the same function may get the same address.  Execution of a
    call only moves forward past its acquire, so a frame of the same code at
    that address that is now at an earlier offset than the acquire is a later
    call (readerwriterlock's writer: the next ``acquire()`` takes its count
    lock before the token it left held).  At the same or a later offset it is
    taken for the same call, so a later call that gets the same address and
    passes the same place is ordered as lockdep orders everything; a call that
    loops back above the acquire while holding is taken for a later one (an
    order missed, never a false one).  Where the taking frame is not known,
    the acquisition site's code stands for it.  Unknown sites, RLocks
    (owner-bound), semaphores and locks taken in generators or coroutines are
    never tokens."""
    if getattr(lock, "_dw_type", None) != "Lock":
        return False
    site = getattr(lock, "_site", None)
    if site is None:
        return False
    code, offset = site
    if code.co_flags & _SUSPENDABLE:
        return False
    taker = getattr(lock, "_dw_taker", 0)
    while frame is not None:
        if frame.f_code is code:
            if not taker:
                return False
            if id(frame) == taker:
                return bool(frame.f_lasti < offset)
        frame = frame.f_back
    return True


def _released_later(lock: Any, held: list[Any]) -> None:
    """``lock``, taken by a bare ``acquire()``, is released by the thread that
    took it, not as the newest entry of its held list.  If the lock that was
    the newest when ``lock`` was taken (its ``guard``, ``_dw_guard``; the
    order guard -> lock was learned then) is now held *above* it, the guard
    was let go and taken again while ``lock`` stayed held; if the call that
    took ``lock`` has returned too (a later call releases it), this is a
    group lock taken and released under a count's lock, by whichever call
    the count picks: the first in takes it, the last out releases it
    (readerwriterlock: a writer's ``acquire()`` takes ``read_try`` under the
    write-count lock and returns holding it; ``release()`` takes the count
    lock again and releases ``read_try`` under it).  Such a Lock is handed
    over as surely as one released by another thread: it and the Locks of
    its creation site (lockdep's lock class) join `HANDOFF_SITES`.

    A mutex behind ``__enter__``/``__exit__`` is released as the newest
    entry and never gets here; node locks released hand over hand are
    released under the next node's lock, which they were not taken under
    (its guard is whatever was held before): both stay ordered.  The guard
    is compared by address only (never dereferenced): a lock made at the
    freed address of the old guard, held above, that also orders before
    ``lock`` would count as the guard, which loses an order, never adds
    one."""
    guard = lock._dw_guard
    if not guard:
        return
    try:
        index = held.index(lock)
    except ValueError:
        return
    key = id(lock)
    if not any(
        id(above) == guard
        and getattr(above, "_dw_type", None) in _MUTEX_TYPES
        and key in getattr(above, "_dw_after", _NO_ORDERS)
        for above in held[index + 1 :]
    ):
        return
    try:
        frame = _getframe(2)  # release()'s caller (this, then _py_release)
    except ValueError:
        return
    if not held_as_token(lock, frame):
        return
    created = lock._created
    if created is not None:
        HANDOFF_SITES.add(created)


#: What can guard a count: a lock that excludes every other thread.
_MUTEX_TYPES = ("Lock", "RLock")


def _caller_site(depth: int) -> RawSite | None:
    return raw_site_of(_caller_frame(depth + 1))


def _teach(lock: Any, rec: ThreadRecord) -> None:
    """A blocking acquire of ``lock`` while ``rec`` holds another lock teaches
    the order between them (a non-blocking one cannot deadlock: it teaches
    none)."""
    held = rec.held
    if held and learn_order is not None:
        last = held[-1]
        if last is not lock and id(lock) not in last._dw_after:
            learn_order(last, lock, rec)


def _probed(lock: Any) -> None:
    """The Python path of the C core's ``probed``: the calling thread, which
    may hold ``lock``, probed it (as ``Condition.notify`` does)."""
    try:
        rec = tls.rec
    except AttributeError:
        return
    if lock._owner is not rec:
        return
    if lock._dw_type == "Lock":
        lock._dw_signalled = True
    hook = on_probe
    if hook is not None and (len(rec.held) > 1 or lock._dw_watched):
        hook(lock)


def _validate_lock_args(rec: ThreadRecord, blocking: Any, timeout: Any) -> None:
    """Raise exactly what the raw lock raises for these arguments, if anything."""
    probe = rec.probe
    if probe is None:
        probe = rec.probe = _allocate_lock()
    if probe.acquire(blocking, timeout):
        probe.release()


def _plain_rlock_state(state: Any) -> bool:
    """``state`` is what ``_release_save`` returns, ``(count, owner)``, which the
    raw RLock's ``_acquire_restore`` takes without complaint (so no probe)."""
    return (
        type(state) is tuple
        and len(state) == 2
        and type(state[0]) is int
        and type(state[1]) is int
        and 1 <= state[0] < 1 << 62
        and 0 <= state[1] < 1 << 63
    )


def _timeout_or_none(timeout: float) -> float | None:
    return None if timeout == -1 else timeout


def _held_text(rec: ThreadRecord | None, site: RawSite | None) -> str:
    if rec is None:
        return ""
    at = site_at(site)
    return f"; held{_holder_text(rec)}" + (f" since {at}" if at else "")


def _created_text(site: Site | None) -> str:
    return f"; created at {site}" if site is not None else ""


def _holder_text(rec: ThreadRecord | None) -> str:
    if rec is None:
        return ""
    return f" by {_state.thread_name(rec.ident, rec.name)!r} (ident {rec.ident})"


class _LockMethods:
    """A tracked ``threading.Lock``'s behaviour, in Python.

    The hot path is ``_py_acquire``/``_py_enter``/``_py_release``; the C
    ``_speedups.LockCore`` does the same thing and hands these methods
    whatever it does not handle itself (see ``_LockCore`` below).
    """

    if not TYPE_CHECKING:
        __slots__ = ()
    _raw: Any
    _acq: Any
    _dw_after: frozenset[int] | set[int]
    _owner: ThreadRecord | None
    _dw_taker: int
    _dw_guard: int
    _dw_prev: tuple[int, RawSite | None, bool] | None
    _dw_signalled: bool
    _dw_watched: bool
    _site: RawSite | None
    _handoff: bool
    _ctx: bool
    _created: Site | None

    def __init__(self) -> None:
        raw = _allocate_lock()
        self._raw = raw
        self._acq = raw.acquire
        self._dw_after = _NO_ORDERS
        self._owner = None
        self._site = None
        self._dw_taker = 0
        self._dw_guard = 0
        self._dw_prev = None
        self._dw_signalled = False
        self._dw_watched = False
        self._handoff = False
        self._ctx = False
        self._created = creation_site()

    # -- hot path ---------------------------------------------------------
    # The bookkeeping of an uncontended take, right after the raw lock was
    # taken: the order it teaches (a non-blocking take teaches none), the
    # calling thread's held list, the owner, and where it was taken (the
    # caller of the method, in the application), as (code, offset), with the
    # address of the taking frame as ``_dw_taker`` (no reference to the frame
    # is kept: see `held_as_token`).  It is written out in each method, not
    # called (issue 17: on the Python path one more Python call costs about
    # what the raw lock's acquire does); `_py_enter` leaves ``_dw_guard``
    # alone: only `_released_later` reads it, for a bare ``acquire()``.
    def _py_acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout == -1 and (blocking is True or blocking is False):
            if self._acq(False):
                self._ctx = False
                try:
                    rec = tls.rec
                except AttributeError:
                    rec = _state.new_record()
                held = rec.held
                if held:
                    last = held[-1]
                    self._dw_guard = id(last)
                    if (
                        blocking
                        and learn_order is not None
                        and last is not self
                        and id(self) not in last._dw_after
                    ):
                        learn_order(last, self, rec)
                else:
                    self._dw_guard = 0
                # After learning, as the C core: what the order hook reads
                # (`signals`) is the last take, before this one is noted.
                self._dw_prev = (self._dw_taker, self._site, self._dw_signalled)
                self._dw_signalled = False
                held.append(self)
                self._owner = rec
                try:
                    f = _getframe(1)
                except ValueError:  # a thread started from C on this method
                    self._site = None
                    self._dw_taker = 0
                    return True
                code = f.f_code
                if code.co_filename in INTERNAL_FILES:
                    f = user_frame(f) or f
                    code = f.f_code
                self._site = (code, f.f_lasti)
                self._dw_taker = id(f)
                return True
            if blocking is False:
                if self._owner is not None:
                    _probed(self)
                return False
        return self._acquire_slow(blocking, timeout, False)

    def _py_enter(self) -> bool:
        if self._acq(False):
            self._ctx = True
            try:
                rec = tls.rec
            except AttributeError:
                rec = _state.new_record()
            held = rec.held
            if held and learn_order is not None:
                last = held[-1]
                if last is not self and id(self) not in last._dw_after:
                    learn_order(last, self, rec)
            self._dw_prev = (self._dw_taker, self._site, self._dw_signalled)
            self._dw_signalled = False
            held.append(self)
            self._owner = rec
            try:
                f = _getframe(1)
            except ValueError:  # a thread started from C on this method
                self._site = None
                self._dw_taker = 0
                return True
            code = f.f_code
            if code.co_filename in INTERNAL_FILES:
                f = user_frame(f) or f
                code = f.f_code
            self._site = (code, f.f_lasti)
            self._dw_taker = id(f)
            return True
        return self._acquire_slow(True, -1, True)

    def _py_release(self) -> None:
        owner = self._owner
        if owner is not None:
            self._owner = None  # _dw_taker and _site stay: `signals` reads the last take
            try:
                me = tls.rec
            except AttributeError:
                me = None
            if owner is me:
                held = owner.held
                if held and held[-1] is self:
                    held.pop()
                else:
                    if not self._ctx and self._dw_taker:
                        _released_later(self, held)
                    remove_held(owner, self)
            else:
                self._handed_over(owner)
        self._raw.release()

    def _py_exit(self, *exc: object) -> None:
        # `_py_release`, written out (one Python call less per ``with``).
        owner = self._owner
        if owner is not None:
            self._owner = None
            try:
                me = tls.rec
            except AttributeError:
                me = None
            if owner is me:
                held = owner.held
                if held and held[-1] is self:
                    held.pop()
                else:
                    if not self._ctx and self._dw_taker:
                        _released_later(self, held)
                    remove_held(owner, self)
            else:
                self._handed_over(owner)
        self._raw.release()

    def _handed_over(self, owner: ThreadRecord) -> None:
        """Released by a thread other than its taker: a hand-off."""
        if not self._handoff:
            self._handoff = True
            created = self._created
            if created is not None:
                HANDOFF_SITES.add(created)
        remove_held(owner, self)

    # -- slow path --------------------------------------------------------
    def _acquire_slow(self, blocking: Any, timeout: Any, ctx: bool) -> bool:
        rec = current_record()
        _validate_lock_args(rec, blocking, timeout)
        if not blocking or timeout == 0:
            got: bool = self._acq(blocking, timeout)
        elif self._acq(False):
            got = True
        else:
            if timeout == -1:
                _teach(self, rec)
            site = site_at(_caller_site(2))
            wait = WaitRecord(rec, self, _timeout_or_none(timeout), site)
            if self._owner is rec and not self._handoff:
                wait.self_wait = True
                if timeout == -1:
                    for hook in self_wait_hook:
                        hook(wait, self._ctx)
            got = wait_until(wait, self._attempt, _timeout_or_none(timeout), self._raw.release)
        if got:
            self._dw_guard = id(rec.held[-1]) if rec.held else 0
            rec.held.append(self)
            self._owner = rec
            self._ctx = ctx
            taker = user_frame(_caller_frame(2))
            self._dw_prev = (self._dw_taker, self._site, self._dw_signalled)
            self._dw_signalled = False
            self._site = None if taker is None else (taker.f_code, taker.f_lasti)
            self._dw_taker = 0 if taker is None else id(taker)
        return got

    def _attempt(self, seconds: float) -> bool:
        return bool(self._acq(True, seconds))

    # -- the rest of the Lock API -----------------------------------------
    def locked(self) -> bool:
        return bool(self._raw.locked())

    def _at_fork_reinit(self) -> None:
        self._raw._at_fork_reinit()
        owner = self._owner
        self._owner = None
        self._dw_taker = 0
        self._handoff = False
        if owner is not None:
            remove_held(owner, self)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        # copy.copy, deepcopy and pickle fail exactly as for the raw lock.
        reduced: str | tuple[Any, ...] = self._raw.__reduce_ex__(protocol)
        return reduced

    def __repr__(self) -> str:
        # The raw lock's shape ("<locked _thread.lock object at 0x...>"), with
        # what deadlockwatch knows in the middle.
        state = "locked" if self._raw.locked() else "unlocked"
        held = _held_text(self._owner, self._site) if state == "locked" else ""
        return (
            f"<{state} deadlockwatch.TrackedLock object "
            f"(tracked{held}{_created_text(self._created)}) at {hex(id(self))}>"
        )

    # -- introspection for the watcher --------------------------------------
    _dw_type = "Lock"

    def _dw_holders(self) -> list[tuple[ThreadRecord, int, Site | None]]:
        owner = self._owner
        if owner is None or not self._raw.locked():
            return []
        return [(owner, 1, site_at(self._site))]

    def _dw_free(self) -> int:
        return 0 if self._raw.locked() else 1

    def _dw_owner_bound(self) -> bool:
        # Handed over: released by another thread, or left held by a thread
        # whose function that took it returned normally (see _state).
        if self._handoff:
            return False
        owner = self._owner
        return owner is None or not _state.returned_holding(owner, self._site)


class _RLockMethods:
    """A tracked ``threading.RLock``'s behaviour, in Python (the hot path is
    ``_py_acquire``/``_py_release``, as for ``_LockMethods``)."""

    if not TYPE_CHECKING:
        __slots__ = ()
    _raw: Any
    _acq: Any
    _dw_after: frozenset[int] | set[int]
    _owner: ThreadRecord | None
    _count: int
    _site: RawSite | None
    _created: Site | None
    _dw_watched: bool
    _dw_guard: int

    def __init__(self) -> None:
        raw = _RawRLock()
        self._raw = raw
        self._acq = raw.acquire
        self._dw_after = _NO_ORDERS
        self._dw_watched = False
        self._dw_guard = 0
        self._owner = None
        self._count = 0
        self._site = None
        self._created = creation_site()

    def _py_acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking is True and timeout == -1:
            try:
                rec = tls.rec
            except AttributeError:
                rec = _state.new_record()
            if self._owner is rec:
                # Only this thread sets _owner to its own record, so this is re-entry.
                self._acq()
                self._count += 1
                return True
            if self._acq(False):
                # A Lock's take, written out (see `_LockMethods`), without
                # what only a Lock's is read for (``_dw_guard``, the taker).
                self._count = 1
                held = rec.held
                if held and learn_order is not None:
                    last = held[-1]
                    if last is not self and id(self) not in last._dw_after:
                        learn_order(last, self, rec)
                held.append(self)
                self._owner = rec
                try:
                    f = _getframe(1)
                except ValueError:  # a thread started from C on this method
                    self._site = None
                    return True
                code = f.f_code
                if code.co_filename in INTERNAL_FILES:
                    f = user_frame(f) or f
                    code = f.f_code
                self._site = (code, f.f_lasti)
                return True
        return self._acquire_slow(blocking, timeout)

    def _py_release(self) -> None:
        # The raw RLock knows its owning thread: asking it costs less than
        # finding the calling thread's record.  Only the thread that took
        # the raw lock sets ``_owner`` (after taking it) and it clears it
        # before letting go, so while this thread owns the raw lock
        # ``_owner`` is this thread's record, or None for a take made
        # untracked (at shutdown, see `state`).
        owner = self._owner
        if owner is None or not self._raw._is_owned():
            self._raw.release()  # raises "cannot release un-acquired lock"
            return
        count = self._count - 1
        self._count = count
        if count == 0:
            self._owner = None
            held = owner.held
            if held and held[-1] is self:
                held.pop()
            else:
                remove_held(owner, self)
        self._raw.release()

    def _py_exit(self, *exc: object) -> None:
        # `_py_release`, written out (one Python call less per ``with``).
        owner = self._owner
        if owner is None or not self._raw._is_owned():
            self._raw.release()  # raises "cannot release un-acquired lock"
            return
        count = self._count - 1
        self._count = count
        if count == 0:
            self._owner = None
            held = owner.held
            if held and held[-1] is self:
                held.pop()
            else:
                remove_held(owner, self)
        self._raw.release()

    def _acquire_slow(self, blocking: Any, timeout: Any) -> bool:
        rec = current_record()
        _validate_lock_args(rec, blocking, timeout)
        if self._owner is rec:
            got: bool = self._acq(blocking, timeout)
            if got:
                self._count += 1
            return got
        if not blocking or timeout == 0:
            got = self._acq(blocking, timeout)
        else:
            if timeout == -1:
                _teach(self, rec)
            got = self._acq(False)
        if not got and blocking and timeout != 0:
            wait = WaitRecord(rec, self, _timeout_or_none(timeout), site_at(_caller_site(2)))
            got = wait_until(wait, self._attempt, _timeout_or_none(timeout), self._raw.release)
        if got:
            self._taken(rec, 1, _caller_site(2))
        return got

    def _taken(self, rec: ThreadRecord, count: int, site: RawSite | None) -> None:
        rec.held.append(self)
        self._owner = rec
        self._count = count
        self._site = site

    def _attempt(self, seconds: float) -> bool:
        return bool(self._acq(True, seconds))

    # -- the Condition protocol: a waiting thread does not hold the lock ------
    def _is_owned(self) -> bool:
        owned = bool(self._raw._is_owned())
        if owned:
            _probed(self)
        return owned

    def _release_save(self) -> Any:
        # Like the raw RLock's, this does not check which thread calls it: it
        # releases every level of a held lock, or raises "cannot release
        # un-acquired lock".  The bookkeeping goes first, so that a thread
        # taking the lock at once is not overwritten.
        owner = self._owner
        if owner is not None:
            self._count = 0
            self._owner = None
            remove_held(owner, self)
        return self._raw._release_save()

    def _py_acquire_restore(self, state: Any) -> None:
        if not _plain_rlock_state(state):
            # The raw RLock's own argument checks and errors, on a fresh probe.
            probe: Any = _RawRLock()
            probe._acquire_restore(state)
        count = state[0]
        rec = current_record()
        if not self._acq(False):
            wait = WaitRecord(rec, self, None, site_at(_caller_site(2)))
            wait_until(wait, self._attempt, None, self._raw.release)
        for _ in range(count - 1):
            self._acq()
        self._taken(rec, count, _caller_site(2))

    def _recursion_count(self) -> int:
        try:
            rec = tls.rec
        except AttributeError:
            return 0
        return self._count if self._owner is rec else 0

    if not hasattr(_RawRLock, "_recursion_count"):  # Python 3.10
        del _recursion_count

    def _at_fork_reinit(self) -> None:
        self._raw._at_fork_reinit()
        owner = self._owner
        self._owner = None
        self._count = 0
        if owner is not None:
            remove_held(owner, self)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        reduced: str | tuple[Any, ...] = self._raw.__reduce_ex__(protocol)
        return reduced

    def __repr__(self) -> str:
        owner = self._owner
        state = "locked" if owner is not None else "unlocked"
        ident = owner.ident if owner is not None else 0
        held = _held_text(owner, self._site) if owner is not None else ""
        return (
            f"<{state} deadlockwatch.TrackedRLock object owner={ident} count={self._count} "
            f"(tracked{held}{_created_text(self._created)}) at {hex(id(self))}>"
        )

    _dw_type = "RLock"

    def _dw_holders(self) -> list[tuple[ThreadRecord, int, Site | None]]:
        owner = self._owner
        if owner is None:
            return []
        return [(owner, max(self._count, 1), site_at(self._site))]

    def _dw_free(self) -> int:
        return 1 if self._owner is None else 0

    def _dw_owner_bound(self) -> bool:
        return True


class _PyLockCore(_LockMethods):
    """The fields of a tracked Lock and its hot path in Python: what the C
    ``_speedups.LockCore`` provides where it is built.

    The hot path is `_LockMethods`' written out once more, for this core
    only (issue 17, the Python path of free-threaded builds): ``__enter__``
    takes no argument to check, ``__exit__`` packs none, the held list's
    newest entry is dropped with ``del`` (no call), a take is one tuple
    (below), and ``_ucode`` caches the code object of the last caller seen
    outside `INTERNAL_FILES`, so a Lock taken again from the same function
    skips the file check (any code it holds is one found outside them: a
    stale value from another thread is as good).  The C core hands its
    other cases to the ``_py_*`` methods, which cannot use ``_ucode`` or
    ``_take`` (it has no such fields)."""

    __slots__ = (
        "__weakref__",
        "_acq",
        "_created",
        "_dw_after",
        "_dw_guard",
        "_dw_watched",
        "_handoff",
        "_owner",
        "_ptake",
        "_raw",
        "_take",
        "_ucode",
    )

    def __init__(self) -> None:
        # `_LockMethods.__init__`'s fields, the take as one (see below).
        raw = _allocate_lock()
        self._raw = raw
        self._acq = raw.acquire
        self._dw_after = _NO_ORDERS
        self._owner = None
        self._take: _Take = _NO_TAKE
        self._ptake: _Take | None = None
        self._ucode: CodeType | None = None
        self._dw_guard = 0
        self._dw_watched = False
        self._handoff = False
        self._created = creation_site()

    # A take is one tuple, (code or None, lasti, taker, signalled, ctx), replaced
    # at each take and by the setters below, so a reader in another thread
    # gets one take's fields; the take before is kept whole (``_ptake``).
    # Per take that is one tuple and two stores, where the fields one by one
    # were a tuple of three, a tuple of two and five stores (3.11: 8,545 ->
    # 8,142 instructions a ``with``).  The C core's fields, as properties:
    @property
    def _site(self) -> RawSite | None:
        take = self._take
        code = take[0]
        return None if code is None else (code, take[1])

    @_site.setter
    def _site(self, site: RawSite | None) -> None:
        take = self._take
        if site is None:
            self._take = (None, 0, take[2], take[3], take[4])
        else:
            self._take = (site[0], site[1], take[2], take[3], take[4])

    @property
    def _dw_taker(self) -> int:
        taker: int = self._take[2]
        return taker

    @_dw_taker.setter
    def _dw_taker(self, taker: int) -> None:
        take = self._take
        self._take = (take[0], take[1], taker, take[3], take[4])

    @property
    def _dw_signalled(self) -> bool:
        return bool(self._take[3])

    @_dw_signalled.setter
    def _dw_signalled(self, signalled: bool) -> None:
        take = self._take
        self._take = (take[0], take[1], take[2], signalled, take[4])

    @property
    def _ctx(self) -> bool:
        return bool(self._take[4])

    @_ctx.setter
    def _ctx(self, ctx: bool) -> None:
        take = self._take
        self._take = (take[0], take[1], take[2], take[3], ctx)

    @property
    def _dw_prev(self) -> tuple[int, RawSite | None, bool] | None:
        take = self._ptake
        if take is None:
            return None
        code = take[0]
        return (take[2], None if code is None else (code, take[1]), bool(take[3]))

    @_dw_prev.setter
    def _dw_prev(self, prev: tuple[int, RawSite | None, bool] | None) -> None:
        if prev is None:
            self._ptake = None
        else:
            taker, site, signalled = prev
            if site is None:
                self._ptake = (None, 0, taker, signalled, False)
            else:
                self._ptake = (site[0], site[1], taker, signalled, False)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout == -1 and (blocking is True or blocking is False):
            if self._acq(False):
                try:
                    rec = tls.rec
                except AttributeError:
                    rec = _state.new_record()
                held = rec.held
                if held:
                    last = held[-1]
                    self._dw_guard = id(last)
                    if (
                        blocking
                        and learn_order is not None
                        and last is not self
                        and id(self) not in last._dw_after
                    ):
                        learn_order(last, self, rec)
                else:
                    self._dw_guard = 0
                self._ptake = self._take
                held.append(self)
                self._owner = rec
                try:
                    f = _getframe(1)
                except ValueError:  # a thread started from C on this method
                    self._take = _NO_TAKE
                    return True
                code = f.f_code
                if code is not self._ucode:
                    if code.co_filename in INTERNAL_FILES:
                        f = user_frame(f) or f
                        code = f.f_code
                    else:
                        self._ucode = code
                self._take = (code, f.f_lasti, id(f), False, False)
                return True
            if blocking is False:
                if self._owner is not None:
                    _probed(self)
                return False
        return self._acquire_slow(blocking, timeout, False)

    def __enter__(self) -> bool:
        if self._acq(False):
            try:
                rec = tls.rec
            except AttributeError:
                rec = _state.new_record()
            held = rec.held
            if held and learn_order is not None:
                last = held[-1]
                if last is not self and id(self) not in last._dw_after:
                    learn_order(last, self, rec)
            self._ptake = self._take
            held.append(self)
            self._owner = rec
            try:
                f = _getframe(1)
            except ValueError:  # a thread started from C on this method
                self._take = _NO_TAKE_CTX
                return True
            code = f.f_code
            if code is not self._ucode:
                if code.co_filename in INTERNAL_FILES:
                    f = user_frame(f) or f
                    code = f.f_code
                else:
                    self._ucode = code
            self._take = (code, f.f_lasti, id(f), False, True)
            return True
        return self._acquire_slow(True, -1, True)

    def release(self) -> None:
        owner = self._owner
        if owner is not None:
            self._owner = None  # _dw_taker and _site stay: `signals` reads the last take
            try:
                me = tls.rec
            except AttributeError:
                me = None
            if owner is me:
                held = owner.held
                if held and held[-1] is self:
                    del held[-1]
                else:
                    take = self._take
                    if not take[4] and take[2]:
                        _released_later(self, held)
                    remove_held(owner, self)
            else:
                self._handed_over(owner)
        self._raw.release()

    def __exit__(
        self, t: object = None, v: object = None, tb: object = None, *more: object
    ) -> None:
        # `release`, written out (one Python call less per ``with``); the
        # raw lock's ``__exit__`` takes any arguments, as this does.
        owner = self._owner
        if owner is not None:
            self._owner = None
            try:
                me = tls.rec
            except AttributeError:
                me = None
            if owner is me:
                held = owner.held
                if held and held[-1] is self:
                    del held[-1]
                else:
                    take = self._take
                    if not take[4] and take[2]:
                        _released_later(self, held)
                    remove_held(owner, self)
            else:
                self._handed_over(owner)
        self._raw.release()


class _PyRLockCore(_RLockMethods):
    """The fields of a tracked RLock and its hot path in Python (see
    ``_PyLockCore``: the same written-out take and the ``_ucode`` cache)."""

    __slots__ = (
        "__weakref__",
        "_acq",
        "_count",
        "_created",
        "_dw_after",
        "_dw_guard",
        "_dw_watched",
        "_owner",
        "_raw",
        "_site",
        "_ucode",
    )

    def __init__(self) -> None:
        super().__init__()
        self._ucode: CodeType | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking is True and timeout == -1:
            try:
                rec = tls.rec
            except AttributeError:
                rec = _state.new_record()
            if self._owner is rec:
                # Only this thread sets _owner to its own record, so this is re-entry.
                self._acq()
                self._count += 1
                return True
            if self._acq(False):
                self._count = 1
                held = rec.held
                if held and learn_order is not None:
                    last = held[-1]
                    if last is not self and id(self) not in last._dw_after:
                        learn_order(last, self, rec)
                held.append(self)
                self._owner = rec
                try:
                    f = _getframe(1)
                except ValueError:  # a thread started from C on this method
                    self._site = None
                    return True
                code = f.f_code
                if code is not self._ucode:
                    if code.co_filename in INTERNAL_FILES:
                        f = user_frame(f) or f
                        code = f.f_code
                    else:
                        self._ucode = code
                self._site = (code, f.f_lasti)
                return True
        return self._acquire_slow(blocking, timeout)

    #: As threading's: an RLock's ``__enter__`` takes acquire's arguments.
    __enter__ = acquire

    def release(self) -> None:
        # See `_RLockMethods._py_release`.
        owner = self._owner
        if owner is None or not self._raw._is_owned():
            self._raw.release()  # raises "cannot release un-acquired lock"
            return
        count = self._count - 1
        self._count = count
        if count == 0:
            self._owner = None
            held = owner.held
            if held and held[-1] is self:
                del held[-1]
            else:
                remove_held(owner, self)
        self._raw.release()

    def __exit__(
        self, t: object = None, v: object = None, tb: object = None, *more: object
    ) -> None:
        # `release`, written out (one Python call less per ``with``).
        owner = self._owner
        if owner is None or not self._raw._is_owned():
            self._raw.release()  # raises "cannot release un-acquired lock"
            return
        count = self._count - 1
        self._count = count
        if count == 0:
            self._owner = None
            held = owner.held
            if held and held[-1] is self:
                del held[-1]
            else:
                remove_held(owner, self)
        self._raw.release()

    _acquire_restore = _RLockMethods._py_acquire_restore


def _cores() -> tuple[Any, Any]:
    """The C cores where they are built, else Python's.  (``_speedups`` is
    never built for a free-threaded interpreter: its source refuses to be.)"""
    if parse_bool(os.environ.get(PURE_VAR, ""), f"environment variable {PURE_VAR}"):
        return _PyLockCore, _PyRLockCore
    try:
        from deadlockwatch._track import _speedups as _speedups

        _speedups.configure(
            tls,
            _state.new_record,
            INTERNAL_FILES,
            remove_held,
            globals(),
            _allocate_lock,
            _RawRLock,
            site_at,
        )
    except Exception:  # not built, or built from another version of the source
        return _PyLockCore, _PyRLockCore
    _state.forget_current = _speedups.forget
    return _speedups.LockCore, _speedups.RLockCore


if TYPE_CHECKING:
    _LockCore = _PyLockCore
    _RLockCore = _PyRLockCore
else:
    _LockCore, _RLockCore = _cores()
#: True when the hot path of Lock and RLock runs in C (``deadlockwatch._track._speedups``).
ACCELERATED = _LockCore is not _PyLockCore


#: The module the tracked Lock and RLock classes name, as the raw ones do:
#: code that checks ``type(lock).__module__ == "_thread"`` to be sure it has
#: the C locks (trio's entry queue asserts it of its RLock) works unchanged.
#: Their names stay TrackedLock and TrackedRLock, and their repr says
#: deadlockwatch: what is tracked stays visible to whoever looks.
LOCK_MODULE = "_thread"


class TrackedLock(_LockCore, _LockMethods):
    """A tracked ``threading.Lock``."""

    __slots__ = ()
    __module__ = LOCK_MODULE
    acquire_lock = _LockCore.acquire
    release_lock = _LockCore.release
    locked_lock = _LockMethods.locked


class TrackedRLock(_RLockCore, _RLockMethods):
    """A tracked ``threading.RLock``."""

    __slots__ = ()
    __module__ = LOCK_MODULE


def _pure(cls: type[Any], core: type[Any], methods: type[Any]) -> type[Any]:
    """``cls`` with Python's hot path: for checking the C one against it."""
    if not ACCELERATED:
        return cls
    return type(
        cls.__name__,
        (core, methods),
        {
            "__slots__": (),
            "__doc__": cls.__doc__,
            "__module__": LOCK_MODULE,
            **{k: v for k, v in vars(cls).items() if k.endswith("_lock")},
        },
    )


#: The tracked Lock and RLock with their hot path in Python (the same classes
#: as TrackedLock and TrackedRLock where ``_speedups`` is not built).
PURE_LOCK: type[Any] = _pure(TrackedLock, _PyLockCore, _LockMethods)
PURE_RLOCK: type[Any] = _pure(TrackedRLock, _PyRLockCore, _RLockMethods)


class _TrackedSemaphoreMixin:
    """Tracking for ``threading.Semaphore`` and ``BoundedSemaphore``.

    The counting itself is the original class's code, run on an untracked
    internal Condition; this adds who holds how many units.  A release by a
    thread holding no unit marks the semaphore as a signal: from then on any
    running thread may release it, so waits on it are not owner-bound, and
    its units are no longer counted per thread.
    """

    _cond: Any
    _value: int
    _initial_value: int
    _dw_type = "Semaphore"
    #: A BoundedSemaphore: a release above the initial value is an error.
    _dw_bounded = False
    #: Semaphores take no part in lock order (they are counters and signals).
    _dw_after: Any = _AllOrders()

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        lock = _allocate_lock()
        self._cond = _RawCondition(lock)
        self._dw_lock = lock
        self._value = value
        self._dw_units: dict[ThreadRecord, int] = {}
        self._dw_sites: dict[ThreadRecord, RawSite | None] = {}
        self._dw_signal = False
        self._dw_created = creation_site()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        hook = on_semaphore
        if hook is not None and self._dw_signal and blocking is True and timeout is None:
            hook(self, True)  # a wait on a signal, even when a unit is free
        if blocking is True:
            # A free unit: the original takes it at once, whatever the
            # timeout.  Done here on the Condition's raw lock, not through
            # the original's ``with self._cond`` and its checks (when the
            # lock is busy, the original does it below).
            lock = self._dw_lock
            if lock.acquire(False):
                if self._value != 0:
                    self._value -= 1
                    lock.release()
                    self._taken(2)
                    return True
                lock.release()
                if timeout == 0 and type(timeout) in (int, float):
                    # No free unit and a zero timeout (ThreadPoolExecutor's
                    # idle check): the original waits zero seconds and
                    # answers False; a unit given meanwhile counts as given
                    # after the check.
                    return False
        orig_acquire = super().acquire  # type: ignore[misc]
        if (
            not blocking
            or (timeout is not None and not isinstance(timeout, (int, float)))  # its own error
            or (timeout is not None and timeout <= 0)  # never waits (ThreadPoolExecutor's)
        ):
            got: bool = orig_acquire(blocking, timeout)
        elif orig_acquire(False):
            got = True
        else:
            rec = current_record()
            if timeout is not None:
                # The original computes a deadline, then waits on a raw lock
                # with this timeout: raise what those raise (OverflowError).
                _native.monotonic() + timeout
                _validate_lock_args(rec, True, timeout)
            wait = WaitRecord(rec, self, timeout, site_at(_caller_site(1)))

            def attempt(seconds: float) -> bool:
                return bool(orig_acquire(True, seconds))

            got = wait_until(wait, attempt, timeout, lambda: _OrigSemaphore.release(self))
        if got:
            self._taken(2)
        return got

    __enter__ = acquire
    #: What the C core (`_speedups.SemCore`) hands over to when its fast path
    #: does not apply.
    _py_acquire = acquire

    def _taken(self, depth: int) -> None:
        """A unit taken by the calling thread, for the caller ``depth`` frames
        out of this method: ``_taken(2)`` in ``acquire`` is acquire's caller
        (written out: it is the hot path)."""
        if self._dw_signal:
            return  # a signal's units belong to nobody (see release)
        try:
            rec = tls.rec
        except AttributeError:
            rec = _state.new_record()
        rec.held.append(self)
        units = self._dw_units
        units[rec] = units.get(rec, 0) + 1
        try:
            f: Any = _getframe(depth)
        except ValueError:  # a thread started from C on that method
            f = None
        if f is not None and f.f_code.co_filename in INTERNAL_FILES:
            f = user_frame(f)
        self._dw_sites[rec] = None if f is None else (f.f_code, f.f_lasti)

    def release(self, n: int = 1) -> None:
        if type(n) is int and n == 1:
            # The original's, without its Condition's checks: a notify only
            # when a thread waits.
            cond = self._cond
            with self._dw_lock:
                if self._dw_bounded and self._value >= self._initial_value:
                    raise ValueError("Semaphore released too many times")
                self._value += 1
                if cond._waiters:
                    cond.notify()
        else:
            super().release(n)  # type: ignore[misc]
        if self._dw_signal:
            hook = on_semaphore
            if hook is not None:
                hook(self, False)
            return  # a signal's units belong to nobody: nothing to take back
        try:
            rec = tls.rec
        except AttributeError:
            rec = None
        units = self._dw_units
        mine = units.get(rec, 0) if rec is not None else 0
        take = n if n < mine else mine
        if take and rec is not None:
            if take == mine:
                units.pop(rec, None)
                self._dw_sites.pop(rec, None)
            else:
                units[rec] = mine - take
            held = rec.held
            if mine == 1 and held and held[-1] is self:
                held.pop()  # its only entry (one per unit held), the newest
            else:
                remove_held(rec, self, take)
        if n > take and not self._dw_signal:
            # A unit released by a thread that holds none: a signal.  From now
            # on its units belong to nobody, so stop counting them per thread:
            # a thread that only ever takes (a consumer) would otherwise pile
            # up one held entry per acquire, for as long as it lives.
            self._dw_signal = True
            units = self._dw_units
            for holder, count in list(units.items()):
                remove_held(holder, self, count)
            units.clear()
            self._dw_sites.clear()
            hook = on_semaphore
            if hook is not None:
                hook(self, False)  # its first signal

    _py_release = release

    def __repr__(self) -> str:
        # The shape of threading's own repr (3.11+), "...: value=N>" at the end.
        holders = ", ".join(
            f"{_state.thread_name(r.ident, r.name)!r}x{n}" for r, n in self._dw_units.copy().items()
        )
        held = f"; held by {holders}" if holders else ""
        initial = getattr(self, "_initial_value", None)
        value = f"{self._value}/{initial}" if self._dw_type == "BoundedSemaphore" else self._value
        return (
            f"<deadlockwatch.{self._dw_type} at {hex(id(self))} "
            f"(tracked{held}{_created_text(self._dw_created)}): value={value}>"
        )

    def _dw_holders(self) -> list[tuple[ThreadRecord, int, Site | None]]:
        sites = self._dw_sites.copy()
        return [(r, n, site_at(sites.get(r))) for r, n in self._dw_units.copy().items() if n > 0]

    def _dw_free(self) -> int:
        return max(int(self._value), 0)

    def _dw_owner_bound(self) -> bool:
        return not self._dw_signal


class _PySemCore:
    """The Python path of the tracked Semaphore: nothing before the mixin's
    own methods and its fields in the instance's ``__dict__`` (what the C
    ``_speedups.SemCore`` provides where it is built: the hot path of
    ``acquire`` and ``release(1)``, and the fields)."""

    __slots__ = ()


def _sem_core() -> type[Any]:
    if not ACCELERATED:
        return _PySemCore
    from deadlockwatch._track import _speedups as _speedups

    core: type[Any] = getattr(_speedups, "SemCore", _PySemCore)
    return core


if TYPE_CHECKING:
    _SemCore = _PySemCore
else:
    _SemCore = _sem_core()


def _sem_state(self: Any) -> dict[str, Any]:
    """What the original's pickling and copying read, its ``__dict__``: with
    the C core, the fields kept in the core come first, ``_cond`` leading
    as in the original's (whose raw lock is what refuses to be pickled)."""
    state = {name: getattr(self, name) for name in _SEM_FIELDS}
    state.update(self.__dict__)
    return state


#: The fields ``_speedups.SemCore`` keeps out of the instance ``__dict__``.
_SEM_FIELDS = ("_cond", "_dw_lock", "_value", "_dw_units", "_dw_sites", "_dw_signal")


class TrackedSemaphore(_SemCore, _TrackedSemaphoreMixin, _OrigSemaphore):  # type: ignore[misc]
    """A tracked ``threading.Semaphore``."""

    __init__ = _TrackedSemaphoreMixin.__init__


class TrackedBoundedSemaphore(_SemCore, _TrackedSemaphoreMixin, _OrigBoundedSemaphore):  # type: ignore[misc]
    """A tracked ``threading.BoundedSemaphore``."""

    _dw_type = "BoundedSemaphore"
    _dw_bounded = True

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value


if _SemCore is not _PySemCore:
    for _cls in (TrackedSemaphore, TrackedBoundedSemaphore):
        setattr(_cls, "__getstate__", _sem_state)  # noqa: B010 (a method of the C variant only)


TRACKED_TYPES: tuple[type, ...] = (
    TrackedLock,
    TrackedRLock,
    TrackedSemaphore,
    TrackedBoundedSemaphore,
)
