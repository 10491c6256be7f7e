"""A Glue-style crawler and Data Catalog on DuckDB, and the same crawl into the AWS Glue Data Catalog.

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

:class:`GlueCatalog` runs the same crawl over a lake on S3 (any :class:`~smartcity.storage.LakeStore`)
and registers the result in Glue with awswrangler (``docs/decisions/0002-aws-profile.md`` §2). The
DuckDB ``metadata.*`` tables stay its ledger: they say which footers were read already, and
``describe`` keeps working on every profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartcity.fleet import contracts
from smartcity.stream import lake
from smartcity.present import report
from smartcity.params import TOPICS, Params, display_path
from smartcity.stream.store import LakeStore, ObjectInfo, open_store

if TYPE_CHECKING:
    import boto3

#: Opens the footer of one of a table's files, named by its path relative to the table folder.
FooterReader = Callable[[str], pq.ParquetFile]

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


def table_names() -> list[str]:
    """Every table the catalog registers: one per topic, then the quarantine."""
    return [catalog_name(folder) for folder in (*TOPICS, lake.QUARANTINE)]


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
    opened, _ = _record_table(con, folder, sorted(files), lambda rel: pq.ParquetFile(files[rel]), display_path(root))
    con.execute(f'CREATE OR REPLACE VIEW {DATABASE}."{name}" AS '
                f'{_view_query(root) if files else _empty_query(con, lake.table_schema(folder))}')
    return opened


def _record_table(con: duckdb.DuckDBPyConnection, folder: str, files: Sequence[str], open_footer: FooterReader,
                  location: str) -> tuple[int, bool]:
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
        con.executemany("INSERT INTO metadata.files VALUES (?, ?, ?, ?, ?)",
                        [[name, rel, *_file_entry(rel, open_footer(rel))] for rel in new])
    for meta in ("tables", "columns", "partitions"):
        con.execute(f"DELETE FROM metadata.{meta} WHERE table_name = ?", [name])
    if files:
        schema = _merged_schema(con, name, open_footer)
        keys = list(lake.partition_of(Path(files[0])))
    else:  # no event of this kind yet: the table exists all the same, empty, in its contract's schema
        schema, keys = lake.table_schema(folder), [lake.PARTITION[folder]]
    con.execute(
        "INSERT INTO metadata.tables SELECT ?, ?, 'parquet', ?, count(*), coalesce(sum(row_count), 0) FROM metadata.files "
        "WHERE table_name = ?", [name, location, ",".join(keys), name],
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
    return len(new), afresh


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
    return {n: con.execute(f'SELECT count(*) FROM {DATABASE}."{n}"').fetchone()[0] for n in sorted(table_names())}


def connect_tables(cfg: Params, store: LakeStore | None = None,
                   boto3_session: boto3.Session | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection where ``smartcity.<table>`` is each catalogued table, whatever the catalog.

    The local catalog's file has a view per table over its folder. With Glue (the aws-moto and
    aws profiles), an in-memory DuckDB asks Glue where each table lives and reads the files below
    that S3 location as an Arrow dataset: what Athena would read, without DuckDB's httpfs extension.
    """
    if cfg.catalog_engine != "glue":
        return connect(cfg, read_only=True)
    import awswrangler as wr
    import boto3

    boto3_session = boto3_session or boto3.Session(region_name=cfg.aws_region)  # Glue of the profile's region
    store = store if store is not None else open_store(cfg, boto3_session)
    root = store.uri(lake.LAKE) + "/"
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {DATABASE}")
    for name in table_names():
        location = wr.catalog.get_table_location(database=cfg.glue_database, table=name, boto3_session=boto3_session)
        if not location.startswith(root):
            raise CatalogError(f"Glue table {cfg.glue_database}.{name} is at {location}, outside this profile's lake "
                               f"{root}: crawl the lake first (03_catalog)")
        folder = location[len(root):].strip("/")
        data = lake.table_dataset(store, folder)
        con.register(f"_{name}", data if data is not None else lake.table_schema(folder).empty_table())
        con.execute(f'CREATE VIEW {DATABASE}."{name}" AS SELECT * FROM "_{name}"')
    return con


def view_counts(cfg: Params) -> dict[str, int]:
    """Rows each catalogued table returns when queried (through its view or Glue table, not the metadata)."""
    con = connect_tables(cfg)
    try:
        return _view_counts(con)
    finally:
        con.close()


# -- the AWS Glue Data Catalog ----------------------------------------------------------------------
class CatalogError(RuntimeError):
    """The Glue catalog cannot be brought up to date; says what to do."""


def _glue_partition_type(key: str) -> str:
    return "date" if key.endswith("_date") else "string"


def footer_reader(store: LakeStore, prefix: str) -> FooterReader:
    """Opens footers of a table's files through the store's Arrow file system (ranged reads on S3)."""
    fs, root = store.arrow()
    base = f"{root.rstrip('/')}/{prefix}" if root else prefix
    return lambda rel: pq.ParquetFile(base + rel, filesystem=fs)


def _relative_keys(files: Sequence[ObjectInfo], prefix: str) -> list[str]:
    """Keys of a table's files relative to its folder ('event_date=2026-01-05/part-....parquet')."""
    outside = [f.key for f in files if not f.key.startswith(prefix)]
    if outside:
        raise CatalogError(f"files listed for {prefix!r} lie outside it: {outside[:3]}")
    return sorted(f.key[len(prefix):] for f in files)


def crawler_name(cfg: Params) -> str:
    """The optional Glue crawler of a profile (provisioning grants the runner StartCrawler on it)."""
    return f"{cfg.glue_database}-{cfg.profile}"


class GlueCatalog:
    """The lake's tables in the AWS Glue Data Catalog, registered by the lab itself (0002 §2).

    Registration is synchronous and deterministic: the schema comes from the contracts and the
    files' footers, not from a crawler's inference. The Glue database is created by provisioning
    (``smartcity aws provision``), not here: the lab runner has no right to create databases.
    """

    def __init__(self, cfg: Params, boto3_session: boto3.Session | None = None) -> None:
        import boto3

        self.cfg = cfg
        self.database = cfg.glue_database
        self.session = boto3_session or boto3.Session(region_name=cfg.aws_region or None)

    def crawl(self, store: LakeStore,
              list_files: Callable[[LakeStore, str], list[ObjectInfo]] | None = None) -> pd.DataFrame:
        """Register every lake table (topics and quarantine) in Glue; only unseen footers are read.

        Returns the same summary as the local :func:`crawl`. ``list_files(store, folder)`` lists a
        table's published files (default: :func:`smartcity.lake.list_data_files`).
        """
        list_files = list_files or lake.list_data_files
        self.check_database()
        con = connect(self.cfg)
        try:
            con.execute(_DDL)
            con.execute("BEGIN TRANSACTION")
            opened = {catalog_name(folder): self.register(con, store, folder, list_files(store, folder))
                      for folder in (*TOPICS, lake.QUARANTINE)}
            con.execute("COMMIT")
            summary = con.execute(
                "SELECT table_name, location, partition_keys, files, row_count FROM metadata.tables ORDER BY table_name"
            ).df().set_index("table_name")
        finally:
            con.close()
        # Glue has no rows to count; the footers' counts are what a query over these files returns
        report.record_counts(self.cfg, "catalog", summary["row_count"].to_dict())
        if self.cfg.glue_crawler:
            self.start_crawler()
        summary["files read"] = [opened.get(name, 0) for name in summary.index]
        return summary

    def register(self, con: duckdb.DuckDBPyConnection, store: LakeStore, folder: str,
                 files: Sequence[ObjectInfo]) -> int:
        """Bring one table up to date in the ledger and in Glue; returns the number of footers read.

        New columns of a later contract are appended (existing partitions keep their column list,
        which Athena allows for Parquet), only partitions Glue lacks are added, partitions whose
        files are gone are dropped, and a table whose files vanished (a new lake generation) is
        dropped and created afresh.
        """
        prefix = f"{lake.LAKE}/{folder}/"
        location = store.uri(prefix.rstrip("/")) + "/"
        rels = _relative_keys(files, prefix)
        opened, afresh = _record_table(con, folder, rels, footer_reader(store, prefix), location)
        name = catalog_name(folder)
        columns = {contracts.sql_name(col, "athena"): kind for col, kind in con.execute(
            "SELECT column_name, data_type FROM metadata.columns WHERE table_name = ? AND NOT is_partition "
            "ORDER BY position", [name]).fetchall()}
        keys = con.execute("SELECT partition_keys FROM metadata.tables WHERE table_name = ?", [name]).fetchone()[0]
        partitions = {
            store.uri(f"{prefix}{value}") + "/": [part.split("=", 1)[1] for part in value.split("/")]
            for (value,) in con.execute("SELECT partition_value FROM metadata.partitions WHERE table_name = ? "
                                        "ORDER BY 1", [name]).fetchall()
        }
        self._register_table(name, location, columns, keys.split(","), partitions, afresh=afresh)
        return opened

    def _register_table(self, name: str, location: str, columns: dict[str, str], keys: list[str],
                        partitions: dict[str, list[str]], *, afresh: bool) -> None:
        import awswrangler as wr

        args = {"database": self.database, "table": name, "boto3_session": self.session}
        if afresh:  # a new generation: nothing of the old table's columns or partitions carries over
            wr.catalog.delete_table_if_exists(**args)
        create = {**args, "path": location, "columns_types": columns,
                  "partitions_types": {k: _glue_partition_type(k) for k in keys}}
        try:
            wr.catalog.create_parquet_table(**create, mode="append")
        except wr.exceptions.InvalidArgumentValue:  # a column changed type: redefine the table (drops partitions)
            wr.catalog.create_parquet_table(**create, mode="overwrite")
        registered = {tuple(v) for v in wr.catalog.get_parquet_partitions(**args).values()}
        wanted = {tuple(v) for v in partitions.values()}
        if stale := sorted(registered - wanted):
            wr.catalog.delete_partitions(**args, partitions_values=[list(v) for v in stale])
        new = {location: values for location, values in partitions.items() if tuple(values) not in registered}
        if new:
            wr.catalog.add_parquet_partitions(**args, partitions_values=new, columns_types=columns)

    def check_database(self) -> None:
        """Fail clearly when the Glue database is missing (provisioning creates it)."""
        glue = self.session.client("glue")
        try:
            glue.get_database(Name=self.database)
        except glue.exceptions.EntityNotFoundException:
            raise CatalogError(
                f"Glue database {self.database!r} does not exist in {self.session.region_name}: "
                "create it with `smartcity aws provision` (or set glue_database)"
            ) from None

    def reset(self) -> None:
        """Drop every partition of the lab's tables (step 3 of a lake reset); the tables stay."""
        import awswrangler as wr

        for name in table_names():
            if wr.catalog.does_table_exist(database=self.database, table=name, boto3_session=self.session):
                wr.catalog.delete_all_partitions(table=name, database=self.database, boto3_session=self.session)

    # -- the optional Glue crawler ---------------------------------------------------------------
    @property
    def crawler_name(self) -> str:
        return crawler_name(self.cfg)

    def create_crawler(self, role_arn: str) -> None:
        """Create the crawler over the lab's own tables (a catalog target), if it does not exist.

        With a catalog target a crawler creates no tables: it updates the lab's and adds
        partitions; deleted objects are only logged. Provisioning calls this: the role must be
        passed (iam:PassRole), which the lab runner may not do.
        """
        glue = self.session.client("glue")
        try:
            glue.create_crawler(
                Name=self.crawler_name, Role=role_arn,
                Targets={"CatalogTargets": [{"DatabaseName": self.database, "Tables": table_names()}]},
                SchemaChangePolicy={"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
                Description=f"smartcity lab, profile {self.cfg.profile}: the lab's tables as a catalog target",
            )
        except glue.exceptions.AlreadyExistsException:
            pass

    def start_crawler(self) -> None:
        """Start the crawler (it runs on its own, billed per DPU-hour); one already running is left to finish."""
        glue = self.session.client("glue")
        try:
            glue.start_crawler(Name=self.crawler_name)
        except glue.exceptions.EntityNotFoundException:
            raise CatalogError(
                f"glue_crawler is true but there is no Glue crawler {self.crawler_name!r}: "
                "`smartcity aws provision` creates it (GlueCatalog.create_crawler)"
            ) from None
        except glue.exceptions.CrawlerRunningException:
            pass
