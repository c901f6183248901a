"""``import deadlockwatch.auto``: enable the detector, with options from the environment.

Put it first among your imports, so that locks made at import time by the
modules that follow are tracked too.
"""

from ._api import enable

enable()
