"""Conda environments: `--use-conda` cannot run offline here, so check that every rule names an
env file and that the env holds every third-party package its stage's code imports."""

from __future__ import annotations

import ast
import re
import sys

import pytest
import yaml
from conftest import REPO

# Import name -> conda-forge package name, where they differ.
CONDA_NAMES = {"PIL": "pillow", "yaml": "pyyaml", "torch": "pytorch", "snakemake": "snakemake-minimal", "cv2": "opencv",
               "pytorch_fid": "pytorch-fid"}


def rules() -> list[tuple[str, str, str]]:
    """(rule name, conda env path, stage module) for each rule in workflow/rules."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=(?:rule|checkpoint) )", smk.read_text(), flags=re.M)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)
            if "shell:" not in block:
                continue  # a target rule that only gathers inputs runs nothing
            conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            module = re.search(r"python -m (pipeline\.\w+)", block)
            assert conda and module, f"rule {name} in {smk.name} needs a conda env and a pipeline CLI"
            found.append((name, str((smk.parent / conda.group(1)).resolve()), module.group(1)))
    return found


def third_party_imports(module: str) -> set[str]:
    """Top-level names of non-stdlib, non-pipeline imports reachable from `module`."""
    seen, todo, names = set(), [module], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        path = REPO / current.replace(".", "/")
        if path.is_dir():  # a package runs its __init__; the stage's own package also its __main__
            files = [f for f in (path / "__init__.py", path / "__main__.py") if f.is_file()]
            if current != module:
                files = files[:1]
        else:
            files = [path.with_suffix(".py")] if path.with_suffix(".py").is_file() else []
        for file in files:
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    imported = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    # `from pipeline.x import y`: y may be a submodule; a name that is not one is skipped
                    imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                    if not node.module.startswith("pipeline"):
                        imported = imported[:1]
                else:
                    continue
                for name in imported:
                    if name.startswith("pipeline"):
                        todo.append(name)
                    elif name.split(".")[0] not in sys.stdlib_module_names and name != "__future__":
                        names.add(name.split(".")[0])
    return names


def dependency_names(env: dict) -> set[str]:
    """Package names of the conda dependencies and of the pip section, if any."""
    deps = []
    for dep in env["dependencies"]:
        deps.extend(dep.get("pip", []) if isinstance(dep, dict) else [dep])
    return {re.split(r"[\s=<>!]", dep, maxsplit=1)[0] for dep in deps}


def test_every_rule_has_a_stage_and_an_env():
    assert rules(), "no rules found"


@pytest.mark.parametrize("rule, env_path, module", rules())
def test_env_holds_what_the_stage_imports(rule, env_path, module):
    env = yaml.safe_load(open(env_path))
    assert "conda-forge" in env["channels"]
    deps = dependency_names(env)
    assert "python" in deps
    missing = {CONDA_NAMES.get(name, name) for name in third_party_imports(module)} - deps
    assert not missing, f"rule {rule}: {env_path} lacks {sorted(missing)}"
