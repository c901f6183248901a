"""Start-up from the environment (imported by ``deadlockwatch.pth`` only when
``DEADLOCKWATCH`` is set and non-empty).

It does the least it can, so that an interpreter that never uses threads
pays next to nothing (README, Speed):

* read and validate the options: a bad setting stops the interpreter with one
  line naming the variable, the value and what is accepted (exit status 2),
  before anything is patched;
* name the run directory that multiprocessing children share (made only when
  a shared lock is first used), in ``os.environ`` now, before the program's
  first line, so that it never changes while the program runs;
* put a post-import hook on ``threading`` (`_hook`).

The detector is enabled when the program first imports ``threading``, right
after threading's module body has run, before any other module can bind
``from threading import Lock`` or make a lock: ``logging``, ``queue``,
``concurrent.futures``, ``multiprocessing`` and ``asyncio`` all import
``threading`` first, so their module-level locks are tracked.  Nothing else
is imported here: no ``threading``, no wrapt, no networkx, no thread.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

    from deadlockwatch._config import Config


def _in_subinterpreter() -> bool:
    """True in a subinterpreter (which the environment must not switch on: a
    watcher thread of its own would outlive ``Py_EndInterpreter``)."""
    import _thread

    is_main = getattr(_thread, "_is_main_interpreter", None)  # 3.12+
    if is_main is not None:
        return not is_main()
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        try:
            return bool(module.get_current() != module.get_main())
        except Exception:
            return False
    return False


def _initializing(module: object) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _enable(config: Config) -> None:
    """Enable the detector with ``config`` right after threading is imported.

    When threading is first imported by one of deadlockwatch's own modules
    (``from deadlockwatch._watch.watcher import DETECTOR`` before anything else),
    enabling waits until no deadlockwatch module is half-imported any more:
    the end of that import."""
    from deadlockwatch._track.hook import after_each_import, forget, when_imported

    started = False

    def start(just_imported: ModuleType) -> None:
        nonlocal started
        if started or "threading" not in sys.modules:
            return
        for name, module in list(sys.modules.items()):
            if (
                name.startswith("deadlockwatch.")
                and name != __name__
                and module is not just_imported
                and _initializing(module)
            ):
                return  # again when that import is done
        started = True
        forget(start)
        from deadlockwatch._api import start as start_detector

        start_detector(config)

    after_each_import("deadlockwatch.", start)
    when_imported("threading", start)


def _start() -> None:
    from deadlockwatch._config import RUN_DIR_VAR, Config, ConfigError, env_enabled, run_dir_name

    try:
        if not env_enabled(os.environ) or _in_subinterpreter():
            return
        config = Config().with_environ(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        os._exit(2)
    from deadlockwatch._config import warn_unknown_env

    warn_unknown_env(os.environ, sys.stderr.write)
    if not os.environ.get(RUN_DIR_VAR):
        os.environ[RUN_DIR_VAR] = run_dir_name()
    _enable(config)


_start()
