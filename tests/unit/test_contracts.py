from __future__ import annotations

import duckdb
import pytest

from smartcity import contracts
from smartcity.config import TOPICS


@pytest.mark.parametrize("topic", TOPICS)
def test_every_generated_schema_has_the_contract_fields_in_order(topic: str) -> None:
    names = [f.name for f in contracts.fields_of(topic)]
    lake_names = names + [n for n, _ in contracts.LAKE_COLUMNS]
    assert list(contracts.json_schema(topic)["properties"]) == names
    assert [f.name for f in contracts.spark_schema(topic).fields] == names
    assert contracts.arrow_schema(topic).names == lake_names
    assert [c[0] for c in contracts.lake_columns(topic)] == lake_names


@pytest.mark.parametrize("topic", TOPICS)
def test_duckdb_ddl_creates_the_table(topic: str) -> None:
    con = duckdb.connect()
    con.execute(contracts.create_table_sql(topic, topic, "duckdb"))
    cols = [r[0] for r in con.execute(f"DESCRIBE {topic}").fetchall()]
    assert cols == [c[0] for c in contracts.lake_columns(topic)]


def test_postgres_ddl_folds_names_to_lowercase_like_redshift() -> None:
    ddl = contracts.create_table_sql("vehicle_data", "smartcity.vehicle_data", "postgres")
    assert '"deviceid" TEXT NOT NULL' in ddl and '"fueltype" TEXT NOT NULL' in ddl
    assert 'PRIMARY KEY ("id")' in ddl


def test_json_schema_rejects_what_the_stream_quarantines() -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(contracts.json_schema("gps_data"))
    assert list(validator.iter_errors({"id": "x"}))  # required fields missing
    good = {
        "id": "a", "schemaVersion": 1, "deviceId": "v", "timestamp": "2026-01-05T08:00:00.000Z",
        "latitude": 51.5, "longitude": -0.1, "speed": 50.0, "direction": 10.0, "vehicleType": "private",
    }
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "speed": 900.0}))
    assert list(validator.iter_errors({**good, "vehicleType": "spaceship"}))


def test_unknown_topic_is_named() -> None:
    with pytest.raises(KeyError, match="unknown topic 'nope'"):
        contracts.fields_of("nope")
