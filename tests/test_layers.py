"""The package's import graph: every import (at module level, inside functions and under ``TYPE_CHECKING``)
runs from an upper layer to a lower one, and no module imports itself through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "darts_lightning"

#: The layers from the bottom up. A module may import modules of its own subpackage and of lower layers;
#: subpackages of one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("data", "spaces"),
    ("costs",),
    ("differentiable", "retrain"),
    ("discrete",),
    ("entry",),
    ("__init__", "__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, modules: set[str], is_package: bool = False) -> set[str]:
    """The package's modules that the module ``name`` (its text: ``source``) imports, anywhere in it."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p.read_text(), module_name(p), modules, p.name == "__init__.py") for p in paths}


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, top-level part) of a package module."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if module == "darts_lightning.__main__":
        top = "__main__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index, top
    raise AssertionError(f"{module} belongs to no layer: add its subpackage to LAYERS")


def test_every_module_has_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_imports_run_downwards() -> None:
    upward = []
    for module, targets in import_graph().items():
        layer, top = layer_of(module)
        for target in sorted(targets):
            target_layer, target_top = layer_of(target)
            if target_top != top and target_layer >= layer and target != "darts_lightning":
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not run to a lower layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = import_graph()
    for module in graph:  # the package's __init__ re-exports everything: leave it out of the cycles
        graph[module].discard("darts_lightning")
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checker_sees_every_kind_of_import() -> None:
    modules = {"darts_lightning.entry.cli", "darts_lightning.entry", "darts_lightning.spaces", "darts_lightning.spaces.ops"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .ops import OpSpec\n"
        "def f():\n    from darts_lightning.entry.cli import main\n"
    )
    found = imported_modules(source, "darts_lightning.spaces.edges", modules)
    assert found == {"darts_lightning.entry.cli", "darts_lightning.spaces.ops"}
