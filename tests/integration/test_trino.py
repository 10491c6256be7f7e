"""query_engine: trino — the six notebooks on Athena's own engine, and DuckDB checked against it.

One run of the six notebooks through the runner on a Trino profile (03 registers the lake's tables
in Trino's metastore, 04 runs the SQL files unchanged on Trino). On its lake, every Athena query
then runs on DuckDB (transpiled) and on Trino (as written), and the results must agree
(:mod:`smartcity.query.crosscheck` states the tolerance). Trino stops with whatever started it:
after the run, when its parent is killed (a notebook kernel that dies) and on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import nbformat
import pytest
import yaml

from smartcity import steps
from smartcity.catalog import crawler
from smartcity.ops import runner
from smartcity.params import Params
from smartcity.platform import trino
from smartcity.platform.params import project_root
from smartcity.platform.processes import EngineError, free_port, port_open
from smartcity.query import athena
from smartcity.steps import TABLES
from tests.conftest import engines_using, lab_params

pytestmark = pytest.mark.integration


def trino_params(root: Path) -> tuple[Params, Path]:
    cfg = lab_params(root, profile="local-trino", query_engine="trino", trino_port=free_port())
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return cfg, path


@pytest.fixture(scope="module")
def trino_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, runner.RunResult]:
    """``smartcity run`` on a Trino profile: the six notebooks, once for the tests below."""
    cfg, path = trino_params(tmp_path_factory.mktemp("trino"))
    return cfg, runner.run(path)


@pytest.fixture(scope="module")
def lab(trino_run: tuple[Params, runner.RunResult]) -> Iterator[steps.Lab]:
    """The run's lab, its Trino started again (the run's stopped with its notebooks)."""
    lab = steps.open_lab(trino_run[0])
    try:
        yield lab
    finally:
        lab.stop()


def test_the_six_notebooks_run_on_trino_and_04_says_so(trino_run: tuple[Params, runner.RunResult]) -> None:
    cfg, result = trino_run
    assert result.problems == [], result.problems
    book = nbformat.read(cfg.paths.output / "notebooks" / "04_athena.ipynb", as_version=4)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in book.cells for o in c.get("outputs", []))
    assert f"Trino {trino.VERSION}" in text
    catalog = nbformat.read(cfg.paths.output / "notebooks" / "03_catalog.ipynb", as_version=4)
    assert "rows through Trino" in str(catalog.cells)
    assert engines_using(cfg.paths.trino) == [], "the run's Trino stopped with its notebooks"
    assert not (project_root() / "notebooks" / "var").exists(), "Trino wrote nothing where the kernels run"


def test_every_athena_query_agrees_on_duckdb_and_trino(lab: steps.Lab) -> None:
    checked = steps.crosscheck_queries(lab)
    assert list(checked.index) == athena.list_queries() and "trino s" in checked.columns
    assert (checked["rows"] > 0).all(), checked
    assert (checked["differences"] == "").all(), checked.to_string()


def test_trino_reads_every_lake_row_once(lab: steps.Lab) -> None:
    """Through Trino's tables, each table has what a DuckDB glob of its lake folder has (no lab code)."""
    con = lab.trino().connect(crawler.DATABASE)
    try:
        cursor = con.cursor()
        for table in TABLES:
            name = crawler.catalog_name(table)
            cursor.execute(f'SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM "{name}"')
            rows, distinct = cursor.fetchone()
            assert rows == distinct == glob_rows(lab.cfg.paths.lake / table), table
    finally:
        con.close()


def glob_rows(folder: Path) -> int:
    if not any(folder.rglob("*.parquet")):
        return 0
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet')").fetchall()[0][0]


def test_a_trino_of_another_profile_is_refused(lab: steps.Lab, tmp_path: Path) -> None:
    lab.trino()
    with pytest.raises(EngineError, match="a Trino of another profile or lab"):
        trino.ensure_trino(lab.cfg.trino, tmp_path / "trino")
    assert trino.ensure_trino(lab.cfg.trino, lab.cfg.paths.trino).owned is False  # its own: reused


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kernel killed", "ctrl-c"])
def test_trino_stops_when_what_started_it_dies_or_is_interrupted(tmp_path: Path, how: signal.Signals) -> None:
    cfg, path = trino_params(tmp_path)
    script = textwrap.dedent(
        f"""
        import signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started where SIGINT is ignored
        from smartcity import steps
        from smartcity.profiles import load_params
        lab = steps.open_lab(load_params({str(path)!r}))
        lab.trino()
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    errors = tmp_path / "stderr.txt"
    with open(errors, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
        )
    try:
        assert proc.stdout.readline().strip() == b"ready", errors.read_text()
        assert port_open("127.0.0.1", cfg.trino.port) and engines_using(cfg.paths.trino)
        os.kill(proc.pid, how)
        try:
            proc.wait(trino.STOP_TIMEOUT_S + 60)  # Trino's orderly stop, then a kill, then the interpreter's exit
        except subprocess.TimeoutExpired:
            log = (cfg.paths.trino / "server.log").read_text(errors="replace").splitlines()[-15:]
            pytest.fail(f"still running; its stderr:\n{errors.read_text()}\nTrino's log:\n" + "\n".join(log))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while engines_using(cfg.paths.trino) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert engines_using(cfg.paths.trino) == []
