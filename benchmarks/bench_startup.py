"""Section 7: start-up cost.

- What ``site`` does with ``deadlockwatch.pth`` at every start (open the
  file, read it, exec its line), and the line alone, with ``DEADLOCKWATCH``
  unset, timed in-process.
- ``python -c pass`` in two throw-away virtual environments made from the
  same base interpreter that differ only by ``deadlockwatch.pth`` (both put
  the package and its dependencies on ``sys.path`` with a plain path file),
  ``DEADLOCKWATCH`` unset: the whole cost of having the package installed.
- The same with ``DEADLOCKWATCH=1`` against unset, paired (start-up only
  validates the options and installs an import hook), and what it imports
  beyond the unset start: how many modules, and whether any of threading,
  asyncio, logging, concurrent.futures, ssl, socket, subprocess, email,
  importlib.metadata, inspect, networkx or wrapt (0 = none: the detector is
  enabled when the program imports threading).
- ``python -c "import threading"`` with ``DEADLOCKWATCH=1`` against unset,
  paired: what enabling costs a program that uses threads.
- ``import deadlockwatch`` in a fresh interpreter, and whether it loaded
  networkx or wrapt (1 = loaded; both should be 0), and the first
  ``enable()`` (patching; no thread until a wait blocks).

Runs alternate between the variants; medians are compared.
"""

from __future__ import annotations

import os
import random
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
import timeit
import venv
from pathlib import Path

import deadlockwatch

from ._common import Section, interleave, median, ratio

TIMEOUT = 60.0
REPO = Path(deadlockwatch.__file__).resolve().parent.parent


def _pth_line() -> tuple[str, str]:
    """The installed deadlockwatch.pth line (else the repository's) and where it is."""
    for d in [sysconfig.get_paths()["purelib"], *sys.path]:
        p = Path(d) / "deadlockwatch.pth"
        if p.is_file():
            return p.read_text().strip(), str(p)
    p = REPO / "deadlockwatch.pth"
    return p.read_text().strip(), str(p)


def _site_processing_us(pth: str) -> float:
    """What ``site`` does with the file at every start (open, read, exec its
    line), timed in-process with ``DEADLOCKWATCH`` unset: microseconds."""
    directory, name = os.path.split(pth)
    saved = os.environ.pop("DEADLOCKWATCH", None)
    saved_path = list(sys.path)
    try:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(200):
                site.addpackage(directory, name, set())  # type: ignore[attr-defined]
            best = min(best, (time.perf_counter() - t0) / 200)
    finally:
        sys.path[:] = saved_path
        if saved is not None:
            os.environ["DEADLOCKWATCH"] = saved
    return best * 1e6


def _median_ci(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap 95% confidence interval of the median (fixed seed)."""
    rng = random.Random(6)
    medians = sorted(median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    for k in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME"):
        env.pop(k, None)
    env.update(extra)
    return env


def _make_venv(root: Path, name: str, with_pth: bool, line: str) -> Path:
    target = root / name
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(target)
    python = target / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        env=_clean_env(),
    ).stdout.strip()
    site = Path(purelib)
    site.mkdir(parents=True, exist_ok=True)
    # The package (editable checkout) and its dependencies, by plain paths.
    paths = [str(REPO), sysconfig.get_paths()["purelib"]]
    # Named to be read before deadlockwatch.pth (site reads them sorted):
    # otherwise DEADLOCKWATCH=1 would time a failing import.
    (site / "00-paths.pth").write_text("\n".join(paths) + "\n")
    if with_pth:
        (site / "deadlockwatch.pth").write_text(line + "\n")
    return python


def _start_time(python: Path, env: dict[str, str], code: str = "pass") -> float:
    t0 = timeit.default_timer()
    subprocess.run([str(python), "-c", code], env=env, timeout=TIMEOUT, check=True)
    return timeit.default_timer() - t0


def _probe(python: Path, code: str) -> list[str]:
    out = subprocess.run(
        [str(python), "-c", code],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return out.stdout.split()


IMPORT_PROBE = """
import sys, time
t0 = time.perf_counter()
import deadlockwatch
t1 = time.perf_counter()
print(t1 - t0, int('networkx' in sys.modules), int('wrapt' in sys.modules))
"""

#: Modules start-up with DEADLOCKWATCH=1 must not import (issue 16).
HEAVY = (
    "threading",
    "asyncio",
    "logging",
    "concurrent.futures",
    "ssl",
    "socket",
    "subprocess",
    "email",
    "importlib.metadata",
    "inspect",
    "networkx",
    "wrapt",
)

MODULES_PROBE = f"""
import sys
print(len(sys.modules), sum(m in sys.modules for m in {HEAVY!r}))
"""

ENABLE_PROBE = """
import time
import deadlockwatch
t0 = time.perf_counter()
deadlockwatch.enable()
t1 = time.perf_counter()
deadlockwatch.disable()
print(t1 - t0)
"""


def run(quick: bool) -> Section:
    rounds = 5 if quick else 40
    section = Section(
        key="startup",
        title="Start-up: milliseconds (median), and what `import deadlockwatch` loads",
        columns=[
            ("case", "case"),
            ("base_ms", "without ms"),
            ("with_ms", "with ms"),
            ("diff_ms", "diff ms"),
            ("ratio", "ratio"),
            ("value", "value"),
        ],
        params={"rounds": rounds},
    )
    line, where = _pth_line()
    code = compile(line, where, "exec")
    saved = os.environ.pop("DEADLOCKWATCH", None)
    try:
        number = 100_000
        exec_ns = min(
            timeit.timeit(lambda: exec(code, {}), number=number) / number * 1e9 for _ in range(5)
        )
        empty = compile("pass", where, "exec")
        empty_ns = min(
            timeit.timeit(lambda: exec(empty, {}), number=number) / number * 1e9 for _ in range(5)
        )
    finally:
        if saved is not None:
            os.environ["DEADLOCKWATCH"] = saved
    site_us = _site_processing_us(where)
    section.rows.append(
        {
            "case": "site processing deadlockwatch.pth (open, read, exec), unset: value = us",
            "base_ms": None,
            "with_ms": None,
            "diff_ms": None,
            "ratio": None,
            "value": round(site_us, 2),
        }
    )
    section.rows.append(
        {
            "case": "deadlockwatch.pth line, DEADLOCKWATCH unset: value = us per exec",
            "base_ms": None,
            "with_ms": None,
            "diff_ms": None,
            "ratio": None,
            "value": round((exec_ns - empty_ns) / 1e3, 3),
            "line_exec_ns": round(exec_ns, 1),
            "empty_exec_ns": round(empty_ns, 1),
        }
    )
    root = Path(tempfile.mkdtemp(prefix="dw-bench-"))
    try:
        without = _make_venv(root, "without", False, line)
        with_pth = _make_venv(root, "with", True, line)
        unset, on = _clean_env(), _clean_env(DEADLOCKWATCH="1")
        for python, env in ((without, unset), (with_pth, unset), (with_pth, on)):
            _start_time(python, env)  # warm the caches
        # The pair to compare alone (nothing else between them), then the
        # enabled start-up against the same "with" environment.
        res = interleave(
            {
                "without": lambda: _start_time(without, unset),
                "with": lambda: _start_time(with_pth, unset),
            },
            rounds,
        )
        res.update(
            interleave(
                {
                    "with2": lambda: _start_time(with_pth, unset),
                    "enabled": lambda: _start_time(with_pth, on),
                },
                rounds,
            )
        )
        code = "import threading"
        res.update(
            interleave(
                {
                    "threading": lambda: _start_time(with_pth, unset, code),
                    "threading_on": lambda: _start_time(with_pth, on, code),
                },
                rounds,
            )
        )
        base, with_ = median(res["without"]), median(res["with"])
        # Paired: the difference within each round, its median and a bootstrap
        # 95% confidence interval of that median.
        diffs = [w - b for w, b in zip(res["with"], res["without"], strict=True)]
        low, high = _median_ci(diffs)
        section.rows.append(
            {
                "case": "python -c pass: without vs with deadlockwatch.pth, DEADLOCKWATCH unset",
                "base_ms": round(base * 1e3, 2),
                "with_ms": round(with_ * 1e3, 2),
                "diff_ms": round(median(diffs) * 1e3, 3),
                "ratio": ratio(with_, base),
                "value": round((high - low) / 2 * 1e3, 3),
                "diff_ci_low_ms": round(low * 1e3, 3),
                "diff_ci_high_ms": round(high * 1e3, 3),
            }
        )
        for case, key_base, key_on in (
            ("python -c pass: DEADLOCKWATCH unset vs DEADLOCKWATCH=1", "with2", "enabled"),
            (
                'python -c "import threading": DEADLOCKWATCH unset vs DEADLOCKWATCH=1',
                "threading",
                "threading_on",
            ),
        ):
            diffs = [on_ - off for on_, off in zip(res[key_on], res[key_base], strict=True)]
            low, high = _median_ci(diffs)
            section.rows.append(
                {
                    "case": case,
                    "base_ms": round(median(res[key_base]) * 1e3, 2),
                    "with_ms": round(median(res[key_on]) * 1e3, 2),
                    "diff_ms": round(median(diffs) * 1e3, 3),
                    "ratio": ratio(median(res[key_on]), median(res[key_base])),
                    "value": round((high - low) / 2 * 1e3, 3),
                    "diff_ci_low_ms": round(low * 1e3, 3),
                    "diff_ci_high_ms": round(high * 1e3, 3),
                }
            )
        probes = {}
        for name, env in (("unset", unset), ("on", on)):
            out = subprocess.run(
                [str(with_pth), "-c", MODULES_PROBE],
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=True,
            )
            probes[name] = [int(x) for x in out.stdout.split()]
        section.rows.append(
            {
                "case": "modules imported by DEADLOCKWATCH=1 start-up beyond unset: value = count",
                "base_ms": None,
                "with_ms": None,
                "diff_ms": None,
                "ratio": None,
                "value": probes["on"][0] - probes["unset"][0],
            }
        )
        section.rows.append(
            {
                "case": "of them threading, asyncio, logging, inspect, wrapt...: value = count",
                "base_ms": None,
                "with_ms": None,
                "diff_ms": None,
                "ratio": None,
                "value": probes["on"][1] - probes["unset"][1],
            }
        )
        imports = [_probe(with_pth, IMPORT_PROBE) for _ in range(rounds)]
        section.rows.append(
            {
                "case": "import deadlockwatch (fresh interpreter)",
                "base_ms": None,
                "with_ms": round(median([float(r[0]) for r in imports]) * 1e3, 2),
                "diff_ms": None,
                "ratio": None,
                "value": None,
            }
        )
        for i, mod in ((1, "networkx"), (2, "wrapt")):
            section.rows.append(
                {
                    "case": f"{mod} loaded by import deadlockwatch (1 = yes)",
                    "base_ms": None,
                    "with_ms": None,
                    "diff_ms": None,
                    "ratio": None,
                    "value": max(int(r[i]) for r in imports),
                }
            )
        enables = [float(_probe(with_pth, ENABLE_PROBE)[0]) for _ in range(rounds)]
        section.rows.append(
            {
                "case": "first enable() in a process (imports threading, patches; no thread)",
                "base_ms": None,
                "with_ms": round(median(enables) * 1e3, 2),
                "diff_ms": None,
                "ratio": None,
                "value": None,
            }
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    section.notes.append(
        "rows 1-2: in-process, site.addpackage() on the file, and exec of its line minus "
        "exec of an empty line.  Row 3: two "
        "throw-away venvs that differ only by deadlockwatch.pth, diff = median of the "
        "paired differences, value = half the width of its bootstrap 95% confidence interval "
        "(the same for rows 4-5, DEADLOCKWATCH=1 against unset in the venv with the file)."
    )
    return section
