"""Warehouse loads on real PostgreSQL: incremental, one transaction, bounded chunks, conflicts kept,
mixed contract versions, and a quarantine of hostile bytes that every reader still reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartcity import steps
from smartcity.fleet import contracts, simulation
from smartcity.fleet.contracts import TOPICS
from smartcity.params import Params
from smartcity.query import athena
from smartcity.stream import lake
from smartcity.warehouse import postgres as warehouse_postgres
from smartcity.warehouse import schema
from smartcity.warehouse.postgres import PostgresWarehouse
from tests.conftest import lab_params
from tests.lake_fixture import to_row, write_lake

pytestmark = pytest.mark.integration


def _load(cfg: Params, warehouse: PostgresWarehouse) -> pd.DataFrame:
    """05_redshift's load of this profile's lake into the warehouse (the ledger recorded, as the notebook does)."""
    return steps.load_warehouse(steps.open_lab(cfg), warehouse)


@pytest.fixture
def fresh(warehouse: PostgresWarehouse) -> PostgresWarehouse:
    with warehouse.connect() as conn:
        conn.execute("DROP SCHEMA IF EXISTS smartcity CASCADE")
    return warehouse


def _write_file(cfg: Params, topic: str, rows: list[dict[str, object]], name: str, version: int = 2) -> Path:
    schema = pa.schema([f.with_nullable(True) for f in contracts.arrow_schema(topic, version=version)])
    table = pa.Table.from_pylist(rows, schema=schema)
    day = rows[0]["event_date"]
    path = cfg.paths.lake / topic / f"event_date={day}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.drop_columns(["event_date"]), path)
    return path


def _warehouse_count(warehouse: PostgresWarehouse, table: str, where: str = "TRUE") -> int:
    with warehouse.connect() as conn:
        return conn.execute(f"SELECT count(*) FROM smartcity.{table} WHERE {where}").fetchone()[0]


def test_a_second_load_copies_only_the_new_files(tmp_path: Path, fresh: PostgresWarehouse) -> None:
    cfg = lab_params(tmp_path)
    events = [e for e in simulation.simulate_journey(cfg.fleet) if e.topic == "gps_data"]
    half = len(events) // 2
    _write_file(cfg, "gps_data", [to_row(e, n) for n, e in enumerate(events[:half])], "part-1.parquet")
    first = _load(cfg, fresh)
    _write_file(cfg, "gps_data", [to_row(e, n) for n, e in enumerate(events[half:], half)], "part-2.parquet")
    second = _load(cfg, fresh)
    assert first.at["gps_data", "rows copied"] == half
    assert second.at["gps_data", "new files"] == 1
    assert second.at["gps_data", "rows copied"] == len(events) - half
    assert second.at["gps_data", "rows in warehouse"] == len(events) == _warehouse_count(fresh, "gps_data")


def test_copy_streams_in_bounded_chunks(
    tmp_path: Path, fresh: PostgresWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = lab_params(tmp_path)
    counts = write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    monkeypatch.setattr(warehouse_postgres, "COPY_ROWS", 500)
    files = lake.data_files(cfg.paths.lake / "vehicle_data")
    chunks = [rows for _, rows in warehouse_postgres._chunks(files, "vehicle_data", cfg.paths.lake / "vehicle_data")]
    assert max(chunks) <= 500 and sum(chunks) == counts["vehicle_data"] and len(chunks) > 2
    loaded = _load(cfg, fresh)
    assert loaded.loc[list(TOPICS), "rows in warehouse"].to_dict() == counts


def test_same_id_other_payload_is_counted_and_kept_aside(tmp_path: Path, fresh: PostgresWarehouse) -> None:
    cfg = lab_params(tmp_path)
    events = [e for e in simulation.simulate_journey(cfg.fleet) if e.topic == "weather_data"][:10]
    rows = [to_row(e, n) for n, e in enumerate(events)]
    twin = {**rows[0], "kafka_offset": 100}  # the same event delivered again: a duplicate
    changed = {**rows[1], "kafka_offset": 101, "temperature": 99.0 - 60}  # same id, another payload
    _write_file(cfg, "weather_data", rows, "part-1.parquet")
    _load(cfg, fresh)
    _write_file(cfg, "weather_data", [twin, changed], "part-2.parquet")
    loaded = _load(cfg, fresh)
    assert loaded.at["weather_data", "duplicate ids"] == 1
    assert loaded.at["weather_data", "conflicting ids"] == 1
    assert loaded.at["weather_data", "rows in warehouse"] == 10
    with fresh.connect() as conn:
        kept = conn.execute("SELECT temperature FROM smartcity.weather_data WHERE id = %s", [rows[1]["id"]]).fetchone()
        aside = conn.execute(
            "SELECT table_name, id, kafka_offset, kept_kafka_offset FROM smartcity.id_conflicts"
        ).fetchall()
    assert kept[0] == pytest.approx(rows[1]["temperature"]), "the first version loaded stays"
    assert aside == [("weather_data", rows[1]["id"], 101, 1)]


def test_all_tables_load_in_one_transaction(tmp_path: Path, fresh: PostgresWarehouse) -> None:
    cfg = lab_params(tmp_path)
    counts = write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    _load(cfg, fresh)
    more = lab_params(tmp_path / "more", seed=11)
    extra = [
        to_row(e, 10_000 + n)
        for n, e in enumerate(e for e in simulation.simulate_journey(more.fleet) if e.topic == "vehicle_data")
    ]
    _write_file(cfg, "vehicle_data", extra, "part-more.parquet")
    broken = cfg.paths.lake / "weather_data" / "event_date=2026-01-05" / "part-broken.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(Exception, match="(?i)parquet"):
        _load(cfg, fresh)
    assert _warehouse_count(fresh, "vehicle_data") == counts["vehicle_data"], "vehicle rows were rolled back too"
    broken.unlink()
    loaded = _load(cfg, fresh)
    assert loaded.at["vehicle_data", "rows in warehouse"] == counts["vehicle_data"] + len(extra)


def test_mixed_contract_versions_load_crawl_and_query(tmp_path: Path, fresh: PostgresWarehouse) -> None:
    old = lab_params(tmp_path, schema_version=1, seed=5)
    cfg = lab_params(tmp_path)
    v1 = write_lake(old, simulation.simulate_journey(old.fleet), version=1)  # a lake made before edgeId existed
    v1_files = set(lake.data_files(cfg.paths.lake / "vehicle_data"))
    assert "edgeId" not in pq.read_schema(next(iter(v1_files))).names
    new_rows = [
        to_row(e, 50_000 + n)
        for n, e in enumerate(e for e in simulation.simulate_journey(cfg.fleet) if e.topic == "vehicle_data")
    ]
    _write_file(cfg, "vehicle_data", new_rows, "part-v2.parquet")
    total = v1["vehicle_data"] + len(new_rows)
    # the warehouse
    loaded = _load(cfg, fresh)
    assert loaded.at["vehicle_data", "rows in warehouse"] == total
    assert _warehouse_count(fresh, "vehicle_data", "edgeid IS NOT NULL") == len(new_rows)
    for name in schema.list_queries():
        assert len(fresh.run_query(name)) > 0
    # the catalog and Athena SQL
    lab = steps.open_lab(cfg)
    steps.crawl_lake(lab)
    columns = steps.describe_catalog(lab, "columns", table="vehicle_data")["column_name"].tolist()
    assert columns == [f.name for f in contracts.fields_of("vehicle_data", 2)] + [  # files of v1 and v2
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "event_date",
    ]
    assert steps.catalog_counts(lab)["vehicle_data"] == total
    assert steps.query_lake(lab, "row_counts").set_index("table_name").at["vehicle_data", "row_count"] == total
    for name in athena.list_queries():
        assert len(steps.query_lake(lab, name)) > 0
    # readers that share none of the lab's code
    glob = str(cfg.paths.lake / "vehicle_data" / "**" / "*.parquet")
    got = duckdb.sql(
        f"SELECT count(*), count(edgeId) FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    ).fetchall()[0]
    assert got == (total, len(new_rows))
    assert lake.read_table(lab.store, "vehicle_data").num_rows == total


HOSTILE = [
    b"\xff\xfe\x00not utf-8",
    b'{"deviceId": "a\x00b"}',
    b"\x00\x00\x00",
    b"",
    '{"text": "\u202e\u0007bell"}'.encode(),
]


def test_a_hostile_quarantine_stays_readable_everywhere(tmp_path: Path, fresh: PostgresWarehouse) -> None:
    cfg = lab_params(tmp_path)
    write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    stamp = datetime(2026, 1, 5, 8, tzinfo=UTC)
    rows = [
        {
            "reason": "not UTF-8",
            "preview": value.decode(errors="replace").replace("\x00", "\ufffd"),
            "key": None if n == 3 else b"k\x00",
            "value": value,
            "headers": [{"key": "schema\u0000Version", "value": b"\xff"}, {"key": "h", "value": None}],
            "kafka_partition": 0,
            "kafka_offset": n,
            "kafka_timestamp": stamp,
            "topic": "gps_data",
        }
        for n, value in enumerate(HOSTILE)
    ]
    table = pa.Table.from_pylist(rows, schema=lake.quarantine_schema())
    path = cfg.paths.lake / lake.QUARANTINE / "topic=gps_data" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table.drop_columns(["topic"]), path)
    loaded = _load(cfg, fresh)
    assert loaded.at[lake.QUARANTINE, "rows in warehouse"] == len(HOSTILE)
    with fresh.connect() as conn:
        values = [bytes(v) for (v,) in conn.execute("SELECT value FROM smartcity.quarantine ORDER BY kafka_offset")]
    assert values == HOSTILE, "the raw bytes survive the trip"
    lab = steps.open_lab(cfg)
    steps.crawl_lake(lab)
    assert steps.catalog_counts(lab)["quarantine"] == len(HOSTILE)
    glob = str(cfg.paths.lake / lake.QUARANTINE / "**" / "*.parquet")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0] == 5
    assert lake.read_table(lab.store, lake.QUARANTINE).num_rows == len(HOSTILE)
