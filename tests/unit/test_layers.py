"""The layers are a rule, not a wish: imports point down, no module imports itself back, modules stay small.

Layers, lowest first: `mmt_upgrade.core` (pure: may import no fairseq), `mmt_upgrade.fairseq_io`,
`mmt_upgrade.pipeline`, `mmt_upgrade.cli`. `fairseq_plugins` (loaded by fairseq through `--user-dir`)
may import core and fairseq_io only, and nothing in `mmt_upgrade` imports it. Every import counts,
at any depth: one inside a function still ties the modules together, and may still close a cycle.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mmt_upgrade", "fairseq_plugins")
LAYERS = {"mmt_upgrade": 0, "mmt_upgrade.core": 0, "mmt_upgrade.fairseq_io": 1, "mmt_upgrade.pipeline": 2,
          "mmt_upgrade.cli": 3, "mmt_upgrade.__main__": 3, "fairseq_plugins": 1.5}
PLUGINS_MAY_IMPORT = ("mmt_upgrade.core", "mmt_upgrade.fairseq_io", "fairseq_plugins")
FAIRSEQ = ("fairseq", "fairseq_cli")
MAX_LINES = 300


def module_name(path: str) -> str:
    """`mmt_upgrade/core/spm.py` -> `mmt_upgrade.core.spm`; a package's `__init__.py` -> the package."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer(module: str) -> tuple[str, float] | None:
    """(layer name, rank) of a module of this project; None for a module outside every layer."""
    best = max((p for p in LAYERS if _within(module, p)), key=len, default=None)
    if best == "mmt_upgrade" and module != "mmt_upgrade":
        return None  # a loose module beside the layers
    return (best, LAYERS[best]) if best else None


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every name an `import` or `from ... import` mentions, anywhere in the file (relative ones resolved);
    `from pkg import name` gives `pkg:name` (a module `pkg.name`, or a name defined in `pkg`: see _names)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.update(f"{base}:{alias.name}" for alias in node.names)
    return names


def _names(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """module -> the modules its imports name, from {repository-relative path: source}: `pkg.name` where
    `from pkg import name` imports a module, else `pkg`."""
    mentioned = {module_name(p): imported_names(src, module_name(p), p.endswith("__init__.py"))
                 for p, src in sources.items()}
    resolved: dict[str, set[str]] = {}
    for module, names in mentioned.items():
        resolved[module] = set()
        for name in names:
            base, _, attr = name.partition(":")
            resolved[module].add(f"{base}.{attr}" if attr and f"{base}.{attr}" in mentioned else base)
    return resolved


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    names = _names(sources)
    return {m: {n for n in named if n in names and n != m} for m, named in names.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[str]:
    """One cycle (a path back to its start) per strongly connected component of more than one module,
    with the component's other modules (each of them is on some cycle through the shown one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[str] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycle = _cycle_through(v, component, graph)
                others = sorted(component - set(cycle))
                found.append(" -> ".join(cycle) + (f" (also tied in: {', '.join(others)})" if others else ""))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_through(start: str, component: set[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a strongly connected component")


def violations(sources: Mapping[str, str]) -> list[str]:
    """Every broken layer rule in {repository-relative path: source}, one line each."""
    graph, names = import_graph(sources), _names(sources)
    found = []
    for module in sorted(graph):
        own = layer(module)
        if own is None:
            found.append(f"{module} is in no layer: move it into core, fairseq_io or pipeline")
            continue
        if own[1] == 0 and any(n.split(".")[0] in FAIRSEQ for n in names[module]):
            found.append(f"{module} imports fairseq: core is pure and may not")
        for target in sorted(graph[module]):
            theirs = layer(target)
            if theirs is None:
                continue  # reported as a module of its own
            if own[0] == "fairseq_plugins":
                if not any(_within(target, p) for p in PLUGINS_MAY_IMPORT):
                    found.append(f"{module} imports {target}: fairseq_plugins may import core and fairseq_io only")
            elif theirs[0] == "fairseq_plugins":
                found.append(f"{module} imports {target}: fairseq loads the plugins through --user-dir")
            elif theirs[1] > own[1]:
                found.append(f"upward import: {module} ({own[0]}) imports {target} ({theirs[0]})")
    found += [f"import cycle: {c}" for c in cycles(graph)]
    return found


def _project_sources() -> dict[str, str]:
    return {str(p.relative_to(REPO_ROOT)): p.read_text(encoding="utf-8")
            for package in PACKAGES for p in sorted((REPO_ROOT / package).rglob("*.py"))}


def test_imports_point_down_and_close_no_cycle():
    sources = _project_sources()
    assert len(sources) > 30 and "mmt_upgrade/core/spm.py" in sources
    assert violations(sources) == []


def test_no_module_is_over_300_lines():
    long = {path: text.count("\n") for path, text in _project_sources().items() if text.count("\n") > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: " + ", ".join(f"{p} ({n})" for p, n in sorted(long.items()))


# The checker can fail: hand-made trees with one broken rule each.
BASE = {"mmt_upgrade/__init__.py": "", "mmt_upgrade/core/__init__.py": "",
        "mmt_upgrade/core/spm.py": "import torch\nfrom mmt_upgrade.core.errors import UserInputError\n",
        "mmt_upgrade/core/errors.py": "", "mmt_upgrade/fairseq_io/__init__.py": "",
        "mmt_upgrade/fairseq_io/models.py": "import fairseq\nfrom mmt_upgrade.core import spm\n",
        "mmt_upgrade/pipeline/__init__.py": "", "mmt_upgrade/pipeline/train.py": "from ..fairseq_io import models\n",
        "mmt_upgrade/cli.py": "from mmt_upgrade.pipeline.train import main\n",
        "fairseq_plugins/__init__.py": "from . import task\n",
        "fairseq_plugins/task.py": "from mmt_upgrade.fairseq_io.models import load_model\n"}


def test_the_hand_made_base_tree_is_clean():
    assert violations(BASE) == []
    assert import_graph(BASE)["mmt_upgrade.pipeline.train"] == {"mmt_upgrade.fairseq_io.models"}
    assert import_graph(BASE)["fairseq_plugins"] == {"fairseq_plugins.task"}


@pytest.mark.parametrize("path, source, message", [
    ("mmt_upgrade/core/spm.py", "def f():\n    from mmt_upgrade.pipeline.train import main\n",
     "upward import: mmt_upgrade.core.spm (mmt_upgrade.core) imports mmt_upgrade.pipeline.train "
     "(mmt_upgrade.pipeline)"),
    ("mmt_upgrade/fairseq_io/models.py", "import mmt_upgrade.cli\n",
     "upward import: mmt_upgrade.fairseq_io.models (mmt_upgrade.fairseq_io) imports mmt_upgrade.cli"),
    ("mmt_upgrade/core/spm.py", "def f():\n    from fairseq.data import Dictionary\n",
     "mmt_upgrade.core.spm imports fairseq: core is pure"),
    ("fairseq_plugins/task.py", "from mmt_upgrade.pipeline import train\n",
     "fairseq_plugins.task imports mmt_upgrade.pipeline.train: fairseq_plugins may import core and fairseq_io"),
    ("mmt_upgrade/pipeline/train.py", "import fairseq_plugins.task\n",
     "mmt_upgrade.pipeline.train imports fairseq_plugins.task: fairseq loads the plugins"),
    ("mmt_upgrade/helpers.py", "", "mmt_upgrade.helpers is in no layer"),
])
def test_the_checker_names_an_upward_import(path, source, message):
    found = violations({**BASE, path: source})
    assert found[0].startswith(message), found
    assert all(f.startswith("import cycle: ") for f in found[1:]), found  # BASE's imports lead back down


def test_the_checker_names_a_cycle_through_a_function_level_import():
    tree = {**BASE, "mmt_upgrade/pipeline/report.py": "def f():\n    from . import run\n",
            "mmt_upgrade/pipeline/run.py": "from mmt_upgrade.pipeline.plan import Plan\n",
            "mmt_upgrade/pipeline/plan.py": "import mmt_upgrade.pipeline.report as report\n"}
    assert violations(tree) == ["import cycle: mmt_upgrade.pipeline.plan -> mmt_upgrade.pipeline.report -> "
                                "mmt_upgrade.pipeline.run -> mmt_upgrade.pipeline.plan"]
    tree["mmt_upgrade/pipeline/train.py"] += "from mmt_upgrade.pipeline.report import f\n"
    tree["mmt_upgrade/pipeline/run.py"] += "import mmt_upgrade.pipeline.train\n"
    found = violations(tree)
    assert found == ["import cycle: mmt_upgrade.pipeline.train -> mmt_upgrade.pipeline.report -> "
                     "mmt_upgrade.pipeline.run -> mmt_upgrade.pipeline.train (also tied in: mmt_upgrade.pipeline.plan)"]
    assert violations({**BASE, "mmt_upgrade/core/errors.py": "from mmt_upgrade.core.spm import x\n"}) == [
        "import cycle: mmt_upgrade.core.spm -> mmt_upgrade.core.errors -> mmt_upgrade.core.spm"]


def test_relative_imports_resolve_from_the_package():
    assert imported_names("import x.y\nfrom . import a\nfrom ..b import c\n", "p.q.m", False) == {
        "x.y", "p.q:a", "p.b:c"}
    assert imported_names("from . import a\n", "p.q", True) == {"p.q:a"}
    assert import_graph({"p/__init__.py": "from . import a, b\n", "p/a.py": "from p import b, VALUE\n",
                         "p/b.py": ""}) == {"p": {"p.a", "p.b"}, "p.a": {"p", "p.b"}, "p.b": set()}
