"""deadlockwatch: find deadlocks between Python threads as they happen.

Switch it on with ``deadlockwatch.enable()``, ``import deadlockwatch.auto``,
or ``DEADLOCKWATCH=1`` in the environment (no code change).
"""

from ._api import check as check
from ._api import disable as disable
from ._api import dump as dump
from ._api import enable as enable
from ._api import is_enabled as is_enabled
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
from ._model import ResourceInfo as ResourceInfo
from ._model import Site as Site
from ._model import ThreadInfo as ThreadInfo
from ._model import WaitInfo as WaitInfo

__version__ = "0.1.0"

__all__ = [
    "ABORT_EXIT_STATUS",
    "Check",
    "Conditions",
    "ConfigError",
    "CycleStep",
    "DeadlockError",
    "Finding",
    "Frame",
    "HeldInfo",
    "ResourceInfo",
    "Site",
    "ThreadInfo",
    "WaitInfo",
    "check",
    "disable",
    "dump",
    "enable",
    "is_enabled",
    "watching",
]
