"""deadlockwatch's benchmark suite.

    python -m benchmarks [--quick] [--json OUT] [--only SECTION,...]
    python -m benchmarks --render OUT.json        # the results as Markdown

Each section runs in a fresh interpreter (this one's) with a timeout, with
every ``DEADLOCKWATCH*`` variable removed from its environment.  Everything is
measured as a ratio against the untracked primitives (or the detector off)
in the same run.  The table is printed as each section ends; the JSON (every
row, the sizes used, the machine, and each target met or not) is written to
OUT (default: benchmarks/results/cpython-X.Y[-quick].json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECTIONS = (
    "uncontended",
    "contended",
    "workloads",
    "latency",
    "scale",
    "memory",
    "startup",
    "shared",
    "reach",
)
#: Run only when named (``--only instructions``): valgrind's callgrind, slow.
OPT_IN = ("instructions",)
HERE = Path(os.path.abspath(__file__)).parent
REPO = HERE.parent
#: Seconds a section may take before it is stopped (quick, full).
SECTION_TIMEOUT = (90.0, 1800.0)
#: The same for the callgrind section (about 15 minutes in full on 2 cores).
INSTRUCTIONS_TIMEOUT = (300.0, 3600.0)

UNCONTENDED_LIMITS = {"off": 2.0, "on": 3.0}
#: The Python path of Lock and RLock (free-threaded builds, DEADLOCKWATCH_PURE=1),
#: lock order off and on (issue 17).
PURE_LIMIT = 3.0
WORKLOAD_LIMIT = 1.10
#: Issue 17: uncontended Lock/RLock on the C path, in instructions, against the raw lock.
INSTRUCTIONS_LOCK_LIMIT = 1.5
TICK_LIMIT_US = 1000.0
#: "No growth": less than this many bytes retained per lock made and dropped.
GROWTH_LIMIT_PER_LOCK = 1.0
#: "Costs nothing measurable": site's processing of the .pth file under this
#: many microseconds (1% of a 10 ms start), and the whole start-up difference
#: not resolved from zero (its 95% confidence interval holds 0, or lies
#: under this many ms).
PTH_LIMIT_US = 100.0
START_DIFF_FLOOR_MS = 0.5
#: Issue 16: what DEADLOCKWATCH=1 may add to `python -c pass` (median of paired runs).
ENABLED_START_LIMIT_MS = 10.0


# -- running ------------------------------------------------------------------
def run_section(name: str, quick: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADLOCKWATCH")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    fd, out = tempfile.mkstemp(prefix=f"dw-bench-{name}-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "benchmarks._section", name, "--out", out]
    limit = (INSTRUCTIONS_TIMEOUT if name == "instructions" else SECTION_TIMEOUT)[0 if quick else 1]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=limit,
        )
        with open(out) as f:
            text = f.read()
        data: dict[str, Any] = (
            json.loads(text) if text else {"error": f"no result (exit status {proc.returncode})"}
        )
        if proc.stderr.strip():
            data["stderr"] = proc.stderr[-4000:]
    except subprocess.TimeoutExpired:
        data = {"error": f"timed out after {limit} s"}
    finally:
        os.unlink(out)
    data["seconds"] = round(time.perf_counter() - t0, 2)
    return data


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source(label: str | None) -> dict[str, Any]:
    """What was measured: the deadlockwatch package next to benchmarks/."""
    commit = _git("rev-parse", "--short", "HEAD")
    status = _git("status", "--porcelain", "--", "deadlockwatch")
    return {
        "package": str(REPO / "deadlockwatch"),
        "commit": commit,
        "uncommitted_changes": bool(status) if status is not None else None,
        "label": label,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": "Python " + sys.version,
        "executable": sys.executable,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# -- targets ------------------------------------------------------------------
def _rows(sections: dict[str, Any], key: str) -> list[dict[str, Any]]:
    data = sections.get(key) or {}
    rows: list[dict[str, Any]] = data.get("rows") or []
    return rows


def _target(
    name: str, value: Any, limit: Any, met: bool | None, detail: str = ""
) -> dict[str, Any]:
    return {"target": name, "value": value, "limit": limit, "met": met, "detail": detail}


def evaluate(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of benchmarks/README.md, met (True), not met (False) or
    without data (None)."""
    out: list[dict[str, Any]] = []
    unc = _rows(sections, "uncontended")
    for order, limit in UNCONTENDED_LIMITS.items() if "uncontended" in sections else ():
        rows = [
            r
            for r in unc
            if r["lock_order"] == order
            and (r["primitive"] in ("Lock", "RLock") or r["primitive"].startswith("2 "))
        ]
        name = f"uncontended Lock/RLock tracked/raw <= {limit} (lock order {order})"
        if not rows:
            out.append(_target(name, None, limit, None, "no data"))
            continue
        worst = max(rows, key=lambda r: r["ratio"])
        bad = [
            f"{r['primitive']} {r['operation']} {r['ratio']}" for r in rows if r["ratio"] > limit
        ]
        out.append(
            _target(
                name,
                worst["ratio"],
                limit,
                not bad,
                f"worst: {worst['primitive']} {worst['operation']}"
                + (f"; over: {', '.join(bad)}" if bad else ""),
            )
        )
    pure = [r for r in unc if r["primitive"].endswith("(Python path)")]
    if pure:
        worst = max(pure, key=lambda r: r["ratio"])
        bad = [
            f"{r['primitive']} {r['operation']} {r['lock_order']} {r['ratio']}"
            for r in pure
            if r["ratio"] > PURE_LIMIT
        ]
        out.append(
            _target(
                f"uncontended Lock/RLock, Python path, tracked/raw <= {PURE_LIMIT}",
                worst["ratio"],
                PURE_LIMIT,
                not bad,
                f"worst: {worst['primitive']} {worst['operation']} {worst['lock_order']}"
                + (f"; over: {', '.join(bad)}" if bad else ""),
            )
        )
    for r in _rows(sections, "instructions"):
        lock = r["key"] in ("lock", "with", "rlock")
        limit = INSTRUCTIONS_LOCK_LIMIT if lock else WORKLOAD_LIMIT
        out.append(
            _target(
                f"instructions on/off <= {limit}: {r['case']}",
                r["ratio"],
                limit,
                r["ratio"] <= limit,
            )
        )
    for r in _rows(sections, "workloads"):
        out.append(
            _target(
                f"workload on/off <= {WORKLOAD_LIMIT}: {r['workload']}",
                r["ratio"],
                WORKLOAD_LIMIT,
                r["ratio"] <= WORKLOAD_LIMIT,
            )
        )
    lat = sections.get("latency") or {}
    limit_ms = (lat.get("params") or {}).get("target_ms")
    for r in _rows(sections, "latency"):
        name = f"latency median <= 2 x interval + 50 ms: {r['scenario']}"
        if not r["detected"]:
            out.append(_target(name, None, limit_ms, None, "not detected: no latency to judge"))
        else:
            out.append(_target(name, r["median_ms"], limit_ms, r["median_ms"] <= limit_ms))
    for r in _rows(sections, "scale"):
        if r["case"].startswith("tick") and r["case"].endswith(" 0 blocked"):
            out.append(
                _target(
                    f"tick with 0 blocked <= 1 ms ({r['case']})",
                    r["median_us"],
                    TICK_LIMIT_US,
                    r["median_us"] <= TICK_LIMIT_US,
                    "microseconds",
                )
            )
    churn = [r for r in _rows(sections, "memory") if r["growth_per_lock"] is not None]
    for r in churn:
        out.append(
            _target(
                f"no memory growth: {r['case'].strip()}",
                r["growth_per_lock"],
                GROWTH_LIMIT_PER_LOCK,
                r["growth_per_lock"] < GROWTH_LIMIT_PER_LOCK,
                "bytes retained per lock made and dropped",
            )
        )
    start = _rows(sections, "startup")
    if len(start) >= 3:
        pth, full = start[0], start[2]
        low, high = full.get("diff_ci_low_ms"), full.get("diff_ci_high_ms")
        unresolved = low is not None and (low <= 0 <= high or high < START_DIFF_FLOOR_MS)
        ok = pth["value"] < PTH_LIMIT_US and unresolved
        out.append(
            _target(
                "DEADLOCKWATCH unset costs nothing measurable",
                pth["value"],
                PTH_LIMIT_US,
                ok,
                f"microseconds: site processing of the .pth (its line {start[1]['value']} us); "
                f"whole start-up difference {full['diff_ms']} ms, 95% CI [{low}, {high}] ms",
            )
        )
        for r in start:
            if r["case"].startswith("python -c pass: DEADLOCKWATCH unset vs"):
                out.append(
                    _target(
                        "DEADLOCKWATCH=1 adds at most 10 ms to start-up",
                        r["diff_ms"],
                        ENABLED_START_LIMIT_MS,
                        r["diff_ms"] <= ENABLED_START_LIMIT_MS,
                        "ms, median of paired differences",
                    )
                )
            if r["case"].startswith("of them threading"):
                out.append(
                    _target(
                        "DEADLOCKWATCH=1 start-up imports no threading, asyncio, wrapt...",
                        r["value"],
                        0,
                        r["value"] == 0,
                    )
                )
            if "loaded by import deadlockwatch" in r["case"]:
                out.append(
                    _target(r["case"].replace(" (1 = yes)", ": no"), r["value"], 0, r["value"] == 0)
                )
    return out


# -- output -------------------------------------------------------------------
def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:g}"
    return str(value)


def text_table(section: dict[str, Any]) -> str:
    if "error" in section:
        return "  ERROR: " + section["error"].strip().replace("\n", "\n  ")
    columns = section["columns"]
    cells = [[h for _, h in columns]] + [
        [fmt(r.get(k)) for k, _ in columns] for r in section["rows"]
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(parts).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    for note in section.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "").replace("-", "").replace("e", "").isdigit()


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    load = m.get("loadavg_start")
    load_text = "/".join(f"{x:.1f}" for x in load) if load else "unknown"
    src = data.get("source") or {}
    what = (
        f"commit {src['commit']}"
        + (" with uncommitted changes" if src.get("uncommitted_changes") else "")
        if src.get("commit")
        else ""
    )
    if src.get("label"):
        what = f"{what} ({src['label']})" if what else src["label"]
    lines = [
        f"`{m['python']}` on {m['platform']}, {m['cpu']}, {m['cpus']} CPUs (shared), "
        f"{m['date']}, {'quick' if data['quick'] else 'full'} mode, load average "
        f"{load_text} (1/5/15 min) at start, {data['seconds']:.0f} s in all"
        + (f"; deadlockwatch: {what}" if what else "")
        + ".",
        "",
    ]
    for key in SECTIONS + OPT_IN:
        section = data["sections"].get(key)
        if section is None:
            continue
        if "error" in section:
            lines += [f"**{key}**: error", "", "```", section["error"], "```", ""]
            continue
        lines.append(f"**{section['title']}**")
        lines.append("")
        columns = section["columns"]
        lines.append("| " + " | ".join(h for _, h in columns) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
        for r in section["rows"]:
            lines.append("| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |")
        lines.append("")
    lines += ["**Targets**", "", "| target | value | limit | met |", "|---|---:|---:|---|"]
    for t in data["targets"]:
        met = {True: "met", False: "**not met**", None: "n/a"}[t["met"]]
        detail = f" ({t['detail']})" if t["detail"] else ""
        lines.append(f"| {t['target']}{detail} | {fmt(t['value'])} | {fmt(t['limit'])} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="deadlockwatch's benchmark suite"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--only",
        help="comma-separated sections: "
        + ", ".join(SECTIONS)
        + "; and, only when named, "
        + ", ".join(OPT_IN),
    )
    parser.add_argument("--render", metavar="JSON", help="print saved results as Markdown")
    parser.add_argument("--label", help="a note on what is measured, kept in the JSON")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render) as f:
            print(markdown(json.load(f)), end="")
        return 0
    names = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [n for n in names if n not in SECTIONS + OPT_IN]
    if unknown:
        known = ", ".join(SECTIONS + OPT_IN)
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {known}")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    default = HERE / "results" / f"cpython-{version}{'-quick' if args.quick else ''}.json"
    out = args.json or str(default)
    info = machine()
    src = source(args.label)
    print(f"{info['python']}\n{info['platform']}, {info['cpu']}, {info['cpus']} CPUs")
    print(
        f"deadlockwatch: {src['package']} (commit {src['commit']}"
        f"{', with uncommitted changes' if src['uncommitted_changes'] else ''})"
        + (f" [{src['label']}]" if src["label"] else "")
    )
    print(f"{'quick' if args.quick else 'full'} mode, {info['date']}\n", flush=True)
    t0 = time.perf_counter()
    sections: dict[str, Any] = {}
    failed = False
    for name in names:
        data = run_section(name, args.quick)
        sections[name] = data
        failed = failed or "error" in data
        title = data.get("title", name)
        print(f"[{name}] {title}  ({data['seconds']} s)")
        print(text_table(data) + "\n", flush=True)
    targets = evaluate(sections)
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = {
        "machine": info,
        "source": src,
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t0, 1),
        "sections": sections,
        "targets": targets,
    }
    print("Targets")
    for t in targets:
        met = {True: "met    ", False: "NOT MET", None: "n/a    "}[t["met"]]
        detail = f"  [{t['detail']}]" if t["detail"] else ""
        print(f"  {met}  {t['target']}: {fmt(t['value'])} (limit {fmt(t['limit'])}){detail}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nJSON written to {out} ({result['seconds']} s in all)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
