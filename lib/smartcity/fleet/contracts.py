"""The event contracts: one definition per topic, from which every other schema is generated.

Each of the five seed topics has a list of :class:`Field` (name, type, unit, required, range,
allowed values). From it come the JSON Schema files published next to this module
(``<topic>.schema.json``, what producers and consumers outside the lab validate against), the
Spark StructType (parsing in the stream, and the checks that send bad messages to quarantine),
the Arrow schema (lake readers) and SQL DDL for DuckDB, PostgreSQL, Redshift and Athena. Field
names keep the seed's camelCase (``id``, ``deviceId``, ``timestamp``, ``speed``, ...); locations
are ``latitude``/``longitude`` doubles in WGS84 degrees; every event carries ``schemaVersion``,
which the producer also sends as a Kafka header.

Mapping to the FIWARE Smart Data Models, for readers who know them:

=================  ==========================  ==================================================
topic              FIWARE model                 field mapping (lab -> FIWARE)
=================  ==========================  ==================================================
vehicle_data       Vehicle                     speed -> speed, direction -> heading,
                                               latitude/longitude -> location, odometer ->
                                               mileageFromOdometer, fuelLevel -> fuelFilled (as %),
                                               make/model/fuelType -> vehicleModel attributes
gps_data           Vehicle (location updates)  accuracy -> location accuracy, vehicleType ->
                                               vehicleType
traffic_data       TrafficFlowObserved         one passage per event: cameraId -> refRoadSegment
                                               sensor, speed -> averageVehicleSpeed of 1 vehicle,
                                               road -> refRoadSegment name
weather_data       WeatherObserved             temperature, precipitation, windSpeed,
                                               humidity -> relativeHumidity (as %),
                                               weatherCondition -> weatherType,
                                               airQualityIndex -> AirQualityObserved.airQualityIndex
emergency_data     Alert (category traffic),   type -> subCategory (RoadAccident ...), severity ->
                   RoadAccident                severity, status Active/Resolved -> validFrom/validTo
=================  ==========================  ==================================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

#: The contract version producers write now, and every version the stream still accepts.
SCHEMA_VERSION = 3
SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3)
SCHEMA_DIR = Path(__file__).parent / "schemas"

#: Ids are UUIDs in canonical form (the simulator's are uuid5).
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: Timestamps are ISO 8601 strings with a date, a time and a UTC offset (``Z`` or ``+hh:mm``).
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
#: Event times outside this window are implausible (epoch milliseconds read as seconds, year 3026).
TIMESTAMP_WINDOW = ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
#: No contract string may hold control characters (NUL included): they break readers and warehouses.
PRINTABLE_PATTERN = "^[^\\u0000-\\u001f\\u007f]*$"

#: Columns the stream adds to every lake table, after the contract fields.
LAKE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_date", "date"),
    ("kafka_partition", "int"),
    ("kafka_offset", "long"),
    ("kafka_timestamp", "timestamp"),  # when the producer sent it: lineage, and freshness for any reader
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
    pattern: str = ""
    since: int = 1  # the contract version that introduced the field


def _version_field() -> Field:
    return Field("schemaVersion", "int", "version of this contract (also the Kafka header 'schemaVersion')")


def _common(device_doc: str) -> list[Field]:
    return [
        Field(
            "id",
            "string",
            "event id: uuid5 of seed, topic, device and sequence, so reruns give the same ids",
            pattern=UUID_PATTERN,
        ),
        _version_field(),
        Field("deviceId", "string", device_doc),
        Field("timestamp", "timestamp", "event time (simulated clock), ISO 8601 UTC with milliseconds"),
        Field("latitude", "double", "WGS84 latitude", "deg", minimum=-90, maximum=90),
        Field("longitude", "double", "WGS84 longitude", "deg", minimum=-180, maximum=180),
    ]


FUEL_TYPES = ("Petrol", "Diesel", "Hybrid", "Electric")
VEHICLE_TYPES = ("private", "taxi", "van", "coach")
WEATHER_CONDITIONS = ("Sunny", "Cloudy", "Rain", "Fog", "Snow")
INCIDENT_TYPES = ("Accident", "Breakdown", "Roadworks", "Fire", "Medical", "Police")
SEVERITIES = ("minor", "major", "severe")
#: Who follows route advice in a live run (:mod:`smartcity.fleet.following`): the vehicles that took it, those
#: not in the advised share, and those of the share that left before any advice existed.
ADVICE_GROUPS = ("advised", "unadvised", "no advice yet")

CONTRACTS: dict[str, list[Field]] = {
    "vehicle_data": [
        *_common("vehicle id"),
        Field("speed", "double", "speed over ground", "km/h", minimum=0, maximum=250),
        Field(
            "direction",
            "double",
            "bearing of travel from the vehicle's motion, clockwise from north",
            "deg",
            minimum=0,
            maximum=360,
        ),
        Field("make", "string", "manufacturer"),
        Field("model", "string", "model"),
        Field("year", "int", "model year", minimum=1990, maximum=2030),
        Field("fuelType", "string", "energy source", enum=FUEL_TYPES),
        Field("odometer", "double", "total distance driven by the vehicle", "km", minimum=0, maximum=2000000),
        Field("fuelLevel", "double", "fuel (or battery charge) left", "%", minimum=0, maximum=100),
        Field("route", "string", "name of the route the vehicle follows"),
        Field("road", "string", "road the vehicle is on"),
        Field(
            "edgeId",
            "string",
            "edge of the corridor's road graph the vehicle is on (lib/smartcity/fleet/"
            "data/corridor.json), for travel times per road stretch",
            required=False,
            since=2,
        ),
        Field(
            "adviceGroup",
            "string",
            "live runs with route advice: 'advised' (drives the route of the route_advice message adviceId), "
            "'unadvised' (not in the advised share: keeps the route mix) or 'no advice yet' (in the share, left "
            "before any advice); absent when the run gives no advice",
            required=False,
            enum=ADVICE_GROUPS,
            since=3,
        ),
        Field(
            "adviceId",
            "string",
            "id of the route_advice message the vehicle follows (with adviceGroup 'advised')",
            required=False,
            pattern=UUID_PATTERN,
            since=3,
        ),
    ],
    "gps_data": [
        *_common("vehicle id"),
        Field("speed", "double", "speed over ground", "km/h", minimum=0, maximum=250),
        Field(
            "direction",
            "double",
            "bearing of travel from the vehicle's motion, clockwise from north",
            "deg",
            minimum=0,
            maximum=360,
        ),
        Field("vehicleType", "string", "vehicle category", enum=VEHICLE_TYPES),
        Field("accuracy", "double", "estimated horizontal error of the fix (1 sigma)", "m", minimum=0, maximum=500),
    ],
    "traffic_data": [
        *_common("camera device id"),
        Field("cameraId", "string", "camera name"),
        Field("road", "string", "road the camera watches"),
        Field("vehicleId", "string", "vehicle seen passing the camera"),
        Field("speed", "double", "speed of the vehicle as it passed", "km/h", minimum=0, maximum=250),
        Field("snapshot", "string", "object key of the image taken (in the snapshots bucket)"),
    ],
    "weather_data": [
        *_common("weather station id"),
        Field("stationName", "string", "place the station is named after"),
        Field("temperature", "double", "air temperature", "degC", minimum=-40, maximum=50),
        Field("weatherCondition", "string", "observed condition", enum=WEATHER_CONDITIONS),
        Field("precipitation", "double", "precipitation rate", "mm/h", minimum=0, maximum=200),
        Field("windSpeed", "double", "mean wind speed", "km/h", minimum=0, maximum=200),
        Field("humidity", "double", "relative humidity", "%", minimum=0, maximum=100),
        Field("airQualityIndex", "double", "air quality index (lower is cleaner)", minimum=0, maximum=500),
    ],
    "emergency_data": [
        *_common("who reported the incident (traffic control centre)"),
        Field("incidentId", "string", "incident id, shared by every report of one incident"),
        Field("type", "string", "incident category", enum=INCIDENT_TYPES),
        Field("severity", "string", "how much of the road it blocks", enum=SEVERITIES),
        Field("status", "string", "incident state: reported Active, later Resolved", enum=("Active", "Resolved")),
        Field("road", "string", "road the incident is on"),
        Field("description", "string", "free text", required=False),
    ],
}
#: The five seed topics, in the order the pipeline treats them.
TOPICS: tuple[str, ...] = tuple(CONTRACTS)


def fields_of(topic: str, version: int = SCHEMA_VERSION) -> list[Field]:
    """The topic's fields in one contract version (the latest by default: what the lake holds)."""
    try:
        fields = CONTRACTS[topic]
    except KeyError:
        raise KeyError(f"unknown topic {topic!r}; known: {sorted(CONTRACTS)}") from None
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown contract version {version}; versions are {', '.join(map(str, SCHEMA_VERSIONS))}")
    return [f for f in fields if f.since <= version]


# -- JSON Schema ----------------------------------------------------------------------------------
_JSON_TYPES = {"string": "string", "timestamp": "string", "double": "number", "int": "integer", "long": "integer"}


def _json_property(f: Field, version: int) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": _JSON_TYPES[f.type], "description": f.doc}
    if f.name == "schemaVersion":
        prop["const"] = version
    if f.type == "timestamp":
        prop.update({"format": "date-time", "pattern": TIMESTAMP_PATTERN, "x-window": list(TIMESTAMP_WINDOW)})
    elif f.type == "string":
        prop["pattern"] = f.pattern or PRINTABLE_PATTERN
        if f.required:
            prop["minLength"] = 1
    if f.unit:
        prop["x-unit"] = f.unit
    if f.minimum is not None:
        prop["minimum"] = f.minimum
    if f.maximum is not None:
        prop["maximum"] = f.maximum
    if f.enum:
        prop["enum"] = list(f.enum)
    if f.since > 1:
        prop["x-since-version"] = f.since
    if not f.required:
        prop = {"anyOf": [prop, {"type": "null"}], "description": f.doc}
    return prop


def schema_document(topic: str, fields: list[Field], version: int) -> dict[str, Any]:
    """Draft 2020-12 JSON Schema of a topic's messages with these fields in one contract version (any
    contract of the lab: the five sensor topics below, and the advice the stream publishes)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://smartcity.lab/schemas/{topic}/v{version}.json",
        "title": topic,
        "x-schema-version": version,
        "type": "object",
        "properties": {f.name: _json_property(f, version) for f in fields},
        "required": [f.name for f in fields if f.required],
        "additionalProperties": False,
    }


def json_schema(topic: str, version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """Draft 2020-12 JSON Schema of one sensor topic's messages in one contract version."""
    return schema_document(topic, fields_of(topic, version), version)


def schema_path(topic: str, version: int = SCHEMA_VERSION) -> Path:
    """Where a topic's JSON Schema is published: ``lib/smartcity/fleet/schemas/<topic>.v<N>.schema.json``."""
    return SCHEMA_DIR / f"{topic}.v{version}.schema.json"


def render_schema(topic: str, version: int = SCHEMA_VERSION) -> str:
    return json.dumps(json_schema(topic, version), indent=2) + "\n"


def publish_schemas() -> list[Path]:
    """Write every topic's JSON Schema in every version; run after changing a contract (and bump the version)."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    paths = []
    for topic in CONTRACTS:
        for version in SCHEMA_VERSIONS:
            schema_path(topic, version).write_text(render_schema(topic, version))
            paths.append(schema_path(topic, version))
    return paths


def published_schema(topic: str, version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema as published in the repo (what outside producers validate against)."""
    return json.loads(schema_path(topic, version).read_text())


# -- the stream's contract check (a Spark Java UDF, lib/smartcity/stream/ContractCheck.java) ----------
#: Messages larger than this are quarantined unparsed (contract messages are about 300 bytes).
MAX_MESSAGE_BYTES = 64 * 1024
#: Deeper JSON is refused unparsed as "nested too deep" (contract messages are flat objects).
NESTING_LIMIT = 1000


def check_spec(max_bytes: int = MAX_MESSAGE_BYTES, nesting_limit: int = NESTING_LIMIT) -> str:
    """Every topic's contract as the JSON the stream's Java check reads: Python stays the one source."""

    def field(f: Field) -> dict[str, Any]:
        pattern = TIMESTAMP_PATTERN if f.type == "timestamp" else f.pattern
        return {
            "name": f.name,
            "type": f.type,
            "required": f.required,
            "since": f.since,
            "minimum": f.minimum,
            "maximum": f.maximum,
            "minimum_text": None if f.minimum is None else f"{f.minimum:g}",
            "maximum_text": None if f.maximum is None else f"{f.maximum:g}",
            "enum": list(f.enum),
            "enum_text": ", ".join(f.enum),
            "pattern": pattern or None,
            "pattern_name": "a UUID" if f.pattern == UUID_PATTERN else f"matching {f.pattern}",
        }

    return json.dumps(
        {
            "max_bytes": max_bytes,
            "nesting_limit": nesting_limit,
            "window": list(TIMESTAMP_WINDOW),
            "window_text": f"{TIMESTAMP_WINDOW[0][:10]} .. {TIMESTAMP_WINDOW[1][:10]}",
            "versions": list(SCHEMA_VERSIONS),
            "versions_text": ", ".join(map(str, SCHEMA_VERSIONS)),
            "topics": {topic: {"fields": [field(f) for f in fields_of(topic)]} for topic in CONTRACTS},
        },
        sort_keys=True,
    )


# -- Spark ----------------------------------------------------------------------------------------
def all_fields() -> list[Field]:
    """Every field of every topic once, in first-seen order: one schema parses any topic's message.

    A field name means the same type in every topic (checked here), so one parse serves all five.
    """
    seen: dict[str, Field] = {}
    for topic in CONTRACTS:
        for f in fields_of(topic):
            if f.name in seen and seen[f.name].type != f.type:
                raise TypeError(f"field {f.name!r} is {seen[f.name].type} in one topic and {f.type} in {topic}")
            seen.setdefault(f.name, f)
    return list(seen.values())


def spark_schema(topic: str | None = None) -> Any:
    """StructType parsing one topic's JSON values, or (no topic) any topic's: the union of their fields."""
    from pyspark.sql import types as T  # noqa: PLC0415 - Spark's schema only: the fleet and producer never load pyspark

    spark_types = {
        "string": T.StringType(),
        "timestamp": T.TimestampType(),
        "double": T.DoubleType(),
        "int": T.IntegerType(),
        "long": T.LongType(),
        "date": T.DateType(),
    }
    fields = fields_of(topic) if topic else all_fields()
    return T.StructType([T.StructField(f.name, spark_types[f.type], nullable=True) for f in fields])


# -- Arrow ----------------------------------------------------------------------------------------
def arrow_schema(topic: str, *, lake: bool = True, version: int = SCHEMA_VERSION) -> Any:
    """Arrow schema of a lake table (contract fields, then the stream's lake columns)."""
    return arrow_schema_of(fields_of(topic, version), LAKE_COLUMNS if lake else ())


def arrow_schema_of(fields: Sequence[Field], extra: Sequence[tuple[str, str]] = ()) -> Any:
    """Arrow schema of a contract's fields (optional ones nullable), then ``extra`` (name, type) columns."""
    import pyarrow as pa  # noqa: PLC0415 - Arrow's schema only: the fleet and producer never load pyarrow

    arrow_types = {
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "double": pa.float64(),
        "int": pa.int32(),
        "long": pa.int64(),
        "date": pa.date32(),
    }
    cols = [(f.name, f.type, not f.required) for f in fields] + [(name, kind, False) for name, kind in extra]
    return pa.schema([pa.field(name, arrow_types[kind], nullable=nullable) for name, kind, nullable in cols])


# -- SQL DDL --------------------------------------------------------------------------------------
_SQL_TYPES = {
    "duckdb": {
        "string": "VARCHAR",
        "timestamp": "TIMESTAMPTZ",
        "double": "DOUBLE",
        "int": "INTEGER",
        "long": "BIGINT",
        "date": "DATE",
    },
    "postgres": {
        "string": "TEXT",
        "timestamp": "TIMESTAMPTZ",
        "double": "DOUBLE PRECISION",
        "int": "INTEGER",
        "long": "BIGINT",
        "date": "DATE",
    },
    "redshift": {
        "string": "VARCHAR(512)",
        "timestamp": "TIMESTAMPTZ",
        "double": "DOUBLE PRECISION",
        "int": "INTEGER",
        "long": "BIGINT",
        "date": "DATE",
    },
    "athena": {
        "string": "string",
        "timestamp": "timestamp",
        "double": "double",
        "int": "int",
        "long": "bigint",
        "date": "date",
    },
}
#: Column that spreads and orders each table in Redshift (DISTKEY, SORTKEY).
_REDSHIFT_KEYS = {"distkey": "deviceid", "sortkey": "timestamp"}


def sql_type(kind: str, dialect: str) -> str:
    """SQL type of a contract type in a dialect ('double' is DOUBLE PRECISION in PostgreSQL)."""
    return _SQL_TYPES[dialect][kind]


def lake_columns(topic: str) -> list[tuple[str, str, bool]]:
    """(name, contract type, required) of every column of the topic's lake table, in order."""
    cols = [(f.name, f.type, f.required) for f in fields_of(topic)]
    return cols + [(name, kind, True) for name, kind in LAKE_COLUMNS]


def sql_name(name: str, dialect: str) -> str:
    """Column name in a SQL dialect: warehouses (Redshift, and PostgreSQL like it) fold to lowercase."""
    return name.lower() if dialect in ("postgres", "redshift", "athena") else name


def create_table_sql(topic: str, table: str, dialect: str, *, location: str = "") -> str:
    """CREATE TABLE for the topic's lake columns in one dialect: duckdb, postgres, redshift or athena.

    The warehouse dialects key the table by event id; Athena's is an external table over the
    Parquet lake at ``location``, partitioned by event date like the lake itself.
    """
    if dialect not in _SQL_TYPES:
        raise ValueError(f"unknown SQL dialect {dialect!r}; use one of {', '.join(_SQL_TYPES)}")
    types = _SQL_TYPES[dialect]
    if dialect == "athena":
        if not location:
            raise ValueError("an Athena table needs the S3 location of its lake folder")
        cols = [f"  `{sql_name(n, dialect)}` {types[k]}" for n, k, _ in lake_columns(topic) if n != "event_date"]
        return (
            f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n" + ",\n".join(cols) + "\n)\n"
            "PARTITIONED BY (`event_date` date)\nSTORED AS PARQUET\n"
            f"LOCATION '{location.rstrip('/')}/'\nTBLPROPERTIES ('schema_version'='{SCHEMA_VERSION}')"
        )
    cols = [
        f'    "{sql_name(name, dialect)}" {types[kind]}{" NOT NULL" if required else ""}'
        for name, kind, required in lake_columns(topic)
    ]
    cols.append('    PRIMARY KEY ("id")')
    sql = f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(cols) + "\n)"
    if dialect == "redshift":
        sql += f'\nDISTKEY ("{_REDSHIFT_KEYS["distkey"]}")\nSORTKEY ("{_REDSHIFT_KEYS["sortkey"]}")'
    return sql
