"""Lock-order inversions among asyncio Locks (issue 15).

Each program runs in a subprocess under a timeout (`run_program`), its tasks
one after another: the orders are learned, nothing ever waits, so nothing
can hang.  Every negative (the same order twice, a gate Lock around both
orders, a timed acquire, lock orders off) has its control: the same program
without the rescue is reported.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _programs import run_program

from deadlockwatch._report.load import finding_from_json
from deadlockwatch._report.text import format_text

PRELUDE = """
import asyncio, json, os, sys
import deadlockwatch
from deadlockwatch._track.order import ORDER

RESCUE = os.environ.get("RESCUE") == "1"
deadlockwatch.enable(report=os.environ["REPORT"], **json.loads(os.environ.get("OPTS", "{}")))

def done():
    print(json.dumps({"finished": True, "suppressed": len(ORDER.suppressed_cycles)}), flush=True)
"""

#: Name -> program: two orders of two asyncio Locks, A then B and B then A,
#: taken one after the other (never concurrently); with RESCUE, the rescue.
PROGRAMS = {
    # Two tasks; rescued, the second takes them in the same order.
    "two_tasks": """
        async def take(first, second):
            async with first:
                async with second:
                    pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            await asyncio.create_task(take(a, b), name="transfer")
            await asyncio.create_task(take(a, b) if RESCUE else take(b, a), name="audit")
    """,
    # One task, at two times.
    "one_task": """
        async def take(first, second):
            async with first:
                async with second:
                    pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            await take(a, b)
            await take(a, b) if RESCUE else await take(b, a)
    """,
    # Rescued, a gate Lock is held around both orders.
    "gate": """
        async def take(gate, first, second):
            async with gate:
                async with first:
                    async with second:
                        pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            gates = [asyncio.Lock()] * 2 if RESCUE else [asyncio.Lock(), asyncio.Lock()]
            await asyncio.create_task(take(gates[0], a, b), name="transfer")
            await asyncio.create_task(take(gates[1], b, a), name="audit")
    """,
    # A Semaphore(1) around both orders is no gate (BoundedSemaphore or not):
    # reported either way; RESCUE is ignored.
    "semaphore": """
        async def take(sem, first, second):
            async with sem:
                async with first:
                    async with second:
                        pass

        async def main():
            a, b, sem = asyncio.Lock(), asyncio.Lock(), asyncio.Semaphore(1)
            await asyncio.create_task(take(sem, a, b), name="transfer")
            await asyncio.create_task(take(sem, b, a), name="audit")
    """,
    # Rescued, the second order is taken under asyncio.timeout(): it ends.
    "timed": """
        async def take(first, second, timed):
            async with first:
                if timed:
                    async with asyncio.timeout(5):
                        async with second:
                            pass
                else:
                    async with second:
                        pass

        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            await asyncio.create_task(take(a, b, False), name="transfer")
            await asyncio.create_task(take(b, a, RESCUE), name="audit")
    """,
    # Three Locks, three tasks.
    "three": """
        async def take(first, second):
            async with first:
                async with second:
                    pass

        async def main():
            a, b, c = asyncio.Lock(), asyncio.Lock(), asyncio.Lock()
            await asyncio.create_task(take(a, b), name="t1")
            await asyncio.create_task(take(b, c), name="t2")
            await asyncio.create_task(take(c, b) if RESCUE else take(c, a), name="t3")
    """,
}

_MAIN = """
asyncio.run(main())
done()
"""


def _run(
    tmp_path: Path, name: str, rescue: bool, opts: str = "{}"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out, findings = run_program(
        tmp_path,
        PRELUDE + textwrap.dedent(PROGRAMS[name]) + _MAIN,
        env={"RESCUE": "1" if rescue else "0", "OPTS": opts},
        timeout=40,
    )
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines and lines[-1].get("finished"), out
    return lines[-1], findings


def _old(name: str) -> None:
    if name == "timed" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is 3.11+")


def test_two_tasks_inversion_names_the_tasks_and_sites(tmp_path: Path) -> None:
    _, findings = _run(tmp_path, "two_tasks", rescue=False)
    (record,) = findings
    assert record["kind"] == "lock-order-inversion", record
    assert record["cause"].startswith("2 locks are taken in a cyclic order by 2 tasks: ")
    assert [r["type"] for r in record["resources"]] == ["asyncio.Lock"] * 2
    assert sorted(e["thread"] for e in record["order"]) == ["task audit", "task transfer"]
    for e in record["order"]:
        assert e["at"]["function"] == "take" and e["at"]["file"].endswith("prog.py"), e
        # The stack is the task's, from its coroutine on (not the loop's frames).
        assert [f["function"] for f in e["stack"]] == ["take"], e["stack"]
        assert e["stack"][-1]["code"] == "async with second:"
    text = format_text(finding_from_json(record))
    assert "POTENTIAL DEADLOCK: lock-order inversion" in text
    assert "taken by 'task audit' at " in text and "taken by 'task transfer' at " in text
    assert "no task is waiting, but tasks taking these locks concurrently" in text


def test_one_task_at_two_times_is_reported_as_seen_in_one_task(tmp_path: Path) -> None:
    _, findings = _run(tmp_path, "one_task", rescue=False)
    (record,) = findings
    assert record["kind"] == "lock-order-inversion", record
    assert (
        "(seen in one task only; other tasks running the same code can deadlock)"
        in (record["cause"])
    )
    assert record["single_thread"] is True


def test_three_locks_in_a_cycle(tmp_path: Path) -> None:
    _, findings = _run(tmp_path, "three", rescue=False)
    (record,) = findings
    assert record["cause"].startswith("3 locks are taken in a cyclic order by 3 tasks")
    assert sorted(e["thread"] for e in record["order"]) == ["task t1", "task t2", "task t3"]


def test_three_locks_control_a_cycle_of_two_is_reported_alone(tmp_path: Path) -> None:
    # The rescue of "three" closes b -> c -> b instead: a different cycle,
    # which tells the three-lock test did not pass by any cycle at all.
    _, findings = _run(tmp_path, "three", rescue=True)
    (record,) = findings
    assert record["cause"].startswith("2 locks are taken in a cyclic order by 2 tasks")


@pytest.mark.parametrize("name", ["two_tasks", "one_task", "gate", "timed"])
def test_rescued_is_quiet(tmp_path: Path, name: str) -> None:
    _old(name)
    result, findings = _run(tmp_path, name, rescue=True)
    assert findings == [], findings
    # The gate: the cycle was seen, and suppressed; the others never closed one.
    assert result["suppressed"] == (1 if name == "gate" else 0), result


@pytest.mark.parametrize("name", ["two_tasks", "one_task", "gate", "timed"])
def test_rescued_is_quiet_control_without_the_rescue_is_reported(tmp_path: Path, name: str) -> None:
    _old(name)
    result, findings = _run(tmp_path, name, rescue=False)
    assert [f["kind"] for f in findings] == ["lock-order-inversion"], findings
    assert result["suppressed"] == 0, result


def test_a_semaphore_is_no_gate(tmp_path: Path) -> None:
    result, findings = _run(tmp_path, "semaphore", rescue=True)
    assert [f["kind"] for f in findings] == ["lock-order-inversion"], findings
    assert result["suppressed"] == 0, result


def test_lock_order_off_learns_nothing(tmp_path: Path) -> None:
    # Control: test_two_tasks_inversion_names_the_tasks_and_sites (the default).
    _, findings = _run(tmp_path, "two_tasks", rescue=False, opts='{"lock_order": false}')
    assert findings == [], findings


def test_a_lock_released_by_another_task_is_no_mutex(tmp_path: Path) -> None:
    """A Lock released by a task that did not take it is a latch: a cycle
    through it is not reported (the control: the same program with the
    taker releasing it is)."""
    body = """
        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()

            async def a_then_b():
                await a.acquire()
                async with b:
                    pass
                if not RESCUE:
                    a.release()

            async def release_a():
                a.release()

            await asyncio.create_task(a_then_b(), name="taker")
            if RESCUE:
                await asyncio.create_task(release_a(), name="other")

            async def b_then_a():
                async with b:
                    async with a:
                        pass

            await asyncio.create_task(b_then_a(), name="audit")

        asyncio.run(main())
        done()
    """
    kinds = {}
    for rescue in (True, False):
        out, findings = run_program(
            tmp_path,
            PRELUDE + textwrap.dedent(body),
            env={"RESCUE": "1" if rescue else "0"},
            timeout=40,
        )
        assert '"finished": true' in out, out
        kinds[rescue] = [f["kind"] for f in findings]
        (tmp_path / "report.jsonl").unlink(missing_ok=True)
    assert kinds == {True: [], False: ["lock-order-inversion"]}, kinds
