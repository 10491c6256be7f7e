"""What every benchmark shares: results with their machine and conditions, CPU meters, memory.

Each writes ``<name>.json`` and ``<name>.md`` under ``outputs/bench/``. Light on purpose: the
simulator's memory figure is this process's resident memory, so what is imported here counts in it
(the benchmarks that run the engines share :mod:`smartcity.ops.bench.harness`). Figures that count work are CPU-seconds of a process tree: robust to what
else the machine is doing, unlike wall time, which is reported beside them with the load.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

BENCH_DIR = Path("outputs") / "bench"


def machine() -> dict[str, Any]:
    """The machine a figure was measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def resident_mib() -> float:
    """This process's resident memory now (Linux /proc; else the peak, which is all getrusage has)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource  # noqa: PLC0415 - Unix only: the fallback where /proc is missing

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(out_dir: Path, name: str, results: dict[str, Any], markdown: str) -> None:
    """A benchmark's results as ``<name>.json`` (for tools) and ``<name>.md`` (for people)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown)


def measured() -> dict[str, Any]:
    """When and where a result was measured, and how busy the machine was by then."""
    load = os.getloadavg()
    return {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "load_when_done": f"load average {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (1, 5, 15 min) when done",
    }


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}.\n"


def tree_cpu_seconds(pid: int) -> float:
    """CPU-seconds (user + system) a process and its descendants have used so far, reaped children included.

    Per-process ``cpu_times`` are cumulative, so the difference of two readings is what the tree
    spent in between, whatever else the machine was doing: robust to contention, unlike wall time.
    A descendant that exits in between moves its time into its parent's ``children_*`` fields.
    """
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


class CpuMeter:
    """CPU-seconds of this process (all its threads) and of named process trees, over a ``with`` block."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.result: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {"self": time.process_time(), **{name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}}

    def __enter__(self) -> CpuMeter:
        self._wall, self._start = time.perf_counter(), self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.result = {f"{name}_cpu_s": round(end[name] - self._start[name], 3) for name in end}
        self.result["wall_s"] = round(time.perf_counter() - self._wall, 3)


def spread(ages: list[float]) -> dict[str, float]:
    """Count, p50, p95 and max of ages (freshness) in seconds."""
    if not ages:
        return {"events": 0}
    values = np.array(ages)
    return {
        "events": len(values),
        "p50_s": round(float(np.percentile(values, 50)), 2),
        "p95_s": round(float(np.percentile(values, 95)), 2),
        "max_s": round(float(values.max()), 2),
    }
