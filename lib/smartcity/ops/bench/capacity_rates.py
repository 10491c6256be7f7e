"""The capacity model's rates that no other benchmark measures (``--only capacity-rates``).

The event mix and bytes per event, the broker's and the stream's CPU per event, (g) the catalog's
and (h) the warehouse load's, all as CPU-seconds of each engine's process tree; written to
``capacity.{json,md}``, then collected with the other benchmarks' rates into ``rates.json``
(:mod:`smartcity.ops.bench.rates`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from smartcity import steps
from smartcity.catalog.crawler import catalog_name
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.events import parse_iso
from smartcity.ingest.producer import produce
from smartcity.ops.bench.common import BENCH_DIR, CpuMeter, machine_line, measured, save, tree_cpu_seconds
from smartcity.ops.bench.harness import bench_cfg, drain, fleet_run, glob_counts, produced_into, warm_up
from smartcity.ops.bench.rates import write_rates
from smartcity.params import Params
from smartcity.platform import topics
from smartcity.platform.params import project_root
from smartcity.stream import commits
from smartcity.warehouse.postgres import PostgresWarehouse
from smartcity.warehouse.schema import SCHEMA


def event_mix(events: list[Event], tick_seconds: float) -> dict[str, Any]:
    """How many events of each topic a vehicle makes, measured on a simulated run, and their sizes on the wire.

    Telemetry and GPS come once per vehicle per fix; a camera event once per vehicle passing a
    camera, so per vehicle-second driven whatever the fix interval; weather and incident reports
    come from the corridor's stations and roads, not from the vehicles: per simulated hour.
    """
    counts = {t: sum(1 for e in events if e.topic == t) for t in TOPICS}
    fixes = counts["vehicle_data"]  # one telemetry event per vehicle per fix
    stamps = [parse_iso(e.value["timestamp"]) for e in (events[0], events[-1])]
    hours = (stamps[1] - stamps[0]).total_seconds() / 3600
    header = len("schemaVersion") + 1
    json_bytes = {
        t: round(
            sum(len(e.key) + len(orjson.dumps(e.value)) + header for e in events if e.topic == t) / max(1, counts[t]), 1
        )
        for t in TOPICS
    }
    return {
        "events": len(events),
        "events_per_topic": counts,
        "vehicle_fixes": fixes,
        "tick_seconds": tick_seconds,
        "simulated_hours": round(hours, 3),
        "per_vehicle_fix": {t: round(counts[t] / fixes, 4) for t in ("vehicle_data", "gps_data")},
        "traffic_data_per_vehicle_second": round(counts["traffic_data"] / (fixes * tick_seconds), 6),
        "background_per_hour": {t: round(counts[t] / hours, 2) for t in ("weather_data", "emergency_data")},
        "events_per_vehicle_fix_all_topics": round(len(events) / fixes, 4),
        "kafka_json_bytes_per_event": json_bytes,
    }


def _kafka_log_bytes(kafka_dir: Path) -> dict[str, int]:
    """Bytes of the broker's log segments per topic (the records as stored: compressed batches, headers)."""
    sizes = {t: 0 for t in TOPICS}
    for segment in kafka_dir.rglob("*.log"):
        topic = segment.parent.name.rpartition("-")[0]
        if topic in sizes:
            sizes[topic] += segment.stat().st_size
    return sizes


def lake_bytes(lake_root: Path) -> dict[str, Any]:
    """Parquet files, bytes and bytes per event of each table of a lake (rows counted by DuckDB)."""
    rows = glob_counts(lake_root)
    out = {}
    for topic in TOPICS:
        files = list((lake_root / topic).rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        out[topic] = {
            "files": len(files),
            "bytes": size,
            "rows": rows[topic],
            "bytes_per_event": round(size / rows[topic], 1) if rows[topic] else None,
        }
    return out


def run_catalog_bench(lab: steps.Lab, repeats: int = 5) -> dict[str, Any]:
    """(g): 03_catalog's step over the lab's lake, from an empty catalog, then once more with nothing new.

    The crawler runs in this process (DuckDB, Arrow): its CPU is this process's. A first crawl opens
    every file's footer; a re-crawl opens none but still re-registers each table and counts its view.
    Both ``repeats`` times (a fresh catalog file each time), medians: a crawl takes a fraction of a second.
    """
    firsts, agains = [], []
    for _ in range(repeats):
        lab.cfg.paths.catalog.unlink(missing_ok=True)
        with CpuMeter() as first:
            summary = steps.crawl_lake(lab)
        with CpuMeter() as again:
            steps.crawl_lake(lab)
        firsts.append(first.result)
        agains.append(again.result)
    events = int(summary.loc[[catalog_name(t) for t in TOPICS], "row_count"].sum())
    files = int(summary["files read"].sum())
    cpu = statistics.median(r["self_cpu_s"] for r in firsts)
    fixed = statistics.median(r["self_cpu_s"] for r in agains)
    # what opening one new file adds: the first crawl less a crawl of the same lake with nothing new
    return {
        "events": events,
        "files": files,
        "repeats": repeats,
        "first_crawl_cpu_s": [r["self_cpu_s"] for r in firsts],
        "first_crawl_wall_s": [r["wall_s"] for r in firsts],
        "recrawl_nothing_new_cpu_s": [r["self_cpu_s"] for r in agains],
        "events_per_cpu_s": round(events / max(cpu, 1e-9)),
        "files_per_cpu_s": round(files / max(cpu, 1e-9), 1),
        "cpu_s_per_new_file": round(max(cpu - fixed, 0.0) / max(files, 1), 5),
    }


def run_warehouse_bench(lab: steps.Lab, warehouse: PostgresWarehouse) -> dict[str, Any]:
    """(h): 05_redshift's load of the whole lake into an empty warehouse schema.

    CPU counts both sides: this process (reads Parquet, writes CSV for COPY) and the PostgreSQL
    server's processes (the backend doing COPY and the merge, and its background writers). Every
    event of the lake must be in the warehouse afterwards or nothing is reported.
    """
    with warehouse.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    in_lake = glob_counts(lab.cfg.paths.lake)
    time.sleep(1.0)  # the DROP's backend has exited and been reaped
    server_pid = warehouse.server.process.pid
    server_before = tree_cpu_seconds(server_pid)
    with CpuMeter() as meter:
        steps.load_warehouse(lab, warehouse)
    # the backend that served the load exits when its connection closes; once the postmaster has reaped
    # it, its CPU is in the postmaster's children times: read the server's tree a moment later
    time.sleep(1.0)
    result = {**meter.result, "server_cpu_s": round(tree_cpu_seconds(server_pid) - server_before, 3)}
    loaded = warehouse.counts()
    if loaded != in_lake:
        raise RuntimeError(f"the warehouse holds {loaded}, the lake {in_lake}")
    events = sum(in_lake.values())
    cpu = result["self_cpu_s"] + result["server_cpu_s"]
    return {
        "events": events,
        **result,
        "events_per_cpu_s": round(events / max(cpu, 1e-9)),
        "client_events_per_cpu_s": round(events / max(result["self_cpu_s"], 1e-9)),
        "server_events_per_cpu_s": round(events / max(result["server_cpu_s"], 1e-9)),
        "events_per_s_wall": round(events / max(result["wall_s"], 1e-9)),
    }


def _stream_run(spark: Any, lab: steps.Lab, produced: dict[str, int], jvm_pid: int, broker_pid: int) -> dict[str, Any]:
    """One bounded drain of the topics into an empty lake; CPU of the Spark JVM with its executors' Python
    workers, of this process (the driver's Python: foreachBatch callbacks and the commit) and of the
    broker serving the reads; the bytes the driver read from the lake, per million events."""
    r = drain(spark, lab, produced, "a stream run", jvm=jvm_pid, broker=broker_pid)
    batches = commits.commit_log(lab.store).batches()
    events = sum(produced.values())
    stream_cpu = r["jvm_cpu_s"] + r["self_cpu_s"]
    return {
        **r,
        "driver_python_cpu_share": round(r["self_cpu_s"] / stream_cpu, 4),
        "driver_python_cpu_s_per_million": round(r["self_cpu_s"] / events * 1e6, 3),
        "driver_event_bytes_read_per_million": round(r["driver_event_bytes_read"] / events * 1e6),
        "driver_commit_bytes_read_per_million": round(r["driver_commit_bytes_read"] / events * 1e6),
        "batches": len(batches),
        "staged_files": sum(len(b["files"]) for b in batches),
        "partitions_per_topic": lab.cfg.kafka.partitions,
        "spark_slots": spark.sparkContext.defaultParallelism,
        "max_batch_events": lab.cfg.stream.max_batch_events,
        "events_per_cpu_s": round(events / stream_cpu),
        "jvm_events_per_cpu_s": round(events / r["jvm_cpu_s"]),
        "driver_python_events_per_cpu_s": round(events / max(r["self_cpu_s"], 1e-9)),
        "events_per_s_wall": round(events / r["wall_s"]),
        "broker_fetch_events_per_cpu_s": round(events / max(r["broker_cpu_s"], 1e-9)),
    }


def _broker_rates(lab: steps.Lab, broker_pid: int, events: list[Event], produced: dict[str, int]) -> dict[str, Any]:
    """2. The broker's CPU per event produced (a first produce warms its JVM up, then the topics are emptied
    and the same events produced again, measured) and its log bytes per event."""
    bootstrap = lab.cfg.kafka.bootstrap
    produced_into(lab, events)  # warms the broker up
    log_bytes = _kafka_log_bytes(lab.cfg.paths.kafka)  # one copy of every event, as the broker keeps it
    kafka_log = {t: round(log_bytes[t] / produced[t], 1) if produced[t] else None for t in TOPICS}
    topics.truncate_topics(bootstrap, TOPICS)
    time.sleep(5.0)
    with CpuMeter(broker=broker_pid) as idle:
        time.sleep(10.0)
    with CpuMeter(broker=broker_pid) as ingest:
        produce(bootstrap, events, backend="confluent-kafka", progress=False)
    if topics.topic_counts(bootstrap, TOPICS) != produced:
        raise RuntimeError("the topics do not hold what was produced")
    total, ingest_r, idle_r = len(events), ingest.result, idle.result
    return {
        "ingest": {
            **ingest_r,
            "events_per_cpu_s": round(total / max(ingest_r["broker_cpu_s"], 1e-9)),
            "producer_events_per_cpu_s": round(total / max(ingest_r["self_cpu_s"], 1e-9)),
        },
        "idle_broker_cores": round(idle_r["broker_cpu_s"] / idle_r["wall_s"], 4),
        "log_bytes_per_event": kafka_log,
    }


def _stream_rates(
    runs: list[dict[str, Any]],
    first: dict[str, Any],
    small_runs: list[dict[str, Any]],
    small_batch_events: int,
    wide_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """3. The stream's medians; the CPU of a further micro-batch (the same events in more, smaller batches);
    the driver's CPU per micro-batch and per staged file (:func:`driver_costs`)."""

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def cpu(run: dict[str, Any]) -> float:
        return run["jvm_cpu_s"] + run["self_cpu_s"]

    small_cpu = statistics.median(cpu(r) for r in small_runs)
    small_batches = statistics.median(r["batches"] for r in small_runs)
    per_batch = (small_cpu - statistics.median(cpu(r) for r in runs)) / (small_batches - median("batches"))
    return {
        "first_drain_not_counted": first,
        "runs": runs,
        "events_per_cpu_s": round(median("events_per_cpu_s")),
        "jvm_events_per_cpu_s": round(median("jvm_events_per_cpu_s")),
        "driver_python_events_per_cpu_s": round(median("driver_python_events_per_cpu_s")),
        "driver_python_cpu_share": median("driver_python_cpu_share"),
        "driver_python_cpu_s_per_million": median("driver_python_cpu_s_per_million"),
        "driver_event_bytes_read_per_million": median("driver_event_bytes_read_per_million"),
        "driver_commit_bytes_read_per_million": median("driver_commit_bytes_read_per_million"),
        "events_per_s_wall": round(median("events_per_s_wall")),
        "broker_fetch_events_per_cpu_s": round(median("broker_fetch_events_per_cpu_s")),
        "cpu_s_per_batch": round(per_batch, 4),
        "small_batches": {
            "max_batch_events": small_batch_events,
            "batches": small_batches,
            "median_cpu_s": round(small_cpu, 3),
            "runs": small_runs,
        },
        "wide_partitions": {
            "partitions_per_topic": wide_runs[0]["partitions_per_topic"],
            "spark_slots": wide_runs[0]["spark_slots"],
            "runs": wide_runs,
        },
        "driver": driver_costs({"large": runs, "small": small_runs, "wide": wide_runs}),
    }


def driver_costs(drains: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The driver's Python CPU of a drain split into a cost per drain (starting and stopping the bounded query),
    per micro-batch and per staged file (a task's result row planned, its file published): solved exactly
    from three kinds of drain of the same events (medians of each kind), which differ in batches (the
    small-batch drains) and in files per batch (the wide drains: the small drains' batches in more tasks, each
    writing a file per table it holds).
    The driver reads no event, so no term grows with the events themselves."""
    points = {
        kind: [statistics.median(float(r[key]) for r in runs) for key in ("batches", "staged_files", "self_cpu_s")]
        for kind, runs in drains.items()
    }
    matrix = np.array([[1.0, batches, files] for batches, files, _ in points.values()])
    cpu = np.array([point[2] for point in points.values()])
    if np.linalg.matrix_rank(matrix) < len(points):
        raise RuntimeError(f"the drains do not separate batches from files (batches, files, CPU-s): {points}")
    per_drain, per_batch, per_file = np.linalg.solve(matrix, cpu)
    return {
        "driver_cpu_s_per_drain": round(float(per_drain), 4),
        "driver_cpu_s_per_batch": round(float(per_batch), 5),
        "driver_cpu_s_per_file": round(float(per_file), 6),
        "drains": {
            kind: dict(zip(("batches", "staged_files", "driver_cpu_s"), p, strict=True)) for kind, p in points.items()
        },
    }


def _lake_and_stores(lab: steps.Lab, warehouse: PostgresWarehouse) -> dict[str, Any]:
    """4. The lake the last drains left: its bytes per event, and (g) the catalog and (h) the warehouse over it."""
    return {
        "lake": lake_bytes(lab.cfg.paths.lake),
        "catalog": run_catalog_bench(lab),
        "warehouse": run_warehouse_bench(lab, warehouse),
    }


def _conditions(cfg: Params, events: int, warm_s: float, drains: tuple[int, int, int, int, int], load: str) -> str:
    """``drains``: the repeats with the large batches, the repeats with the small ones, their size, the
    repeats over topics of more partitions, how many."""
    repeats, small_repeats, small_batch_events, wide_repeats, wide_partitions = drains
    return (
        f"{events:,} events of {cfg.fleet.vehicles} vehicles (departures 20 s apart, whole journeys) in 5 "
        f"topics of 3 partitions on one local KRaft broker (replication 1), produced with "
        f"confluent-kafka (lz4); Spark {cfg.spark.master} on this machine's {os.cpu_count()} cores, driver "
        f"{cfg.spark.driver_memory}, JVM warmed up first ({warm_s:.0f} s); {repeats} drains with "
        f"maxOffsetsPerTrigger {cfg.stream.max_batch_events:,} (medians, after one uncounted "
        f"drain) and {small_repeats} with {small_batch_events:,}, then {wide_repeats} with "
        f"{small_batch_events:,} over the topics grown to {wide_partitions} partitions in a session of "
        f"{WIDE_SLOTS_PER_CORE}x as many task slots as cores (after one uncounted drain); embedded PostgreSQL "
        f"(fsync {'on' if cfg.warehouse.postgres_fsync else 'off'}); "
        f"CPU-seconds from /proc (psutil) of each engine's process tree and of this process; "
        f"unpinned, other work on the machine counts in wall time only; {load}"
    )


def _wide_drains(
    cfg: Params, events: list[Event], produced: dict[str, int], broker_pid: int, repeats: int
) -> list[dict[str, Any]]:
    """3b. ``repeats`` drains with more staging tasks per batch: ``cfg``'s topics (grown to its partitions,
    emptied, produced again) in a session of :data:`WIDE_SLOTS_PER_CORE` task slots per core, a new driver
    JVM, warmed up and drained once uncounted first."""
    slots = WIDE_SLOTS_PER_CORE * (os.cpu_count() or 1)
    wide_cfg = cfg.with_values(spark_master=f"local[{slots}]")
    lab = steps.open_lab(wide_cfg)
    produced_into(lab, events)
    with steps.spark(wide_cfg) as spark:
        jvm_pid = spark.sparkContext._gateway.proc.pid
        warm_up(lab, spark)
        _stream_run(spark, lab, produced, jvm_pid, broker_pid)
        return [_stream_run(spark, lab, produced, jvm_pid, broker_pid) for _ in range(repeats)]


def _results(
    cfg: Params,
    events: list[Event],
    warm_s: float,
    drains: tuple[int, int, int, int, int],
    rates: dict[str, Any],
    lakes: tuple[dict[str, Any], dict[str, Any]],
) -> dict[str, Any]:
    """The bench's result: when and where it ran, its conditions, the event mix, ``rates`` (kafka, stream)
    and the two lakes (large, small batches)."""
    results = measured()
    results.update(
        {
            "conditions": _conditions(cfg, len(events), warm_s, drains, results["load_when_done"]),
            "events": len(events),
            "event_mix": event_mix(events, cfg.fleet.tick_seconds),
            **rates,
            "large_batch_lake": lakes[0],
            "small_batch_lake": lakes[1],
        }
    )
    return results


def run_capacity_bench(
    vehicles: int = 80,
    repeats: int = 3,
    small_batch_events: int = 10_000,
    small_repeats: int = 2,
    wide_partitions: int = 12,
    wide_repeats: int = 2,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """The rates the capacity model needs that no other part measures, in one isolated lab (temp dir, free ports).

    1. event mix and JSON size per topic, from the simulated run of ``vehicles`` (the stream bench's fleet);
    2. the broker's CPU and log bytes per event (:func:`_broker_rates`);
    3. the stream's CPU: after one uncounted drain (JIT), ``repeats`` drains of 200,000-event batches (medians),
       ``small_repeats`` of ``small_batch_events`` (what a 1 s trigger takes at 10,000 events/s; the difference
       is a micro-batch's CPU, their lake the Parquet bytes live runs write), ``wide_repeats`` of those over
       ``wide_partitions`` partitions and more task slots (:func:`_wide_drains`; :func:`driver_costs`);
    4. (g) the catalog and (h) the warehouse over each of the two lakes.

    Writes ``capacity.{json,md}`` and then ``rates.json`` (see :func:`smartcity.ops.bench.rates.write_rates`).
    """
    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    try:
        cfg = bench_cfg(work, vehicles=vehicles, departure_spacing_seconds=20.0, stream_max_batch_events=200_000)
        events, produced = fleet_run(cfg)
        lab = steps.open_lab(cfg)
        small_lab = steps.open_lab(cfg.with_values(stream_max_batch_events=small_batch_events))
        with steps.open_broker(cfg) as broker:
            broker_pid = broker.nodes[1].pid
            kafka = _broker_rates(lab, broker_pid, events, produced)
            with steps.open_warehouse(lab) as warehouse, steps.spark(cfg) as spark:
                jvm_pid = spark.sparkContext._gateway.proc.pid
                warm = warm_up(lab, spark)
                # the session's first drain still compiles the stream's code (about twice the CPU of the
                # later ones in a trial run): measured and kept, but not counted in the steady rates
                first_drain = _stream_run(spark, lab, produced, jvm_pid, broker_pid)
                runs = [_stream_run(spark, lab, produced, jvm_pid, broker_pid) for _ in range(repeats)]
                large = _lake_and_stores(lab, warehouse)
                small_runs = [
                    _stream_run(spark, small_lab, produced, jvm_pid, broker_pid) for _ in range(small_repeats)
                ]
                small = _lake_and_stores(lab, warehouse)
            wide_cfg = cfg.with_values(kafka_partitions=wide_partitions, stream_max_batch_events=small_batch_events)
            wide_runs = _wide_drains(wide_cfg, events, produced, broker_pid, wide_repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    drains = (repeats, small_repeats, small_batch_events, wide_repeats, wide_partitions)
    stream = _stream_rates(runs, first_drain, small_runs, small_batch_events, wide_runs)
    results = _results(cfg, events, warm, drains, {"kafka": kafka, "stream": stream}, (large, small))
    save(out_dir, "capacity", results, render_capacity_markdown(results))
    write_rates(out_dir)
    return results


#: The wide drains' Spark session has this many task slots per core: a micro-batch runs one staging task per
#: slot (:meth:`smartcity.stream.query.Routing.apply`), each writing a file per table it holds.
WIDE_SLOTS_PER_CORE = 4


def render_capacity_markdown(results: dict[str, Any]) -> str:
    s, k, mix = results["stream"], results["kafka"], results["event_mix"]
    rows = "\n".join(
        f"| {n} | {r['partitions_per_topic']} | {r['max_batch_events']:,} | {r['batches']} | {r['staged_files']} | "
        f"{r['wall_s']:.1f} | {r['jvm_cpu_s']:.1f} | "
        f"{r['self_cpu_s']:.1f} | {r['events_per_cpu_s']:,} | {r['events_per_s_wall']:,} |"
        for n, r in enumerate(
            [s["first_drain_not_counted"], *s["runs"], *s["small_batches"]["runs"], *s["wide_partitions"]["runs"]]
        )
    )
    d = s["driver"]
    lakes = "\n".join(
        f"| {name} | {t} | {lake['lake'][t]['files']} | {lake['lake'][t]['bytes_per_event']} | "
        f"{mix['kafka_json_bytes_per_event'][t]} | {k['log_bytes_per_event'][t]} |"
        for name, lake in (
            ("200,000/batch", results["large_batch_lake"]),
            ("small batches", results["small_batch_lake"]),
        )
        for t in TOPICS
    )
    stages = "\n".join(
        f"| {stage} | {name} | {lake[stage]['events']:,} | {lake[stage]['files'] if stage == 'catalog' else ''} | "
        f"{lake[stage]['events_per_cpu_s']:,} |"
        for name, lake in (
            ("200,000/batch", results["large_batch_lake"]),
            ("small batches", results["small_batch_lake"]),
        )
        for stage in ("catalog", "warehouse")
    )
    return (
        f"# Capacity rates ({results['measured_at']})\n\n"
        + machine_line(results)
        + f"Conditions: {results['conditions']}.\n\n"
        f"Event mix: per vehicle fix {mix['per_vehicle_fix']}; traffic camera events per vehicle-second "
        f"{mix['traffic_data_per_vehicle_second']}; background per simulated hour {mix['background_per_hour']}; "
        f"all topics {mix['events_per_vehicle_fix_all_topics']} events per vehicle fix at {mix['tick_seconds']:g} s.\n\n"
        "Run 0 is the session's first drain, not counted (JIT).\n\n"
        "| run | partitions | events/batch | batches | staged files | wall s | Spark JVM CPU s | driver Python CPU s | "
        "events per CPU-s | events/s wall |\n|---|---|---|---|---|---|---|---|---|---|\n" + rows + "\n\n"
        f"Broker: {k['ingest']['events_per_cpu_s']:,} events per CPU-second produced into it, "
        f"{s['broker_fetch_events_per_cpu_s']:,} read from it by the stream; idle {k['idle_broker_cores']} cores. "
        f"Stream CPU per further micro-batch: {s['cpu_s_per_batch']} s.\n\n"
        f"The driver (medians of the 200,000-event-batch drains): its Python {s['driver_python_cpu_s_per_million']} "
        f"CPU-s per million events, {s['driver_python_cpu_share']:.1%} of the stream's CPU; it read "
        f"{s['driver_event_bytes_read_per_million']:,} bytes of event data and "
        f"{s['driver_commit_bytes_read_per_million']:,} bytes of commit files from the lake per million events. "
        f"Its CPU split over the three kinds of drain (the last runs: topics of "
        f"{s['wide_partitions']['partitions_per_topic']} partitions, {s['wide_partitions']['spark_slots']} task slots): {d['driver_cpu_s_per_batch']} s per micro-batch, "
        f"{d['driver_cpu_s_per_file']} s per staged file, {d['driver_cpu_s_per_drain']} s per drain.\n\n"
        "| lake | table | files | Parquet bytes/event | Kafka JSON bytes/event | Kafka log bytes/event |\n"
        "|---|---|---|---|---|---|\n" + lakes + "\n\n"
        "| stage | lake | events | files | events per CPU-s |\n|---|---|---|---|---|\n" + stages + "\n"
    )
