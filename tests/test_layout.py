"""The package's layout (issue 12): every module in a stage, imports one way
down the stages, no import cycle, imports made inside functions included.

The stages, from the top (see ``deadlockwatch/__init__.py``): the surfaces,
``_processes/``, ``_watch/``, ``_analysis/`` and ``_report/`` (with
``_errors``, whose message is the report's summary), ``_track/``, then the
vocabulary (``_model``, ``_config``).  A module may import its own stage or
any stage below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import deadlockwatch

PACKAGE = Path(deadlockwatch.__file__).parent

#: Rank of each stage: a module may import modules of its own rank or higher.
RANK = {
    "surface": 0,
    "_processes": 1,
    "_watch": 2,
    "_analysis": 3,
    "_report": 3,
    "_track": 4,
    "vocabulary": 5,
}
SURFACES = {
    "deadlockwatch",
    "deadlockwatch.__main__",
    "deadlockwatch._api",
    "deadlockwatch._cli",
    "deadlockwatch._demo",
    "deadlockwatch._pytest_plugin",
    "deadlockwatch._startup",
    "deadlockwatch.auto",
}
VOCABULARY = {"deadlockwatch._model", "deadlockwatch._config"}


def stage(module: str) -> str:
    parts = module.split(".")
    if module in SURFACES:
        return "surface"
    if module in VOCABULARY:
        return "vocabulary"
    if module == "deadlockwatch._errors":
        return "_report"
    if len(parts) >= 2 and parts[1] in RANK:
        return parts[1]
    raise AssertionError(f"{module} is in no stage")


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
        out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every deadlockwatch module ``name`` imports, wherever the import is
    (module level, inside functions, under ``TYPE_CHECKING``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                if not is_package:
                    parts = parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # ``from package import module`` imports that module.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            # ``import deadlockwatch._track.state`` imports the package too,
            # which is empty of imports: count the module itself.
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name and target != "deadlockwatch":
                found.add(target)
    return found


def graph(root: Path) -> nx.DiGraph:
    mods = modules(root)
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        for target in imports(name, path, set(mods)):
            g.add_edge(name, target)
    return g


def violations(g: nx.DiGraph) -> list[str]:
    out = []
    for a, b in g.edges:
        if RANK[stage(a)] > RANK[stage(b)]:
            out.append(f"{a} ({stage(a)}) imports {b} ({stage(b)})")
    out.extend(f"cycle: {' -> '.join(c)}" for c in nx.simple_cycles(g))
    return out


def test_every_module_is_in_a_stage_and_imports_go_one_way() -> None:
    g = graph(PACKAGE)
    assert len(g) > 30
    # The checker sees imports made inside functions: these two are.
    assert g.has_edge("deadlockwatch._api", "deadlockwatch._processes.shared")
    assert g.has_edge("deadlockwatch._startup", "deadlockwatch._api")
    assert violations(g) == []


def test_the_checker_finds_a_lazy_import_back_up_and_a_cycle(tmp_path: Path) -> None:
    """Positive control: the rules reject what they guard against."""
    root = tmp_path / "deadlockwatch"
    for sub in ("_track", "_watch"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "_track" / "state.py").write_text(
        "def f():\n    from deadlockwatch._watch.watcher import DETECTOR\n    return DETECTOR\n"
    )
    (root / "_watch" / "watcher.py").write_text("from deadlockwatch._track import state\n")
    g = graph(root)
    assert g.has_edge("deadlockwatch._track.state", "deadlockwatch._watch.watcher")
    found = violations(g)
    assert any("_track.state (_track) imports deadlockwatch._watch.watcher" in v for v in found)
    assert any(v.startswith("cycle:") for v in found)


@pytest.mark.parametrize("module", ["deadlockwatch._helpers", "deadlockwatch._x.y"])
def test_a_module_outside_the_stages_is_refused(module: str) -> None:
    with pytest.raises(AssertionError, match="in no stage"):
        stage(module)


#: The test folder of each stage (the vocabulary is tested through them).
TEST_FOLDERS = {
    "surface": "surfaces",
    "_processes": "processes",
    "_watch": "watch",
    "_analysis": "analysis",
    "_report": "report",
    "_track": "track",
}


def test_tests_mirror_the_stages() -> None:
    """Every stage has a test folder of its own, and every folder of test
    modules is a stage's; what is left at the top tests the repository as a
    whole (layout, benchmarks, CPython's suite)."""
    here = Path(__file__).parent
    folders = {p.parent.name for p in here.glob("*/test_*.py")}
    assert folders == set(TEST_FOLDERS.values())
    assert set(TEST_FOLDERS) == set(RANK) - {"vocabulary"}
    top = {p.name for p in here.glob("test_*.py")}
    assert top == {"test_layout.py", "test_benchmarks.py", "test_cpython_suite.py"}
