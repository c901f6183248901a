"""The pytest plugin and async tests (issue 15): under pytest-asyncio, a
deadlock among a test's tasks fails that test in about a second with the
report, and the session goes on.

Each run is a pytest subprocess (pytester) with a timeout, so a guard that
failed to break a deadlock fails this test rather than hanging it.  The
negatives (an Event set by ``loop.call_later`` under a held asyncio.Lock;
a correct lock order) pass under the guard; their positive control is the
deadlocked test beside them, and a test whose only rescue would be the
guard's own callback, which is reported.
"""

from __future__ import annotations

import pytest
from _programs import run_flagged

pytest.importorskip("pytest_asyncio")

TESTS = """
import asyncio, time
import pytest

async def one(x, y):
    async with x:
        await asyncio.sleep(0.05)
        async with y:
            pass

@pytest.mark.asyncio
async def test_abba():
    a, b = asyncio.Lock(), asyncio.Lock()
    await asyncio.gather(
        asyncio.create_task(one(a, b), name="transfer"),
        asyncio.create_task(one(b, a), name="audit"),
    )

@pytest.mark.asyncio
async def test_same_order():
    a, b = asyncio.Lock(), asyncio.Lock()
    await asyncio.gather(one(a, b), one(a, b))

@pytest.mark.asyncio
async def test_event_set_by_call_later_under_a_lock():
    ev, lock = asyncio.Event(), asyncio.Lock()
    async def waiter():
        async with lock:
            asyncio.get_running_loop().call_later(1.0, ev.set)
            await ev.wait()
    async def other():
        await asyncio.sleep(0.05)
        async with lock:
            pass
    await asyncio.gather(waiter(), other())

@pytest.mark.asyncio
async def test_event_only_the_lock_waiter_sets():
    # Reported although the guard's own callback is scheduled on the loop:
    # it gives no signal, so it does not count as a rescue.
    ev, lock = asyncio.Event(), asyncio.Lock()
    async def holder():
        async with lock:
            await ev.wait()
    async def setter():
        await asyncio.sleep(0.05)
        async with lock:
            ev.set()
    await asyncio.gather(
        asyncio.create_task(holder(), name="holder"),
        asyncio.create_task(setter(), name="setter"),
    )

@pytest.mark.asyncio
async def test_two_tasks_awaiting_each_other():
    box = {}
    async def first():
        await asyncio.sleep(0.05)
        await box["second"]
    async def second():
        await asyncio.sleep(0.05)
        await box["first"]
    box["first"] = asyncio.create_task(first(), name="first")
    box["second"] = asyncio.create_task(second(), name="second")
    await asyncio.gather(box["first"], box["second"])

def test_next():
    pass
"""


def test_a_deadlocked_async_test_fails_at_once_with_the_report(
    pytester: pytest.Pytester,
) -> None:
    result, times = run_flagged(pytester, TESTS)
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_abba FAILED*",
            "*test_same_order PASSED*",
            "*test_event_set_by_call_later_under_a_lock PASSED*",
            "*test_event_only_the_lock_waiter_sets FAILED*",
            "*test_two_tasks_awaiting_each_other FAILED*",
            "*test_next PASSED*",
        ]
    )
    out = result.stdout.str()
    # DeadlockError delivered at the Lock's await, so `async with` unwound.
    assert "DeadlockError: deadlock: 2 tasks each wait for a resource held by the next" in out
    assert "'transfer' waits for asyncio.Lock" in out
    assert "Task 'audit' (on the event loop of thread 'MainThread'" in out
    assert "'holder'" in out and "'setter'" in out
    assert "'first'" in out and "'second'" in out
    # Tasks awaiting each other cannot be cancelled (CPython's Task.cancel
    # recurses around the cycle): the guard stops the loop instead.
    assert "RuntimeError: Event loop stopped before Future completed." in out
    assert "_pytest_plugin.py" not in out.split("deadlockwatch deadlock")[1].split("=====")[0]
    result.stdout.fnmatch_lines(["*deadlockwatch: 3 deadlock*"])
    # Found past the threshold (0.1 s), confirmed, broken at the guard's next
    # look (0.1 s): about a second, with room for a loaded machine.
    for name in (
        "test_abba",
        "test_event_only_the_lock_waiter_sets",
        "test_two_tasks_awaiting_each_other",
    ):
        assert times[name] < 5.0, times
    assert times["test_event_set_by_call_later_under_a_lock"] >= 1.0, times


def test_without_the_flag_there_is_no_guard(pytester: pytest.Pytester) -> None:
    """The deadlocked test hangs without deadlockwatch (here until
    ``asyncio.wait_for`` gives up): the guard is what ended it above."""
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        async def one(x, y):
            async with x:
                await asyncio.sleep(0.05)
                async with y:
                    pass

        @pytest.mark.asyncio
        async def test_abba():
            a, b = asyncio.Lock(), asyncio.Lock()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(one(a, b), one(b, a)), 1.5)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)


def test_a_test_that_does_not_unwind_is_cancelled_after_a_grace(
    pytester: pytest.Pytester,
) -> None:
    """Tasks that catch DeadlockError and wait on for good: the guard cancels
    the test's task 5 s later (GUARD_GRACE), so the session still goes on.
    (They sleep: a wait on an Event nobody sets would be a deadlock found
    anew, and raise-all would give them DeadlockError there too.)"""
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from deadlockwatch import DeadlockError

        @pytest.mark.asyncio
        async def test_catches_and_hangs():
            a, b = asyncio.Lock(), asyncio.Lock()
            async def one(x, y):
                try:
                    async with x:
                        await asyncio.sleep(0.05)
                        async with y:
                            pass
                except DeadlockError:
                    await asyncio.sleep(3600)  # never unwinds
            await asyncio.gather(one(a, b), one(b, a))

        def test_next():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--deadlockwatch", "-p", "no:cacheprovider", "-v", timeout=120
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_catches_and_hangs FAILED*",
            "*test_next PASSED*",
            "*CancelledError: deadlockwatch: the deadlocked test did not unwind*",
        ]
    )
