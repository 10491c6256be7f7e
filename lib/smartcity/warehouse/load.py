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

On AWS (``docs/decisions/0002-aws-profile.md`` §4) the lake is on S3 and the warehouse is Redshift
Serverless: files go in with ``COPY ... FORMAT AS PARQUET MANIFEST``. A Parquet COPY maps columns
by position, so each file layout (a v1 file lacks ``edgeId``; no file holds its partition column)
gets its own staging table shaped like the file, and ``INSERT ... SELECT`` fills the merge stage;
the merge and the ledger are the same code as above.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
from tqdm import tqdm

from smartcity.catalog import crawler as catalog
from smartcity.fleet import contracts
from smartcity.stream import lake
from smartcity.present import report
from smartcity.platform import sqlfiles
from smartcity.params import TOPICS, Params
from smartcity.platform.postgres import Warehouse
from smartcity.stream.store import LakeStore, ObjectInfo, open_store

if TYPE_CHECKING:
    import boto3

#: The BI queries, one file each, in SQL that runs unchanged on Redshift and PostgreSQL.
SQL_DIR = Path(__file__).with_name("sql")

SCHEMA = "smartcity"
#: Rows per COPY chunk: what one Arrow batch turned into CSV holds in memory at a time.
COPY_ROWS = 50_000
QUARANTINE_TABLE = "quarantine"
#: Redshift's staging tables, one per lake table and file layout (permanent: COPY needs a real table).
STAGE_SCHEMA = "smartcity_stage"
DIALECTS = ("postgres", "redshift")


class SqlSession(Protocol):
    """What the loader needs of a connection: psycopg's ``conn.execute``, returning a cursor."""

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any:
        ...

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

#: Quarantine columns per dialect: Redshift has no TEXT (it would be VARCHAR(256)) nor BYTEA, and
#: COPY turns the Parquet list of header structs into SUPER (SERIALIZETOJSON).
_QUARANTINE_TYPES = {
    "postgres": {"reason": "TEXT", "preview": "TEXT", "key": "BYTEA", "value": "BYTEA", "headers": "TEXT",
                 "kafka_partition": "INTEGER", "kafka_offset": "BIGINT", "kafka_timestamp": "TIMESTAMPTZ",
                 "topic": "TEXT"},
    "redshift": {"reason": "VARCHAR(65535)", "preview": "VARCHAR(65535)", "key": "VARBYTE(1024000)",
                 "value": "VARBYTE(1024000)", "headers": "SUPER", "kafka_partition": "INTEGER",
                 "kafka_offset": "BIGINT", "kafka_timestamp": "TIMESTAMPTZ", "topic": "VARCHAR(256)"},
}
_QUARANTINE_REQUIRED = ("kafka_partition", "kafka_offset", "topic")

#: The same bookkeeping in Redshift's dialect: sized VARCHARs, GETDATE(), one statement per call.
_REDSHIFT_BOOKKEEPING = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}._lake (generation VARCHAR(64) NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}._loaded_files (table_name VARCHAR(64) NOT NULL, path VARCHAR(1024) NOT NULL, "
    "row_count BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT GETDATE(), PRIMARY KEY (table_name, path))",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.id_conflicts (table_name VARCHAR(64) NOT NULL, id VARCHAR(512) NOT NULL, "
    "kafka_partition INTEGER, kafka_offset BIGINT, kept_kafka_partition INTEGER, kept_kafka_offset BIGINT, "
    "payload_md5 CHAR(32), kept_payload_md5 CHAR(32), found_at TIMESTAMPTZ NOT NULL DEFAULT GETDATE())",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{QUARANTINE_TABLE} ("
    + ", ".join(f'"{c}" {t}{" NOT NULL" if c in _QUARANTINE_REQUIRED else ""}'
                for c, t in _QUARANTINE_TYPES["redshift"].items())
    + ", PRIMARY KEY (topic, kafka_partition, kafka_offset))",
]


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown warehouse dialect {dialect!r}; use one of {', '.join(DIALECTS)}")


def list_queries() -> list[str]:
    """Names of the BI queries shipped with the lab (``sql/redshift``), in order."""
    return sqlfiles.query_names(SQL_DIR)


def ensure_tables(conn: SqlSession, topics: Sequence[str] = TOPICS, dialect: str = "postgres") -> None:
    """Create the warehouse schema and one table per topic from the contracts, or evolve it.

    A table made under an older contract gains the new columns (nullable: old rows do not have
    them), and columns the contract no longer has stop being required. Nothing is dropped.
    """
    _check_dialect(dialect)
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for statement in [_BOOKKEEPING] if dialect == "postgres" else _REDSHIFT_BOOKKEEPING:
        conn.execute(statement)
    for topic in topics:
        conn.execute(contracts.create_table_sql(topic, f"{SCHEMA}.{topic}", dialect))
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
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ADD COLUMN "{name}" {contracts.sql_type(kind, dialect)}')
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


def _chunks(files: Sequence[Path | str], table: str, base: Path | str,
            filesystem: pafs.FileSystem | None = None) -> Iterator[tuple[bytes, int]]:
    """The files' rows as CSV chunks of at most COPY_ROWS rows, in the latest schema (older files get nulls)."""
    if not files:
        return
    for batch in lake.dataset(files, table, base, filesystem).to_batches(batch_size=COPY_ROWS):
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


def load_table(conn: psycopg.Connection, store: LakeStore, table: str) -> dict[str, int]:
    """Load one lake table's new files into the warehouse (inside the caller's transaction).

    The files are read through the store's pyarrow file system: a folder, or S3 (the aws-moto profile
    loads PostgreSQL from S3 this way; Redshift COPYs from S3 itself, :class:`RedshiftWarehouse`).
    """
    target = _target(table)
    fs, paths, base = lake.table_files(store, table)
    files = {path[len(base) + 1:]: path for path in paths}
    loaded, reloaded = _take_stock(conn, target, set(files))
    new = sorted(set(files) - loaded)
    stage = f"stage_{table.lstrip('_')}"
    cols = ", ".join(f'"{c}"' for c in target.columns)
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {target.table}) ON COMMIT DROP")
    copied = 0
    with conn.cursor() as cur, cur.copy(f"COPY {stage} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for data, rows in _chunks([files[p] for p in new], table, base, fs):
            copy.write(data)
            copied += rows
    duplicates, conflicts = _merge(conn, target, stage, "postgres")
    rows_in = {p: lake.footer_rows(fs, path) for p, path in files.items()}
    if new:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {SCHEMA}._loaded_files (table_name, path, row_count) VALUES (%s, %s, %s)",
                            [[table, p, rows_in[p]] for p in new])
    total = conn.execute(f"SELECT count(*) FROM {target.table}").fetchone()[0]
    return {"rows in lake": sum(rows_in.values()), "new files": len(new), "rows copied": copied,
            "duplicate ids": duplicates, "conflicting ids": conflicts, "rows in warehouse": total,
            "reloaded": int(reloaded)}


def _take_stock(conn: SqlSession, target: _Target, in_lake: set[str]) -> tuple[set[str], bool]:
    """The files (relative to the table folder) the warehouse holds; the table is emptied first when
    files it loaded left the lake, or it holds rows it cannot trace to files (then ``reloaded``)."""
    loaded = {p for (p,) in conn.execute(f"SELECT path FROM {SCHEMA}._loaded_files WHERE table_name = %s",
                                         [target.lake_table]).fetchall()}
    has_rows = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {target.table} LIMIT 1) t").fetchone()[0] > 0
    reloaded = bool(loaded - in_lake) or (not loaded and has_rows)
    if reloaded:  # files left the lake, or rows the warehouse cannot trace: mirror the lake afresh
        conn.execute(f"DELETE FROM {target.table}")  # not TRUNCATE: on Redshift that would commit at once
        conn.execute(f"DELETE FROM {SCHEMA}._loaded_files WHERE table_name = %s", [target.lake_table])
        loaded = set()
    return loaded, reloaded


def _create_temp(dialect: str, name: str, *, like: str = "", query: str = "") -> str:
    """CREATE TEMP TABLE like a table or as a query. PostgreSQL drops it at commit; Redshift has no
    ON COMMIT clause (the loader drops its temp tables itself, and they die with the session anyway)."""
    on_commit = " ON COMMIT DROP" if dialect == "postgres" else ""
    if like:
        return f"CREATE TEMP TABLE {name} (LIKE {like}){on_commit}"
    return f"CREATE TEMP TABLE {name}{on_commit} AS {query}"


def _merge(conn: SqlSession, target: _Target, stage: str, dialect: str) -> tuple[int, int]:
    """Merge a stage shaped like the target into it; returns (duplicate ids, conflicting ids)."""
    if target.payload:
        return _merge_events(conn, target, stage, dialect)
    cols = ", ".join(f'"{c}"' for c in target.columns)  # the quarantine: one row per Kafka message
    conn.execute(f"INSERT INTO {target.table} ({cols}) SELECT {cols} FROM {stage} s WHERE NOT EXISTS "
                 f"(SELECT 1 FROM {target.table} t WHERE t.topic = s.topic AND t.kafka_partition = "
                 "s.kafka_partition AND t.kafka_offset = s.kafka_offset)")
    return 0, 0


def _merge_events(conn: SqlSession, target: _Target, stage: str, dialect: str = "postgres") -> tuple[int, int]:
    """Insert the first version of each new id; count duplicates, keep conflicting versions aside."""
    cols = ", ".join(f'"{c}"' for c in target.columns)
    conn.execute(_create_temp(
        dialect, "ranked_stage",
        query=f"SELECT s.*, {_payload_md5('s', target.payload)} AS payload_md5, "
        "ROW_NUMBER() OVER (PARTITION BY s.id ORDER BY s.kafka_partition, s.kafka_offset) AS version "
        f"FROM {stage} s"
    ))
    # the version that stands for each id: the one already loaded, else the earliest staged
    conn.execute(_create_temp(
        dialect, "kept",
        query=f"SELECT t.id, t.kafka_partition, t.kafka_offset, {_payload_md5('t', target.payload)} AS payload_md5 "
        f"FROM {target.table} t WHERE t.id IN (SELECT id FROM ranked_stage) "
        "UNION ALL SELECT r.id, r.kafka_partition, r.kafka_offset, r.payload_md5 FROM ranked_stage r "
        f"WHERE r.version = 1 AND NOT EXISTS (SELECT 1 FROM {target.table} t WHERE t.id = r.id)"
    ))
    others = ("FROM ranked_stage r JOIN kept k ON k.id = r.id "
              "WHERE NOT (r.kafka_partition = k.kafka_partition AND r.kafka_offset = k.kafka_offset)")
    duplicates = conn.execute(f"SELECT count(*) {others} AND r.payload_md5 = k.payload_md5").fetchone()[0]
    # counted with a SELECT, not the INSERT's rowcount, which Redshift's driver is not known to report
    conflicts = conn.execute(f"SELECT count(*) {others} AND r.payload_md5 <> k.payload_md5").fetchone()[0]
    conn.execute(
        f"INSERT INTO {SCHEMA}.id_conflicts (table_name, id, kafka_partition, kafka_offset, kept_kafka_partition, "
        "kept_kafka_offset, payload_md5, kept_payload_md5) SELECT %s, r.id, r.kafka_partition, r.kafka_offset, "
        f"k.kafka_partition, k.kafka_offset, r.payload_md5, k.payload_md5 {others} AND r.payload_md5 <> k.payload_md5",
        [target.lake_table],
    )
    conn.execute(
        f"INSERT INTO {target.table} ({cols}) SELECT {cols} FROM ranked_stage r WHERE r.version = 1 "
        f"AND NOT EXISTS (SELECT 1 FROM {target.table} t WHERE t.id = r.id)"
    )
    conn.execute("DROP TABLE ranked_stage")
    conn.execute("DROP TABLE kept")
    return duplicates, conflicts


def load_lake(cfg: Params, warehouse: Warehouse | RedshiftWarehouse, topics: Sequence[str] = TOPICS,
              store: LakeStore | None = None) -> pd.DataFrame:
    """Load what is new in the lake, every table in one transaction; returns lake vs warehouse counts."""
    store = store if store is not None else open_store(cfg)
    if isinstance(warehouse, RedshiftWarehouse):
        return warehouse.load_lake(store, topics)
    tables = [*topics, lake.QUARANTINE]
    results = {}
    with warehouse.connect() as conn, conn.transaction():
        ensure_tables(conn, topics)
        _follow_generation(conn, lake.generation(cfg, store), tables)
        for table in tqdm(tables, desc="loading", unit="table"):
            results[table] = load_table(conn, store, table)
    report.record_counts(cfg, "warehouse", {t: results[t]["rows in warehouse"] for t in topics})
    conflicts = {t: r["conflicting ids"] for t, r in results.items() if r["conflicting ids"]}
    if conflicts:
        print(f"warning: events with the id of another event but a different payload (kept in "
              f"{SCHEMA}.id_conflicts, first version loaded): {conflicts}")
    return pd.DataFrame.from_dict(results, orient="index").rename_axis("table")


def _follow_generation(conn: SqlSession, current: str, tables: Sequence[str]) -> None:
    """A reset lake (a new run) is a new generation: the warehouse lets go of the previous one's rows."""
    stored = conn.execute(f"SELECT generation FROM {SCHEMA}._lake").fetchone()
    if stored is not None and stored[0] == current:
        return
    for table in tables:
        conn.execute(f"DELETE FROM {_target(table).table}")
    for bookkeeping in ("_loaded_files", "id_conflicts", "_lake"):
        conn.execute(f"DELETE FROM {SCHEMA}.{bookkeeping}")
    conn.execute(f"INSERT INTO {SCHEMA}._lake (generation) VALUES (%s)", [current])


def run_query(warehouse: Warehouse | RedshiftWarehouse, name: str) -> pd.DataFrame:
    """Run a named BI query on the warehouse (session time zone UTC) and return its result."""
    if isinstance(warehouse, RedshiftWarehouse):
        return warehouse.run_query(name)
    with warehouse.connect() as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cur = conn.execute(sqlfiles.query_text(SQL_DIR, name, "redshift"))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    return frame


def warehouse_counts(warehouse: Warehouse, topics: Sequence[str] = TOPICS) -> dict[str, int]:
    with warehouse.connect() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {SCHEMA}.{t}").fetchone()[0] for t in topics}


# -- the Redshift path: COPY from the lake on S3 (0002 §4) --------------------------------------------
class WarehouseError(RuntimeError):
    """The Redshift warehouse cannot be reached or loaded; says what to do."""


#: The commit log's deterministic file names (0001): part-<batch>-<n>-<writer>.parquet.
_PART_NAME = re.compile(r"^part-(\d+)-(\d+)-([0-9A-Za-z]+)\.parquet$")
#: Where the warehouse keeps the COPY manifests of each load, relative to the store's root.
MANIFEST_PREFIX = "warehouse/manifests/"


def part_batch(key: str) -> tuple[int, str] | None:
    """(batch, writer) of a lake file the commit log named; None for a file named otherwise."""
    match = _PART_NAME.match(key.rsplit("/", 1)[-1])
    return (int(match.group(1)), match.group(3)) if match else None


def files_to_load(listing: Sequence[ObjectInfo], loaded: Collection[str], *, prefix: str,
                  writer: str | None, last_done: int | None) -> list[ObjectInfo]:
    """The files a load COPYs: the table's listing minus files in the ledger minus files in flight.

    ``loaded`` holds keys relative to ``prefix`` (the table folder, "lake/gps_data/"), as the
    ledger does. A file is in flight when the current ``writer`` published it for a batch after
    its last done one (``last_done``; None: none is done yet): its batch may be half published,
    and a COPY must never load half a batch. Files of other writers, or named otherwise, are whole.
    """
    chosen = []
    for info in listing:
        if not info.key.startswith(prefix):
            raise ValueError(f"{info.key!r} is not under {prefix!r}")
        if info.key[len(prefix):] in loaded:
            continue
        part = part_batch(info.key)
        if part and writer is not None and part[1] == writer and (last_done is None or part[0] > last_done):
            continue
        chosen.append(info)
    return sorted(chosen, key=lambda i: i.key)


def copy_manifest(files: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """A COPY manifest of (s3 url, size in bytes) pairs: every entry mandatory (a file missing fails
    the COPY rather than loading less), with the content_length a Parquet COPY requires."""
    if not files:
        raise ValueError("a COPY manifest needs at least one file")
    bad = [url for url, size in files if not url.startswith("s3://") or size <= 0]
    if bad:
        raise ValueError(f"manifest entries must be s3:// objects with a positive size, got {bad[:3]}")
    return {"entries": [{"url": url, "mandatory": True, "meta": {"content_length": int(size)}} for url, size in files]}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def copy_statement(stage_table: str, manifest_url: str, role_arn: str, *, serialize_to_json: bool = False) -> str:
    """The COPY of a manifest's Parquet files into a staging table shaped like them (columns by position).

    SERIALIZETOJSON loads nested Parquet columns (the quarantine's headers) into SUPER.
    """
    if not manifest_url.startswith("s3://"):
        raise ValueError(f"a COPY manifest must be an s3:// object, got {manifest_url!r}")
    if not role_arn.startswith("arn:"):
        raise ValueError(f"COPY needs the ARN of the role Redshift reads the lake with, got {role_arn!r}")
    lines = [f"COPY {stage_table}", f"FROM {_quote(manifest_url)}", f"IAM_ROLE {_quote(role_arn)}",
             "FORMAT AS PARQUET"]
    if serialize_to_json:
        lines.append("SERIALIZETOJSON")
    lines.append("MANIFEST")
    return "\n".join(lines)


@dataclass(frozen=True)
class FileLayout:
    """The columns of a group of one lake table's files, in file order, as (name, Arrow type)."""

    table: str
    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def stage_table(self) -> str:
        """Its staging table: one per table and layout, named after a digest of the columns."""
        digest = hashlib.sha1(repr(self.columns).encode()).hexdigest()[:10]
        return f"{STAGE_SCHEMA}.{catalog.catalog_name(self.table)}_{digest}"

    @property
    def nested(self) -> bool:
        """Columns COPY can load only with SERIALIZETOJSON (lists, structs)."""
        return any(kind.startswith(("list<", "struct<", "large_list<")) for _, kind in self.columns)


def file_layout(table: str, schema: pa.Schema) -> FileLayout:
    return FileLayout(table, tuple((f.name, str(f.type)) for f in schema))


def _column_types(table: str, dialect: str) -> dict[str, str]:
    """Warehouse column name -> SQL type of every column a lake table's files may hold."""
    if table == lake.QUARANTINE:
        return dict(_QUARANTINE_TYPES[dialect])
    return {contracts.sql_name(n, dialect): contracts.sql_type(kind, dialect)
            for n, kind, _ in contracts.lake_columns(table)}


def staging_table_sql(layout: FileLayout, dialect: str = "redshift") -> str:
    """CREATE TABLE of a layout's staging table: the file's columns, in the file's order, all nullable."""
    _check_dialect(dialect)
    types = _column_types(layout.table, dialect)
    unknown = [n for n in layout.names if contracts.sql_name(n, dialect) not in types]
    if unknown:
        raise WarehouseError(f"files of {layout.table} hold columns no contract knows: {unknown}")
    names = [contracts.sql_name(n, dialect) for n in layout.names]
    cols = ", ".join(f'"{name}" {types[name]}' for name in names)
    return f"CREATE TABLE IF NOT EXISTS {layout.stage_table} ({cols})"


def stage_insert_sql(layout: FileLayout, merge_stage: str, partition_value: str | None = None) -> tuple[str, list[Any]]:
    """INSERT ... SELECT from a layout's staging table into the merge stage (shaped like the target).

    Columns the files lack are NULL (a v1 file's edgeId); ``event_date``, a path partition, is the
    event's UTC date, which is how the stream chose the partition; the quarantine's ``topic``, also
    a path partition, is the partition value of the files copied (one COPY per value).
    """
    target = _target(layout.table)
    held = {contracts.sql_name(n, "postgres") for n in layout.names}
    exprs: list[str] = []
    params: list[Any] = []
    for col in target.columns:
        if col in held:
            exprs.append(f's."{col}"')
        elif col == "event_date" and "timestamp" in held:
            exprs.append("CAST(s.\"timestamp\" AT TIME ZONE 'UTC' AS DATE)")
        elif layout.table == lake.QUARANTINE and col == lake.PARTITION[lake.QUARANTINE]:
            if partition_value is None:
                raise ValueError("quarantine files are copied one topic partition at a time: pass its value")
            exprs.append("%s")
            params.append(partition_value)
        else:
            exprs.append("NULL")
    cols = ", ".join(f'"{c}"' for c in target.columns)
    return f"INSERT INTO {merge_stage} ({cols}) SELECT {', '.join(exprs)} FROM {layout.stage_table} s", params


#: Loads a group of files (one layout, one partition value for the quarantine) into the layout's staging table.
CopyFiles = Callable[[FileLayout, list[ObjectInfo]], None]


def load_table_from_files(conn: SqlSession, table: str, listing: Sequence[ObjectInfo],
                          open_footer: catalog.FooterReader, copy_files: CopyFiles, *, dialect: str,
                          writer: str | None = None, last_done: int | None = None) -> dict[str, int]:
    """Load one lake table's new files through per-layout staging tables (inside the caller's transaction).

    ``listing`` is the table's published files (keys "lake/<table>/..."), ``open_footer`` reads a
    footer by key relative to the table folder, and ``copy_files`` fills a staging table (Redshift:
    a manifest and a COPY). The ledger, the reload rule and the merge are those of :func:`load_table`.
    """
    _check_dialect(dialect)
    target = _target(table)
    prefix = f"lake/{table}/"
    in_lake = {info.key[len(prefix):] for info in listing if info.key.startswith(prefix)}
    loaded, reloaded = _take_stock(conn, target, in_lake)
    new = files_to_load(listing, loaded, prefix=prefix, writer=writer, last_done=last_done)
    groups: dict[tuple[FileLayout, str | None], list[tuple[ObjectInfo, int]]] = {}
    for info in new:
        rel = info.key[len(prefix):]
        footer = open_footer(rel)
        value = lake.partition_of(Path(rel)).get(lake.PARTITION[table]) if table == lake.QUARANTINE else None
        groups.setdefault((file_layout(table, footer.schema_arrow), value), []).append((info, footer.metadata.num_rows))
    stage = f"stage_{table.lstrip('_')}"
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA}")
    conn.execute(_create_temp(dialect, stage, like=target.table))
    copied = 0
    for (layout, value), entries in groups.items():
        conn.execute(staging_table_sql(layout, dialect))
        conn.execute(f"DELETE FROM {layout.stage_table}")  # not TRUNCATE, which commits at once on Redshift
        copy_files(layout, [info for info, _ in entries])
        rows = conn.execute(f"SELECT count(*) FROM {layout.stage_table}").fetchone()[0]
        expected = sum(n for _, n in entries)
        if rows != expected:
            raise WarehouseError(
                f"{layout.stage_table}: the COPY loaded {rows} rows, the files' footers say {expected}")
        conn.execute(*stage_insert_sql(layout, stage, value))
        copied += rows
    duplicates, conflicts = _merge(conn, target, stage, dialect)
    conn.execute(f"DROP TABLE {stage}")
    ledger = [(info, n) for entries in groups.values() for info, n in entries]
    for chunk in (ledger[i:i + 500] for i in range(0, len(ledger), 500)):
        conn.execute(f"INSERT INTO {SCHEMA}._loaded_files (table_name, path, row_count) VALUES "
                     + ", ".join(["(%s, %s, %s)"] * len(chunk)),
                     [v for info, n in chunk for v in (table, info.key[len(prefix):], n)])
    in_ledger = conn.execute(f"SELECT count(*), coalesce(sum(row_count), 0) FROM {SCHEMA}._loaded_files "
                             "WHERE table_name = %s", [table]).fetchone()
    total = conn.execute(f"SELECT count(*) FROM {target.table}").fetchone()[0]
    return {"rows in lake": int(in_ledger[1]), "new files": len(new), "rows copied": copied,
            "duplicate ids": duplicates, "conflicting ids": conflicts, "rows in warehouse": total,
            "reloaded": int(reloaded), "files in flight": len(in_lake) - int(in_ledger[0])}


class CursorSession:
    """A DB-API connection (redshift_connector) seen through psycopg's ``conn.execute``."""

    def __init__(self, connection: Any) -> None:
        self._cursor = connection.cursor()

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any:
        self._cursor.execute(query, params)
        return self._cursor


class RedshiftWarehouse:
    """Redshift Serverless, reached with temporary database credentials from IAM (GetCredentials).

    The boto3 session signs the calls (credentials from the standard chain, never from params);
    each connection gets a fresh password valid for an hour.
    """

    dialect = "redshift"

    def __init__(self, cfg: Params, boto3_session: boto3.Session | None = None) -> None:
        import boto3

        self.cfg = cfg
        self.session = boto3_session or boto3.Session(region_name=cfg.aws_region or None)

    def __repr__(self) -> str:
        return f"RedshiftWarehouse(workgroup={self.cfg.redshift_workgroup!r}, database={self.cfg.redshift_database!r})"

    def stop(self) -> None:
        """Nothing to stop: the lab starts no Redshift, and each call closes its own connection."""

    def _serverless(self) -> Any:
        return self.session.client("redshift-serverless")

    def connection_args(self) -> dict[str, Any]:
        """Host, port, database and a temporary user and password for redshift_connector.connect."""
        client = self._serverless()
        name = self.cfg.redshift_workgroup
        try:
            endpoint = client.get_workgroup(workgroupName=name)["workgroup"]["endpoint"]
        except client.exceptions.ResourceNotFoundException:
            raise WarehouseError(
                f"no Redshift Serverless workgroup {name!r} in {self.session.region_name}: "
                "create it with `smartcity aws provision` (or set redshift_workgroup)"
            ) from None
        creds = client.get_credentials(workgroupName=name, dbName=self.cfg.redshift_database, durationSeconds=3600)
        return {"host": endpoint["address"], "port": int(endpoint["port"]), "database": self.cfg.redshift_database,
                "user": creds["dbUser"], "password": creds["dbPassword"], "ssl": True}

    def connect(self) -> Any:
        """A new redshift_connector connection (autocommit off: every load is one transaction)."""
        try:
            import redshift_connector
        except ImportError:
            raise WarehouseError("warehouse redshift needs the redshift-connector package: "
                                 "pip install redshift-connector") from None
        return redshift_connector.connect(**self.connection_args())

    @contextmanager
    def transaction(self) -> Iterator[CursorSession]:
        """One transaction on a new connection: committed if the block succeeds, rolled back otherwise."""
        conn = self.connect()
        try:
            yield CursorSession(conn)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def load_lake(self, store: LakeStore, topics: Sequence[str] = TOPICS,
                  list_files: Callable[[LakeStore, str], list[ObjectInfo]] | None = None) -> pd.DataFrame:
        """Load what is new in the lake on S3, every table in one transaction; lake vs warehouse counts."""
        list_files = list_files or lake.list_data_files
        tables = [*topics, lake.QUARANTINE]
        generation = lake.generation(self.cfg, store)
        writer, last_done = lake.writer_progress(store)
        load_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        manifests = f"{MANIFEST_PREFIX}{generation}/{load_id}/"
        results = {}
        with self.transaction() as conn:
            ensure_tables(conn, topics, dialect="redshift")
            _follow_generation(conn, generation, tables)
            for table in tables:
                prefix = f"lake/{table}/"
                results[table] = load_table_from_files(
                    conn, table, list_files(store, table), catalog.footer_reader(store, prefix),
                    _manifest_copier(conn, store, manifests, self.cfg.redshift_copy_role_arn),
                    dialect="redshift", writer=writer, last_done=last_done)
        report.record_counts(self.cfg, "warehouse", {t: results[t]["rows in warehouse"] for t in topics})
        return pd.DataFrame.from_dict(results, orient="index").rename_axis("table")

    def run_query(self, name: str) -> pd.DataFrame:
        """Run a named BI query (session time zone UTC) and return its result."""
        with self.transaction() as conn:
            conn.execute("SET timezone TO 'UTC'")
            cur = conn.execute(sqlfiles.query_text(SQL_DIR, name, "redshift"))
            return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])


def _manifest_copier(conn: SqlSession, store: LakeStore, prefix: str, role_arn: str) -> CopyFiles:
    """COPY through a manifest written beside the lake (outside lake/ and checkpoints/)."""
    numbers = itertools.count()

    def copy(layout: FileLayout, files: list[ObjectInfo]) -> None:
        key = f"{prefix}{layout.stage_table.split('.')[-1]}-{next(numbers):04d}.json"
        manifest = copy_manifest([(store.uri(f.key), f.size) for f in files])
        store.put(key, json.dumps(manifest, indent=1).encode())
        conn.execute(copy_statement(layout.stage_table, store.uri(key), role_arn, serialize_to_json=layout.nested))

    return copy
