"""How staged rows join a warehouse table: once per event id, duplicates counted, conflicts kept aside.

The same SQL runs on PostgreSQL and Redshift (window functions, NOT EXISTS, MD5, no MERGE): an
id the warehouse already has is not inserted again; an id seen twice with the *same* payload is
a duplicate and counted; an id seen with a *different* payload is a conflict: the first version
stays (the earlier Kafka offset, or the row already loaded), the others go to ``id_conflicts``.
"""

from __future__ import annotations

from collections.abc import Sequence

from smartcity.warehouse.schema import SCHEMA, SqlSession, Target, payload_md5, target_of


def take_stock(conn: SqlSession, target: Target, in_lake: set[str]) -> tuple[set[str], bool]:
    """The files (relative to the table folder) the warehouse holds; the table is emptied first when
    files it loaded left the lake, or it holds rows it cannot trace to files (then ``reloaded``)."""
    loaded = {
        p
        for (p,) in conn.execute(
            f"SELECT path FROM {SCHEMA}._loaded_files WHERE table_name = %s", [target.lake_table]
        ).fetchall()
    }
    has_rows = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {target.table} LIMIT 1) t").fetchone()[0] > 0
    reloaded = bool(loaded - in_lake) or (not loaded and has_rows)
    if reloaded:  # files left the lake, or rows the warehouse cannot trace: mirror the lake afresh
        conn.execute(f"DELETE FROM {target.table}")  # not TRUNCATE: on Redshift that would commit at once
        conn.execute(f"DELETE FROM {SCHEMA}._loaded_files WHERE table_name = %s", [target.lake_table])
        loaded = set()
    return loaded, reloaded


#: Files noted in the ledger per INSERT (three parameters each).
LEDGER_ROWS_PER_INSERT = 500


def record_loaded(conn: SqlSession, table: str, files: Sequence[tuple[str, int]]) -> None:
    """Note the files just loaded (path relative to the table folder, rows) in the warehouse's ledger."""
    for start in range(0, len(files), LEDGER_ROWS_PER_INSERT):
        chunk = files[start : start + LEDGER_ROWS_PER_INSERT]
        conn.execute(
            f"INSERT INTO {SCHEMA}._loaded_files (table_name, path, row_count) VALUES "
            + ", ".join(["(%s, %s, %s)"] * len(chunk)),
            [v for path, rows in chunk for v in (table, path, rows)],
        )


def create_temp(dialect: str, name: str, *, like: str = "", query: str = "") -> str:
    """CREATE TEMP TABLE like a table or as a query. PostgreSQL drops it at commit; Redshift has no
    ON COMMIT clause (the loader drops its temp tables itself, and they die with the session anyway)."""
    on_commit = " ON COMMIT DROP" if dialect == "postgres" else ""
    if like:
        return f"CREATE TEMP TABLE {name} (LIKE {like}){on_commit}"
    return f"CREATE TEMP TABLE {name}{on_commit} AS {query}"


def merge(conn: SqlSession, target: Target, stage: str, dialect: str) -> tuple[int, int]:
    """Merge a stage shaped like the target into it; returns (duplicate ids, conflicting ids)."""
    if target.payload:
        return _merge_events(conn, target, stage, dialect)
    cols = ", ".join(f'"{c}"' for c in target.columns)  # the quarantine: one row per Kafka message
    conn.execute(
        f"INSERT INTO {target.table} ({cols}) SELECT {cols} FROM {stage} s WHERE NOT EXISTS "
        f"(SELECT 1 FROM {target.table} t WHERE t.topic = s.topic AND t.kafka_partition = "
        "s.kafka_partition AND t.kafka_offset = s.kafka_offset)"
    )
    return 0, 0


def _merge_events(conn: SqlSession, target: Target, stage: str, dialect: str = "postgres") -> tuple[int, int]:
    """Insert the first version of each new id; count duplicates, keep conflicting versions aside."""
    cols = ", ".join(f'"{c}"' for c in target.columns)
    conn.execute(
        create_temp(
            dialect,
            "ranked_stage",
            query=f"SELECT s.*, {payload_md5('s', target.payload)} AS payload_md5, "
            "ROW_NUMBER() OVER (PARTITION BY s.id ORDER BY s.kafka_partition, s.kafka_offset) AS version "
            f"FROM {stage} s",
        )
    )
    # the version that stands for each id: the one already loaded, else the earliest staged
    conn.execute(
        create_temp(
            dialect,
            "kept",
            query=f"SELECT t.id, t.kafka_partition, t.kafka_offset, {payload_md5('t', target.payload)} AS payload_md5 "
            f"FROM {target.table} t WHERE t.id IN (SELECT id FROM ranked_stage) "
            "UNION ALL SELECT r.id, r.kafka_partition, r.kafka_offset, r.payload_md5 FROM ranked_stage r "
            f"WHERE r.version = 1 AND NOT EXISTS (SELECT 1 FROM {target.table} t WHERE t.id = r.id)",
        )
    )
    others = (
        "FROM ranked_stage r JOIN kept k ON k.id = r.id "
        "WHERE NOT (r.kafka_partition = k.kafka_partition AND r.kafka_offset = k.kafka_offset)"
    )
    duplicates = conn.execute(f"SELECT count(*) {others} AND r.payload_md5 = k.payload_md5").fetchone()[0]
    # counted with a SELECT, not the INSERT's rowcount, which Redshift's driver is not known to report
    conflicts = conn.execute(f"SELECT count(*) {others} AND r.payload_md5 <> k.payload_md5").fetchone()[0]
    conn.execute(
        f"INSERT INTO {SCHEMA}.id_conflicts (table_name, id, kafka_partition, kafka_offset, kept_kafka_partition, "
        "kept_kafka_offset, payload_md5, kept_payload_md5) SELECT %s, r.id, r.kafka_partition, r.kafka_offset, "
        f"k.kafka_partition, k.kafka_offset, r.payload_md5, k.payload_md5 {others} AND r.payload_md5 <> k.payload_md5",
        [target.lake_table],
    )
    conn.execute(
        f"INSERT INTO {target.table} ({cols}) SELECT {cols} FROM ranked_stage r WHERE r.version = 1 "
        f"AND NOT EXISTS (SELECT 1 FROM {target.table} t WHERE t.id = r.id)"
    )
    conn.execute("DROP TABLE ranked_stage")
    conn.execute("DROP TABLE kept")
    return duplicates, conflicts


def follow_generation(conn: SqlSession, current: str, tables: Sequence[str]) -> None:
    """A reset lake (a new run) is a new generation: the warehouse lets go of the previous one's rows."""
    stored = conn.execute(f"SELECT generation FROM {SCHEMA}._lake").fetchone()
    if stored is not None and stored[0] == current:
        return
    for table in tables:
        conn.execute(f"DELETE FROM {target_of(table).table}")
    for bookkeeping in ("_loaded_files", "id_conflicts", "_lake"):
        conn.execute(f"DELETE FROM {SCHEMA}.{bookkeeping}")
    conn.execute(f"INSERT INTO {SCHEMA}._lake (generation) VALUES (%s)", [current])
