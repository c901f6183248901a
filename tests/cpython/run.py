#!/usr/bin/env python3
"""CPython's own threading tests, with and without deadlockwatch: transparency.

Runs ``python -m test MODULE --fail-env-changed`` for each module below
twice with the same interpreter: once plain, once with ``DEADLOCKWATCH=1``
from start-up (lock-order detection on, a JSON Lines report file set), and
checks that

* every test has the same outcome (passed, failed, error, skipped, ...) in
  both runs, per test id, read from regrtest's ``--junit-xml`` output, except
  the differences listed in `EXPECTED_DIFFERENCES` (each with its reason);
* the watched run changed no more of regrtest's saved environment than the
  plain one (``os.environ``, threads, files...: "env changed");
* the detector found nothing: the report file stays empty, and no
  ``deadlockwatch:`` line (a report, an internal error of the watcher) was
  written by the test process;
* no run crashed or timed out (one more try is given; a module without
  results in either run fails the check: nothing was compared).

`EXCLUDED` lists the few CPython tests left out of both runs because they
misbehave without the detector too.

A test whose outcome differs is run again a few times in both modes (regrtest
``--match``): if the outcomes then overlap, the difference is timing noise of
a loaded machine (reported as flaky, not a failure); if they never do, it is
a real difference.

Usage (the interpreter must have deadlockwatch installed, with its ``.pth``)::

    python tests/cpython/run.py                      # every module, both runs
    python tests/cpython/run.py --profile ci         # what .ci/run does
    python tests/cpython/run.py --modules test_queue,test_thread --python /path/python3
    python tests/cpython/run.py --save FILE          # also write every outcome as JSON
    python tests/cpython/run.py --baseline FILE      # compare with a saved plain run
    python tests/cpython/run.py --list-expected      # the expected-difference table

Exit status: 0 transparent, 1 a difference or a finding, 2 a usage error or
an interpreter that cannot run the check.

Profiles: ``full`` runs every module entirely; it is what ``.ci/run`` runs,
on 3.11 and 3.13 (on 3.13, 2-core machine: about 2.5 minutes plain and 3
with the detector when the machine is otherwise idle, 7 minutes in all under
a load average of 10 to 40; test_concurrent_futures is 85 s and 120 s of
it).  ``ci`` is the quicker check: every module, both runs, but
test_concurrent_futures only for its thread-pool and Future tests (about 40
s for both runs), leaving its process-pool tests (190 of 256, every one
starting interpreters) out.  Those did find a bug (multiprocessing managers could not pickle
the patched threading.Lock), now covered by tests/surfaces/test_startup.py.  On 3.11
the ci profile takes about 85 s, or about 2 minutes where
test_concurrent_futures is installed (3.11.7 and 3.12.1 builds omit that
package from ``make install``: it is then reported as unavailable, not run).
The plain runs can also come from a file saved with ``--save`` by an earlier
run of the same interpreter (``--baseline``), halving the time.

Bounds: regrtest's own ``--timeout`` (faulthandler dumps the stacks and ends
the process if one test takes longer), and a timeout on each regrtest process
(its whole process group is killed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

MODULES = (
    "test_threading",
    "test_thread",
    "test_threading_local",
    "test_queue",
    "test_concurrent_futures",
    "test_logging",
    "test_contextlib",
)

#: Per profile: regrtest ``--match`` patterns restricting a module (none: all of it).
PROFILES: dict[str, dict[str, tuple[str, ...]]] = {
    "full": {},
    "ci": {"test_concurrent_futures": ("*ThreadPool*", "FutureTests")},
}

#: Outcomes as read from regrtest's JUnit XML.
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
XFAIL, XPASS, MISSING = "expected-failure", "unexpected-success", "missing"
#: A test whose subtests failed: regrtest's XML has an unnamed <testcase/> for it.
SUBFAILED = "subtests-failed"
FAILING = (FAILED, ERROR, SUBFAILED)


@dataclass(frozen=True)
class Expected:
    """A test that cannot pass with the detector on, and why."""

    test: str
    reason: str
    #: The CPython versions (major, minor) where the difference shows, inclusive.
    since: tuple[int, int] = (3, 10)
    until: tuple[int, int] = (3, 99)
    #: It shows in some runs only (a race): not showing is no news.
    intermittent: bool = False

    def applies(self, version: tuple[int, int]) -> bool:
        return self.since <= version <= self.until


#: Documented, expected differences.  Anything else that differs fails the check.
EXPECTED_DIFFERENCES: tuple[Expected, ...] = (
    Expected(
        "test.test_threading.ThreadTests.test_disallow_instantiation",
        "It checks that type(threading.Lock()) cannot be instantiated, as _thread.lock "
        "cannot before 3.13.  With the detector on, type() is deadlockwatch's TrackedLock, "
        "which can (README: type() names the tracked type, by design).  The test is gone "
        "in 3.13, where _thread.lock itself can be instantiated.",
        until=(3, 12),
    ),
)


@dataclass(frozen=True)
class ExpectedFinding:
    """A report the watched run makes on purpose: it is right."""

    parts: tuple[str, ...]
    reason: str
    #: What the text report's first line says (stderr/log), for the same finding.
    text: str = "WARNING: a thread exited holding a lock"


EXPECTED_FINDINGS: tuple[ExpectedFinding, ...] = (
    ExpectedFinding(
        ('"kind": "held-at-exit"', "lock_tests.py", "RLock(created"),
        "RLockTests.test_different_thread lets a thread acquire an RLock and end: the RLock "
        "stays held by a thread that no longer exists, which the held-at-exit warning says.",
    ),
    ExpectedFinding(
        (
            '"kind": "lock-order-inversion"',
            "logging/__init__.py",
            '"function": "createLock"',
            '"function": "shutdown"',
        ),
        "A real lock-order inversion in CPython's logging (logging's module lock is tracked: "
        "threading is patched as soon as it is imported, before logging makes its lock): "
        "logging.shutdown() holds a "
        "handler's lock while Handler.close() takes the module lock, and dictConfig() holds "
        "the module lock while its shutdown() takes a handler's lock (test_logging's "
        "test_90195, then a cleanup). Two threads doing these at once on one handler hang.",
        "POTENTIAL DEADLOCK: lock-order inversion",
    ),
)


@dataclass(frozen=True)
class Excluded:
    """CPython tests left out of both runs (regrtest ``--ignore``), and why:
    only tests that misbehave without the detector too."""

    pattern: str
    reason: str
    #: The releases with the fix, one per minor version (later minor versions
    #: have it too); none: left out everywhere.
    fixed_in: tuple[tuple[int, int, int], ...] = ()

    def applies(self, version: tuple[int, int, int]) -> bool:
        for fixed in self.fixed_in:
            if version[:2] == fixed[:2]:
                return version < fixed
        return not self.fixed_in or version < min(self.fixed_in)


EXCLUDED: tuple[Excluded, ...] = (
    Excluded(
        "test.test_threading.ThreadingExceptionTests.test_print_exception_gh_102056",
        "Its child interpreter recurses exponentially until interrupt_main() stops it; "
        "on a loaded machine it sometimes never stops, without the detector as with it "
        "(seen on 3.12 and 3.13: the test ran into --test-timeout in both runs, which "
        "ends regrtest and loses the module's results).",
    ),
    Excluded(
        "*ProcessPoolShutdownTest.test_processes_terminate",
        "CPython bug gh-125451 (fixed in 3.12.8 and 3.13.1): a real deadlock when "
        "ProcessPoolExecutor shuts down while its queue feeder thread handles a task it "
        "cannot pickle: the manager thread holds shutdown_lock and joins the feeder, which "
        "waits for shutdown_lock.  Timing decides; it hung once in four runs of 3.13.0 "
        "with the detector (whose slower locks widen the window).  deadlockwatch, which "
        "tracks Thread.join, reports it as a deadlock when it happens: a true report, but "
        "one that depends on timing, so the test is left out of both runs.",
        fixed_in=((3, 12, 8), (3, 13, 1)),
    ),
)


#: Runs Python's regression tests as ``python -m test`` would from a terminal
#: (SIGINT raises KeyboardInterrupt).  With the detector on, it also copies
#: every text the watcher writes (reports, internal errors) to a side file:
#: regrtest buffers a test's stderr while it runs (for the JUnit XML) and
#: drops it when the test passes.
LAUNCHER = """\
import os, runpy, signal, sys
# As from a terminal, however this script was started: a background job of a
# shell without job control inherits SIGINT ignored, and then
# _thread.interrupt_main() does nothing (test_threading's InterruptMainTests).
signal.signal(signal.SIGINT, signal.default_int_handler)
log = os.environ.pop("_DLW_CPYTHON_TEXT_LOG", None)
if log:
    import deadlockwatch
    from deadlockwatch._watch.watcher import DETECTOR
    if not deadlockwatch.is_enabled():
        sys.exit("deadlockwatch is not enabled by DEADLOCKWATCH=1 in " + sys.executable)
    _write = DETECTOR.write_text
    def write_text(text, file=None):
        if file is None:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        _write(text, file)
    DETECTOR.write_text = write_text
runpy.run_module("test", run_name="__main__", alter_sys=True)
"""

PROBE = """\
import sys, threading, deadlockwatch
v = ".".join(map(str, sys.version_info[:3]))
print(v, deadlockwatch.is_enabled(), type(threading.Lock()).__name__)
"""


@dataclass
class Run:
    """One regrtest process: one module, with or without the detector."""

    module: str
    detector: bool
    outcomes: dict[str, str] = field(default_factory=dict)
    #: <testcase/> elements without a name: tests with failing subtests.
    unnamed: int = 0
    seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    #: regrtest's "Result: ..." line, and whether it said the environment changed.
    result: str = ""
    env_changed: bool = False
    #: JSON lines of the report file, and "deadlockwatch:" lines of the text output.
    findings: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def crashed(self) -> bool:
        """No usable results: killed, or regrtest ended without its XML."""
        return self.timed_out or (not self.outcomes and not self.unnamed)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        if self.unnamed:
            counts["subtest-failures"] = self.unnamed
        return counts


@dataclass
class Verdict:
    """The comparison of one module's two runs."""

    module: str
    plain: Run | None
    watched: Run | None
    unavailable: str = ""
    expected: list[tuple[str, str, str, str]] = field(default_factory=list)
    flaky: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


# -- running regrtest ---------------------------------------------------------------------
def _clean_env(detector: bool, report: str, text_log: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    env.pop("_DLW_CPYTHON_TEXT_LOG", None)
    env["PYTHONFAULTHANDLER"] = "1"
    if detector:
        env.update(
            {
                "DEADLOCKWATCH": "1",
                "DEADLOCKWATCH_LOCK_ORDER": "1",
                "DEADLOCKWATCH_REPORT": report,
                "_DLW_CPYTHON_TEXT_LOG": text_log,
            }
        )
    return env


def run_regrtest(
    python: str,
    module: str,
    *,
    detector: bool,
    workdir: str,
    match: Sequence[str] = (),
    ignore: Sequence[str] = (),
    test_timeout: float,
    timeout: float,
    tag: str = "",
) -> Run:
    """Run one module in a fresh regrtest process; never hangs past ``timeout``."""
    mode = "watched" if detector else "plain"
    stem = os.path.join(workdir, f"{module}.{mode}{tag}")
    xml, report, text_log, log = (stem + ext for ext in (".xml", ".jsonl", ".text", ".log"))
    for path in (xml, report, text_log):
        if os.path.exists(path):
            os.remove(path)
    cmd = [python, "-c", LAUNCHER, module, "--junit-xml", xml, "--timeout", str(test_timeout)]
    cmd.append("--fail-env-changed")
    for pattern in match:
        cmd += ["--match", pattern]
    for pattern in ignore:
        cmd += ["--ignore", pattern]
    run = Run(module, detector)
    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_clean_env(detector, report, text_log),
            cwd=workdir,
            start_new_session=True,
        )
        try:
            run.returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
        finally:
            # Also when regrtest ended by itself: a test's child processes may
            # outlive it (faulthandler's --timeout exits at once), and so on ^C
            # or SIGTERM (see the end of this file).
            _kill_group(proc)
    run.seconds = time.monotonic() - start
    with open(log, encoding="utf-8", errors="replace") as f:
        run.log = f.read()
    run.result = next(
        (line.strip() for line in reversed(run.log.splitlines()) if line.startswith("Result:")),
        "",
    )
    run.env_changed = "(env changed)" in run.log or "altered the execution environment" in run.log
    if os.path.exists(xml):
        run.outcomes, run.unnamed = parse_junit(xml)
    if os.path.exists(report):
        with open(report, encoding="utf-8", errors="replace") as f:
            run.findings = [line for line in f.read().splitlines() if line.strip()]
    texts = run.log
    if os.path.exists(text_log):
        with open(text_log, encoding="utf-8", errors="replace") as f:
            texts += "\n" + f.read()
    run.texts = sorted({line for line in texts.splitlines() if "deadlockwatch:" in line})
    return run


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of the process group (the session regrtest leads)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)


def parse_junit(path: str) -> tuple[dict[str, str], int]:
    """Each test id's outcome in a regrtest JUnit XML file, and the number of
    unnamed test cases (regrtest writes one for a test whose subtests failed)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return {}, 0
    outcomes: dict[str, str] = {}
    unnamed = 0
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:
            unnamed += 1
            continue
        tags = {child.tag for child in case}
        if "error" in tags:
            outcome = ERROR
        elif "failure" in tags:
            outcome = FAILED
        elif "skipped" in tags:
            outcome = SKIPPED
        elif "output" in tags:
            outcome = XFAIL
        elif "outcome" in tags:
            outcome = XPASS
        else:
            outcome = PASSED
        # A test id seen twice (a rerun) keeps its worst outcome.
        if outcomes.get(name) in (FAILED, ERROR):
            continue
        outcomes[name] = outcome
    return outcomes, unnamed


def probe(python: str) -> tuple[tuple[int, int, int], str]:
    """The interpreter's version, and an error if DEADLOCKWATCH=1 does not enable it."""
    env = _clean_env(True, os.devnull, "")
    env.pop("_DLW_CPYTHON_TEXT_LOG")
    try:
        r = subprocess.run(
            [python, "-c", PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tempfile.gettempdir(),  # not a checkout: the installed deadlockwatch
        )
    except OSError as exc:
        return (0, 0, 0), f"{python} cannot run the probe: {exc}"
    words = r.stdout.split()
    if r.returncode != 0 or len(words) != 3:
        return (0, 0, 0), f"{python} cannot run the probe: {r.stderr.strip() or r.stdout.strip()}"
    major, minor, micro = (int(x) for x in words[0].split("."))
    if words[1:] != ["True", "TrackedLock"]:
        return (major, minor, micro), (
            f"DEADLOCKWATCH=1 does not switch deadlockwatch on in {python} "
            f"(is it installed there, with its .pth?): {r.stdout.strip()} {r.stderr.strip()}"
        )
    return (major, minor, micro), ""


def available(python: str, module: str) -> bool:
    code = (
        f"import importlib.util, sys; sys.exit(importlib.util.find_spec('test.{module}') is None)"
    )
    env = _clean_env(False, "", "")
    r = subprocess.run(
        [python, "-c", code], env=env, timeout=120, check=False, cwd=tempfile.gettempdir()
    )
    return r.returncode == 0


# -- comparing ----------------------------------------------------------------------------
def expected_for(version: tuple[int, int]) -> dict[str, Expected]:
    return {e.test: e for e in EXPECTED_DIFFERENCES if e.applies(version)}


Rerunner = Callable[[list[str], bool], dict[str, list[str]]]


def _outcomes(run: Run, tests: Iterable[str], spare_unnamed: int) -> dict[str, str]:
    """Each test's outcome in ``run``.  A test missing from a run that has
    ``spare_unnamed`` more unnamed test cases than the other is one whose
    subtests failed (when the numbers agree)."""
    missing = [t for t in tests if t not in run.outcomes]
    gone = SUBFAILED if missing and len(missing) <= spare_unnamed else MISSING
    return {t: run.outcomes.get(t, gone) for t in tests}


def compare(
    plain: Run,
    watched: Run,
    version: tuple[int, int],
    rerun: Rerunner | None = None,
) -> Verdict:
    """The differences between the plain and the watched run of one module.

    ``rerun(tests, detector)`` runs those tests again and returns their outcomes,
    run by run: how a flaky difference is told from a real one."""
    verdict = Verdict(plain.module, plain, watched)
    expected = expected_for(version)
    for run, name in ((plain, "plain"), (watched, "watched")):
        if run.timed_out:
            verdict.differences.append(f"the {name} run timed out after {run.seconds:.0f} s")
        elif run.crashed:
            verdict.differences.append(
                f"the {name} run ended without results (exit status {run.returncode}; "
                "a test over --test-timeout ends regrtest: see its log)"
            )
    if watched.env_changed and not plain.env_changed:
        verdict.differences.append("regrtest says the watched run altered the environment")
    expected_texts: list[str] = []
    for line in watched.findings:
        match = next((e for e in EXPECTED_FINDINGS if all(p in line for p in e.parts)), None)
        if match is not None:
            expected_texts.append(match.text)
            continue
        verdict.differences.append(f"finding in the report file: {_summary(line)}")
    for line in watched.texts:
        text = next((t for t in expected_texts if t in line), None)
        if text is not None:
            expected_texts.remove(text)  # the text of an expected report
            continue
        verdict.differences.append(f"deadlockwatch wrote: {line.strip()}")

    tests = sorted(set(plain.outcomes) | set(watched.outcomes))
    before_all = _outcomes(plain, tests, plain.unnamed - watched.unnamed)
    after_all = _outcomes(watched, tests, watched.unnamed - plain.unnamed)
    differing = {t: (before_all[t], after_all[t]) for t in tests if before_all[t] != after_all[t]}
    if watched.crashed or plain.crashed:
        # The tests a crashed run never got to are the crash's, already reported.
        differing = {t: o for t, o in differing.items() if MISSING not in o}
    subfailed = sum(1 for o in after_all.values() if o == SUBFAILED)
    extra_unnamed = watched.unnamed - plain.unnamed - subfailed
    if extra_unnamed > 0:
        verdict.differences.append(
            f"{extra_unnamed} more test(s) with failing subtests in the watched run "
            "(run the module with -v to see which)"
        )
    unexplained = {}
    for test, (before, after) in differing.items():
        if test in expected and after in FAILING and before not in FAILING:
            verdict.expected.append((test, before, after, expected[test].reason))
        else:
            unexplained[test] = (before, after)
    for test, e in expected.items():
        mine = test.split(".")[1] == plain.module
        if mine and not e.intermittent and test in plain.outcomes and test not in differing:
            verdict.notes.append(
                f"expected difference did not show: {test} ({before_all[test]} in both runs)"
            )
    if unexplained and rerun is not None and not (watched.crashed or plain.crashed):
        again_plain = rerun(sorted(unexplained), False)
        again_watched = rerun(sorted(unexplained), True)
        for test, (before, after) in unexplained.items():
            plain_seen = [before, *again_plain.get(test, [])]
            watched_seen = [after, *again_watched.get(test, [])]
            if set(plain_seen) & set(watched_seen):
                # Seen in both modes, or not repeated: a race or a loaded machine.
                verdict.flaky.append((test, plain_seen, watched_seen))
            else:
                verdict.differences.append(
                    f"{test}: {'/'.join(plain_seen)} without the detector, "
                    f"{'/'.join(watched_seen)} with it"
                )
    else:
        for test, (before, after) in unexplained.items():
            verdict.differences.append(f"{test}: {before} without the detector, {after} with it")
    return verdict


class Rerun:
    """Runs some tests of a module again, ``times`` times, in one mode."""

    def __init__(
        self,
        python: str,
        module: str,
        workdir: str,
        times: int,
        test_timeout: float,
        timeout: float,
    ) -> None:
        self.python, self.module, self.workdir, self.times = python, module, workdir, times
        self.test_timeout, self.timeout = test_timeout, timeout

    def __call__(self, tests: list[str], detector: bool) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {t: [] for t in tests}
        for i in range(self.times):
            run = run_regrtest(
                self.python,
                self.module,
                detector=detector,
                workdir=self.workdir,
                match=tests,
                tag=f".rerun{i}",
                test_timeout=self.test_timeout,
                timeout=self.timeout,
            )
            for t, outcome in _outcomes(run, tests, run.unnamed).items():
                seen[t].append(outcome)
        return seen


def _summary(line: str) -> str:
    try:
        record = json.loads(line)
        return f"{record.get('kind')}: {record.get('cause')} (threads {record.get('threads')})"
    except (ValueError, AttributeError):
        return line[:200]


# -- output -------------------------------------------------------------------------------
def _fmt_counts(run: Run | None) -> str:
    if run is None:
        return "-"
    if run.timed_out:
        return f"TIMEOUT after {run.seconds:.0f} s"
    if run.crashed:
        return f"NO RESULTS (exit status {run.returncode}) after {run.seconds:.0f} s"
    c = run.counts()
    failed = c.get(FAILED, 0) + c.get(ERROR, 0) + c.get("subtest-failures", 0)
    other = sum(v for k, v in c.items() if k not in (PASSED, FAILED, ERROR, SKIPPED))
    other -= c.get("subtest-failures", 0)
    text = f"{c.get(PASSED, 0):4d} passed {failed:3d} failed {c.get(SKIPPED, 0):3d} skipped"
    if other:
        text += f" {other} other"
    return f"{text} {run.seconds:7.1f} s"


def report(verdicts: Iterable[Verdict], version: tuple[int, int], profile: str) -> str:
    lines = [f"CPython {version[0]}.{version[1]}, profile {profile}", ""]
    lines.append(f"{'module':26} {'without the detector':44} {'with the detector':44}")
    for v in verdicts:
        if v.unavailable:
            lines.append(f"{v.module:26} unavailable: {v.unavailable}")
            continue
        lines.append(f"{v.module:26} {_fmt_counts(v.plain):44} {_fmt_counts(v.watched):44}")
    for v in verdicts:
        for test, before, after, reason in v.expected:
            lines += ["", f"expected difference {test}: {before} -> {after}", f"    {reason}"]
        for test, plain_seen, watched_seen in v.flaky:
            if watched_seen[0] in plain_seen:
                what = "flaky in both modes (not counted)"
            else:
                # Only the detector's runs showed it, once: a rare real difference
                # looks like this too (see test_clear_threads_states_after_fork).
                what = "seen with the detector only, not repeated (not counted; look if it recurs)"
            lines.append(
                f"{what}: {test}: without {'/'.join(plain_seen)}, with {'/'.join(watched_seen)}"
            )
        for note in v.notes:
            lines.append(f"note: {v.module}: {note}")
    bad = [(v.module, d) for v in verdicts for d in v.differences]
    lines.append("")
    if bad:
        lines.append(f"NOT TRANSPARENT: {len(bad)} problem(s)")
        lines += [f"  {module}: {d}" for module, d in bad]
    else:
        lines.append("transparent: same outcomes (expected differences aside), no findings")
    return "\n".join(lines)


def _to_json(run: Run | None) -> dict[str, object] | None:
    if run is None:
        return None
    data = asdict(run)
    data.pop("log")
    return data


def _from_json(data: Mapping[str, object]) -> Run:
    fields = {k: v for k, v in data.items() if k in Run.__dataclass_fields__}
    return Run(**fields)  # type: ignore[arg-type]


# -- main ---------------------------------------------------------------------------------
def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"tests/cpython/run.py: terminated by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to test")
    parser.add_argument("--modules", help=f"comma-separated (default: all of {', '.join(MODULES)})")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--test-timeout", type=float, default=300.0, help="per test (regrtest)")
    parser.add_argument("--module-timeout", type=float, default=900.0, help="per regrtest run")
    parser.add_argument("--reruns", type=int, default=2, help="reruns of a differing test")
    parser.add_argument("--workdir", help="keep logs, XML and reports here (default: temporary)")
    parser.add_argument("--save", help="write every outcome, count and time as JSON here")
    parser.add_argument("--baseline", help="take the plain runs from this --save file")
    parser.add_argument("--list-expected", action="store_true")
    ns = parser.parse_args(argv)

    if ns.list_expected:
        for e in EXPECTED_DIFFERENCES:
            versions = f"CPython {e.since[0]}.{e.since[1]} to {e.until[0]}.{e.until[1]}"
            print(f"{e.test} ({versions}{', intermittent' if e.intermittent else ''})")
            print(f"    {e.reason}")
        for finding in EXPECTED_FINDINGS:
            print(f"finding with all of {', '.join(finding.parts)} (expected report)")
            print(f"    {finding.reason}")
        for x in EXCLUDED:
            fixed = ", ".join(".".join(map(str, f)) for f in x.fixed_in)
            print(f"{x.pattern} (left out of both runs{', before ' + fixed if fixed else ''})")
            print(f"    {x.reason}")
        return 0
    modules = ns.modules.split(",") if ns.modules else list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    full_version, problem = probe(ns.python)
    version = full_version[:2]
    ignore = [x.pattern for x in EXCLUDED if x.applies(full_version)]
    if problem:
        print(f"tests/cpython/run.py: {problem}", file=sys.stderr)
        return 2
    baseline: dict[str, Run] = {}
    if ns.baseline:
        with open(ns.baseline, encoding="utf-8") as f:
            saved = json.load(f)
        wanted = (list(version), ns.profile)
        if (saved["version"], saved["profile"]) != wanted:
            print(
                "tests/cpython/run.py: --baseline {} is for CPython {}.{}, profile {}; "
                "this run is {}.{}, profile {}".format(
                    ns.baseline, *saved["version"], saved["profile"], *version, ns.profile
                ),
                file=sys.stderr,
            )
            return 2
        baseline = {m: _from_json(r["plain"]) for m, r in saved["modules"].items() if r["plain"]}

    workdir = ns.workdir or tempfile.mkdtemp(prefix="dlw-cpython-")
    os.makedirs(workdir, exist_ok=True)
    bounds = {"test_timeout": ns.test_timeout, "timeout": ns.module_timeout}
    verdicts = []
    started = time.monotonic()
    for module in modules:
        if not available(ns.python, module):
            verdicts.append(
                Verdict(module, None, None, unavailable="not installed with this interpreter")
            )
            print(f"{module}: not installed with {ns.python}, skipped", flush=True)
            continue
        match = PROFILES[ns.profile].get(module, ())
        print(f"{module}: running{' (part: ' + ' '.join(match) + ')' if match else ''}", flush=True)
        runs: list[Run] = []
        for detector in (False, True):
            run = None if detector else baseline.get(module)
            for tag in ("", ".again"):
                if run is None or run.crashed:
                    # A run without results (a test over --test-timeout on a
                    # loaded machine ends regrtest) gets one more chance.
                    if run is not None:
                        print(f"{module}: no results ({run.result or 'killed'}); again", flush=True)
                    run = run_regrtest(
                        ns.python,
                        module,
                        detector=detector,
                        workdir=workdir,
                        match=match,
                        ignore=ignore,
                        tag=tag,
                        **bounds,
                    )
            assert run is not None
            runs.append(run)
        plain, watched = runs
        rerun = Rerun(ns.python, module, workdir, ns.reruns, **bounds) if ns.reruns else None
        verdict = compare(plain, watched, version, rerun)
        verdicts.append(verdict)
        print(
            f"{module}: {'ok' if verdict.ok else 'DIFFERENT'} "
            f"({plain.seconds:.1f} s plain, {watched.seconds:.1f} s watched)",
            flush=True,
        )
    print()
    print(report(verdicts, version, ns.profile))
    print(f"\ntotal {time.monotonic() - started:.0f} s; logs, XML and reports in {workdir}")
    if ns.save:
        with open(ns.save, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "version": version,
                    "profile": ns.profile,
                    "modules": {
                        v.module: {
                            "plain": _to_json(v.plain),
                            "watched": _to_json(v.watched),
                            "unavailable": v.unavailable,
                            "expected": v.expected,
                            "flaky": v.flaky,
                            "differences": v.differences,
                        }
                        for v in verdicts
                    },
                },
                f,
                indent=1,
            )
    ok = all(v.ok for v in verdicts)
    if ok and not ns.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    # A CI time limit's SIGTERM ends the regrtest process groups too.
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())
