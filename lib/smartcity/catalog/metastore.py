"""The lake's tables in Trino's metastore: what 03_catalog registers when the SQL runs on Trino.

The crawler (:mod:`smartcity.catalog.crawler`) has read what is in the lake: each table's columns
in Glue's (Hive's) types, its partition keys and its files. This module states the same tables
to Trino's Hive connector, in the schema ``smartcity`` of its ``hive`` catalog, as Glue tables
are stated to Athena: an external table per lake folder (``external_location`` the folder, format
Parquet, ``partitioned_by`` its partition key, the key columns last), then its partitions found
by ``system.sync_partition_metadata``. Timestamps are declared ``timestamp`` (Hive's type, read at
Athena's millisecond precision). A table with no files yet is created empty, in the contract's
schema, without a location in the lake.

Registering is idempotent: every crawl drops and states each table again (an external table's
drop leaves its files alone), so schema changes and a reset lake are picked up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlglot import exp

from smartcity.catalog.crawler import DATABASE, catalog_name, describe
from smartcity.stream import lake

if TYPE_CHECKING:
    from trino.dbapi import Connection, Cursor


def trino_type(hive_type: str) -> str:
    """Trino's spelling of a Glue/Hive column type ('array<struct<k:string>>' -> 'ARRAY(ROW(k VARCHAR))')."""
    return exp.DataType.build(hive_type, dialect="hive").sql(dialect="trino")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_ddl(name: str, columns: pd.DataFrame, location: Path | None) -> str:
    """CREATE TABLE for one catalogued table from its crawled columns (partition keys last, as Hive wants)."""
    ordered = pd.concat([columns[~columns["is_partition"]], columns[columns["is_partition"]]])
    body = ",\n    ".join(f"{_quoted(c)} {trino_type(t)}" for c, t in zip(ordered["column_name"], ordered["data_type"]))
    keys = ", ".join(f"'{k}'" for k in ordered.loc[ordered["is_partition"], "column_name"])
    props = ["format = 'PARQUET'", f"partitioned_by = ARRAY[{keys}]"]
    if location is not None:
        props.insert(0, f"external_location = 'local://{location.resolve()}'")
    return f"CREATE TABLE {DATABASE}.{_quoted(name)} (\n    {body}\n) WITH ({', '.join(props)})"


def _run(cursor: Cursor, sql: str) -> list[list[object]]:
    cursor.execute(sql)
    return cursor.fetchall()


def register(connect: Callable[[], Connection], catalog_file: Path, lake_root: Path) -> pd.DataFrame:
    """State every crawled table to Trino (after :func:`smartcity.catalog.crawler.crawl`); per table,
    the partitions Trino found and the rows a ``count(*)`` through it returns."""
    columns = describe(catalog_file, "columns")
    files = describe(catalog_file, "tables").set_index("table_name")["files"]
    con = connect()
    try:
        cursor = con.cursor()
        _run(cursor, f"CREATE SCHEMA IF NOT EXISTS {DATABASE}")
        rows = {}
        for folder in lake.TABLES:
            name = catalog_name(folder)
            located = int(files.get(name, 0)) > 0
            _run(cursor, f"DROP TABLE IF EXISTS {DATABASE}.{_quoted(name)}")
            table = columns[columns["table_name"] == name]
            _run(cursor, table_ddl(name, table, lake_root / folder if located else None))
            if located:
                _run(cursor, f"CALL system.sync_partition_metadata('{DATABASE}', '{name}', 'FULL')")
            partitions = _run(cursor, f'SELECT count(*) FROM {DATABASE}."{name}$partitions"')[0][0]
            count = _run(cursor, f"SELECT count(*) FROM {DATABASE}.{_quoted(name)}")[0][0]
            rows[name] = {"partitions in Trino": partitions, "rows through Trino": count}
    finally:
        con.close()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("table_name").sort_index()
