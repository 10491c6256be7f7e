"""A micro-batch's routed lines into Parquet, in the lake's schema, by the Spark tasks that hold them.

The stream's contract check turns each message into a line: CSV for an event (every field of the
latest contract, then the lineage), JSON for a quarantined message. Each Spark task of a batch hands
its lines to :class:`StageTask` (``mapInArrow``, on the executors): Arrow parses them into the lake's
schema and writes one Parquet file per table and partition into the batch's staging prefix, named by
the batch and the task's partition (a retried task writes the same file again), and returns one
small row per file: its rows, bytes and a sketch of its Kafka timestamps (:func:`sketch`). The
driver's commit log (:mod:`smartcity.stream.commits`) plans and publishes from those rows alone.

:func:`convert_staged` converts a batch that an earlier version of the lab staged as text lines.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pj
import pyarrow.parquet as pq
from pyspark import TaskContext

from smartcity.stream.lake import PARTITION, QUARANTINE, RAW_STAGING, table_schema
from smartcity.stream.store import LakeStore, StoreTarget

#: What a staging task returns for each file it wrote: mapInArrow's output schema.
STAGED_FILES = pa.schema(
    [
        ("table", pa.string()),
        ("partition", pa.string()),  # the file's partition folder: event_date=2026-01-05
        ("key", pa.string()),  # relative to the batch's staging prefix
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("stamps", pa.list_(pa.int64())),  # the sketch of its Kafka timestamps (epoch microseconds)
    ]
)
#: A file's Kafka timestamps travel as this many order statistics (min, every percent, max), or all of
#: them when there are fewer: merged by weight, a batch's quantile is off by at most 1 % of its events in rank.
SKETCH_POINTS = 101

#: Quantiles of a batch's Kafka timestamps that its manifest records: freshness percentiles come from them.
PRODUCED_QUANTILES = tuple(q / 20 for q in range(21))


@dataclass(frozen=True)
class StageTask:
    """What each Spark task of a micro-batch runs on its executor (``mapInArrow``): its routed lines
    (``_table``, ``_pkey``, ``line``) into Parquet files under ``staging``, one row per file back."""

    target: StoreTarget
    staging: str  # the batch's staging prefix in the store

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        chunks = list(batches)
        if not chunks or not any(len(c) for c in chunks):
            return
        routed = pa.Table.from_batches(chunks)
        context = TaskContext.get()
        task = context.partitionId() if context is not None else 0
        fs, root = self.target.filesystem()
        files = []
        for (table, value), lines in _groups(routed):
            text = _joined(lines)
            frame = _quarantine_rows(text.to_pybytes()) if table == QUARANTINE else _csv_rows(text, table)
            folder = f"{PARTITION[table]}={quote(value, safe='')}"
            key = f"{table}/{folder}/part-{task:05d}.parquet"
            size = _write(fs, f"{root}/{self.staging}/{key}", frame, self.target.local)
            stamps = sketch(_stamps(frame)).tolist()
            files.append(
                {
                    "table": table,
                    "partition": folder,
                    "key": key,
                    "rows": frame.num_rows,
                    "bytes": size,
                    "stamps": stamps,
                }
            )
        yield pa.RecordBatch.from_pylist(files, schema=STAGED_FILES)


def _groups(routed: pa.Table) -> Iterator[tuple[tuple[str, str], pa.Array]]:
    """The lines of each (table, partition value) of a task's rows, in key order."""
    keys = routed.select(["_table", "_pkey"]).group_by(["_table", "_pkey"]).aggregate([])
    for table, value in sorted(zip(keys["_table"].to_pylist(), keys["_pkey"].to_pylist(), strict=True)):
        mask = pc.and_(pc.equal(routed["_table"], table), pc.equal(routed["_pkey"], value))
        yield (table, value), routed["line"].filter(mask).combine_chunks()


def _joined(lines: pa.Array) -> pa.Buffer:
    """Lines as one text, each ending in a newline: the values buffer of the joined array, not a copy of it."""
    joined = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
    return joined.buffers()[2][offsets[joined.offset] : offsets[joined.offset + len(joined)]]


def _write(fs: Any, path: str, frame: pa.Table, local: bool) -> int:
    """One whole Parquet file at ``path``; its bytes. Locally a hidden temporary file renamed into place;
    on S3 one upload, which appears only once complete. A retried task replaces the file whole."""
    sink = pa.BufferOutputStream()
    pq.write_table(frame, sink)
    data = sink.getvalue()
    folder, name = path.rsplit("/", 1)
    if local:
        fs.create_dir(folder, recursive=True)
        temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        with fs.open_output_stream(temporary) as out:
            out.write(data)
        fs.move(temporary, path)
    else:
        with fs.open_output_stream(path) as out:
            out.write(data)
    return data.size


def _stamps(frame: pa.Table) -> np.ndarray:
    """A file's Kafka timestamps in epoch microseconds (none if it has no such column)."""
    if "kafka_timestamp" not in frame.column_names:
        return np.empty(0, dtype=np.int64)
    return pc.drop_null(frame["kafka_timestamp"]).cast(pa.int64()).to_numpy()


def sketch(micros: np.ndarray) -> np.ndarray:
    """:data:`SKETCH_POINTS` order statistics of the timestamps (min, every percent, max), or all of them sorted."""
    if len(micros) <= SKETCH_POINTS:
        return np.sort(micros)
    return np.quantile(micros, np.linspace(0.0, 1.0, SKETCH_POINTS), method="nearest").astype(np.int64)


def merged_quantiles(files: Sequence[dict[str, Any]]) -> list[float]:
    """The batch's :data:`PRODUCED_QUANTILES` (epoch seconds) from its files' sketches, each point
    weighted by the events it stands for; exact when every file sent all its timestamps."""
    points, weights = [], []
    for file in files:
        stamps = np.asarray(file["stamps"], dtype=np.int64)
        if len(stamps):
            points.append(stamps)
            weights.append(np.full(len(stamps), file["rows"] / len(stamps)))
    if not points:
        return []
    values, weight = np.concatenate(points), np.concatenate(weights)
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weight[order])
    ranks = np.searchsorted(cumulative, np.asarray(PRODUCED_QUANTILES) * cumulative[-1], side="left")
    return [round(float(values[min(r, len(values) - 1)]) / 1e6, 6) for r in ranks]


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
        parts = obj.key[len(raw) + 1 :].split("/")  # Spark's _temporary/ (and .crc files) do not match
        if (
            len(parts) == 3
            and parts[0].startswith("_table=")
            and parts[1].startswith("_pkey=")
            and parts[2].startswith("part-")
        ):
            groups.setdefault((parts[0], parts[1]), []).append(obj.key)
    rows: dict[str, int] = {}
    for (table_dir, part_dir), keys in sorted(groups.items()):
        table = unquote(table_dir.split("=", 1)[1])
        value = unquote(part_dir.split("=", 1)[1])
        dest = f"{staging}/{table}/{PARTITION[table]}={value}/part.parquet"
        if dest in present:
            count, _ = staged_file(store, dest)
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


def staged_file(store: LakeStore, key: str) -> tuple[int, np.ndarray]:
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
    if data.lstrip()[:1] == b"{":
        schema = _file_schema(table)
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        return pj.read_json(io.BytesIO(data), parse_options=options).select(schema.names).cast(schema)
    return _csv_rows(data, table)


def _csv_rows(data: bytes | pa.Buffer, table: str) -> pa.Table:
    """A table's CSV lines, as the contract check writes them, in its file schema."""
    schema = _file_schema(table)
    read_types = {f.name: pa.int64() if pa.types.is_timestamp(f.type) else f.type for f in schema}
    frame = pcsv.read_csv(
        pa.BufferReader(data),
        read_options=pcsv.ReadOptions(column_names=schema.names),
        parse_options=pcsv.ParseOptions(newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(
            column_types=read_types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    return frame.cast(schema)


def _quarantine_rows(data: bytes) -> pa.Table:
    """Quarantined messages: Python reads these few lines (any length), bytes come back from base64."""

    def unpack(text: str | None) -> bytes | None:
        return None if text is None else base64.b64decode(text)

    records = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    for r in records:
        r["key"], r["value"] = unpack(r["key"]), unpack(r["value"])
        r["kafka_timestamp"] = pd.Timestamp(r["kafka_timestamp"]) if r["kafka_timestamp"] else None
        r["headers"] = (
            None if r["headers"] is None else [{"key": h["key"], "value": unpack(h["value"])} for h in r["headers"]]
        )
    return pa.Table.from_pylist(records, schema=_file_schema(QUARANTINE))
