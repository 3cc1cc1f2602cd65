"""Lower layers never import higher ones, and every module imports on its own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lmforge"
# Lowest first. A module may import from its own layer and the ones before it.
LAYERS = [
    ["errors", "files", "packages", "__init__"],
    ["config"],
    ["data", "metrics"],
    ["models"],
    ["vision"],
    ["decode"],
    ["tasks"],
    ["evaluate"],
    ["methods"],
    ["train"],
    ["serve"],
    ["runs"],
    ["recipes"],
    ["cli", "cli_flags", "cli_params"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def layer_of(path: Path) -> str:
    part = path.relative_to(PACKAGE).parts[0]
    return part.removesuffix(".py")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = RANK[layer_of(path)]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmforge."):
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("lmforge.")]
        for name in names:
            target = name.split(".")[1]
            assert RANK[target] <= own, f"{path.name} ({layer_of(path)}) imports {name} from a higher layer"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_imports(path):
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    importlib.import_module(".".join(relative.parts).removesuffix(".__init__"))


def import_graph() -> dict[str, set[str]]:
    """Module → the lmforge modules it imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmforge"):
                found = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                         for a in node.names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.startswith("lmforge")]
            for target in found:
                while target not in names and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in names and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def test_no_import_cycle_inside_the_package():
    graph, cycles = import_graph(), []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2
    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)
