"""The pytest plugin and anyio's pytest plugin (issue 15): an async test
marked ``@pytest.mark.anyio`` on anyio's asyncio backend runs under the
guard as a pytest-asyncio test does, so a deadlock among its tasks fails
that test in about a second with the report, and the session goes on.

Each run is a pytest subprocess (pytester) with a timeout.  The negative (a
task holding an asyncio.Lock awaits an Event that a timer sets, while the
other task waits for that Lock) passes, after the timer, with no finding;
its positive control is the same test with the timer removed, which is
reported.  Skipped where anyio is not installed.
"""

from __future__ import annotations

import pytest
from _programs import run_flagged

pytest.importorskip("anyio")

TESTS = """
import asyncio
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

async def one(x, y):
    async with x:
        await asyncio.sleep(0.05)
        async with y:
            pass

@pytest.mark.anyio
async def test_abba():
    a, b = asyncio.Lock(), asyncio.Lock()
    await asyncio.gather(
        asyncio.create_task(one(a, b), name="transfer"),
        asyncio.create_task(one(b, a), name="audit"),
    )

@pytest.mark.anyio
@pytest.mark.parametrize("rescue", [True, False], ids=["rescued", "unrescued"])
async def test_event_under_a_lock(rescue):
    # The holder awaits an Event under the Lock its setter needs first: with
    # the timer (the rescue) it is set after 1.5 s and both end; without,
    # nothing can ever set it.
    ev, lock = asyncio.Event(), asyncio.Lock()
    async def holder():
        async with lock:
            if rescue:
                asyncio.get_running_loop().call_later(1.5, ev.set)
            await ev.wait()
    async def setter():
        await asyncio.sleep(0.05)
        async with lock:
            ev.set()
    await asyncio.gather(
        asyncio.create_task(holder(), name="holder"),
        asyncio.create_task(setter(), name="setter"),
    )

def test_next():
    pass
"""


def test_a_deadlocked_anyio_test_fails_at_once_with_the_report(
    pytester: pytest.Pytester,
) -> None:
    result, times = run_flagged(pytester, TESTS)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_abba FAILED*",
            "*test_event_under_a_lock?rescued? PASSED*",
            "*test_event_under_a_lock?unrescued? FAILED*",
            "*test_next PASSED*",
        ]
    )
    out = result.stdout.str()
    # DeadlockError delivered at the Lock's await, so `async with` unwound.
    assert "DeadlockError: deadlock: 2 tasks each wait for a resource held by the next" in out
    assert "'transfer' waits for asyncio.Lock" in out
    assert "Task 'audit' (on the event loop of thread 'MainThread'" in out
    assert "'holder'" in out and "'setter'" in out
    # The guard's frame is not in the await chains (anyio's runner is
    # outermost, the guard next).
    report = out.split("deadlockwatch deadlock")[1].split("=====")[0]
    assert "_pytest_plugin.py" not in report, report
    # Two deadlocks (the rescued test is not among them).
    result.stdout.fnmatch_lines(["*deadlockwatch: 2 deadlock*"])
    # Found past the threshold (0.1 s), confirmed, broken at the guard's next
    # look (0.1 s): about a second, with room for a loaded machine.
    assert times["test_abba"] < 5.0, times
    assert times["test_event_under_a_lock[unrescued]"] < 5.0, times
    # The rescued test waited for its timer, as long as the watcher had to
    # look at it (the unrescued one was reported in less).
    assert times["test_event_under_a_lock[rescued]"] >= 1.5, times


def test_without_the_flag_there_is_no_guard(pytester: pytest.Pytester) -> None:
    """Without deadlockwatch the deadlocked anyio test hangs (here until
    ``asyncio.wait_for`` gives up): the guard is what ended it above."""
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        async def one(x, y):
            async with x:
                await asyncio.sleep(0.05)
                async with y:
                    pass

        @pytest.mark.anyio
        async def test_abba():
            a, b = asyncio.Lock(), asyncio.Lock()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(one(a, b), one(b, a)), 1.5)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)


TRIO_TESTS = """
import threading
import anyio
import pytest

@pytest.fixture
def anyio_backend():
    return "trio"

@pytest.mark.anyio
@pytest.mark.parametrize("rescue", [True, False], ids=["rescued", "unrescued"])
async def test_threads_abba(rescue):
    # Two worker threads of anyio.to_thread take two Locks in opposite
    # orders, the Barrier making both hold their first: with the rescue the
    # second take has a timeout (1.5 s) and both end; without, they hang.
    a, b = threading.Lock(), threading.Lock()
    both = threading.Barrier(2, timeout=10)
    def one(x, y):
        with x:
            both.wait()
            if y.acquire(timeout=1.5 if rescue else -1):
                y.release()
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, one, a, b)
        tg.start_soon(anyio.to_thread.run_sync, one, b, a)

def test_next():
    pass
"""


def test_a_thread_deadlock_in_an_anyio_trio_test_fails_at_once(
    pytester: pytest.Pytester,
) -> None:
    """On anyio's trio backend the guard leaves the test alone (trio's loop
    is not asyncio's), but the test's worker threads are tracked: their ABBA
    is broken with DeadlockError in each, so the test fails in about a
    second with the report and the session goes on; its rescued twin (a
    timeout on the second take, a timed cycle at most) passes."""
    pytest.importorskip("trio")
    result, times = run_flagged(pytester, TRIO_TESTS)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_threads_abba?rescued? PASSED*",
            "*test_threads_abba?unrescued? FAILED*",
            "*test_next PASSED*",
        ]
    )
    out = result.stdout.str()
    assert "DeadlockError: deadlock: 2 threads each wait for a resource held by the next" in out
    assert "'wrapper from anyio.to_thread.run_sync" in out
    result.stdout.fnmatch_lines(["*deadlockwatch: 1 deadlock*"])
    assert times["test_threads_abba[unrescued]"] < 5.0, times
    assert times["test_threads_abba[rescued]"] >= 1.5, times
