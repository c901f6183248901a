"""The run directory where processes publish what they hold and wait for.

Named at start-up in ``DEADLOCKWATCH_RUN_DIR`` (children inherit it), made
``0700`` by the first process that needs it: no server, no port.  This
process's own ``<pid>.json``, written atomically, and whether another
process is still alive.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import stat
import sys
from typing import Any

from deadlockwatch._config import RUN_DIR_VAR
from deadlockwatch._processes import ledger as _ledger
from deadlockwatch._track import native as _native
from deadlockwatch._track.state import (
    internal_file,
)

internal_file(__file__)


class _Own:
    """This process's own file: what was last written, and its identity."""

    def __init__(self) -> None:
        self.written: str | None = None
        self.finalizer = False
        self.start: int | None = None
        self.start_pid = 0


OWN = _Own()

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
    if OWN.start_pid != pid:
        OWN.start, OWN.start_pid = _start_time(pid), pid
    return d, _process_name(), OWN.start


def _at_exit(hook: Any) -> None:
    """Run ``hook`` when this process ends normally: multiprocessing's children
    end with os._exit, after its own exit hook runs its finalizers."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        with contextlib.suppress(Exception):
            util.Finalize(None, hook, exitpriority=-1000)
    atexit.register(hook)


def _remove_own() -> None:
    if OWN.written is None:
        return
    OWN.written = None
    path = _own_path()
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _write_own(text: str) -> None:
    path = _own_path()
    if path is None or text == OWN.written:
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
    OWN.written = text
    if not OWN.finalizer:
        OWN.finalizer = True
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


def _process_name() -> str:
    process = sys.modules.get("multiprocessing.process")
    try:
        return str(process.current_process().name) if process is not None else "?"
    except Exception:
        return "?"
