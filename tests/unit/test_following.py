"""Vehicles that follow advice as they leave (smartcity.fleet.following), and the comparison of trips
(smartcity.advice.trips)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from smartcity import params
from smartcity.advice import now, trips
from smartcity.fleet import following, roads, simulation
from smartcity.fleet.following import ADVISED, NO_ADVICE, UNADVISED, Trip

NETWORK = roads.load_network()
ADVISABLE, NAMES = now.advisable(NETWORK)
#: A path that is none of the corridor's named routes: advice can send vehicles where the mix never does.
ADVISED_PATH = next(p for p, name in NAMES.items() if name not in NETWORK.route_nodes and "M40" in name)
ADVICE_ID = "6f1c1d8e-0000-5000-8000-000000000001"


def _fleet(**values: object) -> params.FleetParams:
    base = {"vehicles": 14, "departure_spacing_seconds": 120.0, "incident_rate": 0.0, "tick_seconds": 30.0}
    return params.from_mapping({**base, **values}).fleet


def _run(fleet: params.FleetParams, advice_after: int = 2) -> tuple[list, list[Trip]]:
    """The run's events and trips, with advice (always ADVISED_PATH) given from the ``advice_after``-th ask on."""
    asked = itertools.count()
    ended: list[Trip] = []

    def lookup(origin: str, destination: str) -> tuple[str, str] | None:
        assert (origin, destination) == ("london", "birmingham")
        return (NAMES[ADVISED_PATH], ADVICE_ID) if next(asked) >= advice_after else None

    follow = following.Following(fleet.advised_share, lookup, ended.append)
    events = list(simulation.FleetSimulation(fleet, network=ADVISABLE, following=follow).events())
    return events, ended


def test_the_advised_share_drives_the_advice_and_every_trip_is_reported_with_its_group() -> None:
    fleet = _fleet(advised_share=0.5)
    events, ended = _run(fleet)
    sim = simulation.FleetSimulation(fleet)
    serial = {v.device: v.serial for v in sim.vehicles}
    assert sorted(t.device for t in ended) == sorted(serial), "one trip per vehicle, each when it arrives"
    share = {d for d, s in serial.items() if following.in_advised_share(fleet.seed, s, 0.5)}
    groups = {t.device: t.group for t in ended}
    assert {d for d, g in groups.items() if g != UNADVISED} == share, "the seeded draw decides who follows"
    assert 3 <= len(share) <= 11
    asked_first = sorted(share, key=lambda d: serial[d])[:2]
    assert all(groups[d] == NO_ADVICE for d in asked_first), "no advice yet: they keep the route mix"
    assert {groups[d] for d in share - set(asked_first)} == {ADVISED}

    advised_edges = [NETWORK.edge_between(a, b)[0].id for a, b in itertools.pairwise(ADVISED_PATH)]
    driven: dict[str, list[str]] = defaultdict(list)
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    trip_of = {t.device: t for t in ended}
    for e in events:
        if e.topic == "vehicle_data":
            if not driven[e.key] or driven[e.key][-1] != e.value["edgeId"]:
                driven[e.key].append(e.value["edgeId"])
            first.setdefault(e.key, e.value["timestamp"])
            last[e.key] = e.value["timestamp"]
            trip = trip_of[e.key]
            assert e.value["route"] == trip.route
            assert (e.value["adviceGroup"], e.value.get("adviceId")) == (trip.group, trip.advice_id), "v3 says so"
    for trip in ended:
        if trip.group == ADVISED:
            assert trip.route == NAMES[ADVISED_PATH] and trip.advice_id == ADVICE_ID
            assert driven[trip.device] == advised_edges, "the advised route, edge by edge, in order"
        else:
            assert trip.route in NETWORK.route_nodes and trip.advice_id is None
        assert trip.depart == datetime.fromisoformat(first[trip.device]), "a trip starts with its first fix"
        assert trip.arrive == datetime.fromisoformat(last[trip.device]), "a trip ends with its last fix"
        assert timedelta(hours=1.5) < trip.arrive - trip.depart < timedelta(hours=5)


def _telemetry(events: list) -> pd.DataFrame:
    """The run's vehicle_data as a lake reader gets it (the trip columns, timestamps as UTC datetimes)."""
    rows = [{c: e.value.get(c) for c in trips.TRIP_COLUMNS} for e in events if e.topic == "vehicle_data"]
    frame = pd.DataFrame(rows, columns=trips.TRIP_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame.sample(frac=1.0, random_state=1)  # files come in any order


def test_the_lake_telemetry_gives_back_the_trips_that_ended_before_the_run_stopped() -> None:
    fleet = _fleet(advised_share=0.5)
    events, ended = _run(fleet)
    assert trips.trips_from_telemetry(_telemetry(events), fleet.tick_seconds) == sorted(
        ended[:-1], key=lambda t: (t.arrive, t.device)
    ), "every trip but the last, whose arrival is the run's last fix"
    stop = ended[len(ended) // 2].arrive  # the run cut there: who still drove (or arrived then) is left out
    cut = [e for e in events if datetime.fromisoformat(e.value["timestamp"]) <= stop]
    rebuilt = trips.trips_from_telemetry(_telemetry(cut), fleet.tick_seconds)
    assert rebuilt and all(t in ended and t.arrive < stop for t in rebuilt)
    assert {t.device for t in rebuilt} == {t.device for t in ended if t.arrive < stop - timedelta(seconds=30)}
    without = list(simulation.FleetSimulation(_fleet()).events())  # nobody follows: a batch run
    assert all("adviceGroup" not in e.value for e in without if e.topic == "vehicle_data")
    assert trips.trips_from_telemetry(_telemetry(without), 30.0) == [], "no advice, no groups"


def test_the_lake_comparison_names_each_group_and_what_the_advice_expected() -> None:
    ended = [_trip(ADVISED, m) for m in (100, 102, 104, 106, 108)]
    ended = [Trip(t.device, t.group, t.route, t.depart, t.arrive, ADVICE_ID) for t in ended]
    ended += [_trip(UNADVISED, m) for m in (115, 120, 125, 130, 135)]
    advice = pd.DataFrame({"id": [ADVICE_ID, ADVICE_ID], "minutes": [101.5, 101.5]})
    frame = trips.comparison_frame(ended, advice)
    assert list(frame.index) == [ADVISED, UNADVISED, NO_ADVICE, "saved"]
    assert frame.loc[ADVISED, "mean min"] == 104.0 and frame.loc[ADVISED, "advice expected min"] == 101.5
    assert frame.loc["saved", "mean min"] == 21.0 and frame.loc["saved", "trips"] == 10
    assert frame.loc[NO_ADVICE, "trips"] == 0 and pd.isna(frame.loc[UNADVISED, "advice expected min"])


def test_who_does_not_follow_drives_as_without_advice_when_vehicles_weigh_nothing() -> None:
    """Same seed, same incidents, same vehicles for both groups: with no volume-delay coupling, the unadvised
    vehicles' events are those of a run where nobody follows, byte for byte."""
    fleet = _fleet(advised_share=0.5, vehicle_weight=0.0, incident_rate=1.0)
    events, ended = _run(fleet)
    alone = list(simulation.FleetSimulation(_fleet(vehicle_weight=0.0, incident_rate=1.0)).events())
    unadvised = {t.device for t in ended if t.group == UNADVISED}
    assert unadvised
    own = [e for e in events if e.key in unadvised]
    assert {e.value["adviceGroup"] for e in own if e.topic == "vehicle_data"} == {UNADVISED}
    for e in own:
        e.value.pop("adviceGroup", None)  # the mark of a run with advice: the rest is as without it
    assert own == [e for e in alone if e.key in unadvised]
    incidents = [e for e in alone if e.topic == "emergency_data"]
    assert incidents and [e for e in events if e.topic == "emergency_data"][: len(incidents)] == incidents, (
        "the same incidents (reported for longer: the advised route is slower, the run ends later)"
    )


def test_no_share_follows_nobody() -> None:
    _, ended = _run(_fleet(advised_share=0.0), advice_after=0)
    assert {t.group for t in ended} == {UNADVISED}


def _trip(group: str, minutes: float) -> Trip:
    depart = datetime(2026, 1, 5, 8, tzinfo=UTC)
    return Trip(f"v-{group}-{minutes}", group, "M40", depart, depart + timedelta(minutes=minutes))


def test_the_comparison_gives_each_groups_mean_and_the_saving_with_intervals() -> None:
    ended = [_trip(ADVISED, m) for m in (100, 102, 104, 106, 108, 110, 112)]
    ended += [_trip(UNADVISED, m) for m in (115, 120, 125, 130, 135)]
    ended.append(_trip(NO_ADVICE, 200))
    figures = trips.compare(ended)
    assert figures[ADVISED]["trips"] == 7 and figures[ADVISED]["mean_min"] == 106.0
    assert figures[UNADVISED]["mean_min"] == 125.0 and figures[NO_ADVICE]["trips"] == 1
    low, high = figures[ADVISED]["ci_min"]
    assert 100 <= low < 106 < high <= 112
    assert figures["saved"]["mean_min"] == 19.0
    low, high = figures["saved"]["ci_min"]
    assert 8 <= low < 19 < high <= 30
    assert trips.compare(ended) == figures, "seeded: the same trips, the same figures"
    text = trips.format_trips(figures)
    assert "advised 7 trips 106.0 min" in text and "advice saves 19.0 min" in text and "1 left before" in text
    assert trips.compare(ended[:4] + ended[7:])["saved"] is None, "4 advised trips are too few for a saving"


@pytest.mark.parametrize("group", [ADVISED, UNADVISED])
def test_no_saving_until_both_groups_have_trips(group: str) -> None:
    figures = trips.compare([_trip(group, 100), _trip(group, 110)])
    assert figures["saved"] is None
    assert "saves" not in trips.format_trips(figures)
