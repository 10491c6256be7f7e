"""The lake's tables in the AWS Glue Data Catalog, registered by the lab itself (0002 §2).

The crawl is the local crawler's (:mod:`smartcity.catalog.crawler`) over a lake on S3 (any
:class:`~smartcity.stream.store.LakeStore`): only unseen footers are read, its DuckDB
``metadata.*`` tables are the ledger. The result goes to Glue with awswrangler; an optional Glue
crawler (created by provisioning) can then run over the lab's tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from smartcity.catalog.crawler import (
    DATABASE,
    DDL,
    catalog_name,
    connect,
    footer_reader,
    record_table,
    summarize,
    table_names,
)
from smartcity.fleet import contracts
from smartcity.platform.engine_params import AwsParams
from smartcity.stream import lake
from smartcity.stream.store import LakeStore, ObjectInfo

if TYPE_CHECKING:
    import boto3


class CatalogError(RuntimeError):
    """The Glue catalog cannot be brought up to date; says what to do."""


def _glue_partition_type(key: str) -> str:
    return "date" if key.endswith("_date") else "string"


def _relative_keys(files: Sequence[ObjectInfo], prefix: str) -> list[str]:
    """Keys of a table's files relative to its folder ('event_date=2026-01-05/part-....parquet')."""
    outside = [f.key for f in files if not f.key.startswith(prefix)]
    if outside:
        raise CatalogError(f"files listed for {prefix!r} lie outside it: {outside[:3]}")
    return sorted(f.key[len(prefix) :] for f in files)


class GlueCatalog:
    """The lake's tables in the AWS Glue Data Catalog, registered by the lab itself (0002 §2).

    Registration is synchronous and deterministic: the schema comes from the contracts and the
    files' footers, not from a crawler's inference. The Glue database is created by provisioning
    (``smartcity aws provision``), not here: the lab runner has no right to create databases.
    """

    def __init__(self, aws: AwsParams, profile: str, catalog_file: Path, boto3_session: boto3.Session) -> None:
        self.aws = aws
        self.profile = profile
        self.catalog_file = catalog_file  # the crawler's ledger (which footers were read), a DuckDB file
        self.database = aws.glue_database
        self.session = boto3_session

    def crawl(
        self, store: LakeStore, list_files: Callable[[LakeStore, str], list[ObjectInfo]] | None = None
    ) -> pd.DataFrame:
        """Register every lake table (topics and quarantine) in Glue; only unseen footers are read.

        Returns the same summary as the local :func:`smartcity.catalog.crawler.crawl`. ``list_files(store,
        folder)`` lists a table's published files (default: :func:`smartcity.stream.lake.list_data_files`).
        """
        list_files = list_files or lake.list_data_files
        self.check_database()
        con = connect(self.catalog_file)
        try:
            con.execute(DDL)
            con.execute("BEGIN TRANSACTION")
            opened = {
                catalog_name(folder): self.register(con, store, folder, list_files(store, folder))
                for folder in lake.TABLES
            }
            con.execute("COMMIT")
            summary = summarize(con)
        finally:
            con.close()
        if self.aws.glue_crawler:
            self.start_crawler()
        summary["files read"] = [opened.get(name, 0) for name in summary.index]
        return summary

    def register(
        self, con: duckdb.DuckDBPyConnection, store: LakeStore, folder: str, files: Sequence[ObjectInfo]
    ) -> int:
        """Bring one table up to date in the ledger and in Glue; returns the number of footers read.

        New columns of a later contract are appended (existing partitions keep their column list,
        which Athena allows for Parquet), only partitions Glue lacks are added, partitions whose
        files are gone are dropped, and a table whose files vanished (a new lake generation) is
        dropped and created afresh.
        """
        prefix = f"{lake.LAKE}/{folder}/"
        location = store.uri(prefix.rstrip("/")) + "/"
        rels = _relative_keys(files, prefix)
        opened, afresh = record_table(con, folder, rels, footer_reader(store, prefix), location)
        name = catalog_name(folder)
        columns = {
            contracts.sql_name(col, "athena"): kind
            for col, kind in con.execute(
                "SELECT column_name, data_type FROM metadata.columns WHERE table_name = ? AND NOT is_partition "
                "ORDER BY position",
                [name],
            ).fetchall()
        }
        keys = con.execute("SELECT partition_keys FROM metadata.tables WHERE table_name = ?", [name]).fetchone()[0]
        partitions = {
            store.uri(f"{prefix}{value}") + "/": [part.split("=", 1)[1] for part in value.split("/")]
            for (value,) in con.execute(
                "SELECT partition_value FROM metadata.partitions WHERE table_name = ? ORDER BY 1", [name]
            ).fetchall()
        }
        self._register_table(name, location, columns, keys.split(","), partitions, afresh=afresh)
        return opened

    def _register_table(
        self,
        name: str,
        location: str,
        columns: dict[str, str],
        keys: list[str],
        partitions: dict[str, list[str]],
        *,
        afresh: bool,
    ) -> None:
        import awswrangler as wr  # noqa: PLC0415 - the `aws` extra: the lab imports without it

        args = {"database": self.database, "table": name, "boto3_session": self.session}
        if afresh:  # a new generation: nothing of the old table's columns or partitions carries over
            wr.catalog.delete_table_if_exists(**args)
        create = {
            **args,
            "path": location,
            "columns_types": columns,
            "partitions_types": {k: _glue_partition_type(k) for k in keys},
        }
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
        import awswrangler as wr  # noqa: PLC0415 - the `aws` extra: the lab imports without it

        for name in table_names():
            if wr.catalog.does_table_exist(database=self.database, table=name, boto3_session=self.session):
                wr.catalog.delete_all_partitions(table=name, database=self.database, boto3_session=self.session)

    # -- the optional Glue crawler ---------------------------------------------------------------
    @property
    def crawler_name(self) -> str:
        return self.aws.crawler_name(self.profile)

    def create_crawler(self, role_arn: str) -> None:
        """Create the crawler over the lab's own tables (a catalog target), if it does not exist.

        With a catalog target a crawler creates no tables: it updates the lab's and adds
        partitions; deleted objects are only logged. Provisioning calls this: the role must be
        passed (iam:PassRole), which the lab runner may not do.
        """
        glue = self.session.client("glue")
        with contextlib.suppress(glue.exceptions.AlreadyExistsException):
            glue.create_crawler(
                Name=self.crawler_name,
                Role=role_arn,
                Targets={"CatalogTargets": [{"DatabaseName": self.database, "Tables": table_names()}]},
                SchemaChangePolicy={"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
                Description=f"smartcity lab, profile {self.profile}: the lab's tables as a catalog target",
            )

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


def connect_tables(glue_database: str, store: LakeStore, boto3_session: boto3.Session) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection where ``smartcity.<table>`` is each table the Glue catalog registered.

    An in-memory DuckDB asks Glue where each table lives and reads the files below that S3 location
    as an Arrow dataset: what Athena would read, without DuckDB's httpfs extension. (The local
    catalog's file has a view per table: :func:`smartcity.catalog.crawler.connect`.)
    """
    import awswrangler as wr  # noqa: PLC0415 - the `aws` extra: the lab imports without it

    root = store.uri(lake.LAKE) + "/"
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {DATABASE}")
    for name in table_names():
        location = wr.catalog.get_table_location(database=glue_database, table=name, boto3_session=boto3_session)
        if not location.startswith(root):
            raise CatalogError(
                f"Glue table {glue_database}.{name} is at {location}, outside this profile's lake "
                f"{root}: crawl the lake first (03_catalog)"
            )
        folder = location[len(root) :].strip("/")
        data = lake.table_dataset(store, folder)
        con.register(f"_{name}", data if data is not None else lake.table_schema(folder).empty_table())
        con.execute(f'CREATE VIEW {DATABASE}."{name}" AS SELECT * FROM "_{name}"')
    return con
