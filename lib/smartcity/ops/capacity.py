"""A capacity model: what N vehicles reporting every S seconds need, from rates measured on this machine.

``smartcity capacity --vehicles N --fix-seconds S`` (or, without ``--vehicles``, three presets).

Why a model from *measured per-core* rates: a deployment is sized in cores, partitions, brokers
and bytes, and a rate per CPU-second is what one core of a component does, whatever else shared
the machine while it was measured (wall-clock rates on a shared 2-core machine say more about the
neighbours than about the code). Every input figure comes from ``smartcity bench`` runs and keeps
its provenance (file, case, date, conditions, machine) in the rates file:

* ``lib/smartcity/ops/data/capacity_rates.json``: the committed rates;
* ``outputs/bench/rates.json``: written by ``smartcity bench --only capacity-rates``; the command
  uses it instead when it was measured later than the committed file, and says which it used.

What the model does with them (all linear, all stated):

* events/s = vehicles x (telemetry + GPS per fix) / fix-seconds + vehicles x camera events per
  vehicle-second (a camera fires when a vehicle passes, whatever its fix interval) + the corridor's
  weather and incident reports (per hour, not per vehicle: kept at the measured corridor's rate);
* cores of each component = its work (events/s / events per CPU-second, plus the stream's cost per
  micro-batch) / :data:`TARGET_UTILISATION`, rounded up;
* brokers: the cluster's broker CPU for replication factor :data:`REPLICATION_FACTOR` (see
  :func:`broker_cpu_cores`) on :data:`BROKER_CORES`-core brokers, never fewer than the replicas;
* partitions: by consumer parallelism, so every Spark core has a partition to read;
* lake growth and Kafka disk per day: events x measured bytes per event, per topic;
* warehouse load and catalog crawl: CPU time per day of data at the measured rates.

What it does not know: network and disk bandwidth limits (it prints the bytes so they can be
checked), coordination costs of a bigger cluster (the stream's 1 -> 2 executor scaling is the only
evidence of those, ``stream_scaling_1_to_2``; null until measured), and how many of the licensed
vehicles drive at once (``vehicles`` is the number reporting at the same time: every licensed
vehicle is the upper bound).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from smartcity.fleet.contracts import TOPICS
from smartcity.platform.params import display_path, project_root

#: The committed rates, with their provenance.
COMMITTED_RATES = Path(__file__).with_name("data") / "capacity_rates.json"
#: Where ``smartcity bench --only capacity-rates`` writes freshly measured ones.
MEASURED_RATES = Path("outputs") / "bench" / "rates.json"

#: Size each component to be at most this busy at the modelled rate: room for rush-hour peaks above
#: the mean, catching up after an outage, GC pauses and a node lost. 0.7 is a common planning figure.
TARGET_UTILISATION = 0.7
#: Replicas of every topic in production (and min.insync.replicas 2): a broker may be lost.
REPLICATION_FACTOR = 3
#: Cores of one broker machine: an assumption (a common 4-vCPU instance), not a measurement.
BROKER_CORES = 4
#: Partitions of every topic at least: the lab's default ``kafka_partitions``.
MIN_PARTITIONS = 3
#: The two topics that carry almost every event; the others keep :data:`MIN_PARTITIONS`.
HEAVY_TOPICS = ("vehicle_data", "gps_data")
#: The live stream's trigger and the most events one micro-batch takes (the lab's defaults,
#: ``stream_trigger_seconds`` and ``stream_max_batch_events``). A row with more events per trigger runs with
#: ``stream_max_batch_events`` raised to one trigger's events (:func:`batch_events`): one micro-batch per trigger.
TRIGGER_SECONDS = 1.0
MAX_BATCH_EVENTS = 200_000
SECONDS_PER_DAY = 86_400

#: Rate names the model reads, each ``{"value": ..., "source": ..., "measured_at": ..., "conditions": ...}``.
REQUIRED_RATES = (
    "simulator_events_per_cpu_s",
    "producer_events_per_cpu_s",
    "stream_events_per_cpu_s_net_of_batches",
    "stream_cpu_s_per_batch",
    "stream_driver_cpu_s_per_batch",
    "stream_driver_cpu_s_per_file",
    "stream_events_per_s_wall_max",
    "broker_ingest_events_per_cpu_s",
    "broker_fetch_events_per_cpu_s",
    "catalog_cpu_s_per_new_file",
    "warehouse_events_per_cpu_s",
)
PROVENANCE = ("source", "measured_at", "conditions")


@dataclass(frozen=True)
class Preset:
    """A fleet to size: its name, vehicles, and where the number comes from."""

    name: str
    vehicles: int
    source: str


#: The three fleets of the README table.
PRESETS: tuple[Preset, ...] = (
    Preset("corridor", 1_000, "a corridor fleet: 1,000 connected vehicles on London - Birmingham (the lab's roads)"),
    Preset(
        "London",
        2_600_000,
        "about 2.6 million licensed vehicles in London (DfT vehicle licensing statistics, "
        "VEH0105 by local authority; about 2.6 million cars in 2020)",
    ),
    Preset(
        "UK",
        41_200_000,
        "41.2 million licensed vehicles in the UK at the end of December 2023 (DfT, Vehicle "
        "licensing statistics: 2023, table VEH0101a, published 15 May 2024)",
    ),
)


class RatesError(ValueError):
    """A rates file lacks a figure the model needs, or the provenance of one."""


# -- the rates ----------------------------------------------------------------------------------------
def _missing_rates(rates: dict[str, Any]) -> list[str]:
    """The rate figures that are absent or not positive, or lack where they come from."""
    missing = []
    for name in REQUIRED_RATES:
        entry = rates.get("rates", {}).get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float) or entry["value"] <= 0:
            missing.append(f"rates.{name}.value (a positive number)")
            continue
        missing += [f"rates.{name}.{p}" for p in PROVENANCE if not entry.get(p)]
    return missing


def _missing_scaling(rates: dict[str, Any]) -> list[str]:
    """The 1 -> 2 executor scaling: null until measured, else a positive figure that says where it comes from."""
    if "stream_scaling_1_to_2" not in rates:
        return ["stream_scaling_1_to_2 (null until measured)"]
    ratio = rates["stream_scaling_1_to_2"]
    if ratio is None:
        return []
    missing = []
    if not isinstance(ratio, int | float) or ratio <= 0:
        missing.append("stream_scaling_1_to_2 as a positive number (or null)")
    if not rates.get("stream_scaling_note"):
        missing.append("stream_scaling_note (how, when and where the scaling was measured)")
    return missing


def check_rates(rates: dict[str, Any]) -> None:
    """Refuse rates that lack a figure or its provenance: a sizing must say what it stands on."""
    missing = [key for key in ("measured_at", "machine", "rates", "event_mix", "bytes_per_event") if key not in rates]
    missing += _missing_rates(rates)
    mix = rates.get("event_mix", {})
    missing += [
        f"event_mix.{key}"
        for key in ("per_vehicle_fix", "traffic_data_per_vehicle_second", "background_per_hour", *PROVENANCE)
        if key not in mix
    ]
    sizes = rates.get("bytes_per_event", {})
    for key in ("kafka_log", "parquet"):
        if not all(isinstance(sizes.get(key, {}).get(t), int | float) for t in TOPICS):
            missing.append(f"bytes_per_event.{key} (every topic)")
    missing += [f"bytes_per_event.{p}" for p in PROVENANCE if p not in sizes]
    missing += _missing_scaling(rates)
    if missing:
        raise RatesError("the rates lack: " + ", ".join(missing))


def read_rates(path: Path) -> dict[str, Any]:
    """A rates file, checked."""
    rates = json.loads(Path(path).read_text())
    check_rates(rates)
    return rates


def choose_rates(committed: dict[str, Any], measured: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The measured rates when they were measured later than the committed ones, else the committed.

    A fresh bench run stands for this machine now; the committed file stands for the README. The
    1 -> 2 executor scaling is measured apart (on the cluster profile): when the chosen rates lack
    it, the committed figure is kept, and the returned label says so.
    """
    if measured is None or measured["measured_at"] <= committed["measured_at"]:
        return committed, "committed"
    chosen = dict(measured)
    if chosen.get("stream_scaling_1_to_2") is None and committed.get("stream_scaling_1_to_2") is not None:
        chosen["stream_scaling_1_to_2"] = committed["stream_scaling_1_to_2"]
        chosen["stream_scaling_note"] = committed.get("stream_scaling_note", "") + " (from the committed rates)"
    return chosen, "measured"


def load_rates(committed_path: Path = COMMITTED_RATES, measured_path: Path | None = None) -> tuple[dict[str, Any], str]:
    """(rates, a line saying which file and why): the committed rates, or outputs/bench/rates.json if newer."""
    measured_path = measured_path if measured_path is not None else project_root() / MEASURED_RATES
    committed = read_rates(committed_path)
    measured = read_rates(measured_path) if measured_path.is_file() else None
    rates, which = choose_rates(committed, measured)
    if which == "measured":
        line = (
            f"rates: {display_path(measured_path)} (measured {rates['measured_at']}, newer than the committed "
            f"{committed_path.name} of {committed['measured_at']})"
        )
    else:
        newer = "" if measured is None else f"; {display_path(measured_path)} ({measured['measured_at']}) is not newer"
        line = f"rates: {display_path(committed_path)} (measured {committed['measured_at']}{newer})"
    return rates, line


def rate(rates: dict[str, Any], name: str) -> float:
    """One measured figure by name."""
    return float(rates["rates"][name]["value"])


# -- the model ----------------------------------------------------------------------------------------
def events_per_second(rates: dict[str, Any], vehicles: float, fix_seconds: float) -> dict[str, float]:
    """Events per second per topic for ``vehicles`` reporting a fix every ``fix_seconds``.

    Telemetry and GPS scale with fixes; camera events with vehicle-seconds on the road (a camera sees
    a vehicle pass whatever its fix interval); weather and incident reports come from the corridor's
    stations and roads, so they stay at the measured corridor's rate (a city or a country would have
    more stations, but they are a rounding error beside the vehicles).
    """
    if vehicles < 0 or fix_seconds <= 0:
        raise ValueError("vehicles must be >= 0 and fix_seconds > 0")
    mix = rates["event_mix"]
    per_fix, background = mix["per_vehicle_fix"], mix["background_per_hour"]
    out = {t: vehicles * float(per_fix.get(t, 0.0)) / fix_seconds for t in TOPICS}
    out["traffic_data"] += vehicles * float(mix["traffic_data_per_vehicle_second"])
    for topic, per_hour in background.items():
        out[topic] += float(per_hour) / 3600
    return out


def broker_cpu_cores(rates: dict[str, Any], events_s: float, replication: int = REPLICATION_FACTOR) -> float:
    """Broker CPU (cores, whole cluster, before headroom) for ``events_s`` with ``replication`` replicas.

    Measured on one broker: CPU per event appended (producer -> leader) and per event served (the
    stream's fetch). Assumed: each follower's append costs what the leader's does, and serving a
    follower's replication fetch costs what serving the stream's fetch does. So per event:
    ``replication`` appends and ``replication`` fetches served (the stream's and the followers').
    """
    append = 1 / rate(rates, "broker_ingest_events_per_cpu_s")
    fetch = 1 / rate(rates, "broker_fetch_events_per_cpu_s")
    return events_s * replication * (append + fetch)


def batches_per_second(
    events_s: float, trigger_seconds: float = TRIGGER_SECONDS, max_batch_events: int = MAX_BATCH_EVENTS
) -> float:
    """Micro-batches a live stream runs per second: one per trigger, or back to back once a trigger's
    events exceed what one batch takes (then it is ``max_batch_events`` per batch)."""
    return max(1 / trigger_seconds, events_s / max_batch_events) if events_s > 0 else 0.0


def batch_events(events_s: float, trigger_seconds: float = TRIGGER_SECONDS) -> int:
    """Events per micro-batch a row runs with: the lab's cap, raised to one trigger's events when a trigger
    brings more (micro-batches back to back at the default cap would each pay the driver's cost per batch)."""
    return max(MAX_BATCH_EVENTS, math.ceil(events_s * trigger_seconds))


def files_per_batch(heavy_partitions: int, spark_cores: int) -> int:
    """Files one micro-batch stages and publishes, at most: the batch's Kafka partitions are merged into one
    staging task per Spark core (:meth:`smartcity.stream.query.Routing.apply`), and each task writes a file per
    table (and event date) among its partitions; the two heavy topics have ``heavy_partitions`` each, the
    others :data:`MIN_PARTITIONS`. An upper bound: at a corridor's rate a batch leaves partitions empty."""
    partitions = len(HEAVY_TOPICS) * heavy_partitions + (len(TOPICS) - len(HEAVY_TOPICS)) * MIN_PARTITIONS
    return min(partitions, spark_cores * len(TOPICS))


def cores(work: float, utilisation: float = TARGET_UTILISATION) -> int:
    """Whole cores for ``work`` cores of measured CPU at the target utilisation (at least 1 if any work)."""
    return math.ceil(work / utilisation - 1e-9) if work > 0 else 0


@dataclass(frozen=True)
class Estimate:
    """What ``vehicles`` reporting every ``fix_seconds`` need; ``*_work`` are cores of CPU before headroom."""

    vehicles: int
    fix_seconds: float
    events_per_s: float
    kafka_mb_per_s: float  # into the brokers, one copy (times replication on the brokers' disks and network)
    broker_work: float
    brokers: int
    partitions_per_heavy_topic: int
    spark_work: float
    spark_cores: int
    batch_events: int  # events a micro-batch holds (its cap: see batch_events)
    files_per_batch: int  # files a micro-batch stages and publishes (see files_per_batch)
    driver_work: float  # the driver's Python (callbacks, the commit): one process, not spread over executors
    simulator_cores: int
    producer_cores: int
    lake_gb_per_day: float
    kafka_gb_per_day: float  # on the brokers' disks, all replicas
    warehouse_load_cpu_h_per_day: float
    catalog_cpu_min_per_day: float
    times_largest_measured: float  # events/s over the largest stream rate measured here


def estimate(
    rates: dict[str, Any],
    vehicles: int,
    fix_seconds: float,
    *,
    trigger_seconds: float = TRIGGER_SECONDS,
    replication: int = REPLICATION_FACTOR,
    broker_cores: int = BROKER_CORES,
) -> Estimate:
    """Size the pipeline for ``vehicles`` reporting every ``fix_seconds``, from measured rates (see the module doc)."""
    topics = events_per_second(rates, vehicles, fix_seconds)
    events_s = sum(topics.values())
    sizes = rates["bytes_per_event"]
    kafka_bytes_s = sum(topics[t] * float(sizes["kafka_log"][t]) for t in TOPICS)
    parquet_bytes_s = sum(topics[t] * float(sizes["parquet"][t]) for t in TOPICS)
    batches_s = batches_per_second(events_s, trigger_seconds, batch_events(events_s, trigger_seconds))
    spark_work = events_s / rate(rates, "stream_events_per_cpu_s_net_of_batches") + batches_s * rate(
        rates, "stream_cpu_s_per_batch"
    )
    spark = max(1, cores(spark_work))
    broker_work = broker_cpu_cores(rates, events_s, replication)
    brokers = max(replication, math.ceil(cores(broker_work) / broker_cores))
    heavy = max(MIN_PARTITIONS, math.ceil(spark / len(HEAVY_TOPICS)))
    heavy = math.ceil(heavy / brokers) * brokers  # as many leaders on every broker
    files = files_per_batch(heavy, spark)
    return Estimate(
        vehicles=vehicles,
        fix_seconds=fix_seconds,
        events_per_s=events_s,
        kafka_mb_per_s=kafka_bytes_s / 1e6,
        broker_work=broker_work,
        brokers=brokers,
        partitions_per_heavy_topic=heavy,
        spark_work=spark_work,
        spark_cores=spark,
        batch_events=math.ceil(events_s / batches_s) if batches_s else 0,
        files_per_batch=files,
        driver_work=batches_s
        * (rate(rates, "stream_driver_cpu_s_per_batch") + files * rate(rates, "stream_driver_cpu_s_per_file")),
        simulator_cores=cores(events_s / rate(rates, "simulator_events_per_cpu_s")),
        producer_cores=cores(events_s / rate(rates, "producer_events_per_cpu_s")),
        lake_gb_per_day=parquet_bytes_s * SECONDS_PER_DAY / 1e9,
        kafka_gb_per_day=kafka_bytes_s * replication * SECONDS_PER_DAY / 1e9,
        warehouse_load_cpu_h_per_day=events_s * SECONDS_PER_DAY / rate(rates, "warehouse_events_per_cpu_s") / 3600,
        catalog_cpu_min_per_day=batches_s * files * SECONDS_PER_DAY * rate(rates, "catalog_cpu_s_per_new_file") / 60,
        times_largest_measured=events_s / rate(rates, "stream_events_per_s_wall_max"),
    )


#: Column titles of the table, by :class:`Estimate` field.
COLUMNS = {
    "vehicles": "vehicles",
    "fix_seconds": "fix s",
    "events_per_s": "events/s",
    "kafka_mb_per_s": "Kafka MB/s in",
    "brokers": f"brokers ({BROKER_CORES} cores, RF {REPLICATION_FACTOR})",
    "partitions_per_heavy_topic": "partitions per heavy topic",
    "spark_cores": "Spark cores",
    "batch_events": "events per micro-batch",
    "files_per_batch": "files per micro-batch",
    "driver_work": "driver Python cores (work)",
    "simulator_cores": "simulator cores",
    "producer_cores": "producer cores",
    "lake_gb_per_day": "lake GB/day (Parquet)",
    "kafka_gb_per_day": f"Kafka disk GB/day (x{REPLICATION_FACTOR})",
    "warehouse_load_cpu_h_per_day": "warehouse load CPU-h per day of data",
    "catalog_cpu_min_per_day": "catalog crawl CPU-min/day",
    "times_largest_measured": "x largest measured stream rate",
}


def table(estimates: dict[str, Estimate]) -> pd.DataFrame:
    """One row per named estimate, the columns of :data:`COLUMNS` (numbers, unrounded)."""
    rows = {name: {title: asdict(e)[field] for field, title in COLUMNS.items()} for name, e in estimates.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def preset_table(
    rates: dict[str, Any], fix_seconds: float = 5.0, presets: tuple[Preset, ...] = PRESETS
) -> pd.DataFrame:
    """The corridor, London and UK rows at one fix interval."""
    return table({p.name: estimate(rates, p.vehicles, fix_seconds) for p in presets})


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def format_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table for people: one column per fleet, a row per quantity, numbers rounded as they deserve."""
    return frame.T.map(_number)


# -- what backs it -------------------------------------------------------------------------------------
def scaling_line(rates: dict[str, Any]) -> str:
    """The stream's measured 1 -> 2 executor scaling, or 'not measured' (never a guess)."""
    ratio = rates.get("stream_scaling_1_to_2")
    if ratio is None:
        return "stream scaling 1 -> 2 executors (cluster profile): not measured"
    return (
        f"stream scaling measured 1 -> 2 executors (cluster profile): ratio {float(ratio):.2f} "
        f"({float(ratio) / 2:.0%} of linear)"
    )


def backing_lines(rates: dict[str, Any], frame: pd.DataFrame) -> list[str]:
    """How far beyond measurement each row goes, and on what the extrapolation stands."""
    largest = rate(rates, "stream_events_per_s_wall_max")
    ratio = rates.get("stream_scaling_1_to_2")
    if ratio is None:
        backed = "backed only to 2 cores of one machine (local[*]); 1 -> 2 executors not measured"
    elif float(ratio) < 1.8:  # the second executor added little: the measurement does not back linear scaling
        backed = (
            f"which nothing measured here backs: a second executor gave {float(ratio):.2f}x, not 2x, on a "
            f"machine of {rates['machine']['cores']} cores shared with the driver and the broker; measure on "
            "more cores before trusting this row"
        )
    else:
        backed = f"backed to 2 executors (ratio {float(ratio):.2f})"
    lines = [scaling_line(rates)]
    for name, row in frame.iterrows():
        times = row[COLUMNS["times_largest_measured"]]
        if times <= 1:
            lines.append(
                f"{name}: within the stream rates measured here ({_number(times)}x the largest, "
                f"{largest:,.0f} events/s)"
            )
        else:
            lines.append(
                f"{name}: {_number(times)}x the largest stream rate measured here ({largest:,.0f} events/s); "
                f"assumes linear scaling, {backed}"
            )
    lines.append(driver_line(rates, frame))
    return lines


def driver_line(rates: dict[str, Any], frame: pd.DataFrame) -> str:
    """Whether the stream's one driver limits a row (its Python over :data:`TARGET_UTILISATION` of a core), and
    what limits next when it does not."""
    per_batch, per_file = rate(rates, "stream_driver_cpu_s_per_batch"), rate(rates, "stream_driver_cpu_s_per_file")
    cost = f"{per_batch:.4f} CPU-s per micro-batch and {per_file:.5f} per staged file, measured"
    work = frame[COLUMNS["driver_work"]]
    over = [str(name) for name, needed in work.items() if needed > TARGET_UTILISATION]
    if over:
        return (
            f"{', '.join(over)}: the driver's Python (foreachBatch callbacks and the commit: {cost}) needs more than "
            f"{TARGET_UTILISATION:.0%} of its one core: a longer trigger (fewer, larger micro-batches) or several "
            "queries (by topic or region), each with its own driver"
        )
    busiest = str(work.idxmax())
    row = frame.loc[busiest]
    return (
        f"the driver's Python (foreachBatch callbacks and the commit: {cost}; it reads no event) limits no row: "
        f"at most {work.max():.2f} of a core ({busiest}: {row[COLUMNS['files_per_batch']]:,.0f} files per "
        f"micro-batch of {row[COLUMNS['batch_events']]:,.0f} events). What limits next is what spreads over "
        "machines (each row's Spark cores and brokers) and the driver JVM's planning and scheduling of a "
        "micro-batch's tasks (one per Spark core, at most one per Kafka partition: the benchmark's drains had up "
        "to 8, the largest rows have hundreds)"
    )


def render(rates: dict[str, Any], source_line: str, frame: pd.DataFrame) -> str:
    """The command's output: where the rates come from, the table, its assumptions and its backing."""
    m = rates["machine"]
    assumptions = (
        f"assumptions: components at most {TARGET_UTILISATION:.0%} busy; replication {REPLICATION_FACTOR}, "
        f"{BROKER_CORES}-core brokers; partitions by consumer parallelism (every Spark core reads one); "
        f"live trigger {TRIGGER_SECONDS:g} s, at most {MAX_BATCH_EVENTS:,} events per micro-batch or one trigger's "
        "events when more; "
        "'vehicles' report at the same time (licensed vehicles are the upper bound)"
    )
    return "\n".join(
        [
            source_line,
            f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}",
            "",
            format_table(frame).to_string(),
            "",
            assumptions,
            *backing_lines(rates, frame),
        ]
    )
