"""Deadlocks across processes: ``multiprocessing``'s locks and semaphores.

``multiprocessing.synchronize.SemLock`` (Lock, RLock, Semaphore,
BoundedSemaphore, and Condition, Event, Barrier, ``Value``/``Array`` locks
built on them) is patched at class level when that module is imported while
the detector is on.  The uncontended path stays local: a successful attempt
records the hold in the calling thread's record and on the object, nothing
else.  A blocking acquire is a sliced `wait_until` wait, as for threading's
locks.  Each semaphore has a name (``_semlock.name``) that is the same in
every process that unpickled it: that is its identity across processes (a
fork-context one, unlinked at once, is named after its creating process and
handle, which forked children share).

Processes exchange what they hold and wait for through a run directory
(named at start-up in ``DEADLOCKWATCH_RUN_DIR``, which children inherit; made
``0700`` by the first process that needs it): no server, no port.  A process
writes ``<pid>.json`` (atomically) only while one of its threads has waited
for a shared Lock or RLock longer than the threshold, or holds one across two
ticks of its watcher, or holds one while
another process has a file there; it removes it when it holds and waits for
nothing shared.  The file is the process's local snapshot (its blocked threads,
the holders they reach, the holders of shared locks), so cycles that pass
through threading locks inside a process are seen too.  A process with such an
old shared wait reads every file, merges them into one `Snapshot` whose
threads are (pid, thread) pairs and whose shared resources are keyed by name,
and runs the same analysis.  What a process that is gone (or a zombie) left
held comes from its ``<pid>.holds`` file (`_ledger`), which it updated in
memory as it took and released shared locks, so a process killed before it
ever published is named too (else from the last snapshot it published).  A
finding is confirmed over a few ticks, reported by the one participant that
creates its marker file first (``O_EXCL``), and acted on by each participant
for its own threads.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from deadlockwatch._config import RUN_DIR_VAR
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
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.state import (
    WaitRecord,
    current_record,
    internal_file,
    remove_held,
    tls,
    user_frame,
)

internal_file(__file__)

MODULE = "multiprocessing.synchronize"
#: multiprocessing's own files: never a creation or acquisition site.
_MP_FILES = ("synchronize.py", "context.py", "sharedctypes.py", "queues.py", "pool.py")
#: A snapshot file bigger than this is not read (it cannot be ours).
_MAX_FILE = 4 << 20

#: True while enabled: the class-level methods track; False: they pass through.
active = False
#: multiprocessing.synchronize.SemLock, once patched.
_cls: Any = None
#: (attribute, original) of what was replaced on the class.
_originals: dict[str, Any] = {}
_hooked = False


def gkey(*parts: object) -> int:
    """A key every process computes alike (``hash`` of a str is salted)."""
    import hashlib  # here (and json below): not paid when threading is imported

    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# -- the patch ------------------------------------------------------------------------


def _mp_type(self: Any) -> str:
    for c in type(self).__mro__:
        if c.__module__ == MODULE and c.__name__ != "SemLock":
            return f"mp.{c.__name__}"
    return "mp.SemLock"


def _is_mutex(obj: Any) -> bool:
    return _mp_type(obj) in ("mp.Lock", "mp.RLock")


def _make_methods(self: Any) -> None:
    """Replaces ``SemLock._make_methods``: no instance-level acquire/release
    (the class-level ones track), and the object's identity."""
    if not active:
        _originals["_make_methods"](self)
        return
    d = self.__dict__
    d.pop("acquire", None)
    d.pop("release", None)
    sl = self._semlock
    name = sl.name
    if name is None:
        # Fork context: unlinked at once; forked children share the handle.
        name = f"fork:{os.getpid()}:{sl.handle:x}"
    d["_dw_name"] = name
    d["_dw_units"] = {}
    d["_dw_sites"] = {}
    d["_dw_signal"] = False
    caller = _native.caller_frame(1)
    init = caller is not None and caller.f_code.co_name == "__init__"
    d["_dw_created"] = _state.frame_site(caller) if init else None


def _acquire(self: Any, block: Any = True, timeout: Any = None) -> bool:
    return _acquire_at(self, block, timeout, _native.caller_frame(1))


def _acquire_at(self: Any, block: Any, timeout: Any, frame: Any) -> bool:
    sl = self._semlock
    if not active or "_dw_units" not in self.__dict__:
        return bool(sl.acquire(block, timeout))
    if sl.acquire(False):
        _taken(self, frame)
        return True
    if not block:
        return False
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        got = bool(sl.acquire(True, timeout))  # the original's own handling
    else:
        rec = current_record()
        seconds = None if timeout is None else float(timeout)
        wait = WaitRecord(rec, self, seconds, _state.frame_site(frame))
        got = _state.wait_until(wait, lambda s: bool(sl.acquire(True, s)), seconds, sl.release)
    if got:
        _taken(self, frame)
    return got


def _taken(self: Any, frame: Any) -> None:
    try:
        rec = tls.rec
    except AttributeError:
        rec = _state.new_record()
    units = self._dw_units
    n = units.get(rec, 0)
    if not n:
        f = user_frame(frame) or frame
        code, lasti = (f.f_code, f.f_lasti) if f is not None else (None, -1)
        self._dw_sites[rec] = (code, lasti) if code is not None else None
        if _is_mutex(self):
            # A semaphore's units are counted on it only: it is a signal
            # across processes (see `_dw_owner_bound`), and one taken again
            # and again (a queue's ``put``) must not grow the held list.
            rec.held.append(self)
            # In this process's mapped file at once: it may be killed before
            # its watcher publishes anything.
            _ledger.held(self, rec, code, lasti, _ledger_opener)
            # The watcher starts at a first blocking wait; a holder of a
            # shared lock must publish it.
            if _state.resume_watcher is not None:
                _state.resume_watcher()
    units[rec] = n + 1


def _release(self: Any) -> None:
    units = self.__dict__.get("_dw_units")
    if units is None:
        self._semlock.release()
        return
    try:
        rec = tls.rec
    except AttributeError:
        rec = None
    mine = units.get(rec, 0) if rec is not None else 0
    if mine == 1:
        # Out of the mapped file first: killed in between, it leaves a lock
        # held by nobody known rather than a holder that let go.
        _ledger.released(self)
    try:
        self._semlock.release()
    except BaseException:
        if mine == 1:
            _ledger.released(self, 1)
        raise
    if mine and rec is not None:
        if mine == 1:
            units.pop(rec, None)
            self._dw_sites.pop(rec, None)
            remove_held(rec, self)
        else:
            units[rec] = mine - 1
        return
    # A release by a thread holding no unit: a hand-off or a signal; nobody
    # in this process owns what it took any more.
    self._dw_signal = True
    _ledger.released(self)
    for other in list(units):
        units.pop(other, None)
        self._dw_sites.pop(other, None)
        remove_held(other, self)


def _enter(self: Any) -> bool:
    return _acquire_at(self, True, None, _native.caller_frame(1))


def _exit(self: Any, *args: object) -> None:
    _release(self)


def _dw_holders(self: Any) -> list[tuple[Any, int, Site | None]]:
    from deadlockwatch._track.primitives import _site_of

    units = dict(self.__dict__.get("_dw_units") or {})
    sites = dict(self.__dict__.get("_dw_sites") or {})
    return [(r, n, _site_of(sites.get(r))) for r, n in units.items() if n > 0]


def _dw_free(self: Any) -> int:
    try:
        value = int(self._semlock._get_value())
    except Exception:  # not implemented everywhere (macOS)
        return 0 if self.__dict__.get("_dw_units") else 1
    if _is_mutex(self):
        return 1 if value > 0 else 0
    return max(value, 0)


def _dw_owner_bound(self: Any) -> bool:
    # A semaphore is counted as a signal: which process will release its
    # units (a queue's reader releases what its writers took) is unknown here.
    return _is_mutex(self) and not self.__dict__.get("_dw_signal", False)


def _install(module: Any) -> None:
    global _cls
    if not active or _originals:
        return
    cls = getattr(module, "SemLock", None)
    if not isinstance(cls, type):
        return
    from deadlockwatch._track.primitives import _AllOrders

    for name in ("_make_methods", "__enter__", "__exit__"):
        _originals[name] = cls.__dict__[name]
    setattr(cls, "_make_methods", _make_methods)  # noqa: B010
    setattr(cls, "__enter__", _enter)  # noqa: B010
    setattr(cls, "__exit__", _exit)  # noqa: B010
    if "acquire" not in cls.__dict__:
        # Permanent: objects made while enabled have no instance-level ones.
        permanent: dict[str, Any] = {
            "acquire": _acquire,
            "release": _release,
            "_dw_type": property(_mp_type),
            "_dw_holders": _dw_holders,
            "_dw_free": _dw_free,
            "_dw_owner_bound": _dw_owner_bound,
            "_dw_after": _AllOrders(),
            "_dw_created": None,
        }
        for name, value in permanent.items():
            setattr(cls, name, value)
    _cls = cls
    base = os.path.dirname(getattr(module, "__file__", "") or "")
    for name in _MP_FILES:
        internal_file(os.path.join(base, name))
    run_dir()


def patch() -> None:
    global active, _hooked
    active = True
    module = sys.modules.get(MODULE)
    if module is not None:
        _install(module)
    elif not _hooked:
        from deadlockwatch._track.hook import when_imported

        _hooked = True
        when_imported(MODULE, _install)


def unpatch() -> None:
    global active
    active = False
    cls = _cls
    if cls is not None:
        for name, original in _originals.items():
            setattr(cls, name, original)
    _originals.clear()
    _remove_own()
    _ledger.close()


def idle() -> bool:
    """Nothing shared to watch: no shared Lock or RLock held here, no snapshot
    published (the watcher may end)."""
    if not active or _cls is None:
        return True
    if _EX.written is not None:
        return False
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if is_shared(obj) and _is_mutex(obj):
                return False
    return True


def is_shared(obj: object) -> bool:
    cls = _cls
    return cls is not None and isinstance(obj, cls)


def involves_shared(finding: Finding) -> bool:
    """Does some thread of a local finding wait for a shared primitive?  Such
    findings are left to the analysis across processes (a shared lock's other
    holders live elsewhere)."""
    for t in finding.threads:
        if t.wait is not None:
            with contextlib.suppress(KeyError):
                if finding.resource(t.wait.resource).type.startswith("mp."):
                    return True
    return False


def local_findings(findings: list[Finding]) -> list[Finding]:
    if _cls is None:
        return findings
    return [f for f in findings if not involves_shared(f)]


# -- the run directory ------------------------------------------------------------------

_run_dir: str | None = None
_own_dir_pid = 0


def run_dir() -> str | None:
    """The run directory of this process tree: the one named in
    ``DEADLOCKWATCH_RUN_DIR`` (set at start-up, before the program runs), made
    here if no process made it yet; else a private one, which only children
    forked from here share.  ``os.environ`` is never changed here."""
    global _run_dir
    if _run_dir is not None and os.path.isdir(_run_dir):
        return _run_dir
    named = os.environ.get(RUN_DIR_VAR, "")
    if named and os.path.isabs(named):
        try:
            os.mkdir(named, 0o700)
        except FileExistsError:
            pass
        except OSError:
            named = ""
        else:
            _owned_here(named)
        if named and _usable(named):
            _run_dir = named
            return _run_dir
    try:
        import tempfile

        _run_dir = tempfile.mkdtemp(prefix="deadlockwatch-")
    except OSError:
        return None
    _owned_here(_run_dir)
    return _run_dir


def _usable(path: str) -> bool:
    """A directory (not a link to one) of this user's that nobody else can use."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _owned_here(path: str) -> None:
    """This process made the directory: it removes it when it ends."""
    global _own_dir_pid
    if _own_dir_pid != os.getpid():
        _own_dir_pid = os.getpid()
        atexit.register(_cleanup_dir)


def _cleanup_dir() -> None:
    if _run_dir is not None and _own_dir_pid == os.getpid():
        import shutil

        shutil.rmtree(_run_dir, ignore_errors=True)


def _own_path() -> str | None:
    d = _run_dir
    return None if d is None else os.path.join(d, f"{os.getpid()}.json")


def _ledger_opener() -> tuple[str | None, str, int | None]:
    """What this process's mapped file is made with (on its first shared lock)."""
    d = run_dir()
    if d is not None:
        _at_exit(_ledger.at_exit)
    pid = os.getpid()
    if _EX.start_pid != pid:
        _EX.start, _EX.start_pid = _start_time(pid), pid
    return d, _process_name(), _EX.start


def _at_exit(hook: Any) -> None:
    """Run ``hook`` when this process ends normally: multiprocessing's children
    end with os._exit, after its own exit hook runs its finalizers."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        with contextlib.suppress(Exception):
            util.Finalize(None, hook, exitpriority=-1000)
    atexit.register(hook)


def _remove_own() -> None:
    if _EX.written is None:
        return
    _EX.written = None
    path = _own_path()
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _write_own(text: str) -> None:
    path = _own_path()
    if path is None or text == _EX.written:
        return
    tmp = f"{path}.{_native.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    _EX.written = text
    if not _EX.finalizer:
        _EX.finalizer = True
        _at_exit(_remove_own)


def _start_time(pid: int) -> int | None:
    """The process's start time (Linux): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2 :].split()
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return True
    if fields and fields[0] in (b"Z", b"X"):
        return False  # killed, not yet reaped by its parent
    if start is not None:
        with contextlib.suppress(ValueError, IndexError):
            return int(fields[19]) == start
    return True


# -- what this process publishes ---------------------------------------------------------


class _Exchange:
    def __init__(self) -> None:
        self.written: str | None = None
        self.finalizer = False
        self.prev_holds: set[tuple[int, int]] = set()
        #: finding key -> when it was first seen (continuously since)
        self.seen: dict[frozenset[int], float] = {}
        self.reported: set[frozenset[int]] = set()
        self.inputs: tuple[Any, ...] | None = None
        self.cached: list[Finding] = []
        self.start: int | None = None
        self.start_pid = 0
        #: (pid, start) of a dead process's mapped file -> what it left held
        self.dead: dict[tuple[int, Any], dict[str, Any] | None] = {}


_EX = _Exchange()


def _site_json(site: Site | None) -> list[Any] | None:
    return None if site is None else [site.file, site.line, site.function]


def _site_from(value: Any) -> Site | None:
    if value is None:
        return None
    file, line, function = value
    return Site(str(file), int(line), str(function))


def _process_name() -> str:
    process = sys.modules.get("multiprocessing.process")
    try:
        return str(process.current_process().name) if process is not None else "?"
    except Exception:
        return "?"


def _local_state(detector: Any) -> dict[str, Any]:
    """This process's local snapshot (its blocked threads, what they reach,
    and the holders of shared locks), as the JSON its file holds."""
    from deadlockwatch._watch.capture import _Builder, stack_of

    frames = _native.current_frames()
    if detector.watcher_ident is not None:
        frames.pop(detector.watcher_ident, None)
    blocked = list(_state.blocked.copy().values())
    b = _Builder(frames)
    b.pending.extend(w.rec for w in blocked)
    names: dict[int, str] = {}
    for w in blocked:
        if is_shared(w.resource):
            names[id(w.resource)] = w.resource._dw_name
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if is_shared(obj):
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
                "site": _site_json(t.wait.site),
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
                "held": [[h.resource, h.count, _site_json(h.acquired_at)] for h in t.held],
                "stack": stack,
            }
        )
    resources = [
        {
            "key": r.key,
            "name": names.get(r.key) if r.type.startswith("mp.") else None,
            "id": r.id,
            "type": r.type,
            "created_at": _site_json(r.created_at),
            "holders": [list(h) for h in r.holders],
            "free": r.free,
            "owner_bound": r.owner_bound,
            "kind": r.kind,
            "detail": r.detail,
            "verb": r.verb,
            "title": r.title,
            "group": r.group,
            "parts": list(r.parts),
        }
        for r in snap.resources.values()
    ]
    pid = os.getpid()
    if _EX.start_pid != pid:
        _EX.start, _EX.start_pid = _start_time(pid), pid
    return {
        "version": 1,
        "pid": pid,
        "start": _EX.start,
        "process": _process_name(),
        "threads": threads,
        "resources": resources,
        "wakeable": sorted(snap.wakeable),
    }


def _shared_state(threshold: float) -> tuple[list[WaitRecord], bool, bool, bool]:
    """This process's waits on shared primitives; whether one of them, on a
    Lock or RLock, is older than ``threshold``; whether it holds a shared Lock
    or RLock; and whether it held it at the previous tick too."""
    now = _native.monotonic()
    waits = [w for w in _state.blocked.copy().values() if is_shared(w.resource)]
    old = any(now - w.since >= threshold and _is_mutex(w.resource) for w in waits)
    holds: set[tuple[int, int]] = set()
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if is_shared(obj) and _is_mutex(obj):
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
    if not active or _cls is None:
        return
    d = run_dir()
    if d is None:
        return
    waits, old_wait, holding, long_hold = _shared_state(detector.config.threshold)
    if not old_wait and not holding:
        _remove_own()
        _EX.seen.clear()
        return
    mine = f"{os.getpid()}.json"
    others = [e for e in _files(d) if e.name != mine]
    if not old_wait and not long_hold and not others:
        # A short hold nobody is waiting for: nothing to publish.
        _remove_own()
        return
    state = _local_state(detector)
    import json

    _write_own(json.dumps(state, sort_keys=True))
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
        alive = me or process_alive(pid, start if isinstance(start, int) else None)
        keys: dict[int, int] = {}
        resources: dict[int, ResourceInfo] = {}
        shared: dict[int, ResourceInfo] = {}
        tkey = {int(t["key"]): gkey("t", pid, int(t["key"])) for t in data["threads"]}
        for r in data["resources"]:
            name = r.get("name")
            local = int(r["key"])
            key = gkey("s", str(name)) if name else gkey("r", pid, local)
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
                    token=gkey("w", pid, int(w["token"]), repr(since)),
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
            if process_alive(pid, start if isinstance(start, int) else None):
                continue
            _EX.dead[key] = _ledger.snapshot(path, head)
        out[pid] = _EX.dead[key]
    return out


def _analyse(state: dict[str, Any], others: list[os.DirEntry[str]]) -> list[Finding]:
    from deadlockwatch._analysis.deadlock import analyze

    dead = _dead_holds(_run_dir) if _run_dir is not None else {}
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
    pids = tuple(process_alive(int(e.name[:-5]), None) for e in others if e.name[:-5].isdigit())
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
    local = {gkey("w", pid, id(w), repr(w.since)): w for w in _state.blocked.copy().values()}
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
            _act(detector, done, local)
    _EX.seen = seen
    _EX.reported &= set(seen)


_REPORT, _ACT, _WAIT = object(), object(), object()

#: How long the other participants of a finding wait for the one that claimed
#: it to write its report before they act on their own threads anyway.
_CLAIM_GRACE = 2.0


def _marker(key: frozenset[int]) -> str | None:
    d = _run_dir
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
    if claimer and not process_alive(claimer, None):
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


def _act(detector: Any, finding: Finding, waits: dict[int, WaitRecord]) -> None:
    """What `_Detector.handle` does for a finding another process reported."""
    from deadlockwatch._errors import DeadlockError
    from deadlockwatch._watch.watcher import _victims

    for t in finding.threads:
        if t.wait is not None and t.wait.token in waits:
            waits[t.wait.token].reported = True
    action = detector.config.on_deadlock
    if action in ("raise", "raise-all"):
        victims = _victims(finding, waits, every=action == "raise-all")
        _state.deliver([(v, DeadlockError(finding)) for v in victims])
    elif action == "abort":
        detector.abort()


def remote_snapshot() -> tuple[list[ThreadInfo], dict[int, ResourceInfo]]:
    """What other processes published, threads and resources (for `dump`)."""
    d = _run_dir
    if d is None or _cls is None:
        return [], {}
    m = _Merge(_native.monotonic())
    mine = f"{os.getpid()}.json"
    _add_others(m, [e for e in _files(d) if e.name != mine], _dead_holds(d))
    snap = m.snapshot()
    return list(snap.threads.values()), dict(snap.resources)


def check(detector: Any) -> list[Finding]:
    """The cross-process deadlocks this process's blocked threads are part of,
    from what every process has published (for `deadlockwatch.check`)."""
    if not active or _cls is None:
        return []
    d = run_dir()
    if d is None:
        return []
    mine = f"{os.getpid()}.json"
    others = [e for e in _files(d) if e.name != mine]
    if not others and not any(_dead_holds(d).values()):
        return []
    return _analyse(_local_state(detector), others)


def _after_fork_in_child() -> None:
    """A forked child holds none of its parent's shared locks (the parent's
    threads still do, in the parent)."""
    _EX.__init__()  # type: ignore[misc]
    _ledger.after_fork_in_child()
    global _own_dir_pid
    _own_dir_pid = 0
    if _cls is None:
        return
    for rec in list(_state.records.values()):
        for obj in list(rec.held):
            if is_shared(obj):
                remove_held(rec, obj, len(rec.held))
                with contextlib.suppress(Exception):
                    obj._dw_units.clear()
                    obj._dw_sites.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
