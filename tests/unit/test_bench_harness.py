"""The engine benchmarks' meter of what the stream's driver reads from the lake."""

from __future__ import annotations

from pathlib import Path

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
