"""The stream's staging task (what each Spark task runs on its executor), without Spark: the Parquet it
writes, the rows it returns, and the commit log planning a batch from those rows alone."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcity.fleet import simulation
from smartcity.stream import commits, lake, staging
from smartcity.stream.store import LocalStore
from tests.conftest import lab_params

STAGING = "checkpoints/lake/_staging/0000000003"


def _csv(value: object) -> str:
    """A field as ContractCheck.appendCsv writes it (Python's own formatting here, not the lab's)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return str(value)


def crafted_lines() -> list[tuple[str, str, str]]:
    """(table, partition value, line) of a crafted batch: awkward text on two days, and two quarantined messages."""
    names = staging._file_schema("emergency_data").names
    event = next(
        e for e in simulation.simulate_journey(lab_params(Path("/nonexistent")).fleet) if e.topic == "emergency_data"
    )
    texts = ['He said "stop", then left', "", 'back\\slash, "x" ""', "ünï \u2028 𝄞", None]
    lines = []
    for n, text in enumerate(texts):
        value = {**event.value, "description": text, "kafka_partition": 2, "kafka_offset": n}
        value["kafka_timestamp"] = 1_767_600_000_123_456 + n * 1_000_000
        value["timestamp"] = int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1_000_000)
        day = "2026-01-05" if n < 3 else "2026-01-06"
        lines.append(("emergency_data", day, ",".join(_csv(value.get(c)) for c in names)))
    for offset, raw in ((7, b"\xff\x00"), (8, b"[1]")):
        record = {
            "reason": "not valid JSON",
            "preview": "x",
            "key": base64.b64encode(b"vehicle-001").decode(),
            "value": base64.b64encode(raw).decode(),
            "kafka_partition": 1,
            "kafka_offset": offset,
            "kafka_timestamp": "2026-01-05T08:00:00.5Z",
            "headers": [{"key": "trace", "value": base64.b64encode(b"\xff").decode()}],
        }
        lines.append((lake.QUARANTINE, "gps_data", orjson.dumps(record).decode()))
    return lines


def run_task(root: Path, lines: list[tuple[str, str, str]]) -> list[dict]:
    """The task on its rows as Spark hands them over: Arrow record batches of at most two rows."""
    table = pa.table({k: [line[i] for line in lines] for i, k in enumerate(("_table", "_pkey", "line"))})
    task = staging.StageTask(LocalStore(root).target(), STAGING)
    return [row for batch in task(iter(table.to_batches(max_chunksize=2))) for row in batch.to_pylist()]


def test_the_task_writes_the_parquet_the_driver_converted_before(tmp_path: Path) -> None:
    """Each table and partition: the same Parquet (schema and values) as the driver's conversion of the
    same lines made (the path every batch took before the executors wrote the files)."""
    lines = crafted_lines()
    files = run_task(tmp_path / "executors", lines)
    assert [f["key"] for f in files] == [
        "_quarantine/topic=gps_data/part-00000.parquet",
        "emergency_data/event_date=2026-01-05/part-00000.parquet",
        "emergency_data/event_date=2026-01-06/part-00000.parquet",
    ]
    before = LocalStore(tmp_path / "driver")
    for table, day, line in lines:
        raw = f"{STAGING}/{lake.RAW_STAGING}/_table={table}/_pkey={day}/part-00000.txt"
        before.put(raw, (before.get(raw) if before.head(raw) else b"") + line.encode() + b"\n")
    staging.convert_staged(before, STAGING)
    for file in files:
        path = tmp_path / "executors" / STAGING / file["key"]
        written = pq.read_table(path)
        old = pq.read_table(tmp_path / "driver" / STAGING / file["key"].rsplit("/", 1)[0] / "part.parquet")
        assert written.schema == old.schema == staging._file_schema(file["table"]) and written.equals(old)
        assert (file["rows"], file["bytes"]) == (written.num_rows, path.stat().st_size)
        stamps = sorted(t.timestamp() * 1e6 for t in written.column("kafka_timestamp").to_pylist())
        assert file["stamps"] == [round(s) for s in stamps]  # so few: every one of them
        assert file["partition"] == file["key"].split("/")[1]
    assert not [p for p in (tmp_path / "executors").rglob("*") if p.name.startswith(".")], "no temporary file left"


def test_a_retried_task_replaces_its_files_whole(tmp_path: Path) -> None:
    lines = crafted_lines()
    first = run_task(tmp_path, lines)
    again = run_task(tmp_path, lines)
    assert first == again
    assert sorted(p.relative_to(tmp_path / STAGING).as_posix() for p in (tmp_path / STAGING).rglob("*.parquet")) == [
        f["key"] for f in first
    ]


def test_a_task_without_rows_writes_and_returns_nothing(tmp_path: Path) -> None:
    assert run_task(tmp_path, []) == []
    assert not (tmp_path / STAGING).exists()


@given(
    st.lists(st.lists(st.integers(0, 10**9), min_size=1, max_size=700), min_size=1, max_size=6),
)
def test_merged_sketches_are_within_one_percent_of_the_batch_in_rank(files: list[list[int]]) -> None:
    """Each file sends its min, every percentile and max (all its timestamps when 101 or fewer); the
    batch's quantiles from them are off by at most 1 % of the batch's events in rank, exact if no file
    had more than 101."""
    summaries = [{"rows": len(f), "stamps": staging.sketch(np.array(f, dtype=np.int64)).tolist()} for f in files]
    merged = staging.merged_quantiles(summaries)
    every = np.sort(np.concatenate([np.array(f, dtype=np.int64) for f in files]))
    total = len(every)
    for q, value in zip(staging.PRODUCED_QUANTILES, merged, strict=True):
        micros = round(value * 1e6)
        low, high = np.searchsorted(every, micros, "left"), np.searchsorted(every, micros, "right")
        target = q * (total - 1)
        error = 0 if low <= target <= high else min(abs(low - target), abs(high - target))
        exact = all(len(f) <= staging.SKETCH_POINTS for f in files)
        assert error <= (1 if exact else 0.01 * total + 1), (q, error, total)
    assert merged[0] == round(every[0] / 1e6, 6) and merged[-1] == round(every[-1] / 1e6, 6)


class CountingStore(LocalStore):
    """A local store that counts the bytes read from each key."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: dict[str, int] = {}

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self.read[key] = self.read.get(key, 0) + len(data)
        return data


def test_the_commit_log_plans_and_publishes_from_the_tasks_rows_without_reading_an_event(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    log = commits.CommitLog(store)
    prefix = log.start(3)
    assert prefix == STAGING
    files = run_task(tmp_path, crafted_lines())
    log.mark_staged(3, {"spark_seconds": 1.0, "files": files})
    done = log.finish(3)
    assert not [k for k in store.read if k.startswith(prefix) and not k.endswith(lake.STAGED_MARK)], store.read
    assert done["rows"] == {"_quarantine": 2, "emergency_data": 5}
    assert done["metrics"]["messages"] == 7 and done["metrics"]["quarantined"] == 2
    assert done["metrics"]["produced_quantiles"][0] == 1_767_600_000.123456
    lake_files = sorted(p.relative_to(tmp_path / lake.LAKE).as_posix() for p in (tmp_path / lake.LAKE).rglob("*"))
    assert [p for p in lake_files if p.endswith(".parquet")] == [
        f"_quarantine/topic=gps_data/part-0000000003-000-{log.writer}.parquet",
        f"emergency_data/event_date=2026-01-05/part-0000000003-000-{log.writer}.parquet",
        f"emergency_data/event_date=2026-01-06/part-0000000003-000-{log.writer}.parquet",
    ]
    assert json.loads(store.get(log.done_key(3)))["files"][0]["rows"] == 2


@pytest.mark.parametrize("value", ["gps_data", "a/b", ".hidden"])
def test_a_partition_value_is_one_folder_name(tmp_path: Path, value: str) -> None:
    line = orjson.dumps(
        {
            "reason": "r",
            "preview": "",
            "key": None,
            "value": None,
            "kafka_partition": 0,
            "kafka_offset": 0,
            "kafka_timestamp": None,
            "headers": None,
        }
    ).decode()
    (file,) = run_task(tmp_path, [(lake.QUARANTINE, value, line)])
    assert file["partition"].count("/") == 0 and lake.visible_key(file["key"].split("/", 1)[1])
    assert (tmp_path / STAGING / file["key"]).stat().st_size == file["bytes"]
