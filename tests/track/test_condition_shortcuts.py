"""threading.Condition's calls of its lock (``__enter__``, ``__exit__``,
``_release_save``, ``_acquire_restore``) made in C while enabled on the C
path (`waits._shortcut`): the same calls, the same answers, and every take of
a tracked lock through them still attributed to the application's line."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import start

import deadlockwatch
from deadlockwatch._track import primitives, state, waits

_NAMES = ("__enter__", "__exit__", "_release_save", "_acquire_restore", "_is_owned")

needs_c = pytest.mark.skipif(not primitives.ACCELERATED, reason="the C path only")


@pytest.fixture
def on() -> Iterator[None]:
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    try:
        yield
    finally:
        deadlockwatch.disable()


def _line_of_next(offset: int = 1) -> int:
    frame = sys._getframe(1)
    return frame.f_lineno + offset


def _taken_at(lock: Any) -> int:
    site = state.site_at(lock._site)
    assert site is not None
    return site.line


@needs_c
def test_installed_while_enabled_and_named_as_the_originals() -> None:
    originals = {name: threading.Condition.__dict__[name] for name in _NAMES}
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    try:
        for name in _NAMES:
            installed = threading.Condition.__dict__[name]
            assert installed is not originals[name]
            # The watcher's reach tells a `with` block's bound __exit__ by its name.
            assert getattr(threading.Condition(), name).__name__ == name
    finally:
        deadlockwatch.disable()
    assert {name: threading.Condition.__dict__[name] for name in _NAMES} == originals


def test_an_original_that_does_something_else_is_left() -> None:
    def enter_other(self: Any) -> Any:
        return self._lock.acquire(False)

    def exit_fixed(self: Any, a: Any, b: Any, c: Any) -> Any:
        return self._lock.__exit__(a, b, c)

    def exit_same(self: Any, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    assert waits.PLAIN[waits._condition_enter](enter_other) is None  # reads another name
    assert waits.PLAIN[waits._condition_exit](exit_fixed) is None  # another signature
    # Control: threading's own code, as these read it, gets the shortcut.
    same = waits.PLAIN[waits._condition_exit](exit_same)
    assert (same is not None) == primitives.ACCELERATED


class _PyLock:
    """A lock of the application's, in Python: what a Condition calls on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.raw = threading.Lock()

    def __enter__(self) -> str:
        self.calls.append(("enter", ()))
        self.raw.acquire()
        return "entered"

    def __exit__(self, *args: Any) -> bool:
        self.calls.append(("exit", tuple(a if a is None else type(a) for a in args)))
        self.raw.release()
        return True  # swallows the exception

    def acquire(self, *args: Any) -> bool:
        self.calls.append(("acquire", args))
        return self.raw.acquire(*args)

    def release(self) -> str:
        self.calls.append(("release", ()))
        self.raw.release()
        return "released"


def _exercise() -> tuple[Any, ...]:
    lock = _PyLock()
    cond = threading.Condition(lock)  # type: ignore[arg-type]
    owned_out = cond._is_owned()  # type: ignore[attr-defined]
    with cond as entered:
        owned_in = cond._is_owned()  # type: ignore[attr-defined]
    with cond:
        raise KeyError("swallowed by the lock's __exit__")
    cond.acquire()
    saved = cond._release_save()  # type: ignore[attr-defined]
    restored = cond._acquire_restore("state")  # type: ignore[attr-defined]
    cond.release()
    with pytest.raises(RuntimeError) as exc:
        cond.__exit__(None, None, None)  # not held: the lock's own error
    return entered, saved, restored, owned_out, owned_in, lock.calls, str(exc.value)


def test_a_condition_over_an_applications_lock_behaves_the_same() -> None:
    off = _exercise()
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    try:
        on = _exercise()
    finally:
        deadlockwatch.disable()
    assert on == off
    assert off[:5] == ("entered", None, None, False, True)


@needs_c
def test_takes_through_a_condition_are_the_applications_line(on: None) -> None:
    cond = threading.Condition(threading.Lock())
    line = _line_of_next()
    with cond:
        assert _taken_at(cond._lock) == line  # type: ignore[attr-defined]
    ev = threading.Event()
    line = _line_of_next()
    ev.set()  # takes its Condition's lock inside threading's Event.set
    assert _taken_at(ev._cond._lock) == line  # type: ignore[attr-defined]
    # A blocking wait: the lock taken again on the way out (_acquire_restore).
    ready = threading.Event()

    def setter() -> None:
        ready.wait(10)
        with cond:
            cond.notify()

    t = start(setter)
    with cond:
        ready.set()
        line = _line_of_next()
        assert cond.wait(10)
        assert _taken_at(cond._lock) == line  # type: ignore[attr-defined]
    t.join(10)


class _SlotLock:
    """An application's lock without an instance dict: the C shortcuts
    remember its methods per type (issue 17), so replacing one, or a subclass
    that overrides one, must be seen at the next call."""

    __slots__ = ("log", "raw")

    def __init__(self) -> None:
        self.log: list[str] = []
        self.raw = threading.Lock()

    def __enter__(self) -> Any:
        self.log.append("enter")
        return self.raw.__enter__()

    def __exit__(self, *args: Any) -> Any:
        self.log.append("exit")
        return self.raw.__exit__(*args)

    def acquire(self, *args: Any) -> bool:
        self.log.append("acquire")
        return self.raw.acquire(*args)

    def release(self) -> None:
        self.log.append("release")
        self.raw.release()


def _replaced_methods_run() -> list[str]:
    class Lock(_SlotLock):
        __slots__ = ()

    class Sub(Lock):
        __slots__ = ()

        def __enter__(self) -> Any:
            self.log.append("sub enter")
            return self.raw.__enter__()

    first, sub = Lock(), Sub()
    for lock in (first, first, sub, first):
        with threading.Condition(lock):  # type: ignore[arg-type]
            pass

    def enter_again(self: Any) -> Any:
        self.log.append("replaced enter")
        return self.raw.__enter__()

    sys._clear_type_cache()  # 3.10 numbers the types' version tags from 0 again
    Lock.__enter__ = enter_again  # type: ignore[method-assign]
    cond = threading.Condition(first)  # type: ignore[arg-type]
    with cond:
        assert cond._is_owned()  # type: ignore[attr-defined]
    del Lock.__enter__  # the base's again
    with cond:
        pass
    return [*first.log, "|", *sub.log]


def test_replaced_methods_and_subclasses_of_a_slotted_lock_are_seen() -> None:
    off = _replaced_methods_run()
    deadlockwatch.enable(interval=3600.0, threshold=3600.0)
    try:
        on = _replaced_methods_run()
    finally:
        deadlockwatch.disable()
    assert on == off
    three = ["enter", "exit"] * 3
    replaced = ["replaced enter", "acquire", "exit", "enter", "exit"]
    assert off == [*three, *replaced, "|", "sub enter", "exit"]


def test_a_changed_thread_record_class_still_tracks_waits(on: None) -> None:
    # The C wait writes the record's wait/poll slots at their offsets while
    # the class is unchanged; a change to the class is checked again.
    state.ThreadRecord._dw_test_mark = True  # type: ignore[attr-defined]
    try:
        cond = threading.Condition()
        seen: list[Any] = []

        def waiter() -> None:
            with cond:
                cond.wait(10)

        t = start(waiter)
        for _ in range(1000):
            recs = [w for w in list(state.blocked.values()) if getattr(w, "_cond", None) is cond]
            if recs:
                seen.append((recs[0], recs[0].rec.wait is recs[0]))
                break
            threading.Event().wait(0.01)
        with cond:
            cond.notify()
        t.join(10)
        assert seen and seen[0][1]  # registered on its record while blocked
        assert seen[0][0].rec.wait is None  # and unregistered after
    finally:
        del state.ThreadRecord._dw_test_mark  # type: ignore[attr-defined]
