"""The pytest plugin (entry point ``pytest11: deadlockwatch``).

``pytest --deadlockwatch`` (or ini ``deadlockwatch = true``) enables the
detector for the session before the initial conftests are imported, so that
locks made, and lock classes bound (``from threading import RLock``), while
conftests and test modules import the project are tracked too.  A deadlock breaks at once:
by default every deadlocked thread gets `DeadlockError` (``raise-all``), so the
test's threads end, later tests run and the session never hangs at exit.  A
finding is charged to the test phase during which it was reported: that phase
fails, with the report attached as a section of its own.

An async test run on an asyncio loop (pytest-asyncio, anyio's asyncio backend)
runs under a guard of the plugin's own (`_guard`), in the loop's thread: a
callback it schedules on the test's loop every `GUARD_POLL` seconds looks at
the findings the watcher has handed over, and for a deadlock among tasks of
that loop gives each task of the cycle `DeadlockError` at its await (the
future it is suspended on fails with it, so ``async with lock:`` unwinds;
a cycle of tasks that only await each other cannot be broken, and the loop
is stopped instead, which fails the test).  With ``raise``/``raise-all``
the watcher itself also hands the loop such an error for the tasks of a
confirmed deadlock (`deadlockwatch._track.aio.interrupt`); whichever comes
first gives it, the other finds the task gone from that wait.  The watcher
does not count the guard's callback as one that could end a wait.

Without the flag, the ini key or a marker the plugin does nothing: no patching,
no thread, and no import beyond the option table (its finder, `_OwnModules`,
keeps pytest's assertion rewriting away from deadlockwatch's own modules).
"""

from __future__ import annotations

import collections
import functools
import importlib.machinery
import inspect
import sys
from collections.abc import Callable, Generator, Mapping
from typing import Any

import pytest


class _OwnModules:
    """Finds deadlockwatch's own modules as Python does without pytest, in
    front of pytest's assertion-rewriting import hook.

    pytest rewrites the asserts of every module of a distribution that has a
    ``pytest11`` entry point (``_mark_plugins_for_rewrite``: the whole
    ``deadlockwatch`` package, not only this module), so each module of ours
    imported in a session was read from source, parsed and compiled again:
    in every session where bytecode is not written (``PYTHONDONTWRITEBYTECODE=1``,
    as in CI), whose rewritten bytecode is never cached: about 0.15 s of CPU
    for the 32 modules ``--deadlockwatch`` imports, against 2 ms to load
    their installed bytecode (pykka's suite of 0.5 s of CPU took 0.76 to
    0.83 s with the plugin, 0.64 to 0.65 s without that; an empty session
    1.14 billion instructions more than plain, 0.10 billion without that).
    Pytest's documented opt-out, ``PYTEST_DONT_REWRITE`` in a module's
    docstring (the package's has it), stops the rewriting and the warning
    but not the parsing and compiling.  deadlockwatch has no
    assertion helpers for tests, so this finder gives pytest none of its
    modules: for ``deadlockwatch.*`` it returns the spec the path finder gives
    (the usual loader, the installed bytecode), as without pytest.  It answers
    for no other name, nor for a module that a post-import hook of
    ``DEADLOCKWATCH=1``'s start-up waits for (`deadlockwatch._track.hook`,
    which then finds it as before), and it stays on ``sys.meta_path`` once
    put there (as that hook's finder does).  This module and the package's
    ``__init__`` are imported by pytest before it can act (through the hook).
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if path is None or not name.startswith("deadlockwatch."):
            return None
        hook = sys.modules.get("deadlockwatch._track.hook")
        if hook is not None and hook.waits_for(name):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path)

    def invalidate_caches(self) -> None:
        pass


def _out_of_rewriting() -> None:
    """Put `_OwnModules` in front of the first pytest rewriting hook on
    ``sys.meta_path`` (none: nothing to do, as under ``--assert=plain``)."""
    rewrite = sys.modules.get("_pytest.assertion.rewrite")
    hook_type = getattr(rewrite, "AssertionRewritingHook", None)
    if hook_type is None:
        return
    for i, finder in enumerate(sys.meta_path):
        if type(finder) is _OwnModules:
            return
        if isinstance(finder, hook_type):
            sys.meta_path.insert(i, _OwnModules())
            return


_out_of_rewriting()

from deadlockwatch._config import OPTIONS, Config, ConfigError, parse_bool  # noqa: E402

ENABLE_HELP = "detect deadlocks between threads; a deadlocked test fails at once with a report"
TIMED_HELP = (
    "what a timed-cycle finding (a cycle that a timeout will break) does to its test: "
    "warn (default: report only) or fail"
)
_TIMED_CHOICES = ("warn", "fail")
INVERSIONS_HELP = (
    "what a lock-order inversion or a wait under a lock its signaller needs (potential "
    "deadlocks) does to its test: fail (default) or warn"
)
PROBABLE_HELP = (
    "what a probable-deadlock finding (stuck threads that only a thread that never touched "
    "what they wait for could rescue) does to its test: warn (default: report only) or fail"
)
HISTORY_HELP = (
    "how long learned lock orders are kept: test (default: each test starts afresh, so "
    "orders of different tests never combine) or session"
)
_HISTORY_CHOICES = ("test", "session")
#: pytest's defaults differ from a program's: break every deadlocked thread, and
#: put the report in the test's report rather than on stderr.
PYTEST_DEFAULTS: Mapping[str, object] = {"on_deadlock": "raise-all", "text": False}
#: How often the guard of an async test looks for a deadlock among its tasks.
GUARD_POLL = 0.1
#: How long the guard lets a deadlocked test unwind before cancelling it.
GUARD_GRACE = 5.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deadlockwatch", "deadlock detection (deadlockwatch)")
    group.addoption("--deadlockwatch", action="store_true", default=None, help=ENABLE_HELP)
    parser.addini("deadlockwatch", ENABLE_HELP, default=None)
    for option in OPTIONS:
        dest = option.ini
        group.addoption(option.pytest_flag, dest=dest, default=None, help=option.help)
        parser.addini(option.ini, option.help, default=None)
    group.addoption(
        "--deadlockwatch-timed-cycles",
        dest="deadlockwatch_timed_cycles",
        default=None,
        help=TIMED_HELP,
    )
    parser.addini("deadlockwatch_timed_cycles", TIMED_HELP, default=None)
    group.addoption(
        "--deadlockwatch-inversions",
        dest="deadlockwatch_inversions",
        default=None,
        help=INVERSIONS_HELP,
    )
    parser.addini("deadlockwatch_inversions", INVERSIONS_HELP, default=None)
    group.addoption(
        "--deadlockwatch-probable",
        dest="deadlockwatch_probable",
        default=None,
        help=PROBABLE_HELP,
    )
    parser.addini("deadlockwatch_probable", PROBABLE_HELP, default=None)
    group.addoption(
        "--deadlockwatch-lock-order-history",
        dest="deadlockwatch_lock_order_history",
        default=None,
        help=HISTORY_HELP,
    )
    parser.addini("deadlockwatch_lock_order_history", HISTORY_HELP, default=None)


def _setting(
    config: pytest.Config, ini: str, dest: str, flag: str, options: Any = None
) -> tuple[Any, str] | None:
    """The command line wins over the ini file; returns the value and its source.
    ``options``: the parsed command line (``config.option`` once configured; the
    early ``known_args_namespace`` before the initial conftests)."""
    value = getattr(config.option if options is None else options, dest, None)
    if value is not None:
        return value, f"command-line option {flag}"
    value = config.getini(ini)
    if value not in (None, ""):
        return value, f"ini option {ini}"
    return None


def _choice(choices: tuple[str, ...], value: object, source: str) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ConfigError(
        f"deadlockwatch: invalid value {value!r} for {source}: expected one of "
        + ", ".join(choices)
    )


def _plugin_choice(config: pytest.Config, name: str, choices: tuple[str, ...], options: Any) -> str:
    """A plugin-only setting (command line over ini), validated; the first choice
    is the default."""
    ini = "deadlockwatch_" + name
    found = _setting(config, ini, ini, "--deadlockwatch-" + name.replace("_", "-"), options)
    return choices[0] if found is None else _choice(choices, *found)


_SESSION = "deadlockwatch-session"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Switch on before the initial conftests are imported: most import the
    project's package, whose module-level ``from threading import RLock``
    would otherwise bind the untracked class for the whole session.  The
    command line is parsed by now (``known_args_namespace``), the ini file read.
    A marker cannot be known this early (test modules are imported later)."""
    _register(early_config, early_config.known_args_namespace)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deadlockwatch(**options): detect deadlocks in this test (with these enable() options)",
    )
    config.addinivalue_line("markers", "no_deadlockwatch: no deadlock detection in this test")
    if not config.pluginmanager.has_plugin(_SESSION):
        _register(config, config.option)  # a run that skipped the early hook


def _register(config: pytest.Config, options: Any) -> None:
    try:
        plugin = _Plugin.from_config(config, options)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(plugin, _SESSION)


class _Plugin:
    def __init__(
        self,
        base: Config,
        session_enabled: bool,
        failing_kinds: frozenset[str],
        history_per_test: bool,
    ) -> None:
        self.base = base
        self.session_enabled = session_enabled
        self.failing_kinds = failing_kinds
        self.history_per_test = history_per_test
        #: Findings recorded since the current test started, drained at each of
        #: its reports (as pytest's threadexception plugin takes thread events).
        self.queue: collections.deque[Any] = collections.deque()
        self.counts: dict[str, int] = {}
        self.per_test: bool = False
        #: How many findings the detector had when the session began: one
        #: enabled outside the plugin (``DEADLOCKWATCH=1``) reports to
        #: stderr, which pytest captures and drops with each passing test.
        self.findings_at_start = _findings_count()

    @classmethod
    def from_config(cls, config: pytest.Config, options: Any) -> _Plugin:
        base = Config().with_options(PYTEST_DEFAULTS, "deadlockwatch's pytest defaults")
        import os

        base = base.with_environ(os.environ)
        for option in OPTIONS:
            found = _setting(config, option.ini, option.ini, option.pytest_flag, options)
            if found is not None:
                base = base.with_options({option.name: found[0]}, found[1])
        enabled = False
        flag = getattr(options, "deadlockwatch", None)
        if flag:
            enabled = True
        else:
            ini = config.getini("deadlockwatch")
            if ini not in (None, ""):
                enabled = parse_bool(ini, "ini option deadlockwatch")
        failing = {"deadlock"}
        if _plugin_choice(config, "timed_cycles", _TIMED_CHOICES, options) == "fail":
            failing.add("timed-cycle")
        if _plugin_choice(config, "inversions", ("fail", "warn"), options) == "fail":
            failing.update(("lock-order-inversion", "wait-under-lock"))
        if _plugin_choice(config, "probable", ("warn", "fail"), options) == "fail":
            failing.add("probable-deadlock")
        history = _plugin_choice(config, "lock_order_history", _HISTORY_CHOICES, options)
        plugin = cls(base, enabled, frozenset(failing), history == "test")
        if enabled:
            plugin._enable(base)
        return plugin

    # -- switching --------------------------------------------------------------
    @staticmethod
    def _enable(config: Config) -> None:
        from deadlockwatch._api import start
        from deadlockwatch._watch.watcher import DETECTOR

        DETECTOR.log = False
        start(config)

    def _listen(self) -> None:
        from deadlockwatch._watch.watcher import DETECTOR

        if self.queue.append not in DETECTOR.listeners:
            DETECTOR.listeners.append(self.queue.append)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.session_enabled:
            from deadlockwatch._watch.watcher import DETECTOR

            DETECTOR.stop()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not self.session_enabled and not _has_markers(item):
            return
        from deadlockwatch._api import start
        from deadlockwatch._watch.watcher import DETECTOR

        self._listen()
        self.queue.clear()
        item.stash[_THREADS] = _live_threads()
        if self.history_per_test:
            from deadlockwatch._track.order import ORDER

            ORDER.forget()
        if item.get_closest_marker("no_deadlockwatch") is not None:
            if DETECTOR.enabled:
                DETECTOR.stop()
                self.per_test = True
            return
        marker = item.get_closest_marker("deadlockwatch")
        if marker is None:
            return
        if marker.args:
            pytest.fail(
                "deadlockwatch: @pytest.mark.deadlockwatch takes keyword options only, "
                f"got {marker.args!r}",
                pytrace=False,
            )
        try:
            config = self.base.with_options(
                marker.kwargs, "marker @pytest.mark.deadlockwatch({name}=...)"
            )
        except (ConfigError, TypeError) as exc:
            pytest.fail(str(exc), pytrace=False)
        was_enabled = DETECTOR.enabled
        DETECTOR.log = False
        start(config)
        self.per_test = True
        item.stash[_RESTORE] = was_enabled

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        yield
        if not self.per_test:
            return
        self.per_test = False
        from deadlockwatch._api import start
        from deadlockwatch._watch.watcher import DETECTOR

        if self.session_enabled:
            start(self.base)
            DETECTOR.config = self.base
        elif not item.stash.get(_RESTORE, False):
            DETECTOR.stop()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        if not (self.session_enabled or self.per_test):
            return  # not asked for: findings of a test that enables it itself are its own
        report: pytest.TestReport = outcome.get_result()
        if call.when == "call" or report.failed:
            self._sweep(item)
        from deadlockwatch._watch.watcher import DETECTOR

        if DETECTOR.enabled:
            # The test's window is over: inversions pending on a hand-off
            # not seen yet are reported now, and charged to it.
            DETECTOR.settle_inversions()
        new = []
        while self.queue:
            new.append(self.queue.popleft())
        if not new:
            return
        from deadlockwatch._errors import summary
        from deadlockwatch._report.text import format_text

        failing = []
        for finding in new:
            self.counts[finding.kind] = self.counts.get(finding.kind, 0) + 1
            report.sections.append((f"deadlockwatch {finding.kind}", format_text(finding)))
            if finding.kind in self.failing_kinds:
                failing.append(finding)
        if failing and report.outcome != "failed":
            report.outcome = "failed"
            report.longrepr = (
                "\n".join(f"deadlockwatch: {summary(f)}" for f in failing)
                + "\n(see the 'deadlockwatch' section below for threads, locks and stacks)"
            )

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        func: Any = getattr(item, "obj", None)
        guard = (
            (self.session_enabled or self.per_test)
            and "asyncio" in sys.modules
            and inspect.iscoroutinefunction(func)
        )
        if not guard:
            yield
            return
        from deadlockwatch._watch.watcher import DETECTOR

        if not DETECTOR.enabled:
            yield
            return
        from deadlockwatch._track import state

        state.internal_file(__file__)  # the guard's frame is not the test's
        item.obj = _guard(func, self.queue)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            item.obj = func  # type: ignore[attr-defined]

    @staticmethod
    def _sweep(item: pytest.Item) -> None:
        """The test is over: threads it started that are still blocked are
        analysed now, so that what they are stuck in is charged to it (and
        not to whichever later test happens to wait long enough)."""
        from deadlockwatch._watch.watcher import DETECTOR

        before = item.stash.get(_THREADS, None)
        if before is None or not DETECTOR.enabled:
            return
        started = {ident for key, ident in _live_threads().items() if key not in before}
        if started:
            DETECTOR.sweep(started)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        counts: dict[str, int] = {}
        for reports in terminalreporter.stats.values():
            for report in reports:
                for name, _ in getattr(report, "sections", ()):
                    if name.startswith("deadlockwatch "):
                        kind = name.split(" ", 1)[1]
                        counts[kind] = counts.get(kind, 0) + 1
        if not self.session_enabled and not counts:
            self._outside_summary(terminalreporter)
            return
        text = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no findings"
        terminalreporter.write_sep("-", f"deadlockwatch: {text}")

    def _outside_summary(self, terminalreporter: Any) -> None:
        """The findings of a detector enabled outside the plugin
        (``DEADLOCKWATCH=1``, ``enable()`` in a conftest): their reports went
        to stderr, which pytest captured and dropped with each passing test."""
        watcher = sys.modules.get("deadlockwatch._watch.watcher")
        if watcher is None:
            return
        found = list(watcher.DETECTOR.findings[self.findings_at_start :])
        if not found:
            return
        counts: dict[str, int] = {}
        for f in found:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        text = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        terminalreporter.write_sep("-", f"deadlockwatch: {text} (enabled outside pytest's plugin)")
        for f in found:
            terminalreporter.write_line(f"{f.kind}: {f.cause}")
        terminalreporter.write_line(
            "(each full report went to the captured stderr of a test; "
            "with --deadlockwatch each is part of its test's report)"
        )


_RESTORE = pytest.StashKey[bool]()
#: The threads alive when a test started: id of the Thread object -> ident.
_THREADS = pytest.StashKey[dict[int, int]]()


def _findings_count() -> int:
    watcher = sys.modules.get("deadlockwatch._watch.watcher")
    return 0 if watcher is None else len(watcher.DETECTOR.findings)


def _live_threads() -> dict[int, int]:
    import threading

    return {id(t): t.ident for t in threading.enumerate() if t.ident is not None}


def _guard(func: Callable[..., Any], findings: collections.deque[Any]) -> Callable[..., Any]:
    """``func`` (an async test) run under the guard: on an asyncio loop, a
    callback every `GUARD_POLL` seconds breaks a deadlock among the loop's
    tasks found by the watcher (`deadlockwatch._track.aio.break_deadlock`).
    The test runs in its own task, as without the guard; on another loop
    (trio) it just runs."""

    @functools.wraps(func)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        asyncio = sys.modules.get("asyncio")
        try:
            loop = asyncio.get_running_loop() if asyncio is not None else None
            me = asyncio.current_task() if asyncio is not None else None
        except RuntimeError:
            loop = me = None
        if asyncio is None or loop is None or me is None:
            return await func(*args, **kwargs)
        from deadlockwatch._errors import DeadlockError
        from deadlockwatch._track.aio import break_deadlock

        seen: set[int] = set()
        handle: list[Any] = [None]
        broken_at: list[float] = []

        def poll() -> None:
            if me.done():
                return
            try:
                for finding in list(findings):
                    if id(finding) not in seen:
                        seen.add(id(finding))
                        if finding.kind == "deadlock":
                            broken_at.append(loop.time())
                            break_deadlock(asyncio, loop, finding, DeadlockError(finding))
                if broken_at and loop.time() - broken_at[0] > GUARD_GRACE:
                    broken_at.clear()
                    try:
                        me.cancel("deadlockwatch: the deadlocked test did not unwind")
                    except RecursionError:  # it awaits a cycle of tasks
                        loop.stop()
            finally:
                handle[0] = loop.call_later(GUARD_POLL, poll)

        poll._dw_own = True  # type: ignore[attr-defined]
        _note_callers(asyncio, loop, me, sys._getframe(0))
        handle[0] = loop.call_later(GUARD_POLL, poll)
        try:
            return await func(*args, **kwargs)
        finally:
            handle[0].cancel()

    return guarded


def _note_callers(asyncio: Any, loop: Any, me: Any, frame: Any) -> None:
    """A task of the loop awaiting a future that the test's task holds in a
    frame of its coroutine below the guard waits for the test's task: anyio's
    runner runs each test in a runner task and the caller awaits a future
    that task sets when the test ends (`_track.aio.completed_by`).  Else
    that caller, awaiting a future the watcher knows nothing of, would count
    as a task that can still run and end any wait of the test's tasks."""
    from deadlockwatch._track.aio import completed_by

    held: dict[int, Any] = {}
    frame = frame.f_back
    for _ in range(16):  # the coroutines the test's task runs below the guard
        if frame is None or not frame.f_code.co_flags & inspect.CO_COROUTINE:
            break
        for value in list(frame.f_locals.values()):
            if isinstance(value, asyncio.Future) and not value.done():
                held[id(value)] = value
        frame = frame.f_back
    if not held:
        return
    for task in list(asyncio.all_tasks(loop)):
        fut = getattr(task, "_fut_waiter", None)
        if task is not me and fut is not None and held.get(id(fut)) is fut:
            completed_by[fut] = me


def _has_markers(item: pytest.Item) -> bool:
    return any(item.iter_markers("deadlockwatch")) or any(item.iter_markers("no_deadlockwatch"))
