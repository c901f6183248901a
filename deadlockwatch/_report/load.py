"""Reading saved findings back: JSON Lines records to `Finding` objects.

Every record is checked against the schema `_report.to_json` writes; what does
not fit raises `ReportError` with the line number and what is wrong.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from deadlockwatch._model import (
    Check,
    Conditions,
    CycleStep,
    Finding,
    Frame,
    HeldInfo,
    OrderEdge,
    ResourceInfo,
    Site,
    ThreadInfo,
    WaitInfo,
)

_CONDITIONS = ("mutual_exclusion", "hold_and_wait", "no_preemption", "circular_wait")


class ReportError(ValueError):
    """A report file that cannot be read as deadlockwatch findings."""


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ReportError(f"{where}: missing key {key!r}")
    value = obj[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ReportError(f"{where}: {key!r} must be a number, not {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ReportError(f"{where}: {key!r} must be {names}, not {type(value).__name__}")
    return value


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    """An optional text field: a string, or missing / null for none."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReportError(f"{where}: {key!r} must be str, not {type(value).__name__}")
    return value


def _strings(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    """An optional list of strings."""
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def _site(obj: Any, where: str) -> Site | None:
    if obj is None:
        return None
    return Site(
        _need(obj, "file", str, where),
        _need(obj, "line", int, where),
        _need(obj, "function", str, where),
    )


def finding_from_json(record: Any, where: str = "record") -> Finding:
    """Rebuild a finding from its JSON record (as written by the detector)."""
    try:
        return _finding_from_json(record, where)
    except ReportError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, RecursionError) as exc:
        raise ReportError(f"{where}: malformed finding ({type(exc).__name__}: {exc})") from None


def _finding_from_json(record: Any, where: str) -> Finding:
    if not isinstance(record, dict):
        raise ReportError(f"{where}: a finding must be a JSON object, not {type(record).__name__}")
    kind = _need(record, "kind", str, where)
    names = _need(record, "threads", list, where)
    if not all(isinstance(n, str) for n in names):
        raise ReportError(f"{where}: 'threads' must be a list of names")
    key_of = {name: i + 1 for i, name in enumerate(names)}

    resources: dict[str, ResourceInfo] = {}
    parts: dict[str, Any] = {}
    for i, r in enumerate(_need(record, "resources", list, where)):
        rw = f"{where}, resources[{i}]"
        rid = _need(r, "id", str, rw)
        holders = r.get("holders", {}) if isinstance(r, dict) else {}
        if not isinstance(holders, dict):
            raise ReportError(f"{rw}: 'holders' must be an object")
        resources[rid] = ResourceInfo(
            key=1000 + i,
            id=rid,
            type=_need(r, "type", str, rw),
            created_at=_site(r.get("created_at"), rw),
            holders=tuple((key_of[h], int(n)) for h, n in holders.items() if h in key_of),
            free=int(r.get("free", 0)),
            owner_bound=bool(r.get("owner_bound", True)),
            kind=_text(r, "kind", rw) or "lock",
            detail=_text(r, "detail", rw),
            verb=_text(r, "verb", rw),
            title=_text(r, "title", rw),
            group=_text(r, "group", rw),
        )
        parts[rid] = r.get("parts", [])

    def res_key(rid: Any, w: str) -> int:
        if rid not in resources:
            raise ReportError(f"{w}: unknown resource {rid!r}")
        return resources[rid].key

    for rid, ids in parts.items():
        if not isinstance(ids, list):
            raise ReportError(f"{where}, resource {rid}: 'parts' must be a list")
        keys = tuple(res_key(p, f"{where}, resource {rid}") for p in ids)
        resources[rid] = replace(resources[rid], parts=keys)

    def thread_key(name: Any, w: str) -> int:
        if name not in key_of:
            raise ReportError(f"{w}: unknown thread {name!r}")
        return key_of[name]

    stacks = record.get("stacks", {})
    if not isinstance(stacks, dict):
        raise ReportError(f"{where}: 'stacks' must be an object")
    details = {d.get("name"): d for d in record.get("thread_details", []) if isinstance(d, dict)}
    threads = []
    for name in names:
        d = details.get(name, {})
        tw = f"{where}, thread {name!r}"
        wait = None
        wf = d.get("waits_for")
        if isinstance(wf, dict):
            timeout = wf.get("timeout")
            wait = WaitInfo(
                resource=res_key(wf.get("resource"), tw),
                blocked_for=float(wf.get("blocked_for", 0.0)),
                timeout=None if timeout is None else float(timeout),
                site=_site(wf.get("at"), tw),
                polling=wf.get("polling") is True,
            )
        held = tuple(
            HeldInfo(
                resource=res_key(h.get("resource"), tw),
                count=int(h.get("count", 1)),
                acquired_at=_site(h.get("acquired_at"), tw),
            )
            for h in d.get("holds", [])
            if isinstance(h, dict)
        )
        frames = stacks.get(name, [])
        if not isinstance(frames, list):
            raise ReportError(f"{tw}: its stack must be a list")
        stack = tuple(
            Frame(
                _need(fr, "file", str, tw),
                _need(fr, "line", int, tw),
                _need(fr, "function", str, tw),
                _text(fr, "code", tw),
            )
            for fr in frames
        )
        threads.append(
            ThreadInfo(
                key=key_of[name],
                ident=int(d.get("ident", 0)),
                name=name,
                daemon=bool(d.get("daemon", False)),
                alive=bool(d.get("alive", True)),
                lost_at_fork=bool(d.get("lost_at_fork", False)),
                pid=int(d.get("pid", 0)),
                process=_text(d, "process", tw),
                loop_thread=_text(d, "loop_thread", tw),
                wait=wait,
                held=held,
                stack=stack,
            )
        )

    cycle = []
    for i, step in enumerate(_need(record, "cycle", list, where)):
        sw = f"{where}, cycle[{i}]"
        cycle.append(
            CycleStep(
                thread=thread_key(_need(step, "thread", str, sw), sw),
                waits_for=res_key(_need(step, "waits_for", str, sw), sw),
                held_by=thread_key(_need(step, "held_by", str, sw), sw),
                holders=tuple(thread_key(h, sw) for h in step.get("holders", []) if h in key_of),
            )
        )

    verdicts = _need(record, "conditions", dict, where)
    reasons = record.get("reasons", {})
    checks = []
    for name in _CONDITIONS:
        holds = _need(verdicts, name, bool, f"{where}, conditions")
        if not isinstance(reasons, dict):
            raise ReportError(f"{where}: 'reasons' must be an object")
        checks.append(Check(holds, _text(reasons, name, f"{where}, reasons")))
    order = []
    raw_order = record.get("order", [])
    if not isinstance(raw_order, list):
        raise ReportError(f"{where}: 'order' must be a list")
    for i, e in enumerate(raw_order):
        ew = f"{where}, order[{i}]"
        frames = e.get("stack", []) if isinstance(e, dict) else None
        if not isinstance(frames, list):
            raise ReportError(f"{ew}: 'stack' must be a list")
        order.append(
            OrderEdge(
                held=res_key(_need(e, "held", str, ew), ew),
                acquired=res_key(_need(e, "acquired", str, ew), ew),
                thread=_need(e, "thread", str, ew),
                thread_ident=int(e.get("thread_ident", 0)),
                site=_site(e.get("at"), ew),
                relation=_relation(e, ew),
                taken_at=_site(e.get("taken_at"), ew),
                stack=tuple(
                    Frame(
                        _need(fr, "file", str, ew),
                        _need(fr, "line", int, ew),
                        _need(fr, "function", str, ew),
                        str(fr.get("code", "")),
                    )
                    for fr in frames
                ),
            )
        )
    return Finding(
        kind=kind,
        cycle=tuple(cycle),
        threads=tuple(threads),
        resources=tuple(resources.values()),
        conditions=Conditions(*checks),
        order=tuple(order),
        single_thread=bool(record.get("single_thread", False)),
        outside=_strings(record, "outside_view", where),
        rescuers=_strings(record, "rescuers", where),
        cause=_text(record, "cause", where),
        pid=int(_need(record, "pid", int, where)),
        time=_unix_time(_need(record, "time", (int, float), where), where),
    )


def _unix_time(value: float, where: str) -> float:
    """A time the text report can print (finite, within the platform's range)."""
    try:
        seconds = float(value)
        time.localtime(seconds)
    except (OverflowError, OSError, ValueError):
        raise ReportError(f"{where}: 'time' must be a Unix time, not {value!r}") from None
    return seconds


#: How every record begins (``to_json`` puts ``kind`` first): where a record
#: cut short is followed by the next one on the same line, the next starts here.
_RECORD_START = '{"kind": '


def load_findings(path: str, skipped: list[str] | None = None) -> list[Finding]:
    """Every finding in a JSON Lines report file; `ReportError` on any problem.

    A record cut short (its process was killed while writing it, and other
    processes may have appended after it on the same line) is skipped, with a
    line saying so appended to ``skipped``; without ``skipped`` it is an error,
    as is a file whose every record is cut.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a report file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read it ({exc})") from None
    # Records are separated by "\n" only, as the detector writes them: a name may
    # hold any other line break.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    findings = []
    cut: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            last = number == len(lines) and not text.endswith("\n")
            rest = _after_cut(line) if line.startswith(_RECORD_START) else None
            if rest is not None:
                cut.append(f"{where}: a record cut short, followed by another on the same line")
                record = rest
            elif last and line.startswith(_RECORD_START):
                cut.append(f"{where}: the last record is cut short")
                continue
            else:
                truncated = (
                    "; the last line looks cut short (was the program killed?)" if last else ""
                )
                raise ReportError(
                    f"{where}: not JSON ({exc.msg} at column {exc.colno}){truncated}"
                ) from None
        except (ValueError, RecursionError) as exc:
            # e.g. an integer too long to convert, or nesting too deep to decode
            raise ReportError(f"{where}: not a readable JSON record ({exc})") from None
        findings.append(finding_from_json(record, where))
    if cut and (skipped is None or not findings):
        why = " (was its process killed while writing it?)"
        raise ReportError(cut[0] + why + ("" if findings else "; no whole record in the file"))
    if not findings:
        raise ReportError(f"{path}: holds no findings (the file is empty)")
    if skipped is not None:
        skipped.extend(f"{c}: skipped (was its process killed while writing it?)" for c in cut)
    return findings


def _after_cut(line: str) -> Any:
    """The whole record that follows a cut one on ``line``, or None."""
    start = line.rfind(_RECORD_START)
    while start > 0:
        try:
            return json.loads(line[start:])
        except (ValueError, RecursionError):
            start = line.rfind(_RECORD_START, 0, start)
    return None


def _relation(edge: dict[str, Any], where: str) -> str:
    relation = edge.get("relation", "then")
    if relation not in ("then", "waits", "signals"):
        raise ReportError(
            f"{where}: 'relation' must be 'then', 'waits' or 'signals', not {relation!r}"
        )
    return str(relation)
