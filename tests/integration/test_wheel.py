"""The library as a user installs it: a wheel built from the tracked files, installed into a fresh
virtualenv, run from a folder outside the repository. Every data file the code reads (schemas, SQL,
POMs, the Java contract check, the road network) must be in the wheel, found by the installed code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from smartcity.platform.params import project_root

pytestmark = pytest.mark.integration

#: What the installed library must do: import every module, find each data file (same bytes as the
#: repository's), write the topic schemas where it reads them from, resolve a profile.
CHECK = """
import importlib, importlib.resources, pkgutil, sys
from pathlib import Path
import smartcity
assert Path(smartcity.__file__).is_relative_to(Path(sys.prefix)), smartcity.__file__
for module in pkgutil.walk_packages(smartcity.__path__, "smartcity."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
repo = Path(sys.argv[1]) / "lib" / "smartcity"
for relative in sys.argv[2:]:  # <package>/<name>, e.g. fleet/schemas/gps_data.v2.schema.json
    package, _, name = relative.partition("/")
    found = importlib.resources.files("smartcity." + package).joinpath(name)
    assert found.read_bytes() == (repo / relative).read_bytes(), relative
print("ok", len(sys.argv) - 2, "data files")
"""


def run(args: list[str], cwd: Path, **extra: str) -> str:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, check=False, env={**extra, "PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_carries_every_data_file_and_runs_outside_the_repository(tmp_path: Path) -> None:
    root = project_root()
    tracked = run(["git", "ls-files", "-z"], root).split("\0")
    source = tmp_path / "source"
    for name in filter(None, tracked):
        if (root / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "dist"), str(source)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("smartcity-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    # the dependencies come from the lab's own virtualenv (installing them afresh would need the network)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path).strip())
    (site / "lab_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], tmp_path)

    data_files = [
        n.removeprefix("lib/smartcity/") for n in tracked if n.startswith("lib/smartcity/") and not n.endswith(".py")
    ]
    away = tmp_path / "elsewhere"
    away.mkdir()
    home = {"SMARTCITY_HOME": str(root), "HOME": str(tmp_path)}
    assert run([str(python), "-c", CHECK, str(root), *data_files], away, **home).startswith("ok")
    assert "\nvehicles " in run([str(venv / "bin" / "smartcity"), "params"], away, **home)
    run([str(venv / "bin" / "smartcity"), "schemas"], away, **home)
    written = sorted((site / "smartcity" / "fleet" / "schemas").glob("*.schema.json"))
    assert written and all(
        p.read_bytes() == (root / "lib/smartcity/fleet/schemas" / p.name).read_bytes() for p in written
    )
