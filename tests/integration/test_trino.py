"""query_engine: trino — the six notebooks on Athena's own engine, and DuckDB checked against it.

One run of the six notebooks through the runner on a Trino profile (03 registers the lake's tables
in Trino's metastore, 04 runs the SQL files unchanged on Trino, both on the one Trino the run
started). 04 then runs every Athena query on DuckDB (transpiled) too, and the results must agree
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
import pandas as pd
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
from smartcity.stream import lake
from tests.conftest import engines_using, lab_params

pytestmark = pytest.mark.integration


def trino_params(root: Path) -> tuple[Params, Path]:
    cfg = lab_params(root, profile="local-trino", query_engine="trino", trino_port=free_port())
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return cfg, path


@pytest.fixture(scope="module")
def trino_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, Path, runner.RunResult]:
    """``smartcity run`` on a Trino profile: the six notebooks, once for the tests below."""
    cfg, path = trino_params(tmp_path_factory.mktemp("trino"))
    return cfg, path, runner.run(path)


class Starter:
    """A Python process that starts a profile's Trino the way a notebook kernel does, then waits."""

    SCRIPT = textwrap.dedent(
        """
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started where SIGINT is ignored
        from smartcity import steps
        from smartcity.profiles import load_params
        lab = steps.open_lab(load_params(sys.argv[1]))
        lab.trino()
        print("ready", flush=True)
        time.sleep(600)
        """
    )

    def __init__(self, cfg: Params, params: Path, errors: Path) -> None:
        self.cfg, self.errors = cfg, errors
        with open(errors, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.SCRIPT, str(params)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
        assert self.proc.stdout.readline().strip() == b"ready", errors.read_text()
        assert port_open("127.0.0.1", cfg.trino.port) and engines_using(cfg.paths.trino)

    def end_by(self, how: signal.Signals) -> None:
        """Signal the process, then wait until it and its Trino are gone."""
        os.kill(self.proc.pid, how)
        try:
            self.proc.wait(trino.STOP_TIMEOUT_S + 60)  # Trino's orderly stop, then a kill, then the interpreter's exit
        except subprocess.TimeoutExpired:
            log = (self.cfg.paths.trino / "server.log").read_text(errors="replace").splitlines()[-15:]
            pytest.fail(f"still running; its stderr:\n{self.errors.read_text()}\nTrino's log:\n" + "\n".join(log))
        deadline = time.monotonic() + 60
        while engines_using(self.cfg.paths.trino) and time.monotonic() < deadline:
            time.sleep(0.5)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def served(trino_run: tuple[Params, Path, runner.RunResult]) -> Iterator[Starter]:
    """The run's Trino started again by another process, as a notebook kernel would: what the tests below
    query; the last of them kills that process."""
    cfg, path, _ = trino_run
    starter = Starter(cfg, path, path.parent / "starter-stderr.txt")
    try:
        yield starter
    finally:
        starter.close()


def test_the_six_notebooks_run_on_trino_and_04_says_so(trino_run: tuple[Params, Path, runner.RunResult]) -> None:
    cfg, _, result = trino_run
    assert result.problems == [], result.problems
    book = nbformat.read(cfg.paths.output / "notebooks" / "04_athena.ipynb", as_version=4)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in book.cells for o in c.get("outputs", []))
    assert f"Trino {trino.VERSION}" in text
    catalog = nbformat.read(cfg.paths.output / "notebooks" / "03_catalog.ipynb", as_version=4)
    assert "rows through Trino" in str(catalog.cells)
    assert engines_using(cfg.paths.trino) == [], "the run's Trino stopped with its notebooks"
    started = (cfg.paths.trino / "server.log").read_text(errors="replace").count("SERVER STARTED")
    assert started == 1, f"03 and 04 share the run's Trino, started once, not {started} times"
    assert not (project_root() / "notebooks" / "var").exists(), "Trino wrote nothing where the kernels run"


def test_every_athena_query_agrees_on_duckdb_and_trino(trino_run: tuple[Params, Path, runner.RunResult]) -> None:
    """04's last section: each query on DuckDB and on Trino, over the same lake, compared."""
    checked = pd.read_csv(steps.engines_compared_file(trino_run[0]), index_col="query", keep_default_na=False)
    assert list(checked.index) == athena.list_queries() and "trino s" in checked.columns
    assert (checked["rows"] > 0).all(), checked
    assert (checked["differences"] == "").all(), checked.to_string()


def test_trino_reads_every_lake_row_once(served: Starter) -> None:
    """Through Trino's tables, each table has what a DuckDB glob of its lake folder has (no lab code)."""
    server = trino.ensure_trino(served.cfg.trino, served.cfg.paths.trino)
    assert server.owned is False, "the running Trino of this profile is reused"
    con = server.connect(crawler.DATABASE)
    try:
        cursor = con.cursor()
        for table in lake.TABLES:
            name = crawler.catalog_name(table)
            cursor.execute(f'SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM "{name}"')
            rows, distinct = cursor.fetchone()
            assert rows == distinct == glob_rows(served.cfg.paths.lake / table), table
    finally:
        con.close()


def glob_rows(folder: Path) -> int:
    if not any(folder.rglob("*.parquet")):
        return 0
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet')").fetchall()[0][0]


def test_a_trino_of_another_profile_is_refused(served: Starter, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="a Trino of another profile or lab"):
        trino.ensure_trino(served.cfg.trino, tmp_path / "trino")


def test_trino_stops_when_the_kernel_that_started_it_is_killed(served: Starter) -> None:
    served.end_by(signal.SIGKILL)
    assert engines_using(served.cfg.paths.trino) == []


def test_trino_stops_on_ctrl_c(tmp_path: Path) -> None:
    cfg, path = trino_params(tmp_path)
    starter = Starter(cfg, path, tmp_path / "stderr.txt")
    try:
        starter.end_by(signal.SIGINT)
    finally:
        starter.close()
    assert engines_using(cfg.paths.trino) == []
