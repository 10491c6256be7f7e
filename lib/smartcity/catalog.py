"""A Glue-style crawler and Data Catalog on DuckDB.

The crawler reads what is in the lake, not what we think is there: table folders, their Parquet
files, schemas and Hive partitions. It records them in a persistent DuckDB file: metadata tables
in schema ``metadata`` (tables, columns, partitions and the files seen, as Glue keeps them) and,
in schema ``smartcity`` (the Glue database), one view per table over a glob of its folder, as an
Athena table is a prefix: queries see every file published since, and a glob of the folder is
exactly-once by the lake's design (:mod:`smartcity.lake`).

Crawling is incremental, like a Glue crawler with "crawl new folders only": only files it has not
seen are opened (their footers: rows and schema); schemas are merged, so files of an older
contract version stay readable beside newer ones. If files disappeared (a reset lake), the table
is crawled afresh.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartcity import lake, report
from smartcity.config import TOPICS, Params, display_path

DATABASE = "smartcity"

_GLUE_TYPES = {
    "string": "string", "large_string": "string", "double": "double", "float": "float", "int32": "int",
    "int64": "bigint", "bool": "boolean", "date32[day]": "date", "binary": "binary",
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
CREATE TABLE IF NOT EXISTS metadata.files (
    table_name VARCHAR, path VARCHAR, partition_value VARCHAR, row_count BIGINT, schema_text VARCHAR,
    PRIMARY KEY (table_name, path));
"""


def catalog_name(folder: str) -> str:
    """Catalog table name of a lake folder ('_quarantine' is catalogued as 'quarantine')."""
    return folder.lstrip("_")


def glue_type(arrow_type: pa.DataType) -> str:
    """The Glue/Athena type name of an Arrow type (nested types spelled as Hive does)."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_list(arrow_type):
        return f"array<{glue_type(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        return "struct<" + ",".join(f"{f.name}:{glue_type(f.type)}" for f in arrow_type) + ">"
    return _GLUE_TYPES.get(str(arrow_type), str(arrow_type))


def connect(cfg: Params, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the catalog database (created on first use)."""
    cfg.catalog_path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not cfg.catalog_path.exists():
        raise FileNotFoundError(f"no catalog at {display_path(cfg.catalog_path)}: run 03_catalog first")
    return duckdb.connect(str(cfg.catalog_path), read_only=read_only)


def table_glob(root: Path) -> str:
    """The glob a reader points at a table folder: every Parquet file below it."""
    return str(root / "**" / "*.parquet")


def crawl(cfg: Params) -> pd.DataFrame:
    """Crawl the lake and register every table; only files not seen before are read. Safe to re-run.

    Returns the table summary with how many files this crawl had to open.
    """
    con = connect(cfg)
    try:
        con.execute(_DDL)
        con.execute("BEGIN TRANSACTION")
        opened = {catalog_name(folder): _register(con, cfg, folder) for folder in (*TOPICS, lake.QUARANTINE)}
        con.execute("COMMIT")
        report.record_counts(cfg, "catalog", _view_counts(con))
        summary = con.execute(
            "SELECT table_name, location, partition_keys, files, row_count FROM metadata.tables ORDER BY table_name"
        ).df().set_index("table_name")
    finally:
        con.close()
    summary["files read"] = [opened.get(name, 0) for name in summary.index]
    return summary


def _register(con: duckdb.DuckDBPyConnection, cfg: Params, folder: str) -> int:
    """Bring one table's entries up to date with its folder; returns the number of files opened."""
    name = catalog_name(folder)
    root = lake.table_path(cfg, folder)
    files = {str(f.relative_to(root)): f for f in lake.data_files(root)}
    seen = {r[0] for r in con.execute("SELECT path FROM metadata.files WHERE table_name = ?", [name]).fetchall()}
    if seen - set(files):  # files vanished: the lake was reset or rewritten, crawl the table afresh
        con.execute("DELETE FROM metadata.files WHERE table_name = ?", [name])
        seen = set()
    new = sorted(set(files) - seen)
    if new:
        con.executemany("INSERT INTO metadata.files VALUES (?, ?, ?, ?, ?)",
                        [[name, rel, *_file_entry(files[rel])] for rel in new])
    for meta in ("tables", "columns", "partitions"):
        con.execute(f"DELETE FROM metadata.{meta} WHERE table_name = ?", [name])
    if files:
        schema = _merged_schema(con, name, files)
        keys = list(lake.partition_of(next(iter(files.values()))))
    else:  # no event of this kind yet: the table exists all the same, empty, in its contract's schema
        schema, keys = lake.table_schema(folder), [lake.PARTITION[folder]]
    con.execute(
        "INSERT INTO metadata.tables SELECT ?, ?, 'parquet', ?, count(*), coalesce(sum(row_count), 0) FROM metadata.files "
        "WHERE table_name = ?", [name, display_path(root), ",".join(keys), name],
    )
    columns = [(c.name, glue_type(c.type), False) for c in schema if c.name not in keys]
    columns += [(k, "date" if k.endswith("_date") else "string", True) for k in keys]
    con.executemany(
        "INSERT INTO metadata.columns VALUES (?, ?, ?, ?, ?)",
        [[name, i + 1, col, kind, part] for i, (col, kind, part) in enumerate(columns)],
    )
    con.execute(
        "INSERT INTO metadata.partitions SELECT table_name, partition_value, count(*), sum(row_count) "
        "FROM metadata.files WHERE table_name = ? GROUP BY ALL", [name],
    )
    con.execute(f'CREATE OR REPLACE VIEW {DATABASE}."{name}" AS {_view_query(root) if files else _empty_query(con, schema)}')
    return len(new)


def _view_query(root: Path) -> str:
    glob = table_glob(root).replace("'", "''")
    return f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"


def _empty_query(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> str:
    """A query with the schema's columns, in DuckDB's types, and no rows."""
    con.register("_empty_table", schema.empty_table())
    try:
        columns = con.execute("DESCRIBE SELECT * FROM _empty_table").fetchall()
    finally:
        con.unregister("_empty_table")
    return "SELECT " + ", ".join(f'CAST(NULL AS {kind}) AS "{col}"' for col, kind, *_ in columns) + " WHERE false"


def _file_entry(path: Path) -> tuple[str, int, str]:
    """What the crawler keeps of a file, from its footer alone: partition, rows, schema."""
    footer = pq.ParquetFile(path)
    partition = "/".join(f"{k}={v}" for k, v in lake.partition_of(path).items())
    return partition, footer.metadata.num_rows, footer.schema_arrow.to_string(show_schema_metadata=False)


def _merged_schema(con: duckdb.DuckDBPyConnection, name: str, files: dict[str, Path]) -> pa.Schema:
    """The union of the table's file schemas (one file read per distinct schema).

    The widest schema leads, so columns keep the latest contract's order and columns only older
    files have come last.
    """
    distinct = con.execute(
        "SELECT min(path) FROM metadata.files WHERE table_name = ? GROUP BY schema_text ORDER BY 1", [name]
    ).fetchall()
    schemas = sorted((pq.read_schema(files[path]) for (path,) in distinct), key=lambda s: -len(s))
    return pa.unify_schemas(schemas)


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
