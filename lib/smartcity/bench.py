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

from smartcity import kafka, simulate
from smartcity.config import TOPICS, Params, from_mapping, project_root
from smartcity.contracts import Event
from smartcity.engines import free_port
from smartcity.producer import produce

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
    events = simulate.simulate_journey(cfg)
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
            os.sched_setaffinity(broker.process.pid, broker_cores)  # type: ignore[union-attr]
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
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "producer.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "producer.md").write_text(render_markdown(results))
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


def _simulated(sim: simulate.FleetSimulation, skip_hours: float, hours: float | None, serialize: bool) -> dict[str, Any]:
    """Run the simulation, time the events from ``skip_hours`` for ``hours`` of simulated time (None: to the end)."""
    events = sim.events()
    start = sim.cfg.start_time + timedelta(hours=skip_hours)
    begin = simulate.iso(start)
    end = simulate.iso(start + timedelta(hours=hours)) if hours is not None else None
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
        runs = [_simulated(simulate.FleetSimulation(cfg), skip_hours, hours, serialize) for _ in range(repeats)]
        result[label] = max(runs, key=lambda r: r["events_per_cpu_s"])
        result[label]["events_per_cpu_s_all_runs"] = [r["events_per_cpu_s"] for r in runs]
    return result


def _memory_over(cfg: Params, hours: int) -> dict[str, Any]:
    """Resident memory of an endless run, sampled at every simulated hour."""
    sim = simulate.FleetSimulation(cfg)
    samples = [{"hour": 0, "rss_mib": round(resident_mib(), 1), "on_road": 0, "departed": 0}]
    next_hour = 1
    mark = simulate.iso(cfg.start_time + timedelta(hours=next_hour))
    count = 0
    for event in sim.events():
        if event.value["timestamp"] >= mark:
            state = sim.state
            samples.append({"hour": next_hour, "rss_mib": round(resident_mib(), 1), "on_road": state.on_road,
                            "departed": state.departed})
            if next_hour == hours:
                break
            next_hour += 1
            mark = simulate.iso(cfg.start_time + timedelta(hours=next_hour))
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
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulator.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "simulator.md").write_text(render_simulator_markdown(results))
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
