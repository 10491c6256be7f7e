"""The library's shape (docs/decisions/0003-layout.md): every package a layer of the import contract,
the contracts kept, modules and functions small enough to read in one sitting."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from smartcity.platform.params import project_root

LIBRARY = project_root() / "lib" / "smartcity"
#: A module longer than this is two modules; a function longer than this is two functions.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_every_package_of_the_library_is_a_layer_of_the_import_contract() -> None:
    config = tomllib.loads((project_root() / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    parts = {p.stem for p in LIBRARY.glob("*.py")} | {p.name for p in LIBRARY.iterdir() if (p / "__init__.py").exists()}
    assert sorted(f"smartcity.{p}" for p in parts - {"__init__", "__main__"}) == sorted(layers)
    assert layers[0] == "smartcity.ops" and layers[-1] == "smartcity.platform", "ops on top, platform under all"


def test_readme_and_the_layout_note_name_every_layer_in_the_contracts_order() -> None:
    """README's layout block and 0003-layout.md's table list the layers top-down, as the contract does."""
    config = tomllib.loads((project_root() / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    names = [layer.removeprefix("smartcity.") for layer in layers]
    block = (project_root() / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    entries = [m.group(1) for m in re.finditer(r"^  (\S+)", block, re.MULTILINE)]  # lib/smartcity's children
    in_readme = [e.removesuffix("/").removesuffix(".py") for e in entries]
    assert in_readme == names
    note = (project_root() / "docs" / "decisions" / "0003-layout.md").read_text()
    rows = [row.split("`")[1] for row in note.splitlines() if row.startswith("| `")]
    in_note = [r.removesuffix("/").removesuffix(".py") for r in rows]
    assert in_note == names


def test_the_import_contracts_hold() -> None:
    """Layers import only the layers below them, and no package's modules import each other in a circle
    (imports inside functions count)."""
    found = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stdout + found.stderr


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in modules():
        source = path.read_text()
        where = path.relative_to(LIBRARY.parent)
        if (lines := source.count("\n")) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "split these:\n" + "\n".join(too_long)
