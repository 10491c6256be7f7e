from __future__ import annotations

import hashlib
from datetime import datetime
from collections import defaultdict

import jsonschema
import orjson
import pytest

from smartcity import contracts, geo, simulate
from smartcity.config import TOPICS, Params


@pytest.fixture(scope="module")
def events() -> list:
    return simulate.simulate_journey(Params(vehicles=3))


def digest(events: list) -> str:
    return hashlib.sha256(b"\n".join(orjson.dumps(e._asdict()) for e in events)).hexdigest()


def test_same_params_give_the_same_bytes(events: list) -> None:
    assert digest(simulate.simulate_journey(Params(vehicles=3))) == digest(events)


def test_another_seed_gives_other_events(events: list) -> None:
    assert digest(simulate.simulate_journey(Params(vehicles=3, seed=7))) != digest(events)


def test_every_topic_is_produced_and_every_event_meets_its_contract(events: list) -> None:
    validators = {t: jsonschema.Draft202012Validator(contracts.json_schema(t)) for t in TOPICS}
    assert {e.topic for e in events} == set(TOPICS)
    for event in events:
        validators[event.topic].validate(event.value)
        assert event.value["schemaVersion"] == contracts.SCHEMA_VERSION


def test_ids_are_unique_and_events_in_time_order(events: list) -> None:
    assert len({e.value["id"] for e in events}) == len(events)
    stamps = [e.value["timestamp"] for e in events]
    assert stamps == sorted(stamps)


def test_each_device_reports_forward_in_time(events: list) -> None:
    last: dict[tuple[str, str], str] = {}
    for event in events:
        key = (event.topic, event.key)
        if event.topic in ("vehicle_data", "gps_data", "weather_data"):
            assert last.get(key, "") < event.value["timestamp"]
        last[key] = event.value["timestamp"]


def test_every_vehicle_drives_from_london_to_birmingham_in_about_two_hours(events: list) -> None:
    route = geo.default_route()
    trips = defaultdict(list)
    for event in events:
        if event.topic == "vehicle_data":
            trips[event.key].append(event.value)
    assert len(trips) == 3
    for fixes in trips.values():
        start = (fixes[0]["latitude"], fixes[0]["longitude"])
        end = (fixes[-1]["latitude"], fixes[-1]["longitude"])
        assert geo.haversine_km(start, route.points[0]) < 0.05
        assert geo.haversine_km(end, route.points[-1]) < 0.05
        t0, t1 = (datetime.fromisoformat(f["timestamp"].replace("Z", "+00:00")) for f in (fixes[0], fixes[-1]))
        assert 90 <= (t1 - t0).total_seconds() / 60 <= 180


def test_cameras_see_every_vehicle_and_incidents_open_then_close(events: list) -> None:
    passages = defaultdict(set)
    for event in events:
        if event.topic == "traffic_data":
            passages[event.value["cameraId"]].add(event.value["vehicleId"])
    assert passages and all(len(v) == 3 for v in passages.values())
    states = defaultdict(list)
    for event in events:
        if event.topic == "emergency_data":
            states[event.value["incidentId"]].append(event.value["status"])
    assert states and all(s == ["Active", "Resolved"] for s in states.values())


def test_fleet_size_scales_vehicle_streams() -> None:
    one = simulate.summarize(simulate.simulate_journey(Params(vehicles=1)))
    four = simulate.summarize(simulate.simulate_journey(Params(vehicles=4)))
    assert four.at["vehicle_data", "devices"] == 4 and one.at["vehicle_data", "devices"] == 1
    assert four.at["vehicle_data", "events"] > 3 * one.at["vehicle_data", "events"]
