"""tests/cpython/run.py: CPython's own threading tests with and without the detector.

The comparison logic is tested here on made-up regrtest results; the real
run (minutes) is marked slow: ``pytest --run-slow -k cpython``, or
``python tests/cpython/run.py`` directly (``.ci/run`` does that).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

RUNNER = Path(__file__).parent / "cpython" / "run.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpython_run", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpython_run"] = module
    spec.loader.exec_module(module)
    return module


cr: Any = _load()

THREADING_XML = """<testsuites tests="5" errors="1" failures="1"><testsuite>
<testcase name="test.test_threading.A.test_ok" status="run" result="completed" />
<testcase name="test.test_threading.A.test_fail" status="run" result="completed">
  <failure type="AssertionError" message="boom">tb</failure></testcase>
<testcase name="test.test_threading.A.test_error" status="run" result="completed">
  <error type="RuntimeError" message="x">tb</error></testcase>
<testcase name="test.test_threading.A.test_skip" status="run" result="completed">
  <skipped>no fork</skipped></testcase>
<testcase />
</testsuite></testsuites>"""


def run(module: str = "test_threading", **outcomes: str) -> Any:
    r = cr.Run(module, detector=False)
    r.outcomes = {f"test.{module}.A.{name}": outcome for name, outcome in outcomes.items()}
    return r


def test_parse_junit(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(THREADING_XML)
    outcomes, unnamed = cr.parse_junit(str(path))
    assert outcomes == {
        "test.test_threading.A.test_ok": "passed",
        "test.test_threading.A.test_fail": "failed",
        "test.test_threading.A.test_error": "error",
        "test.test_threading.A.test_skip": "skipped",
    }
    assert unnamed == 1
    path.write_text("<testsuites><testcase name='cut")
    assert cr.parse_junit(str(path)) == ({}, 0)


def test_same_outcomes_are_transparent() -> None:
    plain = run(test_a="passed", test_b="skipped", test_c="failed")
    watched = run(test_a="passed", test_b="skipped", test_c="failed")
    v = cr.compare(plain, watched, (3, 11))
    assert v.ok and not v.expected and not v.flaky and not v.notes


def test_a_difference_that_reruns_confirm_fails_the_check() -> None:
    calls: list[tuple[list[str], bool]] = []

    def rerun(tests: list[str], detector: bool) -> dict[str, list[str]]:
        calls.append((tests, detector))
        return {t: ["failed" if detector else "passed"] * 2 for t in tests}

    v = cr.compare(run(test_a="passed"), run(test_a="failed"), (3, 11), rerun)
    assert not v.ok
    assert v.differences == [
        "test.test_threading.A.test_a: passed/passed/passed without the detector, "
        "failed/failed/failed with it"
    ]
    test = "test.test_threading.A.test_a"
    assert calls == [([test], False), ([test], True)]


def test_a_difference_gone_on_rerun_is_flaky_not_a_failure() -> None:
    def rerun(tests: list[str], detector: bool) -> dict[str, list[str]]:
        return {t: ["passed"] for t in tests}

    v = cr.compare(run(test_a="passed"), run(test_a="failed"), (3, 11), rerun)
    assert v.ok
    assert v.flaky == [("test.test_threading.A.test_a", ["passed", "passed"], ["failed", "passed"])]


#: A test of the table's mechanics (no longer an expected difference: since
#: start-up imports nothing, logging is imported with the mocked clock).
RELATIVE = "test.test_logging.FormatterTest.test_relativeCreated_has_higher_precision"


def _expect_on_313(monkeypatch: pytest.MonkeyPatch) -> None:
    why = "a made-up reason, long enough for the table: it mentions asyncio " * 2
    monkeypatch.setattr(cr, "EXPECTED_DIFFERENCES", (cr.Expected(RELATIVE, why, since=(3, 13)),))


def test_expected_differences_apply_to_their_versions_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _expect_on_313(monkeypatch)
    test = RELATIVE
    plain, watched = cr.Run("test_logging", False), cr.Run("test_logging", True)
    plain.outcomes, watched.outcomes = {test: "passed"}, {test: "failed"}
    v = cr.compare(plain, watched, (3, 13))
    assert v.ok and [e[0] for e in v.expected] == [test]
    assert "asyncio" in v.expected[0][3]
    v = cr.compare(plain, watched, (3, 12))
    assert not v.ok and v.differences == [f"{test}: passed without the detector, failed with it"]
    # Listed, but it passed: a note that the table may be stale.
    watched.outcomes = {test: "passed"}
    v = cr.compare(plain, watched, (3, 13))
    assert v.ok and v.notes == [f"expected difference did not show: {test} (passed in both runs)"]


def test_an_intermittent_expected_difference_may_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    test = "test.test_threading.ThreadJoinOnShutdown.test_clear_threads_states_after_fork"
    why = "a made-up reason, long enough for the table, for a race that shows now and then"
    monkeypatch.setattr(cr, "EXPECTED_DIFFERENCES", (cr.Expected(test, why, intermittent=True),))
    plain, watched = cr.Run("test_threading", False), cr.Run("test_threading", True)
    plain.outcomes, watched.outcomes = {test: "passed"}, {test: "passed"}
    v = cr.compare(plain, watched, (3, 11))
    assert v.ok and not v.expected and not v.notes
    watched.outcomes = {test: "failed"}
    v = cr.compare(plain, watched, (3, 11))
    assert v.ok and [e[0] for e in v.expected] == [test]


def test_flaky_differences_say_which_mode_showed_them() -> None:
    def rerun(tests: list[str], detector: bool) -> dict[str, list[str]]:
        return {t: ["passed"] for t in tests}

    v = cr.compare(run(test_a="passed"), run(test_a="failed"), (3, 11), rerun)
    text = cr.report([v], (3, 11), "full")
    assert "seen with the detector only, not repeated" in text
    v = cr.compare(run(test_a="failed"), run(test_a="passed"), (3, 11), rerun)
    assert "flaky in both modes" in cr.report([v], (3, 11), "full")


def test_exclusions_apply_until_the_fix() -> None:
    e = cr.Excluded("x", "why", fixed_in=((3, 12, 8), (3, 13, 1)))
    assert [e.applies(v) for v in [(3, 11, 9), (3, 12, 7), (3, 12, 8), (3, 13, 0), (3, 13, 1)]] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert not e.applies((3, 14, 0))
    assert cr.Excluded("x", "why").applies((3, 14, 0))
    for x in cr.EXCLUDED:
        assert len(x.reason) > 80


def test_every_expected_difference_has_a_reason_and_a_known_module() -> None:
    assert cr.EXPECTED_DIFFERENCES
    for e in cr.EXPECTED_DIFFERENCES:
        # Start-up imports nothing and no watcher exists before a wait blocks:
        # these now pass with the detector on.
        assert e.test.rsplit(".", 1)[1] not in (
            "test_import_from_another_thread",
            "test_clear_threads_states_after_fork",
            "test_relativeCreated_has_higher_precision",
        )
        assert e.test.split(".")[1] in cr.MODULES
        assert len(e.reason) > 80 and e.since <= e.until


def test_failing_subtests_are_matched_to_the_test_missing_from_the_xml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _expect_on_313(monkeypatch)
    test = RELATIVE
    plain, watched = cr.Run("test_logging", False), cr.Run("test_logging", True)
    plain.outcomes = {test: "passed", "test.test_logging.X.test_y": "passed"}
    watched.outcomes = {"test.test_logging.X.test_y": "passed"}
    watched.unnamed = 1
    v = cr.compare(plain, watched, (3, 13))
    assert v.ok and v.expected == [(test, "passed", "subtests-failed", v.expected[0][3])]
    # The same on 3.11 is a difference.
    assert not cr.compare(plain, watched, (3, 11)).ok
    # More unnamed test cases than missing tests: reported.
    watched.unnamed = 2
    v = cr.compare(plain, watched, (3, 13))
    assert any("failing subtests" in d for d in v.differences)


def test_findings_texts_crashes_and_environment_changes_fail_the_check() -> None:
    plain = run(test_a="passed")
    watched = run(test_a="passed")
    watched.findings = ['{"kind": "deadlock", "cause": "two threads", "threads": ["a", "b"]}']
    watched.texts = ["deadlockwatch: internal error in the watcher (it keeps running):"]
    watched.env_changed = True
    v = cr.compare(plain, watched, (3, 11))
    assert v.differences == [
        "regrtest says the watched run altered the environment",
        "finding in the report file: deadlock: two threads (threads ['a', 'b'])",
        "deadlockwatch wrote: deadlockwatch: internal error in the watcher (it keeps running):",
    ]
    # os.environ gaining DEADLOCKWATCH_RUN_DIR is no excuse any more: start-up
    # sets it before the program runs, and nothing changes it afterwards.
    watched = run(test_a="passed")
    watched.env_changed = True
    watched.log = (
        "Warning -- os.environ was modified by test_x\n"
        "Warning --   Before: {}\nWarning --   After:  {'DEADLOCKWATCH_RUN_DIR': '/tmp/d'}\n"
    )
    v = cr.compare(plain, watched, (3, 11))
    assert v.differences == ["regrtest says the watched run altered the environment"]
    crashed = run()
    crashed.returncode = -9
    v = cr.compare(plain, crashed, (3, 11), rerun=lambda tests, detector: pytest.fail("no rerun"))
    assert v.differences == [
        "the watched run ended without results (exit status -9; "
        "a test over --test-timeout ends regrtest: see its log)"
    ]
    crashed.timed_out = True
    v = cr.compare(plain, crashed, (3, 11))
    assert v.differences[0].startswith("the watched run timed out")
    # Both runs without results: nothing was compared, which is no pass.
    v = cr.compare(crashed, crashed, (3, 11))
    assert [d.split(" run ")[0] for d in v.differences] == ["the plain", "the watched"]
    assert not v.ok


def test_report_table() -> None:
    plain = run(test_a="passed", test_b="skipped")
    watched = run(test_a="failed", test_b="skipped")
    plain.seconds, watched.seconds = 1.0, 2.5
    v = cr.compare(plain, watched, (3, 11))
    missing = cr.Verdict("test_concurrent_futures", None, None, unavailable="not installed")
    text = cr.report([v, missing], (3, 11), "ci")
    assert "CPython 3.11, profile ci" in text
    assert "   1 passed   0 failed   1 skipped     1.0 s" in text
    assert "   0 passed   1 failed   1 skipped     2.5 s" in text
    assert "test_concurrent_futures    unavailable: not installed" in text
    assert "NOT TRANSPARENT: 1 problem(s)" in text


def test_list_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert cr.main(["--list-expected"]) == 0
    out = capsys.readouterr().out
    for e in cr.EXPECTED_DIFFERENCES:
        assert e.test in out


def test_an_interpreter_without_deadlockwatch_is_refused(tmp_path: Path) -> None:
    """The check would pass vacuously if DEADLOCKWATCH=1 did nothing."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
        check=True,
        timeout=120,
    )
    bare = str(tmp_path / "venv" / "bin" / "python")
    for python, words in [
        (bare, "No module named 'deadlockwatch'"),
        (str(tmp_path / "nothing"), "cannot run the probe: [Errno 2]"),
    ]:
        r = subprocess.run(
            [sys.executable, str(RUNNER), "--python", python, "--modules", "test_thread"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 2, r.stderr
        assert words in r.stderr
        assert r.stdout == ""


def test_a_baseline_of_another_interpreter_or_profile_is_refused(tmp_path: Path) -> None:
    saved = tmp_path / "baseline.json"
    saved.write_text(json.dumps({"version": [2, 7], "profile": "full", "modules": {}}))
    r = subprocess.run(
        [sys.executable, str(RUNNER), "--modules", "test_thread", "--baseline", str(saved)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert "is for CPython 2.7, profile full; this run is 3." in r.stderr


@pytest.mark.slow
def test_cpython_threading_tests_pass_the_same_with_the_detector(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(RUNNER), "--profile", "ci", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "transparent: same outcomes" in r.stdout
