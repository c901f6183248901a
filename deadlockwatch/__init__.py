"""deadlockwatch: find deadlocks between Python threads as they happen.

Switch it on with ``deadlockwatch.enable()``, ``import deadlockwatch.auto``,
or ``DEADLOCKWATCH=1`` in the environment (no code change).

The names below are loaded on first use, so that ``import deadlockwatch`` (and
the pytest plugin, when it is not asked for) costs next to nothing.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of the packages that provide
a plugin, and warns when one was imported before it could; with
``DEADLOCKWATCH=1`` this package is imported at start-up, before pytest, so
the marker (pytest's documented opt-out; deadlockwatch has no assert helpers
for tests) keeps that warning, an error under ``filterwarnings = error``, away.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._api import check as check
    from ._api import disable as disable
    from ._api import dump as dump
    from ._api import enable as enable
    from ._api import forget as forget
    from ._api import is_enabled as is_enabled
    from ._api import suppressed as suppressed
    from ._api import watching as watching
    from ._config import ABORT_EXIT_STATUS as ABORT_EXIT_STATUS
    from ._config import ConfigError as ConfigError
    from ._errors import DeadlockError as DeadlockError
    from ._model import Check as Check
    from ._model import Conditions as Conditions
    from ._model import CycleStep as CycleStep
    from ._model import Finding as Finding
    from ._model import Frame as Frame
    from ._model import HeldInfo as HeldInfo
    from ._model import OrderEdge as OrderEdge
    from ._model import ResourceInfo as ResourceInfo
    from ._model import Site as Site
    from ._model import ThreadInfo as ThreadInfo
    from ._model import WaitInfo as WaitInfo

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
