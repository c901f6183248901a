"""Installing and removing every patch of the tracking stage (with wrapt):
the tracked factories in ``threading``, and the wait wrappers of `waits`
(patched in place on their classes, so objects made before `enable()` are
covered too; a module not imported yet is patched right after it is).

Factories:

Only names looked up at call time are reached: ``threading.Lock()`` made
after `patch()` is tracked, a name bound earlier by ``from threading import
Lock`` is not.  Condition, Event, Barrier, Semaphore and queue.Queue look up
``Lock``/``RLock`` in their module when they are built, so they get tracked
locks too.

asyncio: `aio` patches its primitives once the program imports it.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from deadlockwatch._track import aio as _aio
from deadlockwatch._track import native as _native
from deadlockwatch._track import signals as _signals
from deadlockwatch._track import waits as _waits
from deadlockwatch._track.hook import when_imported
from deadlockwatch._track.primitives import (
    TrackedBoundedSemaphore,
    TrackedLock,
    TrackedRLock,
    TrackedSemaphore,
)
from deadlockwatch._track.state import internal_file
from deadlockwatch._track.wrapping import wrapper_types

internal_file(__file__)

#: Lock and RLock are factory functions (a class on 3.13): wrapped with wrapt.
_FACTORIES: tuple[tuple[str, Callable[..., Any], Any], ...] = (
    ("Lock", TrackedLock, _native.ORIGINAL_LOCK),
    ("RLock", TrackedRLock, _native.ORIGINAL_RLOCK),
)


#: Semaphore and BoundedSemaphore are classes that threading's own code calls
#: by name (``Semaphore.__init__(self, value)`` in BoundedSemaphore on
#: 3.10/3.11), so a function wrapper cannot stand in for them: the tracked
#: classes themselves do (their metaclass keeps ``isinstance`` working).
class _StandIn(type):
    """The metaclass of what stands in ``threading`` for Semaphore and
    BoundedSemaphore while enabled: instances and subclasses of the original
    (made before enabling, say) still pass ``isinstance``/``issubclass``."""

    _dw_stands_for: type

    def __instancecheck__(cls, obj: object) -> bool:
        return type.__instancecheck__(cls, obj) or isinstance(obj, cls._dw_stands_for)

    def __subclasscheck__(cls, sub: type) -> bool:
        return type.__subclasscheck__(cls, sub) or issubclass(sub, cls._dw_stands_for)


def _stand_in(tracked: type, original: type) -> type:
    tracked_init: Any = tracked.__dict__.get("__init__") or vars(tracked.__mro__[1])["__init__"]
    original_init: Any = vars(original)["__init__"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) + len(kwargs) <= 1 and set(kwargs) <= {"value"}:
            tracked_init(self, *args, **kwargs)
        else:
            original_init(self, *args, **kwargs)  # its own TypeError, message and all

    return _StandIn(
        original.__name__,
        (tracked,),
        {
            "_dw_stands_for": original,
            "__init__": __init__,
            # Named as threading's own: type(sem) reads threading.Semaphore,
            # and threading.__all__ checks still hold.
            "__module__": original.__module__,
            "__qualname__": original.__qualname__,
            "__doc__": tracked.__doc__,
        },
    )


_CLASSES: tuple[tuple[str, type, Any], ...] = (
    (
        "Semaphore",
        _stand_in(TrackedSemaphore, _native.ORIGINAL_SEMAPHORE),
        _native.ORIGINAL_SEMAPHORE,
    ),
    (
        "BoundedSemaphore",
        _stand_in(TrackedBoundedSemaphore, _native.ORIGINAL_BOUNDED_SEMAPHORE),
        _native.ORIGINAL_BOUNDED_SEMAPHORE,
    ),
)

_installed: dict[str, Any] = {}


class _Module:
    """Pickles as ``importlib.import_module(name)``: the stream names only the
    standard library, never deadlockwatch."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (importlib.import_module, (self.name,))


def _maker(tracked: Callable[..., Any], original: Any) -> Callable[..., Any]:
    """What ``threading.Lock()``/``RLock()`` do while patched."""

    def make(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not _installed:
            # The original's own answer to arguments (its error and message);
            # and a name bound to this wrapper before disable() (``from
            # threading import Lock``) makes untracked locks again after it.
            return original(*args, **kwargs)
        return tracked()

    return make


def _as_wrapt_wrapper(make: Callable[..., Any]) -> Callable[..., Any]:
    """``make`` with the signature wrapt gives its wrapper functions."""

    def wrapper(
        wrapped: object, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return make(*args, **kwargs)

    return wrapper


def patch() -> None:
    """Install every patch of this stage (idempotent): the lock factories, then
    the wait wrappers.  On an error, nothing is left half-patched."""
    try:
        _patch_factories()
        _patch_methods()
        _aio.patch()
    except BaseException:
        unpatch()
        raise


def unpatch() -> None:
    """Remove every patch of this stage (only where ours is still in place)."""
    _aio.unpatch()
    _unpatch_methods()
    _unpatch_factories()


def _patch_factories() -> None:
    """Make ``threading``'s lock factories create tracked primitives."""
    for name, cls, _original in _CLASSES:
        if name not in _installed:
            _installed[name] = (cls, getattr(threading, name))
            setattr(threading, name, cls)
    FunctionWrapper: Any = wrapper_types()[0]

    class TrackedFactory(FunctionWrapper):  # type: ignore[misc]
        """``isinstance(x, threading.Lock)`` (a class on 3.13) holds for tracked locks."""

        def __instancecheck__(self, obj: object) -> bool:
            wrapped: Any = self.__wrapped__
            tracked: Any = self._self_tracked
            if isinstance(wrapped, type) and isinstance(obj, tracked):
                return True
            return isinstance(obj, wrapped)

        # wrapt's proxies refuse to be copied or pickled; the factories are not
        # (multiprocessing's managers pickle threading.Lock for a spawned
        # server).  A copy is the factory itself, as for a function or a class,
        # and a pickle names ``threading.<name>``, whatever that is where it
        # is loaded.
        def __copy__(self) -> Any:
            return self

        def __deepcopy__(self, memo: object) -> Any:
            return self

        def __reduce__(self) -> tuple[Any, ...]:
            return (getattr, (_Module("threading"), self._self_name))

        def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
            return self.__reduce__()

    for name, tracked, original in _FACTORIES:
        if name in _installed:
            continue
        current = getattr(threading, name)
        if current is not original:
            # Someone else's wrapper: wrap it, and put it back on unpatch.
            original = current
        make = _maker(tracked, original)

        # wrapt's own call of a wrapped *function* looks for a ``__self__`` to
        # bind, and attribute lookups on its proxies are slow: 0.5-0.7 us a
        # call.  The factories are called for every lock a program makes (a
        # Future makes one), so each gets a class whose call goes straight
        # to ``make`` (about 0.2 us).
        factory = type(f"Tracked{name}Factory", (TrackedFactory,), {"__call__": staticmethod(make)})
        wrapper = factory(original, _as_wrapt_wrapper(make))
        wrapper._self_tracked = tracked
        wrapper._self_name = name
        setattr(threading, name, wrapper)
        _installed[name] = (wrapper, original)


def _unpatch_factories() -> None:
    """Put the original factories back (only where our wrapper is still in place)."""
    for name, (wrapper, original) in list(_installed.items()):
        if getattr(threading, name) is wrapper:
            setattr(threading, name, original)
        del _installed[name]


# -- the wait wrappers: methods patched in place on their classes ---------------

#: (class, attribute) -> (our wrapper, what was there before)
_methods: dict[tuple[type, str], tuple[Any, Any]] = {}
_MethodWrapper: Any = None
_hooked: set[str] = set()


def _install_methods(module: Any) -> None:
    global _MethodWrapper
    if _MethodWrapper is None:
        FunctionWrapper: Any = wrapper_types()[0]
        BoundFunctionWrapper: Any = wrapper_types()[1]

        # Pickled as the originals are: ``Condition.wait`` by reference, and
        # a method bound to an object as getattr(object, name).
        class BoundMethodWrapper(BoundFunctionWrapper):  # type: ignore[misc]
            def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
                cls, attr = self._self_parent._self_dw_target
                instance = self._self_instance
                return (getattr, (cls if instance is None else instance, attr))

        class MethodWrapper(FunctionWrapper):  # type: ignore[misc]
            __bound_function_wrapper__ = BoundMethodWrapper

            def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
                return (getattr, self._self_dw_target)

        _MethodWrapper = MethodWrapper
    if not _waits.active:
        return
    for mod_name, cls_name, attr, wrapper in _targets():
        if mod_name != getattr(module, "__name__", None):
            continue
        cls = getattr(module, cls_name, None)
        if not isinstance(cls, type) or (cls, attr) in _methods:
            continue
        original = cls.__dict__.get(attr)
        if original is None:
            continue
        plain = _waits.PLAIN.get(wrapper)
        wrapped = (
            plain(original)
            if plain is not None and isinstance(original, types.FunctionType)
            else None
        )
        if wrapped is None:
            if wrapper in _waits.SHORTCUTS:
                continue  # no shortcut fits: the original stays
            wrapped = _MethodWrapper(original, wrapper)
            wrapped._self_dw_target = (cls, attr)
        setattr(cls, attr, wrapped)
        _methods[(cls, attr)] = (wrapped, original)


def _targets() -> tuple[tuple[str, str, str, Callable[..., Any]], ...]:
    """The wrappers to install: the waits, and while lock order is on, what
    learns waits under locks (`signals`)."""
    if _signals.learning:
        return _waits.TARGETS + _waits.SIGNAL_TARGETS
    return _waits.TARGETS


def learn_signals(on: bool) -> None:
    """Lock order is on (or off): install (or remove) what `signals` learns from."""
    if on == _signals.learning:
        return
    _signals.learning = on
    if on:
        if _waits.active:
            _patch_methods()
        return
    signal_wrappers = {w for *_, w in _waits.SIGNAL_TARGETS}
    for (cls, attr), (wrapped, original) in list(_methods.items()):
        if getattr(wrapped, "_self_wrapper", None) in signal_wrappers:
            if cls.__dict__.get(attr) is wrapped:
                setattr(cls, attr, original)
            del _methods[(cls, attr)]


def _patch_methods() -> None:
    """Install the wait wrappers; for modules not imported yet, when they are."""
    _waits.active = True
    for mod_name in dict.fromkeys(t[0] for t in _targets()):
        module = sys.modules.get(mod_name)
        if module is not None:
            _install_methods(module)
        elif mod_name not in _hooked:
            # Registered once: the hook checks `waits.active` itself.
            _hooked.add(mod_name)
            when_imported(mod_name, _install_methods)


def _unpatch_methods() -> None:
    """Put the original methods back (where our wrapper is still in place)."""
    _waits.active = False
    for (cls, attr), (wrapped, original) in list(_methods.items()):
        if cls.__dict__.get(attr) is wrapped:
            setattr(cls, attr, original)
        del _methods[(cls, attr)]
