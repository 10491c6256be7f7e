"""Spark Structured Streaming from the five Kafka topics to the Parquet lake.

One query per topic parses the JSON value against the topic's contract and appends the valid
events to ``lake/<topic>/event_date=YYYY-MM-DD/``; one more query sends every message that breaks
its contract to ``lake/_quarantine/topic=<topic>/`` with the reason, so bad input is kept and
explained, and never stops the stream. Each query has its own checkpoint; Spark's file sink
commits each micro-batch exactly once. In batch runs the queries use the ``availableNow``
trigger: they read what the topics hold now, write it, and stop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from smartcity import lake, report
from smartcity.config import TOPICS, Params
from smartcity.contracts import Field, fields_of, spark_schema

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

MAX_OFFSETS_PER_TRIGGER = 200_000


class StreamError(RuntimeError):
    """A streaming query failed or did not finish in time; the message names the query."""


def read_kafka(spark: SparkSession, cfg: Params, topics: Sequence[str]) -> DataFrame:
    """The raw Kafka stream: value as text plus topic, partition and offset for lineage."""
    from pyspark.sql import functions as F

    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka_bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", MAX_OFFSETS_PER_TRIGGER)
        .load()
    )
    return raw.select(
        F.col("value").cast("string").alias("raw"),
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )


def _violation(f: Field, value: Column) -> list[tuple[Column, str]]:
    from pyspark.sql import functions as F

    checks: list[tuple[Column, str]] = []
    if f.required:
        checks.append((value.isNull(), f"missing or mistyped required field '{f.name}'"))
    if f.minimum is not None:
        checks.append((value < F.lit(f.minimum), f"field '{f.name}' below its minimum {f.minimum:g}"))
    if f.maximum is not None:
        checks.append((value > F.lit(f.maximum), f"field '{f.name}' above its maximum {f.maximum:g}"))
    if f.enum:
        checks.append((~value.isin(*f.enum), f"field '{f.name}' not one of {', '.join(f.enum)}"))
    if f.const is not None:
        checks.append((value != F.lit(f.const), f"field '{f.name}' is not {f.const}: another contract version"))
    return checks


def violation_reason(topic: str, raw: Column, parsed: Column) -> Column:
    """The first way a message breaks its topic's contract, or NULL when it is valid."""
    from pyspark.sql import functions as F

    checks: list[tuple[Column, str]] = [
        (raw.isNull(), "empty message"),
        (F.try_parse_json(raw).isNull(), "not valid JSON"),
        (~F.ltrim(raw).startswith("{"), "not a JSON object"),
    ]
    for f in fields_of(topic):
        checks.extend(_violation(f, parsed[f.name]))
    return F.coalesce(*[F.when(cond, F.lit(msg)) for cond, msg in checks])


def parse_topic(raw: DataFrame, topic: str) -> DataFrame:
    """Raw messages of one topic with the parsed event and the reason it is invalid (if it is)."""
    from pyspark.sql import functions as F

    parsed = F.from_json(F.col("raw"), spark_schema(topic))
    return raw.withColumn("event", parsed).withColumn("reason", violation_reason(topic, F.col("raw"), F.col("event")))


def valid_events(parsed: DataFrame, topic: str) -> DataFrame:
    """Lake rows of one topic: the contract fields, event date and Kafka lineage."""
    from pyspark.sql import functions as F

    return parsed.where(F.col("reason").isNull()).select(
        *[F.col("event")[f.name].alias(f.name) for f in fields_of(topic)],
        F.to_date(F.col("event")["timestamp"]).alias("event_date"),
        F.col("kafka_partition"),
        F.col("kafka_offset"),
    )


def quarantined(raw: DataFrame, topics: Sequence[str]) -> DataFrame:
    """Messages of any topic that break their contract, kept whole with the reason."""
    from pyspark.sql import functions as F

    reason = None
    for topic in topics:
        check = violation_reason(topic, F.col("raw"), F.from_json(F.col("raw"), spark_schema(topic)))
        reason = (F.when(F.col("topic") == topic, check) if reason is None
                  else reason.when(F.col("topic") == topic, check))
    return (
        raw.withColumn("reason", reason)
        .where(F.col("reason").isNotNull())
        .select("topic", "kafka_partition", "kafka_offset", "raw", "reason")
    )


def start_queries(spark: SparkSession, cfg: Params, topics: Sequence[str] = TOPICS,
                  *, available_now: bool = True) -> list[StreamingQuery]:
    """Start one lake query per topic plus the quarantine query; the caller must stop them."""
    queries: list[StreamingQuery] = []

    def sink(df: DataFrame, name: str, partition: str) -> None:
        writer = (
            df.writeStream.queryName(name)
            .format("parquet")
            .option("path", str(lake.table_path(cfg, name)))
            .option("checkpointLocation", str(cfg.checkpoint_path / name))
            .partitionBy(partition)
            .outputMode("append")
        )
        writer = writer.trigger(availableNow=True) if available_now else writer.trigger(processingTime="5 seconds")
        queries.append(writer.start())

    try:
        for topic in topics:
            sink(valid_events(parse_topic(read_kafka(spark, cfg, [topic]), topic), topic), topic, "event_date")
        sink(quarantined(read_kafka(spark, cfg, topics), topics), lake.QUARANTINE, "topic")
    except BaseException:
        stop_queries(queries)
        raise
    return queries


def stop_queries(queries: Sequence[StreamingQuery]) -> None:
    for query in queries:
        if query.isActive:
            query.stop()


def preview(spark: SparkSession, cfg: Params, table: str, rows: int = 5) -> pd.DataFrame:
    """The first rows of a lake table in event-time order, read back by Spark."""
    frame = spark.read.parquet(str(lake.table_path(cfg, table)))
    return frame.orderBy("timestamp", "deviceId").limit(rows).toPandas()


def lake_counts(cfg: Params, tables: Sequence[str]) -> dict[str, int]:
    return {t: lake.count_rows(lake.committed_files(lake.table_path(cfg, t))) for t in tables}


def run_bounded(spark: SparkSession, cfg: Params, topics: Sequence[str] = TOPICS) -> pd.DataFrame:
    """Stream everything the topics hold into the lake, then stop: rows written per table."""
    tables = [*topics, lake.QUARANTINE]
    before = lake_counts(cfg, tables)
    queries = start_queries(spark, cfg, topics, available_now=True)
    deadline = time.monotonic() + cfg.stream_timeout_seconds
    try:
        for query in queries:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                finished = query.awaitTermination(remaining)
            except Exception as exc:  # StreamingQueryException carries the JVM error
                raise StreamError(f"streaming query '{query.name}' failed: {exc}") from exc
            if not finished:
                raise StreamError(
                    f"streaming query '{query.name}' did not finish within stream_timeout_seconds="
                    f"{cfg.stream_timeout_seconds}"
                )
    finally:
        stop_queries(queries)
    after = lake_counts(cfg, tables)
    report.record_counts(cfg, "lake", after)
    rows = [{"table": t, "rows before": before[t], "rows written": after[t] - before[t], "rows in lake": after[t]}
            for t in tables]
    return pd.DataFrame(rows).set_index("table")
