"""The lake's commit protocol, without Spark: what a glob of a table folder (or an S3 prefix) sees through crashes.

The protocol's tests run on both stores: a local folder, and S3 (moto's in-process ``mock_aws``).
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartcity import steps
from smartcity.fleet import simulation
from smartcity.stream import commits, lake
from smartcity.stream import staging as staged_lines
from smartcity.stream.store import LakeStore, LocalStore
from tests.conftest import lab_params
from tests.lake_fixture import objects_under, open_test_store, write_lake_objects

STORES = ["local", "s3"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LakeStore]:
    with open_test_store(request.param, tmp_path, monkeypatch) as opened:
        yield opened


@pytest.fixture
def log(store: LakeStore) -> commits.CommitLog:
    return commits.CommitLog(store)


def parquet_bytes(rows: int, start: int = 0) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(start, start + rows))}), sink)
    return sink.getvalue()


def write_parquet(path: Path, rows: int, start: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(start, start + rows))}), path)
    return path


def glob_rows(store: LakeStore, table: str = "gps_data") -> list[int]:
    """What a reader that shares none of the lab's code sees: every object under the table's folder or
    prefix (as Athena reads a location: hidden names included, so there must be none)."""
    found = objects_under(store, f"{lake.LAKE}/{table}")
    return sorted(x for data in found.values() for x in pq.read_table(io.BytesIO(data)).column("x").to_pylist())


def stage_batch(log: commits.CommitLog, batch: int, rows: int = 3) -> None:
    """What the conversion leaves staged for a batch: a folder per table, Hive partitions, extras to skip."""
    staging = log.start(batch)
    put = log.store.put
    put(f"{staging}/gps_data/event_date=2026-01-05/part-00000-abc.snappy.parquet", parquet_bytes(rows, batch * 100))
    put(f"{staging}/gps_data/event_date=2026-01-06/part-00001-abc.snappy.parquet", parquet_bytes(1, batch * 100 + 50))
    put(f"{staging}/gps_data/_SUCCESS", b"")
    put(f"{staging}/gps_data/event_date=2026-01-05/.part-00000-abc.snappy.parquet.crc", b"x")


def test_a_published_batch_lands_under_deterministic_names(log: commits.CommitLog) -> None:
    stage_batch(log, 7)
    manifest = log.plan(7, {"messages": 4})
    done = log.publish(7)
    assert sorted(objects_under(log.store, f"{lake.LAKE}/gps_data")) == [
        f"event_date=2026-01-05/part-0000000007-000-{log.writer}.parquet",
        f"event_date=2026-01-06/part-0000000007-000-{log.writer}.parquet",
    ]
    assert manifest["rows"] == {"gps_data": 4}
    assert done["metrics"] == {"messages": 4, "quarantined": 0, "produced_quantiles": []}  # files without Kafka times
    assert [m["bytes"] for m in manifest["files"]] == [len(parquet_bytes(3, 700)), len(parquet_bytes(1, 750))]
    assert log.is_done(7) and not log.has_manifest(7) and not objects_under(log.store, log.staging(7))
    assert glob_rows(log.store) == [700, 701, 702, 750]


def test_nothing_of_a_batch_is_visible_before_it_is_planned(log: commits.CommitLog) -> None:
    stage_batch(log, 0)
    assert glob_rows(log.store) == []
    assert log.recover() == []  # a crash before the manifest: the staged batch is discarded
    assert not objects_under(log.store, log.staging(0)) and glob_rows(log.store) == []


def test_a_crash_in_the_middle_of_publishing_rolls_forward(log: commits.CommitLog) -> None:
    stage_batch(log, 3)
    manifest = log.plan(3)
    first = manifest["files"][0]
    staged = f"{log.staging(3)}/{first['src']}"
    log.store.publish(staged, f"{lake.LAKE}/{first['dst']}", first["bytes"])  # one file moved, then the crash
    assert log.recover() == [3]
    assert glob_rows(log.store) == [300, 301, 302, 350]
    assert log.recover() == [] and glob_rows(log.store) == [300, 301, 302, 350]


def test_a_crash_between_copy_and_delete_rolls_forward(log: commits.CommitLog) -> None:
    """On S3 a move is a copy, then a delete: a crash between them leaves the file staged and in the lake."""
    stage_batch(log, 4)
    manifest = log.plan(4)
    first = manifest["files"][0]
    log.store.put(f"{lake.LAKE}/{first['dst']}", log.store.get(f"{log.staging(4)}/{first['src']}"))
    assert glob_rows(log.store) == [400, 401, 402]
    assert log.recover() == [4]
    assert glob_rows(log.store) == [400, 401, 402, 450]
    assert not objects_under(log.store, log.staging(4))


def test_a_staged_batch_is_rolled_forward_from_its_lines(log: commits.CommitLog) -> None:
    """A batch Spark finished (``_staged.json``) is converted, planned and published after a crash;
    here its lines are JSON, as the lab staged them before its CSV lines (a batch left staged
    across an upgrade)."""
    events = [
        e
        for e in simulation.simulate_journey(lab_params(Path("/nonexistent")).fleet)[:200]
        if e.topic == "weather_data"
    ]
    assert events
    staging = log.start(5)
    lines = b"".join(
        orjson.dumps({**e.value, "kafka_partition": 0, "kafka_offset": n, "kafka_timestamp": e.value["timestamp"]})
        + b"\n"
        for n, e in enumerate(events)
    )
    day = events[0].value["timestamp"][:10]
    raw = f"{staging}/{lake.RAW_STAGING}/_table=weather_data/_pkey={day}"
    log.store.put(f"{raw}/part-00000-a.txt", lines)
    log.store.put(f"{raw}/.part-00000-a.txt.crc", b"crc")
    log.store.put(f"{staging}/{lake.RAW_STAGING}/_temporary/0/_temporary/attempt/part-9.txt", b"{}\n")
    log.mark_staged(5, {"messages": len(events)})
    assert log.recover() == [5]
    done = log.batches()[-1]
    assert done["batch"] == 5 and done["rows"] == {"weather_data": len(events)}
    stamps = sorted(datetime.fromisoformat(e.value["timestamp"]).timestamp() for e in events)
    figures = done["metrics"]
    assert figures["messages"] == len(events) and figures["quarantined"] == 0
    assert len(figures["produced_quantiles"]) == 21  # counted from the Parquet files, not by Spark
    assert figures["produced_quantiles"][0] == stamps[0] and figures["produced_quantiles"][-1] == stamps[-1]
    assert figures["produced_quantiles"][10] in stamps
    files = objects_under(log.store, f"{lake.LAKE}/weather_data")
    assert list(files) == [f"event_date={day}/part-0000000005-000-{log.writer}.parquet"]
    table = pq.read_table(io.BytesIO(files[f"event_date={day}/part-0000000005-000-{log.writer}.parquet"]))
    assert table.column("id").to_pylist() == [e.value["id"] for e in events]
    assert not objects_under(log.store, log.staging(5))


def test_staged_csv_lines_convert_to_the_lake_schema(store: LakeStore) -> None:
    """The contract check's CSV (written here by Python's csv module, not the lab): every field of the
    latest contract then the lineage, text quoted, an absent field empty, times in epoch microseconds."""
    names = staged_lines._file_schema("emergency_data").names
    descriptions = ['He said "stop", then left', "", 'back\\slash, "x" ""', "ünï \u2028 𝄞", None]
    events = [
        e for e in simulation.simulate_journey(lab_params(Path("/nonexistent")).fleet) if e.topic == "emergency_data"
    ]
    assert events
    rows = []
    for n, text in enumerate(descriptions):
        value = {
            **events[0].value,
            "description": text,
            "kafka_partition": 2,
            "kafka_offset": n,
            "kafka_timestamp": 1_767_600_000_123_456 + n,
        }
        value["timestamp"] = int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1_000_000)
        rows.append([value.get(c) for c in names])
    out = io.StringIO()
    for row in rows:  # quote text only, leave None empty: what ContractCheck.appendCsv writes
        out.write(
            ",".join(
                "" if v is None else f'"{v.replace(chr(34), chr(34) * 2)}"' if isinstance(v, str) else str(v)
                for v in row
            )
            + "\n"
        )
    staging = "checkpoints/lake/_staging/0000000002"
    store.put(
        f"{staging}/{lake.RAW_STAGING}/_table=emergency_data/_pkey=2026-01-05/part-00000.txt", out.getvalue().encode()
    )
    assert staged_lines.convert_staged(store, staging) == {"emergency_data": len(descriptions)}
    table = pq.read_table(io.BytesIO(store.get(f"{staging}/emergency_data/event_date=2026-01-05/part.parquet")))
    assert table.schema == staged_lines._file_schema("emergency_data")
    assert table.column("description").to_pylist() == descriptions  # "" stays "", an absent field is null
    assert table.column("id").to_pylist() == [events[0].value["id"]] * len(descriptions)
    stamps = table.column("kafka_timestamp").to_pylist()
    assert stamps[0].isoformat() == "2026-01-05T08:00:00.123456+00:00" and stamps[-1].microsecond == 123_460
    assert table.column("timestamp").to_pylist()[0] == datetime.fromisoformat(events[0].value["timestamp"])


def test_converting_again_keeps_what_a_crash_left_converted(store: LakeStore) -> None:
    """A crash while ``_raw/`` was being deleted: the next conversion keeps the Parquet file it made,
    rather than making it again from the lines left."""
    staging = "checkpoints/lake/_staging/0000000009"
    raw = f"{staging}/{lake.RAW_STAGING}/_table=_quarantine/_pkey=gps_data"
    line = {
        "reason": "not JSON",
        "preview": "x",
        "key": None,
        "value": base64.b64encode(b"x").decode(),
        "kafka_partition": 0,
        "kafka_offset": 1,
        "kafka_timestamp": "2026-01-05T08:00:00Z",
        "headers": [{"key": "schemaVersion", "value": base64.b64encode(b"2").decode()}],
    }
    store.put(f"{raw}/part-00000.txt", orjson.dumps(line) + b"\n")
    store.put(f"{raw}/part-00001.txt", orjson.dumps({**line, "kafka_offset": 2}) + b"\n")
    assert staged_lines.convert_staged(store, staging) == {lake.QUARANTINE: 2}
    converted = store.get(f"{staging}/_quarantine/topic=gps_data/part.parquet")
    quarantined = pq.read_table(io.BytesIO(converted))
    assert quarantined.column("value").to_pylist() == [b"x", b"x"]
    assert quarantined.column("headers").to_pylist()[0] == [{"key": "schemaVersion", "value": b"2"}]
    store.put(f"{raw}/part-00001.txt", orjson.dumps({**line, "kafka_offset": 2}) + b"\n")  # half of _raw is left
    assert staged_lines.convert_staged(store, staging) == {lake.QUARANTINE: 2}
    assert store.get(f"{staging}/_quarantine/topic=gps_data/part.parquet") == converted
    assert not store.list(f"{staging}/{lake.RAW_STAGING}")


def test_a_lake_changed_by_hand_is_named(log: commits.CommitLog) -> None:
    stage_batch(log, 1)
    manifest = log.plan(1)
    log.store.delete(f"{log.staging(1)}/{manifest['files'][0]['src']}")
    with pytest.raises(lake.LakeError, match="changed by hand: reset the run"):
        log.publish(1)


def test_another_file_under_a_lake_name_is_named(log: commits.CommitLog) -> None:
    """A published name holding other bytes (and nothing staged any more) is not taken for this batch's file."""
    stage_batch(log, 2)
    manifest = log.plan(2)
    first = manifest["files"][0]
    log.store.delete(f"{log.staging(2)}/{first['src']}")
    log.store.put(f"{lake.LAKE}/{first['dst']}", parquet_bytes(50))
    with pytest.raises(lake.LakeError, match="written by someone else: reset the run"):
        log.publish(2)


def test_old_markers_are_pruned(log: commits.CommitLog, monkeypatch: pytest.MonkeyPatch) -> None:
    keep = 12  # lake.KEEP_MARKERS is 200: the same pruning, fewer batches to write
    monkeypatch.setattr(commits, "KEEP_MARKERS", keep)
    for batch in range(keep + 5):
        log.start(batch)
        log.plan(batch)
        log.publish(batch)
    log.recover()
    kept = [m["batch"] for m in log.batches()]
    assert kept == list(range(5, keep + 5))


def test_the_writer_id_survives_restarts(store: LakeStore) -> None:
    a = commits.CommitLog(store, root="log")
    b = commits.CommitLog(store, root="log")
    assert a.writer == b.writer and len(a.writer) == 8
    assert json.loads(store.get("log/writer.json"))["writer"] == a.writer


def test_the_local_layout_is_the_one_readers_know(tmp_path: Path) -> None:
    """On a local disk the log's files sit where they always did, as indented JSON."""
    cfg = lab_params(tmp_path)
    log = commits.commit_log(steps.open_store(cfg))
    stage_batch(log, 0)
    log.plan(0)
    log.publish(0)
    files = sorted(p.relative_to(cfg.paths.data).as_posix() for p in cfg.paths.data.rglob("*") if p.is_file())
    assert files == [
        "checkpoints/lake/0000000000.done.json",
        "checkpoints/lake/writer.json",
        f"lake/gps_data/event_date=2026-01-05/part-0000000000-000-{log.writer}.parquet",
        f"lake/gps_data/event_date=2026-01-06/part-0000000000-000-{log.writer}.parquet",
    ]
    ident = (cfg.paths.checkpoints / "lake" / "writer.json").read_text()
    assert ident == json.dumps({"writer": log.writer}, indent=1)
    assert lake.data_files(cfg.paths.lake / "gps_data") == sorted((cfg.paths.lake / "gps_data").rglob("*.parquet"))


def test_a_reset_forgets_the_run_and_makes_a_new_generation(store: LakeStore, tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    log = commits.CommitLog(store)
    stage_batch(log, 0)
    log.plan(0)
    log.publish(0)
    first = lake.generation(store)
    assert lake.generation(store) == first
    lake.reset(store, cfg.paths.data)
    assert store.list(lake.LAKE) == [] and store.list(lake.CHECKPOINTS) == []
    if isinstance(store, LocalStore):  # as before: the folders themselves are gone
        assert not (store.root / lake.LAKE).exists() and not (store.root / lake.CHECKPOINTS).exists()
    assert lake.generation(store) != first


def test_a_reset_cut_short_blocks_the_lake_until_reset_again(store: LakeStore, tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    log = commits.CommitLog(store)
    stage_batch(log, 0)
    log.plan(0)
    log.publish(0)
    store.put(
        f"{lake.LAKE}/{lake.GENERATION_FILE}", json.dumps({"state": lake.RESETTING}).encode()
    )  # step 1, then the crash
    with pytest.raises(lake.LakeError, match="did not finish: reset the run again"):
        lake.generation(store)
    with pytest.raises(lake.LakeError, match="did not finish"):
        commits.commit_log(store)
    lake.reset(store, cfg.paths.data)
    assert glob_rows(store) == [] and len(lake.generation(store)) == 32


def test_list_data_files_applies_what_every_reader_counts(store: LakeStore) -> None:
    events = simulation.simulate_journey(lab_params(Path("/nonexistent")).fleet)[:300]
    counts = write_lake_objects(store, events)
    store.put(f"{lake.LAKE}/gps_data/_temporary/x.parquet", b"")
    store.put(f"{lake.LAKE}/gps_data/event_date=2026-01-05/.x.parquet", b"")
    store.put(f"{lake.LAKE}/gps_data/event_date=2026-01-05/notes.txt", b"")
    store.put(f"{lake.LAKE}/gps_data_old/event_date=2026-01-05/x.parquet", b"")  # a sibling prefix, not the table
    listed = lake.list_data_files(store, "gps_data")
    assert [o.key for o in listed] == sorted(o.key for o in listed) and listed
    assert all(o.key.startswith("lake/gps_data/event_date=") and o.key.endswith(".parquet") for o in listed)
    rows = sum(pq.ParquetFile(io.BytesIO(store.get(o.key))).metadata.num_rows for o in listed)
    assert rows == counts["gps_data"] and all(o.size == len(store.get(o.key)) for o in listed)


def test_data_files_skip_hidden_and_internal_paths(tmp_path: Path) -> None:
    table = tmp_path / "t"
    a = write_parquet(table / "k=1" / "a.parquet", 2)
    write_parquet(table / "_temporary" / "b.parquet", 2)
    write_parquet(table / "k=1" / ".c.parquet", 2)
    assert lake.data_files(table) == [a]
    assert lake.partition_of(a) == {"k": "1"}
    assert lake.partitions([a]) == {"k=1": [a]}


def _hold_lock(root: str, ready: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with lake.writer_lock(lab_params(Path(root)).paths.data):
        ready.set()
        release.wait(30)


def test_one_writer_at_a_time_per_data_dir(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with (
            pytest.raises(lake.LakeError, match=rf"being written by pid {holder.pid}"),
            lake.writer_lock(lab_params(tmp_path).paths.data),
        ):
            pass
    finally:
        release.set()
        holder.join(30)
    data_dir = lab_params(tmp_path).paths.data
    with lake.writer_lock(data_dir), lake.writer_lock(data_dir):  # free again, re-entrant
        pass
