"""``make bench``: producer and simulator throughput, written to ``outputs/bench/``.

Producer throughput against a real local broker: three ways of sending the same pre-generated
fleet events, one after the other, to the same topics on the same broker, emptied of the previous
case's records first (truncated, not re-created):

(a) the seed project's pattern: ``json.dumps`` and a ``flush()`` after every message;
(b) this lab's producer on kafka-python;
(c) the same producer on confluent-kafka (librdkafka).

The producing process is pinned to one core and the broker to the others, so "events per second"
is what one core of producer achieves. Every case must end with every event in the topics (checked
through the broker's offsets), or the benchmark fails instead of reporting a number.

(f) The simulator alone (``simulator.{json,md}``), pinned to one core: events per second of wall
time and per CPU-second of the process, with and without serializing each value with orjson (what
the producer then does), for a live-scale fleet and for the small local profile; and the resident
memory of an endless run over many simulated hours, which must stay flat.

The capacity model's rates (``capacity.{json,md}``, then ``rates.json``; ``--only capacity-rates``):
the event mix and bytes per event, the broker's and the stream's CPU per event, (g) the catalog's
and (h) the warehouse load's, all as CPU-seconds of each engine's process tree: see
:func:`run_capacity_bench` and :func:`write_rates`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from smartcity.platform import kafka
from smartcity.fleet import simulation
from smartcity.params import TOPICS, Params, from_mapping, project_root
from smartcity.fleet.contracts import Event
from smartcity.platform.processes import free_port
from smartcity.ingest.producer import produce

BENCH_DIR = Path("outputs") / "bench"


def _seed_pattern(bootstrap: str, events: list[Event]) -> None:
    """What the seed's main.py does: serialize with json and flush after every single message."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for event in events:
            producer.send(event.topic, key=event.key.encode(), value=json.dumps(event.value, default=str).encode())
            producer.flush()
    finally:
        producer.close()


def _fleet_events(count: int, seed: int = 42) -> tuple[list[Event], float]:
    """At least `count` simulated events (a fleet big enough), and how many the simulator made per second."""
    vehicles = max(3, math.ceil(count / 3_000))
    cfg = from_mapping({"vehicles": vehicles, "seed": seed, "departure_spacing_seconds": 20.0})
    started = time.perf_counter()
    events = simulation.simulate_journey(cfg)
    rate = len(events) / (time.perf_counter() - started)
    if len(events) < count:
        raise RuntimeError(f"the simulation made {len(events)} events, fewer than the {count} asked for")
    return events[:count], rate


def _measure(name: str, run: Callable[[], Any], bootstrap: str, events: list[Event]) -> dict[str, Any]:
    kafka.ensure_topics(bootstrap, partitions=3, empty=True)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    held = sum(kafka.topic_counts(bootstrap, TOPICS).values())
    if held != len(events):
        raise RuntimeError(f"{name}: {len(events)} events sent but the topics hold {held}")
    return {"case": name, "events": len(events), "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "events_per_s": round(len(events) / wall), "events_per_cpu_s": round(len(events) / max(cpu, 1e-9))}


def run_producer_bench(events: int = 200_000, seed_pattern_events: int = 2_000, out_dir: Path | None = None) -> dict:
    """Measure (a), (b) and (c) and write ``producer.json`` and ``producer.md`` under outputs/bench/."""
    out_dir = out_dir or project_root() / BENCH_DIR
    sample, sim_rate = _fleet_events(events)
    started = time.perf_counter()
    for event in sample:
        orjson.dumps(event.value)
    serialize_rate = len(sample) / (time.perf_counter() - started)
    cores = sorted(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    try:
        with kafka.start_broker(free_port(), work / "kafka") as broker:
            producer_core, broker_cores = cores[0], set(cores[1:]) or {cores[0]}
            os.sched_setaffinity(broker.nodes[1].pid, broker_cores)
            os.sched_setaffinity(0, {producer_core})
            try:
                seed_sample = sample[:seed_pattern_events]
                cases = [
                    _measure("(a) seed pattern: json + flush per message", lambda: _seed_pattern(broker.bootstrap, seed_sample),
                             broker.bootstrap, seed_sample),
                    _measure("(b) lab producer, kafka-python",
                             lambda: produce(broker.bootstrap, sample, backend="kafka-python", progress=False),
                             broker.bootstrap, sample),
                    _measure("(c) lab producer, confluent-kafka",
                             lambda: produce(broker.bootstrap, sample, backend="confluent-kafka", progress=False),
                             broker.bootstrap, sample),
                ]
            finally:
                os.sched_setaffinity(0, set(cores))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b, c = (case["events_per_s"] for case in cases)
    results = {
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
                    "platform": platform.platform(), "python": platform.python_version()},
        "conditions": (f"local single-node Kafka broker (KRaft) on cores {sorted(broker_cores)}, producer pinned to "
                       f"core {producer_core}; topics of 3 partitions, emptied (DeleteRecords) before each case; "
                       f"{len(sample)} simulated events (avg {sum(len(orjson.dumps(e.value)) for e in sample) // len(sample)} "
                       "bytes of JSON each), pre-generated"),
        "simulator_events_per_s": round(sim_rate),
        "orjson_serialize_events_per_s": round(serialize_rate),
        "cases": cases,
        "ratios": {"b_over_a": round(b / a, 1), "c_over_a": round(c / a, 1), "c_over_b": round(c / b, 2)},
        "kafka_python_within_2x_of_confluent": c / b <= 2.0,
    }
    _save(out_dir, "producer", results, render_markdown(results))
    return results


def render_markdown(results: dict) -> str:
    rows = "\n".join(
        f"| {c['case']} | {c['events']:,} | {c['seconds']:.2f} | {c['events_per_s']:,} | {c['events_per_cpu_s']:,} |"
        for c in results["cases"]
    )
    m = results["machine"]
    r = results["ratios"]
    return (
        f"# Producer benchmark ({results['measured_at']})\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}.\n"
        f"Conditions: {results['conditions']}.\n\n"
        "| case | events | seconds | events/s | events per CPU-second |\n|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"(b)/(a) = {r['b_over_a']}x, (c)/(a) = {r['c_over_a']}x, (c)/(b) = {r['c_over_b']}x. "
        f"Simulator: {results['simulator_events_per_s']:,} events/s; orjson alone: "
        f"{results['orjson_serialize_events_per_s']:,} events/s.\n"
    )


# -- (f) the simulator ------------------------------------------------------------------------------
#: A live-scale open-ended fleet: ~120 departures an hour keep ~300 vehicles on the road (trips of 2-3 h).
LIVE_FLEET = {"vehicles": 1, "departure_rate_per_hour": 120.0, "base_date": "2026-01-06T10:00:00+00:00"}


def machine() -> dict[str, Any]:
    """The machine a figure was measured on."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
            "platform": platform.platform(), "python": platform.python_version()}


def resident_mib() -> float:
    """This process's resident memory now (Linux /proc; else the peak, which is all getrusage has)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _simulated(sim: simulation.FleetSimulation, skip_hours: float, hours: float | None, serialize: bool) -> dict[str, Any]:
    """Run the simulation, time the events from ``skip_hours`` for ``hours`` of simulated time (None: to the end)."""
    events = sim.events()
    start = sim.cfg.start_time + timedelta(hours=skip_hours)
    begin = simulation.iso(start)
    end = simulation.iso(start + timedelta(hours=hours)) if hours is not None else None
    first = next(e for e in events if e.value["timestamp"] >= begin)  # not timed: the fleet fills the roads
    dumps, count = orjson.dumps, 0
    wall, cpu = time.perf_counter(), time.process_time()
    for event in chain([first], events):
        if end is not None and event.value["timestamp"] >= end:
            break
        if serialize:
            dumps(event.value)
        count += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"events": count, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "events_per_s": round(count / wall), "events_per_cpu_s": round(count / max(cpu, 1e-9)),
            "on_road": sim.state.on_road}


def _simulator_case(name: str, cfg: Params, skip_hours: float, hours: float | None, repeats: int) -> dict[str, Any]:
    """Best of ``repeats`` (the least disturbed by anything else on the machine), generation alone and with orjson."""
    result: dict[str, Any] = {"case": name}
    for label, serialize in (("generate", False), ("generate_and_serialize", True)):
        runs = [_simulated(simulation.FleetSimulation(cfg), skip_hours, hours, serialize) for _ in range(repeats)]
        result[label] = max(runs, key=lambda r: r["events_per_cpu_s"])
        result[label]["events_per_cpu_s_all_runs"] = [r["events_per_cpu_s"] for r in runs]
    return result


def _memory_over(cfg: Params, hours: int) -> dict[str, Any]:
    """Resident memory of an endless run, sampled at every simulated hour."""
    sim = simulation.FleetSimulation(cfg)
    samples = [{"hour": 0, "rss_mib": round(resident_mib(), 1), "on_road": 0, "departed": 0}]
    next_hour = 1
    mark = simulation.iso(cfg.start_time + timedelta(hours=next_hour))
    count = 0
    for event in sim.events():
        if event.value["timestamp"] >= mark:
            state = sim.state
            samples.append({"hour": next_hour, "rss_mib": round(resident_mib(), 1), "on_road": state.on_road,
                            "departed": state.departed})
            if next_hour == hours:
                break
            next_hour += 1
            mark = simulation.iso(cfg.start_time + timedelta(hours=next_hour))
        count += 1
    filled = min(4, hours)  # the fleet has filled the roads after ~3 h
    settled = [s["rss_mib"] for s in samples if s["hour"] >= filled]
    return {"hours": hours, "events": count, "samples": samples, "settled_from_hour": filled,
            "rss_mib_settled": settled[0], "rss_mib_at_end": settled[-1], "rss_mib_peak": max(settled),
            "growth_mib_per_hour": round((settled[-1] - settled[0]) / max(1, len(settled) - 1), 3)}


def run_simulator_bench(hours: int = 30, repeats: int = 3, out_dir: Path | None = None,
                        warmup_hours: float = 3.0, measured_hours: float = 1.0) -> dict[str, Any]:
    """(f): simulator events/s on one core and its memory over ``hours`` simulated hours; writes simulator.{json,md}.

    The live-scale fleet is timed over ``measured_hours`` after ``warmup_hours``, when its roads have filled.
    """
    out_dir = out_dir or project_root() / BENCH_DIR
    live = from_mapping({**LIVE_FLEET, "incident_rate": 0.1})
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[-1]})
    try:
        live_case = (f"live-scale fleet: 120 departures/h (~300 on the road once filled), simulated hours "
                     f"{warmup_hours:g}-{warmup_hours + measured_hours:g}")
        cases = [
            _simulator_case(live_case, live, warmup_hours, measured_hours, repeats),
            _simulator_case("local profile: 3 vehicles, the whole run", from_mapping({}), 0.0, None, repeats),
        ]
        memory = _memory_over(live, hours)
    finally:
        os.sched_setaffinity(0, set(cores))
    load = os.getloadavg()
    results = {
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "conditions": (f"one process pinned to core {cores[-1]}; best of {repeats} runs per case by events per "
                       f"CPU-second (process_time), wall time alongside; load average {load[0]:.1f}, {load[1]:.1f}, "
                       f"{load[2]:.1f} (1, 5, 15 min) when done: wall time counts what else ran on that core"),
        "cases": cases,
        "memory": {"case": f"endless run of the live-scale fleet for {hours} simulated hours, RSS of the process",
                   **memory},
    }
    _save(out_dir, "simulator", results, render_simulator_markdown(results))
    return results


def render_simulator_markdown(results: dict[str, Any]) -> str:
    rows = []
    for case in results["cases"]:
        for label, title in (("generate", "events"), ("generate_and_serialize", "events + orjson values")):
            r = case[label]
            rows.append(f"| {case['case']} | {title} | {r['events']:,} | {r['cpu_seconds']:.2f} | {r['events_per_s']:,} "
                        f"| {r['events_per_cpu_s']:,} |")
    m, mem = results["machine"], results["memory"]
    hourly = ", ".join(f"{s['rss_mib']:.0f}" for s in mem["samples"])
    return (
        f"# Simulator benchmark ({results['measured_at']})\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}.\n"
        f"Conditions: {results['conditions']}.\n\n"
        "| case | measured | events | CPU seconds | events/s (wall) | events per CPU-second |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n"
        f"Memory, {mem['case']}: {mem['events']:,} events; RSS {mem['rss_mib_settled']:.1f} MiB after "
        f"{mem['settled_from_hour']} h, "
        f"{mem['rss_mib_at_end']:.1f} MiB at {mem['hours']} h (peak {mem['rss_mib_peak']:.1f} MiB, "
        f"{mem['growth_mib_per_hour']:+.3f} MiB per hour). Every hour (MiB): {hourly}.\n"
    )


# -- (d) the stream against Spark's batch ceiling, (e) freshness live --------------------------------
def _bench_cfg(work: Path, **values: Any) -> Params:
    """An isolated lab for a benchmark: its own data dir and broker port, thrown away afterwards."""
    return from_mapping({"profile": "bench", "data_dir": str(work / "data"), "output_dir": str(work / "outputs"),
                         "kafka_bootstrap": f"127.0.0.1:{free_port()}", "postgres_port": free_port(),
                         "producer_backend": "confluent-kafka", **values}, source="smartcity bench")


def _save(out_dir: Path, name: str, results: dict[str, Any], markdown: str) -> None:
    """A benchmark's results as ``<name>.json`` (for tools) and ``<name>.md`` (for people)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown)


def _measured() -> dict[str, Any]:
    """When and where a result was measured, and how busy the machine was by then."""
    load = os.getloadavg()
    return {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
            "load_when_done": f"load average {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (1, 5, 15 min) when done"}


def _machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}.\n"


def glob_counts(lake_root: Path, topics: tuple[str, ...] = TOPICS) -> dict[str, int]:
    """Rows per table as a reader that shares none of the lab's code sees them: DuckDB over a glob."""
    import duckdb

    counts = {}
    for topic in topics:
        pattern = lake_root / topic / "**" / "*.parquet"
        counts[topic] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0][0] \
            if any((lake_root / topic).rglob("*.parquet")) else 0
    return counts


def _drain(spark: Any, cfg: Params, produced: dict[str, int], what: str, **pids: int) -> dict[str, float]:
    """The stream drains the topics into an empty lake, which must then hold what was produced.

    Returns wall seconds and CPU-seconds of this process and of the named process trees (see _CpuMeter).
    """
    from smartcity.stream import lake
    from smartcity.stream import query as stream

    lake.reset(cfg)
    with _CpuMeter(**pids) as meter:
        stream.run_bounded(spark, cfg)
    if glob_counts(cfg.lake_path) != produced:
        raise RuntimeError(f"{what}: the lake does not hold what was produced")
    return meter.result


def _batch_ceiling(spark: Any, cfg: Params, out: Path) -> None:
    """The naive Spark batch job over the same topics: read Kafka, from_json per topic, Parquet by date."""
    from pyspark.sql import functions as F

    from smartcity.fleet import contracts

    raw = (spark.read.format("kafka").option("kafka.bootstrap.servers", cfg.kafka_bootstrap)
           .option("subscribe", ",".join(TOPICS)).option("startingOffsets", "earliest").load())
    for topic in TOPICS:
        (raw.where(F.col("topic") == topic)
         .select(F.from_json(F.col("value").cast("string"), contracts.spark_schema(topic)).alias("e")).select("e.*")
         .withColumn("event_date", F.to_date("timestamp"))
         .write.mode("overwrite").partitionBy("event_date").parquet(str(out / topic)))


def run_stream_bench(vehicles: int = 80, repeats: int = 3, out_dir: Path | None = None) -> dict[str, Any]:
    """(d): the stream's sustained drain rate and its ratio to the batch ceiling, same events, same session.

    The stream (one query, contract check, staging, publish) drains the topics from scratch; then
    the batch job reads the same topics. Both run ``repeats`` times, alternating; the medians count.
    Every stream run must put every event in the lake (a DuckDB glob checks it) or nothing is reported.
    """
    import statistics

    from smartcity.stream import lake
    from smartcity.stream import query as stream
    from smartcity.platform.spark import spark_session

    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    try:
        cfg = _bench_cfg(work, vehicles=vehicles, departure_spacing_seconds=20.0, stream_max_batch_events=200_000)
        events = simulation.simulate_journey(cfg)
        produced = {t: sum(1 for e in events if e.topic == t) for t in TOPICS}
        with kafka.ensure_broker(cfg):
            simulation.prepare_run(cfg)
            produce(cfg.kafka_bootstrap, events, backend="confluent-kafka", progress=False)
            with spark_session(cfg) as spark:
                warm = stream.warm_up(spark, cfg)
                runs = []
                for n in range(repeats):
                    stream_s = _drain(spark, cfg, produced, f"stream run {n}")["wall_s"]
                    batches = len(lake.commit_log(cfg).batches())
                    started = time.perf_counter()
                    _batch_ceiling(spark, cfg, work / "ceiling")
                    batch_s = time.perf_counter() - started
                    if glob_counts(work / "ceiling") != produced:
                        raise RuntimeError(f"batch run {n}: its Parquet does not hold what was produced")
                    runs.append({"stream_seconds": round(stream_s, 2), "stream_batches": batches,
                                 "batch_seconds": round(batch_s, 2), "ratio": round(batch_s / stream_s, 2)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = len(events)
    stream_s = statistics.median(r["stream_seconds"] for r in runs)
    batch_s = statistics.median(r["batch_seconds"] for r in runs)
    results = _measured()
    results.update({
        "conditions": (f"{total:,} events of {vehicles} vehicles in 5 topics of 3 partitions on a local broker; "
                       f"Spark local[*], driver {cfg.spark_driver_memory}, maxOffsetsPerTrigger "
                       f"{cfg.stream_max_batch_events:,}; JVM warmed up first ({warm:.0f} s); {repeats} runs each, "
                       f"alternating, medians; {results['load_when_done']}"),
        "events": total, "runs": runs,
        "stream_events_per_s": round(total / stream_s), "batch_ceiling_events_per_s": round(total / batch_s),
        "ratio": round(batch_s / stream_s, 2),
        "goals": {"ratio_at_least_0.5": batch_s / stream_s >= 0.5, "at_least_50000_events_per_s": total / stream_s >= 50_000},
    })
    _save(out_dir, "stream", results, render_stream_markdown(results))
    return results


def render_stream_markdown(results: dict[str, Any]) -> str:
    rows = "\n".join(f"| {n} | {r['stream_seconds']:.1f} | {r['stream_batches']} | {r['batch_seconds']:.1f} | {r['ratio']:.2f} |"
                     for n, r in enumerate(results["runs"]))
    return (
        f"# Stream benchmark (d) ({results['measured_at']})\n\n" + _machine_line(results) +
        f"Conditions: {results['conditions']}.\n\n"
        "| run | stream s | micro-batches | batch job s | batch s / stream s |\n|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Stream: **{results['stream_events_per_s']:,} events/s**; the naive batch job (read Kafka, `from_json`, "
        f"Parquet by date, no checks, no exactly-once publishing): {results['batch_ceiling_events_per_s']:,} events/s; "
        f"ratio **{results['ratio']:.2f}** (goal ≥ 0.5: {'met' if results['goals']['ratio_at_least_0.5'] else 'NOT met'}; "
        f"goal ≥ 50,000 events/s: {'met' if results['goals']['at_least_50000_events_per_s'] else 'NOT met'}).\n"
    )


class _LakePoller:
    """A reader that shares none of the lab's code: globs the table folders, notes when each file appears."""

    def __init__(self, lake_root: Path, every_s: float = 0.1) -> None:
        import threading

        self.lake_root, self.every_s = lake_root, every_s
        self.first_seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lake-poller", daemon=True)

    def _run(self) -> None:
        import glob

        while not self.stop.is_set():
            now = time.time()
            for topic in TOPICS:
                for path in glob.glob(str(self.lake_root / topic / "*" / "*.parquet")):
                    self.first_seen.setdefault(path, now)
            self.stop.wait(self.every_s)

    def freshness(self) -> list[tuple[float, float]]:
        """(produced at, seconds until readable) for every event in the files seen, via DuckDB."""
        import duckdb

        ages = []
        for path, seen in self.first_seen.items():
            stamps = duckdb.sql(f"SELECT epoch_ms(kafka_timestamp) FROM read_parquet('{path}')").fetchall()
            ages.extend((ms / 1000, seen - ms / 1000) for (ms,) in stamps)
        return ages


def run_freshness_bench(rate: float = 10_000, seconds: float = 60.0, trigger_s: float = 1.0, settle_s: float = 15.0,
                        out_dir: Path | None = None) -> dict[str, Any]:
    """(e): freshness p50/p95 of a live run at ``rate`` events/s with a ``trigger_s`` trigger (goal p95 <= 3 s).

    A fleet big enough for the rate drives for ``seconds`` while the stream runs (``smartcity live``
    in this process, warmed up first); a poller outside the lab's code globs the table folders every
    0.1 s and, afterwards, reads each file's ``kafka_timestamp`` (when the producer sent the event)
    with DuckDB: freshness = first seen by the poller - sent. Events sent in the first ``settle_s``
    are reported apart (the stream's first batches), the rest is the steady state.
    """
    import numpy as np

    from smartcity.ops import live

    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    speedup = 50.0
    vehicles = math.ceil(rate / (0.4 * speedup))  # a vehicle and a GPS fix per vehicle every 5 simulated seconds
    try:
        cfg = _bench_cfg(work, mode="live", vehicles=vehicles, departure_spacing_seconds=0.0, speedup=speedup,
                         live_seconds=seconds, stream_trigger_seconds=trigger_s, incident_rate=0.1)
        poller = _LakePoller(cfg.lake_path)
        poller.thread.start()
        try:
            summary = live.run_live(cfg, seconds, console=False)
        finally:
            poller.stop.set()
            poller.thread.join()
        if glob_counts(cfg.lake_path) != {t: summary["produced"].get(t, 0) for t in TOPICS}:
            raise RuntimeError("the live run's lake does not hold what was produced")
        status = live.read_status(cfg)
        ages = poller.freshness()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    producing = status[status["phase"] == "producing"]
    start = min(sent for sent, _ in ages)
    steady = np.array([age for sent, age in ages if sent - start >= settle_s and sent - start <= seconds])
    early = np.array([age for sent, age in ages if sent - start < settle_s])
    whole = np.array([age for sent, age in ages if sent - start <= seconds])

    def spread(values: np.ndarray) -> dict[str, float]:
        return {"events": int(len(values)), "p50_s": round(float(np.percentile(values, 50)), 2),
                "p95_s": round(float(np.percentile(values, 95)), 2), "max_s": round(float(values.max()), 2)} \
            if len(values) else {"events": 0}

    results = _measured()
    results.update({
        "conditions": (f"smartcity live in one process: local broker, Spark local[*] with a {trigger_s:g} s trigger, "
                       f"{vehicles} vehicles at speedup {speedup:g} for {seconds:g} s (confluent-kafka producer); "
                       f"freshness from each event's Kafka timestamp to the moment a glob of its table folder "
                       f"(polled every 0.1 s) first listed its file; {results['load_when_done']}"),
        "target_events_per_s": rate,
        "produced_events_per_s": round(float(producing["produced_per_s"].iloc[1:].mean())),
        "written_events_per_s": round(float(producing["written_per_s"].iloc[1:].mean())),
        "max_lag": int(status["lag"].max()), "batches": summary["batches"],
        "whole_run": spread(whole), "steady": spread(steady), "first_seconds": {"seconds": settle_s, **spread(early)},
        "lab_estimate": {"p50_s": summary["freshness_p50_s"], "p95_s": summary["freshness_p95_s"]},
    })
    results["goal_p95_at_most_3_s"] = bool(results["whole_run"].get("p95_s", float("inf")) <= 3.0)
    _save(out_dir, "freshness", results, render_freshness_markdown(results))
    return results


def render_freshness_markdown(results: dict[str, Any]) -> str:
    w, s, e = results["whole_run"], results["steady"], results["first_seconds"]
    return (
        f"# Freshness benchmark (e) ({results['measured_at']})\n\n" + _machine_line(results) +
        f"Conditions: {results['conditions']}.\n\n"
        f"Produced {results['produced_events_per_s']:,} events/s (target {results['target_events_per_s']:,.0f}), "
        f"written {results['written_events_per_s']:,} events/s, {results['batches']} micro-batches, "
        f"Kafka lag at most {results['max_lag']:,} events.\n\n"
        "| events sent | events | p50 s | p95 s | max s |\n|---|---|---|---|---|\n"
        f"| the whole run | {w['events']:,} | {w.get('p50_s')} | {w.get('p95_s')} | {w.get('max_s')} |\n"
        f"| after the first {e['seconds']:g} s (steady) | {s['events']:,} | {s.get('p50_s')} | {s.get('p95_s')} | {s.get('max_s')} |\n"
        f"| in the first {e['seconds']:g} s | {e['events']:,} | {e.get('p50_s')} | {e.get('p95_s')} | {e.get('max_s')} |\n\n"
        f"Goal p95 ≤ 3 s (the whole run): {'met' if results['goal_p95_at_most_3_s'] else 'NOT met'}"
        f"{'' if e.get('p95_s', 0) <= 3.0 else ' (not in the first ' + format(e['seconds'], 'g') + ' s)'}. The lab's own estimate "
        f"from the batches' timestamp quantiles: p50 {results['lab_estimate']['p50_s']} s, p95 {results['lab_estimate']['p95_s']} s.\n"
    )


# -- the capacity model's rates: event mix and bytes, stream CPU, (g) catalog, (h) warehouse ------------
#: Where the rates the capacity model reads are collected (``smartcity capacity`` prefers it when newer).
RATES_FILE = "rates.json"


def tree_cpu_seconds(pid: int) -> float:
    """CPU-seconds (user + system) a process and its descendants have used so far, reaped children included.

    Per-process ``cpu_times`` are cumulative, so the difference of two readings is what the tree
    spent in between, whatever else the machine was doing: robust to contention, unlike wall time.
    A descendant that exits in between moves its time into its parent's ``children_*`` fields.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class _CpuMeter:
    """CPU-seconds of this process (all its threads) and of named process trees, over a ``with`` block."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.result: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {"self": time.process_time(), **{name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}}

    def __enter__(self) -> _CpuMeter:
        self._wall, self._start = time.perf_counter(), self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.result = {f"{name}_cpu_s": round(end[name] - self._start[name], 3) for name in end}
        self.result["wall_s"] = round(time.perf_counter() - self._wall, 3)


def event_mix(events: list[Event], tick_seconds: float) -> dict[str, Any]:
    """How many events of each topic a vehicle makes, measured on a simulated run, and their sizes on the wire.

    Telemetry and GPS come once per vehicle per fix; a camera event once per vehicle passing a
    camera, so per vehicle-second driven whatever the fix interval; weather and incident reports
    come from the corridor's stations and roads, not from the vehicles: per simulated hour.
    """
    counts = {t: sum(1 for e in events if e.topic == t) for t in TOPICS}
    fixes = counts["vehicle_data"]  # one telemetry event per vehicle per fix
    stamps = [simulation.parse_iso(e.value["timestamp"]) for e in (events[0], events[-1])]
    hours = (stamps[1] - stamps[0]).total_seconds() / 3600
    header = len("schemaVersion") + 1
    json_bytes = {t: round(sum(len(e.key) + len(orjson.dumps(e.value)) + header for e in events if e.topic == t)
                           / max(1, counts[t]), 1) for t in TOPICS}
    return {
        "events": len(events), "events_per_topic": counts, "vehicle_fixes": fixes, "tick_seconds": tick_seconds,
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
        out[topic] = {"files": len(files), "bytes": size, "rows": rows[topic],
                      "bytes_per_event": round(size / rows[topic], 1) if rows[topic] else None}
    return out


def run_catalog_bench(cfg: Params, repeats: int = 5) -> dict[str, Any]:
    """(g): the crawler over the lake of ``cfg``, from an empty catalog, then once more with nothing new.

    The crawler runs in this process (DuckDB, Arrow): its CPU is this process's. A first crawl opens
    every file's footer; a re-crawl opens none but still re-registers each table and counts its view.
    Both ``repeats`` times (a fresh catalog file each time), medians: a crawl takes a fraction of a second.
    """
    import statistics

    from smartcity.catalog import crawler as catalog

    firsts, agains = [], []
    for _ in range(repeats):
        cfg.catalog_path.unlink(missing_ok=True)
        with _CpuMeter() as first:
            summary = catalog.crawl(cfg)
        with _CpuMeter() as again:
            catalog.crawl(cfg)
        firsts.append(first.result)
        agains.append(again.result)
    events = int(summary.loc[[catalog.catalog_name(t) for t in TOPICS], "row_count"].sum())
    files = int(summary["files read"].sum())
    cpu = statistics.median(r["self_cpu_s"] for r in firsts)
    fixed = statistics.median(r["self_cpu_s"] for r in agains)
    # what opening one new file adds: the first crawl less a crawl of the same lake with nothing new
    return {"events": events, "files": files, "repeats": repeats, "first_crawl_cpu_s": [r["self_cpu_s"] for r in firsts],
            "first_crawl_wall_s": [r["wall_s"] for r in firsts],
            "recrawl_nothing_new_cpu_s": [r["self_cpu_s"] for r in agains],
            "events_per_cpu_s": round(events / max(cpu, 1e-9)), "files_per_cpu_s": round(files / max(cpu, 1e-9), 1),
            "cpu_s_per_new_file": round(max(cpu - fixed, 0.0) / max(files, 1), 5)}


def run_warehouse_bench(cfg: Params, warehouse: Any) -> dict[str, Any]:
    """(h): ``load.load_lake`` of the whole lake of ``cfg`` into an empty warehouse schema.

    CPU counts both sides: this process (reads Parquet, writes CSV for COPY) and the PostgreSQL
    server's processes (the backend doing COPY and the merge, and its background writers). Every
    event of the lake must be in the warehouse afterwards or nothing is reported.
    """
    from smartcity.warehouse import load

    with warehouse.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {load.SCHEMA} CASCADE")
    in_lake = glob_counts(cfg.lake_path)
    time.sleep(1.0)  # the DROP's backend has exited and been reaped
    server_before = tree_cpu_seconds(warehouse.process.pid)
    with _CpuMeter() as meter:
        load.load_lake(cfg, warehouse)
    # the backend that served the load exits when its connection closes; once the postmaster has reaped
    # it, its CPU is in the postmaster's children times: read the server's tree a moment later
    time.sleep(1.0)
    result = {**meter.result, "server_cpu_s": round(tree_cpu_seconds(warehouse.process.pid) - server_before, 3)}
    loaded = load.warehouse_counts(warehouse)
    if loaded != in_lake:
        raise RuntimeError(f"the warehouse holds {loaded}, the lake {in_lake}")
    events = sum(in_lake.values())
    cpu = result["self_cpu_s"] + result["server_cpu_s"]
    return {"events": events, **result,
            "events_per_cpu_s": round(events / max(cpu, 1e-9)),
            "client_events_per_cpu_s": round(events / max(result["self_cpu_s"], 1e-9)),
            "server_events_per_cpu_s": round(events / max(result["server_cpu_s"], 1e-9)),
            "events_per_s_wall": round(events / max(result["wall_s"], 1e-9))}


def _stream_run(spark: Any, cfg: Params, produced: dict[str, int], jvm_pid: int, broker_pid: int) -> dict[str, Any]:
    """One bounded drain of the topics into an empty lake; CPU of the Spark JVM, of this process
    (the driver's Python: foreachBatch callbacks and the publisher turning staged lines into
    Parquet) and of the broker serving the reads."""
    from smartcity.stream import lake

    r = _drain(spark, cfg, produced, "a stream run", jvm=jvm_pid, broker=broker_pid)
    events = sum(produced.values())
    stream_cpu = r["jvm_cpu_s"] + r["self_cpu_s"]
    return {**r, "batches": len(lake.commit_log(cfg).batches()), "max_batch_events": cfg.stream_max_batch_events,
            "events_per_cpu_s": round(events / stream_cpu), "jvm_events_per_cpu_s": round(events / r["jvm_cpu_s"]),
            "driver_python_events_per_cpu_s": round(events / max(r["self_cpu_s"], 1e-9)),
            "events_per_s_wall": round(events / r["wall_s"]),
            "broker_fetch_events_per_cpu_s": round(events / max(r["broker_cpu_s"], 1e-9))}


def run_capacity_bench(vehicles: int = 80, repeats: int = 3, small_batch_events: int = 10_000, small_repeats: int = 2,
                       out_dir: Path | None = None) -> dict[str, Any]:
    """The rates the capacity model needs that no other part measures, in one isolated lab (temp dir, free ports).

    1. event mix and JSON size per topic, from the simulated run of ``vehicles`` (the stream bench's fleet);
    2. the broker's CPU per event produced (a first produce warms its JVM up, then the topics are
       emptied and the same events produced again, measured) and its log bytes per event;
    3. the stream's CPU per event: after one uncounted drain (JIT), ``repeats`` bounded drains with the
       default 200,000-event batches (Spark JVM + driver Python, medians), then ``small_repeats`` with
       ``small_batch_events`` per batch (the size a 1 s trigger takes at 10,000 events/s): the
       difference is the CPU of a micro-batch; their lake gives Parquet bytes per event as a live run
       writes them;
    4. (g) the catalog and (h) the warehouse over each of the two lakes.

    Writes ``capacity.{json,md}`` and then ``rates.json`` (see :func:`write_rates`).
    """
    import dataclasses
    import statistics

    from smartcity.platform import postgres
    from smartcity.stream import query as stream
    from smartcity.platform.spark import spark_session

    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    try:
        cfg = _bench_cfg(work, vehicles=vehicles, departure_spacing_seconds=20.0, stream_max_batch_events=200_000)
        events = simulation.simulate_journey(cfg)
        mix = event_mix(events, cfg.tick_seconds)
        produced = mix["events_per_topic"]
        with kafka.ensure_broker(cfg) as broker:
            broker_pid = broker.nodes[1].pid
            simulation.prepare_run(cfg)
            produce(cfg.kafka_bootstrap, events, backend="confluent-kafka", progress=False)  # warms the broker up
            log_bytes = _kafka_log_bytes(cfg.data_path / "kafka")  # one copy of every event, as the broker keeps it
            kafka_log = {t: round(log_bytes[t] / produced[t], 1) if produced[t] else None for t in TOPICS}
            kafka.truncate_topics(cfg.kafka_bootstrap)
            time.sleep(5.0)
            with _CpuMeter(broker=broker_pid) as idle:
                time.sleep(10.0)
            with _CpuMeter(broker=broker_pid) as ingest:
                produce(cfg.kafka_bootstrap, events, backend="confluent-kafka", progress=False)
            if kafka.topic_counts(cfg.kafka_bootstrap) != produced:
                raise RuntimeError("the topics do not hold what was produced")
            with postgres.ensure_warehouse(cfg) as warehouse, spark_session(cfg) as spark:
                jvm_pid = spark.sparkContext._gateway.proc.pid
                warm = stream.warm_up(spark, cfg)
                # the session's first drain still compiles the stream's code (about twice the CPU of the
                # later ones in a trial run): measured and kept, but not counted in the steady rates
                first_drain = _stream_run(spark, cfg, produced, jvm_pid, broker_pid)
                runs = [_stream_run(spark, cfg, produced, jvm_pid, broker_pid) for _ in range(repeats)]
                large = {"lake": lake_bytes(cfg.lake_path), "catalog": run_catalog_bench(cfg),
                         "warehouse": run_warehouse_bench(cfg, warehouse)}
                small_cfg = dataclasses.replace(cfg, stream_max_batch_events=small_batch_events)
                small_runs = [_stream_run(spark, small_cfg, produced, jvm_pid, broker_pid) for _ in range(small_repeats)]
                small = {"lake": lake_bytes(cfg.lake_path), "catalog": run_catalog_bench(cfg),
                         "warehouse": run_warehouse_bench(cfg, warehouse)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = len(events)
    ingest_r, idle_r = ingest.result, idle.result

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def cpu(run: dict[str, Any]) -> float:
        return run["jvm_cpu_s"] + run["self_cpu_s"]

    # the same events in more, smaller batches: what each further micro-batch costs, whatever it holds
    small_cpu = statistics.median(cpu(r) for r in small_runs)
    small_batches = statistics.median(r["batches"] for r in small_runs)
    per_batch = (small_cpu - statistics.median(cpu(r) for r in runs)) / (small_batches - median("batches"))

    results = _measured()
    results.update({
        "conditions": (f"{total:,} events of {vehicles} vehicles (departures 20 s apart, whole journeys) in 5 topics "
                       f"of 3 partitions on one local KRaft broker (replication 1), produced with confluent-kafka "
                       f"(lz4); Spark local[*] on this machine's {os.cpu_count()} cores, driver "
                       f"{cfg.spark_driver_memory}, JVM warmed up first ({warm:.0f} s); {repeats} drains with "
                       f"maxOffsetsPerTrigger {cfg.stream_max_batch_events:,} (medians, after one uncounted "
                       f"drain) and {small_repeats} with {small_batch_events:,}; embedded PostgreSQL "
                       f"(fsync {'on' if cfg.postgres_fsync else 'off'}); "
                       f"CPU-seconds from /proc (psutil) of each engine's process tree and of this process; "
                       f"unpinned, other work on the machine counts in wall time only; {results['load_when_done']}"),
        "events": total, "event_mix": mix,
        "kafka": {"ingest": {**ingest_r, "events_per_cpu_s": round(total / max(ingest_r["broker_cpu_s"], 1e-9)),
                             "producer_events_per_cpu_s": round(total / max(ingest_r["self_cpu_s"], 1e-9))},
                  "idle_broker_cores": round(idle_r["broker_cpu_s"] / idle_r["wall_s"], 4),
                  "log_bytes_per_event": kafka_log},
        "stream": {"first_drain_not_counted": first_drain, "runs": runs,
                   "events_per_cpu_s": round(median("events_per_cpu_s")),
                   "jvm_events_per_cpu_s": round(median("jvm_events_per_cpu_s")),
                   "driver_python_events_per_cpu_s": round(median("driver_python_events_per_cpu_s")),
                   "events_per_s_wall": round(median("events_per_s_wall")),
                   "broker_fetch_events_per_cpu_s": round(median("broker_fetch_events_per_cpu_s")),
                   "cpu_s_per_batch": round(per_batch, 4),
                   "small_batches": {"max_batch_events": small_batch_events, "batches": small_batches,
                                     "median_cpu_s": round(small_cpu, 3), "runs": small_runs}},
        "large_batch_lake": large, "small_batch_lake": small,
    })
    _save(out_dir, "capacity", results, render_capacity_markdown(results))
    write_rates(out_dir)
    return results


def render_capacity_markdown(results: dict[str, Any]) -> str:
    s, k, mix = results["stream"], results["kafka"], results["event_mix"]
    rows = "\n".join(
        f"| {n} | {r['max_batch_events']:,} | {r['batches']} | {r['wall_s']:.1f} | {r['jvm_cpu_s']:.1f} | "
        f"{r['self_cpu_s']:.1f} | {r['events_per_cpu_s']:,} | {r['events_per_s_wall']:,} |"
        for n, r in enumerate([s["first_drain_not_counted"], *s["runs"], *s["small_batches"]["runs"]]))
    lakes = "\n".join(
        f"| {name} | {t} | {lake['lake'][t]['files']} | {lake['lake'][t]['bytes_per_event']} | "
        f"{mix['kafka_json_bytes_per_event'][t]} | {k['log_bytes_per_event'][t]} |"
        for name, lake in (("200,000/batch", results["large_batch_lake"]), ("small batches", results["small_batch_lake"]))
        for t in TOPICS)
    stages = "\n".join(
        f"| {stage} | {name} | {lake[stage]['events']:,} | {lake[stage]['files'] if stage == 'catalog' else ''} | "
        f"{lake[stage]['events_per_cpu_s']:,} |"
        for name, lake in (("200,000/batch", results["large_batch_lake"]), ("small batches", results["small_batch_lake"]))
        for stage in ("catalog", "warehouse"))
    return (
        f"# Capacity rates ({results['measured_at']})\n\n" + _machine_line(results) +
        f"Conditions: {results['conditions']}.\n\n"
        f"Event mix: per vehicle fix {mix['per_vehicle_fix']}; traffic camera events per vehicle-second "
        f"{mix['traffic_data_per_vehicle_second']}; background per simulated hour {mix['background_per_hour']}; "
        f"all topics {mix['events_per_vehicle_fix_all_topics']} events per vehicle fix at {mix['tick_seconds']:g} s.\n\n"
        "Run 0 is the session's first drain, not counted (JIT).\n\n"
        "| run | events/batch | batches | wall s | Spark JVM CPU s | driver Python CPU s | events per CPU-s | events/s wall |\n"
        "|---|---|---|---|---|---|---|---|\n" + rows + "\n\n"
        f"Broker: {k['ingest']['events_per_cpu_s']:,} events per CPU-second produced into it, "
        f"{s['broker_fetch_events_per_cpu_s']:,} read from it by the stream; idle {k['idle_broker_cores']} cores. "
        f"Stream CPU per further micro-batch: {s['cpu_s_per_batch']} s.\n\n"
        "| lake | table | files | Parquet bytes/event | Kafka JSON bytes/event | Kafka log bytes/event |\n"
        "|---|---|---|---|---|---|\n" + lakes + "\n\n"
        "| stage | lake | events | files | events per CPU-s |\n|---|---|---|---|---|\n" + stages + "\n"
    )


def _best_case(cases: list[dict[str, Any]], starts: str) -> dict[str, Any]:
    found = [c for c in cases if c["case"].startswith(starts)]
    if not found:
        raise KeyError(f"no case starting with {starts!r}")
    return found[0]


def write_rates(bench_dir: Path | None = None) -> dict[str, Any]:
    """Collect the per-core rates of ``simulator.json``, ``producer.json`` and ``capacity.json`` into ``rates.json``.

    Each figure keeps where it came from (file, case, measured_at, conditions) and the machine. The
    1 -> 2 executor scaling of the stream comes from ``scaling.json`` (``--only scaling``, on a
    standalone cluster); without it ``stream_scaling_1_to_2`` is null.
    """
    import statistics

    bench_dir = bench_dir or project_root() / BENCH_DIR
    loaded = {}
    for name, how in (("simulator", "smartcity bench --only simulator"), ("producer", "smartcity bench --only producer"),
                      ("capacity", "smartcity bench --only capacity-rates")):
        path = bench_dir / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `{how}` first")
        loaded[name] = json.loads(path.read_text())
    sim, prod, cap = loaded["simulator"], loaded["producer"], loaded["capacity"]

    def source(name: str, part: str) -> dict[str, Any]:
        data = loaded[name]
        return {"source": f"{BENCH_DIR / (name + '.json')}: {part}", "measured_at": data["measured_at"],
                "conditions": data["conditions"]}

    live = _best_case(sim["cases"], "live-scale")["generate_and_serialize"]
    drains = cap["stream"]["runs"]
    drain_cpu = statistics.median(r["jvm_cpu_s"] + r["self_cpu_s"] for r in drains)
    drain_batches = statistics.median(r["batches"] for r in drains)
    net_of_batches = round(cap["events"] / (drain_cpu - drain_batches * cap["stream"]["cpu_s_per_batch"]))
    # the largest rate the stream has reached on this machine: these drains, or the stream bench (d) if it did more
    fastest = {"value": max(r["events_per_s_wall"] for r in cap["stream"]["runs"]), **source(
        "capacity", "stream.runs: the largest wall-clock rate of these drains (local[*])")}
    stream_bench = bench_dir / "stream.json"
    if stream_bench.is_file():
        d = json.loads(stream_bench.read_text())
        if d["stream_events_per_s"] > fastest["value"]:
            loaded["stream"] = d
            fastest = {"value": d["stream_events_per_s"], **source(
                "stream", "stream_events_per_s: the stream bench (d), median of its drains (local[*])")}
    confluent = _best_case(prod["cases"], "(c)")
    s, k, mix = cap["stream"], cap["kafka"], cap["event_mix"]
    small, large = cap["small_batch_lake"], cap["large_batch_lake"]
    rates = {
        "measured_at": max(sim["measured_at"], prod["measured_at"], cap["measured_at"]),
        "machine": cap["machine"],
        "rates": {
            "simulator_events_per_cpu_s": {"value": live["events_per_cpu_s"], **source(
                "simulator", "live-scale fleet, generate_and_serialize (events and their orjson values), one core")},
            "producer_events_per_cpu_s": {"value": confluent["events_per_cpu_s"], **source(
                "producer", "case (c) confluent-kafka, producer process pinned to one core")},
            "stream_events_per_cpu_s": {"value": s["events_per_cpu_s"], **source(
                "capacity", "stream.events_per_cpu_s: Spark JVM + driver Python CPU, median of the 200,000-event-batch drains")},
            "stream_events_per_cpu_s_net_of_batches": {"value": net_of_batches, **source(
                "capacity", "events / (median CPU of the 200,000-event drains - their batches x stream.cpu_s_per_batch): "
                            "the stream's CPU per event with its per-micro-batch CPU taken out")},
            "stream_jvm_events_per_cpu_s": {"value": s["jvm_events_per_cpu_s"], **source(
                "capacity", "stream.jvm_events_per_cpu_s: the Spark JVM alone (work that executors share)")},
            "stream_driver_events_per_cpu_s": {"value": s["driver_python_events_per_cpu_s"], **source(
                "capacity", "stream.driver_python_events_per_cpu_s: the driver's Python (publisher: lines to Parquet)")},
            "stream_cpu_s_per_batch": {"value": s["cpu_s_per_batch"], **source(
                "capacity", "stream.cpu_s_per_batch: (CPU of the small-batch drain - median CPU of the 200,000-event "
                            "drains) / (difference in batches), same events")},
            "stream_events_per_s_wall_max": fastest,
            "broker_ingest_events_per_cpu_s": {"value": k["ingest"]["events_per_cpu_s"], **source(
                "capacity", "kafka.ingest: broker JVM CPU while the producer sent every event (replication 1)")},
            "broker_fetch_events_per_cpu_s": {"value": s["broker_fetch_events_per_cpu_s"], **source(
                "capacity", "stream.broker_fetch_events_per_cpu_s: broker JVM CPU while the stream read them")},
            "catalog_cpu_s_per_new_file": {"value": small["catalog"]["cpu_s_per_new_file"], **source(
                "capacity", "small_batch_lake.catalog: (first crawl - re-crawl with nothing new) / files opened")},
            "catalog_files_per_cpu_s": {"value": small["catalog"]["files_per_cpu_s"], **source(
                "capacity", "small_batch_lake.catalog: first crawl, footers of every file")},
            "catalog_events_per_cpu_s": {"value": small["catalog"]["events_per_cpu_s"], **source(
                "capacity", "small_batch_lake.catalog: first crawl (depends on events per file)")},
            "warehouse_events_per_cpu_s": {"value": small["warehouse"]["events_per_cpu_s"], **source(
                "capacity", "small_batch_lake.warehouse: load_lake, client + PostgreSQL server CPU")},
        },
        "event_mix": {
            "per_vehicle_fix": mix["per_vehicle_fix"],
            "traffic_data_per_vehicle_second": mix["traffic_data_per_vehicle_second"],
            "background_per_hour": mix["background_per_hour"],
            "events_per_vehicle_fix_all_topics": mix["events_per_vehicle_fix_all_topics"],
            "tick_seconds": mix["tick_seconds"],
            **source("capacity", f"event_mix: {mix['events']:,} simulated events, {mix['vehicle_fixes']:,} vehicle fixes"),
        },
        "bytes_per_event": {
            "kafka_json": mix["kafka_json_bytes_per_event"],
            "kafka_log": k["log_bytes_per_event"],
            "parquet": {t: small["lake"][t]["bytes_per_event"] for t in TOPICS},
            "parquet_large_batches": {t: large["lake"][t]["bytes_per_event"] for t in TOPICS},
            **source("capacity", "kafka_json: key + orjson value + header; kafka_log: broker log segments (lz4 batches); "
                                 f"parquet: the lake of the {s['small_batches']['max_batch_events']:,}-event batches "
                                 "(what a 1 s trigger takes at 10,000 events/s); parquet_large_batches: 200,000-event batches"),
        },
        **_scaling_rate(bench_dir),
    }
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / RATES_FILE).write_text(json.dumps(rates, indent=2) + "\n")
    return rates


# -- the stream from 1 to 2 executors on the cluster profile's engines -------------------------------
def _scaling_rate(bench_dir: Path) -> dict[str, Any]:
    """``stream_scaling_1_to_2`` and where it came from, for ``rates.json``; null when not measured."""
    path = bench_dir / "scaling.json"
    if not path.is_file():
        return {"stream_scaling_1_to_2": None,
                "stream_scaling_note": "not measured: run `smartcity bench --only scaling` (a standalone cluster)"}
    data = json.loads(path.read_text())
    rates = ", ".join(f"{c['executors']} executor(s) {c['events_per_s']:,} events/s" for c in data["cases"])
    return {"stream_scaling_1_to_2": data["stream_scaling_1_to_2"],
            "stream_scaling_note": f"{BENCH_DIR / 'scaling.json'} ({data['measured_at']}): {rates}; {data['conditions']}"}


def run_scaling_bench(vehicles: int = 80, repeats: int = 3, out_dir: Path | None = None) -> dict[str, Any]:
    """The stream's drain rate with 1 and then 2 executors of a standalone cluster (2 workers of 1 core).

    The same events in the same topics; each case is its own application (``spark.cores.max`` 1,
    then 2), warmed up, then drains the topics ``repeats`` times from scratch, every drain checked
    against the produced counts by a DuckDB glob. The ratio of the medians is what the capacity
    model calls ``stream_scaling_1_to_2``. On a 2-core machine the executors share the cores with
    the driver, the broker and the publisher, so this is the floor of what more cores give.
    """
    import statistics

    from smartcity.platform import cluster
    from smartcity.stream import query as stream
    from smartcity.platform.spark import spark_session

    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    cases: dict[int, dict[str, Any]] = {}
    try:
        base = _bench_cfg(work, vehicles=vehicles, departure_spacing_seconds=20.0, stream_max_batch_events=200_000,
                          spark_master=f"spark://127.0.0.1:{free_port()}", spark_master_ui_port=free_port(),
                          spark_workers=2, spark_worker_cores=1)
        events = simulation.simulate_journey(base)
        produced = {t: sum(1 for e in events if e.topic == t) for t in TOPICS}
        with kafka.ensure_broker(base), cluster.ensure_cluster(base):
            simulation.prepare_run(base)
            produce(base.kafka_bootstrap, events, backend="confluent-kafka", progress=False)
            for executors in (1, 2):
                cfg = from_mapping({**base.as_dict(), "spark_cores_max": executors}, source="smartcity bench")
                with spark_session(cfg) as spark:
                    warm = stream.warm_up(spark, cfg)
                    seconds = []
                    for n in range(repeats):
                        seconds.append(round(_drain(spark, cfg, produced, f"{executors} executor(s), drain {n}")["wall_s"], 2))
                    # what the master granted (the driver is in the tracker's list too)
                    granted = len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1
                if granted != executors:
                    raise RuntimeError(f"asked for {executors} executor(s), the master granted {granted}")
                cases[executors] = {"executors": executors, "warm_up_s": round(warm, 1),
                                    "drain_seconds": seconds,
                                    "events_per_s": round(len(events) / statistics.median(seconds))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = _measured()
    results.update({
        "conditions": (f"{len(events):,} events of {vehicles} vehicles in 5 topics of 3 partitions on one local broker; "
                       "a Spark standalone master and 2 workers of 1 core and 1 GiB each on this machine, executors "
                       f"of {base.spark_executor_memory}, driver {base.spark_driver_memory}, spark.cores.max 1 then 2; "
                       f"maxOffsetsPerTrigger {base.stream_max_batch_events:,}; {repeats} drains each, medians; "
                       f"{results['load_when_done']}"),
        "events": len(events), "cases": [cases[1], cases[2]],
        "stream_scaling_1_to_2": round(cases[2]["events_per_s"] / cases[1]["events_per_s"], 2),
    })
    _save(out_dir, "scaling", results, render_scaling_markdown(results))
    return results


def render_scaling_markdown(results: dict[str, Any]) -> str:
    rows = "\n".join(f"| {c['executors']} | {c['warm_up_s']:.0f} | {', '.join(f'{s:.1f}' for s in c['drain_seconds'])} | "
                     f"{c['events_per_s']:,} |" for c in results["cases"])
    return (
        f"# Stream scaling, 1 -> 2 executors ({results['measured_at']})\n\n" + _machine_line(results) +
        f"Conditions: {results['conditions']}.\n\n"
        "| executors (1 core each) | warm-up s | drains (s) | events/s (median) |\n|---|---|---|---|\n" + rows + "\n\n"
        f"2 executors / 1 executor: **{results['stream_scaling_1_to_2']:.2f}**.\n"
    )
