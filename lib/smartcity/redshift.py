"""The Redshift-style warehouse: bulk-load the lake with COPY, then run BI queries.

Loading follows Redshift's own upsert recipe: COPY a table's committed lake files into a staging
table, then, in one transaction, delete the target rows whose event ids are staged and insert the
staged rows (one per id). Re-running a load therefore never duplicates rows, and a failed load
leaves the previous state intact. Rows travel as CSV through ``COPY ... FROM STDIN``, never as
row-by-row INSERTs.
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
    """Create the warehouse schema and one table per topic, from the contracts; idempotent."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for topic in topics:
        conn.execute(contracts.create_table_sql(topic, f"{SCHEMA}.{topic}", "postgres"))


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
    """COPY one topic's lake rows into the warehouse and merge them by event id, in one transaction."""
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
        conn.execute(f'DELETE FROM {target} AS t USING stage AS s WHERE t."id" = s."id"')
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
