"""The Redshift-style warehouse: bulk-load the lake with COPY, then run BI queries.

Loading follows Redshift's staging-table recipe, incrementally and all in one transaction:

* the warehouse remembers which lake files it has loaded (``smartcity._loaded_files``); a load
  COPYs only files it has not seen, streamed in bounded chunks (memory does not grow with the
  lake), into a staging table per lake table;
* the staged rows are merged by event id: an id the warehouse already has is not inserted again;
  an id seen twice with the *same* payload is a duplicate and counted; an id seen with a
  *different* payload is a conflict: the first version stays (the earlier Kafka offset, or the
  row already loaded), the others are kept in ``smartcity.id_conflicts`` and counted, never dropped
  silently;
* every table, the quarantine included, is loaded in the same transaction: a failed load leaves
  the previous state whole. A reset lake (a new run) is a new generation (``lake.generation``):
  the warehouse lets go of the previous generation's rows and loads the new lake from scratch. If
  files it loaded leave the lake without a reset (deleted by hand), the table is reloaded from the
  lake (``reloaded`` says so), so the warehouse always mirrors it.

Rows travel as CSV through ``COPY ... FROM STDIN``, never as row-by-row INSERTs. The merge SQL
uses only what Redshift also has (window functions, NOT EXISTS, MD5), so it carries over.
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
from tqdm import tqdm

from smartcity import contracts, lake, report, sql
from smartcity.config import TOPICS, Params
from smartcity.postgres import Warehouse

SCHEMA = "smartcity"
#: Rows per COPY chunk: what one Arrow batch turned into CSV holds in memory at a time.
COPY_ROWS = 50_000
QUARANTINE_TABLE = "quarantine"

_BOOKKEEPING = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}._lake (generation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}._loaded_files (
    table_name TEXT NOT NULL, path TEXT NOT NULL, row_count BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (table_name, path));
CREATE TABLE IF NOT EXISTS {SCHEMA}.id_conflicts (
    table_name TEXT NOT NULL, id TEXT NOT NULL, kafka_partition INTEGER, kafka_offset BIGINT,
    kept_kafka_partition INTEGER, kept_kafka_offset BIGINT, payload_md5 TEXT, kept_payload_md5 TEXT,
    found_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {SCHEMA}.{QUARANTINE_TABLE} (
    reason TEXT, preview TEXT, key BYTEA, value BYTEA, headers TEXT, kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL, kafka_timestamp TIMESTAMPTZ, topic TEXT NOT NULL,
    PRIMARY KEY (topic, kafka_partition, kafka_offset));
"""


def list_queries() -> list[str]:
    """Names of the BI queries shipped with the lab (``sql/redshift``), in order."""
    return sql.query_names("redshift")


def ensure_tables(conn: psycopg.Connection, topics: Sequence[str] = TOPICS) -> None:
    """Create the warehouse schema and one table per topic from the contracts, or evolve it.

    A table made under an older contract gains the new columns (nullable: old rows do not have
    them), and columns the contract no longer has stop being required. Nothing is dropped.
    """
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    conn.execute(_BOOKKEEPING)
    for topic in topics:
        conn.execute(contracts.create_table_sql(topic, f"{SCHEMA}.{topic}", "postgres"))
        existing = {
            name: nullable == "YES"
            for name, nullable in conn.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s", [SCHEMA, topic]
            ).fetchall()
        }
        wanted = {contracts.sql_name(n, "postgres"): kind for n, kind, _ in contracts.lake_columns(topic)}
        for name, kind in wanted.items():
            if name not in existing:
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ADD COLUMN "{name}" {contracts.sql_type(kind, "postgres")}')
        for name, nullable in existing.items():
            if name not in wanted and not nullable:
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ALTER COLUMN "{name}" DROP NOT NULL')


# -- turning lake files into COPY input ---------------------------------------------------------------
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
    clean = [{"key": "".join(c if c.isprintable() else "\ufffd" for c in str(h["key"])),
              "value_base64": None if h["value"] is None else base64.b64encode(h["value"]).decode()}
             for h in headers]
    return json.dumps(clean, ensure_ascii=True)


def _quarantine_csv(batch: pa.RecordBatch) -> bytes:
    buffer = io.StringIO()
    out = csv.writer(buffer)
    for row in batch.to_pylist():
        out.writerow([row["reason"], row["preview"], _bytea(row["key"]), _bytea(row["value"]),
                      _headers_json(row["headers"]), row["kafka_partition"], row["kafka_offset"],
                      row["kafka_timestamp"].isoformat() if row["kafka_timestamp"] else None, row["topic"]])
    return buffer.getvalue().encode()


def _chunks(files: list[Path], table: str, base: Path) -> Iterator[tuple[bytes, int]]:
    """The files' rows as CSV chunks of at most COPY_ROWS rows, in the latest schema (older files get nulls)."""
    if not files:
        return
    for batch in lake.dataset(files, table, base).to_batches(batch_size=COPY_ROWS):
        if batch.num_rows:
            yield (_quarantine_csv(batch) if table == lake.QUARANTINE else _topic_csv(batch, table)), batch.num_rows


# -- the load ----------------------------------------------------------------------------------------
@dataclass
class _Target:
    lake_table: str
    table: str  # schema-qualified warehouse table
    columns: list[str]
    payload: list[str]  # columns whose values make the event (not its Kafka lineage)


def _target(table: str) -> _Target:
    if table == lake.QUARANTINE:
        names = lake.quarantine_schema().names
        return _Target(table, f"{SCHEMA}.{QUARANTINE_TABLE}", names, [])
    columns = [contracts.sql_name(n, "postgres") for n, _, _ in contracts.lake_columns(table)]
    payload = [contracts.sql_name(f.name, "postgres") for f in contracts.fields_of(table)]
    return _Target(table, f"{SCHEMA}.{table}", columns, payload)


def _payload_md5(alias: str, columns: list[str]) -> str:
    """An MD5 of a row's payload that tells NULL from empty, in SQL both PostgreSQL and Redshift run."""
    parts = " || '|' || ".join(f"COALESCE(CAST({alias}.\"{c}\" AS VARCHAR), '<null>')" for c in columns)
    return f"MD5({parts})"


def load_table(conn: psycopg.Connection, cfg: Params, table: str) -> dict[str, int]:
    """Load one lake table's new files into the warehouse (inside the caller's transaction)."""
    target = _target(table)
    base = lake.table_path(cfg, table)
    files = {str(f.relative_to(base)): f for f in lake.data_files(base)}
    loaded = {p for (p,) in conn.execute(f"SELECT path FROM {SCHEMA}._loaded_files WHERE table_name = %s",
                                         [table]).fetchall()}
    has_rows = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {target.table})").fetchone()[0]
    reloaded = bool(loaded - set(files)) or (not loaded and has_rows)
    if reloaded:  # files left the lake, or rows the warehouse cannot trace: mirror the lake afresh
        conn.execute(f"DELETE FROM {target.table}")  # not TRUNCATE: on Redshift that would commit at once
        conn.execute(f"DELETE FROM {SCHEMA}._loaded_files WHERE table_name = %s", [table])
        loaded = set()
    new = sorted(set(files) - loaded)
    stage = f"stage_{table.lstrip('_')}"
    cols = ", ".join(f'"{c}"' for c in target.columns)
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {target.table}) ON COMMIT DROP")
    copied = 0
    with conn.cursor() as cur, cur.copy(f"COPY {stage} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for data, rows in _chunks([files[p] for p in new], table, base):
            copy.write(data)
            copied += rows
    duplicates = conflicts = 0
    if target.payload:
        duplicates, conflicts = _merge_events(conn, target, stage)
    else:
        conn.execute(f"INSERT INTO {target.table} ({cols}) SELECT {cols} FROM {stage} s WHERE NOT EXISTS "
                     f"(SELECT 1 FROM {target.table} t WHERE t.topic = s.topic AND t.kafka_partition = "
                     "s.kafka_partition AND t.kafka_offset = s.kafka_offset)")
    if new:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {SCHEMA}._loaded_files (table_name, path, row_count) VALUES (%s, %s, %s)",
                            [[table, p, lake.count_rows([files[p]])] for p in new])
    total = conn.execute(f"SELECT count(*) FROM {target.table}").fetchone()[0]
    return {"rows in lake": lake.count_rows(list(files.values())), "new files": len(new), "rows copied": copied,
            "duplicate ids": duplicates, "conflicting ids": conflicts, "rows in warehouse": total,
            "reloaded": int(reloaded)}


def _merge_events(conn: psycopg.Connection, target: _Target, stage: str) -> tuple[int, int]:
    """Insert the first version of each new id; count duplicates, keep conflicting versions aside."""
    cols = ", ".join(f'"{c}"' for c in target.columns)
    conn.execute(
        f"CREATE TEMP TABLE ranked_stage ON COMMIT DROP AS SELECT s.*, {_payload_md5('s', target.payload)} AS payload_md5, "
        "ROW_NUMBER() OVER (PARTITION BY s.id ORDER BY s.kafka_partition, s.kafka_offset) AS version "
        f"FROM {stage} s"
    )
    # the version that stands for each id: the one already loaded, else the earliest staged
    conn.execute(
        "CREATE TEMP TABLE kept ON COMMIT DROP AS "
        f"SELECT t.id, t.kafka_partition, t.kafka_offset, {_payload_md5('t', target.payload)} AS payload_md5 "
        f"FROM {target.table} t WHERE t.id IN (SELECT id FROM ranked_stage) "
        "UNION ALL SELECT r.id, r.kafka_partition, r.kafka_offset, r.payload_md5 FROM ranked_stage r "
        f"WHERE r.version = 1 AND NOT EXISTS (SELECT 1 FROM {target.table} t WHERE t.id = r.id)"
    )
    others = ("FROM ranked_stage r JOIN kept k ON k.id = r.id "
              "WHERE NOT (r.kafka_partition = k.kafka_partition AND r.kafka_offset = k.kafka_offset)")
    duplicates = conn.execute(f"SELECT count(*) {others} AND r.payload_md5 = k.payload_md5").fetchone()[0]
    conflicts = conn.execute(
        f"INSERT INTO {SCHEMA}.id_conflicts (table_name, id, kafka_partition, kafka_offset, kept_kafka_partition, "
        "kept_kafka_offset, payload_md5, kept_payload_md5) SELECT %s, r.id, r.kafka_partition, r.kafka_offset, "
        f"k.kafka_partition, k.kafka_offset, r.payload_md5, k.payload_md5 {others} AND r.payload_md5 <> k.payload_md5",
        [target.lake_table],
    ).rowcount
    conn.execute(
        f"INSERT INTO {target.table} ({cols}) SELECT {cols} FROM ranked_stage r WHERE r.version = 1 "
        f"AND NOT EXISTS (SELECT 1 FROM {target.table} t WHERE t.id = r.id)"
    )
    conn.execute("DROP TABLE ranked_stage")
    conn.execute("DROP TABLE kept")
    return duplicates, conflicts


def load_lake(cfg: Params, warehouse: Warehouse, topics: Sequence[str] = TOPICS) -> pd.DataFrame:
    """Load what is new in the lake, every table in one transaction; returns lake vs warehouse counts."""
    tables = [*topics, lake.QUARANTINE]
    results = {}
    with warehouse.connect() as conn, conn.transaction():
        ensure_tables(conn, topics)
        _follow_generation(conn, lake.generation(cfg), tables)
        for table in tqdm(tables, desc="loading", unit="table"):
            results[table] = load_table(conn, cfg, table)
    report.record_counts(cfg, "warehouse", {t: results[t]["rows in warehouse"] for t in topics})
    conflicts = {t: r["conflicting ids"] for t, r in results.items() if r["conflicting ids"]}
    if conflicts:
        print(f"warning: events with the id of another event but a different payload (kept in "
              f"{SCHEMA}.id_conflicts, first version loaded): {conflicts}")
    return pd.DataFrame.from_dict(results, orient="index").rename_axis("table")


def _follow_generation(conn: psycopg.Connection, current: str, tables: Sequence[str]) -> None:
    """A reset lake (a new run) is a new generation: the warehouse lets go of the previous one's rows."""
    stored = conn.execute(f"SELECT generation FROM {SCHEMA}._lake").fetchone()
    if stored is not None and stored[0] == current:
        return
    for table in tables:
        conn.execute(f"DELETE FROM {_target(table).table}")
    for bookkeeping in ("_loaded_files", "id_conflicts", "_lake"):
        conn.execute(f"DELETE FROM {SCHEMA}.{bookkeeping}")
    conn.execute(f"INSERT INTO {SCHEMA}._lake (generation) VALUES (%s)", [current])


def run_query(warehouse: Warehouse, name: str) -> pd.DataFrame:
    """Run a named BI query on the warehouse (session time zone UTC) and return its result."""
    with warehouse.connect() as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cur = conn.execute(sql.query_text("redshift", name))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    return frame


def warehouse_counts(warehouse: Warehouse, topics: Sequence[str] = TOPICS) -> dict[str, int]:
    with warehouse.connect() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {SCHEMA}.{t}").fetchone()[0] for t in topics}
