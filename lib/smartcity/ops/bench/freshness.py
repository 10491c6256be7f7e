"""(e) Freshness live: how long an event takes from the producer to a reader's glob of its table folder,
at 10,000 events/s with a 1 s trigger, measured by a poller that shares none of the lab's code; and,
from the same run (the advice query runs beside the lake's in live mode), how long it takes to reach the
route advice that includes it (:mod:`smartcity.ops.bench.advice_freshness`). Written to
``freshness.{json,md}``."""

from __future__ import annotations

import glob
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from smartcity.fleet.contracts import TOPICS
from smartcity.ops import live
from smartcity.ops.bench import advice_freshness
from smartcity.ops.bench.common import BENCH_DIR, machine_line, measured, save, spread
from smartcity.ops.bench.harness import bench_cfg, glob_counts
from smartcity.params import Params
from smartcity.platform.params import project_root
from smartcity.stream import monitor

#: The live fleet runs this many times faster than real time.
SPEEDUP = 50.0
#: Events a driving vehicle sends per simulated second: a vehicle_data and a gps_data event every 5 s.
EVENTS_PER_VEHICLE_PER_S = 0.4
#: The freshness goal: p95 of the whole run at most this many seconds.
GOAL_P95_S = 3.0
#: The advice's freshness goal (an event's Kafka timestamp to the advice that includes it): p95 at most this.
GOAL_ADVICE_P95_S = 5.0


class _LakePoller:
    """A reader that shares none of the lab's code: globs the table folders, notes when each file appears."""

    def __init__(self, lake_root: Path, every_s: float = 0.1) -> None:
        self.lake_root, self.every_s = lake_root, every_s
        self.first_seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lake-poller", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            for topic in TOPICS:
                for path in glob.glob(str(self.lake_root / topic / "*" / "*.parquet")):
                    self.first_seen.setdefault(path, now)
            self.stop.wait(self.every_s)

    def freshness(self) -> list[tuple[float, float]]:
        """(produced at, seconds until readable) for every event in the files seen, via DuckDB."""
        ages = []
        for path, seen in self.first_seen.items():
            stamps = duckdb.sql(f"SELECT epoch_ms(kafka_timestamp) FROM read_parquet('{path}')").fetchall()
            ages.extend((ms / 1000, seen - ms / 1000) for (ms,) in stamps)
        return ages


def _watched_live_run(cfg: Params, seconds: float) -> tuple[dict[str, Any], pd.DataFrame, list[tuple[float, float]]]:
    """A live run with the poller watching its lake: the run's summary, its status table, the ages."""
    poller = _LakePoller(cfg.paths.lake)
    poller.thread.start()
    try:
        summary = live.run_live(cfg, seconds, console=False)
    finally:
        poller.stop.set()
        poller.thread.join()
    if glob_counts(cfg.paths.lake) != {t: summary["produced"].get(t, 0) for t in TOPICS}:
        raise RuntimeError("the live run's lake does not hold what was produced")
    return summary, monitor.read_status(cfg.paths.live), poller.freshness()


def _spreads(ages: list[tuple[float, float]], settle_s: float, seconds: float) -> dict[str, Any]:
    """The ages of the whole run, of the steady state after ``settle_s``, and of the first seconds."""
    start = min(sent for sent, _ in ages)
    return {
        "whole_run": spread([age for sent, age in ages if sent - start <= seconds]),
        "steady": spread([age for sent, age in ages if settle_s <= sent - start <= seconds]),
        "first_seconds": {"seconds": settle_s, **spread([age for sent, age in ages if sent - start < settle_s])},
    }


def run_freshness_bench(
    rate: float = 10_000,
    seconds: float = 60.0,
    trigger_s: float = 1.0,
    settle_s: float = 15.0,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """(e): freshness p50/p95 of a live run at ``rate`` events/s with a ``trigger_s`` trigger (goal p95 <= 3 s).

    A fleet big enough for the rate drives for ``seconds`` while the stream runs (``smartcity live``
    in this process, warmed up first); a poller outside the lab's code globs the table folders every
    0.1 s and, afterwards, reads each file's ``kafka_timestamp`` (when the producer sent the event)
    with DuckDB: freshness = first seen by the poller - sent. Events sent in the first ``settle_s``
    are reported apart (the stream's first batches), the rest is the steady state.
    """
    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    vehicles = math.ceil(rate / (EVENTS_PER_VEHICLE_PER_S * SPEEDUP))
    try:
        cfg = bench_cfg(
            work,
            mode="live",
            vehicles=vehicles,
            departure_spacing_seconds=0.0,
            speedup=SPEEDUP,
            live_seconds=seconds,
            stream_trigger_seconds=trigger_s,
            incident_rate=0.1,
        )
        summary, status, ages = _watched_live_run(cfg, seconds)
        advice = advice_freshness.advice_ages(cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    producing = status[status["phase"] == "producing"]
    results = measured()
    results.update(
        {
            "conditions": (
                f"smartcity live in one process: local broker, Spark {cfg.spark.master} with a {trigger_s:g} s trigger, "
                f"{vehicles} vehicles at speedup {SPEEDUP:g} for {seconds:g} s (confluent-kafka producer); "
                f"freshness from each event's Kafka timestamp to the moment a glob of its table folder "
                f"(polled every 0.1 s) first listed its file; {results['load_when_done']}"
            ),
            "target_events_per_s": rate,
            "produced_events_per_s": round(float(producing["produced_per_s"].iloc[1:].mean())),
            "written_events_per_s": round(float(producing["written_per_s"].iloc[1:].mean())),
            "max_lag": int(status["lag"].max()),
            "batches": summary["batches"],
            **_spreads(ages, settle_s, seconds),
            "lab_estimate": {"p50_s": summary["freshness_p50_s"], "p95_s": summary["freshness_p95_s"]},
        }
    )
    results["goal_p95_at_most_3_s"] = bool(results["whole_run"].get("p95_s", float("inf")) <= GOAL_P95_S)
    results.update(_advice_results(advice))
    save(out_dir, "freshness", results, render_freshness_markdown(results))
    return results


def render_freshness_markdown(results: dict[str, Any]) -> str:
    w, s, e = results["whole_run"], results["steady"], results["first_seconds"]
    return (
        f"# Freshness benchmark (e) ({results['measured_at']})\n\n"
        + machine_line(results)
        + f"Conditions: {results['conditions']}.\n\n"
        f"Produced {results['produced_events_per_s']:,} events/s (target {results['target_events_per_s']:,.0f}), "
        f"written {results['written_events_per_s']:,} events/s, {results['batches']} micro-batches, "
        f"Kafka lag at most {results['max_lag']:,} events.\n\n"
        "| events sent | events | p50 s | p95 s | max s |\n|---|---|---|---|---|\n"
        f"| the whole run | {w['events']:,} | {w.get('p50_s')} | {w.get('p95_s')} | {w.get('max_s')} |\n"
        f"| after the first {e['seconds']:g} s (steady) | {s['events']:,} | {s.get('p50_s')} | {s.get('p95_s')} | {s.get('max_s')} |\n"
        f"| in the first {e['seconds']:g} s | {e['events']:,} | {e.get('p50_s')} | {e.get('p95_s')} | {e.get('max_s')} |\n\n"
        f"Goal p95 ≤ 3 s (the whole run): {'met' if results['goal_p95_at_most_3_s'] else 'NOT met'}"
        f"{'' if e.get('p95_s', 0) <= 3.0 else ' (not in the first ' + format(e['seconds'], 'g') + ' s)'}. The lab's own estimate "
        f"from the batches' timestamp quantiles: p50 {results['lab_estimate']['p50_s']} s, p95 {results['lab_estimate']['p95_s']} s.\n\n"
        + _advice_markdown(results)
    )


def _advice_results(advice: dict[str, Any]) -> dict[str, Any]:
    """The advice's freshness figures from :func:`advice_freshness.advice_ages`, and whether they meet the goal."""
    whole = spread([age for _, age in advice["ages"]])
    return {
        "advice": {
            "whole_run": whole,
            "batches": advice["batches"],
            "events_without_advice": advice["events_without_advice"],
        },
        "goal_advice_p95_at_most_5_s": bool(whole.get("p95_s", float("inf")) <= GOAL_ADVICE_P95_S),
    }


def _advice_markdown(results: dict[str, Any]) -> str:
    a = results["advice"]
    w = a["whole_run"]
    return (
        "The advice query ran beside the stream (the lake's figures above are with both queries running). "
        "Advice freshness, from each telemetry event's Kafka timestamp to the moment the last route_advice "
        f"message of the micro-batch that read it reached the topic: {w['events']:,} events over {a['batches']} "
        f"micro-batches, p50 {w.get('p50_s')} s, p95 {w.get('p95_s')} s, max {w.get('max_s')} s; "
        f"{a['events_without_advice']:,} events in batches that published no advice. Goal p95 ≤ 5 s: "
        f"{'met' if results['goal_advice_p95_at_most_5_s'] else 'NOT met'}.\n"
    )
