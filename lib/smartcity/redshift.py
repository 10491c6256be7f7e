"""The Redshift-style warehouse: bulk-load the lake with COPY, then run BI queries.

Loading follows Redshift's staging-table recipe: COPY a table's committed lake files into a
staging table, then, in one transaction, replace the table's rows with the staged ones (one per
event id). The warehouse therefore mirrors the lake: re-running a load never duplicates rows, a
reset lake gives a reset warehouse, and a failed load leaves the previous state intact. Rows
travel as CSV through ``COPY ... FROM STDIN``, never as row-by-row INSERTs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm import tqdm

from smartcity import contracts, lake, report, sql
from smartcity.config import TOPICS, Params
from smartcity.postgres import Warehouse

SCHEMA = "smartcity"
COPY_CHUNK = 1 << 20


def list_queries() -> list[str]:
    """Names of the BI queries shipped with the lab (``sql/redshift``), in order."""
    return sql.query_names("redshift")


def ensure_tables(conn: psycopg.Connection, topics: Sequence[str] = TOPICS) -> None:
    """Create the warehouse schema and one table per topic from the contracts, or evolve it.

    A table made under an older contract gains the new columns (nullable: old rows do not have
    them), and columns the contract no longer has stop being required. Nothing is dropped.
    """
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for topic in topics:
        conn.execute(contracts.create_table_sql(topic, f"{SCHEMA}.{topic}", "postgres"))
        existing = {
            name: nullable == "YES"
            for name, nullable in conn.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s", [SCHEMA, topic]
            ).fetchall()
        }
        wanted = {contracts.sql_name(n, "postgres"): kind for n, kind, _ in contracts.lake_columns(topic)}
        for name, kind in wanted.items():
            if name not in existing:
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ADD COLUMN "{name}" {contracts.sql_type(kind, "postgres")}')
        for name, nullable in existing.items():
            if name not in wanted and not nullable:
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ALTER COLUMN "{name}" DROP NOT NULL')


def lake_as_csv(cfg: Params, topic: str) -> tuple[bytes, int]:
    """A topic's committed lake rows as headerless CSV in warehouse column order, and their count."""
    table = lake.read_table(cfg, topic)
    if table.num_rows == 0:
        return b"", 0
    target = contracts.arrow_schema(topic)
    nullable = pa.schema([f.with_nullable(True) for f in target])
    table = table.select(target.names).cast(nullable)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue(), table.num_rows


def load_topic(conn: psycopg.Connection, cfg: Params, topic: str) -> dict[str, int]:
    """COPY one topic's lake rows into staging, then make them the table's rows, in one transaction."""
    data, rows = lake_as_csv(cfg, topic)
    target = f"{SCHEMA}.{topic}"
    columns = ", ".join(f'"{contracts.sql_name(n, "postgres")}"' for n, _, _ in contracts.lake_columns(topic))
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE stage (LIKE {target}) ON COMMIT DROP")
        with conn.cursor() as cur:
            with cur.copy(f"COPY stage ({columns}) FROM STDIN (FORMAT csv)") as copy:
                for start in range(0, len(data), COPY_CHUNK):
                    copy.write(data[start:start + COPY_CHUNK])
            copied = cur.rowcount
        conn.execute(f"DELETE FROM {target}")  # not TRUNCATE: on Redshift that would commit at once
        conn.execute(
            f'INSERT INTO {target} SELECT DISTINCT ON ("id") * FROM stage '
            'ORDER BY "id", kafka_partition, kafka_offset'
        )
    total = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    return {"rows in lake": rows, "rows copied": copied, "rows in warehouse": total}


def load_lake(cfg: Params, warehouse: Warehouse, topics: Sequence[str] = TOPICS) -> pd.DataFrame:
    """Load every topic's lake table into the warehouse; returns lake vs warehouse counts."""
    results = {}
    with warehouse.connect() as conn:
        ensure_tables(conn, topics)
        for topic in tqdm(topics, desc="loading", unit="table"):
            results[topic] = load_topic(conn, cfg, topic)
    report.record_counts(cfg, "warehouse", {t: r["rows in warehouse"] for t, r in results.items()})
    return pd.DataFrame.from_dict(results, orient="index").rename_axis("table")


def run_query(warehouse: Warehouse, name: str) -> pd.DataFrame:
    """Run a named BI query on the warehouse (session time zone UTC) and return its result."""
    with warehouse.connect() as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cur = conn.execute(sql.query_text("redshift", name))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    return frame


def warehouse_counts(warehouse: Warehouse, topics: Sequence[str] = TOPICS) -> dict[str, int]:
    with warehouse.connect() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {SCHEMA}.{t}").fetchone()[0] for t in topics}
