"""The real path on real engines: Kafka -> Spark -> lake -> catalog -> PostgreSQL, with bad input."""

from __future__ import annotations

import uuid

import pytest

from smartcity import steps
from smartcity.fleet import simulation
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.ingest.producer import produce
from smartcity.platform.broker import KafkaBroker
from smartcity.steps import Lab
from smartcity.stream import lake
from smartcity.warehouse.postgres import PostgresWarehouse
from smartcity.warehouse.schema import list_queries

pytestmark = pytest.mark.integration

BAD_MESSAGES = {
    # topic, raw value, the reason the stream must give
    ("gps_data", b"{not json", "not valid JSON"),
    ("weather_data", b"[1, 2, 3]", "not a JSON object"),
    ("vehicle_data", b'{"id": "x"}', "field 'id' is not a UUID"),
    ("emergency_data", b"", "empty message"),
}


@pytest.fixture(scope="module")
def streamed(broker: KafkaBroker, spark: object, lab: Lab) -> dict[str, object]:
    cfg = lab.cfg
    events = simulation.simulate_journey(cfg.fleet)
    # 01_simulate's step: the run reset, every event produced, what the broker acknowledged recorded
    delivery = steps.produce_events(lab, events)
    gps = next(e for e in events if e.topic == "gps_data")
    too_fast = Event("gps_data", gps.key, {**gps.value, "id": str(uuid.uuid4()), "speed": 900.0})
    weather = next(e for e in events if e.topic == "weather_data")
    old = Event("weather_data", weather.key, {**weather.value, "id": str(uuid.uuid4()), "schemaVersion": 0})
    produce(cfg.kafka.bootstrap, [too_fast, old])
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap)
    for topic, value, _ in sorted(BAD_MESSAGES):
        producer.send(topic, key=b"bad", value=value or None)
    producer.flush()
    producer.close()
    # 02_stream's step (the session's Spark): a bounded run that records the lake's counts
    first = steps.stream_lake(lab)
    second = steps.stream_lake(lab)
    return {"events": events, "delivery": delivery, "first": first, "second": second}


def acked(streamed: dict) -> dict[str, int]:
    """Events the broker acknowledged per topic, from 01_simulate's table (topics nothing was sent to left out)."""
    return {t: int(n) for t, n in streamed["delivery"]["acked"].items() if n}


def test_every_valid_event_lands_in_its_lake_table_once(streamed: dict, lab: Lab) -> None:
    produced = acked(streamed)
    first = streamed["first"]
    assert first.loc[list(TOPICS), "rows written"].to_dict() == produced
    ids = lake.read_table(lab.store, "vehicle_data", columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == produced["vehicle_data"]


def test_bad_messages_are_quarantined_with_their_reason_and_the_stream_goes_on(streamed: dict, lab: Lab) -> None:
    quarantine = lake.read_table(lab.store, lake.QUARANTINE).to_pandas()
    got = {(str(r.topic), r.reason) for r in quarantine.itertuples()}
    assert {(t, reason) for t, _, reason in BAD_MESSAGES} <= got
    assert ("gps_data", "field 'speed' above its maximum 250") in got
    assert ("weather_data", "schemaVersion is not a supported contract version (1, 2, 3)") in got
    assert streamed["first"].at[lake.QUARANTINE, "rows written"] == len(BAD_MESSAGES) + 2


def test_a_second_bounded_run_writes_nothing_new(streamed: dict) -> None:
    second = streamed["second"]
    assert (second["rows written"] == 0).all()
    assert second["rows in lake"].equals(streamed["first"]["rows in lake"])


def test_lake_is_partitioned_by_event_date(streamed: dict, lab: Lab) -> None:
    described = lake.describe(lab.store).reset_index()
    topics = described[described["table"].isin(TOPICS)]
    assert set(topics["partition"]) == {"event_date=2026-01-05"}


def test_catalog_and_warehouse_hold_what_was_produced(streamed: dict, lab: Lab, warehouse: PostgresWarehouse) -> None:
    steps.crawl_lake(lab)
    steps.load_warehouse(lab, warehouse)
    steps.load_warehouse(lab, warehouse)  # idempotent
    produced = acked(streamed)
    assert {t: n for t, n in steps.catalog_counts(lab).items() if t in TOPICS} == produced
    assert warehouse.counts() == produced
    _, problems = lab.ledger.reconcile()
    assert problems == [], problems
    for name in list_queries():
        assert len(warehouse.run_query(name)) > 0
