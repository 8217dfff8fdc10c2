"""Conda environments and rule declarations: `--use-conda` cannot run offline here, so check
that every rule names an env file, that the env holds every third-party package its stage's
code imports at the version pyproject.toml pins, and that every rule declares what a cluster
scheduler needs."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

import pytest
import yaml
from support import REPO, rule_blocks

# Import name or pip distribution name -> conda-forge package name, where they differ.
CONDA_NAMES = {"PIL": "pillow", "yaml": "pyyaml", "torch": "pytorch", "snakemake": "snakemake-minimal", "cv2": "opencv",
               "pytorch_fid": "pytorch-fid", "opencv-python": "opencv"}


def rules() -> list[tuple[str, str, str]]:
    """(rule name, conda env path, stage module) for each rule in workflow/rules."""
    found = []
    for name, block in rule_blocks().items():
        conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
        module = re.search(r"(?:python|\{params\.launcher\}) -m (pipeline\.\w+)", block)  # launcher: python or torchrun
        assert conda and module, f"rule {name} needs a conda env and a pipeline CLI"
        found.append((name, str((REPO / "workflow" / "rules" / conda.group(1)).resolve()), module.group(1)))
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


def dependency_versions(env: dict) -> dict[str, str]:
    """Package name -> pinned version (or "" when unpinned), of the conda dependencies and the
    pip section; conda pins read `name =1.2.3`, pip pins `name==1.2.3`."""
    deps = []
    for dep in env["dependencies"]:
        deps.extend(dep.get("pip", []) if isinstance(dep, dict) else [dep])
    versions = {}
    for dep in deps:
        match = re.fullmatch(r"([\w.-]+)\s*(?:==?\s*([\w.]+))?", dep.strip())
        assert match, f"dependency {dep!r}: expected an exact pin (`name =1.2.3` or `name==1.2.3`) or a bare name"
        versions[match.group(1)] = match.group(2) or ""
    return versions


def pyproject_pins() -> dict[str, str]:
    """pyproject.toml's runtime dependencies and its optional `tensorboard` one (the torch env
    holds it for training.tensorboard): conda-forge name -> pinned version."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for dep in [*project["dependencies"], *project["optional-dependencies"]["tensorboard"]]:
        name, version = dep.split("==")
        pins[CONDA_NAMES.get(name, name)] = version
    return pins



def test_every_rule_has_a_stage_and_an_env():
    assert rules(), "no rules found"


@pytest.mark.parametrize("rule, env_path, module", rules())
def test_env_holds_what_the_stage_imports(rule, env_path, module):
    env = yaml.safe_load(open(env_path))
    assert "conda-forge" in env["channels"]
    deps = dependency_versions(env)
    assert "python" in deps
    missing = {CONDA_NAMES.get(name, name) for name in third_party_imports(module)} - deps.keys()
    assert not missing, f"rule {rule}: {env_path} lacks {sorted(missing)}"


@pytest.mark.parametrize("env_path", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_the_versions_pyproject_pins(env_path):
    pins = pyproject_pins()
    for name, version in dependency_versions(yaml.safe_load(open(env_path))).items():
        if name in ("python", "pip"):
            continue
        assert name in pins, f"{env_path.name}: {name} is not a dependency in pyproject.toml"
        # pip's opencv-python adds a build number to the OpenCV release conda-forge names.
        assert version and pins[name].startswith(version), (
            f"{env_path.name}: {name} ={version or '(unpinned)'}, pyproject.toml pins {pins[name]}"
        )


def test_pyproject_pins_every_runtime_dependency():
    for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        assert re.fullmatch(r"[\w-]+==[\w.]+", dep), f"pyproject.toml: {dep!r} is not pinned exactly"


@pytest.mark.parametrize("rule", sorted(rule_blocks()))
def test_rule_declares_log_benchmark_threads_and_resources(rule):
    block = rule_blocks()[rule]
    for directive in ("log:", "benchmark:", "threads:", "resources:", "mem_mb=", "runtime="):
        assert directive in block, f"rule {rule} lacks {directive}"
    uses_gpu = rule in {"parse_shard", "train", "synthesize", "real_stats", "resegment", "evaluate"}
    assert ("gpu=" in block) == uses_gpu, f"rule {rule}: gpu resource declared {'gpu=' in block}, expected {uses_gpu}"
