"""The driving model for one vehicle, in plain Python: what :func:`smartcity.fleet.driving.drive` does
for a whole fleet in arrays, written out step by step so that it can be read, and checked against.

Nothing in the lab runs this: the tests drive random fleets both ways and compare the results.
Distances are along the vehicle's own route (km from its start), not on the vectorized model's
axis of all routes laid end to end; speeds are km/h, time is seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from smartcity.fleet import traffic
from smartcity.fleet.roads import EARTH_RADIUS_KM, Leg, Route, interpolate
from smartcity.fleet.vehicles import (
    ACCELERATION_MS2,
    BRAKING_MS2,
    ECONOMY_KMH,
    FREE_FLOW_SHARE,
    FUEL_CURVE_PER_KMH2,
    GPS_CORRELATION_S,
    GPS_SIGMA_M,
    KMH_PER_MS,
    LOOKAHEAD_MARGIN_KM,
    SPEED_JITTER_KMH,
)


@dataclass(frozen=True)
class Car:
    """What does not change while a vehicle drives."""

    route: Route
    driver: float  # share of the free-flow speed this driver holds
    max_kmh: float
    fuel_per_km: float  # % of the tank (or battery) per km at ECONOMY_KMH
    odometer0: float  # km when it set off


@dataclass(frozen=True)
class State:
    """A vehicle between two ticks."""

    km: float  # along its route
    speed: float  # km/h
    fuel: float  # % left
    heading: float  # degrees clockwise from north
    last_lat: float  # where its previous fix was taken (the true point)
    last_lon: float
    err_n: float  # its receiver's error, in standard deviations, north and east
    err_e: float


@dataclass(frozen=True)
class Tick:
    """One tick for one vehicle: when, how long, the noise it meets, the queues, the rain and the fleet's flows."""

    now: datetime
    seconds: float
    north: float  # standard normal draws: the fix's error ...
    east: float
    jitter: float  # ... and the driver's wandering from the target speed
    queues: Sequence[tuple[float, float, float]] = ()  # (from km, to km, speed km/h) along the route
    rain: Callable[[float, float], float] | None = None  # speed factor at (lat, lon); None: dry
    # the whole fleet's flow on each carriageway (traffic.fleet_vph of the legs every vehicle is on), veh/h
    flows: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """What one tick gives: the report (before moving), the new state, and the cameras passed."""

    report: tuple[float, float, float, float, float, float]  # lat, lon, speed, direction, odometer, fuel
    leg: Leg
    state: State
    passed: list[tuple[float, float]]  # (share of the tick, speed km/h) at each camera passed


def free_flow_kmh(leg: Leg, car: Car, now: datetime, flows: Mapping[str, float]) -> float:
    """What the road lets this vehicle do at this hour: its class's share of the limit, slowed by the flow on
    its carriageway (the hour's background and the fleet's ``flows``)."""
    road = leg.edge
    free = min(road.speed_limit_kmh * FREE_FLOW_SHARE[road.road_class], car.max_kmh)
    return free * traffic.speed_factor(leg, now, flows)


def target_kmh(car: Car, state: State, tick: Tick, lat: float, lon: float) -> float:
    """The speed the driver aims for: the slowest of here and its braking distance ahead, then rain,
    queues at incidents, and the driver's own wandering."""
    route = car.route
    stopping_km = (state.speed / KMH_PER_MS) ** 2 / (2 * BRAKING_MS2) / 1000
    ahead = min(state.km + stopping_km + LOOKAHEAD_MARGIN_KM, route.length_km)
    target = min(
        free_flow_kmh(route.leg_at(state.km), car, tick.now, tick.flows),
        free_flow_kmh(route.leg_at(ahead), car, tick.now, tick.flows),
    )
    target *= car.driver
    if tick.rain is not None:
        target *= tick.rain(lat, lon)
    for lo, hi, queue_kmh in tick.queues:
        if lo <= state.km <= hi or lo <= ahead <= hi:
            target = min(target, queue_kmh)
    return target + SPEED_JITTER_KMH * tick.jitter


def drive_one(car: Car, state: State, tick: Tick, cameras: Sequence[float] = ()) -> Step:
    """One tick of one vehicle; ``cameras`` are the route km of the cameras still ahead of it, in order."""
    route = car.route
    (lat, lon), _ = interpolate(route.points, route.chainage_km, state.km)
    heading = state.heading
    if (lat, lon) != (state.last_lat, state.last_lon):  # the bearing of its motion since the last fix
        north_deg, east_deg = lat - state.last_lat, (lon - state.last_lon) * math.cos(math.radians(lat))
        heading = math.degrees(math.atan2(east_deg, north_deg)) % 360.0
    leg = route.leg_at(state.km)
    sigma_deg = GPS_SIGMA_M[leg.edge.road_class] / 1000 / EARTH_RADIUS_KM * 180 / math.pi
    rho = math.exp(-tick.seconds / GPS_CORRELATION_S)
    err_n = rho * state.err_n + math.sqrt(1 - rho**2) * tick.north
    err_e = rho * state.err_e + math.sqrt(1 - rho**2) * tick.east
    report = (
        lat + sigma_deg * err_n,
        lon + sigma_deg * err_e / math.cos(math.radians(lat)),
        state.speed,
        heading,
        car.odometer0 + state.km,
        max(state.fuel, 0.0),
    )
    most_up, most_down = ACCELERATION_MS2 * KMH_PER_MS * tick.seconds, BRAKING_MS2 * KMH_PER_MS * tick.seconds
    change = max(-most_down, min(most_up, target_kmh(car, state, tick, lat, lon) - state.speed))
    speed = max(state.speed + change, 0.0)
    arrived = state.km >= route.length_km
    km_driven = 0.0 if arrived else (state.speed + speed) / 2 * tick.seconds / 3600
    passed = [
        ((at - state.km) / km_driven, state.speed + change * (at - state.km) / km_driven)
        for at in cameras
        if at <= state.km + km_driven
    ]
    mean_kmh = (state.speed + speed) / 2
    fuel = state.fuel - car.fuel_per_km * (1 + FUEL_CURVE_PER_KMH2 * (mean_kmh - ECONOMY_KMH) ** 2) * km_driven
    km = min(route.length_km, state.km + km_driven)
    new = replace(
        state,
        km=km,
        speed=0.0 if km >= route.length_km else speed,
        fuel=fuel,
        heading=heading,
        last_lat=lat,
        last_lon=lon,
        err_n=err_n,
        err_e=err_e,
    )
    return Step(report, leg, new, passed)
