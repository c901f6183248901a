"""Potential deadlocks through signals (``wait-under-lock``), learned as lock
order is, in the application's threads, while lock order is on.

A signal is the Condition that a wait waits on and a signaller notifies: an
Event's, a Queue's room (``not_full``) or items (``not_empty``), a Future's,
a Barrier's, or an application's own Condition.  As Linux's DEPT does, a
wait is taken for an acquire of the signal and a signal for its release, and
both go into the lock-order graph (`order`), where a signal is a node
(`SignalNode`):

* a call that could wait on S, untimed, made while holding the lock L
  teaches ``L -> S`` (``waits``), whether it blocked or not: ``Event.wait()``
  on a set Event, ``wait_for`` whose predicate was already true, ``put()`` on
  a bounded Queue with room, ``get()``, ``join()``, ``Future.result()``,
  ``Barrier.wait()``, ``Condition.wait()``, ``acquire()`` of a Semaphore
  used as a signal;
* a signal of S given by a call that needs L teaches ``S -> L``
  (``signals``).  The call needs L if it holds L when it signals, or took L
  earlier in the same invocation (the function that called ``set()``,
  ``put()``, ``notify()``...: the frame that took L is the frame that
  signalled, at an earlier offset).

Nothing is wrapped on the hot paths.  A wait is seen where it takes its
signal's lock while holding another (the lock-order hook, `acquiring`, once
per pair of locks, as an order is learned), or in ``wait_for`` and a blocking
``Condition.wait``.  A signal is seen where ``Condition.notify`` probes its
own lock (``_is_owned``): the C core marks that take of the lock as one that
signalled (``_dw_signalled``) and calls `on_probe` only when the thread holds
other locks too, or when a waiter has been seen under a lock for that signal
(``_dw_watched``).  A tracked Lock keeps its last take after release
(``_dw_taker``, ``_site``) and the one before (``_dw_prev``), so the two sides
meet whichever comes first: when the signal comes first, the waiter compares
the take of its lock before its own with the take of the signal's lock that
signalled; when the wait comes first, the signal looks at the locks its
waiters held.

A cycle through a signal node is a ``wait-under-lock`` finding: ``L -> S ->
L`` for the plain case, and with lock orders between (A holds L1 and waits
for S; S's signaller needs L2; L2's holder takes L1) as one finding.  The
signal's own lock is left out on both sides (a wait releases it), so are
tokens (`order.held_as_token`), and so are the locks of a thread that gives
or waits for a signal from a signal handler run inside one of its waits (they
are the interrupted code's); timed waits teach nothing.  No lock gates a
wait, as a lock held on both sides gates a lock order: the waiter holds it
while it waits, so a signaller that needs it cannot have it.

What is missed (learning is cheap, not exhaustive): a wait seen only through
the lock-order hook is learned the first time its pair of locks is (a timed
wait then hides a later untimed one); a signal that came first is matched only
with the last take of the signal's lock before the wait, and not at all for a
Queue (its two signals share one lock) or a Condition over an RLock.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from deadlockwatch._model import ORDER_SIGNALS, ORDER_WAITS, Finding, Frame, Site
from deadlockwatch._track import native as _native
from deadlockwatch._track.order import ORDER, held_as_token
from deadlockwatch._track.state import (
    internal_file,
    site_at,
    thread_name,
    tls,
    user_frame,
)

internal_file(__file__)

#: True while lock order is on (the watcher sets it): the wrappers learn.
learning = False
#: Called with each finding (the watcher's record-and-emit).
report: Callable[[Finding], object] | None = None
ROOM, ITEMS = "Queue room", "Queue items"


class SignalNode:
    """A signal in the lock-order graph: what `order.LockOrder` reads of a lock."""

    __slots__ = ("__weakref__", "_created", "_dw_after", "_dw_type", "_handoff", "cond", "waiters")

    def __init__(self, kind: str, created: Site | None, cond: weakref.ref[Any]) -> None:
        self.cond = cond
        self._dw_after: frozenset[int] | set[int] = frozenset()
        self._dw_type = kind
        self._created = created
        self._handoff = False
        #: The locks its waiters held (weakly): a signal checks whether it
        #: took one of them earlier in the same call.
        self.waiters: tuple[weakref.ref[Any], ...] = ()


#: id(Condition) -> its node, which lives as long as the Condition.
_nodes: dict[int, SignalNode] = {}
#: Reentrant: a collection inside a block that holds it may run `_gone`.
_nodes_lock = _native.RawRLock()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held it at the fork; it is gone in
    # the child, which would wait for it forever.
    global _nodes_lock
    _nodes_lock = _native.RawRLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _known(cond: Any) -> SignalNode | None:
    node = _nodes.get(id(cond))
    if node is not None and node.cond() is cond:
        return node
    return None


def _gone(key: int, ref: weakref.ref[Any]) -> None:
    with _nodes_lock:
        node = _nodes.get(key)
        if node is not None and node.cond is ref:
            del _nodes[key]


def _node(cond: Any, kind: str) -> SignalNode | None:
    node = _known(cond)
    if node is not None:
        if kind != "Condition" and node._dw_type == "Condition":
            node._dw_type = kind  # named better by a waiter than by notify()
        return node
    with _nodes_lock:
        node = _known(cond)
        if node is None:
            key = id(cond)
            try:
                ref = weakref.ref(cond, functools.partial(_gone, key))
            except TypeError:  # not weakly referable
                return None
            lock = getattr(cond, "_lock", None)
            created = getattr(cond, "_dw_created", None) or getattr(lock, "_created", None)
            node = _nodes[key] = SignalNode(kind, created, ref)
    return node


def forget() -> None:
    """Forget every signal node."""
    with _nodes_lock:
        _nodes.clear()


def _emit(finding: Finding | None) -> None:
    if finding is not None and report is not None:
        report(finding)


def _own_lock(cond: Any) -> Any:
    return getattr(cond, "_lock", None)


def _learn(src: Any, dst: Any, rec: Any, held: list[Any], **kw: Any) -> None:
    name = thread_name(rec.ident, rec.name)
    _emit(ORDER.learn(src, dst, held, name, rec.ident, rec.serial, **kw))


# -- the waiting side ------------------------------------------------------------
#: (module, function) -> how a call there that takes its signal's lock waits:
#: (the attribute of ``self`` that is the signal, its kind, the local that is
#: the timeout, the local that is ``block`` or "").
_WAITS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("threading", "wait"): ("_cond", "Event", "timeout", ""),
    ("queue", "put"): ("not_full", ROOM, "timeout", "block"),
    ("queue", "get"): ("not_empty", ITEMS, "timeout", "block"),
    ("queue", "join"): ("all_tasks_done", "Queue tasks", "", ""),
    ("concurrent.futures._base", "result"): ("_condition", "Future", "timeout", ""),
    ("concurrent.futures._base", "exception"): ("_condition", "Future", "timeout", ""),
}


#: The modules whose objects take a signal's lock in their own methods.
_SIGNAL_MODULES = frozenset(("threading", "queue", "concurrent.futures._base"))


def acquiring(lock: Any, frame: FrameType | None) -> bool:
    """The lock-order hook: the calling thread takes ``lock`` (from ``frame``
    outwards) while holding another, an order not known yet.  If it is a
    signal's lock taken by a call that waits for that signal (``Event.wait``,
    ``Queue.put``/``get``/``join``, ``Future.result``, ``Barrier.wait``),
    learn the wait.  True if it is a signal's lock taken by any other call of
    its object (``set()``, ``done()``, ``put_nowait()``...): the order is then
    left unknown, so that a wait under the same lock later is still seen."""
    f = frame
    try:
        for _ in range(3):
            if f is None:
                return False
            module = f.f_globals.get("__name__", "")
            if module not in _SIGNAL_MODULES:
                return False
            this = f.f_locals.get("self")
            if this is None or getattr(this, "_dw_type", None) is not None:
                f = f.f_back  # Condition.__enter__ and the like, or a tracked lock's own
                continue
            if not _owns_signal_lock(this, lock):
                f = f.f_back
                continue
            how = _WAITS.get((module, f.f_code.co_name))
            if how is None:
                return True
            attr, kind, timeout, block = how
            cond = getattr(this, attr, None)
            if isinstance(this, threading.Barrier):
                cond, kind = this._cond, "Barrier"  # type: ignore[attr-defined]
            elif module == "threading" and not isinstance(this, threading.Event):
                return False
            if cond is None or getattr(cond, "_lock", None) is not lock:
                return True
            local = f.f_locals
            if timeout and local.get(timeout) is not None:
                return True
            if block and not local.get(block):
                return True
            if kind == ROOM and not this.maxsize > 0:
                return True
            waiting(cond, kind, f.f_back)
            return False
        return False
    except Exception:  # never hurt the host
        return False


def _owns_signal_lock(this: Any, lock: Any) -> bool:
    """Whether ``lock`` is the lock of one of ``this``'s signals."""
    for attr in ("_cond", "_condition", "not_empty", "mutex"):
        cond = getattr(this, attr, None)
        if cond is lock or getattr(cond, "_lock", None) is lock:
            return True
    return False


def waiting(cond: Any, kind: str, frame: FrameType | None) -> None:
    """A call from ``frame`` that could wait on ``cond`` untimed (it may not
    block): learn ``L -> S`` for the locks it holds."""
    try:
        rec = tls.rec
    except AttributeError:
        return
    held = rec.held
    if not held or rec.wait is not None:  # none, or in a signal handler
        return
    try:
        own = _own_lock(cond)
        if len(held) == 1 and (held[0] is own or held[0] is cond):
            # The signal's own lock alone (every untimed Condition.wait that
            # blocks holds it): what the filters below would leave is empty.
            return
        # The signal's own lock is released by the wait: neither needed nor a gate.
        held = [h for h in held if h is not own and h is not cond]
        mine = [h for h in held if not held_as_token(h, frame)]
        if not mine:
            return
        node = _node(cond, kind)
        if node is None:
            return
        for h in mine:
            if id(h) not in node._dw_after:
                _signalled_before(node, cond, h, held)
        with _nodes_lock:
            known = [r() for r in node.waiters]
            new = tuple(weakref.ref(h) for h in mine if not any(h is k for k in known))
            if new:
                node.waiters = tuple(r for r in node.waiters if r() is not None) + new
        if getattr(own, "_dw_watched", True) is False:  # a tracked lock only
            own._dw_watched = True  # its signals now check the waiters' locks
        last = mine[-1]
        if id(node) not in last._dw_after:
            # No gates: a lock held across the wait cannot gate it (the
            # signaller that needs it cannot have it while the wait lasts).
            _learn(last, node, rec, [], relation=ORDER_WAITS)
    except Exception:  # never hurt the host
        return


def _signalled_before(node: SignalNode, cond: Any, lock: Any, held: list[Any]) -> None:
    """The signal came first: ``lock``'s take before the current one was in
    the call that then signalled ``cond`` (the take of the signal's own lock
    that signalled).  That call needs ``lock`` (``S -> L``)."""
    if node._dw_type in (ROOM, ITEMS):
        return  # a Queue's two signals share its lock: which one was given is unknown
    prev = getattr(lock, "_dw_prev", None)
    own = _own_lock(cond)
    if not prev or prev[1] is None or getattr(own, "_dw_type", "") != "Lock":
        return
    taker, (code, offset), _ = prev
    try:
        rec = tls.rec
    except AttributeError:
        return
    if own._owner is rec:  # the waiter holds it now: the take before its own
        last = own._dw_prev
        if not last or last[1] is None:
            return
        by, site, signalled = last
    else:  # the waiter is about to take it (`acquiring`): its last take
        by, site, signalled = own._dw_taker, own._site, own._dw_signalled
    if not signalled or site is None or site[0] is not code or site[1] <= offset:
        return
    if taker and by and taker != by:
        return
    where = site_at(site)
    stack = (Frame(where.file, where.line, where.function, ""),) if where else ()
    name = thread_name(0, f"the thread that ran {code.co_name}()")
    _emit(
        ORDER.learn(
            node,
            lock,
            held,
            name,
            0,
            -1,
            relation=ORDER_SIGNALS,
            taken_at=site_at((code, offset)),
            where=(where, stack),
        )
    )


# -- the signalling side ---------------------------------------------------------
def on_semaphore(sem: Any, waits: bool, depth: int = 2) -> None:
    """`primitives.on_semaphore`: a Semaphore used as a signal is waited on
    (an untimed blocking ``acquire()``) or given (``release()``); the caller
    of that call is ``depth`` frames out of this one (1 when the C core's
    ``release`` calls this: it has no frame of its own)."""
    if waits:
        waiting(sem, "Semaphore", _native.caller_frame(depth))
    elif not _gives_nothing(sem):
        signalled(sem, _native.caller_frame(depth))


def _gives_nothing(cond: Any) -> bool:
    """`signalled`'s own first answer, "nothing to learn", read before the
    caller's frame is looked up: the signalling thread holds no lock but
    ``cond``'s own and nobody has waited on ``cond`` under a lock (a
    ThreadPoolExecutor worker's release of its idle Semaphore after every
    task: issue 17)."""
    try:
        rec = tls.rec
    except AttributeError:
        return True
    try:
        if rec.wait is None and rec.held:
            own = _own_lock(cond)
            for h in rec.held:
                if h is not own and h is not cond:
                    return False
        node = _known(cond)
        return node is None or not node.waiters
    except Exception:  # never hurt the host: signalled() decides
        return False


def on_probe(lock: Any) -> None:
    """``lock``'s holder probed it (`primitives.on_probe`) while holding other
    locks, or the lock is watched: if ``Condition.notify`` did, a signal.
    Runs inside the application's ``notify()``: it never raises."""
    try:
        f = _native.caller_frame(1)
        for _ in range(4):
            if f is None:
                return
            if f.f_code.co_name == "notify" and f.f_globals.get("__name__") == "threading":
                cond = f.f_locals.get("self")
                if cond is not None and getattr(cond, "_lock", None) is lock:
                    signalled(cond, f.f_back)
                return
            f = f.f_back
    except Exception:  # never hurt the host
        return


def signalled(cond: Any, frame: FrameType | None) -> None:
    """``cond`` is notified (``frame``: the notify() call's caller): learn
    ``S -> L`` for the locks the signalling call needs."""
    try:
        rec = tls.rec
    except AttributeError:
        return
    try:
        own = _own_lock(cond)
        held = (
            [] if rec.wait is not None else [h for h in rec.held if h is not own and h is not cond]
        )
        # (rec.wait: given from a signal handler run inside one of this
        # thread's waits: what the thread holds is the interrupted code's.)
        node = _known(cond)
        if not held and (node is None or not node.waiters):
            return  # nothing to learn (a worker's release of an idle Semaphore)
        taker = getattr(own, "_dw_taker", 0) if getattr(own, "_owner", None) is rec else 0
        site = getattr(own, "_site", None) if taker else None
        if site is None:
            user = user_frame(frame)
            if user is None:
                return
            taker, site = id(user), (user.f_code, user.f_lasti)
        code, offset = site
        if held:
            if node is None:
                node = _node(cond, _kind_of(cond, frame))
                if node is None:
                    return
            for h in held:
                if id(h) in node._dw_after or held_as_token(h, frame):
                    continue
                _learn(
                    node,
                    h,
                    rec,
                    held,
                    relation=ORDER_SIGNALS,
                    taken_at=site_at(getattr(h, "_site", None)),
                )
        if node is not None and rec.wait is None:
            _taken_before(node, cond, rec, held, taker, code, offset)
    except Exception:  # never hurt the host
        return


def _taken_before(
    node: SignalNode,
    cond: Any,
    rec: Any,
    held: list[Any],
    taker: int,
    code: CodeType,
    offset: int,
) -> None:
    """The locks held by S's waiters so far that this signalling call took
    earlier (and released): ``S -> L``."""
    for ref in node.waiters:
        lock = ref()
        if lock is None or id(lock) in node._dw_after or any(lock is h for h in held):
            continue
        site = getattr(lock, "_site", None)
        if site is None or site[0] is not code or site[1] >= offset:
            continue
        mine = getattr(lock, "_dw_taker", 0)
        if taker and mine and mine != taker:
            continue
        _learn(node, lock, rec, held, relation=ORDER_SIGNALS, taken_at=site_at(site))


def _kind_of(cond: Any, frame: FrameType | None) -> str:
    """What ``cond`` belongs to, from the frames that notify it."""
    own_type = getattr(cond, "_dw_type", None)
    if own_type is not None:
        return str(own_type)  # a Semaphore used as a signal
    f = frame
    for _ in range(4):
        if f is None:
            break
        this = f.f_locals.get("self") if f.f_code.co_name != "<module>" else None
        if this is not None and this is not cond:
            if isinstance(this, threading.Event):
                return "Event"
            if isinstance(this, threading.Barrier):
                return "Barrier"
            if getattr(this, "not_full", None) is cond:
                return ROOM
            if getattr(this, "not_empty", None) is cond:
                return ITEMS
            if getattr(this, "_condition", None) is cond:
                return "Future"
        f = f.f_back
    return "Condition"
