"""The code's own layout, as CONTRIBUTING.md states it: every module imports only from its own
layer or the ones below (helpers < config < models < stages < tools), and functions stay short
enough to read at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO

# From the bottom up. A module's layer is that of the first pattern it matches (a pattern ending
# in "." matches a package and its modules).
LAYERS = {
    "helpers": (
        "pipeline.errors", "pipeline.files", "pipeline.progress", "pipeline.images", "pipeline.labelmaps",
        "pipeline.devices", "pipeline.shards", "pipeline.layout", "pipeline.cli", "pipeline.distributed",
        "pipeline.health", "pipeline.metrics", "pipeline.replicates",
        "pipeline.download", "pipeline.training_log", "pipeline.pairs", "pipeline.positions",
        "pipeline.launch",
        "pipeline.models.architecture", "pipeline",
    ),
    "config": ("pipeline.config",),
    "models": ("pipeline.models.",),
    "stages": (
        "pipeline.data.", "pipeline.parse.", "pipeline.demo.", "pipeline.train", "pipeline.synthesize",
        "pipeline.evaluate", "pipeline.table", "pipeline.fid", "pipeline.protocol", "pipeline.__main__",
        "pipeline.training_figure",
    ),
    "tools": ("pipeline.editor.", "benchmarks."),
}  # fmt: skip
FUNCTION_LINES = 65
TRAINING_LOOP_LINES = 40


def layer(module: str) -> int:
    for index, patterns in enumerate(LAYERS.values()):
        if any(module == p[:-1] or module.startswith(p) if p.endswith(".") else module == p for p in patterns):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_house.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    paths = [*(REPO / "pipeline").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    return {module_name(path): path for path in paths}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in it (`from a import b` imports a.b where that
    is a module, else a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return found & known


def test_no_module_imports_one_above_it():
    modules = project_modules()
    upward = []
    for name, path in modules.items():
        for imported in imported_modules(path, set(modules)):
            if layer(imported) > layer(name):
                names = list(LAYERS)
                upward.append(f"{name} ({names[layer(name)]}) imports {imported} ({names[layer(imported)]})")
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize(
    "package, forbidden", [("pipeline.data", "pipeline.demo"), ("pipeline.evaluate", "pipeline.train")]
)
def test_a_stage_does_not_import_what_it_should_not_need(package, forbidden):
    """The data sources need no demo, and the evaluation reads a training log without the trainer."""
    modules = project_modules()
    for name, path in modules.items():
        if name == package or name.startswith(package + "."):
            imported = imported_modules(path, set(modules))
            assert not {m for m in imported if m == forbidden or m.startswith(forbidden + ".")}, name


def test_functions_are_short_and_the_training_loop_reads_at_once():
    long = []
    for name, path in project_modules().items():
        if not name.startswith("pipeline"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                limit = TRAINING_LOOP_LINES if (name, node.name) == ("pipeline.train", "train_loop") else FUNCTION_LINES
                if lines > limit:
                    long.append(f"{name}.{node.name}: {lines} lines (at most {limit})")
    assert not long, "\n".join(long)
