"""Deadlocks across processes: what this process publishes, the merge of
every process's snapshot, the analysis, the confirmation, and who reports.

See `deadlockwatch._processes.shared` for the whole picture.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from deadlockwatch._model import (
    DEADLOCK,
    Finding,
    Frame,
    HeldInfo,
    ResourceInfo,
    Site,
    Snapshot,
    ThreadInfo,
    WaitInfo,
)
from deadlockwatch._processes import ledger as _ledger
from deadlockwatch._processes import rundir as _rundir
from deadlockwatch._processes import semlock as _semlock
from deadlockwatch._processes.ledger import site_json
from deadlockwatch._report.text import resource_fields
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.state import (
    WaitRecord,
    internal_file,
)

internal_file(__file__)


#: A snapshot file bigger than this is not read (it cannot be ours).
_MAX_FILE = 4 << 20

# -- what this process publishes ---------------------------------------------------------


class _Exchange:
    def __init__(self) -> None:
        self.prev_holds: set[tuple[int, int]] = set()
        #: finding key -> when it was first seen (continuously since)
        self.seen: dict[frozenset[int], float] = {}
        self.reported: set[frozenset[int]] = set()
        self.inputs: tuple[Any, ...] | None = None
        self.cached: list[Finding] = []
        #: (pid, start) of a dead process's mapped file -> what it left held
        self.dead: dict[tuple[int, Any], dict[str, Any] | None] = {}


_EX = _Exchange()


def _site_from(value: Any) -> Site | None:
    if value is None:
        return None
    file, line, function = value
    return Site(str(file), int(line), str(function))


def _local_state(detector: Any) -> dict[str, Any]:
    """This process's local snapshot (its blocked threads, what they reach,
    and the holders of shared locks), as the JSON its file holds."""
    from deadlockwatch._track.state import stack_of
    from deadlockwatch._watch.capture import _Builder

    frames = _native.current_frames()
    if detector.watcher_ident is not None:
        frames.pop(detector.watcher_ident, None)
    blocked = list(_state.blocked.copy().values())
    b = _Builder(frames)
    b.pending.extend(w.rec for w in blocked)
    names: dict[int, str] = {}
    for w in blocked:
        if _semlock.is_shared(w.resource):
            names[id(w.resource)] = w.resource._dw_name
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if _semlock.is_shared(obj):
                names[id(obj)] = obj._dw_name
                b.pending.append(rec)
    b.follow()
    snap = b.snapshot()
    since = {id(w): w.since for w in blocked}
    threads = []
    for t in snap.threads.values():
        wait = None
        if t.wait is not None:
            wait = {
                "resource": t.wait.resource,
                "since": since.get(t.wait.token, b.now - t.wait.blocked_for),
                "timeout": t.wait.timeout,
                "polling": t.wait.polling,
                "site": site_json(t.wait.site),
                "token": t.wait.token,
            }
        stack = []
        if t.wait is not None and t.alive:
            stack = [[f.file, f.line, f.function, f.code] for f in stack_of(frames.get(t.ident))]
        threads.append(
            {
                "key": t.key,
                "ident": t.ident,
                "name": t.name,
                "daemon": t.daemon,
                "alive": t.alive,
                "lost_at_fork": t.lost_at_fork,
                "wait": wait,
                "held": [[h.resource, h.count, site_json(h.acquired_at)] for h in t.held],
                "stack": stack,
            }
        )
    resources = [
        {
            **resource_fields(r),
            "key": r.key,
            "name": names.get(r.key) if r.type.startswith("mp.") else None,
            "created_at": site_json(r.created_at),
            "holders": [list(h) for h in r.holders],
            "parts": list(r.parts),
        }
        for r in snap.resources.values()
    ]
    pid = os.getpid()
    if _rundir.OWN.start_pid != pid:
        _rundir.OWN.start, _rundir.OWN.start_pid = _rundir._start_time(pid), pid
    return {
        "version": 1,
        "pid": pid,
        "start": _rundir.OWN.start,
        "process": _rundir._process_name(),
        "threads": threads,
        "resources": resources,
        "wakeable": sorted(snap.wakeable),
    }


def _shared_state(threshold: float) -> tuple[list[WaitRecord], bool, bool, bool]:
    """This process's waits on shared primitives; whether one of them, on a
    Lock or RLock, is older than ``threshold``; whether it holds a shared Lock
    or RLock; and whether it held it at the previous tick too."""
    now = _native.monotonic()
    waits = [w for w in _state.blocked.copy().values() if _semlock.is_shared(w.resource)]
    old = any(now - w.since >= threshold and _semlock._is_mutex(w.resource) for w in waits)
    holds: set[tuple[int, int]] = set()
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if _semlock.is_shared(obj) and _semlock._is_mutex(obj):
                holds.add((id(rec), id(obj)))
    long = bool(holds & _EX.prev_holds)
    _EX.prev_holds = holds
    return waits, old, bool(holds), long


def _files(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return [
                e for e in it if e.name.endswith(".json") and e.name[:-5].isdigit() and e.is_file()
            ]
    except OSError:
        return []


def tick(detector: Any) -> None:
    """One look of the watcher at what is shared across processes."""
    if not _semlock.active or _semlock._cls is None:
        return
    d = _rundir.run_dir()
    if d is None:
        return
    waits, old_wait, holding, long_hold = _shared_state(detector.config.threshold)
    if not old_wait and not holding:
        _rundir._remove_own()
        _EX.seen.clear()
        return
    mine = f"{os.getpid()}.json"
    others = [e for e in _files(d) if e.name != mine]
    if not old_wait and not long_hold and not others:
        # A short hold nobody is waiting for: nothing to publish.
        _rundir._remove_own()
        return
    state = _local_state(detector)
    import json

    _rundir._write_own(json.dumps(state, sort_keys=True))
    if not old_wait:
        _EX.seen.clear()
        return
    _confirm(detector, _analyse(state, others), waits)


def _read(entries: Iterable[os.DirEntry[str]]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        try:
            if e.stat().st_size > _MAX_FILE:
                continue
            with open(e.path, encoding="utf-8") as f:
                import json

                data = json.load(f)
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(data, dict) and data.get("version") == 1:
            out.append(data)
    return out


# -- the analysis across processes ------------------------------------------------------


class _Merge:
    def __init__(self, now: float) -> None:
        self.now = now
        self.threads: dict[int, ThreadInfo] = {}
        self.resources: dict[int, ResourceInfo] = {}
        self.shared: dict[int, list[ResourceInfo]] = {}
        self.wakeable: set[int] = set()
        self.dead: dict[int, str] = {}

    def add(self, data: dict[str, Any], me: bool) -> None:
        """One process's file (everything or nothing of it)."""
        pid = int(data["pid"])
        process = str(data.get("process", "?"))
        start = data.get("start")
        alive = me or _rundir.process_alive(pid, start if isinstance(start, int) else None)
        keys: dict[int, int] = {}
        resources: dict[int, ResourceInfo] = {}
        shared: dict[int, ResourceInfo] = {}
        tkey = {int(t["key"]): _semlock.gkey("t", pid, int(t["key"])) for t in data["threads"]}
        for r in data["resources"]:
            name = r.get("name")
            local = int(r["key"])
            key = _semlock.gkey("s", str(name)) if name else _semlock.gkey("r", pid, local)
            keys[local] = key
        for r in data["resources"]:
            local = int(r["key"])
            name = r.get("name")
            info = ResourceInfo(
                key=keys[local],
                id=str(name) if name else f"{r['id']} in pid {pid}",
                type=str(r["type"]),
                created_at=_site_from(r.get("created_at")),
                holders=tuple((tkey[int(h)], int(n)) for h, n in r["holders"] if int(h) in tkey),
                free=int(r["free"]),
                owner_bound=bool(r["owner_bound"]),
                kind=str(r["kind"]),
                detail=str(r["detail"]),
                verb=str(r["verb"]),
                title=str(r["title"]),
                group=str(r["group"]),
                parts=tuple(keys[int(p)] for p in r["parts"] if int(p) in keys),
            )
            if name:
                shared[info.key] = info
            else:
                resources[info.key] = info
        threads: dict[int, ThreadInfo] = {}
        for t in data["threads"]:
            w = t.get("wait")
            wait = None
            if w is not None:
                since = float(w["since"])
                timeout = w.get("timeout")
                wait = WaitInfo(
                    resource=keys[int(w["resource"])],
                    blocked_for=max(0.0, self.now - since),
                    timeout=None if timeout is None else float(timeout),
                    site=_site_from(w.get("site")),
                    token=_semlock.gkey("w", pid, int(w["token"]), repr(since)),
                    polling=w.get("polling") is True,
                )
            name = str(t["name"])
            threads[tkey[int(t["key"])]] = ThreadInfo(
                key=tkey[int(t["key"])],
                ident=int(t["ident"]),
                name=f"{name} in {process} (pid {pid})",
                daemon=bool(t["daemon"]),
                alive=alive and bool(t["alive"]),
                wait=wait,
                held=tuple(
                    HeldInfo(keys[int(rk)], int(n), _site_from(site))
                    for rk, n, site in t["held"]
                    if int(rk) in keys
                ),
                stack=tuple(
                    Frame(str(a), int(b), str(c), str(d)) for a, b, c, d in t.get("stack", [])
                ),
                lost_at_fork=bool(t.get("lost_at_fork", False)),
                pid=pid,
                process=process,
            )
        wakeable = {tkey[int(k)] for k in data.get("wakeable", []) if int(k) in tkey}
        # All read: commit.
        self.threads.update(threads)
        self.resources.update(resources)
        for key, info in shared.items():
            self.shared.setdefault(key, []).append(info)
        self.wakeable |= wakeable
        if not alive:
            self.dead[pid] = process

    def snapshot(self) -> Snapshot:
        resources = dict(self.resources)
        for key, infos in self.shared.items():
            holders = tuple(h for i in infos for h in i.holders)
            created = next((i.created_at for i in infos if i.created_at is not None), None)
            first = infos[0]
            owner_bound = all(i.owner_bound for i in infos)
            if first.type in ("mp.Lock", "mp.RLock") and len({h for h, _ in holders}) > 1:
                # Two holders of a mutex: someone's record is stale (a hand-off
                # to another process): nobody owns it for certain.
                owner_bound = False
            resources[key] = replace(
                first,
                created_at=created,
                holders=holders,
                free=min(i.free for i in infos),
                owner_bound=owner_bound,
            )
        return Snapshot(
            threads=self.threads,
            resources=resources,
            # Threads of other processes that wrote no file can run.
            others_running=True,
            wakeable=frozenset(self.wakeable),
        )


def _dead_holds(directory: str) -> dict[int, dict[str, Any] | None]:
    """What processes that are gone left held (None: nothing), by pid, from
    their mapped files (a dead process's file no longer changes: each is read
    once)."""
    out: dict[int, dict[str, Any] | None] = {}
    for pid, path in _ledger.files(directory):
        head = _ledger.header(path)
        if head is None or head.get("pid") != pid or head.get("incomplete"):
            continue  # not one to trust: its last snapshot, if any, is used
        start = head.get("start")
        key = (pid, start)
        if key not in _EX.dead:
            if _rundir.process_alive(pid, start if isinstance(start, int) else None):
                continue
            _EX.dead[key] = _ledger.snapshot(path, head)
        out[pid] = _EX.dead[key]
    return out


def _analyse(state: dict[str, Any], others: list[os.DirEntry[str]]) -> list[Finding]:
    from deadlockwatch._analysis.deadlock import analyze

    dead = _dead_holds(_rundir._run_dir) if _rundir._run_dir is not None else {}
    import json

    signature: list[Any] = [json.dumps(state, sort_keys=True), tuple(sorted(dead))]
    for e in others:
        try:
            st = e.stat()
        except OSError:
            continue
        signature.append((e.name, st.st_mtime_ns, st.st_size))
    inputs = tuple(signature)
    # A pid that exits changes the verdict without changing any file.
    pids = tuple(
        _rundir.process_alive(int(e.name[:-5]), None) for e in others if e.name[:-5].isdigit()
    )
    if inputs + pids == _EX.inputs:
        return _EX.cached
    m = _Merge(_native.monotonic())
    m.add(state, me=True)
    _add_others(m, others, dead)
    snap = m.snapshot()
    pid = os.getpid()
    out = []
    for f in analyze(snap):
        if f.kind != DEADLOCK:
            continue
        mine = any(t.pid == pid and t.wait is not None for t in f.threads)
        shared = any(
            t.wait is not None and f.resource(t.wait.resource).type.startswith("mp.")
            for t in f.threads
        )
        if mine and shared:
            out.append(_explain(f, m.dead))
    _EX.inputs = inputs + pids
    _EX.cached = out
    return out


def _add_others(
    m: _Merge, others: list[os.DirEntry[str]], dead: dict[int, dict[str, Any] | None]
) -> None:
    """Other processes' files; for a dead one, what its mapped file says it
    held when it died, not the snapshot it last published (which its watcher
    may not have had time to take back)."""
    for data in _read(others):
        if data.get("pid") == os.getpid() or data.get("pid") in dead:
            continue
        with contextlib.suppress(Exception):  # a malformed file is skipped
            m.add(data, me=False)
    for held in dead.values():
        if held is not None:
            with contextlib.suppress(Exception):
                m.add(held, me=False)


def _explain(f: Finding, dead: dict[int, str]) -> Finding:
    """Name a process that exited holding what the stuck threads wait for."""
    if f.cycle or not dead:
        return f
    for t in f.threads:
        if t.wait is None:
            continue
        r = f.resource(t.wait.resource)
        for h, _ in r.holders:
            with contextlib.suppress(KeyError):
                holder = f.thread(h)
                if holder.pid in dead:
                    return replace(
                        f,
                        cause=(
                            f"{r.long_label} is held by process {holder.pid} "
                            f"({dead[holder.pid]}), which exited"
                        ),
                    )
    return f


def _confirm(detector: Any, findings: list[Finding], waits: list[WaitRecord]) -> None:
    """Report a finding seen continuously for a few ticks (every participant's
    file had time to catch up), once; act on this process's own threads."""
    now = _native.monotonic()
    delay = max(3 * detector.config.interval, 0.05)
    seen: dict[frozenset[int], float] = {}
    pid = os.getpid()
    local = {
        _semlock.gkey("w", pid, id(w), repr(w.since)): w for w in _state.blocked.copy().values()
    }
    for f in findings:
        first = _EX.seen.get(f.key, now)
        seen[f.key] = first
        if f.key in _EX.reported or now - first < delay:
            continue
        turn = _turn(f.key, now - first)
        if turn is _WAIT:
            continue
        _EX.reported.add(f.key)
        done = replace(f, pid=pid, time=time.time())
        if turn is _REPORT:
            detector.handle(done, local)
            _reported(f.key)
        else:
            detector.handle(done, local, report=False)
    _EX.seen = seen
    _EX.reported &= set(seen)


_REPORT, _ACT, _WAIT = object(), object(), object()

#: How long the other participants of a finding wait for the one that claimed
#: it to write its report before they act on their own threads anyway.
_CLAIM_GRACE = 2.0


def _marker(key: frozenset[int]) -> str | None:
    d = _rundir._run_dir
    if d is None:
        return None
    import hashlib

    name = hashlib.blake2b(repr(sorted(key)).encode(), digest_size=12).hexdigest()
    return os.path.join(d, f"reported-{name}")


def _turn(key: frozenset[int], age: float) -> object:
    """Whether this participant reports the finding, only acts on its own
    threads, or waits a tick.

    The first to create the finding's marker reports it; the others act once
    its report is out (the marker's ``.done`` twin exists).  Acting earlier
    would free locks that let the reporter's own threads finish, and its
    process exit, before the report is written.  A reporter that died first
    is replaced by whoever creates the ``.done`` twin first; one still alive
    after `_CLAIM_GRACE` seconds is not waited for any longer.
    """
    path = _marker(key)
    if path is None:
        return _REPORT
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError:
        return _REPORT
    else:
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
        return _REPORT
    if os.path.exists(path + ".done"):
        return _ACT
    try:
        with open(path, "rb") as f:
            claimer = int(f.read() or b"0")
    except (OSError, ValueError):
        claimer = 0
    if claimer and not _rundir.process_alive(claimer, None):
        try:
            os.close(os.open(path + ".done", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return _ACT
        except OSError:
            return _ACT
        return _REPORT
    return _ACT if age > _CLAIM_GRACE else _WAIT


def _reported(key: frozenset[int]) -> None:
    """Tell the other participants the finding's report is out."""
    path = _marker(key)
    if path is not None:
        with contextlib.suppress(OSError):
            os.close(os.open(path + ".done", os.O_WRONLY | os.O_CREAT, 0o600))


def remote_snapshot() -> tuple[list[ThreadInfo], dict[int, ResourceInfo]]:
    """What other processes published, threads and resources (for `dump`)."""
    d = _rundir._run_dir
    if d is None or _semlock._cls is None:
        return [], {}
    m = _Merge(_native.monotonic())
    mine = f"{os.getpid()}.json"
    _add_others(m, [e for e in _files(d) if e.name != mine], _dead_holds(d))
    snap = m.snapshot()
    return list(snap.threads.values()), dict(snap.resources)


def check(detector: Any) -> list[Finding]:
    """The cross-process deadlocks this process's blocked threads are part of,
    from what every process has published (for `deadlockwatch.check`)."""
    if not _semlock.active or _semlock._cls is None:
        return []
    d = _rundir.run_dir()
    if d is None:
        return []
    mine = f"{os.getpid()}.json"
    others = [e for e in _files(d) if e.name != mine]
    if not others and not any(_dead_holds(d).values()):
        return []
    return _analyse(_local_state(detector), others)
