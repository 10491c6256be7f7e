"""The Parquet lake: one folder per table, Hive-partitioned, where a glob of a folder is the table.

Every reader of the lake lists a table's folder: the lab's own readers, a data scientist's
``duckdb.read_parquet('data/local/lake/gps_data/**/*.parquet', hive_partitioning=true,
union_by_name=true)``, pyarrow's ``ds.dataset(folder, partitioning='hive')``, a Glue crawler or
Athena over the S3 prefix. So the writer makes the folder itself exactly-once (the design note
``docs/decisions/0001-lake-commits.md`` says why this rather than a table format):

* the stream writes each micro-batch under a staging folder outside the lake
  (``<checkpoints>/lake/_staging/<batch>/``), never into a table folder: Spark leaves JSON lines
  there, which :func:`convert_staged` turns into Parquet files;
* a manifest (``<batch>.manifest.json``) then fixes which staged file becomes which lake file,
  under a deterministic name (``part-<batch>-<n>-<writer>.parquet``), and the files are moved
  into the table folders; a single rename per file, so no reader ever sees half a file;
* a ``<batch>.done.json`` marker records that the batch is in the lake. A batch Spark replays
  after a crash is skipped if it is done, rolled forward if it has a manifest, and staged afresh
  otherwise; staging left by a crash is deleted on restart.

A reader may see part of a batch while it is being published (a prefix of the stream), never a
file twice and never a file of a failed batch.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pj
import pyarrow.parquet as pq

from smartcity import contracts
from smartcity.config import TOPICS, Params, display_path

QUARANTINE = "_quarantine"
#: Partition column of each table: event date for the topics, topic for the quarantine.
PARTITION = {**{t: "event_date" for t in TOPICS}, QUARANTINE: "topic"}
#: How many batch markers the commit log keeps (Spark only ever replays its latest batch).
KEEP_MARKERS = 200
#: Where the stream's Spark job leaves a batch's JSON lines, inside the batch's staging folder.
RAW_STAGING = "_raw"
#: Written once those lines are complete, with the batch's metrics.
STAGED_MARK = "_staged.json"


class LakeError(RuntimeError):
    """The lake or its commit log is not in a state the writer can continue from; says what to do."""


def table_path(cfg: Params, table: str) -> Path:
    return cfg.lake_path / table


def commit_path(cfg: Params) -> Path:
    """The lake writer's commit log and staging area: beside the stream's checkpoint, outside the lake."""
    return cfg.checkpoint_path / "lake"


def _visible(path: Path, root: Path) -> bool:
    """What every reader counts: Parquet files, no part of the path hidden ('.') or internal ('_')."""
    return path.suffix == ".parquet" and not any(s.startswith(("_", ".")) for s in path.relative_to(root).parts)


def data_files(table_dir: Path) -> list[Path]:
    """A table's files, in path order: exactly what a glob of its folder returns."""
    if not table_dir.is_dir():
        return []
    return sorted(p for p in table_dir.rglob("*.parquet") if _visible(p, table_dir))


def tables(cfg: Params) -> list[str]:
    """Lake tables that exist, topics first in pipeline order, then quarantine."""
    return [t for t in (*TOPICS, QUARANTINE) if table_path(cfg, t).is_dir()]


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


def describe(cfg: Params) -> pd.DataFrame:
    """Every lake table and partition with its files and rows (from Parquet footers)."""
    rows = [
        {"table": table, "partition": part, "files": len(fs), "rows": count_rows(fs)}
        for table in tables(cfg)
        for part, fs in partitions(data_files(table_path(cfg, table))).items()
    ]
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


def dataset(files: list[Path], table: str, base: Path) -> ds.Dataset:
    """Files of one table as one Arrow dataset in the latest schema, partition column included."""
    schema = table_schema(table)
    key = PARTITION[table]
    partitioning = ds.partitioning(pa.schema([schema.field(key)]), flavor="hive")
    return ds.dataset([str(f) for f in files], schema=schema, format="parquet", partitioning=partitioning,
                      partition_base_dir=str(base))


def read_table(cfg: Params, table: str, columns: list[str] | None = None) -> pa.Table:
    """A lake table as Arrow in the latest contract's schema (files of older versions read with nulls)."""
    base = table_path(cfg, table)
    files = data_files(base)
    if not files:
        return table_schema(table).empty_table().select(columns or table_schema(table).names)
    return dataset(files, table, base).to_table(columns=columns)


def reset(cfg: Params) -> None:
    """Forget a previous run: lake, stream checkpoints and the lake's commit log."""
    with writer_lock(cfg):
        for path in (cfg.lake_path, cfg.checkpoint_path):
            shutil.rmtree(path, ignore_errors=True)


#: At the lake's root, beside the table folders (no reader's glob of a table reaches it).
GENERATION_FILE = "_lake.json"


def generation(cfg: Params) -> str:
    """This lake's id, a new one after every reset: what a warehouse mirrors, so that it can tell a
    fresh lake (start afresh, as expected) from files vanishing out of the lake it loaded."""
    path = cfg.lake_path / GENERATION_FILE
    if not path.exists():
        cfg.lake_path.mkdir(parents=True, exist_ok=True)
        _write_json_atomically(path, {"generation": uuid.uuid4().hex})
    return json.loads(path.read_text())["generation"]


# -- from the stream's JSON lines to Parquet ----------------------------------------------------------
def convert_staged(staging: Path) -> dict[str, int]:
    """Turn a batch's staged JSON lines into one Parquet file per table and partition, in the lake's schema.

    Spark leaves ``_raw/_table=<table>/_pkey=<value>/part-*.txt``; Arrow's JSON reader parses the
    topics' lines straight into the latest contract's schema (a v1 event simply lacks the v2
    columns), and the quarantine's base64 fields go back to bytes. Returns rows per table.
    """
    raw = staging / RAW_STAGING
    rows: dict[str, int] = {}
    for table_dir in sorted(raw.glob("_table=*")) if raw.is_dir() else []:
        table = unquote(table_dir.name.split("=", 1)[1])
        for part_dir in sorted(table_dir.glob("_pkey=*")):
            value = unquote(part_dir.name.split("=", 1)[1])
            data = b"".join(p.read_bytes() for p in sorted(part_dir.glob("part-*")))
            if not data.strip():
                continue
            frame = _quarantine_rows(data) if table == QUARANTINE else _event_rows(data, table)
            dest = staging / table / f"{PARTITION[table]}={value}" / "part.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(frame, dest)
            rows[table] = rows.get(table, 0) + frame.num_rows
    shutil.rmtree(raw, ignore_errors=True)
    return rows


def _file_schema(table: str) -> pa.Schema:
    """A table's columns as stored in its files: the partition column lives in the folder name."""
    schema = table_schema(table)
    return schema.remove(schema.get_field_index(PARTITION[table]))


def _event_rows(data: bytes, table: str) -> pa.Table:
    schema = _file_schema(table)
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    return pj.read_json(io.BytesIO(data), parse_options=options).select(schema.names).cast(schema)


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
def _write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class CommitLog:
    """The lake writer's log: staging area, manifests and done markers of the micro-batches."""

    lake_root: Path
    root: Path
    writer: str = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ident = self.root / "writer.json"
        if not ident.exists():
            _write_json_atomically(ident, {"writer": uuid.uuid4().hex[:8]})
        self.writer = json.loads(ident.read_text())["writer"]

    def staging(self, batch: int) -> Path:
        return self.root / "_staging" / f"{batch:010d}"

    def manifest_path(self, batch: int) -> Path:
        return self.root / f"{batch:010d}.manifest.json"

    def done_path(self, batch: int) -> Path:
        return self.root / f"{batch:010d}.done.json"

    def is_done(self, batch: int) -> bool:
        return self.done_path(batch).exists()

    def has_manifest(self, batch: int) -> bool:
        return self.manifest_path(batch).exists()

    def staged_path(self, batch: int) -> Path:
        return self.staging(batch) / STAGED_MARK

    def is_staged(self, batch: int) -> bool:
        """The stream's Spark job finished writing the batch's lines (and its metrics are kept)."""
        return self.staged_path(batch).exists()

    def mark_staged(self, batch: int, metrics: Mapping[str, Any]) -> None:
        """Record that a batch's lines are complete: from here on it is finished, never staged again."""
        _write_json_atomically(self.staged_path(batch), dict(metrics))

    def finish(self, batch: int) -> dict[str, Any]:
        """Everything after Spark: lines to Parquet, the manifest, the move into the lake. Idempotent."""
        if self.is_done(batch):
            return json.loads(self.done_path(batch).read_text())
        if not self.has_manifest(batch):
            metrics = json.loads(self.staged_path(batch).read_text())
            started = time.time()
            convert_staged(self.staging(batch))
            self.plan(batch, {**metrics, "arrow_seconds": round(time.time() - started, 3)})
        return self.publish(batch)

    def start(self, batch: int) -> Path:
        """A clean staging folder for a batch (what a crashed attempt left there is discarded)."""
        staging = self.staging(batch)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def plan(self, batch: int, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Fix where each staged file goes, in a manifest written atomically: from here the batch rolls forward."""
        staging = self.staging(batch)
        moves = []
        rows: dict[str, int] = {}
        for table_dir in sorted(p for p in staging.iterdir() if p.is_dir() and p.name != RAW_STAGING
                                ) if staging.is_dir() else []:  # the tables the conversion wrote
            table = table_dir.name
            for part, files in partitions(data_files(table_dir)).items():
                for n, src in enumerate(files):
                    count = pq.ParquetFile(src).metadata.num_rows
                    dst = Path(table) / part / f"part-{batch:010d}-{n:03d}-{self.writer}.parquet"
                    moves.append({"src": str(src.relative_to(staging)), "dst": str(dst), "rows": count})
                    rows[table] = rows.get(table, 0) + count
        manifest = {"batch": batch, "writer": self.writer, "rows": rows, "files": moves, "metrics": dict(metrics or {})}
        _write_json_atomically(self.manifest_path(batch), manifest)
        return manifest

    def publish(self, batch: int) -> dict[str, Any]:
        """Move a planned batch's files into the lake (idempotent), then mark it done."""
        manifest = json.loads(self.manifest_path(batch).read_text())
        staging = self.staging(batch)
        for move in manifest["files"]:
            src, dst = staging / move["src"], self.lake_root / move["dst"]
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            elif not dst.exists():
                raise LakeError(
                    f"batch {batch}: {move['src']} is neither staged nor in the lake as {move['dst']}; "
                    f"the lake under {display_path(self.lake_root)} was changed by hand: reset the run"
                )
        manifest["published_at"] = time.time()
        _write_json_atomically(self.done_path(batch), manifest)
        self.manifest_path(batch).unlink()
        shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def recover(self) -> list[int]:
        """After a crash: finish every batch Spark completed, in order; delete the rest; prune old markers.

        A batch with a manifest, or whose lines Spark finished writing, may already be committed
        in Spark's own log, so it will not come again: it is rolled forward. Anything else was cut
        off mid-write and Spark replays it.
        """
        planned = {int(m.name.split(".")[0]) for m in self.root.glob("*.manifest.json")}
        staging_root = self.root / "_staging"
        folders = {int(p.name): p for p in staging_root.iterdir() if p.name.isdigit()} if staging_root.is_dir() else {}
        complete = {b for b in folders if self.is_staged(b)}
        rolled = sorted(planned | complete)
        for batch in rolled:
            self.finish(batch)
        for batch, leftover in folders.items():
            if batch not in complete | planned:
                shutil.rmtree(leftover, ignore_errors=True)
        markers = sorted(self.root.glob("*.done.json"))
        for old in markers[:-KEEP_MARKERS]:
            old.unlink()
        return rolled

    def batches(self) -> list[dict[str, Any]]:
        """The kept done markers, oldest first: rows per table, timings and freshness of each batch."""
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("*.done.json"))]


def commit_log(cfg: Params) -> CommitLog:
    return CommitLog(cfg.lake_path, commit_path(cfg))
