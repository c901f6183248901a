"""The tracked waits beyond locks, as they run in the application's threads:
``Condition.wait`` (and what is built on it: Event, Barrier, queue.Queue,
futures), ``Thread.join``, and what an executor's futures need to be told
apart (who runs one, which executor it belongs to).

They wrap the originals in place on their classes (`patch` installs them:
plain functions where the original is one and `PLAIN` has a maker, wrapt's
wrappers otherwise), so objects made before `enable()` are covered too.
Only a wait that really blocks pays: ``Condition.wait`` is itself the
blocking path; it keeps the calling frame, and what the wait means is read
from it only when someone asks (`meaning.ConditionWait`).
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import inspect
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from deadlockwatch._track import native as _native
from deadlockwatch._track import signals as _signals
from deadlockwatch._track import state as _state
from deadlockwatch._track.meaning import condition_wait_record
from deadlockwatch._track.state import (
    WaitRecord,
    current_record,
    frame_site,
    internal_file,
    tls,
    wait_lock,
    wait_until,
)
from deadlockwatch._track.views import ThreadView

internal_file(__file__)

_STDLIB = os.path.dirname(threading.__file__)
# Waits are reported where the application called get(), result() or join(),
# not inside the standard library's own frames.
for _name in ("queue.py", "concurrent/futures/_base.py", "concurrent/futures/thread.py"):
    internal_file(os.path.join(_STDLIB, *_name.split("/")))

#: True while enabled: the wrappers track; False: they call the original.
active = False

_TIMEOUT_MAX = _native.TIMEOUT_MAX
_allocate_lock = _native.allocate_lock
_getframe = _native.getframe


def _timeout_arg(timeout: Any = None) -> Any:
    return timeout


def _usable(timeout: Any) -> bool:
    """A timeout the tracked wait handles exactly as the original would."""
    if timeout is None:
        return True
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        return False
    return 0 < timeout <= _native.TIMEOUT_MAX


def _noop() -> None:
    return None


def _green() -> bool:
    """Under green threads the original waits (which take threading's
    ``_allocate_lock``, patched to a green lock) and the detector stands down."""
    if not _state.green():
        return False
    hook = _state.on_green
    if hook is not None:
        hook()
    return True


def condition_wait(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Condition.wait``, as threading's own, with the blocking part tracked:
    the wrapt wrapper, for an original that is not a plain function (`patch`
    installs `_plain_condition_wait`'s otherwise)."""
    if kwargs or len(args) > 1:
        try:
            timeout = _timeout_arg(*args, **kwargs)
        except TypeError:
            return wrapped(*args, **kwargs)  # the original's own message
    else:
        timeout = args[0] if args else None
    if not active or not _usable(timeout) or instance is None or _green():
        return wrapped(*args, **kwargs)
    return _tracked_wait(instance, timeout)


def _plain_condition_wait(original: Callable[..., Any]) -> Callable[..., Any]:
    """`condition_wait` as a plain function in the class, with the original's
    signature (what `patch` installs when the original is a function, as
    threading's is).  Every wait that blocks comes here (every turn of a
    ping-pong): wrapt's wrapper made a bound wrapper at every lookup and a
    tuple and a dict at every call, and the common case is written out, the
    checks in the order of the helpers they stand for."""

    @functools.wraps(original)
    def wait(self: Any, timeout: Any = None) -> Any:
        fast = _fast
        if fast is not None:
            got = fast(self, timeout)
            if got is not _SLOW:
                return got
        if (
            not active
            or not (
                timeout is None
                or (
                    (type(timeout) is float or type(timeout) is int) and 0 < timeout <= _TIMEOUT_MAX
                )
                or _usable(timeout)
            )
            or (_thread.allocate_lock is not _allocate_lock and _green())
        ):
            return original(self, timeout)
        lock = self._lock
        # self._is_owned(), as threading's own, without probing a tracked
        # lock (a probe by its holder is what marks a signal: `signals`)
        kind = getattr(lock, "_dw_type", None)
        if not (
            lock.locked()
            if kind == "Lock"
            else lock._raw._is_owned()
            if kind == "RLock"
            else self._is_owned()
        ):
            raise RuntimeError("cannot wait on un-acquired lock")
        try:
            caller: Any = _getframe(1)
        except ValueError:
            caller = None
        if timeout is None and _signals.learning:
            _signals.waiting(self, "Condition", caller)
        waiter = _allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        saved_state = self._release_save()
        gotit = False
        try:  # restore state no matter what (e.g., KeyboardInterrupt)
            try:
                rec = tls.rec
            except AttributeError:
                rec = _state.new_record()
            # What the wait means is read from ``caller`` when first asked.
            wait = condition_wait_record(rec, self, timeout, caller, waiter)
            gotit = wait_lock(wait, waiter, timeout)
            return gotit
        finally:
            self._acquire_restore(saved_state)
            if not gotit:
                try:  # noqa: SIM105 (cheaper than contextlib.suppress, every timed-out wait)
                    self._waiters.remove(waiter)
                except ValueError:
                    pass

    return wait


#: What `_speedups.wait_fast` answers when the Python wait is to go on.
_SLOW: Any = object()

#: `_speedups.wait_fast` once configured (the C core), else None: the
#: blocking case of the wait in C, its record made and registered there too
#: (issue 17: about 4,000 instructions less a blocking wait, callgrind, 3.11).
_fast: Callable[[Any, Any], Any] | None = None


def _configure_fast() -> None:
    """Configure `_fast` where the C core runs (`patch` installs the wait)."""
    global _fast
    from deadlockwatch._track import primitives

    if _fast is not None or not primitives.ACCELERATED:
        return
    from deadlockwatch._track import _speedups, meaning

    try:
        _speedups.configure_wait(
            globals(),
            vars(_state),
            vars(_signals),
            vars(meaning),
            vars(_thread),
            meaning.ConditionWait,
            primitives.TrackedLock,
            primitives.TrackedRLock,
            _state._OPEN,
            _state.poll_start,
            _state.poll_end,
            _SLOW,
            float(_TIMEOUT_MAX),
        )
    except Exception:  # built from another version of the source
        return
    _fast = _speedups.wait_fast


def _plain_condition_wait_installed(original: Callable[..., Any]) -> Callable[..., Any]:
    """`_plain_condition_wait`, what `patch` installs: `_fast` configured first."""
    _configure_fast()
    return _plain_condition_wait(original)


#: The tracked wait `condition_wait` calls (its caller's frame, the first
#: `meaning` reads, is `condition_wait`'s, which `meaning` skips).
_tracked_wait = _plain_condition_wait(_native.RawCondition.wait)


def thread_join(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Thread.join``: the original's checks, then a tracked, sliced wait."""
    try:
        timeout = _timeout_arg(*args, **kwargs)
    except TypeError:
        return wrapped(*args, **kwargs)
    if not active or not _usable(timeout) or instance is None or _green():
        return wrapped(*args, **kwargs)
    wrapped(0)  # raises what the original raises (not started, current thread)
    if not instance.is_alive():
        return None
    rec = current_record()
    wait = WaitRecord(rec, ThreadView(instance), timeout, frame_site(_native.caller_frame(1)))

    def attempt(seconds: float) -> bool:
        wrapped(seconds)
        return not instance.is_alive()

    wait_until(wait, attempt, timeout, _noop)
    return None


def future_running(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Future.set_running_or_notify_cancel``: remember which thread runs it."""
    result = wrapped(*args, **kwargs)
    if result and active and instance is not None:
        instance._dw_runner = current_record()
    return result


def executor_submit(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``ThreadPoolExecutor.submit``: remember the executor of each future."""
    future = wrapped(*args, **kwargs)
    if active and instance is not None:
        with contextlib.suppress(AttributeError, TypeError):
            future._dw_executor = weakref.ref(instance)
    return future


def _plain_future_running(original: Callable[..., Any]) -> Callable[..., Any]:
    """`future_running` as a plain function in the class (what `patch` installs
    when the original is a function): a wrapt wrapper makes a bound wrapper
    at every lookup and a tuple and a dict at every call: with this and
    `_plain_executor_submit`, the executor workload costs about 14,000
    instructions a task less (callgrind, 3.11)."""

    @functools.wraps(original)
    def set_running_or_notify_cancel(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if result and active and args:
            args[0]._dw_runner = current_record()
        return result

    return set_running_or_notify_cancel


def _plain_executor_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    """`executor_submit` as a plain function in the class (see
    `_plain_future_running`)."""

    @functools.wraps(original)
    def submit(*args: Any, **kwargs: Any) -> Any:
        future = original(*args, **kwargs)
        if active and args:
            try:  # noqa: SIM105 (cheaper than contextlib.suppress, once a task)
                future._dw_executor = weakref.ref(args[0])
            except (AttributeError, TypeError):
                pass
        return future

    return submit


# -- Condition's calls of its lock, without a frame of threading's ------------
def _forwards(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """What `SHORTCUTS` stand for: the original, unchanged (never installed as
    a wrapt wrapper: where no shortcut fits, the original stays)."""
    return wrapped(*args, **kwargs)


def _condition_enter(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _forwards(wrapped, instance, args, kwargs)


def _condition_exit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _forwards(wrapped, instance, args, kwargs)


def _condition_release_save(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _forwards(wrapped, instance, args, kwargs)


def _condition_acquire_restore(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _forwards(wrapped, instance, args, kwargs)


def _condition_is_owned(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _forwards(wrapped, instance, args, kwargs)


#: wrapper -> (the method of `_speedups.condition_methods` that does the same, the names
#: threading's original reads, its positional parameters, whether it takes
#: ``*args``).
_FORWARDS: dict[Callable[..., Any], tuple[str, tuple[str, ...], int, bool]] = {
    _condition_enter: ("__enter__", ("_lock", "__enter__"), 1, False),
    _condition_exit: ("__exit__", ("_lock", "__exit__"), 1, True),
    _condition_release_save: ("_release_save", ("_lock", "release"), 1, False),
    _condition_acquire_restore: ("_acquire_restore", ("_lock", "acquire"), 2, False),
    _condition_is_owned: ("_is_owned", ("_lock", "acquire", "release"), 1, False),
}


def _shortcut(wrapper: Callable[..., Any]) -> Callable[[Callable[..., Any]], Any]:
    """The maker of ``wrapper``'s shortcut: threading.Condition's ``__enter__``,
    ``__exit__``, ``_release_save``, ``_acquire_restore`` and ``_is_owned``
    only call methods of ``self._lock``; in C (`_speedups`), the same calls leave
    no frame of threading's between the application and its lock, so the C
    core of a tracked lock finds the application's call site at once instead
    of walking out of threading's frames at every ``with cond:`` (every Event
    set/clear/wait, every Queue put/get), and ``notify`` over a Lock probes
    it without a frame of its own.  Only where the C core runs, and
    only for an original that is what the shortcut stands for (threading's
    3.10 to 3.13: its code reads exactly these names); None otherwise: the
    original stays."""
    name, names, argcount, varargs = _FORWARDS[wrapper]

    def make(original: Callable[..., Any]) -> Any:
        from deadlockwatch._track import primitives

        code = getattr(original, "__code__", None)
        if (
            not primitives.ACCELERATED
            or code is None
            or code.co_names != names
            or code.co_argcount != argcount
            or bool(code.co_flags & inspect.CO_VARARGS) != varargs
            or code.co_kwonlyargcount
            or getattr(original, "__defaults__", None)
        ):
            return None
        from deadlockwatch._track import _speedups

        return _speedups.condition_methods()[name]

    return make


#: Wrappers with no effect of their own: `patch` installs what `PLAIN` makes
#: for them, or leaves the original.
SHORTCUTS: frozenset[Callable[..., Any]] = frozenset(_FORWARDS)


#: Wrappers `patch` installs as plain functions made by these from the
#: original (when the original is a plain function), not as wrapt wrappers;
#: a maker that answers None leaves the original (`SHORTCUTS`).
PLAIN: dict[Callable[..., Any], Callable[[Callable[..., Any]], Any]] = {
    condition_wait: _plain_condition_wait_installed,
    future_running: _plain_future_running,
    executor_submit: _plain_executor_submit,
    **{wrapper: _shortcut(wrapper) for wrapper in _FORWARDS},
}


# -- learning waits under locks (`signals`), installed while lock order is on --
def _wait_for_args(predicate: Any, timeout: Any = None) -> bool:
    return timeout is None


def condition_wait_for(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Condition.wait_for``: learned even when the predicate is already true
    (the other waits are seen where they take their signal's lock: `signals`)."""
    if _signals.learning and instance is not None:
        with contextlib.suppress(TypeError):
            if _wait_for_args(*args, **kwargs):
                _signals.waiting(instance, "Condition", _native.caller_frame(1))
    return wrapped(*args, **kwargs)


#: What `patch` installs while lock order is on (`signals`).
SIGNAL_TARGETS: tuple[tuple[str, str, str, Callable[..., Any]], ...] = (
    ("threading", "Condition", "wait_for", condition_wait_for),
)


#: (module name, class name, attribute, wrapper): what `patch` installs.
TARGETS: tuple[tuple[str, str, str, Callable[..., Any]], ...] = (
    ("threading", "Condition", "wait", condition_wait),
    ("threading", "Condition", "__enter__", _condition_enter),
    ("threading", "Condition", "__exit__", _condition_exit),
    ("threading", "Condition", "_release_save", _condition_release_save),
    ("threading", "Condition", "_acquire_restore", _condition_acquire_restore),
    ("threading", "Condition", "_is_owned", _condition_is_owned),
    ("threading", "Thread", "join", thread_join),
    ("concurrent.futures._base", "Future", "set_running_or_notify_cancel", future_running),
    ("concurrent.futures.thread", "ThreadPoolExecutor", "submit", executor_submit),
)
