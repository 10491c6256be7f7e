"""Who drives: the fleet mix, the route each vehicle takes, and how drivers behave on each kind of road.

The constants here are the driving model's inputs, each with its unit; the model itself is
:mod:`smartcity.fleet.driving` (vectorized) and :mod:`smartcity.fleet.reference` (one vehicle at a time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate, islice
from typing import Any

from smartcity.fleet.roads import Route


@dataclass(frozen=True)
class Profile:
    make: str
    model: str
    fuel: str
    vehicle_type: str
    consumption: float  # litres (kWh for Electric) per 100 km at a steady 80 km/h
    capacity: float  # tank litres or battery kWh
    max_kmh: float  # what the vehicle may or can do (coaches are limited to 100 km/h)
    share: float  # weight in the fleet mix


PROFILES: tuple[Profile, ...] = (
    Profile("Ford", "Fiesta", "Petrol", "private", 5.6, 42, 180, 14),
    Profile("Vauxhall", "Corsa", "Petrol", "private", 5.4, 44, 175, 10),
    Profile("Volkswagen", "Golf", "Diesel", "private", 4.6, 50, 200, 12),
    Profile("BMW", "3 Series", "Diesel", "private", 5.0, 59, 230, 7),
    Profile("Toyota", "Corolla", "Hybrid", "private", 4.3, 43, 180, 8),
    Profile("Toyota", "Prius", "Hybrid", "taxi", 4.1, 43, 170, 6),
    Profile("Tesla", "Model 3", "Electric", "private", 14.5, 60, 200, 5),
    Profile("Nissan", "Leaf e+", "Electric", "private", 16.0, 62, 157, 4),
    Profile("Ford", "Transit", "Diesel", "van", 8.5, 80, 150, 10),
    Profile("Volvo", "9700", "Diesel", "coach", 26.0, 480, 100, 2),
)
PROFILE_CUM = list(accumulate(p.share for p in PROFILES))

# -- the driving model's constants -------------------------------------------------------------------
#: Share of the speed limit drivers hold in free flow; urban roads lose most to junctions and lights.
FREE_FLOW_SHARE = {"motorway": 0.97, "trunk": 0.95, "primary": 0.85, "urban": 0.4}
#: How much of that speed rush hour takes away at its worst, per road class.
RUSH_HOUR_DEPTH = {"motorway": 0.2, "trunk": 0.35, "primary": 0.25, "urban": 0.45}
ACCELERATION_MS2 = 1.8
BRAKING_MS2 = 3.5
#: km/h per m/s.
KMH_PER_MS = 3.6
#: Beyond its braking distance a vehicle also looks this far ahead for a slower stretch or a queue (km).
LOOKAHEAD_MARGIN_KM = 0.2
#: Standard deviation of how far a driver's speed wanders from the target from one tick to the next (km/h).
SPEED_JITTER_KMH = 1.5
#: Consumption is least at this steady speed (km/h), the speed the profiles' figures are quoted at ...
ECONOMY_KMH = 80.0
#: ... and grows with the square of the distance from it (per (km/h)^2): +1.2 % 10 km/h off it, +30 % at 130 km/h.
FUEL_CURVE_PER_KMH2 = 0.00012
#: Standard deviation of a fix's error, per axis (north, east), by road class: towns' multipath is worst.
GPS_SIGMA_M = {"motorway": 3.5, "trunk": 4.0, "primary": 4.0, "urban": 7.0}
#: The accuracy a fix reports: this many sigmas of its road class's error (m).
GPS_ACCURACY_SIGMAS = 1.5
#: How long a receiver's error takes to decorrelate. Satellite geometry, the atmosphere and the
#: surroundings change over tens of seconds, so two fixes a few seconds apart are off in much the
#: same direction (a first-order Gauss-Markov error); independent errors on each fix would make a
#: slow car jump about by more than it drives.
GPS_CORRELATION_S = 60.0


def braking_km(kmh: Any) -> Any:
    """Distance to stop from ``kmh`` at :data:`BRAKING_MS2`, in km (scalars or arrays)."""
    return kmh * kmh * (1 / (KMH_PER_MS * KMH_PER_MS * 2 * BRAKING_MS2 * 1000))


def rush_hour(at: datetime) -> float:
    """0 off-peak .. 1 at the height of the morning or evening peak (weekdays; UK winter time = UTC)."""
    hour = at.hour + at.minute / 60
    peak = math.exp(-(((hour - 8.0) / 1.0) ** 2)) + 0.9 * math.exp(-(((hour - 17.5) / 1.2) ** 2))
    return min(1.0, peak) * (0.3 if at.weekday() >= 5 else 1.0)


def cycle_routes(weights: dict[str, float]) -> Iterator[str]:
    """Smooth weighted round robin, endless: any prefix of the fleet is as close to the mix as it can be."""
    current = {name: 0.0 for name in weights}
    total = sum(weights.values())
    while True:
        for name, weight in weights.items():
            current[name] += weight
        best = max(current, key=lambda n: current[n])
        current[best] -= total
        yield best


def assign_routes(weights: dict[str, float], vehicles: int) -> list[str]:
    """The routes of the first ``vehicles`` of the fleet (see :func:`cycle_routes`)."""
    return list(islice(cycle_routes(weights), vehicles))


def on_route(route: Route, items: Iterable[tuple[str, float, Any]]) -> list[tuple[float, Any]]:
    """(route km, item) of the items (given by edge id and km along the edge) that lie on the route, in order."""
    legs = {leg.edge.id: leg for leg in route.legs}
    return sorted(((legs[e].route_km(km), obj) for e, km, obj in items if e in legs), key=lambda p: p[0])


@dataclass(frozen=True)
class Vehicle:
    """One vehicle as it sets off: who it is, where it goes and when. Its state on the road lives in
    the fleet's arrays while it drives, and goes when it arrives."""

    device: str
    profile: Profile
    year: int
    route: Route
    depart: datetime
    driver: float  # this driver's share of the free-flow speed
    odometer0: float
    fuel0: float  # % at departure
    cameras: tuple[tuple[float, Any], ...]  # (route km, camera) on its route, in order
    serial: int  # 0 for vehicle-001: keys the noise it meets
    advice: tuple[str, str | None] | None = None  # live runs with advice: its group and the advice it follows
