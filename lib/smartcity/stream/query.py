"""Spark Structured Streaming from the five Kafka topics to the Parquet lake, exactly once for every reader.

One streaming query reads all five topics. In each micro-batch, one pass of the lab's Java check
(:mod:`smartcity.stream.contract_check`) over each message's bytes decides where it goes: a
message that keeps its topic's contract goes to its topic's table under its event date, as one
normalized CSV line; any other message goes to the quarantine, kept whole (bytes, key, headers,
Kafka coordinates) in a JSON line with the first rule it breaks. In the same Spark job each task
hands its lines to Arrow on its executor, which writes one Parquet file per table and partition into
the batch's staging prefix and returns a small row per file (:class:`smartcity.stream.staging.StageTask`):
the driver collects those rows and never touches an event. The lake's commit protocol
(:class:`smartcity.stream.commits.CommitLog`) publishes the files from them, so a glob of a table's
folder is exactly-once after any crash and restart.

Bad input never stops the stream. In batch runs the query uses the ``availableNow`` trigger (read
what the topics hold, write it, stop); live runs use a processing-time trigger and run until stopped.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from smartcity.fleet.contracts import TOPICS
from smartcity.platform import topics as kafka_topics
from smartcity.platform.engine_params import KafkaParams, StreamParams
from smartcity.stream import commits, contract_check, lake, staging
from smartcity.stream.store import LakeStore, LocalStore

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

QUERY_NAME = "lake"
#: A task reading a partition it has drained waits this long for more; Kafka's default 500 ms
#: made every micro-batch over 15 partitions take seconds.
FETCH_MAX_WAIT_MS = 50
#: Bigger polls and fetches: half the consumer's CPU per message and a fifth of the broker's (measured).
CONSUMER_OPTIONS = {
    "kafka.fetch.max.wait.ms": str(FETCH_MAX_WAIT_MS),
    "kafka.max.poll.records": "10000",
    "kafka.max.partition.fetch.bytes": str(8 << 20),
    "kafka.fetch.max.bytes": str(64 << 20),
}


class StreamError(RuntimeError):
    """A streaming query failed or did not finish in time; the message names the query."""


@dataclass(frozen=True)
class StreamJob:
    """What the lake's query reads and where it writes."""

    store: LakeStore  # the lake, its commit log and the query's checkpoint
    kafka: KafkaParams
    stream: StreamParams
    data_dir: Path  # holds the one-writer lock (and the warm-up's scratch files)


def read_kafka(spark: SparkSession, job: StreamJob, topics: Sequence[str] = TOPICS) -> DataFrame:
    """The raw Kafka stream of the topics: bytes, key, headers and Kafka coordinates."""
    reader = kafka_options(spark.readStream, job.kafka.bootstrap, topics).option("failOnDataLoss", "true")
    return _kafka_columns(reader.option("maxOffsetsPerTrigger", job.stream.max_batch_events).load())


def kafka_options(reader: Any, bootstrap: str, topics: Sequence[str]) -> Any:
    """Spark's Kafka source as the stream reads it (from the earliest offset, headers, consumer tuning),
    for a stream or a batch reader."""
    reader = (
        reader.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", "earliest")
        .option("includeHeaders", "true")
    )
    for key, value in CONSUMER_OPTIONS.items():
        reader = reader.option(key, value)
    return reader


def _kafka_columns(source: DataFrame) -> DataFrame:
    """A Kafka source's rows as the stream handles them: Kafka coordinates, key, value and headers."""
    return source.select(
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key"),
        F.col("value"),
        F.col("headers"),
    )


@dataclass(frozen=True)
class Routing:
    """The columns that route a batch, built once for every batch.

    (Building them costs py4j round trips; a micro-batch every second should not pay that again.)
    A batch's figures (messages, quarantined, Kafka timestamp quantiles) are not aggregated here
    but counted by the commit log from the Parquet files (:meth:`smartcity.stream.commits.CommitLog.plan`):
    the aggregate (percentile_approx) cost this job about 7 % of its time per message.
    """

    route: Column
    columns: tuple[Column, ...]

    @classmethod
    def build(cls, spark: SparkSession) -> Routing:
        """The columns, once the contract check is registered in this session."""
        contract_check.register(spark)
        route = F.call_function(
            contract_check.FUNCTION,
            F.col("value"),
            F.col("key"),
            F.col("topic"),
            F.col("kafka_partition"),
            F.col("kafka_offset"),
            F.unix_micros(F.col("kafka_timestamp")),
        )
        quarantined = F.col("route.table") == lake.QUARANTINE
        # only a quarantined message's line gets its Kafka headers (Spark's JSON of them: bytes in base64)
        line = F.when(
            quarantined,
            F.concat(
                F.col("route.line"),
                F.lit(',"headers":'),
                F.coalesce(F.to_json(F.col("headers")), F.lit("null")),
                F.lit("}"),
            ),
        )
        columns = (
            F.col("route.table").alias("_table"),
            F.col("route.pkey").alias("_pkey"),
            line.otherwise(F.col("route.line")).alias("line"),
        )
        return cls(route.alias("route"), columns)

    def apply(self, raw: DataFrame) -> DataFrame:
        """Each message's table (a topic or ``_quarantine``), partition value and line, in one pass.

        One task per core, not per Kafka partition (which costs more than it reads); coalesce only
        merges, so a batch with fewer partitions keeps them.
        """
        slots = raw.sparkSession.sparkContext.defaultParallelism
        return raw.coalesce(slots).select("headers", self.route).select(*self.columns)


class Publisher:
    """Finishes staged batches in order on a thread of its own, so Spark reads the next batch meanwhile.

    Finishing (manifest, moves) happens after Spark has committed the batch, which is safe because
    the staged files are complete and durable: a crash leaves them for
    :meth:`smartcity.stream.commits.CommitLog.recover`. At most ``backlog`` batches wait; Spark waits beyond that.
    """

    def __init__(
        self, log: commits.CommitLog, on_batch: Callable[[dict[str, Any]], None] | None = None, backlog: int = 2
    ) -> None:
        self.log = log
        self.on_batch = on_batch
        self.pending: queue.Queue[int | None] = queue.Queue(maxsize=backlog)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lake-publisher", daemon=True)
        self.thread.start()

    def submit(self, batch_id: int) -> None:
        self.check()
        self.pending.put(batch_id)

    def idle(self) -> bool:
        return self.pending.unfinished_tasks == 0

    def flush(self) -> None:
        """Wait until every submitted batch is in the lake; raise what went wrong, if anything did."""
        self.pending.join()
        self.check()

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join()

    def check(self) -> None:
        if self.error is not None:
            raise lake.LakeError(f"publishing a batch failed: {self.error}") from self.error

    def _run(self) -> None:
        while True:
            batch_id = self.pending.get()
            try:
                if batch_id is None:
                    return
                if self.error is None:
                    done = self.log.finish(batch_id)
                    if self.on_batch is not None:
                        self.on_batch(done)
            except BaseException as exc:
                self.error = exc
            finally:
                self.pending.task_done()


class LakeWriter:
    """The stream's ``foreachBatch``: route every message once and stage its Parquet files; the publisher does the rest.

    Spark replays a batch whose commit it did not record; the commit log makes that harmless: a
    batch already in the lake is skipped, a staged or planned one is finished, anything else is
    staged again from scratch.
    """

    def __init__(
        self, spark: SparkSession, store: LakeStore, on_batch: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.log = commits.commit_log(store)
        self.routing = Routing.build(spark)
        self.target = store.target()  # once: on S3 it asks boto3 for the endpoint, a client each time
        self.publisher = Publisher(self.log, on_batch)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self.log.is_done(batch_id):
            return
        if not (self.log.has_manifest(batch_id) or self.log.is_staged(batch_id)):
            self._stage(batch, batch_id)
        self.publisher.submit(batch_id)

    def _stage(self, batch: DataFrame, batch_id: int) -> None:
        started = time.time()
        prefix = self.log.start(batch_id)
        routed = self.routing.apply(batch)
        planned_at = time.time()
        files = stage_files(routed, staging.StageTask(self.target, prefix))
        self.log.mark_staged(
            batch_id,
            {
                "started_at": started,
                "plan_seconds": round(planned_at - started, 3),
                "spark_seconds": round(time.time() - planned_at, 3),
                "files": files,
            },
        )


def stage_files(routed: DataFrame, task: staging.StageTask) -> list[dict[str, Any]]:
    """Spark's one job per batch: each task writes its routed lines as Parquet files on its executor
    (:class:`~smartcity.stream.staging.StageTask`); the rows it returns per file, in key order."""
    rows = routed.select("_table", "_pkey", "line").mapInArrow(task, from_arrow_schema(staging.STAGED_FILES)).collect()
    return sorted((row.asDict() for row in rows), key=lambda f: f["key"])


@dataclass
class LakeStream:
    """The running lake query and its publisher: stop it (or leave the ``with`` block) to end both."""

    query: StreamingQuery
    writer: LakeWriter

    def published(self) -> bool:
        """Every batch Spark has finished is in the lake."""
        return self.writer.publisher.idle()

    def failure(self) -> str | None:
        """Why the query or the publisher stopped working, if one of them did."""
        error = self.query.exception()
        if error is not None:
            return describe(error)
        return None if self.writer.publisher.error is None else str(self.writer.publisher.error)

    def wait(self, timeout_s: float) -> bool:
        """Until the query ends by itself (availableNow) and its batches are published; False on timeout."""
        try:
            if not self.query.awaitTermination(timeout_s):
                return False
        except Exception as exc:  # StreamingQueryException: say it while the JVM can still describe it
            raise StreamError(f"streaming query '{QUERY_NAME}' failed: {describe(exc)}") from None
        self.writer.publisher.flush()
        return True

    def stop(self) -> None:
        """Stop reading, then let the publisher finish what Spark handed over."""
        try:
            if self.query.isActive:
                self.query.stop()
        finally:
            try:
                self.writer.publisher.flush()
            finally:
                self.writer.publisher.close()

    def __enter__(self) -> LakeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe(exc: BaseException) -> str:
    """A Spark error's message without its JVM stack trace (which stays in data/<profile>/logs/spark.log)."""
    return str(exc).split("\n\nJVM stacktrace:")[0].strip()


def warm_up(
    spark: SparkSession, bootstrap: str, scratch_topics: Sequence[str], scratch_dir: Path, prefix: str, rounds: int = 5
) -> None:
    """Run a batch's whole path on messages the caller put in scratch topics: Kafka source, contract check,
    routing, the executors' Parquet writer.

    A JVM runs new code slowly until it is compiled: the first micro-batches of a cold stream took
    20 s for 500 messages here, while the live fleet's events piled up. Reading the messages back
    through Spark's Kafka source compiles the consumer's code too, the largest cost per message.
    ``prefix`` is what the scratch topics' names add to the real ones'. Nothing is written to the lake.
    """
    frame = _kafka_batch(spark, bootstrap, scratch_topics).withColumn(
        "topic", F.expr(f"substring(topic, {len(prefix) + 1})")
    )
    routing = Routing.build(spark)
    with tempfile.TemporaryDirectory(prefix="warm-up-", dir=scratch_dir) as scratch:
        target = LocalStore(Path(scratch)).target()
        for n in range(rounds):  # exactly what a batch runs: route, stage the Parquet files
            stage_files(routing.apply(frame), staging.StageTask(target, str(n)))
            shutil.rmtree(Path(scratch) / str(n), ignore_errors=True)


def _kafka_batch(spark: SparkSession, bootstrap: str, topics: Sequence[str]) -> DataFrame:
    """Everything the topics hold, read once by Spark's Kafka source as a batch, in read_kafka's columns."""
    reader = kafka_options(spark.read, bootstrap, topics).option("endingOffsets", "latest")
    return _kafka_columns(reader.load())


def start_stream(
    spark: SparkSession,
    job: StreamJob,
    topics: Sequence[str] = TOPICS,
    *,
    available_now: bool = True,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> LakeStream:
    """Start the one lake query (after recovering what a crash left); stop the returned stream."""
    kafka_topics.ensure_topics(job.kafka.bootstrap, topics, partitions=job.kafka.partitions)  # a stream may start first
    writer = LakeWriter(spark, job.store, on_batch)
    try:
        writer.log.recover()
        stream = (
            read_kafka(spark, job, topics)
            .writeStream.queryName(QUERY_NAME)
            .option("checkpointLocation", writer.log.store.spark_uri(f"{lake.CHECKPOINTS}/{QUERY_NAME}"))
            .foreachBatch(writer)
        )
        if available_now:
            stream = stream.trigger(availableNow=True)
        else:
            stream = stream.trigger(processingTime=f"{job.stream.trigger_seconds} seconds")
        return LakeStream(stream.start(), writer)
    except BaseException:
        writer.publisher.close()
        raise


def serve(
    spark: SparkSession,
    job: StreamJob,
    *,
    duration_s: float = 0.0,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run the stream continuously until the duration is up, ``should_stop`` says so, or Ctrl-C."""
    with lake.writer_lock(job.data_dir), start_stream(spark, job, available_now=False, on_batch=on_batch) as running:
        deadline = time.monotonic() + duration_s if duration_s else float("inf")
        while not should_stop() and time.monotonic() < deadline:
            if running.wait(0.5):
                break
            problem = running.failure()
            if problem:
                raise StreamError(f"streaming query '{QUERY_NAME}' failed: {problem}")


def preview(spark: SparkSession, store: LakeStore, table: str, rows: int = 5) -> pd.DataFrame:
    """The first rows of a lake table in event-time order, read back by Spark from the table's folder.

    Without the Kafka offset and timestamp: they depend on the broker's history and the wall clock,
    not on the run, and the stored notebook must show the same rows every time.
    """
    frame = spark.read.option("mergeSchema", "true").parquet(store.spark_uri(f"{lake.LAKE}/{table}"))
    return frame.drop("kafka_offset", "kafka_timestamp").orderBy("timestamp", "deviceId").limit(rows).toPandas()


def lake_counts(store: LakeStore, tables: Sequence[str]) -> dict[str, int]:
    """Rows per table as a glob of its folder returns them, from the footers."""
    return {t: lake.count_table_rows(store, t) for t in tables}


def run_bounded(spark: SparkSession, job: StreamJob, topics: Sequence[str] = TOPICS) -> pd.DataFrame:
    """Stream everything the topics hold into the lake, then stop: rows written per table."""
    tables = [*topics, lake.QUARANTINE]
    with lake.writer_lock(job.data_dir):
        before = lake_counts(job.store, tables)
        with start_stream(spark, job, topics, available_now=True) as running:
            if not running.wait(job.stream.timeout_seconds):
                raise StreamError(
                    f"streaming query '{QUERY_NAME}' did not finish within stream_timeout_seconds="
                    f"{job.stream.timeout_seconds}"
                )
        after = lake_counts(job.store, tables)
    rows = [
        {"table": t, "rows before": before[t], "rows written": after[t] - before[t], "rows in lake": after[t]}
        for t in tables
    ]
    return pd.DataFrame(rows).set_index("table")
