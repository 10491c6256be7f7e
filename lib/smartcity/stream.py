"""Spark Structured Streaming from the five Kafka topics to the Parquet lake, exactly once for every reader.

One streaming query reads all five topics. Each micro-batch is parsed once (one JSON parse per
message, with one schema that covers every topic), checked against its topic's contract, cached,
and written to a staging folder: the valid events of each topic as a table partitioned by event
date, every other message to the quarantine, kept whole (bytes, key, headers, Kafka coordinates)
with the reason. The lake's commit protocol (:class:`smartcity.lake.CommitLog`) then publishes the
batch into the table folders, so a glob of a folder is exactly-once after any crash and restart.

Bad input never stops the stream: anything a producer can send ends up either in its table,
valid, or in the quarantine with the first rule it breaks. In batch runs the query uses the
``availableNow`` trigger (read what the topics hold, write it, stop); live runs use a processing
time trigger and run until stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pandas as pd

from smartcity import contracts, lake, report
from smartcity.config import TOPICS, Params
from smartcity.contracts import fields_of

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

#: Messages larger than this are quarantined unparsed (contract messages are about 300 bytes).
MAX_MESSAGE_BYTES = 64 * 1024
#: Deeper JSON is refused unparsed as "nested too deep" (contract messages are flat objects).
NESTING_LIMIT = 1000
PREVIEW_CHARS = 512
QUERY_NAME = "lake"
#: Quantiles of the Kafka timestamps recorded per batch: freshness percentiles come from them.
QUANTILES = tuple(q / 20 for q in range(21))
CONTROL_CHARS = "[\\x00-\\x1f\\x7f]"
#: Parser options: no NaN/Infinity tokens (not JSON), timestamps only as ISO 8601 with an offset.
JSON_OPTIONS = {
    "allowNonNumericNumbers": "false",
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX",
    "enableDateTimeParsingFallback": "false",
}


class StreamError(RuntimeError):
    """A streaming query failed or did not finish in time; the message names the query."""


def read_kafka(spark: SparkSession, cfg: Params, topics: Sequence[str] = TOPICS) -> DataFrame:
    """The raw Kafka stream of the topics: bytes, key, headers and Kafka coordinates."""
    from pyspark.sql import functions as F

    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka_bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
        .option("includeHeaders", "true")
        .option("maxOffsetsPerTrigger", cfg.stream_max_batch_events)
        .load()
    )
    return raw.select(
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key"),
        F.col("value"),
        F.col("headers"),
    )


def violation_reason(topic: Column, value: Column, key: Column) -> Column:
    """Why a message cannot go to its table (the first rule it breaks), or NULL when it is valid.

    One pass of the lab's Java check over the raw bytes (:mod:`smartcity.jvm`, ContractCheck.java),
    with the contracts handed over as JSON generated from :mod:`smartcity.contracts`.
    """
    from pyspark.sql import functions as F

    from smartcity.spark import CONTRACT_CHECK

    spec = contracts.check_spec(MAX_MESSAGE_BYTES, NESTING_LIMIT)
    return F.call_function(CONTRACT_CHECK, value, key, topic, F.lit(spec))


def parse_messages(raw: DataFrame) -> DataFrame:
    """Raw messages with the reason each is invalid (if it is) and, for valid ones, the parsed event."""
    from pyspark.sql import functions as F

    reason = violation_reason(F.col("topic"), F.col("value"), F.col("key"))
    parsed = F.from_json(F.col("value").cast("string"), contracts.spark_schema(), JSON_OPTIONS)
    return (
        raw.withColumn("reason", reason)
        .withColumn("event", F.when(F.col("reason").isNull(), parsed))
    )


def valid_events(parsed: DataFrame, topic: str) -> DataFrame:
    """Lake rows of one topic: the contract fields (latest version), event date and Kafka lineage."""
    from pyspark.sql import functions as F

    return parsed.where((F.col("topic") == topic) & F.col("reason").isNull()).select(
        *[F.col("event")[f.name].alias(f.name) for f in fields_of(topic)],
        F.to_date(F.col("event")["timestamp"]).alias("event_date"),
        F.col("kafka_partition"),
        F.col("kafka_offset"),
        F.col("kafka_timestamp"),
    )


def quarantined(parsed: DataFrame) -> DataFrame:
    """Messages that break their contract, kept whole, with the reason and a printable preview."""
    from pyspark.sql import functions as F

    printable = F.regexp_replace(F.make_valid_utf8(F.col("value").cast("string")), CONTROL_CHARS, "\ufffd")
    return parsed.where(F.col("reason").isNotNull()).select(
        F.col("reason"),
        F.substring(printable, 1, PREVIEW_CHARS).alias("preview"),
        F.col("key"),
        F.col("value"),
        F.col("headers"),
        F.col("kafka_partition"),
        F.col("kafka_offset"),
        F.col("kafka_timestamp"),
        F.col("topic"),
    )


class LakeWriter:
    """The stream's ``foreachBatch``: parse once, stage every table, publish through the commit log.

    Spark replays a batch whose commit it did not record; the commit log makes that harmless: a
    batch already in the lake is skipped, a planned one is rolled forward, anything else is staged
    again from scratch.
    """

    def __init__(self, cfg: Params, topics: Sequence[str] = TOPICS,
                 on_batch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cfg = cfg
        self.topics = tuple(topics)
        self.log = lake.commit_log(cfg)
        self.on_batch = on_batch

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self.log.is_done(batch_id):
            return
        if not self.log.has_manifest(batch_id):
            self._stage(batch, batch_id)
        done = self.log.publish(batch_id)
        if self.on_batch is not None:
            self.on_batch(done)

    def _stage(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        started = time.time()
        staging = self.log.start(batch_id)
        observed = Observation(f"batch-{batch_id}")
        parsed = parse_messages(batch).observe(
            observed,
            F.count(F.lit(1)).alias("messages"),
            F.count(F.col("reason")).alias("quarantined"),
            F.percentile_approx(F.unix_micros(F.col("kafka_timestamp")), list(QUANTILES), 10_000).alias("produced_us"),
            *[F.count(F.when((F.col("topic") == t) & F.col("reason").isNull(), 1)).alias(t) for t in self.topics],
        ).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            parsed.count()  # one pass: parse and cache; the observed metrics arrive with it
            metrics = observed.get
            writes = [(t, valid_events(parsed, t), "event_date") for t in self.topics if metrics[t]]
            if metrics["quarantined"]:
                writes.append((lake.QUARANTINE, quarantined(parsed), "topic"))
            parsed_at = time.time()
            with ThreadPoolExecutor(max_workers=max(1, len(writes))) as pool:
                for future in [pool.submit(self._write, df, staging / name, key) for name, df, key in writes]:
                    future.result()
        finally:
            parsed.unpersist()
        stamps = metrics["produced_us"] or []
        self.log.plan(batch_id, {
            "messages": metrics["messages"], "quarantined": metrics["quarantined"],
            "produced_quantiles": [s / 1e6 for s in stamps], "started_at": started,
            "parse_seconds": parsed_at - started, "write_seconds": time.time() - parsed_at,
        })

    @staticmethod
    def _write(frame: DataFrame, path: object, partition: str) -> None:
        frame.coalesce(1).write.mode("error").partitionBy(partition).parquet(str(path))


def start_stream(spark: SparkSession, cfg: Params, topics: Sequence[str] = TOPICS, *, available_now: bool = True,
                 on_batch: Callable[[dict[str, Any]], None] | None = None) -> StreamingQuery:
    """Start the one lake query (after recovering what a crash left); the caller must stop it."""
    writer = LakeWriter(cfg, topics, on_batch)
    writer.log.recover()
    stream = (
        read_kafka(spark, cfg, topics)
        .writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", str(cfg.checkpoint_path / QUERY_NAME))
        .foreachBatch(writer)
    )
    if available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=f"{cfg.stream_trigger_seconds} seconds")
    return stream.start()


def stop_stream(query: StreamingQuery | None) -> None:
    if query is not None and query.isActive:
        query.stop()


def serve(spark: SparkSession, cfg: Params, *, duration_s: float = 0.0,
          on_batch: Callable[[dict[str, Any]], None] | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run the stream continuously until the duration is up, ``should_stop`` says so, or Ctrl-C."""
    with lake.writer_lock(cfg):
        query = start_stream(spark, cfg, available_now=False, on_batch=on_batch)
        deadline = time.monotonic() + duration_s if duration_s else float("inf")
        try:
            while not should_stop() and time.monotonic() < deadline:
                if query.awaitTermination(0.5):
                    break
            error = query.exception()
            if error is not None:
                raise StreamError(f"streaming query '{QUERY_NAME}' failed: {error}")
        finally:
            stop_stream(query)


def preview(spark: SparkSession, cfg: Params, table: str, rows: int = 5) -> pd.DataFrame:
    """The first rows of a lake table in event-time order, read back by Spark from the table's folder."""
    frame = spark.read.option("mergeSchema", "true").parquet(str(lake.table_path(cfg, table)))
    return frame.orderBy("timestamp", "deviceId").limit(rows).toPandas()


def lake_counts(cfg: Params, tables: Sequence[str]) -> dict[str, int]:
    return {t: lake.count_rows(lake.data_files(lake.table_path(cfg, t))) for t in tables}


def run_bounded(spark: SparkSession, cfg: Params, topics: Sequence[str] = TOPICS) -> pd.DataFrame:
    """Stream everything the topics hold into the lake, then stop: rows written per table."""
    tables = [*topics, lake.QUARANTINE]
    with lake.writer_lock(cfg):
        before = lake_counts(cfg, tables)
        query = start_stream(spark, cfg, topics, available_now=True)
        try:
            try:
                finished = query.awaitTermination(cfg.stream_timeout_seconds)
            except Exception as exc:  # StreamingQueryException carries the JVM error
                raise StreamError(f"streaming query '{QUERY_NAME}' failed: {exc}") from exc
            if not finished:
                raise StreamError(
                    f"streaming query '{QUERY_NAME}' did not finish within stream_timeout_seconds="
                    f"{cfg.stream_timeout_seconds}"
                )
        finally:
            stop_stream(query)
        after = lake_counts(cfg, tables)
    report.record_counts(cfg, "lake", after)
    rows = [{"table": t, "rows before": before[t], "rows written": after[t] - before[t], "rows in lake": after[t]}
            for t in tables]
    return pd.DataFrame(rows).set_index("table")
