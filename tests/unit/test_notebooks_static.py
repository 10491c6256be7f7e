"""The notebooks' shape: thin, one parameters cell, defaults equal to the local profile."""

from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from smartcity import params as config

NOTEBOOK_DIR = config.project_root() / "notebooks"


def test_the_six_notebooks_exist_in_order() -> None:
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(config.NOTEBOOKS)


@pytest.mark.parametrize("name", config.NOTEBOOKS)
def test_notebook_is_thin_and_parameterised(name: str) -> None:
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert book.cells[0].cell_type == "markdown", "a notebook opens by explaining itself"
    for cell in code:
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, f"no function or class definitions in notebooks: {cell.source[:60]}"
        assert "import " not in cell.source or "from smartcity import" in cell.source, "notebooks call lib/smartcity"
    # every parameter is a lab parameter, typed, commented, with the local profile's default
    declared = papermill.inspect_notebook(str(path))
    defaults = config.Params()
    for pname, spec in declared.items():
        assert pname in config.PARAM_TYPES, f"{pname} is not a lab parameter"
        assert spec["inferred_type_name"] == config.PARAM_TYPES[pname].__name__
        assert spec["help"], f"parameter {pname} needs a comment"
        assert ast.literal_eval(spec["default"]) == getattr(defaults, pname)
    assert "profile" in declared


@pytest.mark.parametrize("name", config.NOTEBOOKS)
def test_stored_outputs_have_no_errors_and_no_absolute_paths(name: str) -> None:
    text = (NOTEBOOK_DIR / f"{name}.ipynb").read_text()
    book = nbformat.reads(text, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None, "stored notebooks are executed (nbval compares outputs)"
            assert all(o.output_type != "error" for o in cell.outputs)
    assert str(config.project_root()) not in text, "outputs must not depend on where the lab is cloned"
    assert "Traceback" not in text
