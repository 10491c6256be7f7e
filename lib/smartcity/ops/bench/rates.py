"""``rates.json``: the per-core rates of the simulator, producer, capacity and scaling benchmarks in one
file, each figure with where it came from, for ``smartcity capacity``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smartcity.fleet.contracts import TOPICS
from smartcity.ops.bench.common import BENCH_DIR
from smartcity.platform.params import project_root

# -- the capacity model's rates: event mix and bytes, stream CPU, (g) catalog, (h) warehouse ------------
#: Where the rates the capacity model reads are collected (``smartcity capacity`` prefers it when newer).
RATES_FILE = "rates.json"


def _best_case(cases: list[dict[str, Any]], starts: str) -> dict[str, Any]:
    found = [c for c in cases if c["case"].startswith(starts)]
    if not found:
        raise KeyError(f"no case starting with {starts!r}")
    return found[0]


def _net_of_batches(cap: dict[str, Any]) -> int:
    drains = cap["stream"]["runs"]
    drain_cpu = statistics.median(r["jvm_cpu_s"] + r["self_cpu_s"] for r in drains)
    drain_batches = statistics.median(r["batches"] for r in drains)
    return round(cap["events"] / (drain_cpu - drain_batches * cap["stream"]["cpu_s_per_batch"]))


#: The benchmark results the rates come from, and the command that writes each.
_INPUTS = {
    "simulator": "smartcity bench --only simulator",
    "producer": "smartcity bench --only producer",
    "capacity": "smartcity bench --only capacity-rates",
}
#: Each per-core rate: (its name, the result it comes from, how to read it there, what that is).
_RATES: tuple[tuple[str, str, Callable[[dict[str, Any]], float], str], ...] = (
    (
        "simulator_events_per_cpu_s",
        "simulator",
        lambda d: _best_case(d["cases"], "live-scale")["generate_and_serialize"]["events_per_cpu_s"],
        "live-scale fleet, generate_and_serialize (events and their orjson values), one core",
    ),
    (
        "producer_events_per_cpu_s",
        "producer",
        lambda d: _best_case(d["cases"], "(c)")["events_per_cpu_s"],
        "case (c) confluent-kafka, producer process pinned to one core",
    ),
    (
        "stream_events_per_cpu_s",
        "capacity",
        lambda d: d["stream"]["events_per_cpu_s"],
        "stream.events_per_cpu_s: Spark JVM + driver Python CPU, median of the 200,000-event-batch drains",
    ),
    (
        "stream_events_per_cpu_s_net_of_batches",
        "capacity",
        _net_of_batches,
        "events / (median CPU of the 200,000-event drains - their batches x stream.cpu_s_per_batch): "
        "the stream's CPU per event with its per-micro-batch CPU taken out",
    ),
    (
        "stream_jvm_events_per_cpu_s",
        "capacity",
        lambda d: d["stream"]["jvm_events_per_cpu_s"],
        "stream.jvm_events_per_cpu_s: the Spark JVM alone (work that executors share)",
    ),
    (
        "stream_driver_events_per_cpu_s",
        "capacity",
        lambda d: d["stream"]["driver_python_events_per_cpu_s"],
        "stream.driver_python_events_per_cpu_s: the driver's Python (foreachBatch callbacks and the commit)",
    ),
    (
        "stream_cpu_s_per_batch",
        "capacity",
        lambda d: d["stream"]["cpu_s_per_batch"],
        "stream.cpu_s_per_batch: (CPU of the small-batch drain - median CPU of the 200,000-event "
        "drains) / (difference in batches), same events",
    ),
    (
        "stream_driver_cpu_s_per_batch",
        "capacity",
        lambda d: d["stream"]["driver"]["driver_cpu_s_per_batch"],
        "stream.driver.driver_cpu_s_per_batch: the driver's Python per micro-batch, solved with the per-file "
        "and per-drain costs from the medians of the 200,000-event, small-batch and wide-topic drains",
    ),
    (
        "stream_driver_cpu_s_per_file",
        "capacity",
        lambda d: d["stream"]["driver"]["driver_cpu_s_per_file"],
        "stream.driver.driver_cpu_s_per_file: the driver's Python per staged file (a task's result row planned, "
        "its file published), from the same solve",
    ),
    (
        "broker_ingest_events_per_cpu_s",
        "capacity",
        lambda d: d["kafka"]["ingest"]["events_per_cpu_s"],
        "kafka.ingest: broker JVM CPU while the producer sent every event (replication 1)",
    ),
    (
        "broker_fetch_events_per_cpu_s",
        "capacity",
        lambda d: d["stream"]["broker_fetch_events_per_cpu_s"],
        "stream.broker_fetch_events_per_cpu_s: broker JVM CPU while the stream read them",
    ),
    (
        "catalog_cpu_s_per_new_file",
        "capacity",
        lambda d: d["small_batch_lake"]["catalog"]["cpu_s_per_new_file"],
        "small_batch_lake.catalog: (first crawl - re-crawl with nothing new) / files opened",
    ),
    (
        "catalog_files_per_cpu_s",
        "capacity",
        lambda d: d["small_batch_lake"]["catalog"]["files_per_cpu_s"],
        "small_batch_lake.catalog: first crawl, footers of every file",
    ),
    (
        "catalog_events_per_cpu_s",
        "capacity",
        lambda d: d["small_batch_lake"]["catalog"]["events_per_cpu_s"],
        "small_batch_lake.catalog: first crawl (depends on events per file)",
    ),
    (
        "warehouse_events_per_cpu_s",
        "capacity",
        lambda d: d["small_batch_lake"]["warehouse"]["events_per_cpu_s"],
        "small_batch_lake.warehouse: load_lake, client + PostgreSQL server CPU",
    ),
)


def _source(loaded: dict[str, dict[str, Any]], name: str, part: str) -> dict[str, Any]:
    """Where a figure comes from: the result file and part, when and under which conditions it was measured."""
    data = loaded[name]
    return {
        "source": f"{BENCH_DIR / (name + '.json')}: {part}",
        "measured_at": data["measured_at"],
        "conditions": data["conditions"],
    }


def _fastest(loaded: dict[str, dict[str, Any]], bench_dir: Path) -> dict[str, Any]:
    """The largest rate the stream has reached on this machine, a median either way (one drain's rate would flatter
    it): the capacity drains', or the stream bench (d)'s."""
    fastest = {
        "value": loaded["capacity"]["stream"]["events_per_s_wall"],
        **_source(
            loaded,
            "capacity",
            "stream.events_per_s_wall: the median wall-clock rate of these drains (Spark in one local JVM)",
        ),
    }
    stream_bench = bench_dir / "stream.json"
    if stream_bench.is_file():
        d = json.loads(stream_bench.read_text())
        if d["stream_events_per_s"] > fastest["value"]:
            loaded["stream"] = d
            fastest = {
                "value": d["stream_events_per_s"],
                **_source(
                    loaded,
                    "stream",
                    "stream_events_per_s: the stream bench (d), median of its drains (Spark in one local JVM)",
                ),
            }
    return fastest


def _mix_and_bytes(loaded: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The event mix per vehicle and the bytes per event in Kafka and in the lake."""
    cap = loaded["capacity"]
    mix, small, large = cap["event_mix"], cap["small_batch_lake"], cap["large_batch_lake"]
    kept = (
        "per_vehicle_fix",
        "traffic_data_per_vehicle_second",
        "background_per_hour",
        "events_per_vehicle_fix_all_topics",
        "tick_seconds",
    )
    return {
        "event_mix": {
            **{k: mix[k] for k in kept},
            **_source(
                loaded,
                "capacity",
                f"event_mix: {mix['events']:,} simulated events, {mix['vehicle_fixes']:,} vehicle fixes",
            ),
        },
        "bytes_per_event": {
            "kafka_json": mix["kafka_json_bytes_per_event"],
            "kafka_log": cap["kafka"]["log_bytes_per_event"],
            "parquet": {t: small["lake"][t]["bytes_per_event"] for t in TOPICS},
            "parquet_large_batches": {t: large["lake"][t]["bytes_per_event"] for t in TOPICS},
            **_source(
                loaded,
                "capacity",
                "kafka_json: key + orjson value + header; kafka_log: broker log segments "
                f"(lz4 batches); parquet: the lake of the {cap['stream']['small_batches']['max_batch_events']:,}"
                "-event batches (what a 1 s trigger takes at 10,000 events/s); parquet_large_batches: "
                "200,000-event batches",
            ),
        },
    }


def write_rates(bench_dir: Path | None = None) -> dict[str, Any]:
    """Collect the per-core rates of ``simulator.json``, ``producer.json`` and ``capacity.json`` into ``rates.json``.

    Each figure keeps where it came from (file, case, measured_at, conditions) and the machine. The
    1 -> 2 executor scaling of the stream comes from ``scaling.json`` (``--only scaling``, on a
    standalone cluster); without it ``stream_scaling_1_to_2`` is null.
    """
    bench_dir = bench_dir or project_root() / BENCH_DIR
    loaded = {}
    for name, how in _INPUTS.items():
        path = bench_dir / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `{how}` first")
        loaded[name] = json.loads(path.read_text())
    figures = {name: {"value": read(loaded[file]), **_source(loaded, file, part)} for name, file, read, part in _RATES}
    figures["stream_events_per_s_wall_max"] = _fastest(loaded, bench_dir)
    rates = {
        "measured_at": max(loaded[name]["measured_at"] for name in _INPUTS),
        "machine": loaded["capacity"]["machine"],
        "rates": figures,
        **_mix_and_bytes(loaded),
        **scaling_rate(bench_dir),
    }
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / RATES_FILE).write_text(json.dumps(rates, indent=2) + "\n")
    return rates


# -- the stream from 1 to 2 executors on the cluster profile's engines -------------------------------
def scaling_rate(bench_dir: Path) -> dict[str, Any]:
    """``stream_scaling_1_to_2`` and where it came from, for ``rates.json``; null when not measured."""
    path = bench_dir / "scaling.json"
    if not path.is_file():
        return {
            "stream_scaling_1_to_2": None,
            "stream_scaling_note": "not measured: run `smartcity bench --only scaling` (a standalone cluster)",
        }
    data = json.loads(path.read_text())
    rates = ", ".join(f"{c['executors']} executor(s) {c['events_per_s']:,} events/s" for c in data["cases"])
    return {
        "stream_scaling_1_to_2": data["stream_scaling_1_to_2"],
        "stream_scaling_note": f"{BENCH_DIR / 'scaling.json'} ({data['measured_at']}): {rates}; {data['conditions']}",
    }
