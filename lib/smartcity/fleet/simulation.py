"""The IoT fleet: vehicles driving London -> Birmingham on real roads, and the sensors beside them.

A time-stepped simulation on the corridor's road network (:mod:`smartcity.geo`):

* vehicles drawn from a fleet mix (make, model, year, fuel), each on one of the routes, leaving
  a few minutes apart and, with ``departure_rate_per_hour``, more of them for as long as the run
  lasts; speed follows the road's free-flow speed, eased by rush-hour congestion, rain where the
  vehicle is, and queues at active incidents, with bounded acceleration and braking;
* telemetry and GPS every tick: a fix along the polyline whose error drifts from one fix to the
  next as a receiver's does, the bearing of the motion, odometer and fuel (or charge)
  consistent with the distance driven;
* traffic cameras at fixed points of the roads, one event per vehicle passing, with the key of
  the snapshot it took;
* weather stations in the corridor's towns reporting one coherent field: a cold front with its
  rain band drifting east across the region;
* incidents as a Poisson process along the roads (for as long as the run lasts, open-ended in an
  endless one), reported Active, later Resolved, slowing the traffic on their stretch while active.

The vehicles on the road are columns of numpy arrays (route distance, speed, fuel, GPS error ...),
so a tick of the whole fleet is a few dozen array operations whatever its size; only the events
themselves are built one by one. Events come lazily, in event-time order, and a vehicle's state is
dropped when it arrives: an open-ended run keeps flat memory.

Everything is derived from the seed and the simulated clock, never from the wall clock. Each part
draws from its own seeded stream: the fleet mix, each vehicle's own attributes, the noise each
vehicle meets on its way (a counter-based generator keyed by seed, vehicle and tick, so one
vehicle's trip does not depend on which others are on the road), the weather, the incidents and
the departures. Ids are uuid5 of (seed, topic, device, sequence). The same params give the same
events, byte for byte.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate, count, islice, takewhile
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from tqdm import tqdm

from smartcity.params import TOPICS, Params, route_weights
from smartcity.fleet.contracts import Event
from smartcity.fleet.roads import EARTH_RADIUS_KM, LatLon, Route, RoadNetwork, load_network, local_xy_km

_NAMESPACE = uuid.UUID("6f1f5b5e-3c55-4a7e-9d1e-5c17a0b1c0de")
_TOPIC_ORDER = {t: n for n, t in enumerate(TOPICS)}


# -- the fleet ------------------------------------------------------------------------------------
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

#: Share of the speed limit drivers hold in free flow; urban roads lose most to junctions and lights.
FREE_FLOW_SHARE = {"motorway": 0.97, "trunk": 0.95, "primary": 0.85, "urban": 0.4}
#: How much of that speed rush hour takes away at its worst, per road class.
RUSH_HOUR_DEPTH = {"motorway": 0.2, "trunk": 0.35, "primary": 0.25, "urban": 0.45}
ACCELERATION_MS2 = 1.8
BRAKING_MS2 = 3.5
#: Standard deviation of a fix's error, per axis (north, east), by road class: towns' multipath is worst.
GPS_SIGMA_M = {"motorway": 3.5, "trunk": 4.0, "primary": 4.0, "urban": 7.0}
#: How long a receiver's error takes to decorrelate. Satellite geometry, the atmosphere and the
#: surroundings change over tens of seconds, so two fixes a few seconds apart are off in much the
#: same direction (a first-order Gauss-Markov error); independent errors on each fix would make a
#: slow car jump about by more than it drives.
GPS_CORRELATION_S = 60.0
CAMERA_SPACING_KM = 15.0
WEATHER_PERIOD = timedelta(minutes=10)
#: Weather stations: the town each is named after, and the network node it stands at.
WEATHER_STATIONS = (
    ("London", "london"), ("St Albans", "st_albans"), ("Luton", "m1_j10"), ("Milton Keynes", "fenny_stratford"),
    ("Northampton", "m1_j15"), ("High Wycombe", "m40_j4"), ("Oxford", "m40_j8"), ("Banbury", "m40_j11"),
    ("Rugby", "m1_j19"), ("Coventry", "tollbar_end"), ("Warwick", "m40_j15"), ("Birmingham", "birmingham"),
)
#: An incident's effect: (queue upstream in km, speed through it in km/h, mean minutes active).
SEVERITY_EFFECT = {"minor": (0.5, 60.0, 20.0), "major": (1.5, 30.0, 45.0), "severe": (3.0, 10.0, 90.0)}
INCIDENT_MIX = {"Breakdown": 40, "Accident": 25, "Roadworks": 15, "Police": 10, "Medical": 6, "Fire": 4}
SEVERITY_MIX = {"minor": 55, "major": 35, "severe": 10}
#: A planned route may be this slow on average: it sizes the window a fixed fleet's incidents are drawn for.
_SLOWEST_PLANNED_KMH = 50.0

#: A departure plan: (departure time, route name) per vehicle, in device order.
Plan = Sequence[tuple[datetime, str]]


def _order(event: Event) -> tuple[str, int, str, str]:
    """Stream order: event time, then topic, device and id (all fixed by the params)."""
    return (event.value["timestamp"], _TOPIC_ORDER[event.topic], event.key, event.value["id"])


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds: one spelling of time for every event."""
    ts = ts.astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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


def rush_hour(at: datetime) -> float:
    """0 off-peak .. 1 at the height of the morning or evening peak (weekdays; UK winter time = UTC)."""
    hour = at.hour + at.minute / 60
    peak = math.exp(-(((hour - 8.0) / 1.0) ** 2)) + 0.9 * math.exp(-(((hour - 17.5) / 1.2) ** 2))
    return min(1.0, peak) * (0.3 if at.weekday() >= 5 else 1.0)


# -- weather --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeatherField:
    """A cold front moving east-south-east at ``speed_kmh``: rain band on the front, cooler and
    showery behind it, mild and cloudy ahead. A pure function of place and time."""

    start: datetime
    origin: LatLon
    front_km: float = -150.0  # signed distance of the front from the origin at start
    speed_kmh: float = 35.0
    heading_deg: float = 100.0

    def distance_km(self, point: LatLon, at: datetime) -> float:
        """Signed distance from the front: positive ahead of it (not reached yet), negative behind."""
        x, y = local_xy_km(point, self.origin)
        h = math.radians(self.heading_deg)
        along = x * math.sin(h) + y * math.cos(h)
        hours = (at - self.start).total_seconds() / 3600
        return along - (self.front_km + self.speed_kmh * hours)

    @staticmethod
    def _rain(s: float) -> float:
        """mm/h: a 6 mm/h band just behind the front, light showers 45 km further back."""
        return 6.0 * math.exp(-(((s + 5) / 10) ** 2)) + 0.8 * math.exp(-(((s + 45) / 20) ** 2))

    def sample(self, point: LatLon, at: datetime, urban: bool = False) -> dict[str, float | str]:
        s = self.distance_km(point, at)
        hour = at.hour + at.minute / 60
        ahead = 1 / (1 + math.exp(-s / 8))
        rain = self._rain(s)
        temperature = 6.0 + 4.0 * ahead + 1.5 * math.sin(2 * math.pi * (hour - 9) / 24) + (1.0 if urban else 0.0)
        wind = 15.0 + 30.0 * math.exp(-((s / 25) ** 2)) + 5.0 * (1 - ahead)
        humidity = min(100.0, 72.0 + 26.0 * math.exp(-(((s + 5) / 15) ** 2)) + 4.0 * ahead)
        if rain >= 0.5:
            condition = "Snow" if temperature < 1.0 else "Rain"
        elif humidity > 97 and wind < 10:
            condition = "Fog"
        else:
            condition = "Cloudy" if s > -25 else "Sunny"
        aqi = max(5.0, 40.0 + (15.0 if urban else 0.0) * rush_hour(at) - 6.0 * min(rain, 2.0) - 0.4 * wind)
        return {"temperature": temperature, "precipitation": rain, "windSpeed": wind, "humidity": humidity,
                "weatherCondition": condition, "airQualityIndex": aqi}

    def speed_factor(self, point: LatLon, at: datetime) -> float:
        """Drivers slow in rain: 1 when dry, down to 0.75 in the heaviest of the band."""
        return 1.0 - min(0.25, 0.04 * self._rain(self.distance_km(point, at)))

    def speed_factors(self, lat: np.ndarray, lon: np.ndarray, at: datetime) -> np.ndarray:
        """:meth:`speed_factor` for a whole fleet at once (the same equirectangular distance, in arrays)."""
        h = math.radians(self.heading_deg)
        km_per_deg = math.radians(1.0) * EARTH_RADIUS_KM
        kx = km_per_deg * math.cos(math.radians(self.origin[0])) * math.sin(h)
        ky = km_per_deg * math.cos(h)
        front = self.front_km + self.speed_kmh * (at - self.start).total_seconds() / 3600
        s = (lon - self.origin[1]) * kx + (lat - self.origin[0]) * ky - front
        rain = 6.0 * np.exp(-(((s + 5) / 10) ** 2)) + 0.8 * np.exp(-(((s + 45) / 20) ** 2))
        return 1.0 - np.minimum(0.25, 0.04 * rain)


# -- incidents ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incident:
    incident_id: str
    kind: str
    severity: str
    edge_id: str
    edge_km: float
    point: LatLon
    road: str
    place: str
    start: datetime
    end: datetime

    @property
    def queue_km(self) -> float:
        return SEVERITY_EFFECT[self.severity][0]

    @property
    def speed_kmh(self) -> float:
        return SEVERITY_EFFECT[self.severity][1]

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means of a corridor's incidents."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _draw_incident(rng: random.Random, network: RoadNetwork, edges: list[Any], edge_cum: list[float], n: int,
                   when: Callable[[], datetime]) -> Incident:
    """Where, what, when (``when`` draws it, in that order, so a seed keeps its incidents) and how long."""
    edge = rng.choices(edges, cum_weights=edge_cum)[0]
    kind = rng.choices(list(INCIDENT_MIX), weights=list(INCIDENT_MIX.values()))[0]
    severity = rng.choices(list(SEVERITY_MIX), weights=list(SEVERITY_MIX.values()))[0]
    edge_km = rng.uniform(0.1, 0.9) * edge.length_km
    begin = when()
    minutes = SEVERITY_EFFECT[severity][2] * math.exp(rng.gauss(0, 0.35))
    start_node, end_node = network.nodes[edge.start], network.nodes[edge.end]
    place = start_node.name if edge_km < edge.length_km / 2 else end_node.name
    return Incident(f"INC-{n:03d}", kind, severity, edge.id, edge_km, edge.position(edge_km), edge.road, place,
                    begin, begin + timedelta(minutes=minutes))


def plan_incidents(cfg: Params, network: RoadNetwork, window: timedelta) -> list[Incident]:
    """Incidents over a window known in advance (a run with an end): Poisson in time and in road length,
    at ``incident_rate`` per 100 km·h, drawn as a Poisson count at uniform times, which is what such a
    process is on a fixed window."""
    rng = random.Random(f"{cfg.seed}/incidents")
    seconds = window.total_seconds()
    edges = list(network.edges.values())
    edge_cum = list(accumulate(e.length_km for e in edges))
    how_many = _poisson(rng, cfg.incident_rate * network.length_km() / 100 * (seconds / 3600))
    incidents = [_draw_incident(rng, network, edges, edge_cum, n + 1,
                                lambda: cfg.start_time + timedelta(seconds=rng.uniform(0, seconds)))
                 for n in range(how_many)]
    return sorted(incidents, key=lambda i: (i.start, i.incident_id))


def incident_process(cfg: Params, network: RoadNetwork) -> Iterator[Incident]:
    """Incidents for a run with no end: the same Poisson process as :func:`plan_incidents`, drawn as
    exponential gaps, in order of their start, for as long as one keeps asking."""
    per_hour = cfg.incident_rate * network.length_km() / 100
    if per_hour <= 0:
        return
    rng = random.Random(f"{cfg.seed}/incidents/open-ended")
    edges = list(network.edges.values())
    edge_cum = list(accumulate(e.length_km for e in edges))
    begin = cfg.start_time
    for n in count(1):
        begin += timedelta(hours=rng.expovariate(per_hour))
        yield _draw_incident(rng, network, edges, edge_cum, n, lambda at=begin: at)


# -- cameras and stations -------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    camera_id: str
    device: str
    edge_id: str
    edge_km: float
    point: LatLon
    road: str


def place_cameras(network: RoadNetwork) -> list[Camera]:
    """A camera every CAMERA_SPACING_KM along each road, starting half a spacing in."""
    cameras = []
    per_road: Counter[str] = Counter()
    for edge in network.edges.values():
        road = edge.road.split()[0].split("/")[0]  # "A5" for "A5 Watling Street": cameras are named by road number
        km = CAMERA_SPACING_KM / 2
        while km < edge.length_km:
            per_road[road] += 1
            cid = f"CAM-{road}-{per_road[road]:02d}"
            cameras.append(Camera(cid, f"camera-{cid.lower()}", edge.id, km, edge.position(km), edge.road))
            km += CAMERA_SPACING_KM
    return cameras


@dataclass(frozen=True)
class Station:
    device: str
    name: str
    point: LatLon
    urban: bool


def place_stations(network: RoadNetwork) -> list[Station]:
    return [
        Station(f"weather-{name.lower().replace(' ', '-')}", name, network.nodes[node].point,
                network.nodes[node].kind == "city")
        for name, node in WEATHER_STATIONS
    ]


def on_route(route: Route, items: Iterable[tuple[str, float, Any]]) -> list[tuple[float, Any]]:
    """(route km, item) of the items (given by edge id and km along the edge) that lie on the route, in order."""
    legs = {leg.edge.id: leg for leg in route.legs}
    return sorted(((legs[e].route_km(km), obj) for e, km, obj in items if e in legs), key=lambda p: p[0])


# -- vehicles -------------------------------------------------------------------------------------
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
    cameras: tuple[tuple[float, Camera], ...]  # (route km, camera) on its route, in order
    serial: int  # 0 for vehicle-001: keys the noise it meets


# -- noise: counter-based, so a vehicle's draws depend only on the seed, the vehicle and its tick ----
_GOLDEN = np.array(0x9E3779B97F4A7C15, dtype=np.uint64)
_MIX_A = np.array(0xBF58476D1CE4E5B9, dtype=np.uint64)
_MIX_B = np.array(0x94D049BB133111EB, dtype=np.uint64)
_DRAW_SLOTS = np.arange(4, dtype=np.uint64)
# numpy scalars as 0-d arrays: on a small fleet the cost of an operation is its per-call overhead
_U4, _U11, _U27, _U30, _U31 = (np.array(v, dtype=np.uint64) for v in (4, 11, 27, 30, 31))


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit words whose outputs look independent."""
    z = z ^ (z >> _U30)
    z *= _MIX_A
    z ^= z >> _U27
    z *= _MIX_B
    z ^= z >> _U31
    return z


def noise_keys(seed: int, serials: np.ndarray) -> np.ndarray:
    """One 64-bit key per vehicle, from the seed and the vehicle's serial number."""
    base = int.from_bytes(hashlib.sha256(f"{seed}/noise".encode()).digest()[:8], "little")
    return _mix64(np.array(base, dtype=np.uint64) + serials.astype(np.uint64) * _GOLDEN)


def tick_normals(keys: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three independent standard normal draws per vehicle for its ``ticks``-th step (Box-Muller over
    four hashed counters): a pure function of (key, tick), whichever other vehicles are on the road.
    ``keys`` and ``ticks`` are arrays of one shape; so are the draws."""
    counter = ticks.astype(np.uint64)[None] * _U4 + _DRAW_SLOTS.reshape((4,) + (1,) * ticks.ndim)
    counter *= _GOLDEN
    counter += keys[None]
    u = (_mix64(counter) >> _U11).astype(np.float64)
    u += 0.5
    u *= 2.0**-53  # in (0, 1), never 0
    radius = np.log(u[0::2])
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = u[1::2]
    angle *= 2.0 * math.pi
    return radius[0] * np.cos(angle[0]), radius[0] * np.sin(angle[0]), radius[1] * np.cos(angle[1])


# -- ids ------------------------------------------------------------------------------------------
try:  # CPython's own SHA-1: for messages this short it is faster than OpenSSL's (no EVP context per hash)
    from _sha1 import sha1 as _sha1
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import sha1 as _sha1

_VARIANT = {c: format((int(c, 16) & 0x3) | 0x8, "x") for c in "0123456789abcdef"}
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DIGIT_AT = np.array([c for c in range(36) if c not in (8, 13, 18, 23)])  # where the 32 digits go
_DASH = ord("-")


def id_prefix(seed: int, topic: str, device: str) -> bytes:
    """What every id of one device hashes first: the namespace, then "{seed}/{topic}/{device}/"."""
    return _NAMESPACE.bytes + f"{seed}/{topic}/{device}/".encode()


def event_id(prefix: bytes, n: int) -> str:
    """``str(uuid.uuid5(namespace, f"{seed}/{topic}/{device}/{n}"))`` from the device's prefix, without the
    UUID object: the same text at a fraction of the cost (ids are made for every event)."""
    return _uuid5_text(_sha1(prefix + b"%d" % n).hexdigest())


def _uuid5_text(x: str) -> str:
    """The uuid5 text of a SHA-1 hex digest: its first 32 digits, version 5, RFC 4122 variant."""
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def uuid5_texts(digests: list[bytes]) -> list[str]:
    """The uuid5 text of each SHA-1 digest: for many at once in arrays (a few dozen and more: a fleet's
    tick), which is what makes them cheap; one by one for a few."""
    if len(digests) < 32:
        return [_uuid5_text(d.hex()) for d in digests]
    raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 20)[:, :16]
    nibbles = np.empty((len(digests), 32), dtype=np.uint8)
    np.right_shift(raw, 4, out=nibbles[:, 0::2])
    np.bitwise_and(raw, 0x0F, out=nibbles[:, 1::2])
    nibbles[:, 12] = 5
    nibbles[:, 16] = (nibbles[:, 16] & 0x3) | 0x8
    text = np.full((len(digests), 36), _DASH, dtype=np.uint8)
    text[:, _UUID_DIGIT_AT] = _HEX_DIGITS[nibbles]
    blob = text.tobytes().decode("ascii")
    return [blob[c:c + 36] for c in range(0, len(blob), 36)]


class _Ids:
    """Per-device sequence numbers and id prefixes of the roadside devices (a bounded set)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.state: dict[tuple[str, str], list[Any]] = {}  # (topic, device) -> [prefix, next sequence number]

    def next(self, topic: str, device: str) -> str:
        entry = self.state.get((topic, device))
        if entry is None:
            entry = self.state[(topic, device)] = [id_prefix(self.seed, topic, device), 0]
        n = entry[1]
        entry[1] = n + 1
        return event_id(entry[0], n)


# -- the roads as arrays --------------------------------------------------------------------------
class _RoadTables:
    """Every route of the network laid end to end on one "global km" axis (route r occupies
    [offset_r, offset_r + length_r], with a gap to the next), so one ``searchsorted`` finds the
    polyline segment, the leg and the next camera of every vehicle, whatever route each is on."""

    GAP_KM = 10.0

    def __init__(self, network: RoadNetwork, cameras: Sequence[Camera]):
        names = network.route_names
        self.route_index = {name: r for r, name in enumerate(names)}
        self.route_cameras: dict[str, tuple[tuple[float, Camera], ...]] = {}
        offset, length, first_bearing, seg_lo, seg_hi, leg_lo, leg_hi, cam_lo = ([] for _ in range(8))
        lat: list[float] = []
        lon: list[float] = []
        chain: list[float] = []
        leg_start: list[float] = []
        leg_free: list[float] = []
        leg_depth: list[float] = []
        leg_sigma: list[float] = []
        self.leg_info: list[tuple[str, str, float]] = []  # road, edge id, GPS accuracy reported
        cam_km: list[float] = []
        self.cam_objects: list[Camera | None] = []
        self.edge_legs: dict[str, list[tuple[float, Any]]] = {}  # edge id -> (route offset, leg) per route
        base = 0.0
        for r, name in enumerate(names):
            route = network.route(name)
            offset.append(base)
            length.append(route.length_km)
            first_bearing.append(route.position(0.0)[1])
            seg_lo.append(len(lat))
            lat.extend(p[0] for p in route.points)
            lon.extend(p[1] for p in route.points)
            chain.extend(base + c for c in route.chainage_km)
            seg_hi.append(len(lat) - 2)
            leg_lo.append(len(leg_start))
            for leg in route.legs:
                edge = leg.edge
                leg_start.append(base + leg.start_km)
                leg_free.append(edge.speed_limit_kmh * FREE_FLOW_SHARE[edge.road_class])
                leg_depth.append(RUSH_HOUR_DEPTH[edge.road_class])
                sigma = GPS_SIGMA_M[edge.road_class]
                leg_sigma.append(sigma)
                self.leg_info.append((edge.road, edge.id, round(sigma * 1.5, 1)))
                self.edge_legs.setdefault(edge.id, []).append((base, leg))
            leg_hi.append(len(leg_start) - 1)
            placed = on_route(route, ((c.edge_id, c.edge_km, c) for c in cameras))
            self.route_cameras[name] = tuple(placed)
            cam_lo.append(len(cam_km))
            cam_km.extend(base + km for km, _ in placed)
            self.cam_objects.extend(c for _, c in placed)
            cam_km.append(math.inf)  # sentinel: no camera after the last one
            self.cam_objects.append(None)
            base += route.length_km + self.GAP_KM
        self.offset, self.length, self.first_bearing = (np.array(a) for a in (offset, length, first_bearing))
        self.seg_lo, self.seg_hi, self.leg_lo, self.leg_hi, self.cam_lo = (
            np.array(a, dtype=np.int64) for a in (seg_lo, seg_hi, leg_lo, leg_hi, cam_lo))
        self.lat, self.lon, self.chain = np.array(lat), np.array(lon), np.array(chain)
        span = np.diff(self.chain, append=self.chain[-1])
        self.dlat = np.diff(self.lat, append=self.lat[-1])
        self.dlon = np.diff(self.lon, append=self.lon[-1])
        self.inv_span = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
        self.leg_start, self.leg_free, self.leg_depth, self.leg_sigma = (
            np.array(a) for a in (leg_start, leg_free, leg_depth, leg_sigma))
        self.cam_km = np.array(cam_km)

    def zones(self, incident: Incident) -> list[tuple[float, float, float]]:
        """Where an incident slows traffic, on the global axis: (from km, to km, speed) on each route through it."""
        queue, speed = incident.queue_km, incident.speed_kmh
        return [(base + leg.route_km(incident.edge_km) - queue, base + leg.route_km(incident.edge_km) + 0.3, speed)
                for base, leg in self.edge_legs.get(incident.edge_id, [])]


# rows of the fleet's float and int state arrays
_KM, _SPEED, _FUEL, _HEADING, _LAST_LAT, _LAST_LON, _DRIVER, _MAX_KMH, _FUEL_PER_KM, _ODOMETER0, _LENGTH, \
    _OFFSET, _ERR_N, _ERR_E = range(14)
_NF = 14
_ROUTE, _SEG_LO, _SEG_HI, _LEG_LO, _LEG_HI, _CAM, _TICKS = range(7)
_NI = 7
_DEG_PER_M = 180.0 / math.pi / (EARTH_RADIUS_KM * 1000.0)
#: The draw that starts a vehicle's GPS error (a tick number no vehicle reaches).
_FIRST_ERROR_DRAW = 2**62
#: Ticks of noise drawn at once for the whole fleet: a small fleet's tick then costs no hashing at all.
_NOISE_BLOCK = 32
#: Rows of a tick's report arrays and their decimals: latitude, longitude (6), speed (2), direction (1), odometer, fuel (2).
_REPORT_SCALE = np.array([1e6, 1e6, 1e2, 1e1, 1e2, 1e2])[:, None]


class _Fleet:
    """The vehicles on the road: one column each in ``f`` (floats) and ``i`` (ints), with their
    device ids, static fields and id prefixes alongside, kept in device-id order, which is the order
    their events go out in. Joining and leaving happen a few times an hour; every tick is arrays."""

    def __init__(self, seed: int, roads: _RoadTables):
        self.seed = seed
        self.roads = roads
        self.f = np.zeros((_NF, 0))
        self.i = np.zeros((_NI, 0), dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.uint64)
        #: each vehicle's draws for the ticks of the current block of _NOISE_BLOCK fleet ticks: (3, vehicles, block)
        self.noise = np.zeros((3, 0, _NOISE_BLOCK))
        self.devices: list[str] = []
        self.statics: list[tuple[str, str, int, str, str, str]] = []  # make, model, year, fuel, type, route
        self.telemetry_ids: list[bytes] = []  # id prefixes of each vehicle's vehicle_data ...
        self.fix_ids: list[bytes] = []  # ... and gps_data events

    @property
    def size(self) -> int:
        return len(self.devices)

    def join(self, vehicles: list[Vehicle], k: int) -> None:
        """Put vehicles on the road at fleet tick ``k`` (their own tick 0)."""
        roads = self.roads
        r = np.array([roads.route_index[v.route.name] for v in vehicles], dtype=np.int64)
        f = np.zeros((_NF, len(vehicles)))
        f[_FUEL] = [v.fuel0 for v in vehicles]
        f[_LAST_LAT] = roads.lat[roads.seg_lo[r]]
        f[_LAST_LON] = roads.lon[roads.seg_lo[r]]
        f[_DRIVER] = [v.driver for v in vehicles]
        f[_MAX_KMH] = [v.profile.max_kmh for v in vehicles]
        f[_FUEL_PER_KM] = [v.profile.consumption / v.profile.capacity for v in vehicles]  # % per km at 80 km/h
        f[_ODOMETER0] = [v.odometer0 for v in vehicles]
        f[_LENGTH] = roads.length[r]
        f[_OFFSET] = roads.offset[r]
        i = np.zeros((_NI, len(vehicles)), dtype=np.int64)
        i[_ROUTE], i[_SEG_LO], i[_SEG_HI] = r, roads.seg_lo[r], roads.seg_hi[r]
        i[_LEG_LO], i[_LEG_HI], i[_CAM] = roads.leg_lo[r], roads.leg_hi[r], roads.cam_lo[r]
        keys = noise_keys(self.seed, np.array([v.serial for v in vehicles], dtype=np.int64))
        f[_HEADING] = roads.first_bearing[r]  # the route's first stretch until it moves
        f[_ERR_N], f[_ERR_E], _ = tick_normals(keys, np.full(len(vehicles), _FIRST_ERROR_DRAW))  # stationary start
        self.f = np.concatenate([self.f, f], axis=1)
        self.i = np.concatenate([self.i, i], axis=1)
        self.keys = np.concatenate([self.keys, keys])
        self.noise = np.concatenate([self.noise, self.draw_noise(keys, np.zeros(len(vehicles), dtype=np.int64), k)],
                                    axis=1)
        tail = len(self.devices)
        for v in vehicles:
            p = v.profile
            self.devices.append(v.device)
            self.statics.append((p.make, p.model, v.year, p.fuel, p.vehicle_type, v.route.name))
            self.telemetry_ids.append(id_prefix(self.seed, "vehicle_data", v.device))
            self.fix_ids.append(id_prefix(self.seed, "gps_data", v.device))
        if any(a > b for a, b in zip(self.devices[max(0, tail - 1):], self.devices[max(1, tail):])):
            self.reorder(sorted(range(len(self.devices)), key=self.devices.__getitem__))

    @staticmethod
    def draw_noise(keys: np.ndarray, ticks: np.ndarray, k: int) -> np.ndarray:
        """The draws of vehicles now at their own ``ticks`` for the rest of fleet tick ``k``'s block and what
        precedes it in the block (never used): each vehicle's draws stay a function of its own tick only."""
        column = k % _NOISE_BLOCK
        own = ticks[:, None] + (np.arange(_NOISE_BLOCK) - column)[None, :]
        return np.stack(tick_normals(np.broadcast_to(keys[:, None], own.shape), np.maximum(own, 0)))

    def noise_at(self, k: int) -> np.ndarray:
        """(north, east, jitter) draws of every vehicle for fleet tick ``k``, from the block (drawn at its start)."""
        column = k % _NOISE_BLOCK
        if column == 0:
            self.noise = self.draw_noise(self.keys, self.i[_TICKS], k)
        return self.noise[:, :, column]

    def reorder(self, order: list[int]) -> None:
        """Take the columns in this order (a permutation, or the vehicles to keep)."""
        index = np.array(order, dtype=np.int64)
        self.f, self.i, self.keys = self.f[:, index], self.i[:, index], self.keys[index]
        self.noise = self.noise[:, index]
        self.devices = [self.devices[j] for j in order]
        self.statics = [self.statics[j] for j in order]
        self.telemetry_ids = [self.telemetry_ids[j] for j in order]
        self.fix_ids = [self.fix_ids[j] for j in order]


# -- the run --------------------------------------------------------------------------------------
@dataclass
class RunState:
    """Where a run of :meth:`FleetSimulation.events` has got to: what a live view shows, and how one
    can see that vehicles which arrived are no longer held."""

    clock: datetime | None = None  # the simulated time of the last tick
    departed: int = 0
    arrived: int = 0
    on_road: int = 0


class FleetSimulation:
    """One run of the corridor: the fleet, the roadside sensors and the incidents, for given params.

    ``plan`` replaces the fleet of ``vehicles`` by one vehicle per (departure, route name) entry,
    in that order (vehicle-001 is the first entry); everything else about each vehicle is drawn
    from the seed as for any fleet. ``incidents`` replaces the seeded incident process by a list.
    With ``departure_rate_per_hour`` > 0 more vehicles keep leaving after the planned ones, and with
    ``duration_seconds`` 0 the run is then endless: :meth:`events` never ends, its caller stops it.
    """

    def __init__(self, cfg: Params, network: RoadNetwork | None = None, incidents: list[Incident] | None = None,
                 plan: Plan | None = None):
        self.cfg = cfg
        self.network = network or load_network()
        self.weights = route_weights(cfg.routes)
        self.cameras = place_cameras(self.network)
        self.stations = place_stations(self.network)
        self.roads = _RoadTables(self.network, self.cameras)
        self.weather = WeatherField(cfg.start_time, self.network.nodes["london"].point)
        self.plan = self._check_plan(plan) if plan is not None else self._spaced_plan()
        self.vehicles: list[Vehicle] = list(islice(self._all_vehicles(), len(self.plan)))
        self.open_ended = cfg.departure_rate_per_hour > 0
        start = cfg.start_time
        last = max((v.depart for v in self.vehicles), default=start)
        longest = max((v.route.length_km for v in self.vehicles),
                      default=max(self.network.route(r).length_km for r in self.weights))
        #: how long a planned fleet takes at worst: what its incidents are drawn for when the run has no set end
        self.window = max(last - start, timedelta(0)) + timedelta(hours=longest / _SLOWEST_PLANNED_KMH)
        #: the run's known end (None for an endless one)
        self.stop = start + timedelta(seconds=cfg.duration_seconds) if cfg.duration_seconds else None
        self.horizon = self.stop if self.stop is not None else (None if self.open_ended else start + self.window)
        self._given_incidents = sorted(incidents, key=lambda i: (i.start, i.incident_id)) if incidents is not None else None
        self._incidents: list[Incident] | None = self._given_incidents
        self._extent: tuple[float, float] | None = None
        #: progress of the latest :meth:`events` run
        self.state = RunState()

    # -- who drives -----------------------------------------------------------------------------
    def _spaced_plan(self) -> list[tuple[datetime, str]]:
        spacing = timedelta(seconds=self.cfg.departure_spacing_seconds)
        routes = assign_routes(self.weights, self.cfg.vehicles)
        return [(self.cfg.start_time + spacing * n, name) for n, name in enumerate(routes)]

    def _check_plan(self, plan: Plan) -> list[tuple[datetime, str]]:
        """A plan names at least one vehicle, each leaving at a time of the run on a known route."""
        checked = []
        for n, (depart, route_name) in enumerate(plan):
            if not isinstance(depart, datetime) or depart.tzinfo is None:
                raise ValueError(f"plan entry {n}: the departure must be a datetime with a UTC offset, got {depart!r}")
            if depart < self.cfg.start_time:
                raise ValueError(f"plan entry {n}: departs at {depart.isoformat()}, before the run starts "
                                 f"({self.cfg.start_time.isoformat()})")
            self.network.route(route_name)  # an unknown route names itself
            checked.append((depart, route_name))
        if not checked:
            raise ValueError("a plan needs at least one vehicle")
        return checked

    def _all_vehicles(self) -> Iterator[Vehicle]:
        """Every vehicle of the run in device order: the planned ones, then (with a departure rate) an
        endless Poisson stream of departures after the last planned one. Drawn afresh on each call."""
        cfg = self.cfg
        fleet_rng = random.Random(f"{cfg.seed}/fleet")
        departures_rng = random.Random(f"{cfg.seed}/departures")
        routes = cycle_routes(self.weights)
        per_second = cfg.departure_rate_per_hour / 3600
        last = max((depart for depart, _ in self.plan), default=cfg.start_time)
        for serial in count():
            cycled = next(routes)
            if serial < len(self.plan):
                depart, route_name = self.plan[serial]
            elif per_second > 0:
                last += timedelta(seconds=departures_rng.expovariate(per_second))
                depart, route_name = last, cycled
            else:
                return
            yield self._draw_vehicle(serial, fleet_rng, depart, route_name)

    def _draw_vehicle(self, serial: int, fleet_rng: random.Random, depart: datetime, route_name: str) -> Vehicle:
        rng = random.Random(f"{self.cfg.seed}/vehicle/{serial}")
        profile = fleet_rng.choices(PROFILES, cum_weights=_PROFILE_CUM)[0]
        route = self.network.route(route_name)
        year = min(2026, 2026 - int(abs(rng.gauss(0, 5))))
        driver = min(1.08, max(0.88, rng.gauss(0.98, 0.04)))
        odometer0 = round(rng.uniform(3_000, 140_000), 1)
        fuel0 = rng.uniform(55, 98)
        return Vehicle(f"vehicle-{serial + 1:03d}", profile, year, route, depart, driver, odometer0, fuel0,
                       self.roads.route_cameras[route_name], serial)

    def departures(self) -> Iterator[Vehicle]:
        """Vehicles in the order they leave (endless with a departure rate): what :meth:`events` drives."""
        stream = self._all_vehicles()
        yield from sorted(islice(stream, len(self.plan)), key=lambda v: (v.depart, v.serial))
        yield from stream

    # -- incidents ------------------------------------------------------------------------------
    @property
    def incidents(self) -> list[Incident]:
        """The run's incidents: all of them when the run has an end (a set duration, or the planned fleet's
        ``window``); for an endless run, those of its first ``window``, a preview."""
        if self._incidents is None:
            if self.horizon is not None:
                self._incidents = plan_incidents(self.cfg, self.network, self.horizon - self.cfg.start_time)
            else:
                end = self.cfg.start_time + self.window
                self._incidents = list(takewhile(lambda i: i.start <= end, incident_process(self.cfg, self.network)))
        return self._incidents

    def _incident_stream(self) -> Iterator[Incident]:
        """What a run reports: the given incidents, those of the horizon, or (endless) the whole process."""
        if self._given_incidents is None and self.horizon is None:
            return incident_process(self.cfg, self.network)
        return iter(self.incidents)

    # -- tables for people ---------------------------------------------------------------------
    def fleet(self) -> pd.DataFrame:
        rows = [{"vehicle": v.device, "make": v.profile.make, "model": v.profile.model, "year": v.year,
                 "fuel": v.profile.fuel, "type": v.profile.vehicle_type, "route": v.route.name,
                 "route km": round(v.route.length_km, 1), "departs": v.depart.strftime("%H:%M")}
                for v in self.vehicles]
        return pd.DataFrame(rows, columns=["vehicle", "make", "model", "year", "fuel", "type", "route", "route km",
                                           "departs"]).set_index("vehicle")

    def incident_table(self) -> pd.DataFrame:
        rows = [{"incident": i.incident_id, "type": i.kind, "severity": i.severity, "road": i.road, "near": i.place,
                 "from": i.start.strftime("%H:%M"), "to": i.end.strftime("%H:%M")} for i in self.incidents]
        return pd.DataFrame(rows, columns=["incident", "type", "severity", "road", "near", "from", "to"]).set_index("incident")

    # -- the run ---------------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Every event of the run in event-time order (ties by topic, key, id), as it happens.

        A tick at ``now`` makes every event stamped up to ``now`` and camera passages up to one tick
        later; those wait for the next tick, so the stream stays in order. Each call starts afresh.
        """
        cfg = self.cfg
        start, stop = cfg.start_time, self.stop
        tick = timedelta(seconds=cfg.tick_seconds)
        last_stamp = iso(stop) if stop is not None else None
        last_tick = (stop - start) // tick if stop is not None else None
        departures = self.departures()
        leaving = next(departures, None)
        incidents = self._incident_stream()
        next_incident = next(incidents, None)
        resolving: list[tuple[datetime, str, Incident]] = []
        zones: dict[str, list[tuple[float, float, float]]] = {}
        weather_rng = random.Random(f"{cfg.seed}/weather")
        next_weather = start
        ids = _Ids(cfg.seed)
        fleet = _Fleet(cfg.seed, self.roads)
        carry: list[tuple[tuple[str, int, str, str], Event]] = []
        state = self.state = RunState()
        k = 0
        while True:
            now = start + tick * k
            joining = []
            while leaving is not None and leaving.depart <= now:
                joining.append(leaving)
                leaving = next(departures, None)
            if joining:
                fleet.join(joining, k)
                state.departed += len(joining)
            minors = carry
            while next_weather <= now:
                minors.extend(self._weather_reports(next_weather, weather_rng, ids))
                next_weather += WEATHER_PERIOD
            while True:  # incident reports in time order, Active and Resolved interleaved
                opens = next_incident.start if next_incident is not None else None
                closes = resolving[0][0] if resolving else None
                if closes is not None and closes <= now and (opens is None or closes < opens):
                    _, incident_id, incident = heapq.heappop(resolving)
                    zones.pop(incident_id, None)
                    minors.append(self._incident_report(incident, "Resolved", closes, ids))
                elif opens is not None and opens <= now:
                    incident = next_incident
                    heapq.heappush(resolving, (incident.end, incident.incident_id, incident))
                    zones[incident.incident_id] = self.roads.zones(incident)
                    minors.append(self._incident_report(incident, "Active", opens, ids))
                    next_incident = next(incidents, None)
                else:
                    break
            stamp = iso(now)
            if fleet.size:
                telemetry, fixes = self._drive(fleet, k, now, stamp, tick,
                                               [z for zs in zones.values() for z in zs], minors, ids)
            else:
                telemetry = fixes = []
            state.clock, state.on_road, state.arrived = now, fleet.size, state.departed - fleet.size
            if last_tick is not None:
                done = k >= last_tick  # the next tick would be past the end: a set duration runs to it
            else:
                done = not self.open_ended and leaving is None and not fleet.size  # until the fleet has arrived
            if minors:
                minors.sort(key=itemgetter(0))
                before = [e for key, e in minors if key[0] < stamp]
                same = [e for key, e in minors if key[0] == stamp]
                carry = [(key, e) for key, e in minors if key[0] > stamp]
            else:
                before, same, carry = [], [], []
            if done:
                tail = before + telemetry + fixes + same + [e for _, e in carry]
                yield from (e for e in tail if last_stamp is None or e.value["timestamp"] <= last_stamp)
                return
            yield from before
            yield from telemetry
            yield from fixes
            yield from same
            k += 1
            if not fleet.size and not carry:  # nobody on the road: skip to the tick of the next thing to happen
                due = [t for t in (leaving.depart if leaving is not None else None, next_weather, next_incident.start
                                   if next_incident is not None else None, resolving[0][0] if resolving else None)
                       if t is not None]
                ahead = -((start - min(due)) // tick)  # the first tick at or after it
                k = max(k, min(ahead, last_tick) if last_tick is not None else ahead)

    def _drive(self, fleet: _Fleet, k: int, now: datetime, stamp: str, tick: timedelta,
               zones: list[tuple[float, float, float]], minors: list, ids: _Ids) -> tuple[list[Event], list[Event]]:
        """Report where every vehicle is at ``now``, then drive the fleet for one tick. Camera passages
        go to ``minors``; vehicles that have arrived report once more and leave the fleet.

        Every line is an array operation over the fleet; their number, not the fleet size, is what a
        tick of a small fleet costs, so they are few (no ``np.clip`` or ``np.round``, slow on small arrays).
        """
        roads, f, i = self.roads, fleet.f, fleet.i
        n = fleet.size
        dt = tick.total_seconds()
        km, speed, off, length = f[_KM].copy(), f[_SPEED].copy(), f[_OFFSET], f[_LENGTH]
        ticks = i[_TICKS]
        # where it is: the point km along its route's polyline
        g = km + off
        seg = np.minimum(np.maximum(np.searchsorted(roads.chain, g, side="right") - 1, i[_SEG_LO]), i[_SEG_HI])
        t = (g - roads.chain[seg]) * roads.inv_span[seg]
        lat = roads.lat[seg] + roads.dlat[seg] * t
        lon = roads.lon[seg] + roads.dlon[seg] * t
        # the bearing of its motion since the last fix (a few metres to a few hundred: a flat chord is exact
        # to far better than the 0.1 degree reported); kept while it stands still
        cos_lat = np.cos(np.radians(lat))
        dlat, dlon = lat - f[_LAST_LAT], lon - f[_LAST_LON]
        bearing = np.degrees(np.arctan2(dlon * cos_lat, dlat)) % 360.0
        np.copyto(f[_HEADING], bearing, where=(dlat != 0.0) | (dlon != 0.0))
        # the fix: the true point plus a GPS error that drifts (first-order Gauss-Markov, per axis)
        # the leg it is on, and the one at its braking distance ahead (which it slows for already)
        ahead = np.minimum(km + speed * speed * (1 / (3.6 * 3.6 * 2 * BRAKING_MS2 * 1000)) + 0.2, length) + off
        legs = np.searchsorted(roads.leg_start, np.concatenate((g, ahead)).reshape(2, n), side="right") - 1
        legs = np.minimum(np.maximum(legs, i[_LEG_LO]), i[_LEG_HI])
        leg = legs[0]
        sigma = roads.leg_sigma[leg] * _DEG_PER_M
        north, east, jitter = fleet.noise_at(k)
        rho = math.exp(-dt / GPS_CORRELATION_S)
        keep = math.sqrt(1.0 - rho * rho)
        err_n = rho * f[_ERR_N] + keep * north
        err_e = rho * f[_ERR_E] + keep * east
        report = np.empty((6, n))
        np.add(lat, sigma * err_n, out=report[0])
        np.add(lon, sigma * err_e / cos_lat, out=report[1])
        report[2] = speed
        report[3] = f[_HEADING]
        np.add(f[_ODOMETER0], km, out=report[4])
        np.maximum(f[_FUEL], 0.0, out=report[5])
        report *= _REPORT_SCALE  # numpy's own rounding to decimals, without its per-call overhead
        np.rint(report, out=report)
        report /= _REPORT_SCALE
        rows = report.tolist()
        # drive: the slowest of here and the braking distance ahead, eased by rush hour, rain and queues
        arrived = km >= length
        free = np.minimum(roads.leg_free[legs], f[_MAX_KMH]) * (1 - roads.leg_depth[legs] * rush_hour(now))
        target = np.minimum(free[0], free[1])
        target *= f[_DRIVER]
        if self._rain_on_corridor(now):
            target *= self.weather.speed_factors(lat, lon, now)
        for lo, hi, queue_kmh in zones:
            queued = ((g >= lo) & (g <= hi)) | ((ahead >= lo) & (ahead <= hi))
            if np.count_nonzero(queued):
                np.minimum(target, queue_kmh, out=target, where=queued)
        target += 1.5 * jitter
        change = np.minimum(np.maximum(target - speed, -BRAKING_MS2 * 3.6 * dt), ACCELERATION_MS2 * 3.6 * dt)
        new_speed = np.maximum(speed + change, 0.0)  # target < 0 (jitter at a standstill) only brakes to 0
        step = (speed + new_speed) * (dt / 7200.0)
        leaving = np.count_nonzero(arrived)
        if leaving:
            step[arrived] = 0.0
        # cameras passed during the step (rarely more than one a tick, but any number is handled)
        reach = g + step
        cam = i[_CAM]
        hit = roads.cam_km[cam] <= reach
        while np.count_nonzero(hit):
            for j in np.flatnonzero(hit).tolist():
                share = (roads.cam_km[cam[j]] - g[j]) / step[j]
                camera = roads.cam_objects[cam[j]]
                minors.append(self._camera_event(camera, fleet.devices[j], now + tick * share,
                                                 float(speed[j] + change[j] * share), ids))
            cam[hit] += 1
            hit = roads.cam_km[cam] <= reach
        # fuel (or charge) per km: least near 80 km/h, more in stop-go traffic and at motorway speed
        average = (speed + new_speed) * 0.5 - 80.0
        f[_FUEL] -= f[_FUEL_PER_KM] * (1 + 0.00012 * average * average) * step
        np.minimum(length, km + step, out=f[_KM])
        f[_SPEED] = new_speed
        f[_SPEED][f[_KM] >= length] = 0.0
        f[_LAST_LAT], f[_LAST_LON], f[_ERR_N], f[_ERR_E] = lat, lon, err_n, err_e
        telemetry, fixes = self._reports(fleet, stamp, ticks.tolist(), rows, leg.tolist())
        ticks += 1
        if leaving:
            fleet.reorder(np.flatnonzero(~arrived).tolist())
        return telemetry, fixes

    def _rain_on_corridor(self, at: datetime) -> bool:
        """Whether the rain band is anywhere near the roads (beyond 150 km behind or 50 km ahead of the
        front it is below 1e-8 mm/h, which would change no speed)."""
        lo, hi = self._corridor_extent
        front = self.weather.front_km + self.weather.speed_kmh * (at - self.weather.start).total_seconds() / 3600
        return hi - front >= -150.0 and lo - front <= 50.0

    @property
    def _corridor_extent(self) -> tuple[float, float]:
        """Least and greatest distance of the network's points along the front's heading (km from its origin)."""
        if self._extent is None:
            along = [self.weather.distance_km(p, self.weather.start) + self.weather.front_km
                     for e in self.network.edges.values() for p in e.points]
            self._extent = (min(along) - 1.0, max(along) + 1.0)
        return self._extent

    def _reports(self, fleet: _Fleet, stamp: str, ticks: list[int], rows: list[list[float]],
                 legs: list[int]) -> tuple[list[Event], list[Event]]:
        """The vehicle_data and gps_data events of one tick, in device order: the hot loop, kept plain."""
        version = self.cfg.schema_version
        with_edge = version >= 2
        leg_info = self.roads.leg_info
        make_event = tuple.__new__
        sha1 = _sha1
        seqs = [b"%d" % n for n in ticks]
        ids = uuid5_texts([sha1(p + q).digest() for p, q in zip(fleet.telemetry_ids, seqs)]
                          + [sha1(p + q).digest() for p, q in zip(fleet.fix_ids, seqs)])
        telemetry: list[Event] = []
        fixes: list[Event] = []
        add_telemetry, add_fix = telemetry.append, fixes.append
        for device, telemetry_id, fix_id, la, lo, sp, di, od, fu, lg, static in zip(
                fleet.devices, ids, islice(ids, fleet.size, None), *rows, legs, fleet.statics):
            road, edge_id, accuracy = leg_info[lg]
            make, model, year, fuel_type, vehicle_type, route = static
            value = {"id": telemetry_id, "schemaVersion": version, "deviceId": device, "timestamp": stamp,
                     "latitude": la, "longitude": lo, "speed": sp, "direction": di, "make": make, "model": model,
                     "year": year, "fuelType": fuel_type, "odometer": od, "fuelLevel": fu, "route": route, "road": road}
            if with_edge:
                value["edgeId"] = edge_id
            add_telemetry(make_event(Event, ("vehicle_data", device, value)))
            add_fix(make_event(Event, ("gps_data", device, {
                "id": fix_id, "schemaVersion": version, "deviceId": device, "timestamp": stamp, "latitude": la,
                "longitude": lo, "speed": sp, "direction": di, "vehicleType": vehicle_type, "accuracy": accuracy})))
        return telemetry, fixes

    def _base(self, ids: _Ids, topic: str, device: str, at: datetime, where: LatLon) -> dict[str, Any]:
        return {
            "id": ids.next(topic, device),
            "schemaVersion": self.cfg.schema_version,
            "deviceId": device,
            "timestamp": iso(at),
            "latitude": round(where[0], 6),
            "longitude": round(where[1], 6),
        }

    @staticmethod
    def _keyed(event: Event) -> tuple[tuple[str, int, str, str], Event]:
        return _order(event), event

    def _camera_event(self, camera: Camera, vehicle: str, at: datetime, speed: float,
                      ids: _Ids) -> tuple[tuple[str, int, str, str], Event]:
        value = self._base(ids, "traffic_data", camera.device, at, camera.point)
        value.update(cameraId=camera.camera_id, road=camera.road, vehicleId=vehicle, speed=round(max(0.0, speed), 1),
                     snapshot=f"snapshots/{camera.camera_id}/{at:%Y/%m/%d/%H%M%S}-{at.microsecond // 1000:03d}-{vehicle}.jpg")
        return self._keyed(Event("traffic_data", camera.device, value))

    def _weather_reports(self, at: datetime, rng: random.Random,
                         ids: _Ids) -> list[tuple[tuple[str, int, str, str], Event]]:
        events = []
        for station in self.stations:
            field_ = self.weather.sample(station.point, at, station.urban)
            value = self._base(ids, "weather_data", station.device, at, station.point)
            value.update(
                stationName=station.name,
                temperature=round(float(field_["temperature"]) + rng.gauss(0, 0.2), 1),
                weatherCondition=field_["weatherCondition"],
                precipitation=round(max(0.0, float(field_["precipitation"]) + rng.gauss(0, 0.05)), 2),
                windSpeed=round(max(0.0, float(field_["windSpeed"]) + rng.gauss(0, 1.5)), 1),
                humidity=round(min(100.0, max(0.0, float(field_["humidity"]) + rng.gauss(0, 1.0))), 1),
                airQualityIndex=round(max(0.0, float(field_["airQualityIndex"]) + rng.gauss(0, 1.5)), 1),
            )
            events.append(self._keyed(Event("weather_data", station.device, value)))
        return events

    def _incident_report(self, incident: Incident, status: str, at: datetime,
                         ids: _Ids) -> tuple[tuple[str, int, str, str], Event]:
        value = self._base(ids, "emergency_data", "traffic-control", at, incident.point)
        value.update(incidentId=incident.incident_id, type=incident.kind, severity=incident.severity, status=status,
                     road=incident.road, description=f"{incident.severity} {incident.kind.lower()} on the "
                     f"{incident.road} near {incident.place}")
        return self._keyed(Event("emergency_data", "traffic-control", value))


_PROFILE_CUM = list(accumulate(p.share for p in PROFILES))


# -- entry points ---------------------------------------------------------------------------------
def simulate_journey(cfg: Params) -> list[Event]:
    """All events of one run, in event-time order (a bounded run: an endless one never returns)."""
    if cfg.departure_rate_per_hour > 0 and not cfg.duration_seconds:
        raise ValueError("an open-ended fleet (departure_rate_per_hour > 0) without duration_seconds is endless: "
                         "iterate FleetSimulation(cfg).events() instead of making a list")
    return list(FleetSimulation(cfg).events())


def pace(events: Iterable[Event], speedup: float) -> Iterator[Event]:
    """Release events at the simulated clock's pace divided by ``speedup`` (0: as fast as possible)."""
    if speedup <= 0:
        yield from events
        return
    wall0 = sim0 = None
    stamp, at = "", None
    for event in events:
        if event.value["timestamp"] != stamp:  # events come in runs of one stamp: parse each once
            stamp = event.value["timestamp"]
            at = parse_iso(stamp)
        if wall0 is None:
            wall0, sim0 = time.monotonic(), at
        wait = (at - sim0).total_seconds() / speedup - (time.monotonic() - wall0)
        if wait > 0:
            time.sleep(wait)
        yield event


def write_jsonl(events: Iterable[Event], out: Path) -> Counter[str]:
    """Events as JSON Lines ({"topic", "key", "value"} per line), as fast as they come; '-' is stdout."""
    counts: Counter[str] = Counter()
    handle = sys.stdout.buffer if str(out) == "-" else open(out, "wb")  # noqa: SIM115 - closed below
    try:
        for event in tqdm(events, desc="simulating", unit="event", mininterval=1.0, disable=str(out) == "-"):
            handle.write(orjson.dumps({"topic": event.topic, "key": event.key, "value": event.value}) + b"\n")
            counts[event.topic] += 1
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    return counts


def examples(events: list[Event]) -> str:
    """The first event of each topic as it goes on the wire: key and JSON value."""
    lines = []
    for topic in TOPICS:
        first = next((e for e in events if e.topic == topic), None)
        if first is not None:
            lines.append(f"{topic}  key={first.key}\n{orjson.dumps(first.value, option=orjson.OPT_INDENT_2).decode()}")
    return "\n\n".join(lines)


def prepare_run(cfg: Params) -> pd.DataFrame:
    """Topics ready for this run; with reset_run, empty topics and no lake or checkpoints left over."""
    from smartcity.platform import kafka
    from smartcity.stream import lake
    from smartcity.present import report

    topics = kafka.prepare_topics(cfg)  # first: a reset on a broker the lab does not own fails before anything goes
    if cfg.reset_run:
        lake.reset(cfg)
        if cfg.catalog_engine == "glue":  # no Glue partition may point at files of the lake just deleted
            from smartcity.catalog.crawler import GlueCatalog

            GlueCatalog(cfg).reset()
        report.clear_counts(cfg)
    return topics


def run_events(simulation: FleetSimulation, preview: timedelta = timedelta(hours=1)) -> list[Event]:
    """The run as a list for the notebook's tables: all of a bounded run; of an endless one (live
    mode, where the producer takes the events lazily) only the first ``preview`` of simulated time."""
    if simulation.horizon is not None:
        return list(simulation.events())
    end = iso(simulation.cfg.start_time + preview)
    return list(takewhile(lambda e: e.value["timestamp"] < end, simulation.events()))


def summarize(events: list[Event]) -> pd.DataFrame:
    """Events per topic with their devices and time span: what a run is about to produce."""
    rows = []
    for topic in TOPICS:
        mine = [e for e in events if e.topic == topic]
        rows.append({
            "topic": topic, "events": len(mine), "devices": len({e.key for e in mine}),
            "first": min((e.value["timestamp"] for e in mine), default=""),
            "last": max((e.value["timestamp"] for e in mine), default=""),
        })
    return pd.DataFrame(rows).set_index("topic")


def trips(events: Iterable[Event]) -> pd.DataFrame:
    """Per vehicle: route, departure, arrival, minutes and distance, from its own telemetry."""
    first: dict[str, dict] = {}
    last: dict[str, dict] = {}
    for event in events:
        if event.topic == "vehicle_data":
            first.setdefault(event.key, event.value)
            last[event.key] = event.value
    rows = []
    for device in sorted(first):
        a, b = first[device], last[device]
        minutes = (parse_iso(b["timestamp"]) - parse_iso(a["timestamp"])).total_seconds() / 60
        km = b["odometer"] - a["odometer"]
        rows.append({"vehicle": device, "route": a["route"], "departed": a["timestamp"][11:16],
                     "arrived": b["timestamp"][11:16], "minutes": round(minutes), "km": round(km, 1),
                     "avg km/h": round(km / minutes * 60, 1) if minutes else 0.0})
    return pd.DataFrame(rows).set_index("vehicle")
