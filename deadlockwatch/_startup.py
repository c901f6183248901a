"""Start-up from the environment (imported by ``deadlockwatch.pth`` only when
``DEADLOCKWATCH`` is set and non-empty).

A bad setting stops the interpreter with one line naming the variable, the
value and what is accepted, before anything is patched.
"""

from __future__ import annotations

import os
import sys


def _in_subinterpreter() -> bool:
    """True in a subinterpreter (which the environment must not switch on: a
    watcher thread of its own would outlive ``Py_EndInterpreter``)."""
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


def _start() -> None:
    from ._config import ConfigError, env_enabled

    try:
        if not env_enabled(os.environ) or _in_subinterpreter():
            return
        from ._api import enable

        enable()
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        os._exit(2)


_start()
