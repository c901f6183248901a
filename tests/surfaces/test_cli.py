"""The command line (``python -m deadlockwatch``): the runner, ``demo`` and
``report``, each case in a fresh interpreter killed if it ever hangs; and
property tests of what reads user input (report records, option values)."""

from __future__ import annotations

import copy
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _records import _DELETE, PROPERTY, REAL_RECORDS, REPORT_BYTES
from conftest import ABBA_START
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deadlockwatch._config import OPTIONS, Config, ConfigError
from deadlockwatch._demo import SCENARIOS

#: Upper bound for one command line run: a broken CLI fails, never hangs.
TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra)
    return env


def dw(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    merge: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m deadlockwatch ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "deadlockwatch", *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
        timeout=TIMEOUT,
    )


def one_error_line(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """Status 2, nothing on stdout, one line on stderr naming ``words``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == ""
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


# -- the runner ----------------------------------------------------------------------
INTROSPECT = """
import json, os, sys, threading
import deadlockwatch
import helper_next_to_script
print(json.dumps({
    "argv": sys.argv,
    "name": __name__,
    "path0": sys.path[0],
    "enabled": deadlockwatch.is_enabled(),
    "lock": type(threading.Lock()).__module__ + "." + type(threading.Lock()).__name__,
    "env": os.environ.get("DEADLOCKWATCH"),
    "helper": helper_next_to_script.VALUE,
}))
"""


def test_script_runs_as_main_with_its_argv_path_and_the_detector_on(tmp_path: Path) -> None:
    write(tmp_path / "app" / "script.py", INTROSPECT)
    write(tmp_path / "app" / "helper_next_to_script.py", "VALUE = 42\n")
    r = dw("app/script.py", "a", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    seen = json.loads(r.stdout)
    assert seen["argv"] == ["app/script.py", "a", "b"]
    assert seen["name"] == "__main__"
    assert os.path.realpath(seen["path0"]) == os.path.realpath(tmp_path / "app")
    assert seen["helper"] == 42
    assert seen["enabled"] is True
    assert seen["lock"] == "_thread.TrackedLock"
    assert seen["env"] == "1"


def test_options_after_the_script_belong_to_the_script(tmp_path: Path) -> None:
    write(tmp_path / "s.py", "import sys; print(sys.argv[1:])")
    r = dw("--interval", "0.5", str(tmp_path / "s.py"), "--interval", "x", "--bogus", "-m")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['--interval', 'x', '--bogus', '-m']"


@pytest.mark.parametrize(("code", "status"), [("sys.exit(3)", 3), ("pass", 0), ("sys.exit()", 0)])
def test_exit_status_is_passed_through(tmp_path: Path, code: str, status: int) -> None:
    write(tmp_path / "s.py", f"import sys\nprint('ran')\n{code}\n")
    r = dw(str(tmp_path / "s.py"))
    assert (r.returncode, r.stdout) == (status, "ran\n"), r.stderr


def test_uncaught_exception_shows_the_program_traceback_only(tmp_path: Path) -> None:
    script = write(
        tmp_path / "boom.py",
        """
        def inner():
            raise ValueError("boom")

        inner()
        """,
    )
    r = dw(str(script))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
    files = [line for line in lines if line.lstrip().startswith("File ")]
    assert files == [
        f'  File "{script}", line 5, in <module>',
        f'  File "{script}", line 3, in inner',
    ]
    assert "runpy" not in r.stderr and "_cli.py" not in r.stderr


def _make_package(root: Path) -> None:
    write(root / "mypkg" / "__init__.py", "")
    write(
        root / "mypkg" / "tool.py",
        """
        import json, sys, threading
        import deadlockwatch
        print(json.dumps({
            "argv": sys.argv,
            "name": __name__,
            "enabled": deadlockwatch.is_enabled(),
            "lock": type(threading.Lock()).__name__,
        }))
        """,
    )
    write(root / "mypkg" / "broken.py", "import no_such_dependency_for_deadlockwatch_test\n")


def test_dash_m_runs_a_module_with_its_file_as_argv0(tmp_path: Path) -> None:
    _make_package(tmp_path)
    r = dw("--threshold", "0.2", "-m", "mypkg.tool", "x", "--action", "y", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert os.path.realpath(seen["argv"][0]) == os.path.realpath(tmp_path / "mypkg" / "tool.py")
    assert seen["argv"][1:] == ["x", "--action", "y"]
    assert seen["name"] == "__main__"
    assert seen["enabled"] is True
    assert seen["lock"] == "TrackedLock"


def test_dash_m_module_that_fails_to_import_is_the_programs_error(tmp_path: Path) -> None:
    """An import inside the module fails: a traceback and status 1, like Python."""
    _make_package(tmp_path)
    r = dw("-m", "mypkg.broken", cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: No module named 'no_such_dependency_for_deadlockwatch_test'"
    )
    assert f'File "{tmp_path / "mypkg" / "broken.py"}", line 1' in r.stderr


@pytest.mark.parametrize(
    ("module", "words"),
    [
        ("no_such_module_xyz", ["-m no_such_module_xyz", "No module named no_such_module_xyz"]),
        ("mypkg.nope", ["-m mypkg.nope", "No module named mypkg.nope"]),
        ("nopkg_xyz.mod", ["-m nopkg_xyz.mod", "nopkg_xyz"]),
        ("mypkg", ["-m mypkg", "cannot be directly executed"]),
    ],
)
def test_dash_m_module_that_cannot_be_found_is_a_usage_error(
    tmp_path: Path, module: str, words: list[str]
) -> None:
    _make_package(tmp_path)
    one_error_line(dw("-m", module, cwd=tmp_path), *words)


RECOVERING_ABBA = """
import json, sys, threading
import deadlockwatch
from deadlockwatch._watch.watcher import DETECTOR
a = threading.Lock()
b = threading.Lock()
barrier = threading.Barrier(2)
out = []
def worker(x, y):
    try:
        with x:
            barrier.wait(10)
            with y:
                out.append("done")
    except deadlockwatch.DeadlockError:
        out.append("DeadlockError")
ts = [threading.Thread(target=worker, args=p, daemon=True) for p in [(a, b), (b, a)]]
[t.start() for t in ts]
[t.join(10) for t in ts]
c = DETECTOR.config
print(json.dumps({"out": sorted(out), "interval": c.interval, "action": c.on_deadlock,
                  "report": c.report, "alive": [t.is_alive() for t in ts]}))
"""


def test_options_apply_to_a_real_deadlock(tmp_path: Path) -> None:
    # The program changes directory first: the report still goes where asked.
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "abba.py", "import os; os.chdir('elsewhere')\n" + RECOVERING_ABBA)
    args = ["--interval", "0.05", "--action", "raise", "--report", "found.jsonl", "abba.py"]
    r = dw(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    report = tmp_path / "found.jsonl"
    assert os.path.realpath(seen.pop("report")) == os.path.realpath(report)
    assert seen == {
        "out": ["DeadlockError", "done"],
        "interval": 0.05,
        "action": "raise",
        "alive": [False, False],
    }
    assert not (tmp_path / "elsewhere" / "found.jsonl").exists()
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    records = [json.loads(line) for line in report.read_text().splitlines()]
    (record,) = [rec for rec in records if rec["kind"] == "deadlock"]
    assert len(record["cycle"]) == 2


@pytest.mark.parametrize(
    ("args", "field", "expected"),
    [
        (["--interval", "0.25"], "interval", 0.25),
        (["--interval=0.25"], "interval", 0.25),
        (["--threshold", "0"], "threshold", 0.0),
        (["--action=abort"], "on_deadlock", "abort"),
        (["--action", "RAISE-ALL"], "on_deadlock", "raise-all"),
        (["--text", "off"], "text", False),
        (["--interval", "0.5", "--interval", "0.75"], "interval", 0.75),
    ],
)
def test_each_option_reaches_the_detector(
    tmp_path: Path, args: list[str], field: str, expected: object
) -> None:
    script = write(
        tmp_path / "s.py",
        "from deadlockwatch._watch.watcher import DETECTOR\n"
        f"print(repr(DETECTOR.config.{field}))\n",
    )
    r = dw(*args, str(script))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr(expected)


def test_command_line_overrides_the_environment(tmp_path: Path) -> None:
    script = write(
        tmp_path / "s.py",
        "from deadlockwatch._watch.watcher import DETECTOR as D\n"
        "print(D.config.interval, D.config.threshold)\n",
    )
    env = clean_env(DEADLOCKWATCH_INTERVAL="2", DEADLOCKWATCH_THRESHOLD="0.3")
    r = dw("--interval", "0.5", str(script), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0.5", "0.3"]


CHILD = """
import json, os, subprocess, sys
code = (
    "import json, os, deadlockwatch\\n"
    "from deadlockwatch._watch.watcher import DETECTOR\\n"
    "print(json.dumps({'var': os.environ.get('DEADLOCKWATCH'),"
    " 'report': os.environ.get('DEADLOCKWATCH_REPORT'),"
    " 'enabled': deadlockwatch.is_enabled(), 'interval': DETECTOR.config.interval}))"
)
child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(os.getcwd()))
sys.stdout.write(child.stdout)
sys.stderr.write(child.stderr)
"""


def test_child_processes_inherit_the_detector_and_options(tmp_path: Path) -> None:
    script = write(tmp_path / "parent.py", CHILD)
    r = dw("--interval", "0.05", "--report", "rel.jsonl", str(script), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    seen = json.loads(r.stdout)
    seen["report"] = os.path.realpath(seen["report"])
    assert seen == {
        "var": "1",
        # the child runs elsewhere: a relative report path is handed down absolute
        "report": os.path.realpath(tmp_path / "rel.jsonl"),
        "enabled": True,
        "interval": 0.05,
    }


def test_unknown_environment_variable_gets_a_warning(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", "print('ran')")
    r = dw(str(script), env=clean_env(DEADLOCKWATCH_INTERVL="1"))
    assert r.returncode == 0 and r.stdout == "ran\n"
    assert "unknown environment variable DEADLOCKWATCH_INTERVL" in r.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    r = dw(flag, "ignored.py")
    assert r.returncode == 0
    assert r.stderr == ""
    assert r.stdout.startswith("usage: python -m deadlockwatch")
    for option in OPTIONS:
        assert option.flag in r.stdout and option.env in r.stdout
    for form in ("-m package.module", "demo [NAME]", "report FILE.jsonl"):
        assert form in r.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--interval", "x", "s.py"], ["--interval", "'x'", "a number of seconds"]),
        (["--interval=0", "s.py"], ["--interval", "'0'", ">= 0.001"]),
        (["--threshold", "-1", "s.py"], ["--threshold", "'-1'", ">= 0"]),
        (
            ["--action", "explode", "s.py"],
            ["--action", "'explode'", "one of report, raise, raise-all, abort"],
        ),
        (["--text", "maybe", "s.py"], ["--text", "'maybe'", "one of 1, 0"]),
        (["--report", "no/such/dir/r.jsonl", "s.py"], ["--report", "existing directory"]),
        (["--bogus", "s.py"], ["'--bogus'", "accepted: --interval", "-m"]),
        (["--interval"], ["--interval", "needs a value"]),
        (["--interval", "0.5"], ["nothing to run", "-m"]),
        ([], ["nothing to run"]),
        (["-m"], ["-m", "module name"]),
        (["missing.py"], ["'missing.py'", "no such file"]),
        (["subdir"], ["'subdir'", "not a file"]),
    ],
)
def test_bad_command_line_is_one_line_and_status_2(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    (tmp_path / "subdir").mkdir()
    write(tmp_path / "s.py", "open('ran', 'w').close()\n")
    line = one_error_line(dw(*args, cwd=tmp_path), *words)
    assert line.startswith("deadlockwatch: ")
    assert "callable" not in line  # no command line can pass one
    assert not (tmp_path / "ran").exists()


def test_bad_environment_value_stops_the_runner(tmp_path: Path) -> None:
    write(tmp_path / "s.py", "open('ran', 'w').close()\n")
    r = dw("s.py", cwd=tmp_path, env=clean_env(DEADLOCKWATCH_INTERVAL="fast"))
    one_error_line(r, "environment variable DEADLOCKWATCH_INTERVAL", "'fast'")
    assert not (tmp_path / "ran").exists()


# -- demo ------------------------------------------------------------------------------
#: A line of each scenario's report that only that scenario produces.
DEMO_MARKS = {
    "abba": "'audit' waits for Lock(",
    "philosophers": "'philosopher-0' waits for Lock(",
    "self-deadlock": "which it holds itself",
    "pool-exhaustion": "every unit of BoundedSemaphore(",
    "condition": "'MainThread' waits on Condition(",
    "signal-with-bystanders": "'starter' waits on Event(",
    "starvation": "all 2 workers of ThreadPoolExecutor 'pool' wait on futures queued behind them",
    "died-holding-lock": "is held by thread 'loader', which exited",
    "two-process-abba": "in auditor (pid ",
    "killed-holder": "(loader-process), which exited",
    "asyncio-abba": "'audit' waits for asyncio.Lock(",
    "asyncio-event-under-lock": "'loader' waits on asyncio.Event(",
    "asyncio-result-on-loop": "which only its own event loop can complete",
}


def test_demo_runs_every_scenario_reporting_on_stderr() -> None:
    r = dw("demo")
    assert r.returncode == 0, r.stderr
    headers = [line for line in r.stdout.splitlines() if line.startswith("=== ")]
    assert [h.split(":")[0] for h in headers] == [f"=== {n}" for n in SCENARIOS]
    assert set(DEMO_MARKS) <= set(SCENARIOS)
    # the reports go to stderr; each deadlock scenario is broken by DeadlockError
    assert "deadlockwatch:" not in r.stdout
    assert r.stderr.count("deadlockwatch: DEADLOCK") == len(DEMO_MARKS)
    assert r.stdout.count("got DeadlockError") >= len(DEMO_MARKS)
    assert "Traceback" not in r.stderr


def test_demo_reports_belong_to_their_scenario() -> None:
    r = dw("demo", merge=True)
    assert r.returncode == 0, r.stdout
    chunks = re.split(r"^=== ", r.stdout, flags=re.M)
    assert chunks[0] == ""
    for name, chunk in zip(SCENARIOS, chunks[1:], strict=True):
        assert chunk.startswith(f"{name}: "), chunk[:80]
        assert "\ndeadlockwatch: " in chunk, f"no report for {name}"
        if name in DEMO_MARKS:
            assert chunk.count("deadlockwatch: DEADLOCK") == 1, chunk
        for other, mark in DEMO_MARKS.items():
            assert (mark in chunk) == (other == name), (name, other)


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        (
            "condition",
            [
                "    consumer: got DeadlockError, released its locks",
                "    producer: got DeadlockError, released its locks",
            ],
        ),
        (
            "signal-with-bystanders",
            [
                "    service: finished",
                "    starter: got DeadlockError, released its locks",
            ],
        ),
        (
            "starvation",
            [
                "    job-0: got DeadlockError, its worker is free again",
                "    job-1: got DeadlockError, its worker is free again",
            ],
        ),
        (
            "died-holding-lock",
            [
                "    loader: died of an exception holding the lock",
                "    reader: got DeadlockError, released its locks",
            ],
        ),
        (
            # DeadlockError out of result(); the loop then runs the coroutine.
            "asyncio-result-on-loop",
            [
                "    MainThread: got DeadlockError from result(), the loop runs again",
                "    answer: 42",
            ],
        ),
    ],
)
def test_demo_beyond_locks(name: str, lines: list[str]) -> None:
    r = dw("demo", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == lines
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    assert DEMO_MARKS[name] in r.stderr
    warned = r.stderr.count("deadlockwatch: WARNING: a thread exited holding a lock")
    assert warned == (name == "died-holding-lock")


def test_demo_asyncio_event_under_lock() -> None:
    r = dw("demo", "asyncio-event-under-lock")
    assert r.returncode == 0, r.stderr
    loader, publisher = r.stdout.splitlines()[-2:]
    assert loader == "    loader: got DeadlockError, released its lock"
    # The guard gives DeadlockError to each task of the cycle still in its
    # wait: the publisher too, unless it has left that wait first (seen on 3.10).
    assert publisher in ("    publisher: got DeadlockError", "    publisher: finished")
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    assert DEMO_MARKS["asyncio-event-under-lock"] in r.stderr


def test_demo_one_scenario() -> None:
    r = dw("demo", "abba")
    assert r.returncode == 0, r.stderr
    headers = [line for line in r.stdout.splitlines() if line.startswith("=== ")]
    assert len(headers) == 1 and headers[0].startswith("=== abba: ")
    assert r.stderr.count("deadlockwatch: DEADLOCK") == 1
    assert DEMO_MARKS["abba"] in r.stderr
    # one of the two (whichever closed the cycle) is broken, the other finishes
    assert sorted(r.stdout.splitlines()[1:]) in (
        ["    audit: finished", "    transfer: got DeadlockError, released its locks"],
        ["    audit: got DeadlockError, released its locks", "    transfer: finished"],
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nope"], ["'nope'", "abba", "pool-exhaustion"]),
        (["abba", "x"], ["unrecognized arguments: x"]),
    ],
)
def test_demo_bad_name(args: list[str], words: list[str]) -> None:
    one_error_line(dw("demo", *args), *words)


# -- report ----------------------------------------------------------------------------
#: A program that really deadlocks and ends as soon as its report is written.
ABBA = (
    ABBA_START
    + """path = os.environ["DEADLOCKWATCH_REPORT"]
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    text = open(path).read() if os.path.exists(path) else ""
    if '"kind": "deadlock"' in text and text.endswith("\\n"):
        break
    t1.join(0.05)
print("main done", flush=True)
"""
)


class Live:
    """A report file written by the detector and the text it printed meanwhile."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.file = directory / "findings.jsonl"
        r = subprocess.run(
            [sys.executable, "-c", ABBA],
            env=clean_env(DEADLOCKWATCH="1", DEADLOCKWATCH_REPORT=str(self.file)),
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert r.returncode == 0 and r.stdout == "main done\n", r.stderr
        self.stderr = r.stderr
        # Every finding in the file (the deadlock, and any warning before it)
        self.records = [json.loads(line) for line in self.file.read_text().splitlines()]
        (self.record,) = [rec for rec in self.records if rec["kind"] == "deadlock"]

    def report(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return dw("report", *args, cwd=self.dir, env=env)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    return Live(tmp_path_factory.mktemp("live"))


def _steady(text: str) -> str:
    """The report without the one number JSON rounds (how long each thread waited)."""
    return re.sub(r"waiting \d+\.\d\d s", "waiting N s", text)


def test_report_text_reproduces_the_live_report(live: Live) -> None:
    r = live.report(live.file.name, "--format", "text")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    cycle = [line for line in live.stderr.splitlines() if " waits for " in line]
    assert len(cycle) == 2
    assert [line for line in r.stdout.splitlines() if " waits for " in line] == cycle
    assert _steady(r.stdout) == _steady(live.stderr)
    assert live.report(live.file.name).stdout == r.stdout  # text is the default


def test_report_json_keeps_every_field(live: Live) -> None:
    r = live.report(str(live.file), "--format", "json")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == len(live.records)
    (record,) = [rec for rec in records if rec["kind"] == "deadlock"]
    for key in ("kind", "threads", "cycle", "conditions", "resources", "stacks", "pid", "time"):
        assert record[key] == live.record[key], key
    # every finding comes back exactly as the detector wrote it
    assert records == live.records


def _dot_graph(text: str) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, str]]]:
    """Thread nodes, resource nodes (id -> label) and edges (from, to, attributes)."""
    ellipses = dict(re.findall(r'^\s*(\w+) \[shape=ellipse, label="((?:[^"\\]|\\.)*)"', text, re.M))
    boxes = dict(re.findall(r'^\s*(\w+) \[shape=box, [^\n]*label="((?:[^"\\]|\\.)*)"', text, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+) \[(.*)\];$", text, re.M)
    return ellipses, boxes, edges


def test_report_dot_draws_the_wait_for_graph(live: Live) -> None:
    r = live.report(str(live.file), "--format", "dot")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("digraph ")
    assert text.rstrip().endswith("}") and text.count("{") == text.count("}")
    # one cluster per finding; look at the deadlock's
    clusters = text.split("  subgraph cluster_")[1:]
    assert len(clusters) == len(live.records)
    (cluster,) = [c for c in clusters if re.match(r'\d+ \{\n    label="deadlock: ', c)]
    threads, resources, edges = _dot_graph(cluster)
    assert sorted(label.split("\\n")[0] for label in threads.values()) == ["worker-1", "worker-2"]
    assert len(resources) == 2
    assert all(label.startswith("Lock 0x") for label in resources.values())
    waits = {a: b for a, b, attrs in edges if 'label="waits for"' in attrs}
    held = {a: b for a, b, attrs in edges if 'label="held by"' in attrs}
    assert len(edges) == 4 and set(waits) == set(threads) and set(held) == set(resources)
    # thread -> resource -> thread -> resource -> back: the cycle, drawn red
    start = next(iter(threads))
    node, seen = start, []
    for _ in range(2):
        seen.append(node)
        node = held[waits[node]]
    assert node == start and len(set(seen)) == 2
    assert all('color="#c0392b"' in attrs for _, _, attrs in edges)
    if shutil.which("dot"):
        check = subprocess.run(
            ["dot", "-Tcanon"], input=text, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert check.returncode == 0, check.stderr


def test_report_output_file(live: Live) -> None:
    for fmt in ("text", "json", "dot"):
        out = live.dir / f"out.{fmt}"
        r = live.report(str(live.file), "--format", fmt, "-o", str(out))
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert out.read_text() == live.report(str(live.file), "--format", fmt).stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_report_svg(live: Live) -> None:
    r = live.report(str(live.file), "--format", "svg")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<?xml") or r.stdout.startswith("<svg")
    assert "<svg" in r.stdout and r.stdout.rstrip().endswith("</svg>")
    text = html.unescape(r.stdout)  # Graphviz writes "-" as "&#45;"
    assert ">worker-1</text>" in text and ">worker-2</text>" in text
    dot = live.report(str(live.file), "--format", "dot").stdout
    for label in ("waits for", "held by"):
        assert text.count(f">{label}</text>") == dot.count(f'label="{label}"') >= 2


def test_report_svg_without_graphviz(live: Live, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    r = live.report(str(live.file), "--format", "svg", env=clean_env(PATH=str(empty)))
    one_error_line(r, "Graphviz", "--format dot")


def test_report_svg_when_dot_fails(live: Live, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    script = "#!/bin/sh\necho 'Error: something broke' >&2\necho 'in line 3' >&2\nexit 3\n"
    write(fake / "dot", script).chmod(0o755)
    r = live.report(str(live.file), "--format", "svg", env=clean_env(PATH=str(fake)))
    one_error_line(r, "dot failed (status 3)", "something broke in line 3")


def test_report_to_a_closed_pipe_is_quiet(live: Live) -> None:
    read, write_end = os.pipe()
    os.close(read)  # nobody will ever read: the first write fails
    try:
        p = subprocess.run(
            [sys.executable, "-m", "deadlockwatch", "report", str(live.file)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            timeout=TIMEOUT,
        )
    finally:
        os.close(write_end)
    assert p.returncode == 1
    assert p.stderr == ""


def test_report_names_odd_characters_safely(tmp_path: Path) -> None:
    """Thread names may hold lone surrogates and control characters."""
    record = copy.deepcopy(REAL_RECORDS[0])
    old = record["threads"][0]
    new = "bad\ud800\x00name"
    text = json.dumps(record).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    path = tmp_path / "odd.jsonl"
    path.write_text(text + "\n")
    for fmt in ("text", "json", "dot", *(("svg",) if shutil.which("dot") else ())):
        r = dw("report", str(path), "--format", fmt)
        assert r.returncode == 0, (fmt, r.stderr)
        assert r.stderr == ""
        assert "bad" in r.stdout
    assert json.loads(dw("report", str(path), "--format", "json").stdout)["threads"][0] == new


def _record_line(**changes: Any) -> str:
    record = copy.deepcopy(REAL_RECORDS[0])
    for key, value in changes.items():
        if value is _DELETE:
            del record[key]
        else:
            record[key] = value
    return json.dumps(record) + "\n"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, ["no such file"]),
        ("", ["holds no findings"]),
        ("\n  \n", ["holds no findings"]),
        ("this is not json\n", ["line 1", "not JSON"]),
        ("[1, 2]\n", ["line 1", "JSON object", "list"]),
        ("{}\n", ["line 1", "missing key 'kind'"]),
        ("17\n", ["JSON object", "int"]),
        (_record_line(threads="worker-1"), ["'threads'", "list"]),
        (_record_line(threads=[1, 2]), ["'threads'", "names"]),
        (_record_line(pid="1"), ["'pid'", "int"]),
        (_record_line(pid=True), ["'pid'", "number"]),
        (_record_line(time=1e300), ["'time'", "Unix time"]),
        (_record_line(conditions=_DELETE), ["missing key 'conditions'"]),
        (_record_line(conditions={"mutual_exclusion": True}), ["missing key 'hold_and_wait'"]),
        (_record_line(cycle=[{"thread": "worker-1"}]), ["cycle[0]", "missing key 'waits_for'"]),
        (
            _record_line(cycle=[{"thread": "ghost", "waits_for": "0x1", "held_by": "x"}]),
            ["cycle[0]", "unknown"],
        ),
        (_record_line(resources={"a": 1}), ["'resources'", "list"]),
        (_record_line(cause=5), ["'cause'", "str"]),
        (_record_line()[:150], ["line 1", "cut short", "no whole record"]),
        ("x" + _record_line() + _record_line(), ["line 1", "not JSON"]),
        (_record_line() + _record_line()[:-1] + "]\n", ["line 2", "not JSON"]),
        (_record_line() + "[" * 100_000 + "\n", ["line 2"]),
        ('{"pid": ' + "1" * 5000 + "}\n", ["line 1"]),
    ],
)
def test_report_bad_file_is_one_line_and_status_2(
    tmp_path: Path, content: str | None, words: list[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    r = dw("report", str(path), "--format", "text")
    one_error_line(r, str(path), *words)


def test_report_skips_a_record_cut_short_and_says_so(tmp_path: Path) -> None:
    """Processes append to one report file: one killed while writing leaves its
    record cut short, and the next record continues that line.  The reader
    renders every whole record and names each cut one on stderr."""
    first, second = REAL_RECORDS[0], copy.deepcopy(REAL_RECORDS[0])
    second["pid"] = first["pid"] + 1
    whole = [json.dumps(first) + "\n", json.dumps(second) + "\n"]
    path = tmp_path / "cut.jsonl"
    path.write_text(whole[0] + whole[0][:200] + whole[1] + whole[0][:100])
    r = dw("report", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["pid"] for line in r.stdout.splitlines()] == [
        first["pid"],
        first["pid"] + 1,
    ]
    warnings = r.stderr.splitlines()
    assert len(warnings) == 2, r.stderr
    assert f"{path}, line 2: a record cut short, followed by another" in warnings[0]
    assert f"{path}, line 3: the last record is cut short" in warnings[1]
    assert all("skipped" in w and w.startswith("deadlockwatch: report:") for w in warnings)


def test_report_undecodable_and_directory(tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(b'{"kind": "\xff\xfe"}\n')
    one_error_line(dw("report", str(raw)), str(raw), "cannot read")
    one_error_line(dw("report", str(tmp_path)), str(tmp_path), "directory")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "xml"], ["'xml'", "text, json, dot, svg"]),
        (["--format"], ["--format", "expected one argument"]),
        (["--bogus"], ["--bogus"]),
        (["extra"], ["extra"]),
        (["-o", "no/such/dir/out.txt"], ["cannot write", "no/such/dir/out.txt"]),
    ],
)
def test_report_bad_arguments(live: Live, args: list[str], words: list[str]) -> None:
    one_error_line(live.report(str(live.file), *args), *words)


def test_report_without_a_file() -> None:
    one_error_line(dw("report"), "required", "file")


OPTION_VALUES = (
    st.text(max_size=20)
    | st.sampled_from(["0.5", " 2 ", "nan", "inf", "-1", "1e400", "raise", " Abort", "on", ""])
    | st.integers(-10, 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.none()
    | st.booleans()
)


@PROPERTY
@given(st.sampled_from(OPTIONS), OPTION_VALUES)
def test_config_option_values_are_accepted_or_rejected_cleanly(option: Any, value: object) -> None:
    try:
        config = Config().with_options({option.name: value}, "enable({name}=...)")
    except ConfigError as exc:
        message = str(exc)
        assert f"enable({option.name}=...)" in message
        assert repr(value) in message
        assert "\n" not in message
        return
    assert isinstance(config, Config)
    parsed = getattr(config, option.name)
    if option.name in ("interval", "threshold"):
        assert isinstance(parsed, float) and math.isfinite(parsed) and 0 <= parsed <= 3600


ENV_NAMES = [o.env for o in OPTIONS]


@PROPERTY
@given(
    st.dictionaries(st.sampled_from([*ENV_NAMES, "DEADLOCKWATCH", "PATH"]), st.text(max_size=20))
)
def test_config_environment_is_accepted_or_rejected_cleanly(environ: dict[str, str]) -> None:
    try:
        config = Config().with_environ(environ)
    except ConfigError as exc:
        message = str(exc)
        bad = [
            name
            for name in ENV_NAMES
            if f"environment variable {name}:" in message and repr(environ.get(name)) in message
        ]
        assert bad, message
        return
    assert isinstance(config, Config)
    for option in OPTIONS:
        value = environ.get(option.env, "")
        if value != "":
            assert getattr(config, option.name) == option.parse(value, "test")


# -- environment values: any text, one clear line ---------------------------------------
#: What an environment variable can hold on POSIX: any text without NUL, lone
#: surrogates included (undecodable bytes, decoded with surrogateescape), line
#: breaks, and path-like and number-like shapes.
ANY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=(), blacklist_characters="\x00"), max_size=24
)
ENV_TEXT = (
    ANY_TEXT
    | st.builds(lambda a, b: f"{a}/{b}", ANY_TEXT, ANY_TEXT)
    | st.builds(lambda a: f"{a}/report.jsonl", st.sampled_from(["", ".", "/tmp", "/no/such"]))
    | st.builds(str, st.floats(allow_nan=True, allow_infinity=True))
    | st.builds(
        lambda n, pad: f"{pad}{n}{pad}",
        st.integers(-(10**6), 10**6),
        st.sampled_from(["", " ", "\t", "\n"]),
    )
    | st.sampled_from(["1", "0", "TRUE", " on ", "yes\n", "raise-all", "Report", "a.py:3, b:f"])
)


def _one_clean_line(message: str, variable: str, value: str) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert f"environment variable {variable}:" in message
    assert repr(value) in message
    assert message.startswith("deadlockwatch: invalid value ")


@PROPERTY
@given(ENV_TEXT)
def test_enable_variable_is_accepted_or_rejected_cleanly(value: str) -> None:
    from deadlockwatch._config import env_enabled

    try:
        on = env_enabled({"DEADLOCKWATCH": value})
    except ConfigError as exc:
        _one_clean_line(str(exc), "DEADLOCKWATCH", value)
        return
    assert on is (value.strip().lower() in ("1", "true", "yes", "on"))


REPORT_OPTION = next(o for o in OPTIONS if o.name == "report")


@PROPERTY
@given(st.sampled_from(OPTIONS), ENV_TEXT)
@example(REPORT_OPTION, "no\nsuch/findings.jsonl")  # the directory is named too
@example(REPORT_OPTION, "\udcff/findings.jsonl")
def test_any_text_in_any_option_variable_parses_or_names_it_on_one_line(
    option: Any, value: str
) -> None:
    try:
        config = Config().with_environ({option.env: value})
    except ConfigError as exc:
        _one_clean_line(str(exc), option.env, value)
        return
    if value != "":
        assert getattr(config, option.name) == option.parse(value, "test")


def _encodable(value: str) -> bool:
    try:
        os.fsencode(value)
    except UnicodeError:
        return False
    return True


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["DEADLOCKWATCH", *(o.env for o in OPTIONS)]), ENV_TEXT.filter(_encodable))
def test_interpreter_start_up_with_any_value(variable: str, value: str) -> None:
    """Through the .pth, in a fresh interpreter: the program runs, or the
    interpreter stops with status 2 and one line naming the variable."""
    env = clean_env(DEADLOCKWATCH="1")
    env[variable] = value  # encoded with surrogateescape, as the OS gave it
    r = subprocess.run(
        [sys.executable, "-c", "print('program ran')"],
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    stderr = r.stderr.decode("utf-8", "backslashreplace")
    if r.returncode == 0:
        assert r.stdout == b"program ran\n"
        assert "Traceback" not in stderr
        return
    assert r.returncode == 2, stderr
    assert r.stdout == b""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert f"environment variable {variable}:" in lines[0]


REPORT_FORMATS = st.sampled_from(["text", "json", "dot"])


@PROPERTY
@given(REPORT_BYTES, REPORT_FORMATS)
def test_report_command_on_any_file_prints_or_fails_with_one_line(
    fuzz_dir: Path, data: bytes, fmt: str
) -> None:
    """``python -m deadlockwatch report`` (in-process): status 0 with output, or
    status 2 with one line naming the file; never a traceback."""
    import contextlib
    import io

    from deadlockwatch._cli import main

    path = fuzz_dir / "cli.jsonl"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["report", str(path), "--format", fmt])
    if status == 0:
        assert out.getvalue() and err.getvalue() == ""
        return
    assert status == 2
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deadlockwatch: report: ")
    assert str(path) in lines[0]
