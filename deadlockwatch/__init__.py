"""deadlockwatch: find deadlocks between Python threads (and asyncio tasks) as they happen.

Switch it on with ``deadlockwatch.enable()``, ``import deadlockwatch.auto``,
or ``DEADLOCKWATCH=1`` in the environment (no code change).

The names below are loaded on first use, so that ``import deadlockwatch`` (and
the pytest plugin, when it is not asked for) costs next to nothing.

Layout: the package is split by stage, in the order a blocked acquire goes
through it to its report. Imports go one way, down this list (checked by
``tests/test_layout.py``, imports inside functions included):

- surfaces: `_api` (enable, disable, check, dump...), `_cli` and
  ``__main__`` (the runner and ``deadlockwatch report``), `_pytest_plugin`,
  `_startup` (``DEADLOCKWATCH=1`` through the ``.pth`` file), `auto`, `_demo`;
- `_watch/`: the watcher thread: tick, capture, confirmation, who can signal,
  the one action policy;
- `_processes/`: the multiprocessing extension the watcher calls at each tick;
- `_analysis/`: pure analysis of a snapshot (deadlock reduction, networkx);
- `_report/`: text, JSON written and read back with one schema, DOT;
- `_track/`: what runs in the application's threads: records, sites, tracked
  primitives and their C core, wait wrappers, lock order, every patch and the
  import hook;
- vocabulary shared by all: `_model` (findings, sites), `_config` (settings
  from every source, validated), `_errors`.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of the packages that provide
a plugin, and warns when one was imported before it could; with
``DEADLOCKWATCH=1`` this package is imported at start-up, before pytest, so
the marker (pytest's documented opt-out; deadlockwatch has no assert helpers
for tests) keeps that warning, an error under ``filterwarnings = error``, away.
pytest never sees the other modules: the plugin finds them in front of its
hook (`_pytest_plugin._OwnModules`), so that no session parses them again.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from deadlockwatch._api import check as check
    from deadlockwatch._api import disable as disable
    from deadlockwatch._api import dump as dump
    from deadlockwatch._api import enable as enable
    from deadlockwatch._api import forget as forget
    from deadlockwatch._api import is_enabled as is_enabled
    from deadlockwatch._api import suppressed as suppressed
    from deadlockwatch._api import watching as watching
    from deadlockwatch._config import ABORT_EXIT_STATUS as ABORT_EXIT_STATUS
    from deadlockwatch._config import ConfigError as ConfigError
    from deadlockwatch._errors import DeadlockError as DeadlockError
    from deadlockwatch._model import Check as Check
    from deadlockwatch._model import Conditions as Conditions
    from deadlockwatch._model import CycleStep as CycleStep
    from deadlockwatch._model import Finding as Finding
    from deadlockwatch._model import Frame as Frame
    from deadlockwatch._model import HeldInfo as HeldInfo
    from deadlockwatch._model import OrderEdge as OrderEdge
    from deadlockwatch._model import ResourceInfo as ResourceInfo
    from deadlockwatch._model import Site as Site
    from deadlockwatch._model import ThreadInfo as ThreadInfo
    from deadlockwatch._model import WaitInfo as WaitInfo

__version__ = "0.1.0"

_WHERE = {
    "check": "_api",
    "disable": "_api",
    "dump": "_api",
    "enable": "_api",
    "forget": "_api",
    "suppressed": "_api",
    "is_enabled": "_api",
    "watching": "_api",
    "ABORT_EXIT_STATUS": "_config",
    "ConfigError": "_config",
    "DeadlockError": "_errors",
    "Check": "_model",
    "Conditions": "_model",
    "CycleStep": "_model",
    "Finding": "_model",
    "Frame": "_model",
    "OrderEdge": "_model",
    "HeldInfo": "_model",
    "ResourceInfo": "_model",
    "Site": "_model",
    "ThreadInfo": "_model",
    "WaitInfo": "_model",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'deadlockwatch' has no attribute {name!r}")
    value = getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
