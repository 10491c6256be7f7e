"""The driving model, vectorized: every vehicle on the road is a column of arrays, a tick is array operations.

Each tick, for the whole fleet at once (:func:`drive`): where each vehicle is on its route's
polyline, the GPS fix it reports (the true point plus a drifting receiver error), the speed it
aims for (the road's free-flow speed, slowed by the flow on its carriageway (:mod:`smartcity.fleet.traffic`:
the background traffic of the hour and the fleet's own vehicles), the rain where it is and the queues
at active incidents, for the slowest of here and its braking distance ahead), how far it gets with
bounded acceleration and braking, which cameras it passes, and the fuel (or charge) it burns.
The constants are in :mod:`smartcity.fleet.vehicles`; :mod:`smartcity.fleet.reference` does the
same for one vehicle at a time in plain Python, and the tests check that both agree.

The number of array operations, not the fleet size, is what a tick of a small fleet costs, so
they are few (no ``np.clip`` or ``np.round``, slow on small arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from smartcity.fleet.noise import id_prefix, noise_keys, tick_normals
from smartcity.fleet.roads import EARTH_RADIUS_KM, RoadNetwork
from smartcity.fleet.sensors import Camera, Incident
from smartcity.fleet.traffic import (
    PEAK_VC,
    background_vc,
    capacity_vph,
    carriageway,
    delay_factor,
    smoothed_flow,
)
from smartcity.fleet.vehicles import (
    ACCELERATION_MS2,
    BRAKING_MS2,
    ECONOMY_KMH,
    FREE_FLOW_SHARE,
    FUEL_CURVE_PER_KMH2,
    GPS_ACCURACY_SIGMAS,
    GPS_CORRELATION_S,
    GPS_SIGMA_M,
    KMH_PER_MS,
    LOOKAHEAD_MARGIN_KM,
    SPEED_JITTER_KMH,
    Vehicle,
    braking_km,
    on_route,
)

#: Degrees of latitude per metre.
DEG_PER_M = 180.0 / math.pi / (EARTH_RADIUS_KM * 1000.0)
SECONDS_PER_HOUR = 3600.0
#: Past an incident its queue clears within this distance (km).
QUEUE_CLEARS_KM = 0.3
#: The draw that starts a vehicle's GPS error (a tick number no vehicle reaches).
FIRST_ERROR_DRAW = 2**62
#: Ticks of noise drawn at once for the whole fleet: a small fleet's tick then costs no hashing at all.
NOISE_BLOCK = 32
#: Rows of a tick's report and their decimals: latitude, longitude (6), speed (2), direction (1), odometer, fuel (2).
REPORT_DECIMALS = (6, 6, 2, 1, 2, 2)
_REPORT_SCALE = np.array([10.0**d for d in REPORT_DECIMALS])[:, None]
#: An incident's slowed stretch on the global km axis: (from km, to km, speed km/h).
Zone = tuple[float, float, float]


@dataclass
class _Columns:
    """What :class:`RoadTables` collects route by route before turning it into arrays."""

    per_route: dict[str, list[Any]] = field(
        default_factory=lambda: {
            k: [] for k in ("offset", "length", "first_bearing", "seg_lo", "seg_hi", "leg_lo", "leg_hi", "cam_lo")
        }
    )
    per_point: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ("lat", "lon", "chain")})
    per_leg: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in ("leg_start", "leg_free", "leg_slot", "leg_sigma")}
    )
    #: per carriageway (an edge in one direction): its capacity (veh/h) and its background's peak
    #: volume-to-capacity ratio
    per_slot: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ("slot_capacity", "slot_peak_vc")})
    cam_km: list[float] = field(default_factory=list)


class RoadTables:
    """Every route of the network laid end to end on one "global km" axis (route r occupies
    [offset_r, offset_r + length_r], with a gap to the next), so one ``searchsorted`` finds the
    polyline segment, the leg and the next camera of every vehicle, whatever route each is on."""

    GAP_KM = 10.0

    def __init__(self, network: RoadNetwork, cameras: Sequence[Camera]):
        self.route_index = {name: r for r, name in enumerate(network.route_names)}
        self.route_cameras: dict[str, tuple[tuple[float, Camera], ...]] = {}
        self.leg_info: list[tuple[str, str, float]] = []  # road, edge id, GPS accuracy reported
        self.cam_objects: list[Camera | None] = []
        self.edge_legs: dict[str, list[tuple[float, Any]]] = {}  # edge id -> (route offset, leg) per route
        self.slots: dict[str, int] = {}  # carriageway (traffic.carriageway) -> its column in the slot_* arrays
        cols = _Columns()
        base = 0.0
        for name in network.route_names:
            base = self._add_route(cols, network, name, base, cameras)
        for key, values in cols.per_route.items():
            setattr(self, key, np.array(values, dtype=np.int64 if key.endswith(("_lo", "_hi")) else float))
        for key, values in (*cols.per_point.items(), *cols.per_leg.items(), *cols.per_slot.items()):
            setattr(self, key, np.array(values))
        self.leg_slot = self.leg_slot.astype(np.int64)
        self.cam_km = np.array(cols.cam_km)
        span = np.diff(self.chain, append=self.chain[-1])
        self.dlat = np.diff(self.lat, append=self.lat[-1])
        self.dlon = np.diff(self.lon, append=self.lon[-1])
        self.inv_span = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)

    def _add_route(
        self, cols: _Columns, network: RoadNetwork, name: str, base: float, cameras: Sequence[Camera]
    ) -> float:
        """Lay one route on the axis at ``base``; returns where the next one starts."""
        route, points, legs = network.route(name), cols.per_point, cols.per_leg
        for key, value in (
            ("offset", base),
            ("length", route.length_km),
            ("first_bearing", route.position(0.0)[1]),
            ("seg_lo", len(points["lat"])),
            ("leg_lo", len(legs["leg_start"])),
            ("cam_lo", len(cols.cam_km)),
        ):
            cols.per_route[key].append(value)
        points["lat"].extend(p[0] for p in route.points)
        points["lon"].extend(p[1] for p in route.points)
        points["chain"].extend(base + c for c in route.chainage_km)
        cols.per_route["seg_hi"].append(len(points["lat"]) - 2)
        for leg in route.legs:
            edge = leg.edge
            sigma = GPS_SIGMA_M[edge.road_class]
            legs["leg_start"].append(base + leg.start_km)
            legs["leg_free"].append(edge.speed_limit_kmh * FREE_FLOW_SHARE[edge.road_class])
            legs["leg_slot"].append(self._slot(cols, leg))
            legs["leg_sigma"].append(sigma)
            self.leg_info.append((edge.road, edge.id, round(sigma * GPS_ACCURACY_SIGMAS, 1)))
            self.edge_legs.setdefault(edge.id, []).append((base, leg))
        cols.per_route["leg_hi"].append(len(legs["leg_start"]) - 1)
        placed = on_route(route, ((c.edge_id, c.edge_km, c) for c in cameras))
        self.route_cameras[name] = tuple(placed)
        cols.cam_km.extend(base + km for km, _ in placed)
        self.cam_objects.extend(c for _, c in placed)
        cols.cam_km.append(math.inf)  # sentinel: no camera after the last one
        self.cam_objects.append(None)
        return base + route.length_km + self.GAP_KM

    def _slot(self, cols: _Columns, leg: Any) -> int:
        """The column of the leg's carriageway, added on first sight (routes share carriageways)."""
        key = carriageway(leg)
        if key not in self.slots:
            self.slots[key] = len(self.slots)
            road_class = leg.edge.road_class
            cols.per_slot["slot_capacity"].append(capacity_vph(road_class))
            cols.per_slot["slot_peak_vc"].append(PEAK_VC[road_class])
        return self.slots[key]

    def speed_factors(self, fleet_vph: np.ndarray, now: datetime) -> np.ndarray:
        """Each carriageway's share of its free-flow speed (:func:`smartcity.fleet.traffic.speed_factor`, all at
        once) with the background of ``now`` and the fleet's flows."""
        volume = background_vc(self.slot_peak_vc, now) * self.slot_capacity + fleet_vph
        return 1.0 / delay_factor(volume, self.slot_capacity)

    def zones(self, incident: Incident) -> list[Zone]:
        """Where an incident slows traffic, on the global axis: (from km, to km, speed) on each route through it."""
        queue, speed = incident.queue_km, incident.speed_kmh
        return [
            (
                base + leg.route_km(incident.edge_km) - queue,
                base + leg.route_km(incident.edge_km) + QUEUE_CLEARS_KM,
                speed,
            )
            for base, leg in self.edge_legs.get(incident.edge_id, [])
        ]


# rows of the fleet's float and int state arrays
_FLOAT_ROWS = (
    "km",
    "speed",
    "fuel",
    "heading",
    "last_lat",
    "last_lon",
    "driver",
    "max_kmh",
    "fuel_per_km",
    "odometer0",
    "length",
    "offset",
    "err_n",
    "err_e",
)
_INT_ROWS = ("route", "seg_lo", "seg_hi", "leg_lo", "leg_hi", "cam", "ticks", "slot")
_F = {name: n for n, name in enumerate(_FLOAT_ROWS)}
_I = {name: n for n, name in enumerate(_INT_ROWS)}


class FleetArrays:
    """The vehicles on the road: one column each in ``f`` (floats) and ``i`` (ints), with their
    device ids, static fields and id prefixes alongside, kept in device-id order, which is the order
    their events go out in. Joining and leaving happen a few times an hour; every tick is arrays.
    A row is read and written by its name (``fleet.row("km")``, a view)."""

    def __init__(self, seed: int, roads: RoadTables, vehicle_weight: float):
        self.seed = seed
        self.roads = roads
        self.vehicle_weight = vehicle_weight  # real vehicles each one stands for in the roads' flows
        self.flows = np.zeros(len(roads.slot_capacity))  # the fleet's flow on each carriageway (veh/h, weighted)
        self.flows_at: datetime | None = None  # when they were last updated
        self.f = np.zeros((len(_FLOAT_ROWS), 0))
        self.i = np.zeros((len(_INT_ROWS), 0), dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.uint64)
        #: each vehicle's draws for the ticks of the current block of NOISE_BLOCK fleet ticks: (3, vehicles, block)
        self.noise = np.zeros((3, 0, NOISE_BLOCK))
        self.devices: list[str] = []
        # make, model, year, fuel, type, route, advice group, advice id (the last two None without advice)
        self.statics: list[tuple[str, str, int, str, str, str, str | None, str | None]] = []
        self.telemetry_ids: list[bytes] = []  # id prefixes of each vehicle's vehicle_data ...
        self.fix_ids: list[bytes] = []  # ... and gps_data events

    @property
    def size(self) -> int:
        return len(self.devices)

    def row(self, name: str) -> np.ndarray:
        """One state row of every vehicle (a view: writing it writes the fleet)."""
        return self.f[_F[name]] if name in _F else self.i[_I[name]]

    def join(self, vehicles: list[Vehicle], k: int) -> None:
        """Put vehicles on the road at fleet tick ``k`` (their own tick 0)."""
        roads = self.roads
        r = np.array([roads.route_index[v.route.name] for v in vehicles], dtype=np.int64)
        keys = noise_keys(self.seed, np.array([v.serial for v in vehicles], dtype=np.int64))
        err_n, err_e, _ = tick_normals(keys, np.full(len(vehicles), FIRST_ERROR_DRAW))  # stationary start
        floats = {
            "fuel": [v.fuel0 for v in vehicles],
            "last_lat": roads.lat[roads.seg_lo[r]],
            "last_lon": roads.lon[roads.seg_lo[r]],
            "driver": [v.driver for v in vehicles],
            "max_kmh": [v.profile.max_kmh for v in vehicles],
            "fuel_per_km": [v.profile.consumption / v.profile.capacity for v in vehicles],  # % per km at 80 km/h
            "odometer0": [v.odometer0 for v in vehicles],
            "length": roads.length[r],
            "offset": roads.offset[r],
            "heading": roads.first_bearing[r],
            "err_n": err_n,
            "err_e": err_e,
        }  # the first stretch's bearing
        f = np.zeros((len(_FLOAT_ROWS), len(vehicles)))
        for name, values in floats.items():
            f[_F[name]] = values
        i = np.zeros((len(_INT_ROWS), len(vehicles)), dtype=np.int64)
        for name in ("seg_lo", "seg_hi", "leg_lo", "leg_hi"):
            i[_I[name]] = getattr(roads, name)[r]
        i[_I["route"]], i[_I["cam"]], i[_I["slot"]] = r, roads.cam_lo[r], -1  # on no carriageway yet
        self.f = np.concatenate([self.f, f], axis=1)
        self.i = np.concatenate([self.i, i], axis=1)
        self.keys = np.concatenate([self.keys, keys])
        self.noise = np.concatenate(
            [self.noise, self.draw_noise(keys, np.zeros(len(vehicles), dtype=np.int64), k)], axis=1
        )
        self._add_names(vehicles)

    def _add_names(self, vehicles: list[Vehicle]) -> None:
        tail = len(self.devices)
        for v in vehicles:
            p = v.profile
            self.devices.append(v.device)
            group, advice_id = v.advice or (None, None)
            self.statics.append((p.make, p.model, v.year, p.fuel, p.vehicle_type, v.route.name, group, advice_id))
            self.telemetry_ids.append(id_prefix(self.seed, "vehicle_data", v.device))
            self.fix_ids.append(id_prefix(self.seed, "gps_data", v.device))
        if any(a > b for a, b in zip(self.devices[max(0, tail - 1) :], self.devices[max(1, tail) :])):
            self.reorder(sorted(range(len(self.devices)), key=self.devices.__getitem__))

    @staticmethod
    def draw_noise(keys: np.ndarray, ticks: np.ndarray, k: int) -> np.ndarray:
        """The draws of vehicles now at their own ``ticks`` for the rest of fleet tick ``k``'s block and what
        precedes it in the block (never used): each vehicle's draws stay a function of its own tick only."""
        column = k % NOISE_BLOCK
        own = ticks[:, None] + (np.arange(NOISE_BLOCK) - column)[None, :]
        return np.stack(tick_normals(np.broadcast_to(keys[:, None], own.shape), np.maximum(own, 0)))

    def noise_at(self, k: int) -> np.ndarray:
        """(north, east, jitter) draws of every vehicle for fleet tick ``k``, from the block (drawn at its start)."""
        column = k % NOISE_BLOCK
        if column == 0:
            self.noise = self.draw_noise(self.keys, self.row("ticks"), k)
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


# -- one tick ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tick:
    """One step of the fleet's clock: its number, when it is, and how long it lasts."""

    k: int
    now: datetime
    seconds: float


@dataclass
class Moves:
    """What one tick of :func:`drive` did: the rows each vehicle reports (taken before it moved),
    the leg and own tick of each, the cameras passed, and who has arrived."""

    rows: list[list[float]]  # latitude, longitude, speed, direction, odometer, fuel of each vehicle
    legs: list[int]
    ticks: list[int]
    passages: list[tuple[int, Camera, float, float]]  # vehicle column, camera, share of the tick, speed km/h
    arrived: np.ndarray


@dataclass(frozen=True)
class _Where:
    g: np.ndarray  # position on the global km axis
    ahead: np.ndarray  # the point it slows for already: braking distance and a margin ahead
    lat: np.ndarray
    lon: np.ndarray
    cos_lat: np.ndarray


def _locate(roads: RoadTables, fleet: FleetArrays, km: np.ndarray, speed: np.ndarray) -> _Where:
    """Where every vehicle is: the point ``km`` along its route's polyline, and its look-ahead point."""
    off, length, i = fleet.row("offset"), fleet.row("length"), fleet.i
    g = km + off
    seg = np.minimum(np.maximum(np.searchsorted(roads.chain, g, side="right") - 1, i[_I["seg_lo"]]), i[_I["seg_hi"]])
    t = (g - roads.chain[seg]) * roads.inv_span[seg]
    lat = roads.lat[seg] + roads.dlat[seg] * t
    lon = roads.lon[seg] + roads.dlon[seg] * t
    ahead = np.minimum(km + braking_km(speed) + LOOKAHEAD_MARGIN_KM, length) + off
    return _Where(g, ahead, lat, lon, np.cos(np.radians(lat)))


def _update_heading(fleet: FleetArrays, at: _Where) -> None:
    """The bearing of its motion since the last fix (a few metres to a few hundred: a flat chord is exact to
    far better than the 0.1 degree reported); kept while it stands still."""
    dlat, dlon = at.lat - fleet.row("last_lat"), at.lon - fleet.row("last_lon")
    bearing = np.degrees(np.arctan2(dlon * at.cos_lat, dlat)) % 360.0
    np.copyto(fleet.row("heading"), bearing, where=(dlat != 0.0) | (dlon != 0.0))


def _legs(roads: RoadTables, fleet: FleetArrays, at: _Where) -> np.ndarray:
    """The leg each vehicle is on (row 0) and the one at its look-ahead point (row 1)."""
    legs = np.searchsorted(roads.leg_start, np.concatenate((at.g, at.ahead)).reshape(2, fleet.size), side="right") - 1
    return np.minimum(np.maximum(legs, fleet.i[_I["leg_lo"]]), fleet.i[_I["leg_hi"]])


def _fix(
    roads: RoadTables,
    fleet: FleetArrays,
    at: _Where,
    leg: np.ndarray,
    draws: np.ndarray,
    seconds: float,
    km: np.ndarray,
    speed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The report of each vehicle, rounded as it goes out, and its new GPS error (first-order Gauss-Markov)."""
    sigma = roads.leg_sigma[leg] * DEG_PER_M
    north, east = draws[0], draws[1]
    rho = math.exp(-seconds / GPS_CORRELATION_S)
    keep = math.sqrt(1.0 - rho * rho)
    err_n = rho * fleet.row("err_n") + keep * north
    err_e = rho * fleet.row("err_e") + keep * east
    report = np.empty((len(REPORT_DECIMALS), fleet.size))
    np.add(at.lat, sigma * err_n, out=report[0])
    np.add(at.lon, sigma * err_e / at.cos_lat, out=report[1])
    report[2] = speed
    report[3] = fleet.row("heading")
    np.add(fleet.row("odometer0"), km, out=report[4])
    np.maximum(fleet.row("fuel"), 0.0, out=report[5])
    report *= _REPORT_SCALE  # numpy's own rounding to decimals, without its per-call overhead
    np.rint(report, out=report)
    report /= _REPORT_SCALE
    return report, err_n, err_e


def _target(
    roads: RoadTables,
    fleet: FleetArrays,
    at: _Where,
    legs: np.ndarray,
    factors: np.ndarray,
    zones: list[Zone],
    rain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    jitter: np.ndarray,
) -> np.ndarray:
    """The speed each vehicle aims for: the slowest of here and ahead, slowed by the flows (``factors`` per
    carriageway), the rain and the queues."""
    free = np.minimum(roads.leg_free[legs], fleet.row("max_kmh")) * factors[roads.leg_slot[legs]]
    target = np.minimum(free[0], free[1])
    target *= fleet.row("driver")
    if rain is not None:
        target *= rain(at.lat, at.lon)
    for lo, hi, queue_kmh in zones:
        queued = ((at.g >= lo) & (at.g <= hi)) | ((at.ahead >= lo) & (at.ahead <= hi))
        if np.count_nonzero(queued):
            np.minimum(target, queue_kmh, out=target, where=queued)
    target += SPEED_JITTER_KMH * jitter
    return target


def _passages(
    roads: RoadTables, fleet: FleetArrays, g: np.ndarray, step: np.ndarray, speed: np.ndarray, change: np.ndarray
) -> list[tuple[int, Camera, float, float]]:
    """Cameras passed during the step (rarely more than one a tick, but any number is handled)."""
    reach = g + step
    cam = fleet.row("cam")
    passed = []
    hit = roads.cam_km[cam] <= reach
    while np.count_nonzero(hit):
        for j in np.flatnonzero(hit).tolist():
            share = (roads.cam_km[cam[j]] - g[j]) / step[j]
            passed.append((j, roads.cam_objects[cam[j]], share, float(speed[j] + change[j] * share)))
        cam[hit] += 1
        hit = roads.cam_km[cam] <= reach
    return passed


def _count_entries(fleet: FleetArrays, slots: np.ndarray, arrived: np.ndarray, tick: Tick) -> np.ndarray:
    """The fleet's flows after this tick: each vehicle now on another carriageway than at the last tick (or on
    its first) entered it; returns :attr:`FleetArrays.flows`."""
    entered = (slots != fleet.row("slot")) & ~arrived
    fleet.row("slot")[:] = slots
    since = tick.seconds if fleet.flows_at is None else (tick.now - fleet.flows_at).total_seconds()
    counts = np.bincount(slots[entered], minlength=len(fleet.flows)) * fleet.vehicle_weight
    fleet.flows = smoothed_flow(fleet.flows, counts, tick.seconds, since)
    fleet.flows_at = tick.now
    return fleet.flows


def drive(
    fleet: FleetArrays,
    tick: Tick,
    zones: list[Zone],
    rain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Moves:
    """Report where every vehicle is at ``tick.now``, then drive the fleet for one tick.

    ``zones`` are the active incidents' queues; ``rain(lat, lon)`` the speed factor of the rain
    where each vehicle is (None: dry everywhere). Vehicles that have arrived report once more and
    stay in the arrays with ``arrived`` set: the caller builds their last events, then drops them.
    """
    roads, dt = fleet.roads, tick.seconds
    km, speed, length = fleet.row("km").copy(), fleet.row("speed").copy(), fleet.row("length")
    at = _locate(roads, fleet, km, speed)
    _update_heading(fleet, at)
    legs = _legs(roads, fleet, at)
    draws = fleet.noise_at(tick.k)
    report, err_n, err_e = _fix(roads, fleet, at, legs[0], draws, dt, km, speed)
    arrived = km >= length
    factors = roads.speed_factors(_count_entries(fleet, roads.leg_slot[legs[0]], arrived, tick), tick.now)
    target = _target(roads, fleet, at, legs, factors, zones, rain, draws[2])
    change = np.minimum(np.maximum(target - speed, -BRAKING_MS2 * KMH_PER_MS * dt), ACCELERATION_MS2 * KMH_PER_MS * dt)
    new_speed = np.maximum(speed + change, 0.0)  # target < 0 (jitter at a standstill) only brakes to 0
    step = (speed + new_speed) * (dt / (2 * SECONDS_PER_HOUR))  # km: the mean speed over the tick
    if np.count_nonzero(arrived):
        step[arrived] = 0.0
    passed = _passages(roads, fleet, at.g, step, speed, change)
    # fuel (or charge) per km: least near ECONOMY_KMH, more in stop-go traffic and at motorway speed
    average = (speed + new_speed) * 0.5 - ECONOMY_KMH
    fleet.row("fuel")[:] -= fleet.row("fuel_per_km") * (1 + FUEL_CURVE_PER_KMH2 * average * average) * step
    np.minimum(length, km + step, out=fleet.row("km"))
    fleet.row("speed")[:] = new_speed
    fleet.row("speed")[fleet.row("km") >= length] = 0.0
    for name, values in (("last_lat", at.lat), ("last_lon", at.lon), ("err_n", err_n), ("err_e", err_e)):
        fleet.row(name)[:] = values
    return Moves(report.tolist(), legs[0].tolist(), fleet.row("ticks").tolist(), passed, arrived)


def finish_tick(fleet: FleetArrays, moves: Moves) -> None:
    """After the tick's events are built: every vehicle is a tick older, and those that arrived leave."""
    fleet.row("ticks")[:] += 1
    if np.count_nonzero(moves.arrived):
        fleet.reorder(np.flatnonzero(~moves.arrived).tolist())
