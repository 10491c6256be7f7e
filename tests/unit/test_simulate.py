"""Properties of the simulated fleet, checked over many seeds and settings with hypothesis."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smartcity import config, contracts, geo, simulate
from smartcity.config import TOPICS, Params, ParamsError

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NETWORK = geo.load_network()


@st.composite
def fleets(draw: st.DrawFn) -> Params:
    hour = draw(st.integers(0, 23))
    day = draw(st.integers(1, 28))
    routes = draw(st.lists(st.sampled_from(NETWORK.route_names), min_size=1, max_size=3, unique=True))
    return config.from_mapping({
        "seed": draw(st.integers(0, 10**6)),
        "vehicles": draw(st.integers(1, 3)),
        "routes": ",".join(f"{r}:{draw(st.integers(1, 3))}" for r in routes),
        "tick_seconds": float(draw(st.sampled_from([2, 5, 10]))),
        "departure_spacing_seconds": float(draw(st.sampled_from([0, 60, 300]))),
        "incident_rate": draw(st.sampled_from([0.0, 0.1, 0.5])),
        "base_date": datetime(2026, 3, day, hour, tzinfo=timezone.utc).isoformat(),
    })


def run(cfg: Params) -> list[contracts.Event]:
    return simulate.simulate_journey(cfg)


def wire(events: list[contracts.Event]) -> bytes:
    return b"\n".join(orjson.dumps(e._asdict()) for e in events)


VALIDATORS = {t: jsonschema.Draft202012Validator(contracts.published_schema(t)) for t in TOPICS}


@SETTINGS
@given(fleets())
def test_every_event_validates_against_its_published_json_schema(cfg: Params) -> None:
    events = run(cfg)
    assert {"vehicle_data", "gps_data", "weather_data"} <= {e.topic for e in events}
    for event in events:
        VALIDATORS[event.topic].validate(event.value)
        assert event.key == event.value["deviceId"]


@SETTINGS
@given(fleets())
def test_same_seed_same_bytes(cfg: Params) -> None:
    assert hashlib.sha256(wire(run(cfg))).digest() == hashlib.sha256(wire(run(cfg))).digest()


def test_another_seed_gives_other_events() -> None:
    assert wire(run(Params(vehicles=2))) != wire(run(Params(vehicles=2, seed=7)))


@SETTINGS
@given(fleets())
def test_positions_stay_within_gps_noise_of_the_route(cfg: Params) -> None:
    sim = simulate.FleetSimulation(cfg)
    routes = {v.device: v.route for v in sim.vehicles}
    for event in sim.events():
        if event.topic in ("vehicle_data", "gps_data"):
            point = (event.value["latitude"], event.value["longitude"])
            sigma = max(simulate.GPS_SIGMA_M.values())
            assert routes[event.key].distance_m(point) <= 6 * sigma + 0.5, event


@SETTINGS
@given(fleets())
def test_each_device_reports_forward_in_time(cfg: Params) -> None:
    last: dict[tuple[str, str], str] = {}
    previous = ""
    for event in run(cfg):
        stamp = event.value["timestamp"]
        assert stamp >= previous, "the stream is in event-time order"
        key = (event.topic, event.key)
        if event.topic in ("vehicle_data", "gps_data", "weather_data"):
            assert last.get(key, "") < stamp
        else:
            assert last.get(key, "") <= stamp
        last[key], previous = stamp, stamp


# Issue 6: vehicle-002 at 00:28:05 on the A41 Finchley Road, a fix moved 74.6 m while the odometer
# advanced 20 m. It had driven 26 m (the odometer rounds to 10 m) and its two fixes were 28 m and 22 m
# off the road in opposite directions: the simulator drew every fix's error afresh, so on a slow
# urban road (σ 7 m) two fixes could jump apart by several times the distance driven.
SEED_568_A41 = config.from_mapping({
    "seed": 568, "base_date": "2026-03-01T00:00:00+00:00", "vehicles": 2, "routes": "M1/M6:1",
    "departure_spacing_seconds": 0.0, "tick_seconds": 5.0, "incident_rate": 0.0,
})


@SETTINGS
@example(SEED_568_A41)
@given(fleets())
def test_motion_bearing_odometer_and_fuel_are_consistent(cfg: Params) -> None:
    fixes = defaultdict(list)
    for event in run(cfg):
        if event.topic == "vehicle_data":
            fixes[event.key].append(event.value)
    for track in fixes.values():
        agree = total = 0
        moved_sum = driven_sum = 0.0
        for a, b in zip(track, track[1:]):
            moved = geo.haversine_km((a["latitude"], a["longitude"]), (b["latitude"], b["longitude"]))
            driven = b["odometer"] - a["odometer"]
            assert driven >= 0 and b["fuelLevel"] <= a["fuelLevel"]
            # A fix cannot get further than the road driven, but for the change of the GPS error between
            # the two fixes and the odometer's 10 m rounding. A receiver's error drifts (correlated over
            # GPS_CORRELATION_S): between fixes a tick apart it changes by σ·√(2(1-ρ)) per axis, ρ =
            # exp(-tick/τ), at most 7 m x 0.75 = 5.3 m at a 10 s tick on urban roads (a little more where
            # the road class, and so σ, changes). 50 m is beyond 7 standard deviations of that.
            assert moved <= driven + 0.05, (a, b)
            if driven >= 0.1:  # slower steps are mostly GPS noise
                moved_sum, driven_sum = moved_sum + moved, driven_sum + driven
            if moved > 0.1:
                total += 1
                heading = geo.bearing_deg((a["latitude"], a["longitude"]), (b["latitude"], b["longitude"]))
                agree += abs((b["direction"] - heading + 180) % 360 - 180) <= 20
        assert total == 0 or agree / total >= 0.9, "direction is the bearing of the motion"
        # corners make the fixes' chords a little shorter than the road; noise a little longer
        assert abs(moved_sum - driven_sum) <= 0.03 * driven_sum + 0.1
        assert len({round(f["direction"]) for f in track}) > 3, "the bearing changes along the road"


def free_flow(route: str, **extra: object) -> Params:
    # 11:00 on a Tuesday: no rush hour; no incidents unless a test adds one
    return config.from_mapping({"vehicles": 1, "routes": route, "incident_rate": 0.0,
                                "base_date": "2026-01-06T11:00:00+00:00", **extra})


@pytest.mark.parametrize("route", NETWORK.route_names)
def test_a_trip_in_free_flow_takes_two_to_three_hours(route: str) -> None:
    trip = simulate.trips(run(free_flow(route))).iloc[0]
    assert trip["route"] == route
    assert 120 <= trip["minutes"] <= 180, trip
    assert trip["km"] == pytest.approx(NETWORK.route(route).length_km, abs=0.2)


def test_an_active_incident_on_the_way_makes_the_trip_longer() -> None:
    cfg = free_flow("M1/M6")
    route = NETWORK.route("M1/M6")
    leg = route.leg_at(90.0)
    start = cfg.start_time
    blockage = simulate.Incident("INC-T", "Accident", "severe", leg.edge.id, 90.0 - leg.start_km,
                                 route.position(90.0)[0], leg.edge.road, "test", start, start + timedelta(hours=4))
    clear = simulate.trips(simulate.FleetSimulation(cfg, incidents=[]).events()).iloc[0]["minutes"]
    blocked_sim = simulate.FleetSimulation(cfg, incidents=[blockage])
    blocked_events = list(blocked_sim.events())
    blocked = simulate.trips(blocked_events).iloc[0]["minutes"]
    # 3 km of queue at 10 km/h instead of ~110 km/h: about 16 minutes more
    assert blocked >= clear + 12, (clear, blocked)
    reports = [e.value["status"] for e in blocked_events if e.topic == "emergency_data"]
    assert reports == ["Active"], "still active when the vehicle arrives: no Resolved report yet"


def test_rush_hour_and_rain_slow_the_fleet() -> None:
    off_peak = simulate.trips(run(free_flow("M40"))).iloc[0]["minutes"]
    peak = simulate.trips(run(free_flow("M40", base_date="2026-01-06T07:30:00+00:00"))).iloc[0]["minutes"]
    assert peak > off_peak + 5


def test_cameras_and_stations_have_unique_ids_and_stand_on_the_roads() -> None:
    cameras = simulate.place_cameras(NETWORK)
    assert len({c.camera_id for c in cameras}) == len(cameras) == len({c.device for c in cameras})
    for camera in cameras:
        edge = NETWORK.edges[camera.edge_id]
        assert geo.distance_to_polyline_m(camera.point, edge.points) < 1.0
        assert camera.camera_id.startswith(f"CAM-{edge.road.split()[0].split('/')[0]}-")
    stations = simulate.place_stations(NETWORK)
    assert len({s.device for s in stations}) == len(stations) == 12


def test_cameras_see_every_passing_vehicle_once() -> None:
    sim = simulate.FleetSimulation(Params(vehicles=3, incident_rate=0.0))
    events = list(sim.events())
    seen = defaultdict(list)
    for event in events:
        if event.topic == "traffic_data":
            seen[event.value["vehicleId"]].append(event.value["cameraId"])
            assert event.value["snapshot"].startswith(f"snapshots/{event.value['cameraId']}/")
            assert event.value["snapshot"].endswith(f"-{event.value['vehicleId']}.jpg")
    for vehicle in sim.vehicles:
        expected = [camera.camera_id for _, camera in vehicle.cameras]
        assert seen[vehicle.device] == expected and len(expected) >= 8


def test_the_weather_front_moves_east_across_the_stations() -> None:
    events = run(Params(vehicles=1, duration_seconds=5 * 3600, incident_rate=0.0))
    rain_from: dict[str, str] = {}
    temps = defaultdict(list)
    for event in events:
        if event.topic == "weather_data":
            v = event.value
            temps[v["stationName"]].append(v["temperature"])
            if v["weatherCondition"] == "Rain":
                rain_from.setdefault(v["stationName"], v["timestamp"])
    assert rain_from["Birmingham"] < rain_from["Coventry"] < rain_from["Northampton"] < rain_from["London"]
    for series in temps.values():
        assert max(abs(b - a) for a, b in zip(series, series[1:])) <= 1.5, "the field is smooth in time"


def test_incidents_open_then_close_and_follow_the_rate() -> None:
    quiet = simulate.FleetSimulation(Params(incident_rate=0.0)).incidents
    busy = simulate.FleetSimulation(Params(incident_rate=1.0)).incidents
    assert quiet == [] and len(busy) >= 5
    events = run(Params(incident_rate=1.0))
    states = defaultdict(list)
    for event in events:
        if event.topic == "emergency_data":
            states[event.value["incidentId"]].append(event.value["status"])
    assert states and all(s in (["Active"], ["Active", "Resolved"]) for s in states.values())


def test_the_fleet_mix_and_staggered_departures() -> None:
    sim = simulate.FleetSimulation(Params(vehicles=6, routes="M1/M6:2,M40:1"))
    fleet = sim.fleet()
    assert fleet["route"].tolist().count("M1/M6") == 4 and fleet["route"].tolist().count("M40") == 2
    assert fleet["departs"].tolist() == ["08:00", "08:03", "08:06", "08:09", "08:12", "08:15"]
    assert len(set(zip(fleet["make"], fleet["model"]))) >= 2


def test_speedup_paces_events_by_the_simulated_clock() -> None:
    events = run(Params(vehicles=1, duration_seconds=30))  # 31 s of simulated time
    started = time.monotonic()
    assert list(simulate.pace(events, 0)) == events
    assert time.monotonic() - started < 0.29  # speedup 0: no pacing at all
    started = time.monotonic()
    assert list(simulate.pace(events, 100)) == events  # 100 simulated seconds per second
    assert 0.29 <= time.monotonic() - started < 3.0  # paced, not run as fast as possible


def test_duration_bounds_the_run() -> None:
    events = run(Params(vehicles=2, duration_seconds=600))
    last = max(e.value["timestamp"] for e in events)
    assert last <= "2026-01-05T08:10:00.000Z"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"routes": "M99:1"}, "parameter 'routes': unknown route 'M99'"),
        ({"routes": "M1/M6:x"}, "parameter 'routes': the weight of 'M1/M6' is not a number"),
        ({"routes": "M1/M6:0"}, "parameter 'routes' must give at least one route a positive weight"),
        ({"vehicles": -2}, "parameter 'vehicles' must be at least 1"),
        ({"duration_seconds": -1.0}, "parameter 'duration_seconds' must be zero or positive"),
        ({"base_date": "2026-13-01T00:00:00+00:00"}, "parameter 'base_date' is not an ISO 8601 date-time"),
        ({"producer_backend": "rdkafka"}, "parameter 'producer_backend' must be one of"),
    ],
)
def test_impossible_fleet_params_name_the_parameter(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        config.from_mapping(values)
