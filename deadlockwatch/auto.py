"""``import deadlockwatch.auto``: enable the detector, with options from the environment.

Put it first among your imports, so that locks made at import time by the
modules that follow are tracked too.  ``DEADLOCKWATCH=0`` in the environment
switches it off without touching the code.
"""

import os

from deadlockwatch._api import enable
from deadlockwatch._config import ENABLE_VAR, parse_bool

if os.environ.get(ENABLE_VAR, "") == "" or parse_bool(
    os.environ[ENABLE_VAR], f"environment variable {ENABLE_VAR}"
):
    enable()
