"""``async with`` on an asyncio Lock: the tracked ``__aenter__``/``__aexit__``
(issue 15's speed), which take and release the Lock as the acquire and
release wrappers do, without calling them.

Each program runs in a subprocess (its own asyncio, patched and unpatched
there), one task at a time: nothing ever waits, so nothing can hang.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import asyncio, json, os, sys
if "--pure" in sys.argv:  # the Python path: no C helpers (aio._c_helper)
    os.environ["DEADLOCKWATCH_PURE"] = "1"
import deadlockwatch
from deadlockwatch._track import aio, state

if "--fallback" in sys.argv:  # the original release called, not inlined
    aio._same_code = lambda *args: False
deadlockwatch.enable(text=False, interval=100.0)
if "--off" in sys.argv:  # the control: as without the detector
    deadlockwatch.disable()

def owner(lock):
    return aio.mark(lock, "_dw_owner")

def line(lock):
    site = state.site_at(aio.mark(lock, "_dw_taken"))
    return None if site is None else site.line

def held(task):
    return aio.held.get(task)

OUT = {}
"""


def _run(body: str, *args: str) -> dict[str, object]:
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(OUT))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("args", [(), ("--fallback",), ("--pure",)])
def test_async_with_notes_owner_site_and_chain_and_forgets_them(args: tuple[str, ...]) -> None:
    out = _run(
        """
        import inspect

        async def main():
            me = asyncio.current_task()
            a, b = asyncio.Lock(), asyncio.Lock()
            here = inspect.currentframe().f_lineno
            async with a:
                OUT["a_owner"] = owner(a) is me
                OUT["a_line"] = line(a) - here
                async with b:
                    OUT["b_line"] = line(b) - here
                    OUT["held_b"] = held(me) is b
                    OUT["b_prev_a"] = aio.mark(b, "_dw_prev") is a
                OUT["held_a"] = held(me) is a
                OUT["b_owner_after"] = owner(b)
            OUT["a_owner_after"] = owner(a)
            OUT["held_after"] = me in aio.held
            OUT["shared"] = [aio.mark(x, "_dw_shared", False) for x in (a, b)]
            OUT["locked"] = [a.locked(), b.locked()]

        asyncio.run(main())
        """,
        *args,
    )
    assert out == {
        "a_owner": True,
        "a_line": 1,  # the ``async with`` line, not asyncio's nor ours
        "b_line": 4,
        "held_b": True,
        "b_prev_a": True,
        "held_a": True,
        "b_owner_after": None,
        "a_owner_after": None,
        "held_after": False,
        "shared": [False, False],
        "locked": [False, False],
    }


def test_async_with_and_acquire_note_the_same_kind_of_site() -> None:
    # Control of the line above: the acquire wrapper's site for ``await lock.acquire()``.
    out = _run(
        """
        import inspect

        async def main():
            lock = asyncio.Lock()
            here = inspect.currentframe().f_lineno
            await lock.acquire()
            OUT["acquire"] = line(lock) - here
            lock.release()
            async with lock:
                OUT["with"] = line(lock) - here

        asyncio.run(main())
        """
    )
    assert out == {"acquire": 1, "with": 4}


def test_async_with_released_out_of_order_keeps_the_tasks_last() -> None:
    out = _run(
        """
        async def main():
            me = asyncio.current_task()
            a, b = asyncio.Lock(), asyncio.Lock()
            async with a:
                await b.acquire()
            OUT["held_b"] = held(me) is b  # a's exit: b stays the last
            OUT["a_owner"] = owner(a)
            b.release()
            OUT["held_after"] = me in aio.held

        asyncio.run(main())
        """
    )
    assert out == {"held_b": True, "a_owner": None, "held_after": False}


@pytest.mark.parametrize("args", [(), ("--pure",)])
def test_async_with_exit_in_another_task_than_the_owner_is_no_mutex(args: tuple[str, ...]) -> None:
    """A Lock ``async with`` releases after another task took it (the block
    released it itself) is released by a task that does not own it: not
    owner-bound; the control, the same block without the handover, is."""
    out = _run(
        """
        async def main():
            plain, handed = asyncio.Lock(), asyncio.Lock()
            async with plain:
                pass

            async def take():
                await handed.acquire()

            async with handed:
                handed.release()
                await asyncio.create_task(take())
            OUT["plain"] = aio.mark(plain, "_dw_shared", False)
            OUT["handed"] = aio.mark(handed, "_dw_shared", False)
            OUT["locked"] = handed.locked()

        asyncio.run(main())
        """,
        *args,
    )
    assert out == {"plain": False, "handed": True, "locked": False}


def _sites_of_odd_callers(*args: str) -> dict[str, object]:
    return _run(
        """
        from deadlockwatch._track import primitives

        OUT["c"] = aio._c_helper("aio_current_task") is not None
        OUT["accelerated"] = primitives.ACCELERATED
        lock = asyncio.Lock()

        async def main():
            # __aenter__ as a task's own coroutine: its caller is the loop's code.
            await asyncio.create_task(lock.__aenter__())
            OUT["own"] = str(state.site_at(aio.mark(lock, "_dw_taken")))
            OUT["own_owner"] = owner(lock) is not None
            await lock.__aexit__(None, None, None)
            OUT["after"] = [owner(lock), lock.locked()]

        asyncio.run(main())
        """,
        *args,
    )


def test_async_with_notes_the_same_with_the_c_helpers_as_without() -> None:
    """The C helpers (the current task, the caller's site) and the Python path
    note the same, for a caller in asyncio's own code too (a task whose own
    coroutine is ``__aenter__``); the C ones are in use where the core is."""
    c, pure = _sites_of_odd_callers(), _sites_of_odd_callers("--pure")
    assert c.pop("c") == c.pop("accelerated")
    assert pure.pop("c") is False and pure.pop("accelerated") is False
    assert c == pure
    assert c["own_owner"] is True and c["after"] == [None, False]


@pytest.mark.parametrize("args", [(), ("--fallback",)])
def test_exit_of_a_lock_not_held_raises_as_without_the_detector(args: tuple[str, ...]) -> None:
    body = """
        async def main():
            lock = asyncio.Lock()
            try:
                async with lock:
                    lock.release()
            except RuntimeError as e:
                OUT["error"] = str(e)

        asyncio.run(main())
        """
    out = _run(body, *args)
    off = _run(body, "--off")
    assert out == off == {"error": "Lock is not acquired."}


def test_a_subclass_with_its_own_acquire_and_release_has_them_called() -> None:
    out = _run(
        """
        CALLS = []

        class Mine(asyncio.Lock):
            async def acquire(self):
                CALLS.append("acquire")
                return await super().acquire()

            def release(self):
                CALLS.append("release")
                super().release()

        class Plain(asyncio.Lock):
            pass

        async def main():
            me = asyncio.current_task()
            mine, plain = Mine(), Plain()
            async with mine:
                OUT["mine_owner"] = owner(mine) is me
            async with plain:
                OUT["plain_owner"] = owner(plain) is me
            OUT["calls"] = CALLS
            OUT["owners_after"] = [owner(mine), owner(plain)]

        asyncio.run(main())
        """
    )
    assert out == {
        "mine_owner": True,
        "plain_owner": True,
        "calls": ["acquire", "release"],
        "owners_after": [None, None],
    }


def test_set_on_the_lock_class_while_enabled_and_inherited_again_after() -> None:
    out = _run(
        """
        mixin = asyncio.locks._ContextManagerMixin
        OUT["on"] = [name in asyncio.Lock.__dict__ for name in ("__aenter__", "__aexit__")]
        OUT["same_code"] = aio._same_code(asyncio.Lock.release._dw_original,
                                          aio._release_as_in_asyncio)
        deadlockwatch.disable()
        OUT["off"] = [name in asyncio.Lock.__dict__ for name in ("__aenter__", "__aexit__")]
        OUT["inherited"] = asyncio.Lock.__aenter__ is mixin.__aenter__
        deadlockwatch.enable(text=False, interval=100.0)
        OUT["again"] = [name in asyncio.Lock.__dict__ for name in ("__aenter__", "__aexit__")]

        async def main():
            lock = asyncio.Lock()
            async with lock:
                OUT["owner"] = owner(lock) is asyncio.current_task()

        asyncio.run(main())
        deadlockwatch.disable()
        OUT["off_again"] = "__aenter__" in asyncio.Lock.__dict__
        """
    )
    assert out == {
        "on": [True, True],
        "same_code": True,
        "off": [False, False],
        "inherited": True,
        "again": [True, True],
        "owner": True,
        "off_again": False,
    }


def test_the_current_task_is_found_by_thread_and_as_asyncio_finds_it() -> None:
    """``aio.by_thread`` has the loop a thread's patched ``run_forever`` runs,
    while it runs (a second ``run`` refused inside it leaves it so); the C
    helper (where built) answers ``asyncio.current_task()`` in a task, and
    None outside any loop, as the Python path does."""
    out = _run(
        """
        import threading
        current = aio._c_helper("aio_current_task") or (lambda: None)

        async def inner():
            return None

        async def main():
            me = threading.get_ident()
            OUT["mine"] = aio.by_thread.get(me) is asyncio.get_running_loop()
            OUT["task"] = aio._c_helper("aio_current_task") is None or (
                current() is asyncio.current_task()
            )
            other = asyncio.new_event_loop()
            coro = inner()
            try:
                other.run_until_complete(coro)
            except RuntimeError:
                OUT["refused"] = True
            coro.close()
            other.close()
            OUT["kept"] = aio.by_thread.get(me) is asyncio.get_running_loop()

        asyncio.run(main())
        OUT["after"] = dict(aio.by_thread)
        OUT["outside"] = current()
        """
    )
    assert out == {
        "mine": True,
        "task": True,
        "refused": True,
        "kept": True,
        "after": {},
        "outside": None,
    }
