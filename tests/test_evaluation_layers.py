"""evaluation/ in layers: every module imports, no import circle (TYPE_CHECKING and function-level imports
included), and each module imports only its own layer or the layers below it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import nnunet_medsam_fusion.evaluation as evaluation

PACKAGE = evaluation.__name__
ROOT = Path(evaluation.__file__).parent
# lowest first: kernels, conventions, reading, folder evaluation, runs and comparison, rendering and writing, CLI
LAYERS = (
    ("kernels",),
    ("conventions",),
    ("reading",),
    ("folders",),
    ("provenance", "runs", "case_sets", "statistics", "comparison"),
    ("formatting", "tables", "comparison_tables", "writing", "figures"),
    ("commands",),
)


def module_names() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        names.append(".".join((PACKAGE, *parts)))
    return names


def layer_of(module: str) -> int:
    top = module[len(PACKAGE) + 1:].split(".")[0]
    if module == PACKAGE:
        return -1
    return next(rank for rank, names in enumerate(LAYERS) if top in names)


def imports_in(source: str, package: str, known: set[str]) -> set[str]:
    """The ``known`` modules that ``source`` (a module of ``package``) imports anywhere, TYPE_CHECKING included."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known}
    return found


def imported_modules(module: str, known: set[str]) -> set[str]:
    path = ROOT.joinpath(*module[len(PACKAGE) + 1:].split(".")) if module != PACKAGE else ROOT
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.is_dir() else module.rpartition(".")[0]
    return imports_in(source.read_text(), package, known) - {module}


def test_every_evaluation_module_imports_and_belongs_to_a_layer():
    for name in module_names():
        importlib.import_module(name)
        assert layer_of(name) >= -1, name


def test_evaluation_imports_flow_down_the_layers():
    names = module_names()
    graph = {name: imported_modules(name, set(names)) for name in names}
    upward = [f"{name} -> {target}" for name, targets in graph.items() for target in targets
              if layer_of(target) > layer_of(name)]
    assert not upward, f"imports from a higher layer: {upward}"


def test_evaluation_has_no_import_circle():
    names = module_names()
    graph = {name: imported_modules(name, set(names)) for name in names}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                raise AssertionError(f"import circle: {' -> '.join(path[path.index(target):] + [target])}")
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for name in names:
        if name not in state:
            visit(name, [name])


def test_the_layer_test_sees_type_checking_and_relative_imports():
    """Imports that importing a module never runs (under TYPE_CHECKING) and relative ones count too."""
    known = set(module_names())
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              f"    from {PACKAGE}.commands import evaluate_folders\n"
              "from ..folders import FolderEvaluation\n")
    assert imports_in(source, f"{PACKAGE}.conventions", known) == {f"{PACKAGE}.commands", f"{PACKAGE}.folders"}
