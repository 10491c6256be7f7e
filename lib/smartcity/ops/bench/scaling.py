"""The stream from 1 to 2 executors on the cluster profile's engines: a Spark standalone master and two
workers of one core each, started from pyspark's own launcher. Written to ``scaling.{json,md}``."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from smartcity import steps
from smartcity.ops.bench.common import BENCH_DIR, machine_line, measured, save
from smartcity.ops.bench.harness import bench_cfg, drain, fleet_run, produced_into, warm_up
from smartcity.params import Params
from smartcity.platform.cluster import ensure_cluster
from smartcity.platform.params import project_root
from smartcity.platform.processes import free_port


def _case(cfg: Params, produced: dict[str, int], events: int, repeats: int) -> dict[str, Any]:
    """One application with ``spark.cores.max`` executors: warmed up, then ``repeats`` drains from scratch."""
    executors = cfg.spark.cores_max
    lab = steps.open_lab(cfg)
    with steps.spark(cfg) as spark:
        warm = warm_up(lab, spark)
        seconds = [
            round(drain(spark, lab, produced, f"{executors} executor(s), drain {n}")["wall_s"], 2)
            for n in range(repeats)
        ]
        # what the master granted (the driver is in the tracker's list too)
        granted = len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1
    if granted != executors:
        raise RuntimeError(f"asked for {executors} executor(s), the master granted {granted}")
    return {
        "executors": executors,
        "warm_up_s": round(warm, 1),
        "drain_seconds": seconds,
        "events_per_s": round(events / statistics.median(seconds)),
    }


def run_scaling_bench(vehicles: int = 80, repeats: int = 3, out_dir: Path | None = None) -> dict[str, Any]:
    """The stream's drain rate with 1 and then 2 executors of a standalone cluster (2 workers of 1 core).

    The same events in the same topics; each case is its own application (``spark.cores.max`` 1,
    then 2), warmed up, then drains the topics ``repeats`` times from scratch, every drain checked
    against the produced counts by a DuckDB glob. The ratio of the medians is what the capacity
    model calls ``stream_scaling_1_to_2``. On a 2-core machine the executors share the cores with
    the driver, the broker and the publisher, so this is the floor of what more cores give.
    """
    out_dir = out_dir or project_root() / BENCH_DIR
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    cases: dict[int, dict[str, Any]] = {}
    try:
        base = bench_cfg(
            work,
            vehicles=vehicles,
            departure_spacing_seconds=20.0,
            stream_max_batch_events=200_000,
            spark_master=f"spark://127.0.0.1:{free_port()}",
            spark_master_ui_port=free_port(),
            spark_workers=2,
            spark_worker_cores=1,
        )
        events, produced = fleet_run(base)
        with steps.open_broker(base), ensure_cluster(base.spark, base.paths.data / "spark"):
            produced_into(steps.open_lab(base), events)
            for executors in (1, 2):
                cases[executors] = _case(base.with_values(spark_cores_max=executors), produced, len(events), repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = measured()
    results.update(
        {
            "conditions": (
                f"{len(events):,} events of {vehicles} vehicles in 5 topics of 3 partitions on one local broker; "
                "a Spark standalone master and 2 workers of 1 core and 1 GiB each on this machine, executors "
                f"of {base.spark.executor_memory}, driver {base.spark.driver_memory}, spark.cores.max 1 then 2; "
                f"maxOffsetsPerTrigger {base.stream.max_batch_events:,}; {repeats} drains each, medians; "
                f"{results['load_when_done']}"
            ),
            "events": len(events),
            "cases": [cases[1], cases[2]],
            "stream_scaling_1_to_2": round(cases[2]["events_per_s"] / cases[1]["events_per_s"], 2),
        }
    )
    save(out_dir, "scaling", results, render_scaling_markdown(results))
    return results


def render_scaling_markdown(results: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {c['executors']} | {c['warm_up_s']:.0f} | {', '.join(f'{s:.1f}' for s in c['drain_seconds'])} | "
        f"{c['events_per_s']:,} |"
        for c in results["cases"]
    )
    return (
        f"# Stream scaling, 1 -> 2 executors ({results['measured_at']})\n\n"
        + machine_line(results)
        + f"Conditions: {results['conditions']}.\n\n"
        "| executors (1 core each) | warm-up s | drains (s) | events/s (median) |\n|---|---|---|---|\n" + rows + "\n\n"
        f"2 executors / 1 executor: **{results['stream_scaling_1_to_2']:.2f}**.\n"
    )
