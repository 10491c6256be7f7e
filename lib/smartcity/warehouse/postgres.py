"""The warehouse on PostgreSQL (Redshift's stand-in): bulk-load the lake with COPY, then run BI queries.

Loading follows Redshift's staging-table recipe, incrementally and all in one transaction:

* the warehouse remembers which lake files it has loaded (``smartcity._loaded_files``); a load
  COPYs only files it has not seen, streamed in bounded chunks (memory does not grow with the
  lake), into a staging table per lake table;
* the staged rows are merged by event id (:mod:`smartcity.warehouse.merge`): once per id,
  duplicates counted, conflicting versions kept in ``smartcity.id_conflicts``, never dropped
  silently;
* every table, the quarantine included, is loaded in the same transaction: a failed load leaves
  the previous state whole. A reset lake (a new run) is a new generation (``lake.generation``):
  the warehouse lets go of the previous generation's rows and loads the new lake from scratch. If
  files it loaded leave the lake without a reset (deleted by hand), the table is reloaded from the
  lake (``reloaded`` says so), so the warehouse always mirrors it.

Rows travel as CSV through ``COPY ... FROM STDIN``, never as row-by-row INSERTs. The same
warehouse on Redshift Serverless is :mod:`smartcity.warehouse.redshift`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
from tqdm import tqdm

from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS
from smartcity.platform.postgres import PostgresServer
from smartcity.platform.processes import StopsOnExit
from smartcity.stream import lake
from smartcity.stream.store import LakeStore
from smartcity.warehouse.merge import follow_generation, merge, record_loaded, take_stock
from smartcity.warehouse.schema import SCHEMA, ensure_tables, query_text, target_of

#: Rows per COPY chunk: what one Arrow batch turned into CSV holds in memory at a time.
COPY_ROWS = 50_000


def _topic_csv(batch: pa.RecordBatch, topic: str) -> bytes:
    target = pa.schema([f.with_nullable(True) for f in contracts.arrow_schema(topic)])
    table = pa.Table.from_batches([batch]).select(target.names).cast(target)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


def _bytea(value: bytes | None) -> str | None:
    return None if value is None else "\\x" + value.hex()


def _headers_json(headers: list[dict[str, object]] | None) -> str | None:
    """Kafka headers as JSON text PostgreSQL accepts: values in base64, keys without control characters."""
    if headers is None:
        return None
    clean = [
        {
            "key": "".join(c if c.isprintable() else "\ufffd" for c in str(h["key"])),
            "value_base64": None if h["value"] is None else base64.b64encode(h["value"]).decode(),
        }
        for h in headers
    ]
    return json.dumps(clean, ensure_ascii=True)


def _quarantine_csv(batch: pa.RecordBatch) -> bytes:
    buffer = io.StringIO()
    out = csv.writer(buffer)
    for row in batch.to_pylist():
        out.writerow(
            [
                row["reason"],
                row["preview"],
                _bytea(row["key"]),
                _bytea(row["value"]),
                _headers_json(row["headers"]),
                row["kafka_partition"],
                row["kafka_offset"],
                row["kafka_timestamp"].isoformat() if row["kafka_timestamp"] else None,
                row["topic"],
            ]
        )
    return buffer.getvalue().encode()


def _chunks(
    files: Sequence[Path | str], table: str, base: Path | str, filesystem: pafs.FileSystem | None = None
) -> Iterator[tuple[bytes, int]]:
    """The files' rows as CSV chunks of at most COPY_ROWS rows, in the latest schema (older files get nulls)."""
    if not files:
        return
    for batch in lake.dataset(files, table, base, filesystem).to_batches(batch_size=COPY_ROWS):
        if batch.num_rows:
            yield (_quarantine_csv(batch) if table == lake.QUARANTINE else _topic_csv(batch, table)), batch.num_rows


def load_table(conn: psycopg.Connection, store: LakeStore, table: str) -> dict[str, int]:
    """Load one lake table's new files into the warehouse (inside the caller's transaction).

    The files are read through the store's pyarrow file system: a folder, or S3 (the aws-moto profile
    loads PostgreSQL from S3 this way; Redshift COPYs from S3 itself,
    :class:`smartcity.warehouse.redshift.RedshiftWarehouse`).
    """
    target = target_of(table)
    fs, paths, base = lake.table_files(store, table)
    files = {path[len(base) + 1 :]: path for path in paths}
    loaded, reloaded = take_stock(conn, target, set(files))
    new = sorted(set(files) - loaded)
    stage = f"stage_{table.lstrip('_')}"
    cols = ", ".join(f'"{c}"' for c in target.columns)
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {target.table}) ON COMMIT DROP")
    copied = 0
    with conn.cursor() as cur, cur.copy(f"COPY {stage} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for data, rows in _chunks([files[p] for p in new], table, base, fs):
            copy.write(data)
            copied += rows
    duplicates, conflicts = merge(conn, target, stage, "postgres")
    rows_in = {p: lake.footer_rows(fs, path) for p, path in files.items()}
    record_loaded(conn, table, [(p, rows_in[p]) for p in new])
    total = conn.execute(f"SELECT count(*) FROM {target.table}").fetchone()[0]
    return {
        "rows in lake": sum(rows_in.values()),
        "new files": len(new),
        "rows copied": copied,
        "duplicate ids": duplicates,
        "conflicting ids": conflicts,
        "rows in warehouse": total,
        "reloaded": int(reloaded),
    }


@dataclass
class PostgresWarehouse(StopsOnExit):
    """The lake's tables in a PostgreSQL database (the lab's embedded server, or one at a DSN); ``with`` stops
    the server if the lab started it."""

    server: PostgresServer

    def stop(self) -> None:
        """Stop the server if the lab started it."""
        self.server.stop()

    def connect(self) -> psycopg.Connection:
        return self.server.connect()

    def load_lake(self, store: LakeStore, topics: Sequence[str] = TOPICS) -> pd.DataFrame:
        """Load what is new in the lake, every table in one transaction; returns lake vs warehouse counts."""
        tables = [*topics, lake.QUARANTINE]
        results = {}
        with self.server.connect() as conn, conn.transaction():
            ensure_tables(conn, topics)
            follow_generation(conn, lake.generation(store), tables)
            for table in tqdm(tables, desc="loading", unit="table"):
                results[table] = load_table(conn, store, table)
        conflicts = {t: r["conflicting ids"] for t, r in results.items() if r["conflicting ids"]}
        if conflicts:
            print(
                f"warning: events with the id of another event but a different payload (kept in "
                f"{SCHEMA}.id_conflicts, first version loaded): {conflicts}"
            )
        return pd.DataFrame.from_dict(results, orient="index").rename_axis("table")

    def run_query(self, name: str) -> pd.DataFrame:
        """Run a named BI query (session time zone UTC) and return its result."""
        with self.server.connect() as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            cur = conn.execute(query_text(name))
            return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])

    def counts(self, topics: Sequence[str] = TOPICS) -> dict[str, int]:
        """Rows per topic table."""
        with self.server.connect() as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {SCHEMA}.{t}").fetchone()[0] for t in topics}
