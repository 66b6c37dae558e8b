"""The package's shape: modules import each other in one direction, no circle, TensorFlow only on demand.

The layers, lowest first (docs/ARCHITECTURE.md draws the same picture): a module may import
modules of its own layer's package and of lower layers, never of a higher one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recsys_utils"

#: Rank of each top-level part of the package; a module imports only ranks at or below its own.
LAYERS = {
    "constants": 0,
    "errors": 0,
    "io": 1,
    "plots": 1,
    "tables": 1,
    "data": 2,
    "models": 3,
    "retrieval": 4,
    "evaluation": 4,
    "spark": 4,
    "explore": 5,
    "config": 6,
    "runs": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 9,
}

#: The most lines a module may hold before it is split by concern.
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def part(module: str) -> str:
    """The top-level part a module belongs to: ``recsys_utils.models.keras.train`` -> ``models``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported package module, inside a function?) for every import of ``recsys_utils`` in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module == "recsys_utils" or child.module.startswith("recsys_utils."):
                    for alias in child.names:  # `from recsys_utils.data import sample` imports a module
                        sub = f"{child.module}.{alias.name}"
                        found.append((sub if sub in MODULES else child.module, inner))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("recsys_utils"))
            visit(child, inner)

    visit(tree, False)
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_every_part_of_the_package_has_a_layer():
    assert {part(m) for m in MODULES} <= set(LAYERS), "add the new part to LAYERS and docs/ARCHITECTURE.md"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    upward = [target for target, _ in GRAPH[module] if LAYERS[part(target)] > LAYERS[part(module)]]
    assert not upward, f"{module} imports the higher layer(s) {upward}"
    sideways = [t for t, _ in GRAPH[module]
                if LAYERS[part(t)] == LAYERS[part(module)] and part(t) != part(module)]
    assert not sideways, f"{module} imports {sideways}, another part of its own layer"


def test_no_import_circle():
    edges = {m: {t for t, _ in GRAPH[m] if t in MODULES and t != m} for m in MODULES}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m, [m])


def test_no_function_local_imports_of_the_package():
    # TensorFlow stays off light paths because the Keras modules import it inside functions
    # (models.keras.layers.import_keras), not because callers defer importing package modules.
    local = {m: [t for t, nested in GRAPH[m] if nested] for m in MODULES}
    assert {m: ts for m, ts in local.items() if ts} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    n = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines: split it by concern"


def test_importing_every_module_loads_no_heavy_framework():
    # nor the reports' renderer (nbconvert), the browser test's driver (playwright) or Spark
    code = ("import importlib, sys\n"
            f"for name in {sorted(set(MODULES) - {'recsys_utils.__main__'})!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'papermill', 'faiss', 'playwright', 'nbconvert', "
            "'pyspark', 'py4j') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
