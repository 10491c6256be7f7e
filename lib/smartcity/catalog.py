"""A Glue-style crawler and Data Catalog on DuckDB.

The crawler reads what is in the lake, not what we think is there: table folders, the files the
stream committed, their Parquet schemas and their Hive partitions. It records them in a
persistent DuckDB file: metadata tables in schema ``metadata`` (tables, columns, partitions, as
Glue keeps them) and, in schema ``smartcity`` (the Glue database), one view per table over its
committed files, which is what the Athena-style SQL queries.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartcity import lake, report
from smartcity.config import Params, display_path

DATABASE = "smartcity"

_GLUE_TYPES = {
    "string": "string", "large_string": "string", "double": "double", "float": "float", "int32": "int",
    "int64": "bigint", "bool": "boolean", "date32[day]": "date",
}

_DDL = """
CREATE SCHEMA IF NOT EXISTS metadata;
CREATE SCHEMA IF NOT EXISTS smartcity;
CREATE TABLE IF NOT EXISTS metadata.tables (
    table_name VARCHAR PRIMARY KEY, location VARCHAR, format VARCHAR, partition_keys VARCHAR,
    files INTEGER, row_count BIGINT);
CREATE TABLE IF NOT EXISTS metadata.columns (
    table_name VARCHAR, position INTEGER, column_name VARCHAR, data_type VARCHAR, is_partition BOOLEAN,
    PRIMARY KEY (table_name, column_name));
CREATE TABLE IF NOT EXISTS metadata.partitions (
    table_name VARCHAR, partition_value VARCHAR, files INTEGER, row_count BIGINT,
    PRIMARY KEY (table_name, partition_value));
"""


def catalog_name(folder: str) -> str:
    """Catalog table name of a lake folder ('_quarantine' is catalogued as 'quarantine')."""
    return folder.lstrip("_")


def glue_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return _GLUE_TYPES.get(str(arrow_type), str(arrow_type))


def connect(cfg: Params, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the catalog database (created on first use)."""
    cfg.catalog_path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not cfg.catalog_path.exists():
        raise FileNotFoundError(f"no catalog at {display_path(cfg.catalog_path)}: run 03_catalog first")
    return duckdb.connect(str(cfg.catalog_path), read_only=read_only)


def _sql_list(files: list[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def crawl(cfg: Params) -> pd.DataFrame:
    """Crawl the lake and (re)register every table; safe to re-run. Returns the table summary."""
    con = connect(cfg)
    try:
        con.execute(_DDL)
        con.execute("BEGIN TRANSACTION")
        for folder in lake.tables(cfg):
            _register(con, cfg, folder)
        con.execute("COMMIT")
        report.record_counts(cfg, "catalog", _view_counts(con))
        return con.execute(
            "SELECT table_name, location, partition_keys, files, row_count FROM metadata.tables ORDER BY table_name"
        ).df().set_index("table_name")
    finally:
        con.close()


def _register(con: duckdb.DuckDBPyConnection, cfg: Params, folder: str) -> None:
    name = catalog_name(folder)
    root = lake.table_path(cfg, folder)
    files = lake.committed_files(root)
    for meta in ("tables", "columns", "partitions"):
        con.execute(f"DELETE FROM metadata.{meta} WHERE table_name = ?", [name])
    if not files:
        con.execute(f'DROP VIEW IF EXISTS {DATABASE}."{name}"')
        return
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    keys = list(lake.partition_of(files[0]))
    by_partition = lake.partitions(files)
    rows = {part: lake.count_rows(fs) for part, fs in by_partition.items()}
    con.execute(
        "INSERT INTO metadata.tables VALUES (?, ?, 'parquet', ?, ?, ?)",
        [name, display_path(root), ",".join(keys), len(files), sum(rows.values())],
    )
    columns = [(c.name, glue_type(c.type), False) for c in schema if c.name not in keys]
    columns += [(k, "date" if k.endswith("_date") else "string", True) for k in keys]
    con.executemany(
        "INSERT INTO metadata.columns VALUES (?, ?, ?, ?, ?)",
        [[name, i + 1, col, kind, part] for i, (col, kind, part) in enumerate(columns)],
    )
    con.executemany(
        "INSERT INTO metadata.partitions VALUES (?, ?, ?, ?)",
        [[name, part, len(fs), rows[part]] for part, fs in by_partition.items()],
    )
    con.execute(
        f'CREATE OR REPLACE VIEW {DATABASE}."{name}" AS SELECT * FROM read_parquet({_sql_list(files)}, '
        "hive_partitioning = true, union_by_name = true)"
    )


def describe(cfg: Params, what: str, table: str | None = None) -> pd.DataFrame:
    """One of the catalog's metadata tables ('tables', 'columns', 'partitions'), optionally for one table."""
    if what not in ("tables", "columns", "partitions"):
        raise ValueError(f"unknown catalog table {what!r}: use tables, columns or partitions")
    order = {"tables": "table_name", "columns": "table_name, position", "partitions": "table_name, partition_value"}
    where = "WHERE table_name = ?" if table else ""
    con = connect(cfg, read_only=True)
    try:
        frame = con.execute(f"SELECT * FROM metadata.{what} {where} ORDER BY {order[what]}", [table] if table else []).df()
    finally:
        con.close()
    if table and frame.empty:
        raise KeyError(f"table {table!r} is not in the catalog; crawl the lake first (03_catalog)")
    return frame


def _view_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [r[0] for r in con.execute("SELECT table_name FROM metadata.tables ORDER BY 1").fetchall()]
    return {n: con.execute(f'SELECT count(*) FROM {DATABASE}."{n}"').fetchone()[0] for n in names}


def view_counts(cfg: Params) -> dict[str, int]:
    """Rows each catalogued table returns when queried (through its view, not the metadata)."""
    con = connect(cfg, read_only=True)
    try:
        return _view_counts(con)
    finally:
        con.close()
