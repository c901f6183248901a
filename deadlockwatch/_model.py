"""Plain value objects: what the analysis reads (a snapshot) and what it returns (findings).

Nothing here touches a live lock or thread, so the analysis can be tested on
snapshots built by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEADLOCK = "deadlock"
TIMED_CYCLE = "timed-cycle"
LOCK_ORDER_INVERSION = "lock-order-inversion"
#: A potential deadlock through a signal: a wait made while holding a lock
#: that the signal's signaller needs (learned as lock order is, `signals`).
WAIT_UNDER_LOCK = "wait-under-lock"
#: What an `OrderEdge` says: ``then``, ``held`` then ``acquired`` (a lock
#: order); ``waits``, ``held`` held during a wait on the signal ``acquired``;
#: ``signals``, the signal ``held`` given by a call that took ``acquired``.
ORDER_THEN, ORDER_WAITS, ORDER_SIGNALS = "then", "waits", "signals"
HELD_AT_EXIT = "held-at-exit"
#: Stuck unless a thread that never touched what they wait for, and can reach
#: it only through a global, rescues them (see `ReachInfo`).
PROBABLE_DEADLOCK = "probable-deadlock"

#: What a resource is, for the analysis: who can release or signal it.
#: ``lock``: its holders (or, if not owner-bound, any thread that can run);
#: ``signal``: any thread that can run (Condition, Event, Barrier, Queue);
#: ``join``: the joined thread; ``future``: the thread running it, or the
#: workers of its executor; ``import``: the thread importing the module;
#: ``any``/``all``: a wait for several futures (``parts``).
LOCK_KIND = "lock"
SIGNAL_KIND = "signal"
#: An event loop whose thread is blocked: held by that thread, needed by its tasks.
LOOP_KIND = "loop"


@dataclass(frozen=True)
class Site:
    """A place in the source: where a lock was made, taken or waited for."""

    file: str
    line: int
    function: str

    @property
    def short_file(self) -> str:
        """The file relative to the current directory when it lies below it."""
        return short_path(self.file)

    def __str__(self) -> str:
        return f"{self.short_file}:{self.line} in {self.function}"


def short_path(path: str) -> str:
    try:
        cwd = os.getcwd()
    except OSError:
        return path
    prefix = cwd.rstrip(os.sep) + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else path


@dataclass(frozen=True)
class Frame:
    """One frame of a thread's stack: location and source line, never local values."""

    file: str
    line: int
    function: str
    code: str


@dataclass(frozen=True)
class ReachInfo:
    """Which threads could give a signal (set an Event, notify a Condition,
    fill or drain a queue, complete a future): those that can reach it.

    Worked out by the watcher from the live heap (`_reach`); each entry pairs
    a thread ident with how it reaches the object, in words.
    """

    #: Threads whose live locals (or own target and arguments) reach it.
    threads: tuple[tuple[int, str], ...] = ()
    #: Ways every thread can reach it: module globals, class attributes,
    #: holders deadlockwatch cannot see.  Empty: none.
    shared: tuple[str, ...] = ()
    #: Threads whose running code names one of the globals of ``shared``.
    named_by: tuple[tuple[int, str], ...] = ()
    #: Ways a thread that can run reaches it though it is in no snapshot: a
    #: Python signal handler (run by the main thread), a thread starting.
    rescues: tuple[str, ...] = ()
    #: False: the search hit a bound; every thread counts as reaching it.
    complete: bool = True
    #: An asyncio signal: the ident of its event loop's thread.  It gives the
    #: signal only by running a task or callback of the loop: those that
    #: hold it are in ``rescues``; those that can reach it only through a
    #: global (``shared``) and name it there too.
    loop_thread: int | None = None
    #: What else on that loop can still run, in words: any of it might reach
    #: it through the global by code that names it elsewhere (not certain, at
    #: most probable).
    loop_busy: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceInfo:
    """A tracked primitive as seen in one snapshot.

    ``key`` identifies it inside the snapshot; ``id`` is the printable identity
    (the object's address, as in its repr).  ``holders`` pairs thread keys with
    the units each holds.  ``owner_bound`` is true when only its holders can
    release it (false for a Lock seen released by another thread, or a
    semaphore used as a signal).
    """

    key: int
    id: str
    type: str
    created_at: Site | None
    holders: tuple[tuple[int, int], ...] = ()
    free: int = 0
    owner_bound: bool = True
    #: One of LOCK_KIND, SIGNAL_KIND, "join", "future", "import", "any", "all".
    kind: str = LOCK_KIND
    #: Its state in words ("empty", "pending in ThreadPoolExecutor 'pool'").
    detail: str = ""
    #: What a thread would do to release a waiter ("notify", "set").
    verb: str = ""
    #: A name that replaces the ``Type(created ...)`` label.
    title: str = ""
    #: The executor (or other pool) it belongs to, in words.
    group: str = ""
    #: For a wait on several futures: the keys of its parts.
    parts: tuple[int, ...] = ()
    #: For a signal: who can reach it (None: not worked out; any thread that
    #: can run counts as able to give it).
    reach: ReachInfo | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """``Lock(created app.py:12)``: how reports name it."""
        if self.title:
            return self.title
        where = (
            f"created {self.created_at.short_file}:{self.created_at.line}"
            if self.created_at
            else self.id
        )
        return f"{self.type}({where})"

    @property
    def long_label(self) -> str:
        """The label with the address, for when two share a creation site."""
        if self.title:
            return f"{self.title} ({self.id})"
        where = (
            f"created {self.created_at.short_file}:{self.created_at.line}, "
            if self.created_at
            else ""
        )
        return f"{self.type}({where}{self.id})"


def resource_labels(resources: Iterable[ResourceInfo]) -> dict[int, str]:
    """Each resource's label, made unique with its address where two would read alike."""
    resources = list(resources)
    counts: dict[str, int] = {}
    for r in resources:
        counts[r.label] = counts.get(r.label, 0) + 1
    return {r.key: r.label if counts[r.label] == 1 else r.long_label for r in resources}


@dataclass(frozen=True)
class WaitInfo:
    """A blocked wait: on which resource, for how long, with which timeout."""

    resource: int
    blocked_for: float
    timeout: float | None = None
    site: Site | None = None
    token: int = 0
    #: A timed wait repeated back to back in a loop: ``blocked_for`` counts
    #: from the first of them, and ``token`` is the loop's, not one call's.
    polling: bool = False


@dataclass(frozen=True)
class HeldInfo:
    """A resource a thread holds, how many units, and where it took it."""

    resource: int
    count: int = 1
    acquired_at: Site | None = None


@dataclass(frozen=True)
class ThreadInfo:
    """A thread as seen in one snapshot."""

    key: int
    ident: int
    name: str
    daemon: bool = False
    alive: bool = True
    wait: WaitInfo | None = None
    held: tuple[HeldInfo, ...] = ()
    stack: tuple[Frame, ...] = ()
    #: In a forked child: a thread of the parent, gone at the fork.
    lost_at_fork: bool = False
    #: For a thread of another process (a finding across processes): its
    #: process id and name; 0 and "" for this process's own threads.
    pid: int = 0
    process: str = ""
    #: For an asyncio task (issue 15): the thread running its event loop, in
    #: words (``'MainThread' (ident 1402...)``); "" for a thread.  A task's
    #: ``key`` and ``ident`` are its ``id()``, its ``stack`` its await chain.
    loop_thread: str = ""

    @property
    def is_task(self) -> bool:
        return bool(self.loop_thread)


@dataclass(frozen=True)
class Snapshot:
    """The threads blocked in tracked waits, the holders of what they wait for,
    and whether some other live thread (not in the snapshot) can still run."""

    threads: Mapping[int, ThreadInfo]
    resources: Mapping[int, ResourceInfo]
    others_running: bool = False
    #: Threads a Python signal handler may wake (the main thread, when the
    #: application installed one): their waits on signals can progress.
    wakeable: frozenset[int] = frozenset()
    #: Idents of the live threads not in ``threads`` (they can all run).
    running: frozenset[int] = frozenset()
    #: Every live thread's ident -> (name, where it is), when reach was worked out.
    whereabouts: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    #: Some reach was not worked out this time (the walks' time budget was
    #: spent): look again later even if the waits stay the same.
    reach_deferred: bool = False


@dataclass(frozen=True)
class Check:
    """One Coffman condition and the one-line reason for its verdict."""

    holds: bool
    reason: str


@dataclass(frozen=True)
class Conditions:
    """The four Coffman conditions for one finding."""

    mutual_exclusion: Check
    hold_and_wait: Check
    no_preemption: Check
    circular_wait: Check

    def all_hold(self) -> bool:
        return all(c.holds for c in self.items().values())

    def items(self) -> dict[str, Check]:
        return {
            "mutual_exclusion": self.mutual_exclusion,
            "hold_and_wait": self.hold_and_wait,
            "no_preemption": self.no_preemption,
            "circular_wait": self.circular_wait,
        }


@dataclass(frozen=True)
class CycleStep:
    """``thread`` waits for ``waits_for``, which is held by ``held_by`` (the next
    thread of the cycle; ``holders`` lists every holder of a multi-unit resource
    that the snapshot describes)."""

    thread: int
    waits_for: int
    held_by: int
    holders: tuple[int, ...] = ()


@dataclass(frozen=True)
class OrderEdge:
    """A learned lock order: ``thread`` took ``acquired`` while holding ``held``,
    at ``site``, with ``stack`` (resource keys index `Finding.resources`).

    Through a signal (``relation``, see ORDER_WAITS and ORDER_SIGNALS): a wait
    on the signal ``acquired`` while holding ``held``, at ``site``; or the
    signal ``held`` given at ``site`` by a call that took the lock
    ``acquired`` at ``taken_at`` (held at the signal, or earlier in it)."""

    held: int
    acquired: int
    thread: str
    thread_ident: int = 0
    site: Site | None = None
    stack: tuple[Frame, ...] = ()
    relation: str = "then"
    taken_at: Site | None = None


@dataclass(frozen=True)
class Finding:
    """One problem found: its kind, the cycle, every thread involved and why.

    ``threads`` lists the cycle's threads first, then any other thread stuck
    behind them.  ``key`` identifies the finding across snapshots (the waits of
    the cycle's threads), so that it is reported once.
    """

    kind: str
    cycle: tuple[CycleStep, ...]
    threads: tuple[ThreadInfo, ...]
    resources: tuple[ResourceInfo, ...]
    conditions: Conditions
    cause: str
    key: frozenset[int] = field(default=frozenset(), compare=False)
    pid: int = 0
    time: float = 0.0
    #: For a lock-order inversion: the cycle of learned orders, in order.
    order: tuple[OrderEdge, ...] = ()
    #: For a lock-order inversion: every order of the cycle was learned by one thread.
    single_thread: bool = False
    #: Other threads that look blocked in primitives deadlockwatch does not
    #: track (made before it was enabled, say): "'name' at file:line: code".
    #: They are counted as able to run, so they never make a deadlock.
    outside: tuple[str, ...] = ()
    #: For a probable deadlock: each thread that could still rescue the stuck
    #: ones, where it is, and why it was not counted.
    rescuers: tuple[str, ...] = ()

    def thread(self, key: int) -> ThreadInfo:
        for t in self.threads:
            if t.key == key:
                return t
        raise KeyError(key)

    def resource(self, key: int) -> ResourceInfo:
        for r in self.resources:
            if r.key == key:
                return r
        raise KeyError(key)

    def resource_label(self, key: int) -> str:
        return resource_labels(self.resources)[key]

    def thread_label(self, key: int) -> str:
        """The thread's name, made unique with its ident when two share it."""
        t = self.thread(key)
        if sum(1 for o in self.threads if o.name == t.name) > 1:
            return f"{t.name} ({t.ident})"
        return t.name
