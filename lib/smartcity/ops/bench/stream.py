"""(d) The stream against Spark's batch ceiling: the same events drained by the lab's stream and by a
naive Spark batch job, alternating, in one session. Written to ``stream.{json,md}``."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from smartcity import steps
from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS
from smartcity.ops.bench.common import BENCH_DIR, machine_line, measured, save
from smartcity.ops.bench.harness import bench_cfg, drain, fleet_run, glob_counts, produced_into, warm_up
from smartcity.platform.params import project_root
from smartcity.stream import commits


def _batch_ceiling(spark: Any, bootstrap: str, out: Path) -> None:
    """The naive Spark batch job over the same topics: read Kafka, from_json per topic, Parquet by date."""
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", ",".join(TOPICS))
        .option("startingOffsets", "earliest")
        .load()
    )
    for topic in TOPICS:
        (
            raw.where(F.col("topic") == topic)
            .select(F.from_json(F.col("value").cast("string"), contracts.spark_schema(topic)).alias("e"))
            .select("e.*")
            .withColumn("event_date", F.to_date("timestamp"))
            .write.mode("overwrite")
            .partitionBy("event_date")
            .parquet(str(out / topic))
        )


def _stream_then_batch(
    spark: SparkSession, lab: steps.Lab, produced: dict[str, int], ceiling: Path, n: int
) -> dict[str, Any]:
    """Run ``n``: the stream drains the topics from scratch, then the batch job reads them into ``ceiling``;
    both checked against what was produced."""
    stream_s = drain(spark, lab, produced, f"stream run {n}")["wall_s"]
    batches = len(commits.commit_log(lab.store).batches())
    started = time.perf_counter()
    _batch_ceiling(spark, lab.cfg.kafka.bootstrap, ceiling)
    batch_s = time.perf_counter() - started
    if glob_counts(ceiling) != produced:
        raise RuntimeError(f"batch run {n}: its Parquet does not hold what was produced")
    return {
        "stream_seconds": round(stream_s, 2),
        "stream_batches": batches,
        "batch_seconds": round(batch_s, 2),
        "ratio": round(batch_s / stream_s, 2),
    }


def run_stream_bench(vehicles: int = 80, repeats: int = 3, out_dir: Path | None = None) -> dict[str, Any]:
    """(d): the stream's sustained drain rate and its ratio to the batch ceiling, same events, same session.

    The stream (one query, contract check, staging, publish) drains the topics from scratch; then
    the batch job reads the same topics. Both run ``repeats`` times, alternating; the medians count.
    Every stream run must put every event in the lake (a DuckDB glob checks it) or nothing is reported.
    """
    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    try:
        cfg = bench_cfg(work, vehicles=vehicles, departure_spacing_seconds=20.0, stream_max_batch_events=200_000)
        events, produced = fleet_run(cfg)
        lab = steps.open_lab(cfg)
        with steps.open_broker(cfg):
            produced_into(lab, events)
            with steps.spark(cfg) as spark:
                warm = warm_up(lab, spark)
                runs = [_stream_then_batch(spark, lab, produced, work / "ceiling", n) for n in range(repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = len(events)
    stream_s = statistics.median(r["stream_seconds"] for r in runs)
    batch_s = statistics.median(r["batch_seconds"] for r in runs)
    results = measured()
    results.update(
        {
            "conditions": (
                f"{total:,} events of {vehicles} vehicles in 5 topics of 3 partitions on a local broker; "
                f"Spark {cfg.spark.master}, driver {cfg.spark.driver_memory}, maxOffsetsPerTrigger "
                f"{cfg.stream.max_batch_events:,}; JVM warmed up first ({warm:.0f} s); {repeats} runs each, "
                f"alternating, medians; {results['load_when_done']}"
            ),
            "events": total,
            "runs": runs,
            "stream_events_per_s": round(total / stream_s),
            "batch_ceiling_events_per_s": round(total / batch_s),
            "ratio": round(batch_s / stream_s, 2),
            "goals": {
                "ratio_at_least_0.5": batch_s / stream_s >= 0.5,
                "at_least_50000_events_per_s": total / stream_s >= 50_000,
            },
        }
    )
    save(out_dir, "stream", results, render_stream_markdown(results))
    return results


def render_stream_markdown(results: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {n} | {r['stream_seconds']:.1f} | {r['stream_batches']} | {r['batch_seconds']:.1f} | {r['ratio']:.2f} |"
        for n, r in enumerate(results["runs"])
    )
    return (
        f"# Stream benchmark (d) ({results['measured_at']})\n\n"
        + machine_line(results)
        + f"Conditions: {results['conditions']}.\n\n"
        "| run | stream s | micro-batches | batch job s | batch s / stream s |\n|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Stream: **{results['stream_events_per_s']:,} events/s**; the naive batch job (read Kafka, `from_json`, "
        f"Parquet by date, no checks, no exactly-once publishing): {results['batch_ceiling_events_per_s']:,} events/s; "
        f"ratio **{results['ratio']:.2f}** (goal ≥ 0.5: {'met' if results['goals']['ratio_at_least_0.5'] else 'NOT met'}; "
        f"goal ≥ 50,000 events/s: {'met' if results['goals']['at_least_50000_events_per_s'] else 'NOT met'}).\n"
    )
