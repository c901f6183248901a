"""The wait-for graph of findings as Graphviz DOT (and SVG through ``dot``).

Threads are ellipses, resources boxes; ``waits for`` edges go from a thread
to a resource, ``held by`` edges from a resource to its holders; the cycle is
drawn red and bold.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from deadlockwatch._model import Finding, short_path

_CYCLE = 'color="#c0392b", fontcolor="#c0392b", penwidth=2.2'


def _q(text: str) -> str:
    # Control characters and lone surrogates (possible in thread names) are shown
    # escaped, so the output is always valid UTF-8 that Graphviz reads.
    text = "".join(
        c if c == "\n" or (c >= " " and c != "\x7f") else f"\\x{ord(c):02x}" for c in text
    )
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


#: How a resource -> thread edge reads, by what the resource is.
_HOLDER_EDGE = {"join": "is thread", "future": "run by", "import": "imported by"}


def to_dot(findings: Iterable[Finding]) -> str:
    out = [
        "digraph deadlockwatch {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for i, f in enumerate(findings):
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_q(f'{f.kind}: {f.cause}')};")
        out.append('    labeljust="l";')
        in_cycle_threads = {s.thread for s in f.cycle}
        # Thread and resource keys may coincide: tag each edge with its kind.
        cycle_edges: set[tuple[str, int, int]] = set()
        for s in f.cycle:
            cycle_edges.add(("waits", s.thread, s.waits_for))
            cycle_edges.add(("held", s.waits_for, s.held_by))
        for t in f.threads:
            state = "" if t.alive else "\n(exited)"
            style = f", {_CYCLE}" if t.key in in_cycle_threads else ""
            what = f"task on the loop of {t.loop_thread}" if t.is_task else f"ident {t.ident}"
            label = f"{f.thread_label(t.key)}\n{what}{state}"
            out.append(f"    f{i}_t{t.key} [shape=ellipse, label={_q(label)}{style}];")
        cycle_resources = {s.waits_for for s in f.cycle} | {e.held for e in f.order}
        for r in f.resources:
            where = (
                f"\ncreated {short_path(r.created_at.file)}:{r.created_at.line}"
                if r.created_at
                else ""
            )
            style = f", {_CYCLE}" if r.key in cycle_resources else ""
            name = r.title or r.type
            state = f"\n{r.detail}" if r.detail else ""
            label = f"{name} {r.id}{where}{state}"
            out.append(f"    f{i}_r{r.key} [shape=box, style=rounded, label={_q(label)}{style}];")
        for e in f.order:
            where = f"\nat {short_path(e.site.file)}:{e.site.line}" if e.site else ""
            verb = {"waits": "held while waiting on", "signals": "signalled by a call taking"}
            text = verb.get(e.relation, "then")
            out.append(
                f"    f{i}_r{e.held} -> f{i}_r{e.acquired} "
                f"[label={_q(f'{text}, in {e.thread!r}{where}')}, {_CYCLE}];"
            )
        known = {t.key for t in f.threads}
        for t in f.threads:
            if t.wait is not None:
                style = f", {_CYCLE}" if ("waits", t.key, t.wait.resource) in cycle_edges else ""
                out.append(
                    f'    f{i}_t{t.key} -> f{i}_r{t.wait.resource} [label="waits for"{style}];'
                )
        for r in f.resources:
            for h, n in r.holders:
                if h not in known:
                    continue
                units = f" x{n}" if n > 1 else ""
                style = f", {_CYCLE}" if ("held", r.key, h) in cycle_edges else ""
                text = _HOLDER_EDGE.get(r.kind, "held by")
                if r.kind == "future" and r.detail.startswith("pending"):
                    text = "waits for a worker:"
                out.append(
                    f"    f{i}_r{r.key} -> f{i}_t{h} "
                    f"[label={_q(text + units)}, style=dashed{style}];"
                )
        # A signal (a notify, a set) has no holder: the cycle goes through a
        # thread that could give it.
        for s in f.cycle:
            r = f.resource(s.waits_for)
            if not r.holders and not r.owner_bound and s.held_by in known:
                out.append(
                    f"    f{i}_r{r.key} -> f{i}_t{s.held_by} "
                    f"[label={_q('could ' + (r.verb or 'signal'))}, style=dotted, {_CYCLE}];"
                )
        if f.rescuers:
            text = "could still rescue them:\n" + "\n".join(f.rescuers)
            out.append(f"    f{i}_rescuers [shape=note, label={_q(text)}];")
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` is not installed."""


def to_svg(dot_source: str) -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing(
            "SVG needs Graphviz's 'dot' command, which is not installed: install Graphviz "
            "(e.g. 'apt-get install graphviz' or 'brew install graphviz'), "
            "or use --format dot and render it elsewhere"
        )
    try:
        done = subprocess.run(
            [exe, "-Tsvg"],
            input=dot_source.encode("utf-8", "backslashreplace"),
            capture_output=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise GraphvizMissing("Graphviz's dot did not finish within 60 s") from None
    except OSError as exc:
        raise GraphvizMissing(f"cannot run Graphviz's dot ({exe}): {exc}") from None
    if done.returncode != 0:
        problem = " ".join(done.stderr.decode("utf-8", "replace").split())
        raise GraphvizMissing(f"Graphviz's dot failed (status {done.returncode}): {problem}")
    return done.stdout.decode("utf-8", "replace")
