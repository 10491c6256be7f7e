"""Producer throughput against a real local broker: three ways of sending the same fleet events.

One after the other, to the same topics on the same broker, emptied of the previous case's records
first (truncated, not re-created):

(a) the seed project's pattern: ``json.dumps`` and a ``flush()`` after every message;
(b) this lab's producer on kafka-python;
(c) the same producer on confluent-kafka (librdkafka).

The producing process is pinned to one core and the broker to the others, so "events per second"
is what one core of producer achieves. Every case must end with every event in the topics (checked
through the broker's offsets), or the benchmark fails instead of reporting a number.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.params import FleetParams
from smartcity.fleet.simulation import simulate_journey
from smartcity.ingest.producer import produce
from smartcity.ops.bench.common import BENCH_DIR, machine, save
from smartcity.platform import topics
from smartcity.platform.broker import start_broker
from smartcity.platform.params import project_root
from smartcity.platform.processes import free_port


def _seed_pattern(bootstrap: str, events: list[Event]) -> None:
    """What the seed's main.py does: serialize with json and flush after every single message."""
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
    fleet = FleetParams(vehicles=vehicles, seed=seed, departure_spacing_seconds=20.0)
    started = time.perf_counter()
    events = simulate_journey(fleet)
    rate = len(events) / (time.perf_counter() - started)
    if len(events) < count:
        raise RuntimeError(f"the simulation made {len(events)} events, fewer than the {count} asked for")
    return events[:count], rate


def _measure(name: str, run: Callable[[], Any], bootstrap: str, events: list[Event]) -> dict[str, Any]:
    topics.ensure_topics(bootstrap, TOPICS, partitions=3, empty=True)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    held = sum(topics.topic_counts(bootstrap, TOPICS).values())
    if held != len(events):
        raise RuntimeError(f"{name}: {len(events)} events sent but the topics hold {held}")
    return {
        "case": name,
        "events": len(events),
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_s": round(len(events) / wall),
        "events_per_cpu_s": round(len(events) / max(cpu, 1e-9)),
    }


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
        with start_broker(free_port(), work / "kafka") as broker:
            producer_core, broker_cores = cores[0], set(cores[1:]) or {cores[0]}
            os.sched_setaffinity(broker.nodes[1].pid, broker_cores)
            os.sched_setaffinity(0, {producer_core})
            try:
                seed_sample = sample[:seed_pattern_events]
                cases = [
                    _measure(
                        "(a) seed pattern: json + flush per message",
                        lambda: _seed_pattern(broker.bootstrap, seed_sample),
                        broker.bootstrap,
                        seed_sample,
                    ),
                    _measure(
                        "(b) lab producer, kafka-python",
                        lambda: produce(broker.bootstrap, sample, backend="kafka-python", progress=False),
                        broker.bootstrap,
                        sample,
                    ),
                    _measure(
                        "(c) lab producer, confluent-kafka",
                        lambda: produce(broker.bootstrap, sample, backend="confluent-kafka", progress=False),
                        broker.bootstrap,
                        sample,
                    ),
                ]
            finally:
                os.sched_setaffinity(0, set(cores))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b, c = (case["events_per_s"] for case in cases)
    results = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "conditions": (
            f"local single-node Kafka broker (KRaft) on cores {sorted(broker_cores)}, producer pinned to "
            f"core {producer_core}; topics of 3 partitions, emptied (DeleteRecords) before each case; "
            f"{len(sample)} simulated events (avg {sum(len(orjson.dumps(e.value)) for e in sample) // len(sample)} "
            "bytes of JSON each), pre-generated"
        ),
        "simulator_events_per_s": round(sim_rate),
        "orjson_serialize_events_per_s": round(serialize_rate),
        "cases": cases,
        "ratios": {"b_over_a": round(b / a, 1), "c_over_a": round(c / a, 1), "c_over_b": round(c / b, 2)},
        "kafka_python_within_2x_of_confluent": c / b <= 2.0,
    }
    save(out_dir, "producer", results, render_producer_markdown(results))
    return results


def render_producer_markdown(results: dict) -> str:
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
