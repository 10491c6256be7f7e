"""A Glue-style crawler and Data Catalog on DuckDB: the local profiles' catalog.

The crawler reads what is in the lake, not what we think is there: table folders, their Parquet
files, schemas and Hive partitions. It records them in a persistent DuckDB file: metadata tables
in schema ``metadata`` (tables, columns, partitions and the files seen, as Glue keeps them) and,
in schema ``smartcity`` (the Glue database), one view per table over a glob of its folder, as an
Athena table is a prefix: queries see every file published since, and a glob of the folder is
exactly-once by the lake's design (:mod:`smartcity.stream.lake`).

Crawling is incremental, like a Glue crawler with "crawl new folders only": only files it has not
seen are opened (their footers: rows and schema); schemas are merged, so files of an older
contract version stay readable beside newer ones. If files disappeared (a reset lake), the table
is crawled afresh.

The same crawl into the AWS Glue Data Catalog is :mod:`smartcity.catalog.glue`; the DuckDB
``metadata.*`` tables stay its ledger too (which footers were read already), so :func:`describe`
works on every profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartcity.platform.params import display_path
from smartcity.stream import lake
from smartcity.stream.store import LakeStore

#: Opens the footer of one of a table's files, named by its path relative to the table folder.
FooterReader = Callable[[str], pq.ParquetFile]

DATABASE = "smartcity"

_GLUE_TYPES = {
    "string": "string",
    "large_string": "string",
    "double": "double",
    "float": "float",
    "int32": "int",
    "int64": "bigint",
    "bool": "boolean",
    "date32[day]": "date",
    "binary": "binary",
}

DDL = """
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


def table_names() -> list[str]:
    """Every table the catalog registers: one per topic, then the quarantine."""
    return [catalog_name(folder) for folder in lake.TABLES]


def glue_type(arrow_type: pa.DataType) -> str:
    """The Glue/Athena type name of an Arrow type (nested types spelled as Hive does)."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_list(arrow_type):
        return f"array<{glue_type(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        return "struct<" + ",".join(f"{f.name}:{glue_type(f.type)}" for f in arrow_type) + ">"
    return _GLUE_TYPES.get(str(arrow_type), str(arrow_type))


def connect(catalog_file: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the catalog database (created on first use)."""
    catalog_file.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not catalog_file.exists():
        raise FileNotFoundError(f"no catalog at {display_path(catalog_file)}: run 03_catalog first")
    return duckdb.connect(str(catalog_file), read_only=read_only)


def table_glob(root: Path) -> str:
    """The glob a reader points at a table folder: every Parquet file below it."""
    return str(root / "**" / "*.parquet")


def crawl(catalog_file: Path, lake_root: Path) -> pd.DataFrame:
    """Crawl the lake under ``lake_root`` and register every table; only files not seen before are read.
    Safe to re-run.

    Returns the table summary with how many files this crawl had to open.
    """
    con = connect(catalog_file)
    try:
        con.execute(DDL)
        con.execute("BEGIN TRANSACTION")
        opened = {catalog_name(folder): _register(con, lake_root, folder) for folder in lake.TABLES}
        con.execute("COMMIT")
        summary = summarize(con)
    finally:
        con.close()
    summary["files read"] = [opened.get(name, 0) for name in summary.index]
    return summary


def summarize(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The catalog's tables: location, partition keys, files and rows."""
    return (
        con.execute(
            "SELECT table_name, location, partition_keys, files, row_count FROM metadata.tables ORDER BY table_name"
        )
        .df()
        .set_index("table_name")
    )


def _register(con: duckdb.DuckDBPyConnection, lake_root: Path, folder: str) -> int:
    """Bring one table's entries up to date with its folder; returns the number of files opened."""
    name = catalog_name(folder)
    root = lake_root / folder
    files = {str(f.relative_to(root)): f for f in lake.data_files(root)}
    opened, _ = record_table(con, folder, sorted(files), lambda rel: pq.ParquetFile(files[rel]), display_path(root))
    con.execute(
        f'CREATE OR REPLACE VIEW {DATABASE}."{name}" AS '
        f"{_view_query(root) if files else empty_query(con, lake.table_schema(folder))}"
    )
    return opened


def record_table(
    con: duckdb.DuckDBPyConnection, folder: str, files: Sequence[str], open_footer: FooterReader, location: str
) -> tuple[int, bool]:
    """Bring the ledger of one table up to date with its files (paths relative to the table folder).

    Returns how many footers were opened, and whether the table was taken afresh because files it
    had seen vanished (a reset lake: a new generation).
    """
    name = catalog_name(folder)
    seen = {r[0] for r in con.execute("SELECT path FROM metadata.files WHERE table_name = ?", [name]).fetchall()}
    afresh = bool(seen - set(files))
    if afresh:  # files vanished: the lake was reset or rewritten, crawl the table afresh
        con.execute("DELETE FROM metadata.files WHERE table_name = ?", [name])
        seen = set()
    new = sorted(set(files) - seen)
    if new:
        con.executemany(
            "INSERT INTO metadata.files VALUES (?, ?, ?, ?, ?)",
            [[name, rel, *_file_entry(rel, open_footer(rel))] for rel in new],
        )
    for meta in ("tables", "columns", "partitions"):
        con.execute(f"DELETE FROM metadata.{meta} WHERE table_name = ?", [name])
    if files:
        schema = _merged_schema(con, name, open_footer)
        keys = list(lake.partition_of(Path(files[0])))
    else:  # no event of this kind yet: the table exists all the same, empty, in its contract's schema
        schema, keys = lake.table_schema(folder), [lake.PARTITION[folder]]
    con.execute(
        "INSERT INTO metadata.tables SELECT ?, ?, 'parquet', ?, count(*), coalesce(sum(row_count), 0) FROM metadata.files "
        "WHERE table_name = ?",
        [name, location, ",".join(keys), name],
    )
    columns = [(c.name, glue_type(c.type), False) for c in schema if c.name not in keys]
    columns += [(k, "date" if k.endswith("_date") else "string", True) for k in keys]
    con.executemany(
        "INSERT INTO metadata.columns VALUES (?, ?, ?, ?, ?)",
        [[name, i + 1, col, kind, part] for i, (col, kind, part) in enumerate(columns)],
    )
    con.execute(
        "INSERT INTO metadata.partitions SELECT table_name, partition_value, count(*), sum(row_count) "
        "FROM metadata.files WHERE table_name = ? GROUP BY ALL",
        [name],
    )
    return len(new), afresh


def _view_query(root: Path) -> str:
    glob = table_glob(root).replace("'", "''")
    return f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"


def empty_query(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> str:
    """A query with the schema's columns, in DuckDB's types, and no rows."""
    con.register("_empty_table", schema.empty_table())
    try:
        columns = con.execute("DESCRIBE SELECT * FROM _empty_table").fetchall()
    finally:
        con.unregister("_empty_table")
    return "SELECT " + ", ".join(f'CAST(NULL AS {kind}) AS "{col}"' for col, kind, *_ in columns) + " WHERE false"


def _file_entry(rel: str, footer: pq.ParquetFile) -> tuple[str, int, str]:
    """What the crawler keeps of a file, from its footer alone: partition, rows, schema."""
    partition = "/".join(f"{k}={v}" for k, v in lake.partition_of(Path(rel)).items())
    return partition, footer.metadata.num_rows, footer.schema_arrow.to_string(show_schema_metadata=False)


def _merged_schema(con: duckdb.DuckDBPyConnection, name: str, open_footer: FooterReader) -> pa.Schema:
    """The union of the table's file schemas (one file read per distinct schema).

    The widest schema leads, so columns keep the latest contract's order and columns only older
    files have come last.
    """
    distinct = con.execute(
        "SELECT min(path) FROM metadata.files WHERE table_name = ? GROUP BY schema_text ORDER BY 1", [name]
    ).fetchall()
    schemas = sorted((open_footer(path).schema_arrow for (path,) in distinct), key=lambda s: -len(s))
    return pa.unify_schemas(schemas)


def describe(catalog_file: Path, what: str, table: str | None = None) -> pd.DataFrame:
    """One of the catalog's metadata tables ('tables', 'columns', 'partitions'), optionally for one table."""
    if what not in ("tables", "columns", "partitions"):
        raise ValueError(f"unknown catalog table {what!r}: use tables, columns or partitions")
    order = {"tables": "table_name", "columns": "table_name, position", "partitions": "table_name, partition_value"}
    where = "WHERE table_name = ?" if table else ""
    con = connect(catalog_file, read_only=True)
    try:
        frame = con.execute(
            f"SELECT * FROM metadata.{what} {where} ORDER BY {order[what]}", [table] if table else []
        ).df()
    finally:
        con.close()
    if table and frame.empty:
        raise KeyError(f"table {table!r} is not in the catalog; crawl the lake first (03_catalog)")
    return frame


def view_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {n: con.execute(f'SELECT count(*) FROM {DATABASE}."{n}"').fetchone()[0] for n in sorted(table_names())}


def footer_reader(store: LakeStore, prefix: str) -> FooterReader:
    """Opens footers of a table's files through the store's Arrow file system (ranged reads on S3)."""
    fs, root = store.arrow()
    base = f"{root.rstrip('/')}/{prefix}" if root else prefix
    return lambda rel: pq.ParquetFile(base + rel, filesystem=fs)
