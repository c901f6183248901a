"""What shared Locks and RLocks a process holds, in a file mapped into its memory.

A process killed just after it took a shared lock never published a snapshot
(it does that from its watcher, a tick or two later).  So each process that
takes a shared Lock or RLock also keeps ``<pid>.holds`` in the run directory,
a file it maps ``MAP_SHARED``: taking the first unit of such a lock writes
who holds it into the lock's slot there, releasing the last unit clears it.
These are stores to memory (no system call), and what a process stored is in
the file whatever way it ends: another process reads the file of a dead one
to learn what it left held.  A process that exits normally removes its file.

The file: a header (``MAGIC``, then the JSON length and text of the pid, the
process's start time and name), then ``SLOTS`` slots of ``SLOT`` bytes, one
per shared lock this process has taken (given back when the lock object is
collected while free; if none is left, the header's last byte says the file
is incomplete, and its last snapshot is used instead).  A slot: a state
byte (1: held), then the lock's description (length, JSON ``[name, type,
created site]``), written once, and at ``_HOLDER`` its holder's (length,
JSON ``[ident, thread name, daemon, site]``).

The slot is written after the lock is taken and cleared before it is given
back: a process killed in between leaves a lock held with no name (no report,
as before), never a name on a lock it no longer held.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import mmap
import os
import struct
import weakref
from collections.abc import Callable
from types import CodeType
from typing import Any

from deadlockwatch._model import LOCK_KIND, Site
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state

MAGIC = b"DWL1"
HEADER = 1024
SLOT = 1024
SLOTS = 1024
SIZE = HEADER + SLOT * SLOTS
_HOLDER = 512
#: The header's last byte: 1 once a shared lock could not get a slot (the
#: file no longer says all this process holds).
_INCOMPLETE = HEADER - 1
_LEN = struct.Struct("<H")
SUFFIX = ".holds"


class _Ledger:
    """This process's mapped file (none until its first shared lock)."""

    def __init__(self) -> None:
        self.pid = 0
        #: this file's number (0: none): a slot written into another file
        #: (the parent's, before a fork; an earlier one of this process) is stale
        self.gen = 0
        self.path: str | None = None
        self.map: mmap.mmap | None = None
        self.free: list[int] = []
        self.next = 0
        self.refs: dict[int, Any] = {}
        #: (thread record, code, lasti) -> the holder bytes of its slots
        self.holders: dict[tuple[Any, CodeType | None, int], bytes] = {}
        self.lock = _native.allocate_lock()
        #: the pid in which the file could not be made
        self.failed = 0


_L = _Ledger()
_gens = itertools.count(1)


def site_json(site: Site | None) -> list[Any] | None:
    """A site as the processes exchange it (their files and ledgers)."""
    return None if site is None else [site.file, site.line, site.function]


def _encoded(value: Any, room: int) -> bytes | None:
    import json  # here: not paid when threading is imported

    data = json.dumps(value).encode("utf-8", "replace")
    if len(data) + _LEN.size > room:
        return None
    return _LEN.pack(len(data)) + data


def _open(directory: str, process: str, start: int | None) -> None:
    pid = os.getpid()
    path = os.path.join(directory, f"{pid}{SUFFIX}")
    header = _encoded({"pid": pid, "start": start, "process": process}, HEADER - len(MAGIC))
    if header is None:
        header = _encoded({"pid": pid, "start": start, "process": "?"}, HEADER - len(MAGIC))
    assert header is not None
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        m = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    m[: len(MAGIC) + len(header)] = MAGIC + header
    _L.free, _L.next, _L.refs, _L.holders = [], 0, {}, {}
    _L.pid, _L.path, _L.map, _L.gen = pid, path, m, next(_gens)


Opener = Callable[[], tuple[str | None, str, int | None]]


def held(obj: Any, rec: Any, code: CodeType | None, lasti: int, opener: Opener) -> None:
    """The thread of ``rec`` took ``obj`` (its first unit) at ``(code, lasti)``.

    ``obj._dw_slot`` is ``[file number, offset, rec, code, lasti]``: the holder last
    written there, so taking the lock again where it was taken last time
    stores one byte.  ``opener`` gives the run directory, the process's name
    and its start time, for the file's first use."""
    try:
        s = obj.__dict__.get("_dw_slot")
        if s is None or s[0] != _L.gen:
            s = _new_slot(obj, opener)
            if s is None:
                return
        m = _L.map
        if m is None:
            return
        if s[2] is not rec or s[3] is not code or s[4] != lasti:
            _write_holder(m, s, rec, code, lasti)
        m[s[1]] = 1
    except Exception:  # never in the application's way (a map closed meanwhile)
        return


def _new_slot(obj: Any, opener: Opener) -> list[Any] | None:
    pid = os.getpid()
    if _L.pid != pid and (_L.failed == pid or not _ensure(pid, opener)):
        return None
    return _allocate(obj)


def _ensure(pid: int, opener: Opener) -> bool:
    with _L.lock:
        if _L.pid == pid:
            return True
        directory, process, start = opener()
        try:
            if directory is None:
                raise OSError("no run directory")
            _open(directory, process, start)
        except (OSError, ValueError, AttributeError):  # no MAP_SHARED (Windows)
            _L.failed = pid
            return False
    return True


def _allocate(obj: Any) -> list[Any] | None:
    m = _L.map
    if m is None:
        return None
    try:
        index = _L.free.pop()
    except IndexError:
        index = _L.next
        if index >= SLOTS:
            m[_INCOMPLETE] = 1
            return None
        _L.next = index + 1
    offset = HEADER + index * SLOT
    desc = _encoded(
        [obj._dw_name, obj._dw_type, site_json(obj.__dict__.get("_dw_created"))], _HOLDER - 8
    )
    if desc is None:
        desc = _encoded([obj._dw_name, obj._dw_type, None], _HOLDER - 8)
    if desc is None:
        _L.free.append(index)
        m[_INCOMPLETE] = 1
        return None
    m[offset] = 0
    m[offset + 8 : offset + 8 + len(desc)] = desc
    s = [_L.gen, offset, None, None, -1]
    obj.__dict__["_dw_slot"] = s
    _L.refs[offset] = weakref.ref(obj, functools.partial(_collected, offset, _L.gen))
    return s


def _collected(offset: int, gen: int, _ref: object) -> None:
    # A lock object collected while this process holds it: the semaphore is
    # still held (other processes may have it too); its slot stays as it is.
    with contextlib.suppress(Exception):
        m = _L.map
        if _L.gen == gen and m is not None and m[offset] == 0:
            _L.refs.pop(offset, None)
            _L.free.append((offset - HEADER) // SLOT)


def _write_holder(m: mmap.mmap, s: list[Any], rec: Any, code: CodeType | None, lasti: int) -> None:
    key = (rec, code, lasti)
    data = _L.holders.get(key)
    if data is None:
        data = _holder_bytes(rec, code, lasti)
        if len(_L.holders) > 4096:
            _L.holders.clear()
        _L.holders[key] = data
    start = s[1] + _HOLDER
    m[start : start + len(data)] = data
    s[2:] = [rec, code, lasti]


def _holder_bytes(rec: Any, code: CodeType | None, lasti: int) -> bytes:
    site = _state.site_at((code, lasti)) if code is not None else None
    data = _encoded([rec.ident, rec.name, rec.daemon, site_json(site)], SLOT - _HOLDER)
    if data is None:
        data = _encoded([rec.ident, rec.name, rec.daemon, None], SLOT - _HOLDER)
    return data or _LEN.pack(2) + b"[]"


def released(obj: Any, state: int = 0) -> None:
    """Nobody in this process holds ``obj`` any more (``state=1``: undo that,
    the release failed)."""
    s = obj.__dict__.get("_dw_slot")
    if s is not None and s[0] == _L.gen:
        m = _L.map
        if m is not None:
            try:
                m[s[1]] = state
            except ValueError:  # closed meanwhile (no suppress(): it costs a call)
                return


def close() -> None:
    """No more file (the detector is switched off)."""
    m, path, pid = _L.map, _L.path, _L.pid
    _L.pid, _L.map, _L.path, _L.gen = 0, None, None, 0
    if m is not None:
        with contextlib.suppress(Exception):
            m.close()
    if path is not None and pid == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(path)


def at_exit() -> None:
    """A process that ends normally removes its file, unless it ends holding
    a shared lock: then the file says what it left held.  The mapping stays
    (a later release still clears its slot)."""
    m, path = _L.map, _L.path
    if m is None or path is None or _L.pid != os.getpid():
        return
    with contextlib.suppress(Exception):
        if any(m[HEADER + i * SLOT] for i in range(_L.next)):
            return
        os.unlink(path)
        _L.path = None


def after_fork_in_child() -> None:
    """The parent's mapping is the parent's: this process makes its own."""
    m = _L.map
    _L.__init__()  # type: ignore[misc]
    if m is not None:
        with contextlib.suppress(Exception):
            m.close()


# -- reading another process's file ---------------------------------------------------


def files(directory: str) -> list[tuple[int, str]]:
    """(pid, path) of every ledger in ``directory`` but this process's."""
    me = os.getpid()
    out = []
    try:
        with os.scandir(directory) as it:
            for e in it:
                stem = e.name[: -len(SUFFIX)]
                if e.name.endswith(SUFFIX) and stem.isdigit() and int(stem) != me:
                    out.append((int(stem), e.path))
    except OSError:
        return []
    return out


def _decode(buf: bytes, offset: int) -> Any:
    (n,) = _LEN.unpack_from(buf, offset)
    import json

    return json.loads(buf[offset + _LEN.size : offset + _LEN.size + n].decode("utf-8"))


def header(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            buf = f.read(HEADER)
        if not buf.startswith(MAGIC):
            return None
        data = _decode(buf, len(MAGIC))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(data, dict):
        return None
    data["incomplete"] = len(buf) < HEADER or buf[_INCOMPLETE] != 0
    return data


def snapshot(path: str, head: dict[str, Any]) -> dict[str, Any] | None:
    """The file of a process that is gone, as the snapshot JSON it would have
    published (its holders, dead, and what they hold); None if it held nothing."""
    try:
        with open(path, "rb") as f:
            buf = f.read(SIZE)
    except OSError:
        return None
    threads: dict[int, dict[str, Any]] = {}
    resources: list[dict[str, Any]] = []
    for index in range(SLOTS):
        offset = HEADER + index * SLOT
        if offset >= len(buf):
            break
        if buf[offset] != 1:
            continue
        try:
            lock, holder = _slot(buf, offset)
        except (ValueError, TypeError, struct.error):  # not ours, or torn
            continue
        name, kind, created = lock
        ident, tname, daemon, site = holder
        t = threads.setdefault(
            ident,
            {
                "key": ident,
                "ident": ident,
                "name": tname,
                "daemon": daemon,
                "alive": False,
                "lost_at_fork": False,
                "wait": None,
                "held": [],
                "stack": [],
            },
        )
        t["held"].append([index, 1, site])
        resources.append(_resource(index, name, kind, created, ident))
    if not resources:
        return None
    return {
        "version": 1,
        "pid": head.get("pid"),
        "start": head.get("start"),
        "process": head.get("process", "?"),
        "threads": list(threads.values()),
        "resources": resources,
        "wakeable": [],
    }


def _site_checked(value: Any) -> list[Any] | None:
    if value is None:
        return None
    file, line, function = value
    return [str(file), int(line), str(function)]


def _slot(buf: bytes, offset: int) -> tuple[tuple[str, str, Any], tuple[int, str, bool, Any]]:
    """A held slot's lock (name, type, created site) and holder (ident, thread
    name, daemon, site), checked (ValueError or TypeError if malformed)."""
    name, kind, created = _decode(buf, offset + 8)
    ident, tname, daemon, site = _decode(buf, offset + _HOLDER)
    lock = (str(name), str(kind), _site_checked(created))
    return lock, (int(ident), str(tname), bool(daemon), _site_checked(site))


def _resource(index: int, name: str, kind: str, created: Any, holder: int) -> dict[str, Any]:
    return {
        "key": index,
        "name": name,
        "id": name,
        "type": kind,
        "created_at": created,
        "holders": [[holder, 1]],
        "free": 0,
        "owner_bound": True,
        "kind": LOCK_KIND,
        "detail": "",
        "verb": "",
        "title": "",
        "group": "",
        "parts": [],
    }
