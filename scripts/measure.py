#!/usr/bin/env python3
"""Run a command and report its wall time and the peak memory of its whole process tree.

Standard library only (it measures cold runs, before the virtualenv exists). Memory is the sum
of the resident set sizes of the command and all its descendants (JVMs, kernels, PostgreSQL),
sampled every 0.2 s, so short spikes between samples can be missed.

    scripts/measure.py --label "make run (warm)" --json outputs/bench/make-run-warm.json -- make run

``--series FILE --every S`` also writes, every S seconds, a JSON line with the tree's resident
memory split by engine (Kafka broker, Spark driver, the rest), to show whether a long run is flat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ENGINES = {"kafka": b"kafka.Kafka", "spark": b"org.apache.spark.deploy.SparkSubmit"}


def tree_rss_by_engine(root: int) -> dict[str, int]:
    """Resident bytes of a process and its descendants, by engine (and 'other' for the rest)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = int(statm[1]) * page
    totals = {name: 0 for name in (*ENGINES, "other")}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        engine = next((name for name, marker in ENGINES.items() if marker in cmdline), "other")
        totals[engine] += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return totals


def tree_rss_bytes(root: int) -> int:
    return sum(tree_rss_by_engine(root).values())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--series", type=Path, help="JSON Lines of the memory over time, by engine")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between two --series lines")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.monotonic()
    proc = subprocess.Popen(command)
    peak, next_line = 0, started
    series = open(args.series, "w") if args.series else None  # noqa: SIM115 - closed below
    while proc.poll() is None:
        by_engine = tree_rss_by_engine(proc.pid)
        peak = max(peak, sum(by_engine.values()))
        if series and time.monotonic() >= next_line:
            series.write(
                json.dumps(
                    {
                        "elapsed_s": round(time.monotonic() - started, 1),
                        **{f"{k}_mib": round(v / 2**20, 1) for k, v in by_engine.items()},
                        "total_mib": round(sum(by_engine.values()) / 2**20, 1),
                    }
                )
                + "\n"
            )
            series.flush()
            next_line += args.every
        time.sleep(0.2)
    if series:
        series.close()
    result = {
        "label": args.label,
        "command": " ".join(command),
        "exit_code": proc.returncode,
        "wall_seconds": round(time.monotonic() - started, 1),
        "peak_tree_rss_mib": round(peak / 2**20),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{round(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30)} GiB, {platform.platform()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(json.dumps(result, indent=2), file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
