"""ARCHITECTURE.md's layering: a module imports only from its own layer or the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cadence"
# ``checks`` (argument checks, plain Python) sits below every layer.
LAYERS = {"checks": 0, "schedule": 1, "optim": 2, "nn": 3, "data": 4, "metrics": 5, "track": 6, "train": 7,
          "config": 8, "experiments": 8, "cli": 8, "serve": 8, "__main__": 8}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if parts[0] == "cadence" and len(parts) > 1 else None


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    own = LAYERS[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
    upward = [m for m in imported_modules(path) if (layer_of(m) or 0) > own]
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {own}) imports from a higher layer: {upward}"


def test_every_layer_has_its_folder():
    for name in LAYERS:
        assert (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file(), name
