"""A micro-batch's staged lines into Parquet: one file per table and partition, in the lake's schema.

The stream's Spark job leaves each batch as lines of text, a folder per table and partition value:
CSV for events (every field of the latest contract, then the lineage), JSON for the quarantine.
Arrow parses them here into the lake's schema (:func:`convert_staged`); the commit log
(:mod:`smartcity.stream.commits`) then counts each file and publishes it.
"""

from __future__ import annotations

import base64
import io
from urllib.parse import unquote

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pj
import pyarrow.parquet as pq

from smartcity.stream.lake import PARTITION, QUARANTINE, RAW_STAGING, table_schema
from smartcity.stream.store import LakeStore


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


#: Quantiles of a batch's Kafka timestamps that its manifest records: freshness percentiles come from them.
PRODUCED_QUANTILES = tuple(q / 20 for q in range(21))


def produced_quantiles(micros: np.ndarray) -> list[float]:
    """The batch's :data:`PRODUCED_QUANTILES` of Kafka timestamps, in epoch seconds (none for no events)."""
    if not len(micros):
        return []
    return [round(float(v) / 1e6, 6) for v in np.quantile(micros, PRODUCED_QUANTILES, method="nearest")]


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
    schema = _file_schema(table)
    if data.lstrip()[:1] == b"{":
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        return pj.read_json(io.BytesIO(data), parse_options=options).select(schema.names).cast(schema)
    read_types = {f.name: pa.int64() if pa.types.is_timestamp(f.type) else f.type for f in schema}
    frame = pcsv.read_csv(
        io.BytesIO(data),
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
