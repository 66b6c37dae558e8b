"""pyproject.toml and environment.yml install the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml  # a dependency of papermill

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = _pyproject()
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert conda == wanted
    assert pip == [["-e .[dev]"]], "conda users install the project itself with pip -e .[dev]"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace(" ", "") == "python>=3.11"


def test_minimum_versions_agree_between_the_two_files():
    project = _pyproject()
    pins = {_name(r): r.split(">=")[1] for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    for dep in env["dependencies"]:
        if isinstance(dep, str) and _name(dep) in pins:
            assert dep.split(">=")[1] == pins[_name(dep)], dep


def test_pyproject_pins_minimum_versions_of_the_required_stack():
    project = _pyproject()
    for req in project["dependencies"]:
        assert ">=" in req, f"{req}: pin a minimum version"
    required = {"tensorflow", "pandas", "numpy", "matplotlib", "seaborn", "papermill", "nbconvert",
                "jupyterlab", "ipykernel", "pyarrow", "tqdm"}
    assert required <= {_name(r) for r in project["dependencies"]}
    assert project["requires-python"] == ">=3.11"
