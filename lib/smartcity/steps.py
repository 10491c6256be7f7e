"""The engines a profile's stages run on, chosen in one place (docs/decisions/0002-aws-profile.md §7).

A stage never opens DuckDB, Glue, Athena or a warehouse from ``cfg`` itself: the notebook asks
:func:`open_engines` once and hands the stage what it needs, so the same notebook cell runs on
the local profile (a folder, DuckDB, PostgreSQL) and on AWS (S3, Glue, Athena, Redshift). One
boto3 session, from the standard credential chain (never from params), serves every AWS call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from smartcity.query import athena
from smartcity.catalog import crawler as catalog
from smartcity.params import Params, engines_in_use, fill_account
from smartcity.stream.store import LakeStore, open_store

if TYPE_CHECKING:
    import boto3

    from smartcity.platform.postgres import Warehouse
    from smartcity.warehouse.load import RedshiftWarehouse


class Catalog(Protocol):
    """Registers the lake's tables where the query engine looks them up: DuckDB's views, or Glue."""

    def crawl(self, store: LakeStore) -> pd.DataFrame: ...


class DuckDBCatalog:
    """The lab's own crawler into a DuckDB file (:func:`smartcity.catalog.crawl`), over a local lake."""

    def __init__(self, cfg: Params) -> None:
        self.cfg = cfg

    def crawl(self, store: LakeStore) -> pd.DataFrame:
        return catalog.crawl(self.cfg)


@dataclass(frozen=True)
class Engines:
    """What the stages after the stream use: the lake's store, the catalog and the query engine."""

    cfg: Params
    store: LakeStore
    catalog: Catalog
    query: athena.QueryEngine
    boto3_session: boto3.Session | None = None

    def crawl(self) -> pd.DataFrame:
        """03_catalog's step: register what is in the lake now (incremental, safe to re-run)."""
        return self.catalog.crawl(self.store)

    def query_lake(self, name: str) -> pd.DataFrame:
        """04_athena's step: one of the shipped Athena queries, on this profile's engine."""
        return self.query.run(name)


#: The engines of config.engines_in_use that are AWS services.
AWS_ENGINES = frozenset({"s3", "glue", "athena", "redshift"})


def uses_aws(cfg: Params) -> bool:
    return bool(AWS_ENGINES & engines_in_use(cfg))


def open_engines(cfg: Params, boto3_session: boto3.Session | None = None) -> Engines:
    """The profile's engines; an AWS profile's '{account}' names are filled in from the caller's account."""
    session = boto3_session
    if uses_aws(cfg):
        import boto3

        session = session or boto3.Session(region_name=cfg.aws_region or None)
        cfg = fill_account(cfg, session)
    store = open_store(cfg, session)
    lake_catalog: Catalog = catalog.GlueCatalog(cfg, session) if cfg.catalog_engine == "glue" else DuckDBCatalog(cfg)
    query: athena.QueryEngine = (athena.AthenaEngine(cfg, session) if cfg.query_engine == "athena"
                                 else athena.DuckDBEngine(cfg, store, session))
    return Engines(cfg, store, lake_catalog, query, session)


def open_warehouse(engines: Engines) -> Warehouse | RedshiftWarehouse:
    """05_redshift's warehouse: PostgreSQL (started here if the profile owns it) or Redshift Serverless."""
    if engines.cfg.warehouse_engine == "redshift":
        from smartcity.warehouse.load import RedshiftWarehouse

        return RedshiftWarehouse(engines.cfg, engines.boto3_session)
    from smartcity.platform.postgres import ensure_warehouse

    return ensure_warehouse(engines.cfg)
