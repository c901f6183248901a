"""wrapt's wrapper types, without ``import wrapt``.

``import wrapt`` (2.x) executes ``wrapt/__init__.py``, which imports its
caching and synchronization helpers and with them asyncio, logging,
concurrent.futures, importlib.metadata, inspect...: about 170 modules and
90 ms.  deadlockwatch needs only ``FunctionWrapper`` and
``BoundFunctionWrapper``, which wrapt implements in its C extension
``wrapt._wrappers``: that file is loaded here by itself, as a private copy
(not put in ``sys.modules``: a program importing wrapt later gets its own,
complete wrapt).  The extension imports ``wrapt.exceptions`` when it is
loaded (for one exception class), and importing it by name imports the
package first: while it loads (under the interpreter's import lock), a
private copy of that small module and an empty stand-in for the package are
in ``sys.modules``, then taken out again.  Where that cannot be done (no C extension built, or
``WRAPT_DISABLE_EXTENSIONS`` set), wrapt is imported as usual.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_types: tuple[Any, Any] | None = None


def _extension() -> Any:
    """``wrapt._wrappers`` loaded from its file, or None."""
    loaded = sys.modules.get("wrapt._wrappers")
    if loaded is not None:
        return loaded
    if os.environ.get("WRAPT_DISABLE_EXTENSIONS"):
        return None
    from importlib.machinery import EXTENSION_SUFFIXES, PathFinder

    package = PathFinder.find_spec("wrapt")
    for directory in getattr(package, "submodule_search_locations", None) or ():
        for suffix in EXTENSION_SUFFIXES:
            path = os.path.join(directory, "_wrappers" + suffix)
            exceptions = os.path.join(directory, "exceptions.py")
            if not os.path.isfile(path):
                continue
            try:
                return _load(path, exceptions)
            except (ImportError, OSError):
                return None  # wrapt is imported as usual
    return None


def _load(path: str, exceptions: str) -> Any:
    import _imp
    from importlib.machinery import ExtensionFileLoader, SourceFileLoader
    from importlib.util import module_from_spec, spec_from_loader

    _imp.acquire_lock()
    try:
        stand_ins: dict[str, Any] = {}
        if "wrapt" not in sys.modules:
            stand_ins["wrapt"] = type(sys)("wrapt")
        if "wrapt.exceptions" not in sys.modules and os.path.isfile(exceptions):  # wrapt 2
            source = SourceFileLoader("wrapt.exceptions", exceptions)
            spec = spec_from_loader("wrapt.exceptions", source)
            if spec is None:
                return None
            module = module_from_spec(spec)
            source.exec_module(module)
            stand_ins["wrapt.exceptions"] = module
        sys.modules.update(stand_ins)
        try:
            loader = ExtensionFileLoader("wrapt._wrappers", path)
            spec = spec_from_loader("wrapt._wrappers", loader)
            if spec is None:
                return None
            module = module_from_spec(spec)
            loader.exec_module(module)
            return module
        finally:
            for name, stand_in in stand_ins.items():
                if sys.modules.get(name) is stand_in:
                    del sys.modules[name]
    finally:
        _imp.release_lock()


def wrapper_types() -> tuple[Any, Any]:
    """(FunctionWrapper, BoundFunctionWrapper)."""
    global _types
    if _types is None:
        wrapt: Any = sys.modules.get("wrapt")
        if wrapt is None or not hasattr(wrapt, "FunctionWrapper"):
            ext = _extension()
            wrapt = ext if ext is not None and hasattr(ext, "FunctionWrapper") else None
        if wrapt is None:
            import wrapt
        _types = (wrapt.FunctionWrapper, wrapt.BoundFunctionWrapper)
    return _types
