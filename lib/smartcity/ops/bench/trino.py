"""(g) Trino against DuckDB: the lab's Trino's start-up time and memory, and the Athena query set's time
on each engine over the same lake. Written to ``trino.{json,md}``.

The lake is a real one: a simulated run produced into Kafka and drained by the lab's stream, then
crawled and registered in Trino's metastore. Each engine runs the whole query set ``repeats`` times;
the cross-check must find no difference between the engines or nothing is reported.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from smartcity import steps
from smartcity.ops.bench.common import BENCH_DIR, machine_line, measured, save
from smartcity.ops.bench.harness import bench_cfg, drain, fleet_run, produced_into
from smartcity.platform import trino
from smartcity.platform.params import project_root
from smartcity.platform.processes import free_port
from smartcity.query import athena

#: How often Trino's resident memory is sampled while it runs.
SAMPLE_EVERY_S = 0.2


class PeakRss:
    """The peak resident memory (MiB) of one process, sampled in a thread over a ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_mib = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self.peak_mib = max(self.peak_mib, self.process.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                return
            self._done.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _timed_start(lab: steps.Lab) -> tuple[float, float]:
    """Seconds from launch until Trino accepts queries, and its resident MiB then; the server stays up."""
    lab.stop()
    started = time.perf_counter()
    server = lab.trino()
    seconds = time.perf_counter() - started
    return seconds, psutil.Process(_pid(server)).memory_info().rss / 2**20


def _pid(server: trino.TrinoServer) -> int:
    if server.process is None:
        raise RuntimeError(f"a Trino was already running on port {server.port}: the benchmark measures its own")
    return server.process.pid


def _query_rounds(lab: steps.Lab, repeats: int) -> tuple[dict[str, dict[str, float]], float]:
    """Median seconds of each query on each engine over ``repeats`` rounds, and Trino's peak MiB meanwhile."""
    names = athena.list_queries()
    rounds = []
    with PeakRss(_pid(lab.trino())) as peak:
        for _ in range(repeats):
            checked = steps.crosscheck_queries(lab)
            if (checked["differences"] != "").any():
                raise RuntimeError("DuckDB and Trino disagree:\n" + checked.to_string())
            rounds.append(checked)
    medians = {
        engine: {name: statistics.median(r.at[name, f"{engine} s"] for r in rounds) for name in names}
        for engine in ("duckdb", "trino")
    }
    return medians, peak.peak_mib


def run_trino_bench(
    vehicles: int = 80, starts: int = 3, repeats: int = 5, out_dir: Path | None = None
) -> dict[str, Any]:
    """(g): Trino's warm start-up (server files already fetched) ``starts`` times, its memory, and the query set."""
    out_dir = out_dir or project_root() / BENCH_DIR
    trino.find_java()
    trino.ensure_installed()  # a first fetch is not a start-up
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    try:
        cfg = bench_cfg(
            work, vehicles=vehicles, departure_spacing_seconds=20.0, query_engine="trino", trino_port=free_port()
        )
        events, produced = fleet_run(cfg)
        lab = steps.open_lab(cfg)
        try:
            with steps.open_broker(cfg):
                produced_into(lab, events)
                with steps.spark(cfg) as spark:
                    drain(spark, lab, produced, "trino bench")  # checks the lake against what was produced
            steps.crawl_lake(lab)  # the DuckDB catalog, and the same tables in Trino's metastore
            start_ups = [_timed_start(lab) for _ in range(starts)]
            medians, peak_mib = _query_rounds(lab, repeats)
        finally:
            lab.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = measured()
    results.update(
        {
            "conditions": (
                f"{len(events):,} events of {vehicles} vehicles, streamed into the lake by the lab's stream; Trino "
                f"{trino.VERSION} single node, heap {cfg.trino.heap_mb} MiB, the Hive connector and TPC-H (its readiness probe); "
                f"{starts} starts (its class-data archive already written), "
                f"{repeats} rounds of the {len(medians['trino'])} queries on each engine, medians; "
                f"{results['load_when_done']}"
            ),
            "events": len(events),
            "start_seconds": [round(s, 1) for s, _ in start_ups],
            "start_seconds_median": round(statistics.median(s for s, _ in start_ups), 1),
            "rss_after_start_mib": round(statistics.median(m for _, m in start_ups)),
            "peak_rss_during_queries_mib": round(peak_mib),
            "query_seconds": {engine: {k: round(v, 3) for k, v in times.items()} for engine, times in medians.items()},
            "query_set_seconds": {engine: round(sum(times.values()), 3) for engine, times in medians.items()},
        }
    )
    save(out_dir, "trino", results, render_trino_markdown(results))
    return results


def render_trino_markdown(results: dict[str, Any]) -> str:
    times = results["query_seconds"]
    rows = "\n".join(
        f"| {name} | {times['duckdb'][name]:.3f} | {times['trino'][name]:.3f} |" for name in times["duckdb"]
    )
    total = results["query_set_seconds"]
    return (
        f"# Trino benchmark (g) ({results['measured_at']})\n\n"
        + machine_line(results)
        + f"Conditions: {results['conditions']}.\n\n"
        f"Start-up (launch to accepting queries, server files cached): **{results['start_seconds_median']} s** "
        f"(runs: {', '.join(map(str, results['start_seconds']))} s); resident memory after start "
        f"**{results['rss_after_start_mib']} MiB**, peak while querying **{results['peak_rss_during_queries_mib']} MiB**.\n\n"
        "| query | DuckDB s | Trino s |\n|---|---|---|\n"
        f"{rows}\n| **all** | **{total['duckdb']:.3f}** | **{total['trino']:.3f}** |\n\n"
        "Both engines gave the same results in every round (the cross-check of `smartcity.query.crosscheck`).\n"
    )
