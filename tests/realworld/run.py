"""Real projects' own test suites with deadlockwatch on (not part of the default
test run: it downloads pinned sdists and takes minutes).

For each project of ``projects.py``: download its pinned sdist, make a virtual
environment with the project, its test dependencies and this checkout of
deadlockwatch (installed as a user would, not editable), then run its test
suite three times: plain, with ``pytest --deadlockwatch`` and with
``DEADLOCKWATCH=1``.  Prints one table: the outcomes of each run, the wall-time
ratio to the plain run, the findings (kind counts), and whether the per-test
outcomes are the same as plain.  A run whose outcomes differ is repeated once
(a flake does not repeat).  Every finding is kept, as JSON lines, in the work
directory (``findings-<project>-<mode>.jsonl``) to be read.

    python tests/realworld/run.py                 # every project
    python tests/realworld/run.py --only pebble,janus --work /tmp/rw

Exit status 0 when every project has the same outcomes in every mode, no run
hung, and every finding is one of the project's known true findings; 1 when
one of these does not hold (each failure is named on a ``FAIL:`` line); 2 when
a pinned sdist cannot be fetched (``pip download`` failed: no network, no
index, a release withdrawn); 3 when a project's virtual environment cannot be
made (its test dependencies cannot be installed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from projects import PROJECTS  # noqa: E402

MODES = ("plain", "plugin", "env")
HEADERS = {"plain": "plain", "plugin": "--deadlockwatch", "env": "DEADLOCKWATCH=1"}


EXIT_FAILED, EXIT_NO_SDIST, EXIT_NO_VENV = 1, 2, 3


class SetupError(Exception):
    """A project could not be prepared; ``status`` is the exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sh(cmd: list[str], **kw: Any) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def _tail(exc: subprocess.CalledProcessError) -> str:
    err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
    lines = [ln for ln in err.splitlines() if ln.strip() and "is ignored" not in ln]
    return lines[-1].strip() if lines else f"exit status {exc.returncode}"


def prepare(p: dict[str, Any], work: Path, python: str) -> tuple[Path, Path]:
    """The unpacked sdist and the venv's python, made once per work directory."""
    name, version = p["name"], p["version"]
    sdists = work / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    found = [f for f in sdists.glob("*.tar.gz") if _is(f.name, name, version)]
    if not found:
        try:
            sh(
                [
                    python,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"{name}=={version}",
                    "-d",
                    str(sdists),
                ],
                stderr=subprocess.PIPE,
            )
        except subprocess.CalledProcessError as exc:
            raise SetupError(
                EXIT_NO_SDIST,
                f"cannot fetch the pinned sdist {name}=={version} (pip download: {_tail(exc)})",
            ) from None
        found = [f for f in sdists.glob("*.tar.gz") if _is(f.name, name, version)]
        if not found:
            raise SetupError(
                EXIT_NO_SDIST,
                f"cannot fetch the pinned sdist {name}=={version} "
                f"(pip download gave no {name}-{version}.tar.gz in {sdists})",
            )
    src = work / "src" / f"{name}-{version}"
    if not src.exists():
        with tarfile.open(found[0]) as tar:
            top = tar.getnames()[0].split("/")[0]
            if sys.version_info >= (3, 12):
                tar.extractall(work / "src", filter="data")
            else:
                tar.extractall(work / "src")  # a pinned sdist
        (work / "src" / top).rename(src)
    venv = work / "venv" / name
    py = venv / "bin" / "python"
    stamp = venv / ".deadlockwatch-realworld"
    # deadlockwatch itself, as a user installs it (not editable: its .pth),
    # from this checkout as it is now: rebuilt in a venv made before.
    try:
        if not stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)
            sh([python, "-m", "venv", str(venv)], stderr=subprocess.PIPE)
            sh(
                [str(py), "-m", "pip", "install", "-q", str(src), *p["deps"], str(REPO)],
                stderr=subprocess.PIPE,
            )
            stamp.write_text("ok")
        else:
            sh(
                [
                    str(py),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--force-reinstall",
                    "--no-deps",
                    str(REPO),
                ],
                stderr=subprocess.PIPE,
            )
    except subprocess.CalledProcessError as exc:
        raise SetupError(
            EXIT_NO_VENV,
            f"cannot make the environment of {name}=={version} in {venv} ({_tail(exc)})",
        ) from None
    return src, py


def _is(filename: str, name: str, version: str) -> bool:
    norm = filename.lower().replace("-", "_")
    return norm == f"{name.lower().replace('-', '_')}_{version}.tar.gz"


def outcomes(junit: Path, true_findings: list[str] | None = None) -> dict[str, str]:
    """Each test's outcome; a test failed by deadlockwatch for one of the
    project's known true findings is ``true-finding``."""
    out: dict[str, str] = {}
    if not junit.exists():
        return out
    rank = {"passed": 0, "skipped": 1, "true-finding": 2, "failed": 2, "error": 3}
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                state = {"failure": "failed"}.get(child.tag, child.tag)
                text = (child.get("message") or "") + (child.text or "")
                if (
                    state == "failed"
                    and "deadlockwatch: " in text
                    and any(marker in text for marker in true_findings or ())
                ):
                    state = "true-finding"
        if rank[state] >= rank[out.get(key, "passed")]:
            out[key] = state
    return out


def same(plain: dict[str, str], other: dict[str, str]) -> bool:
    """The same outcomes, but for tests failed by a known true finding."""
    keys = set(plain) | set(other)
    return all(plain.get(k) == other.get(k) or other.get(k) == "true-finding" for k in keys)


def run(p: dict[str, Any], src: Path, py: Path, mode: str, work: Path) -> dict[str, Any]:
    tag = f"{p['name']}-{mode}"
    junit = work / f"junit-{tag}.xml"
    report = work / f"findings-{tag}.jsonl"
    for f in (junit, report):
        f.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [
        str(py),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "addopts=",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        *p["args"],
    ]
    if mode != "plain":
        env["DEADLOCKWATCH_REPORT"] = str(report)
    if mode == "plugin":
        cmd.append("--deadlockwatch")
    elif mode == "env":
        env["DEADLOCKWATCH"] = "1"
    start = time.monotonic()
    hung = False
    with open(work / f"log-{tag}.txt", "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=src, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=p["timeout"])
        except subprocess.TimeoutExpired:
            hung = True
            os.killpg(proc.pid, 9)
            rc = proc.wait()
    took = time.monotonic() - start
    findings = []
    if report.exists():
        findings = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    return {
        "rc": rc,
        "hung": hung,
        "time": took,
        "outcomes": outcomes(junit, p.get("true_findings")),
        "findings": findings,
    }


def counts(res: dict[str, Any]) -> str:
    if res["hung"]:
        return "HANG"
    c: dict[str, int] = {}
    for state in res["outcomes"].values():
        c[state] = c.get(state, 0) + 1
    if not c:
        return f"no tests (rc {res['rc']})"
    return " ".join(f"{n} {s}" for s, n in sorted(c.items()))


def finding_text(p: dict[str, Any], res: dict[str, Any]) -> str:
    c: dict[str, int] = {}
    for f in res["findings"]:
        c[f["kind"]] = c.get(f["kind"], 0) + 1
    text = ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "none"
    if res["findings"]:
        false = len(unexpected(p, res))
        text += f" ({len(res['findings']) - false} known true, {false} unexplained)"
    return text


def unexpected(p: dict[str, Any], res: dict[str, Any]) -> list[dict[str, Any]]:
    known = p.get("true_findings", [])
    return [f for f in res["findings"] if not any(k in json.dumps(f) for k in known)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--work",
        default=os.environ.get("DEADLOCKWATCH_REALWORLD_DIR", "/tmp/deadlockwatch-realworld"),
    )
    ap.add_argument("--only", default="", help="comma-separated project names")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--python", default=sys.executable, help="the CPython to make venvs with")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    only = {n.strip().lower() for n in args.only.split(",") if n.strip()}
    modes = [m for m in args.modes.split(",") if m]
    rows = []
    failures: list[str] = []
    for p in PROJECTS:
        if (only and p["name"].lower() not in only) or (not only and p.get("slow")):
            continue
        try:
            src, py = prepare(p, work, args.python)
        except SetupError as exc:
            print(f"run.py: {exc}", file=sys.stderr, flush=True)
            return exc.status
        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            res = run(p, src, py, mode, work)
            if (
                mode != "plain"
                and "plain" in results
                and (res["hung"] or not same(results["plain"]["outcomes"], res["outcomes"]))
            ):
                plain_out = results["plain"]["outcomes"]
                diff = sorted(
                    f"{k}: {plain_out.get(k)} -> {res['outcomes'].get(k)}"
                    for k in set(plain_out) | set(res["outcomes"])
                    if plain_out.get(k) != res["outcomes"].get(k)
                )
                what = "hung" if res["hung"] else "; ".join(diff[:10])
                print(f"{p['name']} {mode}: differs from plain ({what}), once more", flush=True)
                again = run(p, src, py, mode, work)
                again["repeated"] = res
                res = again
            results[mode] = res
            print(
                f"{p['name']} {HEADERS[mode]}: {counts(res)} in {res['time']:.1f}s, "
                f"findings: {finding_text(p, res)}",
                flush=True,
            )
        rows.append((p, results))
        plain = results.get("plain")
        for mode, res in results.items():
            if mode == "plain":
                continue
            bad = unexpected(p, res)
            where = f"FAIL: {p['name']} {p['version']} with {HEADERS[mode]}"
            if res["hung"]:
                failures.append(f"{where}: hung (killed after {p['timeout']} s)")
            elif plain and not same(plain["outcomes"], res["outcomes"]):
                failures.append(f"{where}: test outcomes differ from plain")
            for f in bad:
                failures.append(f"{where}: finding not marked true: {f['kind']}: {f['cause']}")
    print()
    head = ["project", *(HEADERS[m] for m in modes), "same outcomes"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for p, results in rows:
        plain = results.get("plain")
        cells = [f"{p['name']} {p['version']}"]
        alike = []
        for mode in modes:
            res = results[mode]
            cell = f"{counts(res)}, {res['time']:.0f}s"
            if mode != "plain":
                if plain:
                    cell += f" (x{res['time'] / max(plain['time'], 0.01):.2f})"
                    alike.append(not res["hung"] and same(plain["outcomes"], res["outcomes"]))
                cell += f"; findings: {finding_text(p, res)}"
            cells.append(cell)
        cells.append("yes" if all(alike) else "NO")
        print("| " + " | ".join(cells) + " |")
    for line in failures:
        print(line, flush=True)
    return EXIT_FAILED if failures else 0


if __name__ == "__main__":
    sys.exit(main())
