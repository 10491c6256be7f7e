"""Athena-style SQL on the local catalog: queries are written in Athena's (Trino) dialect.

The queries live as ``.sql`` files in ``lib/smartcity/query/sql/`` exactly as one would run them in the
Athena console against the Glue database ``smartcity``. Locally, sqlglot transpiles each one to
DuckDB's dialect and DuckDB runs it over the catalog's views of the lake. On AWS the same files run
on Amazon Athena unchanged. Both engines answer ``run(name)`` (``docs/decisions/0002-aws-profile.md`` §3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from smartcity.catalog.crawler import DATABASE
from smartcity.platform import sqlfiles
from smartcity.platform.engine_params import AwsParams

if TYPE_CHECKING:
    import boto3


#: The queries, one file each (Athena's Trino dialect).
SQL_DIR = Path(__file__).with_name("sql")


class QueryEngine(Protocol):
    """Runs the lab's named Athena queries: DuckDB locally, Amazon Athena on AWS."""

    def run(self, name: str) -> pd.DataFrame: ...


def list_queries() -> list[str]:
    """Names of the Athena queries shipped with the lab, in their intended order."""
    return sqlfiles.query_names(SQL_DIR)


def athena_sql(name: str) -> str:
    """The query as written for Athena (Trino dialect)."""
    return sqlfiles.query_text(SQL_DIR, name, "athena")


def referenced_tables(trino_sql: str) -> set[tuple[str, str]]:
    """(database, table) of every table a query reads, parsed as Trino (a parse error raises)."""
    statements = sqlglot.parse(trino_sql, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    ctes = {cte.alias_or_name for s in statements if s for cte in s.find_all(exp.CTE)}
    return {(t.db, t.name) for s in statements if s for t in s.find_all(exp.Table) if t.name not in ctes}


def to_duckdb(trino_sql: str) -> str:
    """Transpile Trino SQL to DuckDB SQL; unsupported constructs raise instead of guessing."""
    statements = sqlglot.transpile(
        trino_sql, read="trino", write="duckdb", pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE
    )
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def run_on(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(to_duckdb(athena_sql(name)))
    # DuckDB counts in HUGEINT (pandas would make them floats); Athena returns bigint.
    cols = [
        f'CAST("{c}" AS BIGINT) AS "{c}"' if str(t) == "HUGEINT" else f'"{c}"' for c, t in zip(rel.columns, rel.types)
    ]
    return rel.project(", ".join(cols)).df()


class DuckDBEngine:
    """The local engine: each query transpiled to DuckDB, over a connection where ``smartcity.<table>``
    is each catalogued table.

    With the local catalog that is the catalog's views of the lake's folders. With the Glue catalog
    (the aws-moto profile) it is Glue's tables, their S3 prefixes read as Arrow datasets (DuckDB's
    httpfs extension is not needed): the same files Athena would read.
    """

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self.connect = connect

    def run(self, name: str) -> pd.DataFrame:
        con = self.connect()
        try:
            return run_on(con, name)
        finally:
            con.close()


class AthenaEngine:
    """Amazon Athena over the Glue catalog, in the profile's workgroup.

    The workgroup enforces where results go, so no ``s3_output`` is passed (awswrangler would
    otherwise create a default results bucket). ``ctas_approach=False`` reads the plain CSV result:
    no temporary Glue table to create and drop, and ours are at most hundreds of rows.
    """

    def __init__(self, aws: AwsParams, boto3_session: boto3.Session) -> None:
        if aws.glue_database != DATABASE:
            raise ValueError(
                f"the Athena queries name their tables {DATABASE}.<table>, but glue_database is "
                f"{aws.glue_database!r}: set glue_database: {DATABASE}"
            )
        self.aws = aws
        self.session = boto3_session

    def run(self, name: str) -> pd.DataFrame:
        import awswrangler as wr  # noqa: PLC0415 - the `aws` extra: the lab imports without it

        return wr.athena.read_sql_query(
            athena_sql(name),
            database=self.aws.glue_database,
            workgroup=self.aws.athena_workgroup,
            ctas_approach=False,
            boto3_session=self.session,
        )
