"""Build hook: compile the optional C hot path, ``deadlockwatch._track._speedups``.

deadlockwatch works without it (``_primitives`` falls back to the same code
in Python), so a failed build is a warning, never an error: no compiler, a
free-threaded interpreter (the C code is for GIL builds only), or
``DEADLOCKWATCH_NO_SPEEDUPS=1`` in the environment of the install.
"""

from __future__ import annotations

import os
import sysconfig
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "deadlockwatch/_track/_speedups.c"


def _compile(root: str) -> str:
    """Compile in place (next to the Python sources); return the built file."""
    from setuptools import Distribution, Extension

    here = os.getcwd()
    os.chdir(root)
    try:
        dist = Distribution(
            {
                "name": "deadlockwatch",
                "ext_modules": [Extension("deadlockwatch._track._speedups", [SOURCE])],
            }
        )
        cmd: Any = dist.get_command_obj("build_ext")
        cmd.inplace = True
        cmd.ensure_finalized()
        cmd.run()
        return os.path.join(root, cmd.get_ext_fullpath("deadlockwatch._track._speedups"))
    finally:
        os.chdir(here)


class SpeedupsHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if os.environ.get("DEADLOCKWATCH_NO_SPEEDUPS", "") not in ("", "0"):
            self.app.display_info("deadlockwatch: DEADLOCKWATCH_NO_SPEEDUPS is set: pure Python")
            return
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            self.app.display_info("deadlockwatch: free-threaded interpreter: pure Python")
            return
        try:
            built = _compile(self.root)
        except Exception as exc:  # no compiler, no headers...
            self.app.display_warning(
                f"deadlockwatch: the C hot path was not built ({exc}); "
                "the pure-Python one will be used"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][built] = "deadlockwatch/_track/" + os.path.basename(built)
