"""`python -m smartcity run`: bad params, a failing notebook, Ctrl-C.

The six notebooks end to end through the runner, its report and its counts are checked on the
cluster profile's run (tests/integration/test_cluster.py), the one full run the tests make through
the runner besides the AWS profile's; `pytest --nbval` runs the notebooks on the local profile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from smartcity.ops import runner
from smartcity.params import Params, ParamsError
from smartcity.platform.processes import port_open
from tests.conftest import engines_using, lab_params

pytestmark = pytest.mark.integration


def write_params(root: Path, **overrides: object) -> tuple[Path, Params]:
    cfg = lab_params(root, **overrides)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return path, cfg


def test_invalid_params_fail_before_anything_starts(tmp_path: Path) -> None:
    params = tmp_path / "bad.yaml"
    params.write_text("profile: x\nvehicles: many\n")
    with pytest.raises(ParamsError, match="parameter 'vehicles' must be int"):
        runner.run(params)
    assert not (tmp_path / "outputs").exists()
    result = subprocess.run(
        [sys.executable, "-m", "smartcity", "run", "--params", str(params)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "parameter 'vehicles' must be int" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "smartcity", "run", "--params", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "params file not found" in missing.stderr


def test_a_failing_notebook_is_named_and_kept(tmp_path: Path) -> None:
    params, cfg = write_params(tmp_path)
    # 04 needs the catalog that 03 writes: on a fresh data folder it fails, in a known cell
    with pytest.raises(
        runner.RunError, match=r"notebook 04_athena failed in cell \d+ .*FileNotFoundError.*run 03_catalog first"
    ):
        runner.run(params, notebooks=("04_athena",))
    kept = nbformat.read(cfg.paths.output / "notebooks" / "04_athena.ipynb", as_version=4)
    assert any(o.output_type == "error" for c in kept.cells if c.cell_type == "code" for o in c.outputs)
    assert "failed" in (cfg.paths.output / "index.html").read_text()
    cli = subprocess.run(
        [sys.executable, "-m", "smartcity", "run", "--params", str(params), "--notebooks", "04_athena"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 1
    assert "notebook 04_athena failed in cell" in cli.stderr and "executed notebook is kept at" in cli.stderr


def test_ctrl_c_stops_every_engine(tmp_path: Path) -> None:
    params, cfg = write_params(tmp_path)
    host, port = cfg.kafka.addresses[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "run", "--params", str(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not port_open(host, port) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
        assert port_open(host, port), "the run never started its broker"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code != 0
    deadline = time.monotonic() + 30
    while engines_using(cfg.paths.data) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert engines_using(cfg.paths.data) == []
