"""The pytest plugin, run in pytest subprocesses (so this session is never patched)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from _programs import TESTS

ABBA_TEST = """
import threading
from concurrent.futures import ThreadPoolExecutor

def abba(executor=False):
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    def worker(x, y):
        with x:
            barrier.wait(10)
            with y:
                pass
    if executor:
        with ThreadPoolExecutor(2) as ex:
            futures = [ex.submit(worker, a, b), ex.submit(worker, b, a)]
            return [f.exception(30) for f in futures]
    threads = [threading.Thread(target=worker, args=p, daemon=True) for p in [(a, b), (b, a)]]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    return [t.is_alive() for t in threads]

def test_deadlocks_in_executor():
    abba(executor=True)

def test_after_the_deadlock_runs():
    lock = threading.Lock()
    with lock:
        pass
"""


def test_deadlocked_test_fails_fast_with_report_and_session_goes_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_abba=ABBA_TEST)
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*deadlockwatch deadlock*",
            "*DEADLOCK*",
            "*'ThreadPoolExecutor-*' waits for Lock(created test_abba.py:*) held by*",
            "*deadlockwatch: 1 deadlock, 1 lock-order-inversion*",
            "*FAILED test_abba.py::test_deadlocks_in_executor - deadlockwatch: *",
        ]
    )
    # Found by the detector, not by a timeout: the report went to the test, not the log.
    result.stdout.no_fnmatch_line("*Captured log*")
    # "within about a second": the whole session, deadlock included, well under the joins.
    assert result.duration < 20


def test_test_thread_in_the_cycle_gets_deadlock_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        def test_main_thread_in_cycle():
            a, b = threading.Lock(), threading.Lock()
            barrier = threading.Barrier(2)
            def other():
                with b:
                    barrier.wait(10)
                    try:
                        with a:
                            pass
                    except Exception:
                        pass
            t = threading.Thread(target=other, daemon=True)
            t.start()
            with a:
                barrier.wait(10)
                with b:
                    pass
        """
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*DeadlockError: deadlock*", "*deadlockwatch deadlock*"])


def test_without_the_flag_nothing_is_patched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading, _thread, sys

        def test_untouched():
            assert type(threading.Lock()).__name__ == "lock"
            assert "deadlockwatch._watch.watcher" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*deadlockwatch:*")


def test_ini_key_and_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        deadlockwatch = true
        deadlockwatch_interval = 0.05
        """
    )
    pytester.makepyfile(
        """
        import threading
        from deadlockwatch._watch.watcher import DETECTOR

        def test_enabled():
            assert DETECTOR.enabled
            assert DETECTOR.config.interval == 0.05
            assert DETECTOR.config.on_deadlock == "raise-all"
            assert type(threading.Lock()).__name__ == "TrackedLock"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    # The command line wins over the ini file.
    pytester.makepyfile(
        test_cli_wins="""
        from deadlockwatch._watch.watcher import DETECTOR

        def test_interval():
            assert DETECTOR.config.interval == 0.2
        """
    )
    result = pytester.runpytest_subprocess(
        "test_cli_wins.py", "--deadlockwatch-interval=0.2", "-p", "no:cacheprovider", timeout=60
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (
            ["--deadlockwatch", "--deadlockwatch-interval=fast"],
            "",
            "*invalid value 'fast' for command-line option --deadlockwatch-interval*",
        ),
        (
            ["--deadlockwatch", "--deadlockwatch-action=explode"],
            "",
            "*invalid value 'explode' for command-line option --deadlockwatch-action*",
        ),
        (
            [],
            "deadlockwatch = perhaps",
            "*invalid value 'perhaps' for ini option deadlockwatch: expected one of 1, 0*",
        ),
        (
            [],
            "deadlockwatch_threshold = -1",
            "*invalid value '-1' for ini option deadlockwatch_threshold*",
        ),
        (
            ["--deadlockwatch-timed-cycles=sometimes"],
            "",
            "*invalid value 'sometimes' for command-line option --deadlockwatch-timed-cycles:"
            " expected one of warn, fail*",
        ),
    ],
)
def test_bad_settings_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading, pytest
        from deadlockwatch._watch.watcher import DETECTOR

        @pytest.mark.deadlockwatch(interval=0.03)
        def test_marker_enables_for_this_test_only():
            assert DETECTOR.enabled and DETECTOR.config.interval == 0.03
            assert type(threading.Lock()).__name__ == "TrackedLock"

        def test_then_off_again():
            assert not DETECTOR.enabled

        @pytest.mark.deadlockwatch(interval="soon")
        def test_bad_marker_value():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*invalid value 'soon' for marker @pytest.mark.deadlockwatch(interval=...)*"]
    )


def test_no_deadlockwatch_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from deadlockwatch._watch.watcher import DETECTOR

        @pytest.mark.no_deadlockwatch
        def test_off():
            assert not DETECTOR.enabled

        def test_on_again():
            assert DETECTOR.enabled
        """
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=2)


def test_timed_cycle_warns_unless_asked_to_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        def test_timed_cycle():
            a, b = threading.Lock(), threading.Lock()
            barrier = threading.Barrier(2)
            def untimed():
                with a:
                    barrier.wait(10)
                    with b:
                        pass
            t = threading.Thread(target=untimed, daemon=True)
            t.start()
            with b:
                barrier.wait(10)
                # long enough for the watcher to confirm the cycle on a loaded
                # machine (0.6 s was missed once at load average 15)
                assert a.acquire(timeout=2.0) is False
            t.join(10)
        """
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*deadlockwatch: 1 timed-cycle*"])
    result = pytester.runpytest_subprocess(
        "--deadlockwatch",
        "--deadlockwatch-timed-cycles=fail",
        "-p",
        "no:cacheprovider",
        timeout=60,
    )
    result.assert_outcomes(failed=1)


def test_disabled_with_p_no(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:deadlockwatch", "-p", "no:cacheprovider", timeout=60
    )
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess(
        "-p", "no:deadlockwatch", "--deadlockwatch", "-p", "no:cacheprovider", timeout=60
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the flag is unknown without the plugin


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_with_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_abba=ABBA_TEST)
    result = pytester.runpytest_subprocess(
        "--deadlockwatch", "-n", "2", "-p", "no:cacheprovider", timeout=120
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*deadlockwatch: 1 deadlock*"])


@pytest.mark.skipif(
    importlib.util.find_spec("pytest_timeout") is None, reason="needs pytest-timeout"
)
def test_beside_pytest_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_abba=ABBA_TEST)
    result = pytester.runpytest_subprocess(
        "--deadlockwatch", "--timeout=30", "-p", "no:cacheprovider", timeout=60
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.no_fnmatch_line("*Timeout*")


def test_waits_beyond_locks_fail_their_test_and_held_at_exit_only_warns(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_waits="""
        import queue, sys, threading, time
        from concurrent.futures import ThreadPoolExecutor

        def test_queue_get_under_a_lock_the_producer_needs():
            lock = threading.Lock()
            q = queue.Queue()
            def producer():
                with lock:
                    q.put(1)
            with lock:
                threading.Thread(target=producer, daemon=True).start()
                q.get()

        def test_executor_starvation():
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="solo")
            def outer():
                return pool.submit(int).result()
            try:
                pool.submit(outer).result()
            finally:
                pool.shutdown(wait=False)

        def test_thread_left_a_lock_held():
            lock = threading.Lock()
            t = threading.Thread(target=lock.acquire, name="leaker")
            t.start(); t.join()
            time.sleep(1.0)  # the warning comes a threshold after the thread ended

        def test_idle_consumer_is_fine():
            sys.path.insert(0, TESTS_DIR)
            from _programs import wait_watched
            q = queue.Queue()
            def consumer():
                q.get()
            t = threading.Thread(target=consumer)
            t.start()
            wait_watched(2, of=t)  # idle in get() while the watcher looks
            q.put(1)
            t.join(10)
        """.replace("TESTS_DIR", repr(TESTS))
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*'MainThread' waits on Queue(created test_waits.py:*) while holding Lock(created"
            " test_waits.py:*), which 'Thread-*' needs before it could put an item into it*",
            "*the only worker of ThreadPoolExecutor 'solo' waits on a future queued behind it*",
            "FAILED test_waits.py::test_queue_get_under_a_lock_the_producer_needs*",
            "FAILED test_waits.py::test_executor_starvation*",
        ]
    )
    result.stdout.fnmatch_lines(["*deadlockwatch: 2 deadlock, 1 held-at-exit*"])
    assert result.duration < 60


def test_environment_start_up_leaves_a_warnings_as_errors_session_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEADLOCKWATCH=1 imports deadlockwatch before pytest starts; pytest must not
    warn that it cannot rewrite the plugin's package (an error, aborting the
    session, under ``filterwarnings = error``, as in janus's setup.cfg)."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_one="def test_one():\n    assert True\n")
    monkeypatch.setenv("DEADLOCKWATCH", "1")
    # pytest-asyncio (in the test extra) warns of its own unset ini option.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*PytestAssertRewriteWarning*")
    result.stderr.no_fnmatch_line("*PytestAssertRewriteWarning*")


@pytest.mark.parametrize("env", ["1", None])
def test_findings_of_the_environment_switch_are_summed_up_at_the_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    """With DEADLOCKWATCH=1 and no --deadlockwatch, a finding's report goes to
    stderr, which pytest captures and drops with the passing test: the
    session's summary names it (found on a real-world trial: pebble's two
    true lock-order inversions under DEADLOCKWATCH=1 appeared nowhere in
    pytest's output).  Without the switch, nothing (the control)."""
    pytester.makepyfile(
        test_inv="""
        import threading

        def test_inverted():
            a, b = threading.Lock(), threading.Lock()
            with a:
                with b:
                    pass
            with b:
                with a:
                    pass

        def test_other():
            pass
        """
    )
    if env is None:
        monkeypatch.delenv("DEADLOCKWATCH", raising=False)
    else:
        monkeypatch.setenv("DEADLOCKWATCH", env)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio", timeout=60)
    result.assert_outcomes(passed=2)
    if env is None:
        result.stdout.no_fnmatch_line("*deadlockwatch: *")
        return
    result.stdout.fnmatch_lines(
        [
            "*deadlockwatch: 1 lock-order-inversion (enabled outside pytest's plugin)*",
            "lock-order-inversion: *Lock(created test_inv.py:4*",
            "*with --deadlockwatch each is part of its test's report*",
        ]
    )


def test_locks_of_a_module_the_conftest_imports_are_tracked(pytester: pytest.Pytester) -> None:
    """A conftest that imports the project (most do) runs before pytest_configure:
    the plugin switches on before it, so a class bound at import
    (``from threading import RLock``) is the tracked one."""
    pytester.makepyfile(
        app="""
        from threading import RLock

        def pair():
            return RLock(), RLock()
        """
    )
    pytester.makeconftest("import app\n")
    pytester.makepyfile(
        test_order="""
        import app

        def test_inverted_order():
            a, b = app.pair()
            with a:
                with b:
                    pass
            with b:
                with a:
                    pass
        """
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*deadlockwatch: 1 lock-order-inversion*"])
    # The same with the ini key.
    pytester.makeini("[pytest]\ndeadlockwatch = true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(failed=1)


def test_what_a_test_leaves_deadlocked_or_idle_is_charged_to_it(pytester: pytest.Pytester) -> None:
    """The end-of-test sweep: threads a test leaves deadlocked fail that test
    (not a later one); threads it leaves idle, blocked on an empty queue (an
    actor's inbox, pykka), fail nothing, whether the sweep looks once
    (nothing else can move) or three times (another thread runs)."""
    pytester.makepyfile(
        test_left="""
        import queue, threading, time
        from deadlockwatch._track import state

        def blocked(*threads):
            def now():  # in their untimed waits, past the Barrier
                return {w.rec.ident for w in state.blocked.copy().values() if w.timeout is None}
            idents = {t.ident for t in threads}
            deadline = time.monotonic() + 10
            while not idents <= now() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert idents <= now()

        def start(target, *args):
            t = threading.Thread(target=target, args=args, daemon=True)
            t.start()
            return t

        def test_leaves_an_abba_behind():
            a, b = threading.Lock(), threading.Lock()
            barrier = threading.Barrier(2)
            def worker(x, y):
                with x:
                    barrier.wait(10)
                    with y:
                        pass
            blocked(start(worker, a, b), start(worker, b, a))

        def test_leaves_idle_consumers_behind():
            blocked(*[start(queue.Queue().get) for _ in range(3)])

        def test_leaves_idle_consumers_beside_a_runner():
            stop = time.monotonic() + 1
            start(lambda: [time.sleep(0.001) for _ in iter(lambda: time.monotonic() > stop, True)])
            blocked(start(queue.Queue().get))

        def test_after():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--deadlockwatch", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*FAILED test_left.py::test_leaves_an_abba_behind - deadlockwatch: *"]
    )


LOADERS_TEST = """
import sys

def test_modules_of_deadlockwatch_are_not_rewritten():
    import deadlockwatch._report.dot  # imported by neither start (as a report module is later)

    assert "deadlockwatch._api" in sys.modules  # --deadlockwatch enabled it
    rewritten = sorted(
        name
        for name, module in sys.modules.items()
        if name.startswith("deadlockwatch")
        and type(getattr(module, "__loader__", None)).__name__ == "AssertionRewritingHook"
    )
    # Imported by pytest's entry point loading, before the plugin can act
    # (the package itself not under DEADLOCKWATCH=1: imported at start-up).
    assert "deadlockwatch._pytest_plugin" in rewritten
    assert set(rewritten) <= {"deadlockwatch", "deadlockwatch._pytest_plugin"}, rewritten
"""


@pytest.mark.parametrize("mode", ["plugin", "environment"])
def test_pytest_does_not_rewrite_deadlockwatch_modules(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Installed as a user installs it (not editable), the package provides a
    ``pytest11`` entry point, and pytest marks all of it for assertion
    rewriting: each module the plugin imports was parsed and compiled from
    source in every session that writes no bytecode (about 0.15 s).  An early
    plugin marks it here as pytest does then (``register_assert_rewrite``, the
    public form of that marking; the editable install of the test environment
    records no modules, so pytest marks none); the plugin's own finder keeps
    its modules away from the hook, with no warning (an error here)."""
    pytester.makepyfile(
        mark_deadlockwatch="import pytest\npytest.register_assert_rewrite('deadlockwatch')\n"
    )
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_loaders=LOADERS_TEST)
    args = ["-p", "mark_deadlockwatch", "-p", "no:cacheprovider", "-p", "no:asyncio"]
    if mode == "plugin":
        args.append("--deadlockwatch")
    else:
        monkeypatch.setenv("DEADLOCKWATCH", "1")
    result = pytester.runpytest_subprocess(*args, timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*PytestAssertRewriteWarning*")
    result.stderr.no_fnmatch_line("*PytestAssertRewriteWarning*")


def test_the_finder_answers_for_deadlockwatch_modules_only(tmp_path: Path) -> None:
    """`_OwnModules` gives a deadlockwatch module the path finder's spec (the
    usual loader); it answers for no other name, and steps aside for a module
    a post-import hook waits for (the hook's finder must see that import)."""
    import importlib.machinery

    import deadlockwatch._report
    from deadlockwatch._pytest_plugin import _OwnModules
    from deadlockwatch._track import hook

    finder = _OwnModules()
    path = deadlockwatch._report.__path__
    spec = finder.find_spec("deadlockwatch._report.dot", path)
    assert spec is not None
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    usual = importlib.machinery.PathFinder.find_spec("deadlockwatch._report.dot", path)
    assert usual is not None
    assert spec.origin == usual.origin
    assert finder.find_spec("json.decoder", __import__("json").__path__) is None
    assert finder.find_spec("deadlockwatch._api") is None  # top-level lookups: not ours
    (tmp_path / "_waited.py").write_text("")
    name, where = "deadlockwatch._waited", [str(tmp_path)]
    assert finder.find_spec(name, where) is not None
    hook.when_imported(name, lambda module: None)
    try:
        assert hook.waits_for(name)
        assert finder.find_spec(name, where) is None
    finally:
        hook._hooks.pop(name, None)
    assert not hook.waits_for(name)
