"""The engine benchmarks' meters: what the stream's driver reads from the lake, and the advice's freshness."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcity.ops.bench import advice_freshness
from smartcity.ops.bench.capacity_rates import driver_costs
from smartcity.ops.bench.harness import LakeReads
from smartcity.stream import lake
from smartcity.stream.store import LocalStore


def test_lake_reads_tells_event_data_from_commit_files_and_restores_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("lake/gps_data/event_date=2026-01-05/part-0.parquet", b"p" * 100)
    store.put(f"checkpoints/lake/_staging/3/{lake.RAW_STAGING}/gps_data/part-0.csv", b"c" * 40)
    store.put("checkpoints/lake/_staging/3/_staged.json", b"{}" * 5)
    with LakeReads(store) as reads:
        store.get("lake/gps_data/event_date=2026-01-05/part-0.parquet")
        store.get(f"checkpoints/lake/_staging/3/{lake.RAW_STAGING}/gps_data/part-0.csv")
        store.get("checkpoints/lake/_staging/3/_staged.json")
    assert reads.bytes == {"event": 140, "commit": 10}
    store.get("checkpoints/lake/_staging/3/_staged.json")  # after the block: no longer counted
    assert reads.bytes == {"event": 140, "commit": 10} and "get" not in vars(store)


def _drains(batches: int, files: int, cpu: float, runs: int = 2) -> list[dict[str, float]]:
    return [{"batches": batches, "staged_files": files, "self_cpu_s": cpu} for _ in range(runs)]


def test_driver_costs_solve_per_drain_batch_and_file_from_three_kinds_of_drain() -> None:
    def cpu(batches: int, files: int) -> float:  # 0.05 s a drain, 12 ms a batch, 0.4 ms a file
        return 0.05 + 0.012 * batches + 0.0004 * files

    solved = driver_costs(
        {
            "large": _drains(2, 18, cpu(2, 18), runs=3),
            "small": _drains(32, 258, cpu(32, 258)),
            "wide": _drains(32, 790, cpu(32, 790)),
        }
    )
    assert solved["driver_cpu_s_per_drain"] == pytest.approx(0.05, abs=1e-4)
    assert solved["driver_cpu_s_per_batch"] == pytest.approx(0.012, abs=1e-5)
    assert solved["driver_cpu_s_per_file"] == pytest.approx(0.0004, abs=1e-6)


def test_driver_costs_refuse_drains_that_do_not_separate_batches_from_files() -> None:
    """Files in proportion to batches (as when every drain runs as many tasks): no per-file cost to tell."""
    with pytest.raises(RuntimeError, match="do not separate batches from files"):
        driver_costs({"large": _drains(2, 18, 0.1), "small": _drains(32, 288, 0.6), "wide": _drains(4, 36, 0.15)})


def test_advice_freshness_ages_each_event_to_the_publication_of_the_batch_that_read_it() -> None:
    stamps = {0: {o: 1_000_000 + 100 * o for o in range(10)}, 1: {o: 1_000_050 + 100 * o for o in range(4)}}
    runs = [
        {"batch": 0, "start": {}, "end": {"vehicle_data": {"0": 6, "1": 2}}},  # the first batch: from the earliest
        {"batch": 1, "start": {"vehicle_data": {"0": 6, "1": 2}}, "end": {"vehicle_data": {"0": 8, "1": 4}}},
        {"batch": 2, "start": {"vehicle_data": {"0": 8, "1": 4}}, "end": {"vehicle_data": {"0": 10, "1": 4}}},
    ]
    published = {0: 1001.0, 1: 1002.5}  # batch 2 published nothing (its fixes all behind the watermark)
    ages, without = advice_freshness.match(runs, published, stamps)
    assert without == 2
    assert len(ages) == 6 + 2 + 2 + 2
    by_sent = {round(sent, 3): round(age, 3) for sent, age in ages}
    assert by_sent[1000.0] == 1.0 and by_sent[1000.5] == 0.5  # partition 0, offsets 0 and 5: batch 0
    assert by_sent[1000.05] == 0.95 and by_sent[1000.35] == 2.15  # partition 1, offsets 0 (batch 0) and 3 (batch 1)
    assert by_sent[1000.7] == 1.8 and 1000.8 not in by_sent  # partition 0: offset 7 in batch 1, 8 in batch 2
