"""`python -m smartcity run`: the six notebooks end to end, the report, and failure handling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import yaml

from smartcity.catalog import crawler as catalog
from smartcity import params as config
from smartcity.platform import kafka
from smartcity.stream import lake
from smartcity.platform import postgres
from smartcity.warehouse import load
from smartcity.ops import runner
from smartcity.params import TOPICS, ParamsError
from smartcity.platform.processes import port_open
from tests.conftest import lab_params

pytestmark = pytest.mark.integration


def write_params(root: Path, **overrides: object) -> tuple[Path, config.Params]:
    cfg = lab_params(root, **overrides)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return path, cfg


def engines_using(folder: Path) -> list[str]:
    """Processes whose command line mentions a folder: the engines a run started there."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(folder) in cmd and proc.info["pid"] != os.getpid():
            found.append(f"{proc.info['pid']}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> runner.RunResult:
    params, _ = write_params(tmp_path_factory.mktemp("run"))
    return runner.run(params)


def test_the_report_links_every_notebook_and_the_maps(finished_run: runner.RunResult) -> None:
    cfg = finished_run.cfg
    index = finished_run.index
    assert index is not None and index.exists()
    page = index.read_text()
    for name in config.NOTEBOOKS:
        executed = cfg.output_path / "notebooks" / f"{name}.ipynb"
        book = nbformat.read(executed, as_version=4)
        assert all(o.output_type != "error" for c in book.cells if c.cell_type == "code" for o in c.outputs)
        assert f'href="html/{name}.html"' in page and (cfg.output_path / "html" / f"{name}.html").exists()
    journey = cfg.output_path / "maps" / "journey.html"
    assert journey.stat().st_size > 10_000 and 'href="maps/journey.html"' in page
    assert "exactly once" in page and finished_run.problems == []


def test_every_stage_holds_every_produced_event_once(finished_run: runner.RunResult) -> None:
    cfg = finished_run.cfg
    with kafka.ensure_broker(cfg) as broker:  # restarts the run's broker on its data
        in_kafka = kafka.topic_counts(broker.bootstrap)
    in_lake = {t: lake.count_rows(lake.data_files(lake.table_path(cfg, t))) for t in TOPICS}
    in_catalog = {t: n for t, n in catalog.view_counts(cfg).items() if t in TOPICS}
    with postgres.ensure_warehouse(cfg) as warehouse:
        in_warehouse = load.warehouse_counts(warehouse)
    assert sum(in_kafka.values()) > 5000
    assert in_kafka == in_lake == in_catalog == in_warehouse


def test_no_engine_outlives_the_run(finished_run: runner.RunResult) -> None:
    assert engines_using(finished_run.cfg.data_path) == []


def test_invalid_params_fail_before_anything_starts(tmp_path: Path) -> None:
    params = tmp_path / "bad.yaml"
    params.write_text("profile: x\nvehicles: many\n")
    with pytest.raises(ParamsError, match="parameter 'vehicles' must be int"):
        runner.run(params)
    assert not (tmp_path / "outputs").exists()
    result = subprocess.run(
        [sys.executable, "-m", "smartcity", "run", "--params", str(params)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "parameter 'vehicles' must be int" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "smartcity", "run", "--params", str(tmp_path / "nope.yaml")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "params file not found" in missing.stderr


def test_a_failing_notebook_is_named_and_kept(tmp_path: Path) -> None:
    params, cfg = write_params(tmp_path)
    # 04 needs the catalog that 03 writes: on a fresh data folder it fails, in a known cell
    with pytest.raises(runner.RunError, match=r"notebook 04_athena failed in cell \d+ .*FileNotFoundError.*run 03_catalog first"):
        runner.run(params, notebooks=("04_athena",))
    kept = nbformat.read(cfg.output_path / "notebooks" / "04_athena.ipynb", as_version=4)
    assert any(o.output_type == "error" for c in kept.cells if c.cell_type == "code" for o in c.outputs)
    assert "failed" in (cfg.output_path / "index.html").read_text()
    cli = subprocess.run(
        [sys.executable, "-m", "smartcity", "run", "--params", str(params), "--notebooks", "04_athena"],
        capture_output=True, text=True,
    )
    assert cli.returncode == 1
    assert "notebook 04_athena failed in cell" in cli.stderr and "executed notebook is kept at" in cli.stderr


def test_ctrl_c_stops_every_engine(tmp_path: Path) -> None:
    params, cfg = write_params(tmp_path)
    host, port = cfg.kafka_host_port
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "run", "--params", str(params)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
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
    while engines_using(cfg.data_path) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert engines_using(cfg.data_path) == []
