"""The stream on real Kafka and Spark: every kind of bad input quarantined while it runs, and
exactly-once for readers that share none of the lab's code through kill -9 of the driver."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from smartcity import steps
from smartcity.fleet import contracts, simulation
from smartcity.fleet.contracts import TOPICS
from smartcity.ingest.producer import produce
from smartcity.params import Params
from smartcity.platform.broker import KafkaBroker
from smartcity.steps import Lab
from smartcity.stream import lake
from smartcity.stream import query as stream
from tests import stream_kills

pytestmark = pytest.mark.integration

GOOD = {
    "id": "0b6f9d55-3f0b-5a53-9f36-2f4bb1f5e1a1",
    "schemaVersion": 2,
    "deviceId": "vehicle-001",
    "timestamp": "2026-01-05T08:00:00.000Z",
    "latitude": 51.5,
    "longitude": -0.12,
    "speed": 50.0,
    "direction": 10.0,
    "vehicleType": "private",
    "accuracy": 5.0,
}


def _json(**changes: object) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def _without(name: str) -> bytes:
    return orjson.dumps({k: v for k, v in GOOD.items() if k != name})


def _raw(text: str) -> bytes:
    return text.encode()


DEEP = b'{"id": "x", "deep": ' + b'{"a": ' * 1200 + b"1" + b"}" * 1201
#: (what, key, value, the reason the stream must give). All on gps_data.
BAD_INPUT: list[tuple[str, bytes | None, bytes | None, str]] = [
    ("non-UTF-8 bytes", b"vehicle-001", b"\xff\xfe" + _json(), "not UTF-8"),
    (
        "NUL escaped in a string",
        b"vehicle-001",
        _json(deviceId="vehicle-001\u0000"),
        "a text field holds a control character",
    ),
    (
        "bell in a string",
        b"vehicle-001",
        _json(vehicleType="private", accuracy=5.0, deviceId="vehicle\u0007001"),
        "a text field holds a control character",
    ),
    ("raw NUL byte in a string", b"vehicle-001", _json().replace(b"vehicle-001", b"vehicle\x00001"), "not valid JSON"),
    ("number for a string", b"vehicle-001", _json(deviceId=42), "field 'deviceId' must be a JSON string"),
    (
        "object for a string",
        b"vehicle-001",
        _json(vehicleType={"kind": "car"}),
        "field 'vehicleType' must be a JSON string",
    ),
    ("unknown extra field", b"vehicle-001", _json(extra=1), "unknown field 'extra'"),
    ("a v2 field in a v1 message", b"vehicle-001", _json(schemaVersion=1, edgeId="e1"), "unknown field 'edgeId'"),
    ("empty id", b"vehicle-001", _json(id=""), "field 'id' is empty"),
    ("id not a UUID", b"vehicle-001", _json(id="vehicle-001-0001"), "field 'id' is not a UUID"),
    ("epoch milliseconds", b"vehicle-001", _json(timestamp=1767600000000), "field 'timestamp' must be a JSON string"),
    (
        "year 3026",
        b"vehicle-001",
        _json(timestamp="3026-01-05T08:00:00.000Z"),
        "field 'timestamp' outside 2000-01-01 .. 2100-01-01",
    ),
    (
        "timestamp not ISO 8601",
        b"vehicle-001",
        _json(timestamp="05/01/2026 08:00"),
        "field 'timestamp' has the wrong type or format",
    ),
    (
        "timestamp without an offset",
        b"vehicle-001",
        _json(timestamp="2026-01-05T08:00:00"),
        "field 'timestamp' has the wrong type or format",
    ),
    ("NaN", b"vehicle-001", _json().replace(b'"speed":50.0', b'"speed":NaN'), "not valid JSON"),
    ("Infinity", b"vehicle-001", _json().replace(b'"speed":50.0', b'"speed":-Infinity'), "not valid JSON"),
    (
        "a number too big for a double",
        b"vehicle-001",
        _json().replace(b'"speed":50.0', b'"speed":1e400'),
        "field 'speed' is not a finite number",
    ),
    ("deep nesting", b"vehicle-001", DEEP, "nested too deep (more than 1000 levels)"),
    ("shallow nesting", b"vehicle-001", _json(extra={"a": {"b": {"c": [1, [2, [3]]]}}}), "unknown field 'extra'"),
    (
        "oversize message",
        b"vehicle-001",
        _json(padding="x" * 70_000),
        f"oversize message: more than {contracts.MAX_MESSAGE_BYTES} bytes",
    ),
    ("null key", None, _json(), "no key: events are keyed by their deviceId"),
    ("key is another device", b"vehicle-002", _json(), "the Kafka key is not the deviceId"),
    ("empty message", b"vehicle-001", b"", "empty message"),
    ("tombstone", b"vehicle-001", None, "empty message"),
    ("JSON array", b"vehicle-001", b"[1, 2]", "not a JSON object"),
    ("JSON string", b"vehicle-001", b'"hello"', "not a JSON object"),
    ("broken JSON", b"vehicle-001", b'{"id": ', "not valid JSON"),
    ("trailing garbage", b"vehicle-001", _json() + b" trailing", "not valid JSON"),
    ("a field twice", b"vehicle-001", _json()[:-1] + b',"speed":60.0}', "a field appears twice"),
    (
        "unsupported version",
        b"vehicle-001",
        _json(schemaVersion=4),
        "schemaVersion is not a supported contract version (1, 2, 3)",
    ),
    ("missing field", b"vehicle-001", _without("speed"), "missing required field 'speed'"),
    ("string for a number", b"vehicle-001", _json(speed="fast"), "field 'speed' has the wrong type or format"),
    ("out of range", b"vehicle-001", _json(speed=900.0), "field 'speed' above its maximum 250"),
    (
        "not in the enum",
        b"vehicle-001",
        _json(vehicleType="spaceship"),
        "field 'vehicleType' not one of private, taxi, van, coach",
    ),
    (
        "the seed project's shape",
        b"vehicle-001",
        _raw(
            '{"id": "0b6f9d55-3f0b-4a53-9f36-2f4bb1f5e1a1", "deviceId": "vehicle-001", "timestamp": '
            '"2026-01-05T08:00:00.000000", "location": [51.5, -0.12], "speed": 50.0}'
        ),
        "unknown field 'location'",
    ),
]
HEADERS = [("schemaVersion", b"2"), ("trace", b"\xff\x00")]


def _send_raw(bootstrap: str, messages: list[tuple[bytes | None, bytes | None]], topic: str = "gps_data") -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value, headers=HEADERS)
        producer.flush()
    finally:
        producer.close()


def _glob(cfg: Params, table: str) -> str:
    return str(cfg.paths.lake / table / "**" / "*.parquet")


def test_every_kind_of_bad_input_is_quarantined_while_the_stream_runs(
    broker: KafkaBroker, spark: object, lab: Lab
) -> None:
    cfg = lab.cfg
    steps.reset_run(lab)
    good = [e for e in simulation.simulate_journey(cfg.fleet) if e.topic in ("gps_data", "weather_data")][:500]
    batches: list[dict] = []
    stop = threading.Event()
    runner = threading.Thread(
        target=stream.serve,
        args=(spark, steps.stream_job(lab)),
        kwargs={"should_stop": stop.is_set, "on_batch": batches.append},
    )
    runner.start()
    try:
        produce(cfg.kafka.bootstrap, good[:250], progress=False)
        _send_raw(cfg.kafka.bootstrap, [(key, value) for _, key, value, _ in BAD_INPUT])
        produce(cfg.kafka.bootstrap, good[250:], progress=False)
        expected = len(good) + len(BAD_INPUT)
        deadline = time.monotonic() + 180
        while sum(sum(b["rows"].values()) for b in batches) < expected and time.monotonic() < deadline:
            assert runner.is_alive(), "the stream stopped"
            time.sleep(0.5)
        assert runner.is_alive(), "the stream is still running after all the bad input"
    finally:
        stop.set()
        runner.join(120)
    quarantine = duckdb.sql(
        f"SELECT kafka_offset, reason, key, value, headers, kafka_timestamp FROM read_parquet('{_glob(cfg, lake.QUARANTINE)}', "
        "hive_partitioning = true) ORDER BY kafka_partition, kafka_offset"
    ).fetchall()
    assert len(quarantine) == len(BAD_INPUT)
    got = Counter((bytes(v) if v is not None else None, r) for _, r, _, v, _, _ in quarantine)
    want = Counter((value, reason) for _, _, value, reason in BAD_INPUT)
    assert got == want, {what: reason for what, _, value, reason in BAD_INPUT if (value, reason) not in got}
    for *_, headers, stamp in quarantine:
        assert [(h["key"], bytes(h["value"])) for h in headers] == HEADERS and stamp is not None
    assert sorted(bytes(k) for _, _, k, _, _, _ in quarantine if k is not None) == sorted(
        k for _, k, _, _ in BAD_INPUT if k is not None
    )
    clean = {
        t: duckdb.sql(f"SELECT count(*) FROM read_parquet('{_glob(cfg, t)}', hive_partitioning = true)").fetchall()[0][
            0
        ]
        for t in ("gps_data", "weather_data")
    }
    assert clean == dict(Counter(e.topic for e in good)), "only the good events reached the tables"


# -- kill -9 -------------------------------------------------------------------------------------------
#: The kill test produces the run in this many parts and kills the stream once in each part but the last.
PARTS = 5


def test_kill_minus_nine_never_loses_or_doubles_an_event_for_any_reader(
    broker: KafkaBroker, lab_cfg: Params, tmp_path: Path
) -> None:
    cfg = lab_cfg.with_values(
        vehicles=12, departure_spacing_seconds=60.0, stream_max_batch_events=4000, stream_trigger_seconds=0.5
    )
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.as_dict()))
    lab = steps.open_lab(cfg)
    store = lab.store
    steps.reset_run(lab)
    events = simulation.simulate_journey(cfg.fleet)
    kills = stream_kills.stream_through_kills(cfg.kafka.bootstrap, store, params, events, PARTS, seed=6)
    assert kills == PARTS - 1
    want = {t: sorted(e.value["id"] for e in events if e.topic == t) for t in TOPICS}
    for topic in TOPICS:
        folder = cfg.paths.lake / topic
        for f in folder.rglob("*.parquet"):  # every file a glob finds is a whole Parquet file
            assert f.stat().st_size > 0 and pq.read_metadata(f).num_rows > 0, f
        by_duckdb = [
            r[0]
            for r in duckdb.sql(
                f"SELECT id FROM read_parquet('{_glob(cfg, topic)}', hive_partitioning = true, union_by_name = true) "
                "ORDER BY id"
            ).fetchall()
        ]
        by_pyarrow = sorted(
            ds.dataset(str(folder), format="parquet", partitioning="hive")
            .to_table(columns=["id"])
            .column("id")
            .to_pylist()
        )
        by_lab = sorted(lake.read_table(store, topic, columns=["id"]).column("id").to_pylist())
        assert by_duckdb == by_pyarrow == by_lab == want[topic], topic
