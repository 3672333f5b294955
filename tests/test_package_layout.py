"""The package's shape: rooms on floors (a module imports only its own floor and those below),
no import cycles, short modules (or a stated reason, and never over the hard limit)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fashion_search"
MAX_LINES = 300
HARD_MAX_LINES = 350
MAX_SEARCH_TOP_MODULES = 10
# Each room and its floor, lowest first: a module may import modules of its own floor and below.
# A module's room is the longest of these names its own name starts with.
FLOORS = {
    "fashion_search": 0,                   # the core: parameters, photos, colour, backbone specs, metrics, files
    "fashion_search.data": 1,              # catalogues
    "fashion_search.models": 2,            # building, training and shipping models
    "fashion_search.search.embedding": 3,  # photos to vectors
    "fashion_search.search.index": 4,      # the index on disk (and the model identity it records)
    "fashion_search.search": 5,            # the query core: engine, contact sheet
    "fashion_search.search.serving": 6,    # HTTP and the web page
    "fashion_search.search.commands": 7,   # the doors: the CLI's engine commands, the JupyterLab panel
    "fashion_search.search.widget": 7,
    "fashion_search.pipeline": 8,          # the notebooks' stages (notebook 06 shows the engine)
    "fashion_search.cli": 9,               # the one command tree over both wings
}


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


def room(name: str) -> str:
    """The room a module belongs to: the longest name in :data:`FLOORS` it starts with."""
    return max((r for r in FLOORS if name == r or name.startswith(r + ".")), key=len)


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
    assert lines <= HARD_MAX_LINES, f"{name}: {lines} lines; cut it along a seam"


def test_no_module_imports_a_floor_above_its_own():
    upward = sorted(f"{a} (floor {FLOORS[room(a)]}) imports {b} (floor {FLOORS[room(b)]})"
                    for a, targets in GRAPH.items() for b in targets if FLOORS[room(b)] > FLOORS[room(a)])
    assert not upward


def test_every_sub_package_is_a_named_room():
    """A new sub-package is given its floor here before it is used."""
    packages = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert packages - set(FLOORS) == set()


def test_the_search_package_keeps_its_jobs_in_rooms():
    top = [p.name for p in (PACKAGE / "search").glob("*.py")]
    assert len(top) <= MAX_SEARCH_TOP_MODULES, sorted(top)
