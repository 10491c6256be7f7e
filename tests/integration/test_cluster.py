"""The cluster profile's engines under failure: a 3-broker KRaft quorum and a Spark standalone cluster.

kill -9 of one broker while the fleet produces: the idempotent producer (acks=all) carries on with
the two others (min.insync.replicas=2), nothing is lost or doubled, and the node, started again on
its data, catches up and rejoins every partition's in-sync replicas.

kill -9 of one Spark worker while the live stream runs: its executor goes with it, Spark runs the
lost tasks on the other worker's executor, the query carries on, and after the drain the lake
holds every produced event exactly once, as DuckDB reads it from a glob of the lake's folders.

The run's profile queries on Trino (query_engine: trino, as params/local-trino.yaml): 03 registers the
lake's tables in Trino's metastore, 04 runs the SQL files unchanged on the one Trino the run started and
then on DuckDB, and the answers must agree (:mod:`smartcity.query.crosscheck` states the tolerance).
After the run, Trino started again as a notebook kernel would returns every lake row once, and stops
when that kernel is killed.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import psutil
import pytest
import yaml
from kafka import KafkaAdminClient

from smartcity import steps
from smartcity.catalog import crawler
from smartcity.fleet.contracts import TOPICS
from smartcity.ops import runner
from smartcity.params import Params
from smartcity.platform import broker, cluster, topics, trino
from smartcity.platform.params import project_root
from smartcity.platform.processes import free_port
from smartcity.query import athena
from smartcity.steps import NOTEBOOKS
from smartcity.stream import lake, monitor
from tests.conftest import engines_using, lab_params, numbered_events, produce_through, quorum_ports, unique_delivery
from tests.trino_starter import TrinoStarter

pytestmark = pytest.mark.integration


def cfg_ports(cfg: Params) -> list[int]:
    return [port for _, port in cfg.kafka.addresses]


def in_sync(bootstrap: str) -> dict[tuple[str, int], list[int]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smartcity-test-isr")
    try:
        return {
            (d["name"], p["partition_index"]): sorted(p["isr_nodes"])
            for d in admin.describe_topics(list(TOPICS))
            for p in d["partitions"]
        }
    finally:
        admin.close()


@pytest.fixture(scope="module")
def cluster_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster]]:
    """The cluster profile's engines, started once by the tests: 3 Kafka nodes, a master and 2 workers
    (the profile queries on Trino, which its run starts and stops)."""
    root = tmp_path_factory.mktemp("cluster")
    ports = quorum_ports(3)
    cfg = lab_params(
        root,
        profile="cluster",
        kafka_replication=3,
        producer_backend="confluent-kafka",
        kafka_bootstrap=",".join(f"127.0.0.1:{p}" for p in ports),
        spark_master=f"spark://127.0.0.1:{free_port()}",
        spark_master_ui_port=free_port(),
        spark_workers=2,
        query_engine="trino",
        trino_port=free_port(),
    )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    with steps.open_broker(cfg) as quorum, cluster.ensure_cluster(cfg.spark, cfg.paths.data / "spark") as spark_cluster:
        assert sorted(quorum.nodes) == [1, 2, 3] and spark_cluster.owned
        yield cfg, params, quorum, spark_cluster


@pytest.fixture(scope="module")
def notebooks_run(
    cluster_run: tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster],
) -> tuple[runner.RunResult, set[str]]:
    """``smartcity run`` on the cluster profile: the six notebooks through the runner, once for the tests
    below; with the engines that used the run's folders before it (the module's quorum and cluster)."""
    cfg, params, _, _ = cluster_run
    before = set(engines_using(cfg.paths.data))
    return runner.run(params), before  # finds the quorum and the master running, and uses them


def test_the_six_notebooks_run_unchanged_on_the_cluster_and_reconcile(
    cluster_run: tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster],
    notebooks_run: tuple[runner.RunResult, set[str]],
) -> None:
    cfg, _, _, spark_cluster = cluster_run
    result, _ = notebooks_run
    assert result.problems == [], result.problems
    state = spark_cluster.state() or {}
    apps = [a for a in state.get("completedapps", []) if a["name"] == f"smartcity-{cfg.profile}"]
    assert apps and all(a["cores"] == 2 for a in apps), "the stream ran on both workers' executors"


def test_the_report_links_every_notebook_and_the_maps(notebooks_run: tuple[runner.RunResult, set[str]]) -> None:
    result, _ = notebooks_run
    cfg, index = result.cfg, result.index
    assert index is not None and index.exists()
    page = index.read_text()
    for name in NOTEBOOKS:
        book = nbformat.read(cfg.paths.output / "notebooks" / f"{name}.ipynb", as_version=4)
        assert all(o.output_type != "error" for c in book.cells if c.cell_type == "code" for o in c.outputs), name
        assert f'href="html/{name}.html"' in page and (cfg.paths.output / "html" / f"{name}.html").exists()
    journey = cfg.paths.maps / "journey.html"
    assert journey.stat().st_size > 10_000 and 'href="maps/journey.html"' in page
    assert "exactly once" in page and result.problems == []


def test_every_stage_holds_every_produced_event_once(notebooks_run: tuple[runner.RunResult, set[str]]) -> None:
    cfg = notebooks_run[0].cfg
    lab = steps.open_lab(cfg)
    with steps.open_broker(cfg) as quorum:  # the module's quorum, still running: used as it is
        in_kafka = topics.topic_counts(quorum.bootstrap, TOPICS)
    in_lake = {t: lake.count_rows(lake.data_files(cfg.paths.lake / t)) for t in TOPICS}
    in_catalog = {t: n for t, n in steps.catalog_counts(lab).items() if t in TOPICS}
    with steps.open_warehouse(lab) as warehouse:  # the run stopped its PostgreSQL: started again on its data
        in_warehouse = warehouse.counts(TOPICS)
    assert sum(in_kafka.values()) > 5000
    assert in_kafka == in_lake == in_catalog == in_warehouse


def test_the_run_leaves_running_only_the_engines_it_found(notebooks_run: tuple[runner.RunResult, set[str]]) -> None:
    """What the runner started (its Spark driver, PostgreSQL, the notebook kernels) it stopped; the
    quorum and the cluster it found running it left running."""
    result, before = notebooks_run
    deadline = time.monotonic() + 30  # the workers end the application's executors once its driver is gone
    while set(engines_using(result.cfg.paths.data)) != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(engines_using(result.cfg.paths.data)) == before


def test_03_and_04_ran_on_the_one_trino_the_run_started_and_stopped(
    notebooks_run: tuple[runner.RunResult, set[str]],
) -> None:
    cfg = notebooks_run[0].cfg
    book = nbformat.read(cfg.paths.output / "notebooks" / "04_athena.ipynb", as_version=4)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in book.cells for o in c.get("outputs", []))
    assert f"Trino {trino.VERSION}" in text
    catalog = nbformat.read(cfg.paths.output / "notebooks" / "03_catalog.ipynb", as_version=4)
    assert "rows through Trino" in str(catalog.cells)
    assert engines_using(cfg.paths.trino) == [], "the run's Trino stopped with its notebooks"
    started = (cfg.paths.trino / "server.log").read_text(errors="replace").count("SERVER STARTED")
    assert started == 1, f"03 and 04 share the run's Trino, started once, not {started} times"
    assert not (project_root() / "notebooks" / "var").exists(), "Trino wrote nothing where the kernels run"


def test_every_athena_query_agrees_on_duckdb_and_trino(notebooks_run: tuple[runner.RunResult, set[str]]) -> None:
    """04's last section: each query on DuckDB and on Trino, over the same lake, compared."""
    checked = pd.read_csv(steps.engines_compared_file(notebooks_run[0].cfg), index_col="query", keep_default_na=False)
    assert list(checked.index) == athena.list_queries() and "trino s" in checked.columns
    assert (checked["rows"] > 0).all(), checked
    assert (checked["differences"] == "").all(), checked.to_string()


@pytest.fixture(scope="module")
def served(
    cluster_run: tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster],
    notebooks_run: tuple[runner.RunResult, set[str]],
) -> Iterator[TrinoStarter]:
    """The run's Trino started again by another process, as a notebook kernel would: what the tests below
    query; the last of them kills that process."""
    cfg, params, _, _ = cluster_run
    starter = TrinoStarter(cfg, params, params.parent / "starter-stderr.txt")
    try:
        yield starter
    finally:
        starter.close()


def test_trino_reads_every_lake_row_once(served: TrinoStarter) -> None:
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
            assert rows == distinct == _glob_rows(served.cfg.paths.lake / table), table
    finally:
        con.close()


def _glob_rows(folder: Path) -> int:
    if not any(folder.rglob("*.parquet")):
        return 0
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet')").fetchall()[0][0]


def test_trino_stops_when_the_kernel_that_started_it_is_killed(served: TrinoStarter) -> None:
    served.end_by(signal.SIGKILL)
    assert engines_using(served.cfg.paths.trino) == []


def test_the_quorum_replicates_every_topic_three_times_and_needs_two_in_sync(
    cluster_run: tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster],
) -> None:
    cfg, _, quorum, _ = cluster_run
    steps.reset_run(steps.open_lab(cfg))  # the run's topics, as 01_simulate prepares them
    assert set(map(tuple, in_sync(quorum.bootstrap).values())) == {(1, 2, 3)}
    props = (cfg.paths.kafka / "node-2" / "server.properties").read_text().splitlines()
    for line in (
        "default.replication.factor=3",
        "min.insync.replicas=2",
        "unclean.leader.election.enable=false",
        f"controller.quorum.voters={','.join(f'{i}@127.0.0.1:{p + 1000}' for i, p in enumerate(cfg_ports(cfg), 1))}",
    ):
        assert line in props
    again = steps.open_broker(cfg)  # the whole quorum answers: used as it is, not started twice
    assert not again.owned
    assert broker.is_kafka(f"127.0.0.1:{cfg_ports(cfg)[2]}")  # every address is a broker, not only the first


def test_kill_minus_nine_of_a_broker_while_producing_loses_nothing_and_the_node_rejoins(
    cluster_run: tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster],
) -> None:
    cfg, _, quorum, _ = cluster_run
    events = numbered_events(150_000)
    topics.ensure_topics(quorum.bootstrap, TOPICS, partitions=3, replication=3, empty=True)
    victim = quorum.nodes[2]
    restarted: list[broker.KafkaBroker] = []

    def kill_and_restart(release: Callable[[], None]) -> None:
        os.kill(victim.pid, signal.SIGKILL)
        victim.proc.wait(30)
        release()  # the last third is sent while node 2 is gone
        time.sleep(5)
        restarted.append(steps.open_broker(cfg))  # starts the missing node again, on its data

    try:
        produce_through(quorum.bootstrap, events, "confluent-kafka", kill_and_restart)
        unique_delivery(quorum.bootstrap, events)
        assert [sorted(b.nodes) for b in restarted] == [[2]]
        deadline = time.monotonic() + 180
        while set(map(tuple, in_sync(quorum.bootstrap).values())) != {(1, 2, 3)}:
            assert time.monotonic() < deadline, f"node 2 did not rejoin the ISR: {in_sync(quorum.bootstrap)}"
            time.sleep(1)
    finally:
        for handle in restarted:
            quorum.nodes.update(handle.nodes)  # the module's quorum stops it with the others


@dataclass(frozen=True)
class _Executor:
    """One executor JVM as seen at one moment: its process, its worker (parent), command line and env."""

    process: psutil.Process
    ppid: int
    command: str
    env: dict[str, str]


def _executors(spark_cluster: cluster.SparkCluster) -> list[_Executor]:
    """The executor JVMs the cluster's workers run for the applications running now.

    An executor of an application that has ended (or one that is exiting) may still be a worker's
    child for a moment: only the master's active applications count, and each executor is read whole
    or not at all, so that none vanishes between being found and being looked at.
    """
    active = {app["id"] for app in (spark_cluster.state() or {}).get("activeapps", [])}
    found = []
    for worker in spark_cluster.workers:
        for child in psutil.Process(worker.pid).children(recursive=True):
            try:
                command = " ".join(child.cmdline())
                if "CoarseGrainedExecutorBackend" not in command:
                    continue
                app = command.split("--app-id ", 1)[1].split()[0] if "--app-id " in command else ""
                if app in active:
                    found.append(_Executor(child, child.ppid(), command, child.environ()))
            except psutil.NoSuchProcess:
                continue
    return found


def _glob(cfg: Params, table: str) -> str:
    return str(cfg.paths.lake / table / "**" / "*.parquet")


def test_kill_minus_nine_of_a_spark_worker_during_the_live_stream_loses_and_doubles_nothing(
    cluster_run: tuple[Params, Path, broker.KafkaBroker, cluster.SparkCluster],
) -> None:
    base, _, _, spark_cluster = cluster_run
    root = base.paths.data.parent
    cfg = base.with_values(
        mode="live",
        vehicles=6,
        departure_spacing_seconds=10.0,
        departure_rate_per_hour=60.0,
        speedup=60.0,
        incident_rate=2.0,
        stream_warm_up_events=0,  # no warm-up (test_spark runs it): this test is about the lost worker
        advice_enabled=False,  # the lake's stream alone (test_live runs the advice beside it)
        base_date="2026-01-05T07:00:00+00:00",
    )
    params = root / "live.yaml"
    params.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    log = root / "live.log"
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartcity", "live", "--params", str(params), "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=project_root(),
            start_new_session=True,
        )

    def written() -> int:
        status = monitor.read_status(cfg.paths.live)
        return 0 if status.empty else int(sum(status[f"{t}.written"].iloc[-1] for t in TOPICS))

    def wait_written(at_least: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while written() < at_least:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"the lake did not reach {at_least} events:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)

    try:
        wait_written(2000, 300)
        deadline = time.monotonic() + 120  # on a busy machine the second executor may still be starting
        workers = sorted(w.pid for w in spark_cluster.workers)
        executors = _executors(spark_cluster)
        while sorted(e.ppid for e in executors) != workers:
            assert time.monotonic() < deadline, f"the live stream has {len(executors)} executor(s), not one per worker"
            time.sleep(1)
            executors = _executors(spark_cluster)
        for executor, worker in zip(
            sorted(executors, key=lambda e: e.ppid), sorted(spark_cluster.workers, key=lambda w: w.pid), strict=True
        ):
            # what is the driver's stays the driver's: executors log by their own config, not into the
            # driver's file, and their scratch space is their worker's
            command, env = executor.command, executor.env
            assert "log4j2-executor.properties" in command and "smartcity.spark.log" not in command
            assert env["SPARK_EXECUTOR_DIRS"].startswith(str(worker.log_path.parent / "tmp")), env[
                "SPARK_EXECUTOR_DIRS"
            ]
        victim = psutil.Process(spark_cluster.workers[0].pid)
        lost_executors = [e.process for e in executors if e.ppid == victim.pid]
        assert len(lost_executors) == 1, "the worker to kill runs one of the executors"
        victim.kill()  # SIGKILL
        psutil.wait_procs([victim, *lost_executors], timeout=60)
        assert not any(e.is_running() for e in lost_executors), "the killed worker's executor outlived it"
        deadline = time.monotonic() + 120
        while len(cluster.alive_workers(cluster.master_state("127.0.0.1", cfg.spark.master_ui_port))) != 1:
            assert time.monotonic() < deadline, "the master did not notice the lost worker"
            time.sleep(1)
        wait_written(written() + 2000, 300)  # the query carries on, on the other worker's executor
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: stop producing, drain, stop
        assert proc.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    steps.live_process(cfg).ended()  # raises unless the live run ended well
    summary = monitor.read_summary(cfg.paths.live)
    for topic in TOPICS:
        if not glob.glob(_glob(cfg, topic), recursive=True):
            assert summary["produced"].get(topic, 0) == 0, topic
            continue
        total, distinct = duckdb.sql(
            f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{_glob(cfg, topic)}', union_by_name = true)"
        ).fetchall()[0]
        assert (total, distinct) == (summary["produced"][topic],) * 2, topic
