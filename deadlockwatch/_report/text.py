"""Renderers for findings: the text report and the JSON Lines record.

They take value objects and return strings or plain dicts; writing them out
is the detector's job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from deadlockwatch._model import (
    CycleStep,
    Finding,
    Frame,
    HeldInfo,
    OrderEdge,
    ResourceInfo,
    Site,
    ThreadInfo,
    WaitInfo,
    short_path,
)

_TITLES = {
    "deadlock": "DEADLOCK",
    "timed-cycle": "TIMED CYCLE (a timeout can break it)",
    "lock-order-inversion": "POTENTIAL DEADLOCK: lock-order inversion",
    "wait-under-lock": "POTENTIAL DEADLOCK: a wait under a lock its signaller needs",
    "held-at-exit": "WARNING: a thread exited holding a lock",
    "probable-deadlock": "PROBABLE DEADLOCK (unless a thread that never touched it rescues them)",
}


def _site(site: Site | None) -> str:
    return str(site) if site is not None else "an unknown place"


def _held_line(f: Finding, h: HeldInfo) -> str:
    units = f" x{h.count}" if h.count > 1 else ""
    return f"{f.resource_label(h.resource)}{units}, acquired at {_site(h.acquired_at)}"


def _resource_line(r: ResourceInfo) -> str:
    return r.long_label


def format_text(f: Finding) -> str:
    """The human report, as written to stderr."""
    lines: list[str] = []
    when = time.strftime(", %Y-%m-%d %H:%M:%S", time.localtime(f.time)) if f.time else ""
    lines.append(f"deadlockwatch: {_TITLES.get(f.kind, f.kind.upper())} (pid {f.pid}{when})")
    lines.append(f"  {f.cause}")
    if f.cycle:
        lines.append("")
        lines.append("  Cycle:")
        lines.extend(f"    {step_text(f, step)}" for step in f.cycle)
    if f.order:
        lines.extend(_order_lines(f))
    lines.append("")
    lines.append("  Coffman conditions:")
    for name, check in f.conditions.items().items():
        verdict = "yes" if check.holds else "no "
        lines.append(f"    {name.replace('_', ' '):<17} {verdict}  {check.reason}")
    for t in f.threads:
        lines.append("")
        lines.extend(_thread_lines(f, t))
    if f.outside:
        lines.append("")
        lines.append(
            "  Blocked outside deadlockwatch's view (primitives it does not track;"
            " counted as able to run):"
        )
        lines.extend(f"    {o}" for o in f.outside)
    if f.rescuers:
        lines.append("")
        lines.append("  Could still rescue them (not counted, see why):")
        lines.extend(f"    {o}" for o in f.rescuers)
    lines.append("")
    return "\n".join(lines)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def step_text(f: Finding, step: CycleStep) -> str:
    """One step of a cycle in words, as fits what is waited for."""
    me = repr(f.thread_label(step.thread))
    nxt = repr(f.thread_label(step.held_by))
    r = f.resource(step.waits_for)
    label = f.resource_label(step.waits_for)
    others = [repr(f.thread_label(h)) for h in step.holders if h != step.held_by]
    also = f" (and {', '.join(others)})" if others else ""
    if r.kind == "join":
        return f"{me} joins {label}"
    if r.kind == "loop":
        return f"{me} cannot run: its event loop's thread {nxt} is blocked"
    if r.kind == "import":
        return f"{me} waits for the {label}, in progress in {nxt}"
    if r.parts and r.type in ("asyncio.gather", "asyncio.wait", "asyncio.TaskGroup"):
        return f"{me} awaits {label}; {nxt} has not ended"
    if (r.kind in ("future", "any", "all") and r.owner_bound) or r.parts:
        state = f" ({r.detail})" if r.detail else ""
        if r.detail.startswith("running"):
            return f"{me} waits for {label}{state}, run by {nxt}"
        if "on the event loop of thread" in r.detail:
            return f"{me} waits for {label}{state}, whose loop is blocked in {nxt}"
        workers = [repr(f.thread_label(h)) for h in step.holders] or [nxt]
        return f"{me} waits for {label}{state}, queued behind {_and(workers)}"
    if not r.owner_bound and not r.holders and r.verb:
        return f"{me} waits on {label}; {nxt} could {r.verb or 'release'} it"
    return f"{me} waits for {label} held by {nxt}{also}"


def _edge_line(f: Finding, e: OrderEdge) -> str:
    """One learned edge of a cycle in words."""
    held, acquired = f.resource_label(e.held), f.resource_label(e.acquired)
    where = f" at {_site(e.site)}" if e.site else ""
    if e.relation == "waits":
        return f"{held} held while waiting on {acquired}: by {e.thread!r}{where}"
    if e.relation == "signals":
        took = f" (taken at {_site(e.taken_at)})" if e.taken_at else ""
        return f"{held} is signalled by {e.thread!r}{where}, in a call that takes {acquired}{took}"
    return f"{held} then {acquired}: taken by {e.thread!r}{where}"


def _edge_heading(f: Finding, e: OrderEdge) -> str:
    held, acquired = f.resource_label(e.held), f.resource_label(e.acquired)
    who = f"by {e.thread!r} (ident {e.thread_ident})"
    if e.relation == "waits":
        return f"  {acquired} waited on while holding {held} {who}:"
    if e.relation == "signals":
        return f"  {held} signalled, after taking {acquired}, {who}:"
    return f"  {acquired} taken while holding {held} {who}:"


def _order_lines(f: Finding) -> list[str]:
    title = "Lock order cycle:" if f.kind == "lock-order-inversion" else "Cycle of waits and locks:"
    out = ["", f"  {title}"]
    for e in f.order:
        out.append(f"    {_edge_line(f, e)}")
    for e in f.order:
        out.append("")
        out.append(_edge_heading(f, e))
        for fr in e.stack:
            out.append(f'      File "{short_path(fr.file)}", line {fr.line}, in {fr.function}')
            if fr.code:
                out.append(f"        {fr.code}")
    return out


def _thread_lines(f: Finding, t: ThreadInfo) -> list[str]:
    flags = ["daemon" if t.daemon else "non-daemon"]
    if t.lost_at_fork:
        flags.append("a thread of the parent, gone at the fork")
    elif not t.alive:
        flags.append("exited")
    if t.is_task:
        out = [f"  Task {f.thread_label(t.key)!r} (on the event loop of thread {t.loop_thread})"]
    else:
        out = [f"  Thread {f.thread_label(t.key)!r} (ident {t.ident}, {', '.join(flags)})"]
    if t.wait is not None:
        r = f.resource(t.wait.resource)
        timeout = _timeout_text(t.wait)
        state = f" ({r.detail})" if r.detail else ""
        out.append(
            f"    waiting {t.wait.blocked_for:.2f} s for {_resource_line(r)}{state}{timeout}"
            f" at {_site(t.wait.site)}"
        )
    if t.held:
        out.append("    holds:")
        out.extend(f"      {_held_line(f, h)}" for h in t.held)
    else:
        out.append("    holds nothing")
    if t.stack:
        what = "await chain" if t.is_task else "stack"
        out.append(f"    {what} (most recent call last):")
        for fr in t.stack:
            out.append(f'      File "{short_path(fr.file)}", line {fr.line}, in {fr.function}')
            if fr.code:
                out.append(f"        {fr.code}")
    return out


def _site_json(site: Site | None) -> dict[str, Any] | None:
    if site is None:
        return None
    return {"file": site.file, "line": site.line, "function": site.function}


def _timeout_text(w: WaitInfo) -> str:
    if w.timeout is None:
        return ""
    if w.polling:
        return f", polling: again and again with a timeout of {w.timeout:g} s"
    return f", timeout {w.timeout:g} s"


def resource_fields(r: ResourceInfo) -> dict[str, Any]:
    """A resource's plain fields, as every JSON form writes them (the report
    record, and the snapshot a process publishes); each adds its holders,
    parts and creation site in its own form."""
    return {
        "id": r.id,
        "type": r.type,
        "free": r.free,
        "owner_bound": r.owner_bound,
        "kind": r.kind,
        "detail": r.detail,
        "verb": r.verb,
        "title": r.title,
        "group": r.group,
    }


def to_json(f: Finding) -> dict[str, Any]:
    """The JSON Lines record of a finding (documented in README)."""
    name = f.thread_label
    return {
        "kind": f.kind,
        "cause": f.cause,
        "pid": f.pid,
        "time": f.time,
        "threads": [name(t.key) for t in f.threads],
        "cycle": [
            {
                "thread": name(s.thread),
                "waits_for": f.resource(s.waits_for).id,
                "held_by": name(s.held_by),
                "holders": [name(h) for h in s.holders],
            }
            for s in f.cycle
        ],
        "conditions": {k: c.holds for k, c in f.conditions.items().items()},
        "reasons": {k: c.reason for k, c in f.conditions.items().items()},
        "resources": [
            {
                **resource_fields(r),
                "created_at": _site_json(r.created_at),
                "holders": {name(h): n for h, n in r.holders if _known(f, h)},
                "parts": [f.resource(p).id for p in r.parts if _has_resource(f, p)],
            }
            for r in f.resources
        ],
        "thread_details": [
            {
                "name": name(t.key),
                "ident": t.ident,
                "daemon": t.daemon,
                "alive": t.alive,
                "lost_at_fork": t.lost_at_fork,
                **({"pid": t.pid, "process": t.process} if t.pid else {}),
                **({"task": True, "loop_thread": t.loop_thread} if t.is_task else {}),
                "waits_for": None
                if t.wait is None
                else {
                    "resource": f.resource(t.wait.resource).id,
                    "blocked_for": round(t.wait.blocked_for, 6),
                    "timeout": t.wait.timeout,
                    "polling": t.wait.polling,
                    "at": _site_json(t.wait.site),
                },
                "holds": [
                    {
                        "resource": f.resource(h.resource).id,
                        "count": h.count,
                        "acquired_at": _site_json(h.acquired_at),
                    }
                    for h in t.held
                ],
            }
            for t in f.threads
        ],
        "stacks": {name(t.key): _frames_json(t.stack) for t in f.threads},
        "order": [
            {
                "held": f.resource(e.held).id,
                "acquired": f.resource(e.acquired).id,
                "thread": e.thread,
                "thread_ident": e.thread_ident,
                "at": _site_json(e.site),
                "stack": _frames_json(e.stack),
                "relation": e.relation,
                "taken_at": _site_json(e.taken_at),
            }
            for e in f.order
        ],
        "single_thread": f.single_thread,
        "outside_view": list(f.outside),
        "rescuers": list(f.rescuers),
    }


def _frames_json(stack: Iterable[Frame]) -> list[dict[str, Any]]:
    return [
        {"file": fr.file, "line": fr.line, "function": fr.function, "code": fr.code} for fr in stack
    ]


def _has_resource(f: Finding, key: int) -> bool:
    return any(r.key == key for r in f.resources)


def _known(f: Finding, key: int) -> bool:
    return any(t.key == key for t in f.threads)


def to_json_line(f: Finding) -> str:
    import json  # here: not paid when threading is imported

    return json.dumps(to_json(f), sort_keys=False) + "\n"


def format_dump(
    threads: Iterable[ThreadInfo],
    resources: Mapping[int, ResourceInfo],
    outside: Iterable[str] = (),
    title: str = "",
) -> str:
    """Every thread with what it holds and waits for, and its stack (like jstack)."""
    threads = list(threads)
    names = {t.key: t.name for t in threads}
    tasks = sum(1 for t in threads if t.is_task)
    counted = f"{len(threads) - tasks} thread(s)" + (f" and {tasks} task(s)" if tasks else "")
    lines = [f"deadlockwatch: {title or f'{counted} (pid {os.getpid()})'}"]
    for t in sorted(threads, key=lambda t: t.ident):
        lines.append("")
        flags = "daemon" if t.daemon else "non-daemon"
        if not t.alive:
            flags += ", exited"
        if t.is_task:
            lines.append(f"Task {t.name!r} (on the event loop of thread {t.loop_thread})")
        else:
            lines.append(f"Thread {t.name!r} (ident {t.ident}, {flags})")
        if t.wait is not None and t.wait.resource in resources:
            r = resources[t.wait.resource]
            holders = ", ".join(repr(names.get(h, "?")) for h, _ in r.holders) or "nobody"
            timeout = _timeout_text(t.wait)
            lines.append(
                f"  waiting {t.wait.blocked_for:.2f} s for {_resource_line(r)} held by {holders}"
                f"{timeout} at {_site(t.wait.site)}"
            )
        for h in t.held:
            held = resources.get(h.resource)
            if held is None:
                continue
            units = f" x{h.count}" if h.count > 1 else ""
            lines.append(f"  holds {held.label}{units}, acquired at {_site(h.acquired_at)}")
        for fr in t.stack:
            lines.append(f'    File "{short_path(fr.file)}", line {fr.line}, in {fr.function}')
            if fr.code:
                lines.append(f"      {fr.code}")
    outside = list(outside)
    if outside:
        lines.append("")
        lines.append("Blocked outside deadlockwatch's view (primitives it does not track):")
        lines.extend(f"  {o}" for o in outside)
    lines.append("")
    return "\n".join(lines)
