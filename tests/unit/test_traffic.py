"""The volume-delay model: more vehicles on a carriageway make it slower, and the fleet feels its own traffic."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcity.fleet import traffic
from smartcity.fleet.params import FleetParams
from smartcity.fleet.roads import load_network
from smartcity.fleet.simulation import FleetSimulation, simulate_journey
from smartcity.fleet.summaries import trips
from smartcity.fleet.vehicles import RUSH_HOUR_DEPTH

NETWORK = load_network()
LEGS = [leg for name in NETWORK.route_names for leg in NETWORK.route(name).legs]
START = FleetParams().start_time
ROADS = FleetSimulation(FleetParams(vehicles=1)).roads

legs = st.sampled_from(LEGS)
minutes_of_day = st.integers(0, 24 * 60 - 1)


@given(legs, minutes_of_day, st.floats(0.0, 20_000.0), st.floats(1.0, 2_000.0))
def test_more_flow_on_a_carriageway_never_makes_it_faster(leg, minute, flow, more) -> None:
    at = START + timedelta(minutes=minute)
    key = traffic.carriageway(leg)
    slower = traffic.speed_factor(leg, at, {key: flow + more})
    faster = traffic.speed_factor(leg, at, {key: flow})
    assert slower <= faster
    volume = traffic.background_vph(leg.edge.road_class, at) + flow
    if volume + more <= traffic.MAX_VC * traffic.capacity_vph(leg.edge.road_class):  # below the cap: strictly
        assert slower < faster
    assert traffic.speed_factor(leg, at, {"another:+": flow + more}) == traffic.speed_factor(leg, at, {})


@given(
    st.lists(st.floats(0.0, 5_000.0), min_size=len(ROADS.slot_capacity), max_size=len(ROADS.slot_capacity)),
    minutes_of_day,
    st.data(),
)
def test_flow_added_to_one_carriageway_slows_it_and_no_other(flows, minute, data) -> None:
    at = START + timedelta(minutes=minute)
    added = data.draw(st.integers(0, len(ROADS.slot_capacity) - 1))
    before = ROADS.speed_factors(np.array(flows), at)
    more = np.array(flows)
    more[added] += 250.0  # ten vehicles of weight 25 an hour
    after = ROADS.speed_factors(more, at)
    assert after[added] < before[added] or after[added] == before[added] == 1 / (
        1 + traffic.BPR_ALPHA * traffic.MAX_VC**4
    )
    others = np.arange(len(before)) != added
    assert np.array_equal(after[others], before[others])


def test_the_fleet_flow_counts_entries_and_fades_without_them() -> None:
    """An exponential average of entries: a vehicle per tick of 5 s for long enough tends to 720 an hour times
    its weight; a vehicle that stays on the carriageway adds nothing more; a quiet gap lets it fade."""
    flow = 0.0
    for _ in range(2000):  # 10,000 s: many memories
        flow = traffic.smoothed_flow(flow, 25.0, 5.0, 5.0)
    assert flow == pytest.approx(25.0 * 720.0, rel=1e-3)
    assert traffic.smoothed_flow(flow, 0.0, 5.0, traffic.FLOW_MEMORY_S) == pytest.approx(flow / np.e)


@pytest.mark.parametrize("road_class", sorted(RUSH_HOUR_DEPTH))
def test_with_no_fleet_the_curve_gives_the_rush_hour_the_model_had(road_class: str) -> None:
    """Calibration: the background alone slows each class by its former rush-hour depth at the peak, and off
    the peak by about 1 %."""
    leg = next(leg for leg in LEGS if leg.edge.road_class == road_class)
    peak, night = START.replace(hour=8, minute=0), START.replace(hour=3, minute=0)
    assert traffic.speed_factor(leg, peak, {}) == pytest.approx(1 - RUSH_HOUR_DEPTH[road_class])
    assert traffic.speed_factor(leg, night, {}) == pytest.approx(1 / (1 + traffic.BPR_ALPHA * 0.5**4))


def _route_minutes(routes: str, weight: float) -> float:
    """Median trip minutes of 12 vehicles leaving 60 s apart at the morning peak on ``routes``, without incidents."""
    cfg = FleetParams(
        vehicles=12, routes=routes, departure_spacing_seconds=60.0, incident_rate=0.0, vehicle_weight=weight
    )
    table = trips(simulate_journey(cfg))
    return float(table.loc[table["route"] == "M40", "minutes"].median())


def test_sending_the_whole_fleet_down_one_route_slows_that_route() -> None:
    """The judge's old blind spot: concentrating the fleet on the M40 costs time there once vehicles count."""
    alone, crowded = _route_minutes("M40:1,M1/M6:1,A5/A45:1", 25.0), _route_minutes("M40:1", 25.0)
    assert crowded > alone
