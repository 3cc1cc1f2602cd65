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
    ["decode", "tuning"],
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
