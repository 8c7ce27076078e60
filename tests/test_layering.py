"""invrob's layering: no import cycles, and no module importing a module of a higher layer.

Read from the source with ``ast`` (module-level and function-level imports alike: an
import deferred into a function to dodge a cycle is still an upward dependency).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "invrob"

# Lower layers first; a module may import its own layer or any layer below.
LAYERS = [
    {"errors", "utils"},
    {"data", "metrics", "stats", "trend", "pareto", "theory"},
    {"rotations", "transforms", "models"},
    {"attacks", "measures"},
    {"train", "geometry", "stacked"},
    {"experiments", "plots", "gates"},
    {"studies", "profiles"},
    {"tooling"},  # runbook, regression, sweep, cli, budget: the machinery around the science
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports() -> dict[str, set[str]]:
    """Top-level invrob module -> the top-level invrob modules it imports."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        module = parts[0] if parts[0] != "__init__" else "__init__"
        depth = len(parts) - 1  # how many packages deep the file is below invrob/
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level > depth:  # reaches invrob/ itself: the first name is a top-level module
                    targets = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                    edges.setdefault(module, set()).update(targets)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("invrob."):
                edges.setdefault(module, set()).add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                edges.setdefault(module, set()).update(
                    a.name.split(".")[1] for a in node.names if a.name.startswith("invrob."))
    return {m: {t for t in ts if t != m} for m, ts in edges.items()}


def test_every_module_has_a_layer():
    modules = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.iterdir()
               if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert modules - {"__init__", "__main__"} <= set(LAYER), sorted(modules - set(LAYER) - {"__init__"})


def test_no_module_imports_a_higher_layer():
    upward = [f"{m} (layer {LAYER[m]}) imports {t} (layer {LAYER[t]})"
              for m, targets in _imports().items() if m in LAYER
              for t in targets if t in LAYER and LAYER[t] > LAYER[m]]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = _imports()
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            pytest.fail("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in seen:
            return
        stack.append(node)
        for target in edges.get(node, ()):
            visit(target)
        stack.pop()
        seen.add(node)

    for module in list(edges):
        visit(module)
