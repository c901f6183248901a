"""The analysis on snapshots built by hand: no threads, no live locks.

`Snap` builds a `Snapshot` from a few declarative calls: resources first
(``lock``/``pool``), then threads that hold some of them and may wait for one.
Holders and free units of every resource are derived from what the threads
hold, so a snapshot is consistent unless a test says otherwise (``free=``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _snapshots import Snap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deadlockwatch._analysis.deadlock import analyze, stuck_threads
from deadlockwatch._model import (
    DEADLOCK,
    TIMED_CYCLE,
    Finding,
    HeldInfo,
    ResourceInfo,
    Snapshot,
    ThreadInfo,
    resource_labels,
)
from deadlockwatch._report.text import format_text, to_json, to_json_line

COFFMAN = ("mutual_exclusion", "hold_and_wait", "no_preemption", "circular_wait")


# -- builder: `Snap` (tests/_snapshots.py) ----------------------------------------


def ring(n: int, *, timeouts: dict[int, float] | None = None) -> tuple[Snap, list[int], list[int]]:
    """n threads; thread i holds lock i and waits for lock i+1 (mod n)."""
    b = Snap()
    locks = [b.lock() for _ in range(n)]
    threads = [
        b.thread(
            f"T{i}",
            holds=[locks[i]],
            waits=locks[(i + 1) % n],
            timeout=(timeouts or {}).get(i),
        )
        for i in range(n)
    ]
    return b, locks, threads


# -- shared checks ------------------------------------------------------------


def assert_real_cycle(snap: Snapshot, f: Finding) -> None:
    """Each step's thread waits for ``waits_for``, held by ``held_by``, the next
    step's thread; or, for a signal nobody holds (a semaphore released by
    threads that hold no unit), ``held_by`` is a live thread that could give
    it, itself blocked in the cycle."""
    assert f.cycle
    for i, step in enumerate(f.cycle):
        nxt = f.cycle[(i + 1) % len(f.cycle)]
        t = snap.threads[step.thread]
        assert t.wait is not None and t.wait.resource == step.waits_for
        res = snap.resources[step.waits_for]
        holders = [h for h, _ in res.holders]
        if holders or res.owner_bound:
            assert step.held_by in holders
        else:
            signaller = snap.threads[step.held_by]
            assert signaller.alive and signaller.wait is not None
        assert step.held_by == nxt.thread
        assert set(step.holders) == {h for h in holders if h in snap.threads}
    assert len({s.thread for s in f.cycle}) == len(f.cycle)


def assert_all_conditions(f: Finding) -> None:
    items = f.conditions.items()
    assert list(items) == list(COFFMAN)
    for name, check in items.items():
        assert check.holds, (name, check.reason)
        assert check.reason
    assert f.conditions.all_hold()


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def cycle_keys(f: Finding) -> list[int]:
    return [s.thread for s in f.cycle]


def same_cycle(f: Finding, keys: list[int]) -> bool:
    """The cycle visits ``keys`` in this order, from any starting point."""
    got = cycle_keys(f)
    if len(got) != len(keys):
        return False
    i = got.index(keys[0]) if keys[0] in got else -1
    return i >= 0 and got[i:] + got[:i] == keys


# -- lock cycles --------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4])
def test_lock_cycle_is_one_deadlock(n: int) -> None:
    b, locks, threads = ring(n)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert_real_cycle(snap, f)
    assert same_cycle(f, threads)
    assert {t.key for t in f.threads} == set(threads)
    assert [t.key for t in f.threads[:n]] == cycle_keys(f)
    assert {r.key for r in f.resources} == set(locks)
    assert f.key == frozenset(5000 + k for k in threads)
    assert_all_conditions(f)
    reasons = {k: c.reason for k, c in f.conditions.items().items()}
    assert "free" in reasons["mutual_exclusion"]
    assert "holds" in reasons["hold_and_wait"]
    assert "timeout" in reasons["no_preemption"]
    for t in threads:
        assert repr(f"T{t - 1}") in reasons["circular_wait"]
    assert f"{n} threads" in f.cause
    assert stuck_threads(snap) == set(threads)


def test_cycle_starts_with_the_longest_waiter() -> None:
    b, _, threads = ring(3)
    b._threads[threads[1]]["blocked_for"] = 99.0
    f = only(analyze(b.build()))
    assert cycle_keys(f) == [threads[1], threads[2], threads[0]]


def test_thread_behind_a_cycle_is_listed_but_not_in_the_cycle() -> None:
    b, locks, threads = ring(2)
    behind = b.thread("behind", waits=locks[0])
    # Elsewhere, a thread waits for a lock held by a running thread: not stuck.
    other = b.lock()
    b.thread("runner", holds=[other])
    b.thread("patient", waits=other)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert set(cycle_keys(f)) == set(threads)
    assert behind not in cycle_keys(f)
    assert [t.key for t in f.threads] == [*cycle_keys(f), behind]
    assert f.key == frozenset(5000 + k for k in threads)
    assert_all_conditions(f)
    assert stuck_threads(snap) == {*threads, behind}


def test_chain_behind_a_cycle() -> None:
    b, locks, threads = ring(3)
    mid = b.lock()
    t_mid = b.thread("mid", holds=[mid], waits=locks[1])
    t_end = b.thread("end", waits=mid)
    f = only(analyze(b.build()))
    assert set(cycle_keys(f)) == set(threads)
    assert {t.key for t in f.threads} == {*threads, t_mid, t_end}
    assert f.key == frozenset(5000 + k for k in threads)


def test_two_independent_cycles_are_two_findings() -> None:
    b = Snap()
    a1, a2, c1, c2, c3 = (b.lock() for _ in range(5))
    x = [b.thread("A1", holds=[a1], waits=a2), b.thread("A2", holds=[a2], waits=a1)]
    y = [
        b.thread("C1", holds=[c1], waits=c2),
        b.thread("C2", holds=[c2], waits=c3),
        b.thread("C3", holds=[c3], waits=c1),
    ]
    snap = b.build()
    findings = analyze(snap)
    assert len(findings) == 2
    assert all(f.kind == DEADLOCK for f in findings)
    assert {frozenset(cycle_keys(f)) for f in findings} == {frozenset(x), frozenset(y)}
    for f in findings:
        assert_real_cycle(snap, f)
        assert_all_conditions(f)
        assert {t.key for t in f.threads} == set(cycle_keys(f))
    assert findings[0].key.isdisjoint(findings[1].key)


def test_running_holder_means_no_finding() -> None:
    b = Snap()
    l1, l2 = b.lock(), b.lock()
    b.thread("A", holds=[l1], waits=l2)
    b.thread("B", holds=[l2])  # running
    snap = b.build()
    assert analyze(snap) == []
    assert stuck_threads(snap) == set()


def test_chain_ending_in_a_running_thread_means_no_finding() -> None:
    b = Snap()
    la, lb, lc = b.lock(), b.lock(), b.lock()
    b.thread("A", holds=[la], waits=lb)
    b.thread("B", holds=[lb], waits=lc)
    b.thread("C", holds=[lc])
    snap = b.build()
    assert analyze(snap) == []
    assert stuck_threads(snap) == set()


def test_holder_outside_the_snapshot_counts_as_running() -> None:
    b = Snap()
    l1 = b.lock()
    b.thread("A", waits=l1)
    snap = b.build()
    r = snap.resources[l1]
    snap = Snapshot(
        threads=snap.threads,
        resources={l1: ResourceInfo(r.key, r.id, r.type, r.created_at, holders=((77, 1),))},
    )
    assert analyze(snap) == []


# -- timed waits --------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_timed_wait_in_cycle_is_a_timed_cycle(n: int) -> None:
    b, _, threads = ring(n, timeouts={n - 1: 2.5})
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == TIMED_CYCLE
    assert_real_cycle(snap, f)
    assert set(cycle_keys(f)) == set(threads)
    np = f.conditions.no_preemption
    assert not np.holds
    assert "2.5" in np.reason
    assert repr(f"T{n - 1}") in np.reason
    assert f.conditions.mutual_exclusion.holds
    assert f.conditions.hold_and_wait.holds
    assert f.conditions.circular_wait.holds
    assert "timeout" in f.cause
    assert stuck_threads(snap) == set()
    assert stuck_threads(snap, timed_waits_progress=False) == set(threads)


def test_every_wait_timed_is_still_never_a_deadlock() -> None:
    b, _, _ = ring(3, timeouts={0: 1.0, 1: 2.0, 2: 3.0})
    f = only(analyze(b.build()))
    assert f.kind == TIMED_CYCLE


def test_timed_waiter_behind_a_deadlock_adds_no_timed_cycle() -> None:
    b, locks, threads = ring(2)
    b.thread("impatient", waits=locks[0], timeout=1.0)
    f = only(analyze(b.build()))
    assert f.kind == DEADLOCK
    assert set(cycle_keys(f)) == set(threads)


def test_timed_cycle_and_deadlock_side_by_side() -> None:
    b = Snap()
    a1, a2, c1, c2 = (b.lock() for _ in range(4))
    b.thread("A1", holds=[a1], waits=a2)
    b.thread("A2", holds=[a2], waits=a1)
    b.thread("C1", holds=[c1], waits=c2, timeout=5.0)
    b.thread("C2", holds=[c2], waits=c1)
    findings = analyze(b.build())
    assert sorted(f.kind for f in findings) == [DEADLOCK, TIMED_CYCLE]
    kinds = {f.kind: {t.name for t in f.threads} for f in findings}
    assert kinds == {DEADLOCK: {"A1", "A2"}, TIMED_CYCLE: {"C1", "C2"}}


# -- racy snapshots -----------------------------------------------------------


def test_free_unit_in_the_cycle_means_no_finding() -> None:
    b = Snap()
    l1 = b.lock()
    l2 = b.lock(free=1)  # the holder released it between two reads
    b.thread("A", holds=[l1], waits=l2)
    b.thread("B", holds=[l2], waits=l1)
    snap = b.build()
    assert analyze(snap) == []
    assert stuck_threads(snap) == set()


def test_owner_bound_resource_without_holders_means_no_finding() -> None:
    b = Snap()
    l1 = b.lock(free=0)
    b.thread("A", waits=l1)
    assert analyze(b.build()) == []


def test_wait_for_unknown_resource_means_no_finding() -> None:
    b = Snap()
    b.thread("A", waits=999)
    snap = b.build()
    assert analyze(snap) == []


# -- semaphores ---------------------------------------------------------------


def test_pool_exhausted_by_its_waiting_holders_is_a_deadlock() -> None:
    b = Snap()
    pool = b.pool(2)
    t1 = b.thread("T1", holds=[pool], waits=pool)
    t2 = b.thread("T2", holds=[pool], waits=pool)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert_real_cycle(snap, f)
    assert set(cycle_keys(f)) == {t1, t2}
    assert all(s.waits_for == pool for s in f.cycle)
    assert_all_conditions(f)
    assert "'T1'" in f.cause and "'T2'" in f.cause
    assert snap.resources[pool].label in f.cause
    assert f.key == frozenset({5000 + t1, 5000 + t2})


def test_pool_with_a_holder_holding_two_units() -> None:
    b = Snap()
    pool = b.pool(3)
    b.thread("T1", holds=[(pool, 2)], waits=pool)
    b.thread("T2", holds=[pool], waits=pool)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert_real_cycle(snap, f)
    assert "'T1'" in f.cause and "'T2'" in f.cause
    text = format_text(f)
    assert " x2" in text


def test_pool_with_a_running_holder_means_no_finding() -> None:
    b = Snap()
    pool = b.pool(2)
    b.thread("T1", holds=[pool], waits=pool)
    b.thread("T2", holds=[pool])
    snap = b.build()
    assert analyze(snap) == []
    assert stuck_threads(snap) == set()


def test_pool_waiter_holding_every_unit_is_a_self_deadlock() -> None:
    b = Snap()
    pool = b.pool(2)
    t1 = b.thread("T1", holds=[(pool, 2)], waits=pool)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert cycle_keys(f) == [t1]
    assert "holds itself" in f.cause


def test_pool_holder_in_a_separate_lock_cycle() -> None:
    """T1 holds a unit and wants another; the other unit's holder T2 is in a
    Lock cycle with T3.  T1 is stuck behind that cycle: one finding, T1 in its
    threads, not a second (self-)cycle of T1 alone."""
    b = Snap()
    pool, l2, l3 = b.pool(2), b.lock(), b.lock()
    t1 = b.thread("T1", holds=[pool], waits=pool)
    t2 = b.thread("T2", holds=[pool, l2], waits=l3)
    t3 = b.thread("T3", holds=[l3], waits=l2)
    snap = b.build()
    assert stuck_threads(snap) == {t1, t2, t3}
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert_real_cycle(snap, f)
    assert set(cycle_keys(f)) == {t2, t3}
    assert {t.key for t in f.threads} == {t1, t2, t3}
    assert f.threads[-1].key == t1
    assert f.key == frozenset({5000 + t2, 5000 + t3})
    assert_all_conditions(f)


def test_pool_holder_in_a_timed_cycle_is_not_reported_as_a_deadlock() -> None:
    b = Snap()
    pool, l2, l3 = b.pool(2), b.lock(), b.lock()
    b.thread("T1", holds=[pool], waits=pool)
    t2 = b.thread("T2", holds=[pool, l2], waits=l3, timeout=3.0)
    t3 = b.thread("T3", holds=[l3], waits=l2)
    findings = analyze(b.build())
    assert all(f.kind != DEADLOCK for f in findings)
    f = only(findings)
    assert f.kind == TIMED_CYCLE
    assert set(cycle_keys(f)) == {t2, t3}


def test_pool_cycle_through_a_lock() -> None:
    """T1 holds a pool unit and waits for L; T2 holds L and waits for the pool,
    whose other unit T3 holds while it waits for L too."""
    b = Snap()
    pool, lk = b.pool(2), b.lock()
    t1 = b.thread("T1", holds=[pool], waits=lk)
    t2 = b.thread("T2", holds=[lk], waits=pool)
    t3 = b.thread("T3", holds=[pool], waits=lk)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert_real_cycle(snap, f)
    assert {t.key for t in f.threads} == {t1, t2, t3}
    assert_all_conditions(f)


# -- self-deadlock ------------------------------------------------------------


def test_self_deadlock_on_owner_bound_lock() -> None:
    b = Snap()
    lk = b.lock()
    t = b.thread("main", holds=[lk], waits=lk)
    snap = b.build(others_running=True)  # others cannot release an owner-bound Lock
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert len(f.cycle) == 1
    step = f.cycle[0]
    assert (step.thread, step.waits_for, step.held_by) == (t, lk, t)
    assert_all_conditions(f)
    assert "'main'" in f.cause and "holds itself" in f.cause
    assert f.key == frozenset({5000 + t})


def test_timed_self_wait_alone_is_no_warning() -> None:
    """One thread polling, with a timeout, a lock or the units it holds itself
    blocks nobody (CPython's own tests do it to test timeouts)."""
    b = Snap()
    lk = b.lock()
    pool = b.pool(2)
    b.thread("main", holds=[lk], waits=lk, timeout=0.5)
    b.thread("other", holds=[pool, pool], waits=pool, timeout=0.5)
    assert analyze(b.build()) == []


# -- resources any thread may release ----------------------------------------


def _latch(others_running: bool, other: str | None) -> Snapshot:
    """'main' waits for a Lock it took with a bare acquire (a latch)."""
    b = Snap()
    lk = b.lock(owner_bound=False)
    b.thread("main", holds=[lk], waits=lk)
    if other == "running":
        b.thread("other")
    elif other == "timed":
        b.thread("other", waits=b.lock(free=0), timeout=1.0)
    return b.build(others_running=others_running)


@pytest.mark.parametrize(
    ("others_running", "other"), [(True, None), (False, "running"), (False, "timed")]
)
def test_non_owner_bound_waiter_is_not_stuck_while_anything_can_run(
    others_running: bool, other: str | None
) -> None:
    snap = _latch(others_running, other)
    assert stuck_threads(snap) == set()
    assert analyze(snap) == []


def test_non_owner_bound_waiter_is_stuck_when_nothing_can_run() -> None:
    snap = _latch(False, None)
    assert stuck_threads(snap) == {1}
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert cycle_keys(f) == [1]
    np = f.conditions.no_preemption
    assert not np.holds
    assert "does not hold it" in np.reason


def test_non_owner_bound_in_a_cycle_depends_on_the_rest() -> None:
    def build(others_running: bool) -> Snapshot:
        b = Snap()
        handoff, lk = b.lock(owner_bound=False), b.lock()
        b.thread("A", holds=[lk], waits=handoff)
        b.thread("B", holds=[handoff], waits=lk)
        return b.build(others_running=others_running)

    assert analyze(build(True)) == []
    snap = build(False)
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert_real_cycle(snap, f)
    assert not f.conditions.no_preemption.holds


def test_non_owner_bound_waiter_stuck_behind_a_cycle_only() -> None:
    """Every thread is blocked: the Lock cycle is stuck, so the signal waiter is too."""
    b, _, threads = ring(2)
    sig = b.lock(owner_bound=False, free=0)
    w = b.thread("waiter", waits=sig)
    snap = b.build()
    assert stuck_threads(snap) == {*threads, w}
    findings = analyze(snap)
    assert len(findings) == 2
    assert sum(1 for f in findings if f.cycle) == 1
    lone = next(f for f in findings if not f.cycle)
    assert [t.key for t in lone.threads] == [w]
    assert not lone.conditions.circular_wait.holds


# -- exited holders -----------------------------------------------------------


def test_lock_held_by_an_exited_thread() -> None:
    b = Snap()
    lk = b.lock()
    dead = b.thread("gone", holds=[lk], alive=False)
    waiter = b.thread("waiter", waits=lk)
    snap = b.build(others_running=True)
    assert stuck_threads(snap) == {waiter}
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert f.cycle == ()
    assert [t.key for t in f.threads] == [waiter, dead]
    assert "exited" in f.cause and "'gone'" in f.cause
    assert snap.resources[lk].label in f.cause
    assert f.key == frozenset({5000 + waiter})
    assert not f.conditions.circular_wait.holds
    text = format_text(f)
    assert "exited" in text and "'gone'" in text
    assert to_json(f)["thread_details"][1]["alive"] is False


def test_chain_to_an_exited_holder_names_the_exited_thread() -> None:
    b = Snap()
    l_dead, l_mid = b.lock(), b.lock()
    first = b.thread("first", waits=l_mid)  # smaller key than the direct waiter
    mid = b.thread("mid", holds=[l_mid], waits=l_dead)
    dead = b.thread("gone", holds=[l_dead], alive=False)
    snap = b.build()
    f = only(analyze(snap))
    assert {t.key for t in f.threads} == {first, mid, dead}
    assert "'gone'" in f.cause and "exited" in f.cause


def test_timed_wait_on_exited_holder_is_not_reported() -> None:
    b = Snap()
    lk = b.lock()
    b.thread("gone", holds=[lk], alive=False)
    b.thread("waiter", waits=lk, timeout=1.0)
    assert analyze(b.build()) == []


def test_two_waiters_on_two_exited_holders_are_two_findings() -> None:
    b = Snap()
    l1, l2 = b.lock(), b.lock()
    b.thread("gone1", holds=[l1], alive=False)
    b.thread("gone2", holds=[l2], alive=False)
    w1 = b.thread("w1", waits=l1)
    w2 = b.thread("w2", waits=l2)
    findings = analyze(b.build())
    assert len(findings) == 2
    assert {f.key for f in findings} == {frozenset({5000 + w1}), frozenset({5000 + w2})}


def test_pool_held_by_a_waiter_and_an_exited_thread() -> None:
    b = Snap()
    pool = b.pool(2)
    t1 = b.thread("T1", holds=[pool], waits=pool)
    dead = b.thread("gone", holds=[pool], alive=False)
    snap = b.build()
    f = only(analyze(snap))
    assert f.kind == DEADLOCK
    assert {t.key for t in f.threads} == {t1, dead}
    assert "'gone'" in f.cause and "exited" in f.cause
    assert "'T1'" in f.cause


# -- renderers ----------------------------------------------------------------


def _same_site_cycle() -> tuple[Snapshot, Finding]:
    """A 3-cycle whose locks were all made on one line (a list comprehension)."""
    b = Snap()
    locks = [b.lock(line=7) for _ in range(2)] + [b.lock(line=9, type="RLock")]
    names = ["alpha", "beta", "gamma"]
    for i, name in enumerate(names):
        b.thread(name, holds=[locks[i]], waits=locks[(i + 1) % 3])
    b.thread("behind", waits=locks[0])
    snap = b.build()
    return snap, only(analyze(snap))


def test_resource_labels_disambiguate_same_site() -> None:
    snap, f = _same_site_cycle()
    labels = resource_labels(snap.resources.values())
    assert len(set(labels.values())) == 3
    assert labels[100] == f"Lock(created app.py:7, {snap.resources[100].id})"
    assert labels[102] == "RLock(created app.py:9)"
    assert f.resource_label(100) != f.resource_label(101)
    no_site = ResourceInfo(key=1, id="0xabc", type="Lock", created_at=None)
    assert resource_labels([no_site]) == {1: "Lock(0xabc)"}


def test_format_text() -> None:
    _, f = _same_site_cycle()
    text = format_text(f)
    assert text.startswith("deadlockwatch: DEADLOCK")
    for t in f.threads:
        assert repr(t.name) in text
    for r in f.resources:
        assert f.resource_label(r.key) in text
    for cond in ("mutual exclusion", "hold and wait", "no preemption", "circular wait"):
        assert cond in text
    assert "Cycle:" in text
    assert f.cause in text
    assert "holds nothing" in text  # "behind" holds nothing


def test_format_text_of_timed_cycle() -> None:
    b, _, _ = ring(2, timeouts={0: 4.0})
    text = format_text(only(analyze(b.build())))
    assert "TIMED CYCLE" in text
    assert "timeout 4 s" in text


def test_thread_labels_disambiguate_same_name() -> None:
    b = Snap()
    l1, l2 = b.lock(), b.lock()
    b.thread("worker", holds=[l1], waits=l2)
    b.thread("worker", holds=[l2], waits=l1)
    f = only(analyze(b.build()))
    assert {f.thread_label(1), f.thread_label(2)} == {"worker (1001)", "worker (1002)"}
    data = to_json(f)
    assert set(data["threads"]) == {"worker (1001)", "worker (1002)"}
    assert "worker (1001)" in format_text(f)


def test_to_json() -> None:
    snap, f = _same_site_cycle()
    data = to_json(f)
    for key in ("kind", "threads", "cycle", "conditions", "resources", "stacks", "pid", "time"):
        assert key in data
    assert data["kind"] == DEADLOCK
    assert data["threads"] == [t.name for t in f.threads]
    assert data["threads"][-1] == "behind"
    assert len(data["cycle"]) == 3
    for step, s in zip(data["cycle"], f.cycle, strict=True):
        assert {"thread", "waits_for", "held_by"} <= set(step)
        assert step["thread"] == snap.threads[s.thread].name
        assert step["waits_for"] == snap.resources[s.waits_for].id
        assert step["held_by"] == snap.threads[s.held_by].name
    names = [s["thread"] for s in data["cycle"]]
    assert [s["held_by"] for s in data["cycle"]] == names[1:] + names[:1]
    assert set(data["conditions"]) == set(COFFMAN)
    assert all(v is True for v in data["conditions"].values())
    assert data["resources"]
    for r in data["resources"]:
        assert {"id", "type", "created_at"} <= set(r)
        site = r["created_at"]
        assert site == {"file": "app.py", "line": site["line"], "function": "main"}
    assert {r["id"] for r in data["resources"]} == {r.id for r in f.resources}
    assert set(data["stacks"]) == set(data["threads"])
    assert isinstance(data["pid"], int) and isinstance(data["time"], float)
    line = to_json_line(f)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert json.loads(line) == json.loads(json.dumps(data))


def test_to_json_of_exited_holder_and_no_site() -> None:
    b = Snap()
    lk = b.lock(site=False)
    b.thread("gone", holds=[lk], alive=False)
    b.thread("waiter", waits=lk)
    f = only(analyze(b.build()))
    data = json.loads(json.dumps(to_json(f)))
    assert data["cycle"] == []
    assert data["resources"][0]["created_at"] is None
    assert data["conditions"]["circular_wait"] is False
    assert data["threads"] == ["waiter", "gone"]
    assert data["resources"][0]["holders"] == {"gone": 1}


# -- properties on random snapshots ------------------------------------------


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    n_res = draw(st.integers(1, 5))
    n_threads = draw(st.integers(1, 7))
    b = Snap()
    units = []
    for _ in range(n_res):
        u = draw(st.integers(1, 3))
        units.append(u)
        if u == 1:
            b.lock(owner_bound=draw(st.sampled_from([True, True, True, False])))
        else:
            b.pool(u, owner_bound=draw(st.sampled_from([True, True, False])))
    left = dict(zip(range(100, 100 + n_res), units, strict=True))
    for i in range(n_threads):
        holds: list[tuple[int, int]] = []
        for rk in draw(st.lists(st.sampled_from(sorted(left)), max_size=3, unique=True)):
            if left[rk] > 0:
                n = draw(st.integers(1, left[rk]))
                left[rk] -= n
                holds.append((rk, n))
        alive = draw(st.sampled_from([True, True, True, True, False]))
        waits = draw(st.none() | st.sampled_from(sorted(left))) if alive else None
        timeout = None
        if waits is not None:
            timeout = draw(st.sampled_from([None, None, None, 1.0, 0.25]))
        b.thread(
            f"t{i}",
            holds=holds,
            waits=waits,
            timeout=timeout,
            alive=alive,
            blocked_for=draw(st.floats(0, 100)),
        )
    if draw(st.booleans()):
        # A racy read: some resource's free count disagrees with its holders.
        rk = draw(st.sampled_from(sorted(left)))
        b._res[rk]["free"] = draw(st.integers(0, 1))
    snap = b.build(others_running=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:
        # A holder the snapshot does not describe.
        rk = draw(st.sampled_from(sorted(left)))
        r = snap.resources[rk]
        ghost = replace(r, holders=(*r.holders, (77, 1)))
        snap = replace(snap, resources={**snap.resources, rk: ghost})
    return snap


def _can_run(t: ThreadInfo) -> bool:
    return t.alive and (t.wait is None or t.wait.timeout is not None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_random_snapshots(snap: Snapshot) -> None:
    findings = analyze(snap)  # never raises
    stuck = stuck_threads(snap)
    assert stuck <= stuck_threads(snap, timed_waits_progress=False)
    in_deadlocks: list[int] = []
    for f in findings:
        assert f.kind in (DEADLOCK, TIMED_CYCLE)
        assert f.key
        keys = [t.key for t in f.threads]
        assert len(keys) == len(set(keys))
        for step in f.cycle:
            t = snap.threads[step.thread]
            assert t.wait is not None, "a thread with no wait in a cycle"
            assert t.alive
        if f.cycle:
            assert_real_cycle(snap, f)
            # Every holder a cycle step names is a thread of the finding.
            assert {h for s in f.cycle for h in s.holders} <= set(keys)
            assert f.conditions.circular_wait.holds
            assert keys[: len(f.cycle)] == cycle_keys(f)
            assert f.key == frozenset(snap.threads[s.thread].wait.token for s in f.cycle)  # type: ignore[union-attr]
        if f.kind == DEADLOCK:
            for step in f.cycle:
                w = snap.threads[step.thread].wait
                assert w is not None and w.timeout is None
            live = [k for k in keys if snap.threads[k].alive]
            assert set(live) <= stuck
            in_deadlocks.extend(live)
        else:
            # Something in it can be preempted: a timed wait of one of its
            # threads (maybe a co-holder off the cycle shown), or a resource
            # that a thread outside it may release.
            assert f.cycle
            assert any(t.wait is not None and t.wait.timeout is not None for t in f.threads) or any(
                not snap.resources[s.waits_for].owner_bound for s in f.cycle
            )
            assert not f.conditions.no_preemption.holds
        # The renderers accept every finding.
        assert format_text(f)
        json.dumps(to_json(f))
    # Every stuck thread is reported, in exactly one deadlock finding.
    assert sorted(in_deadlocks) == sorted(stuck)
    assert len({f.key for f in findings}) == len(findings)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_random_snapshots_with_running_holders_have_no_deadlock(snap: Snapshot) -> None:
    """Give every waited-for resource a running holder: nothing is stuck."""
    threads = dict(snap.threads)
    resources = dict(snap.resources)
    waited = {t.wait.resource for t in threads.values() if t.wait is not None and t.alive}
    for rk in waited:
        r = resources[rk]
        if not any(h in threads and _can_run(threads[h]) for h, _ in r.holders):
            key = 900 + rk
            threads[key] = ThreadInfo(
                key=key, ident=9000 + rk, name=f"runner-{rk}", held=(HeldInfo(rk),)
            )
            resources[rk] = ResourceInfo(
                r.key, r.id, r.type, r.created_at, (*r.holders, (key, 1)), r.free, r.owner_bound
            )
    snap = Snapshot(threads=threads, resources=resources, others_running=snap.others_running)
    assert stuck_threads(snap) == set()
    assert all(f.kind != DEADLOCK for f in analyze(snap))
