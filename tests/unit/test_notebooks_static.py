"""The notebooks' shape: one parameters cell with the local profile's defaults, no engine left running.

What a data scientist adds to explore (a cell importing pandas, DuckDB or pyarrow) is theirs: it
must not fail these checks.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import papermill
import pytest

from smartcity import params
from smartcity.platform.params import project_root
from smartcity.steps import NOTEBOOKS

NOTEBOOK_DIR = project_root() / "notebooks"
#: Calls that start an engine, and the call that must then end the notebook (in its last code cell).
STARTS = {
    "steps.stream_lake(": "lab.stop()",
    "steps.preview_lake(": "lab.stop()",
    "lab.spark(": "lab.stop()",
    "lab.broker(": "lab.stop()",
    "steps.open_warehouse(": "warehouse.stop()",
}


def check_notebook(path: Path) -> None:
    """Every check of a notebook's shape; raises AssertionError naming the first that fails."""
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert book.cells[0].cell_type == "markdown", "a notebook opens by explaining itself"
    for cell in code:
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, (
            f"no function or class definitions in notebooks (they belong in lib/smartcity): {cell.source[:60]}"
        )
    # every parameter is a lab parameter, typed, commented, with the local profile's default
    declared = papermill.inspect_notebook(str(path))
    defaults = params.Params().as_dict()
    for name, spec in declared.items():
        assert name in params.PARAM_TYPES, f"{name} is not a lab parameter"
        assert spec["inferred_type_name"] == params.PARAM_TYPES[name].__name__
        assert spec["help"], f"parameter {name} needs a comment"
        assert ast.literal_eval(spec["default"]) == defaults[name]
    assert "profile" in declared
    # what a notebook starts, it stops
    source = "\n".join(c.source for c in code)
    for start, stop in STARTS.items():
        if start in source:
            assert stop in code[-1].source, f"{path.name} calls {start}...): its last code cell must call {stop}"


def test_the_six_notebooks_exist_in_order() -> None:
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_thin_and_parameterised(name: str) -> None:
    check_notebook(NOTEBOOK_DIR / f"{name}.ipynb")


def _with_cell(tmp_path: Path, name: str, source: str, at: int) -> Path:
    book = json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())
    book["cells"].insert(
        at,
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "explore",
            "metadata": {},
            "outputs": [],
            "source": source,
        },
    )
    path = tmp_path / f"{name}.ipynb"
    path.write_text(json.dumps(book))
    return path


def test_a_data_scientists_exploring_cell_passes_and_a_broken_notebook_does_not(tmp_path: Path) -> None:
    explore = "import duckdb\nimport pandas as pd\nimport pyarrow.dataset as ds\n\nduckdb.sql('SELECT 1').df()"
    check_notebook(_with_cell(tmp_path, "03_catalog", explore, at=4))
    with pytest.raises(AssertionError, match="must call lab.stop"):
        check_notebook(_with_cell(tmp_path, "02_stream", "steps.preview_lake(lab, 'gps_data')", at=1_000))
    with pytest.raises(AssertionError, match="is not a lab parameter"):
        book = json.loads((NOTEBOOK_DIR / "04_athena.ipynb").read_text())
        cell = next(c for c in book["cells"] if "parameters" in c["metadata"].get("tags", []))
        cell["source"] = ['profile: str = "local"  # run name\n', "speed_limit: int = 3  # not one of the lab's\n"]
        (tmp_path / "bad.ipynb").write_text(json.dumps(book))
        check_notebook(tmp_path / "bad.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_outputs_have_no_errors_and_no_absolute_paths(name: str) -> None:
    text = (NOTEBOOK_DIR / f"{name}.ipynb").read_text()
    book = nbformat.reads(text, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None, "stored notebooks are executed (nbval compares outputs)"
            assert all(o.output_type != "error" for o in cell.outputs)
    assert str(project_root()) not in text, "outputs must not depend on where the lab is cloned"
    assert "Traceback" not in text
