"""The Parquet lake: one folder per table, Hive-partitioned, where a glob of a folder is the table.

Every reader of the lake lists a table's folder: the lab's own readers, a data scientist's
``duckdb.read_parquet('data/local/lake/gps_data/**/*.parquet', hive_partitioning=true,
union_by_name=true)``, pyarrow's ``ds.dataset(folder, partitioning='hive')``, a Glue crawler or
Athena over the S3 prefix. So the writer makes the folder itself exactly-once (the design note
``docs/decisions/0001-lake-commits.md`` says why this rather than a table format):

* the stream writes each micro-batch under a staging folder outside the lake
  (``<checkpoints>/lake/_staging/<batch>/``), never into a table folder: Spark leaves lines there
  (CSV for events, JSON for the quarantine), which :func:`convert_staged` turns into Parquet files;
* a manifest (``<batch>.manifest.json``) then fixes which staged file becomes which lake file,
  under a deterministic name (``part-<batch>-<n>-<writer>.parquet``), and the files are moved
  into the table folders; a single rename per file, so no reader ever sees half a file;
* a ``<batch>.done.json`` marker records that the batch is in the lake. A batch Spark replays
  after a crash is skipped if it is done, rolled forward if it has a manifest, and staged afresh
  otherwise; staging left by a crash is deleted on restart.

A reader may see part of a batch while it is being published (a prefix of the stream), never a
file twice and never a file of a failed batch.

The commit log runs on the profile's :class:`~smartcity.storage.LakeStore`: the data_dir (a move
is one rename) or an S3 prefix (a move is a conditional copy and a delete, 0002 §1). The readers
(:func:`read_table`, :func:`describe`, :func:`table_dataset`) read through the store too, with
pyarrow's file system for it; :func:`data_files` and :func:`dataset` over paths remain for a local
folder. One writer per lake is a local lock on the data_dir; the S3 lease that 0002 §5 plans for
writers on several machines is not built.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.json as pj
import pyarrow.parquet as pq

from smartcity.fleet import contracts
from smartcity.params import TOPICS, Params, display_path
from smartcity.stream.store import LakeStore, ObjectInfo, open_store

QUARANTINE = "_quarantine"
#: Partition column of each table: event date for the topics, topic for the quarantine.
PARTITION = {**{t: "event_date" for t in TOPICS}, QUARANTINE: "topic"}
#: How many batch markers the commit log keeps (Spark only ever replays its latest batch).
KEEP_MARKERS = 200
#: Where the stream's Spark job leaves a batch's JSON lines, inside the batch's staging folder.
RAW_STAGING = "_raw"
#: Written once those lines are complete, with the batch's metrics.
STAGED_MARK = "_staged.json"
#: Key prefixes in the profile's store (a data_dir, or s3://bucket/prefix): the tables, every
#: checkpoint, and the lake writer's commit log (which shares its prefix with the stream's checkpoint).
LAKE = "lake"
CHECKPOINTS = "checkpoints"
COMMITS = f"{CHECKPOINTS}/lake"


class LakeError(RuntimeError):
    """The lake or its commit log is not in a state the writer can continue from; says what to do."""


def table_path(cfg: Params, table: str) -> Path:
    return cfg.lake_path / table


def commit_path(cfg: Params) -> Path:
    """The lake writer's commit log and staging area: beside the stream's checkpoint, outside the lake."""
    return cfg.checkpoint_path / "lake"


def _visible_key(relative: str) -> bool:
    """What every reader counts: Parquet files, no part of the path (below the table) hidden ('.') or internal ('_')."""
    return relative.endswith(".parquet") and not any(s.startswith(("_", ".")) for s in relative.split("/"))


def _visible(path: Path, root: Path) -> bool:
    return _visible_key(path.relative_to(root).as_posix())


def _partition_dir(relative: str) -> str:
    """The Hive partition folders of a file below its table: 'event_date=2026-01-05'."""
    return "/".join(p for p in relative.split("/")[:-1] if "=" in p)


def _display(store: LakeStore, key: str) -> str:
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
    return [o for o in store.list(folder) if _visible_key(o.key[len(folder) + 1:])]


def table_files(store: LakeStore, table: str) -> tuple[pafs.FileSystem, list[str], str]:
    """A table's files as pyarrow reads them, in any store: (file system, paths in key order, table base path)."""
    fs, root = store.arrow()
    return fs, [f"{root}/{o.key}" for o in list_data_files(store, table)], f"{root}/{LAKE}/{table}"


def _store(cfg: Params, store: LakeStore | None) -> LakeStore:
    return store if store is not None else open_store(cfg)


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


def describe(cfg: Params, store: LakeStore | None = None) -> pd.DataFrame:
    """Every lake table and partition with its files and rows (from Parquet footers)."""
    store = _store(cfg, store)
    rows = []
    for table in (*TOPICS, QUARANTINE):
        fs, paths, base = table_files(store, table)
        groups: dict[str, list[str]] = {}
        for path in paths:
            groups.setdefault(_partition_dir(path[len(base) + 1:]), []).append(path)
        rows += [{"table": table, "partition": part, "files": len(group), "rows": sum(footer_rows(fs, p) for p in group)}
                 for part, group in sorted(groups.items())]
    return pd.DataFrame(rows, columns=["table", "partition", "files", "rows"]).set_index(["table", "partition"])


def quarantine_schema() -> pa.Schema:
    """The quarantine table: the message kept whole (bytes, key, headers, Kafka coordinates) and why."""
    return pa.schema([
        pa.field("reason", pa.string()),
        pa.field("preview", pa.string()),  # the value as printable UTF-8, cut at 512 characters
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("topic", pa.string()),
    ])


def table_schema(table: str) -> pa.Schema:
    """The schema readers get for a table: the latest contract, so older files read with nulls."""
    schema = quarantine_schema() if table == QUARANTINE else contracts.arrow_schema(table)
    return pa.schema([f.with_nullable(True) for f in schema])


def dataset(files: Sequence[Path | str], table: str, base: Path | str,
            filesystem: pafs.FileSystem | None = None) -> ds.Dataset:
    """Files of one table as one Arrow dataset in the latest schema, partition column included."""
    schema = table_schema(table)
    key = PARTITION[table]
    partitioning = ds.partitioning(pa.schema([schema.field(key)]), flavor="hive")
    return ds.dataset([str(f) for f in files], schema=schema, format="parquet", partitioning=partitioning,
                      partition_base_dir=str(base), filesystem=filesystem)


def table_dataset(store: LakeStore, table: str) -> ds.Dataset | None:
    """A lake table in any store as one Arrow dataset (None while it has no file)."""
    fs, paths, base = table_files(store, table)
    return dataset(paths, table, base, fs) if paths else None


def read_table(cfg: Params, table: str, columns: list[str] | None = None, store: LakeStore | None = None) -> pa.Table:
    """A lake table as Arrow in the latest contract's schema (files of older versions read with nulls)."""
    data = table_dataset(_store(cfg, store), table)
    if data is None:
        return table_schema(table).empty_table().select(columns or table_schema(table).names)
    return data.to_table(columns=columns)


#: At the lake's root, beside the table folders (no reader's glob of a table reaches it).
GENERATION_FILE = "_lake.json"
#: What a reset writes there first: until it has deleted everything, nothing streams into or loads from the lake.
RESETTING = "resetting"


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    """JSON as the commit log has always written it (indent 1), as bytes for a store."""
    return json.dumps(data, indent=1).encode()


def _generation_key() -> str:
    return f"{LAKE}/{GENERATION_FILE}"


def _lake_state(store: LakeStore) -> dict[str, Any] | None:
    """The lake's ``_lake.json``, None if it has none yet; a reset cut short raises LakeError."""
    try:
        state = json.loads(store.get(_generation_key()))
    except FileNotFoundError:
        return None
    if state.get("state") == RESETTING:
        raise LakeError(
            f"a reset of the lake at {_display(store, LAKE)} did not finish: reset the run again "
            "(01_simulate with reset_run: true, as `make run` does) before streaming into it or loading from it"
        )
    return state


def reset(cfg: Params, store: LakeStore | None = None) -> None:
    """Forget a previous run: lake, stream checkpoints and the lake's commit log.

    Resumable (0002 §1): ``_lake.json`` first says a reset is under way, so a crash halfway leaves
    a lake that refuses streaming and loading until the next reset finishes the job; the marker
    goes last. (On S3 a reset is many requests, not one rmtree.) A fresh generation is made when
    it is next asked for. Glue partitions are the catalog's to drop.
    """
    store = store or open_store(cfg)
    with writer_lock(cfg):
        store.put(_generation_key(), _json_bytes({"state": RESETTING}))
        store.delete_prefix(CHECKPOINTS)
        for child in store.list(LAKE, delimiter="/"):
            if child.key.endswith("/"):
                store.delete_prefix(child.key)
            elif child.key != _generation_key():
                store.delete(child.key)
        store.delete_prefix(LAKE)  # the marker, and the (now empty) folder on a local disk


def generation(cfg: Params, store: LakeStore | None = None) -> str:
    """This lake's id, a new one after every reset: what a warehouse mirrors, so that it can tell a
    fresh lake (start afresh, as expected) from files vanishing out of the lake it loaded."""
    store = store or open_store(cfg)
    state = _lake_state(store)
    if state is None:
        try:
            store.put(_generation_key(), _json_bytes({"generation": uuid.uuid4().hex}), if_absent=True)
        except FileExistsError:
            pass  # another process made it first: theirs counts
        state = _lake_state(store)
    if state is None or "generation" not in state:
        raise LakeError(f"{_display(store, _generation_key())} holds no generation: reset the run")
    return state["generation"]


# -- from the stream's JSON lines to Parquet ----------------------------------------------------------
def convert_staged(store: LakeStore, staging: str) -> dict[str, int]:
    """Turn a batch's staged lines into one Parquet file per table and partition, in the lake's schema.

    Spark leaves ``_raw/_table=<table>/_pkey=<value>/part-*.txt``; Arrow's CSV reader parses the
    topics' lines straight into the latest contract's schema (a v1 event's v2 columns are empty),
    and the quarantine's JSON lines come back with their base64 fields as bytes. Each file is one put, so it
    appears whole; a file already converted before a crash is kept, not made again from lines
    whose deletion may have begun. Returns rows per table.
    """
    raw = f"{staging}/{RAW_STAGING}"
    objects = store.list(staging)
    present = {o.key for o in objects}
    groups: dict[tuple[str, str], list[str]] = {}
    for obj in objects:
        if not obj.key.startswith(f"{raw}/"):
            continue
        parts = obj.key[len(raw) + 1:].split("/")  # Spark's _temporary/ (and .crc files) do not match
        if len(parts) == 3 and parts[0].startswith("_table=") and parts[1].startswith("_pkey=") \
                and parts[2].startswith("part-"):
            groups.setdefault((parts[0], parts[1]), []).append(obj.key)
    rows: dict[str, int] = {}
    for (table_dir, part_dir), keys in sorted(groups.items()):
        table = unquote(table_dir.split("=", 1)[1])
        value = unquote(part_dir.split("=", 1)[1])
        dest = f"{staging}/{table}/{PARTITION[table]}={value}/part.parquet"
        if dest in present:
            count, _ = _staged_file(store, dest)
        else:
            data = b"".join(store.get(k) for k in sorted(keys))
            if not data.strip():
                continue
            frame = _quarantine_rows(data) if table == QUARANTINE else _event_rows(data, table)
            sink = pa.BufferOutputStream()
            pq.write_table(frame, sink)
            store.put(dest, sink.getvalue().to_pybytes())
            count = frame.num_rows
        rows[table] = rows.get(table, 0) + count
    store.delete_prefix(raw)
    return rows


#: Quantiles of a batch's Kafka timestamps that its manifest records: freshness percentiles come from them.
PRODUCED_QUANTILES = tuple(q / 20 for q in range(21))


def produced_quantiles(micros: np.ndarray) -> list[float]:
    """The batch's :data:`PRODUCED_QUANTILES` of Kafka timestamps, in epoch seconds (none for no events)."""
    if not len(micros):
        return []
    return [round(float(v) / 1e6, 6) for v in np.quantile(micros, PRODUCED_QUANTILES, method="nearest")]


def _staged_file(store: LakeStore, key: str) -> tuple[int, np.ndarray]:
    """Rows of a staged Parquet file and its events' Kafka timestamps (epoch microseconds), from one read
    with the store's own client (one GET on S3): the commit log needs no second set of credentials,
    and the files are one batch's worth."""
    file = pq.ParquetFile(pa.BufferReader(store.get(key)))
    if "kafka_timestamp" not in file.schema_arrow.names:
        return file.metadata.num_rows, np.empty(0, dtype=np.int64)
    stamps = pc.drop_null(file.read(columns=["kafka_timestamp"]).column(0)).cast(pa.int64())
    return file.metadata.num_rows, stamps.to_numpy()


def _file_schema(table: str) -> pa.Schema:
    """A table's columns as stored in its files: the partition column lives in the folder name."""
    schema = table_schema(table)
    return schema.remove(schema.get_field_index(PARTITION[table]))


def _event_rows(data: bytes, table: str) -> pa.Table:
    """A table's staged lines in its file schema: CSV as the contract check writes it (every field of
    the latest contract then the lineage, text quoted, timestamps in epoch microseconds), or JSON
    lines, as the lab staged them before (a batch left staged across an upgrade still converts)."""
    schema = _file_schema(table)
    if data.lstrip()[:1] == b"{":
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        return pj.read_json(io.BytesIO(data), parse_options=options).select(schema.names).cast(schema)
    read_types = {f.name: pa.int64() if pa.types.is_timestamp(f.type) else f.type for f in schema}
    frame = pcsv.read_csv(
        io.BytesIO(data), read_options=pcsv.ReadOptions(column_names=schema.names),
        parse_options=pcsv.ParseOptions(newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(column_types=read_types, null_values=[""], strings_can_be_null=True,
                                            quoted_strings_can_be_null=False))
    return frame.cast(schema)


def _quarantine_rows(data: bytes) -> pa.Table:
    """Quarantined messages: Python reads these few lines (any length), bytes come back from base64."""
    def unpack(text: str | None) -> bytes | None:
        return None if text is None else base64.b64decode(text)

    records = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    for r in records:
        r["key"], r["value"] = unpack(r["key"]), unpack(r["value"])
        r["kafka_timestamp"] = pd.Timestamp(r["kafka_timestamp"]) if r["kafka_timestamp"] else None
        r["headers"] = None if r["headers"] is None else [
            {"key": h["key"], "value": unpack(h["value"])} for h in r["headers"]]
    return pa.Table.from_pylist(records, schema=_file_schema(QUARANTINE))


# -- one writer at a time ---------------------------------------------------------------------------
_held: dict[Path, int] = {}


@contextmanager
def writer_lock(cfg: Params) -> Iterator[None]:
    """Hold the profile's lake for writing: a second stream or reset on the same data dir fails clearly.

    A lock on ``<data_dir>/lake.lock`` (released by the kernel if the holder dies, so a crash never
    leaves it stale); re-entrant within a process.
    """
    path = cfg.data_path / "lake.lock"
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
            f"the lake of {display_path(cfg.data_path)} is being written by {holder}: stop that run "
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


# -- the commit protocol ------------------------------------------------------------------------------
@dataclass
class CommitLog:
    """The lake writer's log: staging area, manifests and done markers of the micro-batches.

    It lives on a :class:`~smartcity.storage.LakeStore` under key prefixes: ``lake_root`` holds the
    tables, ``root`` the log (beside the stream's checkpoint). The same code runs on a local folder
    (renames) and on S3 (conditional copies); 0002 §1 maps each step.
    """

    store: LakeStore
    lake_root: str = LAKE
    root: str = COMMITS
    writer: str = field(init=False)

    def __post_init__(self) -> None:
        ident = f"{self.root}/writer.json"
        try:
            data = self.store.get(ident)
        except FileNotFoundError:
            try:
                self.store.put(ident, _json_bytes({"writer": uuid.uuid4().hex[:8]}), if_absent=True)
            except FileExistsError:
                pass  # made by another process meanwhile: theirs counts
            data = self.store.get(ident)
        self.writer = json.loads(data)["writer"]

    def staging(self, batch: int) -> str:
        return f"{self.root}/_staging/{batch:010d}"

    def manifest_key(self, batch: int) -> str:
        return f"{self.root}/{batch:010d}.manifest.json"

    def done_key(self, batch: int) -> str:
        return f"{self.root}/{batch:010d}.done.json"

    def staged_key(self, batch: int) -> str:
        return f"{self.staging(batch)}/{STAGED_MARK}"

    def is_done(self, batch: int) -> bool:
        return self.store.head(self.done_key(batch)) is not None

    def has_manifest(self, batch: int) -> bool:
        return self.store.head(self.manifest_key(batch)) is not None

    def is_staged(self, batch: int) -> bool:
        """The stream's Spark job finished writing the batch's lines (and its metrics are kept)."""
        return self.store.head(self.staged_key(batch)) is not None

    def mark_staged(self, batch: int, metrics: Mapping[str, Any]) -> None:
        """Record that a batch's lines are complete: from here on it is finished, never staged again."""
        self.store.put(self.staged_key(batch), _json_bytes(dict(metrics)))

    def finish(self, batch: int) -> dict[str, Any]:
        """Everything after Spark: lines to Parquet, the manifest, the move into the lake. Idempotent."""
        if self.is_done(batch):
            return json.loads(self.store.get(self.done_key(batch)))
        if not self.has_manifest(batch):
            metrics = json.loads(self.store.get(self.staged_key(batch)))
            started = time.time()
            convert_staged(self.store, self.staging(batch))
            self.plan(batch, {**metrics, "arrow_seconds": round(time.time() - started, 3)})
        return self.publish(batch)

    def start(self, batch: int) -> str:
        """A clean staging prefix for a batch (what a crashed attempt left there is discarded)."""
        staging = self.staging(batch)
        self.store.delete_prefix(staging)
        return staging

    def plan(self, batch: int, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Fix where each staged file goes, in a manifest written atomically: from here the batch rolls forward.

        Each move records the file's rows and bytes; the bytes let a publish retried on S3 tell
        its own copy from anything else under the same key. The batch's figures (messages,
        quarantined, quantiles of the Kafka timestamps) come from the same reads of its files:
        counted here with Arrow, they cost the stream's Spark job nothing per message.
        """
        staging = self.staging(batch)
        groups: dict[tuple[str, str], list[ObjectInfo]] = {}
        for obj in self.store.list(staging):  # the tables the conversion wrote, what a glob of each sees
            table, _, inner = obj.key[len(staging) + 1:].partition("/")
            if inner and table != RAW_STAGING and _visible_key(inner):
                groups.setdefault((table, _partition_dir(inner)), []).append(obj)
        moves: list[dict[str, Any]] = []
        rows: dict[str, int] = {}
        stamps: list[np.ndarray] = []
        for (table, part), files in sorted(groups.items()):
            for n, src in enumerate(files):
                count, produced = _staged_file(self.store, src.key)
                stamps.append(produced)
                dst = "/".join(p for p in (table, part, f"part-{batch:010d}-{n:03d}-{self.writer}.parquet") if p)
                moves.append({"src": src.key[len(staging) + 1:], "dst": dst, "rows": count, "bytes": src.size})
                rows[table] = rows.get(table, 0) + count
        figures = {"messages": sum(rows.values()), "quarantined": rows.get(QUARANTINE, 0),
                   "produced_quantiles": produced_quantiles(np.concatenate(stamps) if stamps else np.empty(0))}
        manifest = {"batch": batch, "writer": self.writer, "rows": rows, "files": moves,
                    "metrics": {**dict(metrics or {}), **figures}}
        self.store.put(self.manifest_key(batch), _json_bytes(manifest))
        return manifest

    def publish(self, batch: int) -> dict[str, Any]:
        """Move a planned batch's files into the lake (idempotent), then mark it done."""
        manifest = json.loads(self.store.get(self.manifest_key(batch)))
        staging = self.staging(batch)
        for move in manifest["files"]:
            try:  # a manifest written before moves recorded bytes: -1, no size to check
                self.store.publish(f"{staging}/{move['src']}", f"{self.lake_root}/{move['dst']}", move.get("bytes", -1))
            except FileNotFoundError:
                raise LakeError(
                    f"batch {batch}: {move['src']} is neither staged nor in the lake as {move['dst']}; "
                    f"the lake under {_display(self.store, self.lake_root)} was changed by hand: reset the run"
                ) from None
            except FileExistsError as exc:
                raise LakeError(
                    f"batch {batch}: {move['dst']} is already in the lake with other content ({exc}); "
                    f"the lake under {_display(self.store, self.lake_root)} was written by someone else: reset the run"
                ) from None
        manifest["published_at"] = time.time()
        self.store.put(self.done_key(batch), _json_bytes(manifest))
        self.store.delete(self.manifest_key(batch))
        self.store.delete_prefix(staging)
        return manifest

    def _markers(self, suffix: str) -> list[tuple[int, str]]:
        return _markers(self.store, self.root, suffix)

    def recover(self) -> list[int]:
        """After a crash: finish every batch Spark completed, in order; delete the rest; prune old markers.

        A batch with a manifest, or whose lines Spark finished writing, may already be committed
        in Spark's own log, so it will not come again: it is rolled forward. Anything else was cut
        off mid-write and Spark replays it.
        """
        planned = {batch for batch, _ in self._markers("manifest.json")}
        folders: dict[int, str] = {}
        for obj in self.store.list(f"{self.root}/_staging", delimiter="/"):
            name = obj.key.rstrip("/").rsplit("/", 1)[-1]
            if obj.key.endswith("/") and name.isdigit():
                folders[int(name)] = obj.key
        complete = {b for b in folders if self.is_staged(b)}
        rolled = sorted(planned | complete)
        for batch in rolled:
            self.finish(batch)
        for batch, leftover in folders.items():
            if batch not in complete | planned:
                self.store.delete_prefix(leftover)
        markers = self._markers("done.json")
        for _, old in markers[:-KEEP_MARKERS]:
            self.store.delete(old)
        return rolled

    def batches(self) -> list[dict[str, Any]]:
        """The kept done markers, oldest first: rows per table, timings and freshness of each batch."""
        return [json.loads(self.store.get(key)) for _, key in self._markers("done.json")]


def _markers(store: LakeStore, root: str, suffix: str) -> list[tuple[int, str]]:
    """(batch, key) of a commit log's files named ``<batch>.<suffix>``, in batch order."""
    found: list[tuple[int, str]] = []
    for obj in store.list(root, delimiter="/"):
        name = obj.key.rsplit("/", 1)[-1]
        number, dot, rest = name.partition(".")
        if dot and rest == suffix and number.isdigit():
            found.append((int(number), obj.key))
    return sorted(found)


def writer_progress(store: LakeStore, root: str = COMMITS) -> tuple[str | None, int | None]:
    """The lake writer's id and its last done batch (None, None before any), read without creating the
    log: a loader uses them to leave out the files of a batch still being published."""
    try:
        writer = json.loads(store.get(f"{root}/writer.json"))["writer"]
    except FileNotFoundError:
        return None, None
    done = _markers(store, root, "done.json")
    return writer, done[-1][0] if done else None


def commit_log(cfg: Params, store: LakeStore | None = None) -> CommitLog:
    """The profile's commit log, on its store; refuses a lake whose reset did not finish."""
    store = store or open_store(cfg)
    _lake_state(store)
    return CommitLog(store)
