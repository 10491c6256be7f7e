from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from smartcity import lake


def write_parquet(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(rows))}), path)
    return path


def write_log(table: Path, name: str, entries: list[tuple[Path, str]]) -> None:
    log = table / lake.SINK_LOG
    log.mkdir(parents=True, exist_ok=True)
    lines = ["v1"] + [json.dumps({"path": p.as_uri(), "size": 1, "isDir": False, "action": a}) for p, a in entries]
    (log / name).write_text("\n".join(lines))


def test_only_files_the_sink_committed_are_read(tmp_path: Path) -> None:
    table = tmp_path / "gps_data"
    a = write_parquet(table / "event_date=2026-01-05" / "part-a.parquet", 3)
    b = write_parquet(table / "event_date=2026-01-06" / "part-b.parquet", 4)
    write_parquet(table / "event_date=2026-01-06" / "part-orphan.parquet", 100)  # batch that never committed
    write_log(table, "0", [(a, "add")])
    write_log(table, "1", [(b, "add")])
    files = lake.committed_files(table)
    assert files == [a, b]
    assert lake.count_rows(files) == 7
    assert list(lake.partitions(files)) == ["event_date=2026-01-05", "event_date=2026-01-06"]


def test_compaction_and_deletes_are_honoured(tmp_path: Path) -> None:
    table = tmp_path / "t"
    a = write_parquet(table / "part-a.parquet", 1)
    b = write_parquet(table / "part-b.parquet", 1)
    c = write_parquet(table / "part-c.parquet", 1)
    write_log(table, "0", [(tmp_path / "gone.parquet", "add")])  # superseded by the compaction
    write_log(table, "9.compact", [(a, "add"), (b, "add")])
    write_log(table, "10", [(c, "add"), (b, "delete")])
    assert lake.committed_files(table) == [a, c]


def test_tables_without_a_sink_log_are_globbed(tmp_path: Path) -> None:
    table = tmp_path / "t"
    a = write_parquet(table / "k=1" / "a.parquet", 2)
    write_parquet(table / "_temporary" / "b.parquet", 2)
    assert lake.committed_files(table) == [a]
    assert lake.partition_of(a) == {"k": "1"}
