"""The notebooks in git: no outputs, one literal parameters cell declaring exactly its stage's RunConfig fields."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from recsys_utils.config import NOTEBOOK_STEMS, RunConfig
from recsys_utils.models.keras.train import TrainParams
from recsys_utils.runs.pipeline import PIPELINE_PARAMETERS, notebooks_dir

NOTEBOOKS = [notebooks_dir() / f"{stem}.ipynb" for stem in NOTEBOOK_STEMS]


def notebook_parameters(path: Path) -> dict:
    """Name -> literal value of each assignment in the notebook's parameters cell, read here with ast."""
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    tree = ast.parse(cell.source)
    return {t.id: ast.literal_eval(node.value) for node in tree.body for t in node.targets}


def test_the_five_numbered_notebooks_exist():
    found = sorted(p.name for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert found == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell carries outputs"
            assert cell.execution_count is None, f"{path.name}: a code cell carries an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_layout_title_imports_then_parameters(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.cells[1].cell_type == "code" and "import" in nb.cells[1].source
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [2], f"{path.name}: expected the third cell, and only it, tagged 'parameters'"
    tree = ast.parse(nb.cells[2].source)
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds a non-assignment"
        ast.literal_eval(node.value)  # plain literals only


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_defaults_match_run_config(path: Path):
    params = notebook_parameters(path)
    defaults = RunConfig().to_dict()
    assert "run_dir" in params
    for name, value in params.items():
        if name in PIPELINE_PARAMETERS:
            continue
        assert name in defaults, f"{path.name} declares {name}, which RunConfig lacks"
        assert value == defaults[name], f"{path.name}: {name} = {value!r}, RunConfig says {defaults[name]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_declares_exactly_the_parameters_of_its_stage(path: Path):
    declared = [name for name in notebook_parameters(path) if name not in PIPELINE_PARAMETERS]
    assert sorted(declared) == sorted(RunConfig.stage_names(path.stem))
    assert RunConfig().for_notebook(path.stem) == {name: notebook_parameters(path)[name] for name in declared}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_declared_parameter(path: Path):
    import papermill as pm

    assert set(pm.inspect_notebook(str(path))) == set(notebook_parameters(path))


def test_every_run_parameter_is_used_by_some_notebook():
    declared = set().union(*(notebook_parameters(p) for p in NOTEBOOKS))
    assert set(RunConfig.names()) <= declared
    assert all(RunConfig.stage_names(stem) for stem in NOTEBOOK_STEMS)


def test_training_defaults_are_written_once():
    # RunConfig and notebook 03 agree with TrainParams, the one place the defaults are written
    declared = notebook_parameters(notebooks_dir() / "03_training.ipynb")
    for name, value in vars(TrainParams()).items():
        value = list(value) if isinstance(value, tuple) else value  # a grid: a list in notebooks and RunConfig
        if name in declared:
            assert declared[name] == value, name
            assert getattr(RunConfig(), name) == value, name
