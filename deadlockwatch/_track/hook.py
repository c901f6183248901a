"""Running code the moment a module has been imported, before anyone else
uses it: the post-import hooks that let start-up patch nothing up front.

A finder at the front of ``sys.meta_path`` answers only for the module
names that have a hook waiting: it asks the finders behind it for the
module's spec and puts a loader in front of the real one, which executes
the module as the real one would, then runs the hooks.  Until then the
module object's ``__loader__`` and ``__spec__.loader`` are the real loader
again (wrapt's post-import hooks do the same; theirs need ``import wrapt``,
which imports asyncio, logging and more).

A hook for a module already imported runs at once.  Hooks run once; a hook's
error is printed and does not stop the import.  The finder stays on
``sys.meta_path`` once put there (removing it could make another thread's
import, iterating the list meanwhile, skip a finder) and costs one dict
lookup per import when no hook waits.

Imported at start-up: it imports nothing beyond ``sys`` and ``_thread``.
"""

from __future__ import annotations

import _thread
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    Hook = Callable[[ModuleType], object]

#: Module name -> hooks waiting for its import.
_hooks: dict[str, list[Hook]] = {}
#: (name prefix, hook): run after each import of a module whose name starts so,
#: until taken off.
_prefix_hooks: list[tuple[str, Hook]] = []
_lock = _thread.allocate_lock()
#: Per thread: the names whose spec this finder is looking up (so that a
#: finder behind it that asks ``sys.meta_path`` again does not loop).
_busy = _thread._local()


def when_imported(name: str, hook: Hook) -> None:
    """Run ``hook(module)`` right after module ``name`` is executed (now, if it
    was imported already)."""
    module = sys.modules.get(name)
    if module is not None:
        hook(module)
        return
    with _lock:
        _hooks.setdefault(name, []).append(hook)
        if not any(type(f) is _Finder for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())


def after_each_import(prefix: str, hook: Hook) -> None:
    """Run ``hook(module)`` after each import of a module whose name starts
    with ``prefix``, until `forget` takes it off."""
    with _lock:
        _prefix_hooks.append((prefix, hook))
        if not any(type(f) is _Finder for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())


def forget(hook: Hook) -> None:
    with _lock:
        _prefix_hooks[:] = [(p, h) for p, h in _prefix_hooks if h is not hook]


def waits_for(name: str) -> bool:
    """Whether a hook waits for the import of module ``name``."""
    return _wanted(name)


def _wanted(name: str) -> bool:
    return name in _hooks or any(name.startswith(p) for p, _ in _prefix_hooks)


def _run(name: str, module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(name, [])
        hooks += [h for p, h in _prefix_hooks if name.startswith(p)]
    for hook in hooks:
        try:
            hook(module)
        except Exception:
            import traceback

            sys.stderr.write(f"deadlockwatch: a hook for importing {name} failed:\n")
            traceback.print_exc()


class _Finder:
    """Finds only modules with a hook waiting, through the finders behind it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if not _wanted(name):
            return None
        busy: set[str] | None = getattr(_busy, "names", None)
        if busy is None:
            busy = _busy.names = set()
        if name in busy:
            return None
        busy.add(name)
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self or type(finder) is _Finder:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
        finally:
            busy.discard(name)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return None  # the import system finds it again, without a hook
        spec.loader = _Loader(loader, name)
        return spec

    def invalidate_caches(self) -> None:
        pass


class _Loader:
    """The real loader, then the hooks."""

    def __init__(self, loader: Any, name: str) -> None:
        self._dw_loader = loader
        self._dw_name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._dw_loader, attr)

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._dw_loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        loader = self._dw_loader
        # What the module, and anyone looking at it, sees: the real loader.
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        loader.exec_module(module)
        if sys.modules.get(self._dw_name) is module:
            _run(self._dw_name, module)
        # else a private copy (module_from_spec() and exec_module() by hand):
        # the hooks wait for the real import.
