"""The lake's commit protocol, without Spark: what a glob of a table folder sees through crashes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartcity import lake
from tests.conftest import lab_params


def write_parquet(path: Path, rows: int, start: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(start, start + rows))}), path)
    return path


def glob_rows(table_dir: Path) -> list[int]:
    """What a reader that shares none of the lab's code sees: every Parquet file under the folder."""
    files = [p for p in table_dir.rglob("*.parquet") if not any(s.startswith(("_", ".")) for s in p.parts[-3:])]
    return sorted(x for f in files for x in pq.read_table(f).column("x").to_pylist())


def stage_batch(log: lake.CommitLog, batch: int, rows: int = 3) -> None:
    """What the stream's writer stages for a batch: a folder per table, Hive partitions, Spark's extras."""
    staging = log.start(batch)
    write_parquet(staging / "gps_data" / "event_date=2026-01-05" / "part-00000-abc.snappy.parquet", rows, batch * 100)
    write_parquet(staging / "gps_data" / "event_date=2026-01-06" / "part-00001-abc.snappy.parquet", 1, batch * 100 + 50)
    (staging / "gps_data" / "_SUCCESS").write_text("")
    (staging / "gps_data" / "event_date=2026-01-05" / ".part-00000-abc.snappy.parquet.crc").write_text("x")


@pytest.fixture
def log(tmp_path: Path) -> lake.CommitLog:
    return lake.CommitLog(tmp_path / "lake", tmp_path / "checkpoints" / "lake")


def test_a_published_batch_lands_under_deterministic_names(log: lake.CommitLog) -> None:
    stage_batch(log, 7)
    manifest = log.plan(7, {"messages": 4})
    done = log.publish(7)
    table = log.lake_root / "gps_data"
    names = sorted(str(p.relative_to(table)) for p in table.rglob("*") if p.is_file())
    assert names == [f"event_date=2026-01-05/part-0000000007-000-{log.writer}.parquet",
                     f"event_date=2026-01-06/part-0000000007-000-{log.writer}.parquet"]
    assert manifest["rows"] == {"gps_data": 4} and done["metrics"] == {"messages": 4}
    assert log.is_done(7) and not log.has_manifest(7) and not log.staging(7).exists()
    assert glob_rows(table) == [700, 701, 702, 750]


def test_nothing_of_a_batch_is_visible_before_it_is_planned(log: lake.CommitLog) -> None:
    stage_batch(log, 0)
    assert glob_rows(log.lake_root / "gps_data") == []
    assert log.recover() == []  # a crash before the manifest: the staged batch is discarded
    assert not log.staging(0).exists() and glob_rows(log.lake_root / "gps_data") == []


def test_a_crash_in_the_middle_of_publishing_rolls_forward(log: lake.CommitLog) -> None:
    stage_batch(log, 3)
    manifest = log.plan(3)
    first = manifest["files"][0]
    (log.lake_root / first["dst"]).parent.mkdir(parents=True)
    (log.staging(3) / first["src"]).rename(log.lake_root / first["dst"])  # one file moved, then the crash
    assert log.recover() == [3]
    assert glob_rows(log.lake_root / "gps_data") == [300, 301, 302, 350]
    assert log.recover() == [] and glob_rows(log.lake_root / "gps_data") == [300, 301, 302, 350]


def test_a_lake_changed_by_hand_is_named(log: lake.CommitLog) -> None:
    stage_batch(log, 1)
    manifest = log.plan(1)
    (log.staging(1) / manifest["files"][0]["src"]).unlink()
    with pytest.raises(lake.LakeError, match="changed by hand: reset the run"):
        log.publish(1)


def test_old_markers_are_pruned(log: lake.CommitLog) -> None:
    for batch in range(lake.KEEP_MARKERS + 5):
        log.start(batch)
        log.plan(batch)
        log.publish(batch)
    log.recover()
    kept = [m["batch"] for m in log.batches()]
    assert kept == list(range(5, lake.KEEP_MARKERS + 5))


def test_the_writer_id_survives_restarts(tmp_path: Path) -> None:
    a = lake.CommitLog(tmp_path / "lake", tmp_path / "log")
    b = lake.CommitLog(tmp_path / "lake", tmp_path / "log")
    assert a.writer == b.writer and len(a.writer) == 8
    assert json.loads((tmp_path / "log" / "writer.json").read_text())["writer"] == a.writer


def test_data_files_skip_hidden_and_internal_paths(tmp_path: Path) -> None:
    table = tmp_path / "t"
    a = write_parquet(table / "k=1" / "a.parquet", 2)
    write_parquet(table / "_temporary" / "b.parquet", 2)
    write_parquet(table / "k=1" / ".c.parquet", 2)
    assert lake.data_files(table) == [a]
    assert lake.partition_of(a) == {"k": "1"}
    assert lake.partitions([a]) == {"k=1": [a]}


def _hold_lock(root: str, ready: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with lake.writer_lock(lab_params(Path(root))):
        ready.set()
        release.wait(30)


def test_one_writer_at_a_time_per_data_dir(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(lake.LakeError, match=rf"being written by pid {holder.pid}"):
            with lake.writer_lock(lab_params(tmp_path)):
                pass
    finally:
        release.set()
        holder.join(30)
    with lake.writer_lock(lab_params(tmp_path)), lake.writer_lock(lab_params(tmp_path)):  # free again, re-entrant
        pass
