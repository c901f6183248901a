"""The public functions: enable, disable, is_enabled, check, dump, watching."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from deadlockwatch._config import Config, warn_unknown_env
from deadlockwatch._model import Finding
from deadlockwatch._watch.watcher import DETECTOR


def configure(**options: Any) -> Config:
    """The configuration ``enable(**options)`` would use: defaults, then the
    ``DEADLOCKWATCH_*`` environment, then ``options``.  Raises `ConfigError`."""
    return Config().with_environ(os.environ).with_options(options, "enable({name}=...)")


def start(config: Config) -> None:
    """Start the detector with ``config``, with its extensions: every surface
    (`enable`, the runner, start-up, the pytest plugin) starts it here."""
    from deadlockwatch._processes import shared
    from deadlockwatch._watch.watcher import register

    register(shared)
    DETECTOR.start(config)


def enable(**options: Any) -> None:
    """Track threading's locks from now on and start the watcher.

    Options (each also settable by environment variable, see README):
    ``interval``, ``threshold``, ``on_deadlock`` and ``report``.  A bad value
    raises `ConfigError` before anything is patched.  Enabling again only
    applies the new options.
    """
    config = configure(**options)
    warn_unknown_env(os.environ, sys.stderr.write)
    start(config)


def disable() -> None:
    """Stop the watcher and restore threading's original factories.

    Tracked primitives made meanwhile keep working exactly as before.
    """
    DETECTOR.stop()


def is_enabled() -> bool:
    return DETECTOR.enabled


def check() -> list[Finding]:
    """Analyse the current waits now and return every finding (reported or not).

    Lock-order inversions still pending (README, Lock hand-off) are reported
    first: they are findings of the report, not of the list returned."""
    return DETECTOR.check()


def dump(file: IO[str] | None = None) -> None:
    """Write every thread, what it holds and waits for, and its stack (default: stderr)."""
    DETECTOR.dump(file)


def forget() -> None:
    """Forget every learned lock order (and which inversions were reported),
    and every wait and signal learned with them; the inversions still pending
    (see README, lock order) are reported first."""
    from deadlockwatch._track import signals
    from deadlockwatch._track.order import ORDER

    if DETECTOR.enabled:
        DETECTOR.settle_inversions()
    ORDER.forget()
    signals.forget()


def suppressed() -> list[Finding]:
    """Lock-order inversions that were found but not reported: cycles guarded
    by a common gate lock, and those matching the ``suppress`` option."""
    from deadlockwatch._track.order import ORDER

    return list(ORDER.suppressed_cycles)


@contextmanager
def watching(**options: Any) -> Iterator[None]:
    """Enable the detector for a block; on exit, put back the state found on entry."""
    was_enabled, old = DETECTOR.enabled, DETECTOR.config
    enable(**options)
    try:
        yield
    finally:
        if was_enabled:
            DETECTOR.config = old
        else:
            disable()
