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
  a bounded Queue with room, ``get()``, ``Future.result()``,
  ``Barrier.wait()``, ``Condition.wait()``;
* a signal of S given by a call that needs L teaches ``S -> L``
  (``signals``).  The call needs L if it holds L when it signals, or took L
  earlier in the same invocation (the function that called ``set()``,
  ``put()``, ``notify()``...: the frame that took L is the frame that
  signalled, at an earlier offset).  Taken earlier is read from the lock:
  a tracked Lock keeps its last take (``_dw_taker``, ``_site``) and the one
  before (``_dw_prev``), and each thread keeps its last few signals
  (``ThreadRecord.signals``), so the two meet whichever comes first: the wait
  (the signal then looks at the locks held by S's waiters) or the signal (the
  wait then looks at its locks' previous take).

A cycle through a signal node is a ``wait-under-lock`` finding: ``L -> S ->
L`` for the plain case, and with lock orders between (A holds L1 and waits
for S; S's signaller needs L2; L2's holder takes L1) as one finding.  The
signal's own lock is left out on both sides (a wait releases it), so are
tokens (`order.held_as_token`), and so are the locks of a thread that gives
or waits for a signal from a signal handler run inside one of its waits (they
are the interrupted code's); timed waits teach nothing.  No lock gates a
wait, as a lock held on both sides gates a lock order: the waiter holds it
while it waits, so a signaller that needs it cannot have it.  What is missed:
a lock taken earlier in the signalling call when a third take came
between the signal and the wait, and a signal whose own lock is an RLock
(``Condition()``'s default, a Future's) is told by its code, not its frame.
"""

from __future__ import annotations

import collections
import functools
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
#: How many of its last signals each thread keeps, and for how many threads
#: (the latest, exited ones included) they are kept.
KEEP = 8
THREADS = 256

#: The threads' signal rings: (ring, thread record).  A ring is written by its
#: own thread only; this deque changes once per signalling thread.
_rings: collections.deque[tuple[list[tuple[int, int, CodeType, int]], Any]] = collections.deque(
    maxlen=THREADS
)

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
_nodes_lock = _native.allocate_lock()


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
            node = _nodes[key] = SignalNode(kind, getattr(lock, "_created", None), ref)
    return node


def forget() -> None:
    """Forget every signal node and the signals each thread gave."""
    with _nodes_lock:
        _nodes.clear()
        for ring, _rec in _rings:
            ring.clear()


def _emit(finding: Finding | None) -> None:
    if finding is not None and report is not None:
        report(finding)


def _own_lock(cond: Any) -> Any:
    return getattr(cond, "_lock", None)


def _learn(src: Any, dst: Any, rec: Any, held: list[Any], **kw: Any) -> None:
    name = thread_name(rec.ident, rec.name)
    _emit(ORDER.learn(src, dst, held, name, rec.ident, rec.serial, **kw))


# -- the waiting side ------------------------------------------------------------
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
        # The signal's own lock is released by the wait: neither needed nor a gate.
        held = [h for h in held if h is not own]
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
        last = mine[-1]
        if id(node) not in last._dw_after:
            # No gates: a lock held across the wait cannot gate it (the
            # signaller that needs it cannot have it while the wait lasts).
            _learn(last, node, rec, [], relation=ORDER_WAITS)
    except Exception:  # never hurt the host
        return


def _signalled_before(node: SignalNode, cond: Any, lock: Any, held: list[Any]) -> None:
    """``lock``'s take before the current one was in a call that then
    signalled ``cond``: that call needs ``lock`` (``S -> L``)."""
    prev = getattr(lock, "_dw_prev", None)
    if not prev or prev[1] is None:
        return
    taker, (code, offset) = prev
    key = id(cond)
    for ring, rec in list(_rings):
        for cid, frame_id, scode, soffset in list(ring):
            if cid != key or scode is not code or soffset <= offset:
                continue
            if taker and frame_id and taker != frame_id:
                continue
            site = site_at((code, soffset))
            where = (site, (Frame(site.file, site.line, site.function, ""),) if site else ())
            _learn(
                node,
                lock,
                rec,
                held,
                relation=ORDER_SIGNALS,
                taken_at=site_at((code, offset)),
                where=where,
            )
            return


# -- the signalling side ---------------------------------------------------------
def signalled(cond: Any, frame: FrameType | None) -> None:
    """``cond`` is notified (``frame``: the notify() call's caller): remember
    the call, and learn ``S -> L`` for the locks it needs."""
    try:
        rec = tls.rec
    except AttributeError:
        return
    try:
        own = _own_lock(cond)
        taker = getattr(own, "_dw_taker", 0) if getattr(own, "_owner", None) is rec else 0
        site = getattr(own, "_site", None) if taker else None
        if site is None:
            user = user_frame(frame)
            if user is None:
                return
            taker, site = id(user), (user.f_code, user.f_lasti)
        code, offset = site
        ring = rec.signals
        if ring is None:
            ring = rec.signals = []
            with _nodes_lock:
                _rings.append((ring, rec))
        entry = (id(cond), taker, code, offset)
        if not ring or ring[-1] != entry:
            ring.append(entry)
            if len(ring) > KEEP:
                del ring[0]
        held = rec.held
        if rec.wait is not None:
            # Given from a signal handler (or a callback) run inside one of
            # this thread's waits: what the thread holds is the interrupted
            # code's, not the signalling call's.
            held = []
        elif len(held) > 1 or (held and held[0] is not own):
            held = [h for h in held if h is not own]
        else:
            held = []
        node = _known(cond)
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
        if node is not None:
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
