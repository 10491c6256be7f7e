"""The real path on real engines: Kafka -> Spark -> lake -> catalog -> PostgreSQL, with bad input."""

from __future__ import annotations

import uuid

import pytest

from smartcity.catalog import crawler as catalog
from smartcity.platform import kafka
from smartcity.stream import lake
from smartcity.warehouse import load
from smartcity.present import report
from smartcity.fleet import simulation
from smartcity.stream import query as stream
from smartcity.ingest.producer import produce, produce_run
from smartcity.params import TOPICS, Params

pytestmark = pytest.mark.integration

BAD_MESSAGES = {
    # topic, raw value, the reason the stream must give
    ("gps_data", b"{not json", "not valid JSON"),
    ("weather_data", b"[1, 2, 3]", "not a JSON object"),
    ("vehicle_data", b'{"id": "x"}', "field 'id' is not a UUID"),
    ("emergency_data", b"", "empty message"),
}


@pytest.fixture(scope="module")
def streamed(broker: kafka.KafkaBroker, spark: object, lab_cfg: Params) -> dict[str, object]:
    events = simulation.simulate_journey(lab_cfg)
    simulation.prepare_run(lab_cfg)
    delivery = produce_run(lab_cfg, events)
    gps = next(e for e in events if e.topic == "gps_data")
    too_fast = simulation.Event("gps_data", gps.key, {**gps.value, "id": str(uuid.uuid4()), "speed": 900.0})
    weather = next(e for e in events if e.topic == "weather_data")
    old = simulation.Event("weather_data", weather.key, {**weather.value, "id": str(uuid.uuid4()), "schemaVersion": 0})
    produce(lab_cfg.kafka_bootstrap, [too_fast, old])
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=lab_cfg.kafka_bootstrap)
    for topic, value, _ in sorted(BAD_MESSAGES):
        producer.send(topic, key=b"bad", value=value or None)
    producer.flush()
    producer.close()
    first = stream.run_bounded(spark, lab_cfg)
    second = stream.run_bounded(spark, lab_cfg)
    return {"events": events, "delivery": delivery, "first": first, "second": second}


def test_every_valid_event_lands_in_its_lake_table_once(streamed: dict, lab_cfg: Params) -> None:
    produced = dict(streamed["delivery"].acked)
    first = streamed["first"]
    assert first.loc[list(TOPICS), "rows written"].to_dict() == produced
    ids = lake.read_table(lab_cfg, "vehicle_data", columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == produced["vehicle_data"]


def test_bad_messages_are_quarantined_with_their_reason_and_the_stream_goes_on(streamed: dict, lab_cfg: Params) -> None:
    quarantine = lake.read_table(lab_cfg, lake.QUARANTINE).to_pandas()
    got = {(str(r.topic), r.reason) for r in quarantine.itertuples()}
    assert {(t, reason) for t, _, reason in BAD_MESSAGES} <= got
    assert ("gps_data", "field 'speed' above its maximum 250") in got
    assert ("weather_data", "schemaVersion is not a supported contract version (1, 2)") in got
    assert streamed["first"].at[lake.QUARANTINE, "rows written"] == len(BAD_MESSAGES) + 2


def test_a_second_bounded_run_writes_nothing_new(streamed: dict) -> None:
    second = streamed["second"]
    assert (second["rows written"] == 0).all()
    assert second["rows in lake"].equals(streamed["first"]["rows in lake"])


def test_lake_is_partitioned_by_event_date(streamed: dict, lab_cfg: Params) -> None:
    described = lake.describe(lab_cfg).reset_index()
    topics = described[described["table"].isin(TOPICS)]
    assert set(topics["partition"]) == {"event_date=2026-01-05"}


def test_catalog_and_warehouse_hold_what_was_produced(streamed: dict, lab_cfg: Params, warehouse: object) -> None:
    catalog.crawl(lab_cfg)
    load.load_lake(lab_cfg, warehouse)
    load.load_lake(lab_cfg, warehouse)  # idempotent
    produced = dict(streamed["delivery"].acked)
    assert {t: n for t, n in catalog.view_counts(lab_cfg).items() if t in TOPICS} == produced
    assert load.warehouse_counts(warehouse) == produced
    frame, problems = report.reconcile(lab_cfg)
    assert problems == [], problems
    for name in load.list_queries():
        assert len(load.run_query(warehouse, name)) > 0
