"""The package's shape: no import cycles, short modules (or a stated reason), the two wings apart."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fashion_search"
MAX_LINES = 300


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def internal_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fashion_search"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found |= {node.module} & modules
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & modules
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: internal_imports(path, set(MODULES)) - {name} for name, path in MODULES.items()}


def test_no_import_cycles():
    done, active, cycles = set(), [], []

    def visit(name: str) -> None:
        active.append(name)
        for target in sorted(GRAPH[name]):
            if target in active:
                cycles.append(" -> ".join(active[active.index(target):] + [target]))
            elif target not in done:
                visit(target)
        active.pop()
        done.add(name)

    for name in sorted(GRAPH):
        if name not in done:
            visit(name)
    assert not cycles


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_short_or_say_why_not(name):
    path = MODULES[name]
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert docstring, f"{name} has no docstring"
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or "Longer than" in docstring, f"{name}: {lines} lines and no reason given"


@pytest.mark.parametrize("core", ["fashion_search.params", "fashion_search.params_file", "fashion_search.data",
                                  "fashion_search.images", "fashion_search.models.registry"])
def test_the_core_imports_neither_wing(core):
    """The shared core (parameters, catalogues, photos, the registry) depends on no wing."""
    reached, todo = set(), [core]
    while todo:
        name = todo.pop()
        for target in GRAPH[name] - reached:
            reached.add(target)
            todo.append(target)
    assert not {m for m in reached if m.startswith(("fashion_search.pipeline", "fashion_search.search"))}


def test_the_search_wing_does_not_import_the_pipeline():
    crossing = {(a, b) for a, targets in GRAPH.items() if a.startswith("fashion_search.search")
                for b in targets if b.startswith("fashion_search.pipeline")}
    assert not crossing
