"""Athena-style SQL on the local catalog: queries are written in Athena's (Trino) dialect.

The queries live as ``.sql`` files in ``lib/smartcity/query/sql/`` exactly as one would run them in the
Athena console against the Glue database ``smartcity``. Locally, sqlglot transpiles each one to
DuckDB's dialect and DuckDB runs it over the catalog's views of the lake; or the lab's Trino, the
engine Athena is built on, runs it unchanged (``docs/decisions/0004-trino.md``). On AWS the same
files run on Amazon Athena unchanged. Every engine answers ``run(name)``
(``docs/decisions/0002-aws-profile.md`` §3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from smartcity.catalog.crawler import DATABASE, catalog_name, empty_query
from smartcity.platform import sqlfiles
from smartcity.platform.engine_params import AwsParams
from smartcity.stream import lake

if TYPE_CHECKING:
    import boto3
    from trino.dbapi import Connection


#: The queries, one file each (Athena's Trino dialect).
SQL_DIR = Path(__file__).with_name("sql")


class QueryEngine(Protocol):
    """Runs the lab's named Athena queries: DuckDB or Trino locally, Amazon Athena on AWS."""

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


def _trino_date_diff(node: exp.Expression) -> exp.Expression:
    """Trino's ``date_diff(unit, a, b)`` counts whole units elapsed (08:44:52 to 09:22:33 is 37 minutes);
    DuckDB's ``date_diff`` counts unit boundaries crossed (38), its ``date_sub`` is Trino's meaning."""
    if isinstance(node, exp.DateDiff) and node.unit is not None:
        unit = exp.Literal.string(node.unit.name.lower())
        return exp.Anonymous(this="date_sub", expressions=[unit, node.expression, node.this])
    return node


def to_duckdb(trino_sql: str) -> str:
    """Transpile Trino SQL to DuckDB SQL with Trino's meaning; unsupported constructs raise instead of guessing.

    sqlglot translates syntax; where a function of the same name means something else on DuckDB, the
    tree is rewritten first (:func:`_trino_date_diff`). The cross-engine check against Trino
    (``tests/integration/test_trino.py``) is what finds such differences.
    """
    statements = sqlglot.parse(trino_sql, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    if len(statements) != 1 or statements[0] is None:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    tree = statements[0].transform(_trino_date_diff)
    return tree.sql(dialect="duckdb", pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)


def duckdb_problems(sql_dir: Path = SQL_DIR) -> dict[str, str]:
    """The queries of a folder that DuckDB cannot run as translated, with why: sqlglot refuses the Trino
    syntax, or DuckDB cannot bind what it made of it (a Trino function it lacks, which sqlglot passes
    through by name). Checked over empty tables in the contracts' schemas; ``{}`` when every query can run.
    """
    con = duckdb.connect()
    try:
        con.execute(f"CREATE SCHEMA {DATABASE}")
        for folder in lake.TABLES:
            con.execute(
                f'CREATE VIEW {DATABASE}."{catalog_name(folder)}" AS {empty_query(con, lake.table_schema(folder))}'
            )
        problems = {}
        for name in sqlfiles.query_names(sql_dir):
            try:
                con.execute("EXPLAIN " + to_duckdb(sqlfiles.query_text(sql_dir, name)))
            except (sqlglot.errors.SqlglotError, duckdb.Error, ValueError) as exc:
                problems[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    finally:
        con.close()
    return problems


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


class TrinoEngine:
    """Athena's own engine on this machine: each query as written, unchanged, on the lab's Trino over the
    tables 03_catalog registered in its metastore (:mod:`smartcity.catalog.metastore`).

    Trino types decimal literals' arithmetic as ``decimal`` (``100.0 * x / n``), as Athena does;
    such columns come back as floats, like DuckDB's, so frames of both engines compare.
    """

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self.connect = connect

    def run(self, name: str) -> pd.DataFrame:
        con = self.connect()
        try:
            cursor = con.cursor()
            cursor.execute(athena_sql(name))
            rows = cursor.fetchall()
            described = cursor.description
        finally:
            con.close()
        frame = pd.DataFrame(rows, columns=[d[0] for d in described])
        for column, kind in ((d[0], str(d[1])) for d in described):
            if kind.startswith("decimal"):
                frame[column] = frame[column].astype(float)
            elif kind.startswith("timestamp"):
                frame[column] = pd.to_datetime(frame[column])
        return frame


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
