"""multiprocessing's locks tracked: ``multiprocessing.synchronize.SemLock``
patched at class level (Lock, RLock, Semaphore, BoundedSemaphore, and
Condition, Event, Barrier, ``Value``/``Array`` locks built on them).

The uncontended path stays local: a successful attempt records the hold in
the calling thread's record and on the object, nothing else.  A blocking
acquire is a sliced `wait_until` wait, as for threading's locks.  Each
semaphore has a name (``_semlock.name``) that is the same in every process
that unpickled it: that is its identity across processes (a fork-context
one, unlinked at once, is named after its creating process and handle,
which forked children share).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from deadlockwatch._model import (
    Site,
)
from deadlockwatch._processes import ledger as _ledger
from deadlockwatch._processes import rundir as _rundir
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.state import (
    WaitRecord,
    current_record,
    internal_file,
    remove_held,
    tls,
    user_frame,
)

internal_file(__file__)


MODULE = "multiprocessing.synchronize"
#: multiprocessing's own files: never a creation or acquisition site.
_MP_FILES = ("synchronize.py", "context.py", "sharedctypes.py", "queues.py", "pool.py")

#: True while enabled: the class-level methods track; False: they pass through.
active = False
#: multiprocessing.synchronize.SemLock, once patched.
_cls: Any = None
#: (attribute, original) of what was replaced on the class.
_originals: dict[str, Any] = {}
_hooked = False


def gkey(*parts: object) -> int:
    """A key every process computes alike (``hash`` of a str is salted)."""
    import hashlib  # here (and json below): not paid when threading is imported

    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# -- the patch ------------------------------------------------------------------------


def _mp_type(self: Any) -> str:
    for c in type(self).__mro__:
        if c.__module__ == MODULE and c.__name__ != "SemLock":
            return f"mp.{c.__name__}"
    return "mp.SemLock"


def _is_mutex(obj: Any) -> bool:
    return _mp_type(obj) in ("mp.Lock", "mp.RLock")


def _make_methods(self: Any) -> None:
    """Replaces ``SemLock._make_methods``: no instance-level acquire/release
    (the class-level ones track), and the object's identity."""
    if not active:
        _originals["_make_methods"](self)
        return
    d = self.__dict__
    d.pop("acquire", None)
    d.pop("release", None)
    sl = self._semlock
    name = sl.name
    if name is None:
        # Fork context: unlinked at once; forked children share the handle.
        name = f"fork:{os.getpid()}:{sl.handle:x}"
    d["_dw_name"] = name
    d["_dw_units"] = {}
    d["_dw_sites"] = {}
    d["_dw_signal"] = False
    caller = _native.caller_frame(1)
    init = caller is not None and caller.f_code.co_name == "__init__"
    d["_dw_created"] = _state.frame_site(caller) if init else None


def _acquire(self: Any, block: Any = True, timeout: Any = None) -> bool:
    return _acquire_at(self, block, timeout, _native.caller_frame(1))


def _acquire_at(self: Any, block: Any, timeout: Any, frame: Any) -> bool:
    sl = self._semlock
    if not active or "_dw_units" not in self.__dict__:
        return bool(sl.acquire(block, timeout))
    if sl.acquire(False):
        _taken(self, frame)
        return True
    if not block:
        return False
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        got = bool(sl.acquire(True, timeout))  # the original's own handling
    else:
        rec = current_record()
        seconds = None if timeout is None else float(timeout)
        wait = WaitRecord(rec, self, seconds, _state.frame_site(frame))
        got = _state.wait_until(wait, lambda s: bool(sl.acquire(True, s)), seconds, sl.release)
    if got:
        _taken(self, frame)
    return got


def _taken(self: Any, frame: Any) -> None:
    try:
        rec = tls.rec
    except AttributeError:
        rec = _state.new_record()
    units = self._dw_units
    n = units.get(rec, 0)
    if not n:
        f = user_frame(frame) or frame
        code, lasti = (f.f_code, f.f_lasti) if f is not None else (None, -1)
        self._dw_sites[rec] = (code, lasti) if code is not None else None
        if _is_mutex(self):
            # A semaphore's units are counted on it only: it is a signal
            # across processes (see `_dw_owner_bound`), and one taken again
            # and again (a queue's ``put``) must not grow the held list.
            rec.held.append(self)
            # In this process's mapped file at once: it may be killed before
            # its watcher publishes anything.
            _ledger.held(self, rec, code, lasti, _rundir._ledger_opener)
            # The watcher starts at a first blocking wait; a holder of a
            # shared lock must publish it.
            if _state.resume_watcher is not None:
                _state.resume_watcher()
    units[rec] = n + 1


def _release(self: Any) -> None:
    units = self.__dict__.get("_dw_units")
    if units is None:
        self._semlock.release()
        return
    try:
        rec = tls.rec
    except AttributeError:
        rec = None
    mine = units.get(rec, 0) if rec is not None else 0
    if mine == 1:
        # Out of the mapped file first: killed in between, it leaves a lock
        # held by nobody known rather than a holder that let go.
        _ledger.released(self)
    try:
        self._semlock.release()
    except BaseException:
        if mine == 1:
            _ledger.released(self, 1)
        raise
    if mine and rec is not None:
        if mine == 1:
            units.pop(rec, None)
            self._dw_sites.pop(rec, None)
            remove_held(rec, self)
        else:
            units[rec] = mine - 1
        return
    # A release by a thread holding no unit: a hand-off or a signal; nobody
    # in this process owns what it took any more.
    self._dw_signal = True
    _ledger.released(self)
    for other in list(units):
        units.pop(other, None)
        self._dw_sites.pop(other, None)
        remove_held(other, self)


def _enter(self: Any) -> bool:
    return _acquire_at(self, True, None, _native.caller_frame(1))


def _exit(self: Any, *args: object) -> None:
    _release(self)


def _dw_holders(self: Any) -> list[tuple[Any, int, Site | None]]:
    units = dict(self.__dict__.get("_dw_units") or {})
    sites = dict(self.__dict__.get("_dw_sites") or {})
    return [(r, n, _state.site_at(sites.get(r))) for r, n in units.items() if n > 0]


def _dw_free(self: Any) -> int:
    try:
        value = int(self._semlock._get_value())
    except Exception:  # not implemented everywhere (macOS)
        return 0 if self.__dict__.get("_dw_units") else 1
    if _is_mutex(self):
        return 1 if value > 0 else 0
    return max(value, 0)


def _dw_owner_bound(self: Any) -> bool:
    # A semaphore is counted as a signal: which process will release its
    # units (a queue's reader releases what its writers took) is unknown here.
    return _is_mutex(self) and not self.__dict__.get("_dw_signal", False)


def _install(module: Any) -> None:
    global _cls
    if not active or _originals:
        return
    cls = getattr(module, "SemLock", None)
    if not isinstance(cls, type):
        return
    from deadlockwatch._track.primitives import _AllOrders

    for name in ("_make_methods", "__enter__", "__exit__"):
        _originals[name] = cls.__dict__[name]
    setattr(cls, "_make_methods", _make_methods)  # noqa: B010
    setattr(cls, "__enter__", _enter)  # noqa: B010
    setattr(cls, "__exit__", _exit)  # noqa: B010
    if "acquire" not in cls.__dict__:
        # Permanent: objects made while enabled have no instance-level ones.
        permanent: dict[str, Any] = {
            "acquire": _acquire,
            "release": _release,
            "_dw_type": property(_mp_type),
            "_dw_holders": _dw_holders,
            "_dw_free": _dw_free,
            "_dw_owner_bound": _dw_owner_bound,
            "_dw_after": _AllOrders(),
            "_dw_created": None,
        }
        for name, value in permanent.items():
            setattr(cls, name, value)
    _cls = cls
    base = os.path.dirname(getattr(module, "__file__", "") or "")
    for name in _MP_FILES:
        internal_file(os.path.join(base, name))
    _rundir.run_dir()


def patch() -> None:
    global active, _hooked
    active = True
    module = sys.modules.get(MODULE)
    if module is not None:
        _install(module)
    elif not _hooked:
        from deadlockwatch._track.hook import when_imported

        _hooked = True
        when_imported(MODULE, _install)


def unpatch() -> None:
    global active
    active = False
    cls = _cls
    if cls is not None:
        for name, original in _originals.items():
            setattr(cls, name, original)
    _originals.clear()


def is_shared(obj: object) -> bool:
    cls = _cls
    return cls is not None and isinstance(obj, cls)
