"""The warehouse's tables: one per topic from the contracts, the quarantine, and the loader's bookkeeping.

Tables are created from :mod:`smartcity.fleet.contracts` in PostgreSQL's or Redshift's dialect and
evolve with them (a later contract's columns are added, nullable). The loader keeps, in the same
schema, the lake generation it mirrors (``_lake``), the files it has loaded (``_loaded_files``) and
the events whose id came with another payload (``id_conflicts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS
from smartcity.platform import sqlfiles
from smartcity.stream import lake

#: The BI queries, one file each, in SQL that runs unchanged on Redshift and PostgreSQL.
SQL_DIR = Path(__file__).with_name("sql")

SCHEMA = "smartcity"
QUARANTINE_TABLE = "quarantine"
#: Redshift's staging tables, one per lake table and file layout (permanent: COPY needs a real table).
STAGE_SCHEMA = "smartcity_stage"
DIALECTS = ("postgres", "redshift")


class SqlSession(Protocol):
    """What the loader needs of a connection: psycopg's ``conn.execute``, returning a cursor."""

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any: ...


_BOOKKEEPING = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}._lake (generation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}._loaded_files (
    table_name TEXT NOT NULL, path TEXT NOT NULL, row_count BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (table_name, path));
CREATE TABLE IF NOT EXISTS {SCHEMA}.id_conflicts (
    table_name TEXT NOT NULL, id TEXT NOT NULL, kafka_partition INTEGER, kafka_offset BIGINT,
    kept_kafka_partition INTEGER, kept_kafka_offset BIGINT, payload_md5 TEXT, kept_payload_md5 TEXT,
    found_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {SCHEMA}.{QUARANTINE_TABLE} (
    reason TEXT, preview TEXT, key BYTEA, value BYTEA, headers TEXT, kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL, kafka_timestamp TIMESTAMPTZ, topic TEXT NOT NULL,
    PRIMARY KEY (topic, kafka_partition, kafka_offset));
"""

#: Quarantine columns per dialect: Redshift has no TEXT (it would be VARCHAR(256)) nor BYTEA, and
#: COPY turns the Parquet list of header structs into SUPER (SERIALIZETOJSON).
QUARANTINE_TYPES = {
    "postgres": {
        "reason": "TEXT",
        "preview": "TEXT",
        "key": "BYTEA",
        "value": "BYTEA",
        "headers": "TEXT",
        "kafka_partition": "INTEGER",
        "kafka_offset": "BIGINT",
        "kafka_timestamp": "TIMESTAMPTZ",
        "topic": "TEXT",
    },
    "redshift": {
        "reason": "VARCHAR(65535)",
        "preview": "VARCHAR(65535)",
        "key": "VARBYTE(1024000)",
        "value": "VARBYTE(1024000)",
        "headers": "SUPER",
        "kafka_partition": "INTEGER",
        "kafka_offset": "BIGINT",
        "kafka_timestamp": "TIMESTAMPTZ",
        "topic": "VARCHAR(256)",
    },
}
_QUARANTINE_REQUIRED = ("kafka_partition", "kafka_offset", "topic")

#: The same bookkeeping in Redshift's dialect: sized VARCHARs, GETDATE(), one statement per call.
_REDSHIFT_BOOKKEEPING = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}._lake (generation VARCHAR(64) NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}._loaded_files (table_name VARCHAR(64) NOT NULL, path VARCHAR(1024) NOT NULL, "
    "row_count BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT GETDATE(), PRIMARY KEY (table_name, path))",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.id_conflicts (table_name VARCHAR(64) NOT NULL, id VARCHAR(512) NOT NULL, "
    "kafka_partition INTEGER, kafka_offset BIGINT, kept_kafka_partition INTEGER, kept_kafka_offset BIGINT, "
    "payload_md5 CHAR(32), kept_payload_md5 CHAR(32), found_at TIMESTAMPTZ NOT NULL DEFAULT GETDATE())",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{QUARANTINE_TABLE} ("
    + ", ".join(
        f'"{c}" {t}{" NOT NULL" if c in _QUARANTINE_REQUIRED else ""}' for c, t in QUARANTINE_TYPES["redshift"].items()
    )
    + ", PRIMARY KEY (topic, kafka_partition, kafka_offset))",
]


def check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown warehouse dialect {dialect!r}; use one of {', '.join(DIALECTS)}")


def list_queries() -> list[str]:
    """Names of the BI queries shipped with the lab (``warehouse/sql/``), in order."""
    return sqlfiles.query_names(SQL_DIR)


def query_text(name: str) -> str:
    """A BI query as written (it runs unchanged on Redshift and PostgreSQL)."""
    return sqlfiles.query_text(SQL_DIR, name, "warehouse")


def ensure_tables(conn: SqlSession, topics: Sequence[str] = TOPICS, dialect: str = "postgres") -> None:
    """Create the warehouse schema and one table per topic from the contracts, or evolve it.

    A table made under an older contract gains the new columns (nullable: old rows do not have
    them), and columns the contract no longer has stop being required. Nothing is dropped.
    """
    check_dialect(dialect)
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for statement in [_BOOKKEEPING] if dialect == "postgres" else _REDSHIFT_BOOKKEEPING:
        conn.execute(statement)
    for topic in topics:
        conn.execute(contracts.create_table_sql(topic, f"{SCHEMA}.{topic}", dialect))
        existing = {
            name: nullable == "YES"
            for name, nullable in conn.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                [SCHEMA, topic],
            ).fetchall()
        }
        wanted = {contracts.sql_name(n, "postgres"): kind for n, kind, _ in contracts.lake_columns(topic)}
        for name, kind in wanted.items():
            if name not in existing:
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ADD COLUMN "{name}" {contracts.sql_type(kind, dialect)}')
        for name, nullable in existing.items():
            if name not in wanted and not nullable:
                conn.execute(f'ALTER TABLE {SCHEMA}.{topic} ALTER COLUMN "{name}" DROP NOT NULL')


@dataclass
class Target:
    lake_table: str
    table: str  # schema-qualified warehouse table
    columns: list[str]
    payload: list[str]  # columns whose values make the event (not its Kafka lineage)


def target_of(table: str) -> Target:
    if table == lake.QUARANTINE:
        names = lake.quarantine_schema().names
        return Target(table, f"{SCHEMA}.{QUARANTINE_TABLE}", names, [])
    columns = [contracts.sql_name(n, "postgres") for n, _, _ in contracts.lake_columns(table)]
    payload = [contracts.sql_name(f.name, "postgres") for f in contracts.fields_of(table)]
    return Target(table, f"{SCHEMA}.{table}", columns, payload)


def payload_md5(alias: str, columns: list[str]) -> str:
    """An MD5 of a row's payload that tells NULL from empty, in SQL both PostgreSQL and Redshift run."""
    parts = " || '|' || ".join(f"COALESCE(CAST({alias}.\"{c}\" AS VARCHAR), '<null>')" for c in columns)
    return f"MD5({parts})"
