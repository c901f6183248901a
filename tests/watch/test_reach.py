"""Who can reach an object: bytecode liveness and the reachability walk.

The liveness tests read code objects only.  The walk's tests park real
threads (daemon, every wait bounded) holding the object in different ways,
and ask `_reach.reach` from the test's thread, as the watcher would.
"""

from __future__ import annotations

import dis
import queue
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deadlockwatch._watch import liveness as _liveness
from deadlockwatch._watch import reach as _reach

# -- liveness ----------------------------------------------------------------------


def _calls(fn: Callable[..., Any], callee: str) -> list[int]:
    """Offsets of the calls of ``callee`` in ``fn`` (the instruction a frame
    blocked in that call is at)."""
    out = []
    instrs = list(dis.get_instructions(fn))
    for i, ins in enumerate(instrs):
        if ins.argval == callee and ins.opname in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL"):
            for later in instrs[i + 1 :]:
                if later.opname.startswith("CALL") and later.opname != "CALL_INTRINSIC_1":
                    out.append(later.offset)
                    break
    assert out, f"no call of {callee} in {fn.__name__}"
    return out


def _sample_dead(ev: Any, t: Any) -> Any:
    ev.is_set()
    while t.is_alive():
        time.sleep(0.05)
    return t


def _sample_loop(ev: Any, t: Any) -> None:
    while t.is_alive():
        time.sleep(0.05)
        ev.is_set()


def _sample_handler(ev: Any, t: Any) -> None:
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        ev.set()


def _sample_locals(ev: Any, t: Any) -> Any:
    time.sleep(0.05)
    return locals()


def _sample_closure() -> Callable[[], Any]:
    ev = object()

    def inner() -> Any:
        return ev

    time.sleep(0.05)
    return inner


def test_a_local_never_loaded_again_is_dead() -> None:
    (at,) = _calls(_sample_dead, "sleep")
    assert _liveness.locals_after(_sample_dead.__code__, at) == {"t"}


def test_a_local_loaded_later_in_a_loop_is_live() -> None:
    (at,) = _calls(_sample_loop, "sleep")
    assert {"ev", "t"} <= _liveness.locals_after(_sample_loop.__code__, at)


def test_a_local_used_by_an_exception_handler_is_live() -> None:
    (at,) = _calls(_sample_handler, "sleep")
    assert "ev" in _liveness.locals_after(_sample_handler.__code__, at)


def test_a_function_that_calls_locals_keeps_every_local_live() -> None:
    (at,) = _calls(_sample_locals, "sleep")
    assert {"ev", "t"} <= _liveness.locals_after(_sample_locals.__code__, at)


def test_pytests_rewritten_asserts_do_not_keep_every_local_live() -> None:
    # pytest's rewritten asserts call @py_builtins.locals() only to ask whether
    # a name is local, for the failure message.
    import ast

    from _pytest.assertion.rewrite import rewrite_asserts

    source = "import time\ndef f(ev, t):\n    t.join(0.1)\n    assert len(t.name) == 2\n"
    tree = ast.parse(source)
    rewrite_asserts(tree, source.encode(), "sample.py", None)
    namespace: dict[str, Any] = {}
    exec(compile(tree, "sample.py", "exec"), namespace)
    f = namespace["f"]
    assert "locals" in f.__code__.co_names
    (at,) = _calls(f, "join")
    assert "ev" not in _liveness.locals_after(f.__code__, at)
    # Positive control: the same function calling locals() itself.
    plain = "def f(ev, t):\n    t.join(0.1)\n    return locals()\n"
    exec(compile(plain, "plain.py", "exec"), namespace)
    (at,) = _calls(namespace["f"], "join")
    assert "ev" in _liveness.locals_after(namespace["f"].__code__, at)


def test_a_cell_is_dead_in_its_frame_once_the_closure_is_made() -> None:
    (at,) = _calls(_sample_closure, "sleep")
    live = _liveness.locals_after(_sample_closure.__code__, at)
    assert "inner" in live and "ev" not in live


def test_names_the_rest_of_a_function_loads() -> None:
    (at,) = _calls(_sample_dead, "sleep")
    names = _liveness.names_after(_sample_dead.__code__, at)
    assert {"is_alive", "time", "sleep"} <= names and "is_set" not in names


# -- the walk ------------------------------------------------------------------------


class _Parked:
    """Threads parked on an untracked event until the test ends."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, fn: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
        ready = threading.Event()

        def run() -> None:
            fn(ready, self.release, *args)

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        assert ready.wait(10)
        self.threads.append(t)
        return t

    def stop(self) -> None:
        self.release.set()
        for t in self.threads:
            t.join(10)


@pytest.fixture
def parked() -> Iterator[_Parked]:
    p = _Parked()
    try:
        yield p
    finally:
        p.stop()


def _frames() -> dict[int, types.FrameType]:
    me = threading.get_ident()
    return {k: v for k, v in sys._current_frames().items() if k != me}


def _holds_live(ready: threading.Event, release: threading.Event, box: list[Any]) -> None:
    ev = box.pop()
    ready.set()
    release.wait(30)
    repr(ev)  # ev is loaded after the wait: live


def _holds_dead(ready: threading.Event, release: threading.Event, box: list[Any]) -> None:
    ev = box.pop()
    ev.is_set()
    ready.set()
    release.wait(30)  # ev is never loaded again: dead


def _holds_nothing(ready: threading.Event, release: threading.Event) -> None:
    ready.set()
    release.wait(30)


def test_a_thread_with_the_object_in_a_live_local_reaches_it(parked: _Parked) -> None:
    ev = threading.Event()
    t = parked.start(_holds_live, [ev], name="holder")
    bystander = parked.start(_holds_nothing, name="bystander")
    found = _reach.reach([ev], _frames())
    assert t.ident in found.threads and "the local 'ev'" in found.threads[t.ident]
    assert bystander.ident not in found.threads
    assert found.shared == [] and found.complete


def test_a_thread_whose_local_is_dead_does_not_reach_it(parked: _Parked) -> None:
    ev = threading.Event()
    t = parked.start(_holds_dead, [ev], name="holder")
    found = _reach.reach([ev], _frames())
    assert t.ident not in found.threads
    # Positive control: the same thread with the local live reaches it.
    ev2 = threading.Event()
    t2 = parked.start(_holds_live, [ev2], name="holder-2")
    assert t2.ident in _reach.reach([ev2], _frames()).threads


def _waits_on(ready: threading.Event, release: threading.Event, ev: threading.Event) -> None:
    ready.set()
    release.wait(30)


def test_a_threads_own_arguments_are_its_own(parked: _Parked) -> None:
    ev = threading.Event()
    mine = threading.Event()

    def target() -> None:
        mine.set()
        parked.release.wait(30)

    t = threading.Thread(target=target, args=(), name="owner", daemon=True)
    t._dw_test_arg = None  # type: ignore[attr-defined]
    t2 = threading.Thread(
        target=lambda e: parked.release.wait(30) and e, args=(ev,), name="arg-owner", daemon=True
    )
    t.start()
    t2.start()
    parked.threads += [t, t2]
    assert mine.wait(10)
    # The holder of the Thread object (this thread, excluded anyway) does not
    # count; the thread itself does.
    found = _reach.reach([ev], _frames())
    assert t2.ident in found.threads
    assert t.ident not in found.threads


def test_an_object_travelling_in_a_queue_is_reached_by_the_queues_holder(
    parked: _Parked,
) -> None:
    q: queue.Queue[Any] = queue.Queue()
    ev = threading.Event()
    t = parked.start(_holds_live, [q], name="consumer")
    q.put(("wake", ev))
    found = _reach.reach([ev], _frames())
    assert t.ident in found.threads


GLOBAL_EVENT = threading.Event()


class _Registry:
    event = threading.Event()


def test_module_globals_and_class_attributes_are_shared(parked: _Parked) -> None:
    found = _reach.reach([GLOBAL_EVENT], _frames())
    assert any("module global 'GLOBAL_EVENT'" in s for s in found.shared)
    assert "GLOBAL_EVENT" in found.names
    found = _reach.reach([_Registry.event], _frames())
    assert any("class attribute _Registry.event" in s for s in found.shared)
    # Positive control: a local object is shared by nobody.
    assert _reach.reach([threading.Event()], _frames()).shared == []


def test_a_signal_handler_reaching_it_is_found() -> None:
    signal = pytest.importorskip("signal")
    ev = threading.Event()
    old = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, lambda *a: ev.set())
    try:
        found = _reach.reach([ev], _frames())
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert found.rescues == ["the handler of SIGUSR1"]
    # Held by C alone, the handler also makes the object reachable by all.
    assert any("cannot see" in s for s in found.shared)
    assert _reach.reach([ev], _frames()).rescues == []


def _holds_generator(ready: threading.Event, release: threading.Event, box: list[Any]) -> None:
    gen = box.pop()
    ready.set()
    release.wait(30)
    next(gen, None)


def test_a_suspended_generator_holding_it_counts_for_the_generators_holder(
    parked: _Parked,
) -> None:
    ev = threading.Event()

    def fixture_like(e: threading.Event) -> Iterator[None]:
        yield
        e.set()

    gen = fixture_like(ev)
    next(gen)
    t = parked.start(_holds_generator, [gen], name="runner")
    del gen
    found = _reach.reach([ev], _frames())
    assert t.ident in found.threads


def test_past_its_bound_the_walk_says_so(parked: _Parked) -> None:
    ev = threading.Event()
    node: Any = ev
    for _ in range(6):
        node = [node]
    parked.start(_holds_live, [node], name="deep")
    assert not _reach.reach([ev], _frames(), max_levels=3).complete
    # The default depth reaches it; no time bound (under a load of 10 the
    # default 0.5 s ran out once in a full run).
    assert _reach.reach([ev], _frames(), max_seconds=60).complete


def test_a_thread_still_starting_can_reach_what_its_thread_object_holds() -> None:
    # Thread.start() waits on the new thread's `_started` Event while the
    # thread sits in threading's `_limbo`, with no frame yet: it can run.
    t = threading.Thread(target=lambda: None, name="newborn", daemon=True)
    limbo = threading._limbo  # type: ignore[attr-defined]
    limbo[t] = t
    try:
        found = _reach.reach([t._started], _frames())  # type: ignore[attr-defined]
    finally:
        del limbo[t]
    assert found.rescues and "'newborn', which is starting" in found.rescues[0]
    # Positive control: out of _limbo (never started), nobody reaches it.
    assert _reach.reach([t._started], _frames()).rescues == []  # type: ignore[attr-defined]


def test_the_walks_keep_to_their_share_of_the_watchers_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deadlockwatch._track import native as _native
    from deadlockwatch._watch import capture as _capture

    ev = threading.Event()
    monkeypatch.setattr(_capture, "_next_walk", _native.monotonic() + 100.0)
    monkeypatch.setattr(_capture, "_REACH_CACHE", {})
    assert _capture._Builder(_frames())._reach(id(ev), ev, frozenset()) is None
    # Without the budget (a test that ends, in pytest) it walks, and keeps
    # the answer for the same waits.
    info = _capture._Builder(_frames(), budget=False)._reach(id(ev), ev, frozenset({1}))
    assert info is not None and info.threads == ()
    assert _capture._Builder(_frames())._reach(id(ev), ev, frozenset({1})) is info
    # After a walk, the next waits nine times as long as it took.
    monkeypatch.setattr(_capture, "_next_walk", 0.0)
    before = _native.monotonic()
    assert _capture._Builder(_frames())._reach(id(ev), ev, frozenset({2})) is not None
    assert _capture._next_walk > before


def _inside_with(ready: threading.Event, release: threading.Event, box: list[Any]) -> None:
    obj = box.pop()
    with obj:  # its bound __exit__ waits on this frame's value stack
        del obj
        ready.set()
        release.wait(30)


def test_a_with_blocks_exit_on_a_value_stack_is_no_unseen_holder(parked: _Parked) -> None:
    cond = threading.Condition()
    parked.start(_inside_with, [cond], name="inside")
    assert _reach.reach([cond], _frames()).shared == []
    # Positive control: the exit of a semaphore is a release, which is what a
    # wait on it needs: held where the collector cannot see, it could rescue.
    sem = threading.Semaphore(1)
    parked.start(_inside_with, [sem], name="inside-sem")
    found = _reach.reach([sem], _frames())
    assert any("__exit__" in s and "cannot see" in s for s in found.shared), found.shared


# -- the analysis with reach, on snapshots built by hand --------------------------------


def _event_snapshot(reach: Any, *, running: frozenset[int] = frozenset({77})) -> Any:
    """'waiter' holds L and waits (untimed) on Event E; 'setter' waits for L.
    Thread 77 (outside the snapshot) runs; ``reach`` says who reaches E."""
    from dataclasses import replace

    from _snapshots import Snap

    b = Snap()
    lock = b.lock()
    event = b.lock(type="Event", owner_bound=False, free=0)
    b.thread("waiter", holds=[lock], waits=event)
    b.thread("setter", waits=lock)
    snap = b.build(others_running=True)
    resources = dict(snap.resources)
    resources[event] = replace(resources[event], kind="signal", verb="set", reach=reach)
    whereabouts = {77: ("bystander", "at app.py:9 in poll: time.sleep(0.1)")}
    return replace(snap, resources=resources, running=running, whereabouts=whereabouts)


def test_a_signal_only_stuck_threads_reach_is_a_deadlock_though_others_run() -> None:
    from deadlockwatch._analysis.deadlock import analyze
    from deadlockwatch._model import ReachInfo

    setter = 1002  # Snap's idents: 1000 + key
    (f,) = analyze(_event_snapshot(ReachInfo(threads=((setter, "its own Thread object"),))))
    assert f.kind == "deadlock"
    assert f.cause.startswith("'waiter' waits on Event(") and "'setter' needs" in f.cause
    assert f.conditions.no_preemption.holds
    # Positive control: the running bystander reaches it: no finding.
    reach = ReachInfo(threads=((setter, "own"), (77, "the local 'ev' of poll()")))
    assert analyze(_event_snapshot(reach)) == []


def test_a_signal_reached_through_a_global_is_probable_unless_running_code_names_it() -> None:
    from deadlockwatch._analysis.deadlock import analyze
    from deadlockwatch._model import ReachInfo

    shared = ("the module global 'READY' of app",)
    (f,) = analyze(_event_snapshot(ReachInfo(shared=shared, named_by=((1002, "names"),))))
    assert f.kind == "probable-deadlock"
    assert f.rescuers == (
        "'bystander' is at app.py:9 in poll: time.sleep(0.1); it can reach Event(created"
        " app.py:101) only through the module global 'READY' of app, and neither names it"
        " in the code it runs nor has touched it",
    )
    # The bystander's running code names the global: it may rescue them.
    named = ReachInfo(shared=shared, named_by=((1002, "names"), (77, "poll() names 'READY'")))
    assert analyze(_event_snapshot(named)) == []
    # A walk past its bounds, a signal handler or a starting thread: no finding.
    assert analyze(_event_snapshot(ReachInfo(complete=False))) == []
    assert analyze(_event_snapshot(ReachInfo(rescues=("the handler of SIGALRM",)))) == []
    # Nobody running at all: the global changes nothing, it is a deadlock.
    (f,) = analyze(_event_snapshot(ReachInfo(shared=shared), running=frozenset()))
    assert f.kind == "deadlock"


def test_of_waiters_waiting_as_long_a_cycle_starts_at_the_signal_waiter() -> None:
    """Tasks whose waits one scan of their loop found wait "as long" (the
    same blocked_for): the cycle starts at the one waiting on a signal, so
    the cause names who could give it, whatever the idents.  Here the
    setter comes first and has the lower ident (the order before)."""
    from dataclasses import replace

    from _snapshots import Snap

    from deadlockwatch._analysis.deadlock import analyze
    from deadlockwatch._model import ReachInfo

    b = Snap()
    lock = b.lock()
    event = b.lock(type="Event", owner_bound=False, free=0)
    setter = b.thread("setter", waits=lock, blocked_for=5.0)
    b.thread("waiter", holds=[lock], waits=event, blocked_for=5.0)
    snap = b.build()
    resources = dict(snap.resources)
    reach = ReachInfo(threads=((1000 + setter, "its own Thread object"),))
    resources[event] = replace(resources[event], kind="signal", verb="set", reach=reach)
    (f,) = analyze(replace(snap, resources=resources))
    assert f.kind == "deadlock"
    assert f.cause.startswith("'waiter' waits on Event("), f.cause
    assert [s.thread for s in f.cycle] == [2, 1]
