"""The Parquet lake: one folder per table, Hive-partitioned, where a glob of a folder is the table.

Every reader of the lake lists a table's folder: the lab's own readers, a data scientist's
``duckdb.read_parquet('data/local/lake/gps_data/**/*.parquet', hive_partitioning=true,
union_by_name=true)``, pyarrow's ``ds.dataset(folder, partitioning='hive')``, a Glue crawler or
Athena over the S3 prefix. So the writer makes the folder itself exactly-once (the design note
``docs/decisions/0001-lake-commits.md`` says why this rather than a table format):

* the stream writes each micro-batch under a staging folder outside the lake
  (``<checkpoints>/lake/_staging/<batch>/``), never into a table folder: each Spark task writes
  its events there as Parquet files, on its executor (:class:`smartcity.stream.staging.StageTask`),
  and returns their rows, bytes and a sketch of their Kafka timestamps to the driver;
* a manifest (``<batch>.manifest.json``) then fixes which staged file becomes which lake file,
  under a deterministic name (``part-<batch>-<n>-<writer>.parquet``), and the files are moved
  into the table folders; a single rename per file, so no reader ever sees half a file;
* a ``<batch>.done.json`` marker records that the batch is in the lake. A batch Spark replays
  after a crash is skipped if it is done, rolled forward if it has a manifest, and staged afresh
  otherwise; staging left by a crash is deleted on restart.

A reader may see part of a batch while it is being published (a prefix of the stream), never a
file twice and never a file of a failed batch.

This module is the lake's layout and its readers; the commit log is :mod:`smartcity.stream.commits`.
Both run on the profile's :class:`~smartcity.stream.store.LakeStore`: the data_dir (a move is one
rename) or an S3 prefix (a move is a conditional copy and a delete, 0002 §1). The readers
(:func:`read_table`, :func:`describe`, :func:`table_dataset`) read through the store, with
pyarrow's file system for it; :func:`data_files` and :func:`dataset` over paths remain for a local
folder. One writer per lake is a local lock on the data_dir; the S3 lease that 0002 §5 plans for
writers on several machines is not built.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS
from smartcity.platform.params import display_path
from smartcity.stream.store import LakeStore, ObjectInfo

QUARANTINE = "_quarantine"
#: Every lake table: a table per topic, then the quarantine.
TABLES: tuple[str, ...] = (*TOPICS, QUARANTINE)
#: Partition column of each table: event date for the topics, topic for the quarantine.
PARTITION = {**{t: "event_date" for t in TOPICS}, QUARANTINE: "topic"}
#: How many batch markers the commit log keeps (Spark only ever replays its latest batch).
KEEP_MARKERS = 200
#: Where an earlier version of the lab's stream left a batch's text lines, inside its staging folder.
RAW_STAGING = "_raw"
#: Written once a batch's staged files are complete, with the batch's metrics and the tasks' rows per file.
STAGED_MARK = "_staged.json"
#: Key prefixes in the profile's store (a data_dir, or s3://bucket/prefix): the tables, every
#: checkpoint, and the lake writer's commit log (which shares its prefix with the stream's checkpoint).
LAKE = "lake"
CHECKPOINTS = "checkpoints"
COMMITS = f"{CHECKPOINTS}/lake"


class LakeError(RuntimeError):
    """The lake or its commit log is not in a state the writer can continue from; says what to do."""


def visible_key(relative: str) -> bool:
    """What every reader counts: Parquet files, no part of the path (below the table) hidden ('.') or internal ('_')."""
    return relative.endswith(".parquet") and not any(s.startswith(("_", ".")) for s in relative.split("/"))


def _visible(path: Path, root: Path) -> bool:
    return visible_key(path.relative_to(root).as_posix())


def partition_dir(relative: str) -> str:
    """The Hive partition folders of a file below its table: 'event_date=2026-01-05'."""
    return "/".join(p for p in relative.split("/")[:-1] if "=" in p)


def display(store: LakeStore, key: str) -> str:
    """Where a key is, as people should read it: relative to the lab root for a local path."""
    uri = store.uri(key)
    return uri if "://" in uri else display_path(Path(uri))


def data_files(table_dir: Path) -> list[Path]:
    """A table's files, in path order: exactly what a glob of its folder returns."""
    if not table_dir.is_dir():
        return []
    return sorted(p for p in table_dir.rglob("*.parquet") if _visible(p, table_dir))


def list_data_files(store: LakeStore, table: str) -> list[ObjectInfo]:
    """A table's objects in any store, in key order: what a glob of its folder (or prefix) returns.

    For readers of a lake on S3 (a Glue catalog, a warehouse loader); keys are the store's
    ("lake/<table>/event_date=.../part-....parquet").
    """
    folder = f"{LAKE}/{table}"
    return [o for o in store.list(folder) if visible_key(o.key[len(folder) + 1 :])]


def table_files(store: LakeStore, table: str) -> tuple[pafs.FileSystem, list[str], str]:
    """A table's files as pyarrow reads them, in any store: (file system, paths in key order, table base path)."""
    fs, root = store.arrow()
    return fs, [f"{root}/{o.key}" for o in list_data_files(store, table)], f"{root}/{LAKE}/{table}"


def footer_rows(fs: pafs.FileSystem, path: str) -> int:
    """Rows of a Parquet file from its footer (a ranged read on S3), without reading data."""
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def count_table_rows(store: LakeStore, table: str) -> int:
    """Rows a glob of the table's folder (or prefix) returns, from the footers."""
    fs, paths, _ = table_files(store, table)
    return sum(footer_rows(fs, p) for p in paths)


def partition_of(path: Path) -> dict[str, str]:
    """Hive partition values in a file path: {'event_date': '2026-01-05'}."""
    return dict(part.split("=", 1) for part in path.parent.parts if "=" in part)


def count_rows(files: list[Path]) -> int:
    """Rows in Parquet files from their footers, without reading data."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def partitions(files: list[Path]) -> dict[str, list[Path]]:
    """Files grouped by Hive partition ('event_date=2026-01-05'), partitions sorted."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault("/".join(f"{k}={v}" for k, v in partition_of(f).items()), []).append(f)
    return dict(sorted(groups.items()))


def describe(store: LakeStore) -> pd.DataFrame:
    """Every lake table and partition with its files and rows (from Parquet footers)."""
    rows = []
    for table in TABLES:
        fs, paths, base = table_files(store, table)
        groups: dict[str, list[str]] = {}
        for path in paths:
            groups.setdefault(partition_dir(path[len(base) + 1 :]), []).append(path)
        rows += [
            {"table": table, "partition": part, "files": len(group), "rows": sum(footer_rows(fs, p) for p in group)}
            for part, group in sorted(groups.items())
        ]
    return pd.DataFrame(rows, columns=["table", "partition", "files", "rows"]).set_index(["table", "partition"])


def quarantine_schema() -> pa.Schema:
    """The quarantine table: the message kept whole (bytes, key, headers, Kafka coordinates) and why."""
    return pa.schema(
        [
            pa.field("reason", pa.string()),
            pa.field("preview", pa.string()),  # the value as printable UTF-8, cut at 512 characters
            pa.field("key", pa.binary()),
            pa.field("value", pa.binary()),
            pa.field("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
            pa.field("kafka_partition", pa.int32()),
            pa.field("kafka_offset", pa.int64()),
            pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("topic", pa.string()),
        ]
    )


def table_schema(table: str) -> pa.Schema:
    """The schema readers get for a table: the latest contract, so older files read with nulls."""
    schema = quarantine_schema() if table == QUARANTINE else contracts.arrow_schema(table)
    return pa.schema([f.with_nullable(True) for f in schema])


def dataset(
    files: Sequence[Path | str], table: str, base: Path | str, filesystem: pafs.FileSystem | None = None
) -> ds.Dataset:
    """Files of one table as one Arrow dataset in the latest schema, partition column included."""
    schema = table_schema(table)
    key = PARTITION[table]
    partitioning = ds.partitioning(pa.schema([schema.field(key)]), flavor="hive")
    return ds.dataset(
        [str(f) for f in files],
        schema=schema,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(base),
        filesystem=filesystem,
    )


def table_dataset(store: LakeStore, table: str) -> ds.Dataset | None:
    """A lake table in any store as one Arrow dataset (None while it has no file)."""
    fs, paths, base = table_files(store, table)
    return dataset(paths, table, base, fs) if paths else None


def read_table(store: LakeStore, table: str, columns: list[str] | None = None) -> pa.Table:
    """A lake table as Arrow in the latest contract's schema (files of older versions read with nulls)."""
    data = table_dataset(store, table)
    if data is None:
        return table_schema(table).empty_table().select(columns or table_schema(table).names)
    return data.to_table(columns=columns)


#: At the lake's root, beside the table folders (no reader's glob of a table reaches it).
GENERATION_FILE = "_lake.json"
#: What a reset writes there first: until it has deleted everything, nothing streams into or loads from the lake.
RESETTING = "resetting"


def json_bytes(data: Mapping[str, Any]) -> bytes:
    """JSON as the commit log has always written it (indent 1), as bytes for a store."""
    return json.dumps(data, indent=1).encode()


def _generation_key() -> str:
    return f"{LAKE}/{GENERATION_FILE}"


def lake_state(store: LakeStore) -> dict[str, Any] | None:
    """The lake's ``_lake.json``, None if it has none yet; a reset cut short raises LakeError."""
    try:
        state = json.loads(store.get(_generation_key()))
    except FileNotFoundError:
        return None
    if state.get("state") == RESETTING:
        raise LakeError(
            f"a reset of the lake at {display(store, LAKE)} did not finish: reset the run again "
            "(01_simulate with reset_run: true, as `make run` does) before streaming into it or loading from it"
        )
    return state


def reset(store: LakeStore, data_dir: Path) -> None:
    """Forget a previous run: lake, stream checkpoints and the lake's commit log.

    Resumable (0002 §1): ``_lake.json`` first says a reset is under way, so a crash halfway leaves
    a lake that refuses streaming and loading until the next reset finishes the job; the marker
    goes last. (On S3 a reset is many requests, not one rmtree.) A fresh generation is made when
    it is next asked for. Glue partitions are the catalog's to drop.
    """
    with writer_lock(data_dir):
        store.put(_generation_key(), json_bytes({"state": RESETTING}))
        store.delete_prefix(CHECKPOINTS)
        for child in store.list(LAKE, delimiter="/"):
            if child.key.endswith("/"):
                store.delete_prefix(child.key)
            elif child.key != _generation_key():
                store.delete(child.key)
        store.delete_prefix(LAKE)  # the marker, and the (now empty) folder on a local disk


def generation(store: LakeStore) -> str:
    """This lake's id, a new one after every reset: what a warehouse mirrors, so that it can tell a
    fresh lake (start afresh, as expected) from files vanishing out of the lake it loaded."""
    state = lake_state(store)
    if state is None:
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs counts
            store.put(_generation_key(), json_bytes({"generation": uuid.uuid4().hex}), if_absent=True)
        state = lake_state(store)
    if state is None or "generation" not in state:
        raise LakeError(f"{display(store, _generation_key())} holds no generation: reset the run")
    return state["generation"]


# -- one writer at a time ---------------------------------------------------------------------------
_held: dict[Path, int] = {}


@contextmanager
def writer_lock(data_dir: Path) -> Iterator[None]:
    """Hold the profile's lake for writing: a second stream or reset on the same data dir fails clearly.

    A lock on ``<data_dir>/lake.lock`` (released by the kernel if the holder dies, so a crash never
    leaves it stale); re-entrant within a process.
    """
    path = data_dir / "lake.lock"
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LakeError(
            f"the lake of {display_path(data_dir)} is being written by {holder}: stop that run "
            "(or use another profile) before streaming or resetting this one"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    _held[path] = 1
    try:
        yield
    finally:
        _held.pop(path, None)
        os.close(fd)
