"""An event loop's queues, read without running the loop's code.

asyncio's loop keeps them in Python attributes: ``_ready`` (handles to run
next), ``_scheduled`` (``TimerHandle``s with ``_callback``, ``_args``,
``_when``, ``_cancelled``), ``_selector`` (the file descriptors it
watches), ``_signal_handlers``.

uvloop's loop is a C (Cython) object with no Python attributes, but the
collector sees what it holds: ``gc.get_referents(loop)`` gives its object
fields in the order uvloop declares them (uvloop/loop.pxd), among them
``_ready`` (a deque of ``Handle``s), the streams with writes queued, its
servers, its transports (a ``WeakValueDictionary`` by file descriptor), its
subprocesses, its readers and writers (``add_reader``), its signal handlers,
its own wake-up socket pair, its pending ``TimerHandle``s (a set: a handle
leaves it when it runs or is cancelled) and its polls.  Each handle's own
referents are its callback, its arguments, ... and, for a timer, its
deadline in the loop's time (libuv's monotonic clock, to the millisecond:
`time.monotonic`).  The shape is checked on each read (the run of field
types must match); a loop that does not match gives None, and the callers
fall back on what they can read (a task's await chain) or count the loop
as one whose callbacks may still run.

Used from the watcher's thread (`_watch.tasks`) and, for a new lock order,
from the loop's own thread (`_track.aio`): reads of one list, set or dict,
copied, as for every other structure the watcher reads.
"""

from __future__ import annotations

import collections
import gc
from typing import Any, NamedTuple

#: Running event loop -> ident of the thread running it, noted by the patched
#: ``run_forever`` (`_track.aio`).
loops: dict[Any, int] = {}

_NO_ATTRIBUTE = object()


def loop_thread(loop: Any) -> int | None:
    """The ident of the thread running ``loop``, or None when it does not run.
    What BaseEventLoop.is_running() reads, read here (no method of the
    application's loop is called: a test may count its calls).  A loop with
    no such attribute (uvloop's, in C): the thread its patched
    ``run_forever`` noted (`loops`), while that runs."""
    ident = getattr(loop, "_thread_id", _NO_ATTRIBUTE)
    if ident is _NO_ATTRIBUTE:
        # Found running at enable() (`_track.aio.adopted`), it is not seen to
        # stop; closed (asyncio.run, uvloop.run), it is.
        ident = None if getattr(loop, "_closed", False) else loops.get(loop)
    return ident if isinstance(ident, int) else None


def task_name(task: Any) -> str:
    """``task.get_name()`` (a read of its name, in C), or a made-up one."""
    try:
        return str(task.get_name())
    except Exception:
        return f"Task-{id(task):x}"


class Timer(NamedTuple):
    """One pending timer: what it will call, with what, and when (loop time)."""

    callback: Any
    args: tuple[Any, ...]
    when: float
    handle: Any


class Activity(NamedTuple):
    """What on a loop may still run besides its tasks: the objects holding
    each thing's callbacks (what a signal's holders are looked for among,
    `_watch.reach`)."""

    #: Handles ready to run.
    ready: list[Any]
    timers: list[Timer]
    #: What holds the callbacks of the loop's I/O (not of its own wake-up
    #: descriptor): asyncio's reader and writer handles (a transport's
    #: ``_read_ready``, a server's ``_accept_connection``); uvloop's servers,
    #: open transports, subprocesses, streams with writes queued and polls
    #: (``add_reader``).
    io: list[Any]
    #: Handles of ``add_signal_handler``.
    signal_handlers: list[Any]


def pending(loop: Any) -> list[Timer] | None:
    """The timers of ``loop`` that are neither cancelled nor run yet; None
    when its timers cannot be read."""
    try:
        scheduled = loop._scheduled
    except Exception:
        try:
            fields = _uv_fields(loop)
            return None if fields is None else _uv_timers(fields["_timers"])
        except Exception:  # torn down or changed meanwhile: cannot be read
            return None
    try:
        handles = list(scheduled)
    except Exception:
        return None
    out: list[Timer] = []
    for h in handles:
        if getattr(h, "_cancelled", True):
            continue
        when = getattr(h, "_when", None)
        if not isinstance(when, (int, float)):
            continue
        args = getattr(h, "_args", ()) or ()
        out.append(Timer(getattr(h, "_callback", None), tuple(args), float(when), h))
    return out


def activity(loop: Any) -> Activity | None:
    """What on ``loop`` besides its tasks may still run (and so give a
    signal): ready callbacks, pending timers, watched I/O, signal handlers;
    deadlockwatch's own callbacks (``_dw_own``: the pytest plugin's guard of
    an async test) are left out.  None when the loop cannot be read."""
    try:
        if hasattr(loop, "_ready"):
            return _asyncio_activity(loop)
        fields = _uv_fields(loop)
        return None if fields is None else _uv_activity(fields)
    except Exception:  # torn down or changed meanwhile: cannot be read
        return None


def _own(callback: Any) -> bool:
    return bool(getattr(callback, "_dw_own", False))


def _asyncio_activity(loop: Any) -> Activity | None:
    try:
        ready = [h for h in list(loop._ready) if not getattr(h, "_cancelled", False)]
        timers = pending(loop)
    except Exception:
        return None
    if timers is None:
        return None
    io: list[Any] = []
    selector = getattr(loop, "_selector", None)
    if selector is not None:
        try:
            own = loop._ssock.fileno()
            for fd, key in list(selector.get_map().items()):
                if fd == own:
                    continue
                data = key.data
                handles = data if isinstance(data, tuple) else (data,)
                io.extend(h for h in handles if h is not None)
        except Exception:
            return None
    handlers = getattr(loop, "_signal_handlers", None) or {}
    return Activity(
        ready=[h for h in ready if not _own(getattr(h, "_callback", None))],
        timers=[t for t in timers if not _own(t.callback)],
        io=io,
        signal_handlers=list(dict(handlers).values()),
    )


# -- uvloop ---------------------------------------------------------------------

#: uvloop's ``Loop`` object fields from ``_ready`` on (loop.pxd), with the
#: type each must have (None: any): uvloop 0.21 to 0.23; 0.17 to 0.20 have no
#: ``_unix_server_sockets`` (the layouts are tried in turn).
_UV_LAYOUT: tuple[tuple[str, type | None], ...] = (
    ("_ready", collections.deque),
    ("_queued_streams", set),
    ("_executing_streams", set),
    ("_servers", set),
    ("_transports", None),  # a weakref.WeakValueDictionary
    ("_processes", set),
    ("_fd_to_reader_fileobj", dict),
    ("_fd_to_writer_fileobj", dict),
    ("_unix_server_sockets", dict),
    ("_signals", set),
    ("_signal_handlers", dict),
    ("_ssock", None),
    ("_csock", None),
    ("_timers", set),
    ("_polls", dict),
)
_UV_LAYOUTS = (_UV_LAYOUT, tuple(f for f in _UV_LAYOUT if f[0] != "_unix_server_sockets"))


def _uv_fields(loop: Any) -> dict[str, Any] | None:
    """uvloop's loop fields by name, read off its referents; None if ``loop``
    is no uvloop loop or its fields are not in the order this expects."""
    if not str(getattr(type(loop), "__module__", "")).startswith("uvloop"):
        return None
    try:
        refs = gc.get_referents(loop)
    except Exception:
        return None
    starts = [i for i, r in enumerate(refs) if type(r) is collections.deque]
    if len(starts) != 1:
        return None
    out = next(filter(None, (_uv_match(layout, refs, starts[0]) for layout in _UV_LAYOUTS)), None)
    if out is None:
        return None
    transports = out["_transports"]
    if type(transports).__name__ != "WeakValueDictionary":
        return None
    timers = _copy(out["_timers"])
    if timers is None or not all(_is_uv(h, "TimerHandle") for h in timers):
        return None
    return out


def _uv_match(
    layout: tuple[tuple[str, type | None], ...], refs: list[Any], at: int
) -> dict[str, Any] | None:
    if at + len(layout) > len(refs):
        return None
    out: dict[str, Any] = {}
    for (name, kind), value in zip(layout, refs[at : at + len(layout)], strict=True):
        if kind is not None and type(value) is not kind:
            return None
        out[name] = value
    return out


def _is_uv(obj: Any, name: str) -> bool:
    t = type(obj)
    return t.__name__ == name and str(t.__module__).startswith("uvloop")


def _copy(container: Any) -> list[Any] | None:
    try:  # copied first: the loop's thread may change it meanwhile
        return list(container)
    except RuntimeError:
        return None


def _uv_timers(timers_set: Any) -> list[Timer] | None:
    handles = _copy(timers_set)
    if handles is None:
        return None
    out: list[Timer] = []
    for h in handles:
        fields = gc.get_referents(h)
        # callback, args (None for none), its UVTimer, the loop, its
        # context, debug info, when
        if len(fields) < 3 or not callable(fields[0]):
            return None
        args, when = fields[1], fields[-1]
        if args is None:
            args = ()
        if not isinstance(args, tuple) or not isinstance(when, float):
            return None
        out.append(Timer(fields[0], args, when, h))
    return out


def handle_parts(handle: Any) -> list[Any]:
    """A ready handle's (or a signal handler's) callback and arguments
    (asyncio's ``_callback`` and ``_args``; uvloop's referents after the
    loop and the context); [] when they cannot be read."""
    try:
        if hasattr(handle, "_callback"):
            return [x for x in (handle._callback, handle._args) if x is not None]
        return [x for x in gc.get_referents(handle)[2:4] if x is not None]
    except Exception:
        return []


def _uv_ready_callback(handle: Any) -> Any:
    """A ready ``Handle``'s callback: its referents are the loop, its
    context, then (``call_soon``) the callback and its arguments."""
    fields = gc.get_referents(handle)
    return fields[2] if len(fields) > 2 else None


def _open_transports(transports: Any) -> list[Any]:
    """uvloop's transports (by file descriptor, weakly held) that are not
    closing: each asked with ``is_closing()``, uvloop's own getter in C (a
    closed one stays there while the program holds it)."""
    out = []
    for t in list(transports.data.values()):  # weak references, copied
        obj = t()
        if obj is None:
            continue
        try:
            closing = bool(obj.is_closing())
        except Exception:
            closing = False
        if not closing:
            out.append(obj)
    return out


def _uv_activity(fields: dict[str, Any]) -> Activity | None:
    ready = _copy(fields["_ready"])
    timers = _uv_timers(fields["_timers"])
    if ready is None or timers is None:
        return None
    live_ready = []
    for h in ready:
        try:
            cancelled = bool(h.cancelled())  # uvloop's own getter, in C
        except Exception:
            cancelled = False
        if not cancelled and not _own(_uv_ready_callback(h)):
            live_ready.append(h)
    try:
        own = fields["_ssock"].fileno() if fields["_ssock"] is not None else -1
    except Exception:
        own = -1
    try:
        # A reader's or writer's callback is in its poll (``_polls`` by file
        # descriptor); ``_fd_to_*_fileobj`` keep only the file objects.
        io = [poll for fd, poll in list(fields["_polls"].items()) if fd != own]
        io += _open_transports(fields["_transports"])
        for name in ("_servers", "_processes", "_queued_streams", "_executing_streams"):
            io += list(fields[name])
    except RuntimeError:  # changed size while copied
        return None
    return Activity(
        ready=live_ready,
        timers=[t for t in timers if not _own(t.callback)],
        io=io,
        signal_handlers=list(fields["_signal_handlers"].values()),
    )
