"""The vectorized driving model agrees with the plain one-vehicle-at-a-time reference, for any fleet state."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from smartcity.fleet import driving, reference
from smartcity.fleet.driving import FleetArrays, Tick, drive
from smartcity.fleet.params import FleetParams
from smartcity.fleet.roads import interpolate
from smartcity.fleet.simulation import FleetSimulation

SIM = FleetSimulation(FleetParams(vehicles=6, departure_spacing_seconds=0.0))
ROADS = SIM.roads
#: Positions this close to a boundary (a leg's start, a queue's end, a camera) may round to either side.
MARGIN_KM = 1e-6

vehicle_states = st.fixed_dictionaries(
    {
        "share": st.one_of(
            st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)
        ),  # of the route: at the start, arrived, on it
        "speed": st.floats(0.0, 140.0),
        "fuel": st.floats(-0.5, 100.0),
        "heading": st.floats(0.0, 359.9),
        "err_n": st.floats(-3.0, 3.0),
        "err_e": st.floats(-3.0, 3.0),
        "moved_km": st.one_of(st.just(0.0), st.floats(0.001, 0.5)),
    }
)
queues = st.lists(
    st.tuples(st.integers(0, 5), st.floats(0.0, 1.0), st.floats(0.05, 3.0), st.floats(5.0, 60.0)), max_size=3
)


def _fleet(states: list[dict[str, float]]) -> FleetArrays:
    fleet = FleetArrays(SIM.params.seed, ROADS, SIM.params.vehicle_weight)
    fleet.join(SIM.vehicles[: len(states)], k=1)
    for j, s in enumerate(states):
        length = fleet.row("length")[j]
        km = s["share"] * length
        fleet.row("km")[j], fleet.row("speed")[j], fleet.row("fuel")[j] = km, s["speed"], s["fuel"]
        fleet.row("heading")[j], fleet.row("err_n")[j], fleet.row("err_e")[j] = s["heading"], s["err_n"], s["err_e"]
        g = km + fleet.row("offset")[j]
        route = fleet.row("route")[j]
        first = ROADS.cam_lo[route]
        fleet.row("cam")[j] = first + int(np.searchsorted(ROADS.cam_km[first:], g, side="right"))
    # where each vehicle's last fix was: a little way back, or (moved 0) right where it stands
    back = np.maximum(fleet.row("km") - [s["moved_km"] for s in states], 0.0)
    before = driving._locate(ROADS, fleet, back, fleet.row("speed"))
    fleet.row("last_lat")[:], fleet.row("last_lon")[:] = before.lat, before.lon
    return fleet


def _boundaries(fleet: FleetArrays, zones: list[driving.Zone]) -> np.ndarray:
    return np.concatenate(
        [ROADS.leg_start, ROADS.cam_km[np.isfinite(ROADS.cam_km)], [z[0] for z in zones], [z[1] for z in zones]]
    )


@given(st.lists(vehicle_states, min_size=1, max_size=6), queues, st.integers(0, 24 * 60), st.floats(1.0, 10.0))
def test_the_fleet_in_arrays_drives_as_each_vehicle_would_alone(states, queue_specs, minute, seconds) -> None:
    fleet = _fleet(states)
    now = SIM.params.start_time + timedelta(minutes=minute)
    zones = []
    for n, centre, half, kmh in queue_specs:
        j = n % fleet.size
        at = fleet.row("offset")[j] + centre * fleet.row("length")[j]
        zones.append((at - half, at + half, kmh))
    at = driving._locate(ROADS, fleet, fleet.row("km"), fleet.row("speed"))
    edges = _boundaries(fleet, zones)
    for point in (*at.g, *at.ahead):  # on a boundary both sides agree; a hair away they may not
        nearest = np.min(np.abs(edges - point))
        assume(nearest == 0.0 or nearest > MARGIN_KM)
    raining = SIM.rain_on_corridor(now)
    vectorized_rain = (lambda lat, lon: SIM.weather.speed_factors(lat, lon, now)) if raining else None
    draws = fleet.noise_at(1).copy()
    before = {
        name: fleet.row(name).copy()
        for name in (
            "km",
            "speed",
            "fuel",
            "heading",
            "last_lat",
            "last_lon",
            "err_n",
            "err_e",
            "driver",
            "max_kmh",
            "fuel_per_km",
            "odometer0",
            "offset",
            "length",
        )
    }
    routes = [SIM.network.route(SIM.network.route_names[r]) for r in fleet.row("route")]
    moves = drive(fleet, Tick(1, now, seconds), zones, vectorized_rain)
    flows = {key: float(fleet.flows[slot]) for key, slot in ROADS.slots.items()}  # what the tick's entries made
    for j, route in enumerate(routes):
        off = before["offset"][j]
        car = reference.Car(
            route, before["driver"][j], before["max_kmh"][j], before["fuel_per_km"][j], before["odometer0"][j]
        )
        state = reference.State(
            *(float(before[k][j]) for k in ("km", "speed", "fuel", "heading", "last_lat", "last_lon", "err_n", "err_e"))
        )
        if states[j]["moved_km"] == 0.0:  # stood still: its last fix is where it is, as the reference places it
            (lat, lon), _ = interpolate(route.points, route.chainage_km, state.km)
            state = replace(state, last_lat=lat, last_lon=lon)
        tick = reference.Tick(
            now,
            seconds,
            *draws[:, j],
            queues=[(lo - off, hi - off, kmh) for lo, hi, kmh in zones],
            rain=(lambda lat, lon: SIM.weather.speed_factor((lat, lon), now)) if raining else None,
            flows=flows,
        )
        cameras = [km for km, _ in ROADS.route_cameras[route.name] if km + off > at.g[j]]
        step = reference.drive_one(car, state, tick, cameras)
        reported = [row[j] for row in moves.rows]  # rows are fields, columns vehicles
        for value, expected, decimals in zip(reported, step.report, driving.REPORT_DECIMALS, strict=True):
            assert abs(value - expected) <= 1.01 * 10.0**-decimals, (j, reported, step.report)
        assert step.leg.edge.id == ROADS.leg_info[moves.legs[j]][1]
        for name in ("km", "speed", "fuel", "err_n", "err_e", "last_lat", "last_lon"):
            assert math.isclose(fleet.row(name)[j], getattr(step.state, name), rel_tol=1e-9, abs_tol=1e-9), name
        assert (
            math.isclose(fleet.row("heading")[j], step.state.heading, abs_tol=1e-6)
            or abs(abs(fleet.row("heading")[j] - step.state.heading) - 360.0) < 1e-6
        )
        passed = [(share, kmh) for v, _, share, kmh in moves.passages if v == j]
        assert len(passed) == len(step.passed)
        for (share, kmh), (ref_share, ref_kmh) in zip(passed, step.passed):
            assert math.isclose(share, ref_share, abs_tol=1e-9) and math.isclose(kmh, ref_kmh, abs_tol=1e-9)
    assert moves.arrived.tolist() == [s >= before["length"][j] for j, s in enumerate(before["km"])]
