"""Athena-style SQL on the local catalog: queries are written in Athena's (Trino) dialect.

The queries live as ``.sql`` files in ``lib/smartcity/sql/athena/`` exactly as one would run them in the
Athena console against the Glue database ``smartcity``. Locally, sqlglot transpiles each one to
DuckDB's dialect and DuckDB runs it over the catalog's views of the lake.
"""

from __future__ import annotations

import pandas as pd
import sqlglot

from smartcity import catalog, sql
from smartcity.config import Params


def list_queries() -> list[str]:
    """Names of the Athena queries shipped with the lab, in their intended order."""
    return sql.query_names("athena")


def athena_sql(name: str) -> str:
    """The query as written for Athena (Trino dialect)."""
    return sql.query_text("athena", name)


def to_duckdb(trino_sql: str) -> str:
    """Transpile Trino SQL to DuckDB SQL; unsupported constructs raise instead of guessing."""
    statements = sqlglot.transpile(
        trino_sql, read="trino", write="duckdb", pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE
    )
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def run_query(cfg: Params, name: str) -> pd.DataFrame:
    """Run a named Athena query on the local catalog and return its result."""
    con = catalog.connect(cfg, read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = con.sql(to_duckdb(athena_sql(name)))
        # DuckDB counts in HUGEINT (pandas would make them floats); Athena returns bigint.
        cols = [
            f'CAST("{c}" AS BIGINT) AS "{c}"' if str(t) == "HUGEINT" else f'"{c}"'
            for c, t in zip(rel.columns, rel.types)
        ]
        return rel.project(", ".join(cols)).df()
    finally:
        con.close()
