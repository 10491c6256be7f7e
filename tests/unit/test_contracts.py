from __future__ import annotations

import duckdb
import jsonschema
import pytest
import sqlglot

from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS


@pytest.mark.parametrize("version", contracts.SCHEMA_VERSIONS)
@pytest.mark.parametrize("topic", TOPICS)
def test_published_json_schema_is_the_generated_one(topic: str, version: int) -> None:
    # `python -m smartcity schemas` writes them; a contract change without it fails here
    assert contracts.schema_path(topic, version).read_text() == contracts.render_schema(topic, version)
    schema = contracts.published_schema(topic, version)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-schema-version"] == version
    assert schema["properties"]["schemaVersion"]["const"] == version
    assert f"/v{version}.json" in schema["$id"]


def test_versions_2_and_3_add_optional_fields_to_vehicle_data_only() -> None:
    for topic in TOPICS:
        v1, v2, v3 = ([f.name for f in contracts.fields_of(topic, v)] for v in (1, 2, 3))
        assert v2 == v1 + (["edgeId"] if topic == "vehicle_data" else [])
        assert v3 == v2 + (["adviceGroup", "adviceId"] if topic == "vehicle_data" else [])
    edge, group, advice = contracts.fields_of("vehicle_data")[-3:]
    assert edge.name == "edgeId" and not edge.required and edge.since == 2
    assert not group.required and group.since == 3 and group.enum == contracts.ADVICE_GROUPS
    assert not advice.required and advice.since == 3 and advice.pattern == contracts.UUID_PATTERN
    assert "edgeId" not in contracts.published_schema("vehicle_data", 1)["properties"]
    assert "adviceGroup" not in contracts.published_schema("vehicle_data", 2)["properties"]
    with pytest.raises(ValueError, match="unknown contract version 4"):
        contracts.fields_of("gps_data", 4)


@pytest.mark.parametrize("topic", TOPICS)
def test_every_generated_schema_has_the_contract_fields_in_order(topic: str) -> None:
    names = [f.name for f in contracts.fields_of(topic)]
    lake_names = names + [n for n, _ in contracts.LAKE_COLUMNS]
    assert names[:6] == ["id", "schemaVersion", "deviceId", "timestamp", "latitude", "longitude"]
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


@pytest.mark.parametrize("topic", TOPICS)
def test_redshift_and_athena_ddl_parse_in_their_dialects(topic: str) -> None:
    redshift = contracts.create_table_sql(topic, f"smartcity.{topic}", "redshift")
    parsed = sqlglot.parse_one(redshift, read="redshift")
    assert parsed.find(sqlglot.exp.Schema) is not None
    assert 'DISTKEY ("deviceid")' in redshift and 'SORTKEY ("timestamp")' in redshift
    athena = contracts.create_table_sql(topic, f"smartcity.{topic}", "athena", location=f"s3://lake/{topic}")
    sqlglot.parse_one(athena, read="athena")
    assert "PARTITIONED BY (`event_date` date)" in athena and "STORED AS PARQUET" in athena
    assert f"LOCATION 's3://lake/{topic}/'" in athena
    with pytest.raises(ValueError, match="needs the S3 location"):
        contracts.create_table_sql(topic, topic, "athena")


def test_postgres_ddl_folds_names_to_lowercase_like_redshift() -> None:
    ddl = contracts.create_table_sql("vehicle_data", "smartcity.vehicle_data", "postgres")
    assert '"deviceid" TEXT NOT NULL' in ddl and '"fueltype" TEXT NOT NULL' in ddl
    assert 'PRIMARY KEY ("id")' in ddl


def test_json_schema_rejects_what_the_stream_quarantines() -> None:
    validator = jsonschema.Draft202012Validator(contracts.published_schema("gps_data"))
    assert list(validator.iter_errors({"id": "x"}))  # required fields missing
    good = {
        "id": "6f1f5b5e-3c55-4a7e-9d1e-5c17a0b1c0de",
        "schemaVersion": contracts.SCHEMA_VERSION,
        "deviceId": "v",
        "timestamp": "2026-01-05T08:00:00.000Z",
        "latitude": 51.5,
        "longitude": -0.1,
        "speed": 50.0,
        "direction": 10.0,
        "vehicleType": "private",
        "accuracy": 5.0,
    }
    assert not list(validator.iter_errors(good))
    bad_inputs = (
        {"speed": 900.0},
        {"vehicleType": "spaceship"},
        {"schemaVersion": 1},
        {"extra": 1},
        {"id": ""},
        {"id": "not-a-uuid"},
        {"deviceId": "v\u0000"},
        {"deviceId": 7},
        {"timestamp": 1767600000000},
        {"timestamp": "2026-01-05 08:00"},
        {"deviceId": {"nested": 1}},
    )
    for bad in bad_inputs:
        assert list(validator.iter_errors({**good, **bad})), bad


def test_unknown_topic_and_dialect_are_named() -> None:
    with pytest.raises(KeyError, match="unknown topic 'nope'"):
        contracts.fields_of("nope")
    with pytest.raises(ValueError, match="unknown SQL dialect 'oracle'"):
        contracts.create_table_sql("gps_data", "t", "oracle")
