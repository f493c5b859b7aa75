"""The layering rules of CONTRIBUTING.md, checked on the source: who may import whom, and no import circles.

Every ``import`` in the project's packages counts, also those inside functions (a lazy import still
ties two modules together). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "db", "studio", "train", "bench")
STDLIB = set(sys.stdlib_module_names)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything ``name`` imports (project modules resolved to the module imported)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in MODULES else mod)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package, forbidden", [
    ("models", {"gradio", "sqlalchemy", "alembic", "studio", "train", "db", "bench"}),
    ("train", {"gradio", "sqlalchemy", "studio", "db", "bench"}),
    ("studio", {"bench"}),
])
def test_package_never_imports(package: str, forbidden: set[str]) -> None:
    bad = sorted(f"{m} imports {i}" for m, imps in GRAPH.items() if _top(m) == package
                 for i in imps if _top(i) in forbidden)
    assert not bad, bad


def test_db_imports_only_sqlalchemy_alembic_and_the_standard_library() -> None:
    allowed = STDLIB | {"sqlalchemy", "alembic", "db", "__future__"}
    bad = sorted(f"{m} imports {i}" for m, imps in GRAPH.items() if _top(m) == "db"
                 for i in imps if _top(i) not in allowed)
    assert not bad, bad


def test_the_ui_runs_models_only_through_the_service_function() -> None:
    """The studio never builds or calls an architecture itself: it goes through ``models.enhance``."""
    bad = sorted(f"{m} imports {i}" for m, imps in GRAPH.items() if _top(m) == "studio"
                 for i in imps if i.startswith(("models.arch", "models.zoo")))
    bad += sorted(m for m, path in MODULES.items() if _top(m) == "studio" and "load_network" in path.read_text())
    assert not bad, bad


def test_no_import_circle() -> None:
    project = {m: {i for i in imps if i in MODULES and i != m} for m, imps in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(project[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(project):
        if m not in state:
            visit(m, [])
    assert not cycles, [" -> ".join(c) for c in cycles]
