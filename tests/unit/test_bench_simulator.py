"""The simulator benchmark's shape (its figures are measured by `make bench`, never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from smartcity.ops.bench import simulator as bench


def test_the_simulator_bench_writes_rates_and_memory(tmp_path: Path) -> None:
    results = bench.run_simulator_bench(hours=2, repeats=1, out_dir=tmp_path, warmup_hours=0.5, measured_hours=0.25)
    live, local = results["cases"]
    assert live["case"].startswith("live-scale fleet") and local["case"].startswith("local profile")
    for case in (live, local):
        for label in ("generate", "generate_and_serialize"):
            assert case[label]["events"] > 1000 and case[label]["events_per_cpu_s"] > 0
    assert live["generate"]["on_road"] > 30, "the live-scale fleet is on the road while it is timed"
    assert local["generate"]["events"] == local["generate_and_serialize"]["events"]  # same run, serialized or not
    memory = results["memory"]
    assert [s["hour"] for s in memory["samples"]] == [0, 1, 2] and memory["samples"][-1]["departed"] > 150
    assert json.loads((tmp_path / "simulator.json").read_text())["memory"]["hours"] == 2
    assert "events per CPU-second" in (tmp_path / "simulator.md").read_text()
