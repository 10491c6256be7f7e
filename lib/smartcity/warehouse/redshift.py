"""The warehouse on Redshift Serverless: COPY from the lake on S3, through manifests of whole batches.

On AWS (``docs/decisions/0002-aws-profile.md`` §4) the lake is on S3 and files go in with ``COPY ...
FORMAT AS PARQUET MANIFEST``. A Parquet COPY maps columns by position, so each file layout (a v1
file lacks ``edgeId``; no file holds its partition column) gets its own staging table shaped like
the file, and ``INSERT ... SELECT`` fills the merge stage; the merge and the ledger of loaded
files are PostgreSQL's (:mod:`smartcity.warehouse.merge`). A load never takes a file of a batch
the stream is still publishing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from smartcity.catalog.crawler import FooterReader, catalog_name, footer_reader
from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS
from smartcity.platform.engine_params import WarehouseParams
from smartcity.platform.processes import StopsOnExit
from smartcity.stream import commits, lake
from smartcity.stream.store import LakeStore, ObjectInfo
from smartcity.warehouse.merge import create_temp, follow_generation, merge, record_loaded, take_stock
from smartcity.warehouse.schema import (
    QUARANTINE_TYPES,
    SCHEMA,
    STAGE_SCHEMA,
    SqlSession,
    check_dialect,
    ensure_tables,
    query_text,
    target_of,
)

if TYPE_CHECKING:
    import boto3


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


def files_to_load(
    listing: Sequence[ObjectInfo], loaded: Collection[str], *, prefix: str, writer: str | None, last_done: int | None
) -> list[ObjectInfo]:
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
        if info.key[len(prefix) :] in loaded:
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
    lines = [f"COPY {stage_table}", f"FROM {_quote(manifest_url)}", f"IAM_ROLE {_quote(role_arn)}", "FORMAT AS PARQUET"]
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
        return f"{STAGE_SCHEMA}.{catalog_name(self.table)}_{digest}"

    @property
    def nested(self) -> bool:
        """Columns COPY can load only with SERIALIZETOJSON (lists, structs)."""
        return any(kind.startswith(("list<", "struct<", "large_list<")) for _, kind in self.columns)


def file_layout(table: str, schema: pa.Schema) -> FileLayout:
    return FileLayout(table, tuple((f.name, str(f.type)) for f in schema))


def _column_types(table: str, dialect: str) -> dict[str, str]:
    """Warehouse column name -> SQL type of every column a lake table's files may hold."""
    if table == lake.QUARANTINE:
        return dict(QUARANTINE_TYPES[dialect])
    return {
        contracts.sql_name(n, dialect): contracts.sql_type(kind, dialect)
        for n, kind, _ in contracts.lake_columns(table)
    }


def staging_table_sql(layout: FileLayout, dialect: str = "redshift") -> str:
    """CREATE TABLE of a layout's staging table: the file's columns, in the file's order, all nullable."""
    check_dialect(dialect)
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
    target = target_of(layout.table)
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


def _by_layout(
    table: str, new: Sequence[ObjectInfo], prefix: str, open_footer: FooterReader
) -> dict[tuple[FileLayout, str | None], list[tuple[ObjectInfo, int]]]:
    """The new files grouped by column layout (and, for the quarantine, by topic partition), each with
    its rows from its footer: one COPY per group."""
    groups: dict[tuple[FileLayout, str | None], list[tuple[ObjectInfo, int]]] = {}
    for info in new:
        rel = info.key[len(prefix) :]
        footer = open_footer(rel)
        value = lake.partition_of(Path(rel)).get(lake.PARTITION[table]) if table == lake.QUARANTINE else None
        groups.setdefault((file_layout(table, footer.schema_arrow), value), []).append((info, footer.metadata.num_rows))
    return groups


def load_table_from_files(
    conn: SqlSession,
    table: str,
    listing: Sequence[ObjectInfo],
    open_footer: FooterReader,
    copy_files: CopyFiles,
    *,
    dialect: str,
    writer: str | None = None,
    last_done: int | None = None,
) -> dict[str, int]:
    """Load one lake table's new files through per-layout staging tables (inside the caller's transaction).

    ``listing`` is the table's published files (keys "lake/<table>/..."), ``open_footer`` reads a
    footer by key relative to the table folder, and ``copy_files`` fills a staging table (Redshift:
    a manifest and a COPY). The ledger, the reload rule and the merge are those of :func:`load_table`.
    """
    check_dialect(dialect)
    target = target_of(table)
    prefix = f"lake/{table}/"
    in_lake = {info.key[len(prefix) :] for info in listing if info.key.startswith(prefix)}
    loaded, reloaded = take_stock(conn, target, in_lake)
    new = files_to_load(listing, loaded, prefix=prefix, writer=writer, last_done=last_done)
    groups = _by_layout(table, new, prefix, open_footer)
    stage = f"stage_{table.lstrip('_')}"
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA}")
    conn.execute(create_temp(dialect, stage, like=target.table))
    copied = 0
    for (layout, value), entries in groups.items():
        conn.execute(staging_table_sql(layout, dialect))
        conn.execute(f"DELETE FROM {layout.stage_table}")  # not TRUNCATE, which commits at once on Redshift
        copy_files(layout, [info for info, _ in entries])
        rows = conn.execute(f"SELECT count(*) FROM {layout.stage_table}").fetchone()[0]
        expected = sum(n for _, n in entries)
        if rows != expected:
            raise WarehouseError(
                f"{layout.stage_table}: the COPY loaded {rows} rows, the files' footers say {expected}"
            )
        conn.execute(*stage_insert_sql(layout, stage, value))
        copied += rows
    duplicates, conflicts = merge(conn, target, stage, dialect)
    conn.execute(f"DROP TABLE {stage}")
    record_loaded(conn, table, [(info.key[len(prefix) :], n) for entries in groups.values() for info, n in entries])
    in_ledger = conn.execute(
        f"SELECT count(*), coalesce(sum(row_count), 0) FROM {SCHEMA}._loaded_files WHERE table_name = %s", [table]
    ).fetchone()
    total = conn.execute(f"SELECT count(*) FROM {target.table}").fetchone()[0]
    return {
        "rows in lake": int(in_ledger[1]),
        "new files": len(new),
        "rows copied": copied,
        "duplicate ids": duplicates,
        "conflicting ids": conflicts,
        "rows in warehouse": total,
        "reloaded": int(reloaded),
        "files in flight": len(in_lake) - int(in_ledger[0]),
    }


class CursorSession:
    """A DB-API connection (redshift_connector) seen through psycopg's ``conn.execute``."""

    def __init__(self, connection: Any) -> None:
        self._cursor = connection.cursor()

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any:
        self._cursor.execute(query, params)
        return self._cursor


class RedshiftWarehouse(StopsOnExit):
    """Redshift Serverless, reached with temporary database credentials from IAM (GetCredentials).

    The boto3 session signs the calls (credentials from the standard chain, never from params);
    each connection gets a fresh password valid for an hour.
    """

    dialect = "redshift"

    def __init__(self, params: WarehouseParams, boto3_session: boto3.Session) -> None:
        self.params = params
        self.session = boto3_session

    def __repr__(self) -> str:
        return f"RedshiftWarehouse(workgroup={self.params.redshift_workgroup!r}, database={self.params.redshift_database!r})"

    def stop(self) -> None:
        """Nothing to stop: the lab starts no Redshift, and each call closes its own connection."""

    def _serverless(self) -> Any:
        return self.session.client("redshift-serverless")

    def connection_args(self) -> dict[str, Any]:
        """Host, port, database and a temporary user and password for redshift_connector.connect."""
        client = self._serverless()
        name = self.params.redshift_workgroup
        try:
            endpoint = client.get_workgroup(workgroupName=name)["workgroup"]["endpoint"]
        except client.exceptions.ResourceNotFoundException:
            raise WarehouseError(
                f"no Redshift Serverless workgroup {name!r} in {self.session.region_name}: "
                "create it with `smartcity aws provision` (or set redshift_workgroup)"
            ) from None
        creds = client.get_credentials(workgroupName=name, dbName=self.params.redshift_database, durationSeconds=3600)
        return {
            "host": endpoint["address"],
            "port": int(endpoint["port"]),
            "database": self.params.redshift_database,
            "user": creds["dbUser"],
            "password": creds["dbPassword"],
            "ssl": True,
        }

    def connect(self) -> Any:
        """A new redshift_connector connection (autocommit off: every load is one transaction)."""
        try:
            import redshift_connector  # noqa: PLC0415 - the `aws` extra: the lab imports without it
        except ImportError:
            raise WarehouseError(
                "warehouse redshift needs the redshift-connector package: pip install redshift-connector"
            ) from None
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

    def load_lake(
        self,
        store: LakeStore,
        topics: Sequence[str] = TOPICS,
        list_files: Callable[[LakeStore, str], list[ObjectInfo]] | None = None,
    ) -> pd.DataFrame:
        """Load what is new in the lake on S3, every table in one transaction; lake vs warehouse counts."""
        list_files = list_files or lake.list_data_files
        tables = [*topics, lake.QUARANTINE]
        generation = lake.generation(store)
        writer, last_done = commits.writer_progress(store)
        load_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        manifests = f"{MANIFEST_PREFIX}{generation}/{load_id}/"
        results = {}
        with self.transaction() as conn:
            ensure_tables(conn, topics, dialect="redshift")
            follow_generation(conn, generation, tables)
            for table in tables:
                prefix = f"lake/{table}/"
                results[table] = load_table_from_files(
                    conn,
                    table,
                    list_files(store, table),
                    footer_reader(store, prefix),
                    _manifest_copier(conn, store, manifests, self.params.redshift_copy_role_arn),
                    dialect="redshift",
                    writer=writer,
                    last_done=last_done,
                )
        return pd.DataFrame.from_dict(results, orient="index").rename_axis("table")

    def run_query(self, name: str) -> pd.DataFrame:
        """Run a named BI query (session time zone UTC) and return its result."""
        with self.transaction() as conn:
            conn.execute("SET timezone TO 'UTC'")
            cur = conn.execute(query_text(name))
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
