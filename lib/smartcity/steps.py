"""The notebooks' steps: one function per step, and the only code that chooses an engine or a mode.

01_simulate ... 06_route_map call these, and so do the runner, ``smartcity live`` and the benchmarks.
A profile's engines are chosen once, by :func:`open_lab`, from its selectors (``lake_storage``,
``catalog_engine``, ``query_engine``, ``warehouse_engine``) and ``mode``; the stage packages below
(:mod:`smartcity.fleet` ... :mod:`smartcity.routes`) never look at them, they are handed what they
use. So the same notebook cell runs on the local profile (a folder, DuckDB, PostgreSQL) and on AWS
(S3, Glue, Athena, Redshift). One boto3 session, from the standard credential chain (never from
params), serves every AWS call. Resetting a run and starting live mode happen here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from IPython.display import Markdown

from smartcity.advice import query as advice_query
from smartcity.advice import trips as advice_trips
from smartcity.advice.contract import ADVICE_TOPIC
from smartcity.catalog import crawler, glue, metastore
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.roads import load_network
from smartcity.ingest.producer import produce
from smartcity.params import Params, ParamsError, fill_account, uses_aws
from smartcity.platform import aws, broker, topics, trino
from smartcity.platform.background import Background
from smartcity.platform.ledger import Ledger
from smartcity.platform.postgres import ensure_server
from smartcity.platform.spark import SessionSpec, get_spark, spark_session, stop_spark
from smartcity.present import charts, live_map, maps
from smartcity.present.report import NotebookRun, RunRecord, write_index
from smartcity.query import crosscheck
from smartcity.query.athena import AthenaEngine, DuckDBEngine, QueryEngine, TrinoEngine, list_queries
from smartcity.routes.edge_times import EdgeTimes, Observations, read_observations
from smartcity.routes.judge import Verdict, save_results
from smartcity.stream import contract_check, lake, live_runs, monitor, query
from smartcity.stream.store import LakeStore, LocalStore, S3Store
from smartcity.warehouse.postgres import PostgresWarehouse
from smartcity.warehouse.redshift import RedshiftWarehouse

if TYPE_CHECKING:
    import boto3
    import duckdb
    from pyspark.sql import SparkSession

#: What batch mode shows where live mode has a figure.
LIVE_ONLY = (
    "Batch mode drains the topics and stops: no live run, so no {what}. Run the notebooks with `params/live.yaml`."
)
#: The six notebooks, in run order.
NOTEBOOKS: tuple[str, ...] = ("01_simulate", "02_stream", "03_catalog", "04_athena", "05_redshift", "06_route_map")
#: The notebooks that go through a Trino profile's Trino: 03 registers the lake's tables, 04 runs the SQL.
TRINO_NOTEBOOKS: tuple[str, ...] = ("03_catalog", "04_athena")
Warehouse = PostgresWarehouse | RedshiftWarehouse


# -- a profile's engines ---------------------------------------------------------------------------
@dataclass
class Lab:
    """A profile's engines, chosen once: what every step runs on. ``stop()`` stops what it started."""

    cfg: Params
    store: LakeStore
    boto3_session: boto3.Session | None = None
    _stops: dict[str, Callable[[], None]] = field(default_factory=dict, repr=False)  # what it started: how to stop it
    _trino: trino.TrinoServer | None = field(default=None, repr=False)  # found or started by trino()
    #: what query_lake answered, by (engine, query): compare_engines compares it rather than asking again
    results: dict[tuple[str, str], crosscheck.Timed] = field(default_factory=dict, repr=False)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.cfg.paths.counts, TOPICS)

    def spark(self) -> SparkSession:
        """This profile's Spark session, started on first use (stopped by :meth:`stop`)."""
        session = get_spark(session_spec(self.cfg))
        self._stops.setdefault("spark", lambda: stop_spark(session))
        return session

    def broker(self) -> broker.KafkaBroker:
        """This profile's Kafka broker, started if it does not run (stopped by :meth:`stop` if started here)."""
        running = open_broker(self.cfg)
        if running.owned:
            self._stops.setdefault("broker", running.stop)
        return running

    def trino(self) -> trino.TrinoServer:
        """This profile's Trino, started if it does not run (stopped by :meth:`stop` if started here)."""
        if self._trino is None:
            glue_region = self.cfg.aws.region if self.cfg.pipeline.catalog_engine == "glue" else ""
            self._trino = trino.ensure_trino(self.cfg.trino, self.cfg.paths.trino, glue_region)
            if self._trino.owned:
                self._stops.setdefault("trino", self._trino.stop)
        return self._trino

    def stop(self) -> None:
        """Stop the engines this lab started, the last first."""
        for name in reversed(list(self._stops)):
            self._stops.pop(name)()
        self._trino = None


def open_lab(cfg: Params, boto3_session: boto3.Session | None = None) -> Lab:
    """The profile's engines; an AWS profile's '{account}' names are filled in from the caller's account."""
    session = None
    if uses_aws(cfg):
        session = aws.session(cfg.aws.region, boto3_session)
        cfg = fill_account(cfg, session)
    return Lab(cfg, open_store(cfg, session), session)


def open_store(cfg: Params, boto3_session: boto3.Session | None = None) -> LakeStore:
    """The profile's store: its data_dir (lake_storage local) or s3://s3_bucket/s3_prefix (lake_storage s3)."""
    if cfg.pipeline.lake_storage == "local":
        return LocalStore(cfg.paths.data)
    session = aws.session(cfg.aws.region, boto3_session)
    cfg = fill_account(cfg, session)  # a bucket named smartcity-{account}-{region}
    return S3Store(cfg.aws.s3_bucket, cfg.aws.s3_prefix, session)


def session_spec(cfg: Params) -> SessionSpec:
    """The profile's Spark session: its Spark settings, the contract check's jar, S3A if the lake is on S3."""
    region = cfg.aws.region if cfg.pipeline.lake_storage == "s3" else ""
    return SessionSpec(cfg.spark, cfg.paths.data, f"smartcity-{cfg.profile}", (contract_check.jar(),), region)


@contextmanager
def spark(cfg: Params) -> Iterator[SparkSession]:
    """The profile's Spark session, stopped (its driver JVM too) when the block ends."""
    with spark_session(session_spec(cfg)) as session:
        yield session


def open_broker(cfg: Params) -> broker.KafkaBroker:
    """The profile's Kafka broker: running already, external, or started here (``with`` stops what was started)."""
    return broker.ensure_broker(cfg.kafka, cfg.paths.kafka)


def stream_job(lab: Lab) -> query.StreamJob:
    return query.StreamJob(lab.store, lab.cfg.kafka, lab.cfg.stream, lab.cfg.paths.data)


def _tables(lab: Lab) -> Callable[[], duckdb.DuckDBPyConnection]:
    """Opens a DuckDB connection where ``smartcity.<table>`` is each catalogued table, whatever the catalog."""
    if lab.cfg.pipeline.catalog_engine == "glue":
        return lambda: glue.connect_tables(lab.cfg.aws.glue_database, lab.store, lab.boto3_session)
    return lambda: crawler.connect(lab.cfg.paths.catalog, read_only=True)


def _query_engine(lab: Lab) -> QueryEngine:
    if lab.cfg.pipeline.query_engine == "athena":
        return AthenaEngine(lab.cfg.aws, lab.boto3_session)
    if lab.cfg.pipeline.query_engine == "trino":
        return TrinoEngine(lambda: lab.trino().connect(crawler.DATABASE))
    return DuckDBEngine(_tables(lab))


def open_warehouse(lab: Lab) -> Warehouse:
    """05_redshift's warehouse: PostgreSQL (started here if the profile owns it) or Redshift Serverless."""
    if lab.cfg.pipeline.warehouse_engine == "redshift":
        return RedshiftWarehouse(lab.cfg.warehouse, lab.boto3_session)
    return PostgresWarehouse(ensure_server(lab.cfg.warehouse, lab.cfg.paths.postgres))


# -- 01_simulate -------------------------------------------------------------------------------------
def reset_run(lab: Lab) -> pd.DataFrame:
    """Topics ready for this run; with reset_run, empty topics and no lake, checkpoints or counts left over.

    Emptying happens only on this profile's own broker: an external one (kafka_embedded: false)
    or another data dir's is an error, raised before anything is deleted.
    """
    cfg, kafka = lab.cfg, lab.cfg.kafka
    if cfg.pipeline.reset_run:
        if not kafka.embedded:
            raise broker.EngineError(
                f"reset_run would delete every record of the run's topics on {kafka.bootstrap}, a broker the lab "
                "does not own (kafka_embedded: false), and the lab never deletes data there: empty the topics "
                "yourself (e.g. kafka-delete-records.sh), or set reset_run: false"
            )
        broker.check_broker_is_ours(kafka, cfg.paths.kafka)
    held = topics.ensure_topics(
        kafka.bootstrap,
        TOPICS,
        partitions=kafka.partitions,
        replication=kafka.replication,
        empty=cfg.pipeline.reset_run,
    )
    if (
        cfg.pipeline.mode == "live"
    ):  # the advice query's topic (smartcity.advice), one partition: a pair's advice in order
        topics.ensure_topics(
            kafka.bootstrap, [ADVICE_TOPIC], partitions=1, replication=kafka.replication, empty=cfg.pipeline.reset_run
        )
    if cfg.pipeline.reset_run:
        lake.reset(lab.store, cfg.paths.data)
        if cfg.pipeline.catalog_engine == "glue":  # no Glue partition may point at files of the lake just deleted
            _glue_catalog(lab).reset()
        lab.ledger.clear()
    return held


def produce_events(lab: Lab, events: list[Event]) -> pd.DataFrame:
    """01_simulate's Kafka step, by mode.

    Batch: this profile's broker (started for the step and stopped after it), the run reset, the
    whole run produced, and a table of what the broker acknowledged and holds. Live: the background
    live run is started (broker, stream and the endless fleet in one process that outlives the
    notebook; ``events`` were only its preview) and the table says where it reports.
    """
    cfg = lab.cfg
    if cfg.pipeline.mode == "live":
        info = start_live(cfg)
        return pd.DataFrame({"live run": {k: info[k] for k in ("params", "log", "status", "stops")}})
    with open_broker(cfg):
        reset_run(lab)
        delivery = produce(
            cfg.kafka.bootstrap,
            events,
            backend=cfg.kafka.producer_backend,
            total=len(events),
            speedup=cfg.fleet.speedup,
        )
        lab.ledger.record("produced", delivery.acked)
        return delivery.table(held=topics.topic_counts(cfg.kafka.bootstrap, TOPICS))


# -- 02_stream ---------------------------------------------------------------------------------------
def stream_lake(lab: Lab) -> pd.DataFrame:
    """02_stream's step, by mode: batch drains the topics with this profile's Spark session into the lake;
    live attaches to the background run 01_simulate started, waits for it to end (a bounded one) and
    tabulates its counts, without starting a Spark of its own meanwhile."""
    if lab.cfg.pipeline.mode != "live":
        lab.broker()
        written = query.run_bounded(lab.spark(), stream_job(lab))
        lab.ledger.record("lake", written["rows in lake"].to_dict())
        return written
    summary = wait_live(lab.cfg)
    produced = summary.get("produced", {})
    in_lake = summary["in_lake"] if "in_lake" in summary else query.lake_counts(lab.store, lake.TABLES)
    rows = [{"table": t, "produced": produced.get(t), "rows in lake": in_lake.get(t, 0)} for t in lake.TABLES]
    return pd.DataFrame(rows).set_index("table")


def _live_status(lab: Lab) -> pd.DataFrame | None:
    """The live run's status samples in live mode (None in batch mode, or before a live run)."""
    status = monitor.read_status(lab.cfg.paths.live)
    return status if lab.cfg.pipeline.mode == "live" and not status.empty else None


def plot_live_run(lab: Lab) -> Any:
    """02_stream's figure: the live run's throughput, lag and freshness over time (a note in batch mode)."""
    status = _live_status(lab)
    return (
        Markdown(LIVE_ONLY.format(what="throughput, lag and freshness over time"))
        if status is None
        else charts.live_run(status)
    )


def show_advice_query(lab: Lab) -> Markdown:
    """02_stream: the advice query's DataFrame code, with this run's window and watermark."""
    return Markdown(advice_query.source(lab.cfg.advice))


def run_advice_query(lab: Lab) -> pd.DataFrame:
    """02_stream: the advice query run once over what the topics hold now (publishing nothing); its advice."""
    network, advice = load_network(), lab.cfg.advice
    bootstrap = lab.broker().bootstrap
    ran = advice_query.run_available(lab.spark(), bootstrap, network, advice.window_seconds, advice.watermark_seconds)
    return advice_query.advice_table(ran)


def show_live_map(lab: Lab) -> Any:
    """02_stream in live mode: the running live run's map (a note when none runs)."""
    status = _live_status(lab)
    if status is None or live_process(lab.cfg).running_pid() is None:
        return Markdown(LIVE_ONLY.format(what="live map (the live run serves it while it runs)"))
    return live_map.frame(status["map"].iloc[-1])


def plot_advice(lab: Lab) -> Any:
    """02_stream: advised and unadvised trip minutes as they ended in the live run (a note in batch mode)."""
    status = _live_status(lab)
    if status is None or "trips" not in status:
        return Markdown(LIVE_ONLY.format(what="advised and unadvised trips to compare"))
    return charts.advice_trips(status)


def describe_lake(lab: Lab) -> pd.DataFrame:
    """Every lake table and partition with its files and rows."""
    return lake.describe(lab.store)


def preview_lake(lab: Lab, table: str, rows: int = 5) -> pd.DataFrame:
    """The first rows of a lake table in event-time order, read back by Spark."""
    return query.preview(lab.spark(), lab.store, table, rows)


# -- 03_catalog --------------------------------------------------------------------------------------
def _glue_catalog(lab: Lab) -> glue.GlueCatalog:
    return glue.GlueCatalog(lab.cfg.aws, lab.cfg.profile, lab.cfg.paths.catalog, lab.boto3_session)


def crawl_lake(lab: Lab) -> pd.DataFrame:
    """03_catalog's step: register what is in the lake now (incremental, safe to re-run), in DuckDB or Glue."""
    if lab.cfg.pipeline.catalog_engine == "glue":
        summary = _glue_catalog(lab).crawl(lab.store)
        # Glue has no rows to count; the footers' counts are what a query over these files returns
        lab.ledger.record("catalog", summary["row_count"].to_dict())
        return summary
    summary = crawler.crawl(lab.cfg.paths.catalog, lab.cfg.paths.lake)
    lab.ledger.record("catalog", catalog_counts(lab))
    if lab.cfg.pipeline.query_engine == "trino":  # the same tables, stated to Trino's file metastore
        registered = metastore.register(lab.trino().connect, lab.cfg.paths.catalog, lab.cfg.paths.lake)
        summary = summary.join(registered)
    return summary


def describe_catalog(lab: Lab, what: str, table: str | None = None) -> pd.DataFrame:
    """One of the catalog's metadata tables ('tables', 'columns', 'partitions'), optionally for one table."""
    return crawler.describe(lab.cfg.paths.catalog, what, table)


def catalog_counts(lab: Lab) -> dict[str, int]:
    """Rows each catalogued table returns when queried (through its view or Glue table, not the metadata)."""
    con = _tables(lab)()
    try:
        return crawler.view_counts(con)
    finally:
        con.close()


# -- 04_athena ---------------------------------------------------------------------------------------
def query_lake(lab: Lab, name: str) -> pd.DataFrame:
    """04_athena's step: one of the shipped Athena queries, on this profile's engine."""
    frame, seconds = crosscheck.timed_run(_query_engine(lab), name)
    lab.results[(lab.cfg.pipeline.query_engine, name)] = (frame, seconds)
    return frame


def crosscheck_queries(lab: Lab) -> pd.DataFrame:
    """Every Athena query on DuckDB and on this profile's engine (if another): rows, seconds, differences
    (a query this lab already ran, e.g. in 04's cells above, is compared as it was answered, not run again)."""
    engines: dict[str, QueryEngine] = {"duckdb": DuckDBEngine(_tables(lab))}
    if lab.cfg.pipeline.query_engine != "duckdb":
        engines[lab.cfg.pipeline.query_engine] = _query_engine(lab)
    return crosscheck.crosscheck(engines, list_queries(), lab.results)


def engines_compared_file(cfg: Params) -> Path:
    return cfg.paths.output / "tables" / "engines_compared.csv"


def compare_engines(lab: Lab) -> pd.DataFrame | Markdown:
    """04_athena's last step: on a profile whose engine is not DuckDB, every query on DuckDB and on that
    engine, and where they differ (also saved as ``outputs/<profile>/tables/engines_compared.csv``)."""
    if lab.cfg.pipeline.query_engine == "duckdb":
        return Markdown(
            "DuckDB is this profile's engine: nothing to compare it with. On a profile whose `query_engine` is "
            "`trino` or `athena`, this runs every query on DuckDB and on that engine and shows where they differ."
        )
    checked = crosscheck_queries(lab)
    target = engines_compared_file(lab.cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    checked.to_csv(target)
    return checked


def query_engine_note(lab: Lab) -> Markdown:
    """Which engine runs 04_athena's SQL on this profile, and over what."""
    engine = lab.cfg.pipeline.query_engine
    if engine == "athena":
        return Markdown(f"The SQL runs on **Amazon Athena** (workgroup `{lab.cfg.aws.athena_workgroup}`), unchanged.")
    if engine == "trino":
        server = lab.trino()
        tables = (
            "the Glue Data Catalog's tables, reading S3"
            if lab.cfg.pipeline.catalog_engine == "glue"
            else "the tables 03_catalog registered in its Hive metastore"
        )
        return Markdown(
            f"The SQL runs unchanged on **Trino {server.version}** (Athena's engine) on 127.0.0.1:{server.port}, "
            f"over {tables}."
        )
    catalog = "the Glue tables' S3 files" if lab.cfg.pipeline.catalog_engine == "glue" else "the catalog's views"
    return Markdown(f"The SQL runs on **DuckDB**, transpiled from Athena's dialect by sqlglot, over {catalog}.")


# -- 05_redshift -------------------------------------------------------------------------------------
def load_warehouse(lab: Lab, warehouse: Warehouse) -> pd.DataFrame:
    """05_redshift's step: what is new in the lake into the warehouse, in one transaction; lake vs warehouse."""
    loaded = warehouse.load_lake(lab.store, TOPICS)
    lab.ledger.record("warehouse", {t: loaded.loc[t, "rows in warehouse"] for t in TOPICS})
    return loaded


# -- 06_route_map ------------------------------------------------------------------------------------
def observations(lab: Lab) -> Observations:
    """Telemetry, incident reports and weather of the run, from its lake."""
    return read_observations(lab.store)


def routes_file(cfg: Params) -> Path:
    return cfg.paths.output / "routes" / "routes.json"


def advice_in_lake(lab: Lab) -> Any:
    """06_route_map: advised vs unadvised trips as the lake's telemetry tells them (a note when it holds none)."""
    compared = advice_trips.lake_comparison(lab.store, lab.cfg.fleet.tick_seconds)
    return Markdown(LIVE_ONLY.format(what="trips driven with advice in the lake")) if compared is None else compared


def save_routes(lab: Lab, model: EdgeTimes, suggestions: pd.DataFrame, verdict: Verdict | None = None) -> Path:
    """The suggestions, what they were learnt from and the verdict, for the report."""
    return save_results(routes_file(lab.cfg), lab.cfg.fleet.seed, model, suggestions, verdict)


def journey_map(lab: Lab, suggestions: pd.DataFrame | None = None) -> Any:
    """The journey as the catalog's tables tell it: tracks, incidents, weather, cameras, suggestions."""
    con = _tables(lab)()
    try:
        layers = maps.journey_layers(con)
    finally:
        con.close()
    return maps.journey_map(layers, lab.cfg.fleet.tick_seconds, suggestions=suggestions)


# -- the report --------------------------------------------------------------------------------------
def write_report(lab: Lab, runs: list[NotebookRun]) -> Path:
    """The run's front page (``outputs/<profile>/index.html``): counts, maps, routes, charts, notebooks."""
    cfg = lab.cfg
    record = RunRecord(
        cfg.profile,
        cfg.paths.output,
        cfg.as_dict(),
        lab.ledger,
        lambda table: lake.read_table(lab.store, table).to_pandas(),
        routes_file(cfg),
    )
    return write_index(record, runs, sorted(cfg.paths.maps.glob("*.html")))


# -- live mode ---------------------------------------------------------------------------------------
def check_unattended(cfg: Params) -> None:
    """A run of all the notebooks must end by itself: in live mode it needs a duration."""
    if cfg.pipeline.mode == "live" and not cfg.pipeline.live_seconds:
        raise ParamsError(
            "a run of the notebooks in live mode needs live_seconds > 0 (the fleet drives that long, "
            "then the stream drains); live_seconds 0 runs until stopped: use `make live` or the notebooks"
        )


def share_engines(lab: Lab, notebook: str) -> None:
    """Before the runner executes ``notebook``: the engines several notebooks use, started once for the run.

    Each notebook's kernel finds them running and reuses them (a kernel stops only what it started);
    the runner stops them with its lab. Trino, for 03 and 04: one start (~13 s) instead of one each.
    """
    if lab.cfg.pipeline.query_engine == "trino" and notebook in TRINO_NOTEBOOKS:
        lab.trino()


def prepare_engines(cfg: Params) -> None:
    """What the profile's own engines need before a run starts: Trino's Java (24+) found and its server
    fetched (once) now, rather than failing in 03_catalog."""
    if cfg.pipeline.query_engine == "trino":
        trino.find_java()
        trino.ensure_installed()


def live_process(cfg: Params) -> Background:
    """The profile's live run as a background process (``smartcity live``), watched through outputs/<profile>/live/."""
    return live_runs.process(cfg.paths.live)


def start_live(cfg: Params, ready_timeout_s: float = 300.0) -> dict[str, Any]:
    """Start ``smartcity live`` for this profile as a process of its own (01_simulate in live mode); it outlives the
    notebook, 02_stream attaches to it (:mod:`smartcity.stream.live_runs`)."""
    return live_runs.start(cfg.paths.live, cfg.as_dict(), cfg.profile, cfg.pipeline.live_seconds, ready_timeout_s)


def wait_live(cfg: Params, timeout_s: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Wait for a bounded background run to finish (02_stream in live mode) and return its summary; an
    open-ended one (``live_seconds`` 0) is not waited for."""
    live_seconds = cfg.pipeline.live_seconds
    timeout = timeout_s if timeout_s is not None else live_seconds + cfg.stream.timeout_seconds + 120
    return live_runs.wait(cfg.paths.live, cfg.profile, live_seconds, timeout, progress)


def stop_live(cfg: Params, timeout_s: float | None = None) -> bool:
    """Stop this profile's background run the way Ctrl-C does (producer stops, stream drains); True if one ran."""
    return live_process(cfg).stop(timeout_s if timeout_s is not None else cfg.stream.timeout_seconds + 60)
