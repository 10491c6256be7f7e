"""The event contracts: one definition per topic, from which every other schema is generated.

Each of the five seed topics has a list of :class:`Field` (name, type, unit, required, range).
From it come the JSON Schema (validation of produced events), the Spark StructType (parsing in
the stream), the Arrow schema (lake readers) and the SQL DDL (DuckDB, PostgreSQL). Field names
keep the seed's camelCase; locations are ``latitude``/``longitude`` doubles in WGS84 degrees.

Mapping to the FIWARE Smart Data Models, for readers who know them: ``vehicle_data`` and
``gps_data`` follow *Vehicle* (``speed``, ``heading`` as ``direction``, ``location``),
``weather_data`` follows *WeatherObserved* (``temperature``, ``relativeHumidity`` as
``humidity`` in %, ``windSpeed``, ``precipitation``), ``emergency_data`` follows
*Alert* / *RoadAccident* (``category`` as ``type``, ``alertSource`` as ``deviceId``) and
``traffic_data`` follows *TrafficFlowObserved* seen from one camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

SCHEMA_VERSION = 1

#: Columns the stream adds to every lake table, after the contract fields.
LAKE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_date", "date"),
    ("kafka_partition", "int"),
    ("kafka_offset", "long"),
)


class Event(NamedTuple):
    """One message as produced: its topic, its key (the device) and its JSON value."""

    topic: str
    key: str
    value: dict[str, Any]


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # string | timestamp | double | int | long | date
    doc: str
    unit: str = ""
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()


def _common(device_doc: str) -> list[Field]:
    return [
        Field("id", "string", "event id (uuid5 of topic, device and sequence: stable across runs)"),
        Field("schemaVersion", "int", "version of this contract", minimum=1),
        Field("deviceId", "string", device_doc),
        Field("timestamp", "timestamp", "event time, ISO 8601 UTC"),
        Field("latitude", "double", "WGS84 latitude", "deg", minimum=-90, maximum=90),
        Field("longitude", "double", "WGS84 longitude", "deg", minimum=-180, maximum=180),
    ]


CONTRACTS: dict[str, list[Field]] = {
    "vehicle_data": _common("vehicle id")
    + [
        Field("speed", "double", "speed over ground", "km/h", minimum=0, maximum=250),
        Field("direction", "double", "bearing of travel, clockwise from north", "deg", minimum=0, maximum=360),
        Field("make", "string", "manufacturer"),
        Field("model", "string", "model"),
        Field("year", "int", "model year", minimum=1990, maximum=2030),
        Field("fuelType", "string", "fuel", enum=("Petrol", "Diesel", "Hybrid", "Electric")),
    ],
    "gps_data": _common("vehicle id")
    + [
        Field("speed", "double", "speed over ground", "km/h", minimum=0, maximum=250),
        Field("direction", "double", "bearing of travel, clockwise from north", "deg", minimum=0, maximum=360),
        Field("vehicleType", "string", "vehicle category", enum=("private", "taxi", "bus", "truck")),
    ],
    "traffic_data": _common("camera device id")
    + [
        Field("cameraId", "string", "camera name"),
        Field("vehicleId", "string", "vehicle seen passing the camera"),
        Field("snapshot", "string", "reference of the stored image (object key)"),
    ],
    "weather_data": _common("weather station id")
    + [
        Field("temperature", "double", "air temperature", "degC", minimum=-40, maximum=50),
        Field(
            "weatherCondition", "string", "observed condition",
            enum=("Sunny", "Cloudy", "Rain", "Snow", "Fog"),
        ),
        Field("precipitation", "double", "precipitation rate", "mm/h", minimum=0, maximum=200),
        Field("windSpeed", "double", "wind speed", "km/h", minimum=0, maximum=200),
        Field("humidity", "double", "relative humidity", "%", minimum=0, maximum=100),
        Field("airQualityIndex", "double", "air quality index", minimum=0, maximum=500),
    ],
    "emergency_data": _common("vehicle or authority that reported the incident")
    + [
        Field("incidentId", "string", "incident id, shared by all reports of one incident"),
        Field("type", "string", "incident category", enum=("Accident", "Fire", "Medical", "Police", "Breakdown")),
        Field("status", "string", "incident state", enum=("Active", "Resolved")),
        Field("description", "string", "free text", required=False),
    ],
}


def fields_of(topic: str) -> list[Field]:
    try:
        return CONTRACTS[topic]
    except KeyError:
        raise KeyError(f"unknown topic {topic!r}; known: {sorted(CONTRACTS)}") from None


# -- JSON Schema ----------------------------------------------------------------------------------
_JSON_TYPES = {"string": "string", "timestamp": "string", "double": "number", "int": "integer", "long": "integer"}


def json_schema(topic: str) -> dict[str, Any]:
    """Draft 2020-12 JSON Schema of one topic's messages."""
    props: dict[str, Any] = {}
    for f in fields_of(topic):
        prop: dict[str, Any] = {"type": _JSON_TYPES[f.type], "description": f.doc}
        if f.type == "timestamp":
            prop["format"] = "date-time"
        if f.unit:
            prop["x-unit"] = f.unit
        if f.minimum is not None:
            prop["minimum"] = f.minimum
        if f.maximum is not None:
            prop["maximum"] = f.maximum
        if f.enum:
            prop["enum"] = list(f.enum)
        if not f.required:
            prop = {"anyOf": [prop, {"type": "null"}], "description": f.doc}
        props[f.name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://smartcity.lab/schemas/{topic}/v{SCHEMA_VERSION}.json",
        "title": topic,
        "type": "object",
        "properties": props,
        "required": [f.name for f in fields_of(topic) if f.required],
        "additionalProperties": False,
    }


# -- Spark ----------------------------------------------------------------------------------------
def spark_schema(topic: str) -> Any:
    """StructType used to parse the topic's JSON values in Structured Streaming."""
    from pyspark.sql import types as T

    spark_types = {
        "string": T.StringType(), "timestamp": T.TimestampType(), "double": T.DoubleType(),
        "int": T.IntegerType(), "long": T.LongType(), "date": T.DateType(),
    }
    return T.StructType([T.StructField(f.name, spark_types[f.type], nullable=True) for f in fields_of(topic)])


# -- Arrow ----------------------------------------------------------------------------------------
def arrow_schema(topic: str, *, lake: bool = True) -> Any:
    """Arrow schema of a lake table (contract fields, then the stream's lake columns)."""
    import pyarrow as pa

    arrow_types = {
        "string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"), "double": pa.float64(),
        "int": pa.int32(), "long": pa.int64(), "date": pa.date32(),
    }
    cols = [(f.name, f.type, not f.required) for f in fields_of(topic)]
    if lake:
        cols += [(name, kind, False) for name, kind in LAKE_COLUMNS]
    return pa.schema([pa.field(name, arrow_types[kind], nullable=nullable) for name, kind, nullable in cols])


# -- SQL DDL --------------------------------------------------------------------------------------
_SQL_TYPES = {
    "duckdb": {"string": "VARCHAR", "timestamp": "TIMESTAMPTZ", "double": "DOUBLE", "int": "INTEGER",
               "long": "BIGINT", "date": "DATE"},
    "postgres": {"string": "TEXT", "timestamp": "TIMESTAMPTZ", "double": "DOUBLE PRECISION",
                 "int": "INTEGER", "long": "BIGINT", "date": "DATE"},
}


def lake_columns(topic: str) -> list[tuple[str, str, bool]]:
    """(name, contract type, required) of every column of the topic's lake table, in order."""
    cols = [(f.name, f.type, f.required) for f in fields_of(topic)]
    return cols + [(name, kind, True) for name, kind in LAKE_COLUMNS]


def sql_name(name: str, dialect: str) -> str:
    """Column name in a SQL dialect: warehouses (Redshift, and PostgreSQL like it) fold to lowercase."""
    return name.lower() if dialect == "postgres" else name


def create_table_sql(topic: str, table: str, dialect: str) -> str:
    """CREATE TABLE IF NOT EXISTS for the topic's lake columns in one SQL dialect, keyed by event id."""
    types = _SQL_TYPES[dialect]
    cols = [
        f'    "{sql_name(name, dialect)}" {types[kind]}{" NOT NULL" if required else ""}'
        for name, kind, required in lake_columns(topic)
    ]
    cols.append('    PRIMARY KEY ("id")')
    return f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(cols) + "\n)"
