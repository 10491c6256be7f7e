"""The IoT fleet: vehicles driving London -> Birmingham on real roads, and the sensors beside them.

A time-stepped simulation on the corridor's road network (:mod:`smartcity.fleet.roads`):

* vehicles drawn from a fleet mix (make, model, year, fuel; :mod:`smartcity.fleet.vehicles`), each
  on one of the routes, leaving a few minutes apart and, with ``departure_rate_per_hour``, more of
  them for as long as the run lasts; they drive as :mod:`smartcity.fleet.driving` says: speed
  follows the road's free-flow speed, eased by rush-hour congestion, rain where the vehicle is, and
  queues at active incidents, with bounded acceleration and braking;
* telemetry and GPS every tick: a fix along the polyline whose error drifts from one fix to the
  next as a receiver's does, the bearing of the motion, odometer and fuel (or charge)
  consistent with the distance driven;
* traffic cameras at fixed points of the roads, one event per vehicle passing, with the key of
  the snapshot it took; weather stations in the corridor's towns reporting one coherent field;
  incidents as a Poisson process along the roads (:mod:`smartcity.fleet.sensors`).

Events come lazily, in event-time order (:mod:`smartcity.fleet.events` builds them), and a
vehicle's state is dropped when it arrives: an open-ended run keeps flat memory.

Everything is derived from the seed and the simulated clock, never from the wall clock. Each part
draws from its own seeded stream: the fleet mix, each vehicle's own attributes, the noise each
vehicle meets on its way (:mod:`smartcity.fleet.noise`), the weather, the incidents and the
departures. The same params give the same events, byte for byte.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count, islice, takewhile
from operator import itemgetter

import numpy as np
import pandas as pd

from smartcity.fleet.contracts import Event
from smartcity.fleet.driving import FleetArrays, RoadTables, Tick, Zone, drive, finish_tick
from smartcity.fleet.events import EventMaker, Keyed, iso, parse_iso
from smartcity.fleet.following import Following
from smartcity.fleet.params import FleetParams
from smartcity.fleet.roads import RoadNetwork, load_network
from smartcity.fleet.sensors import (
    WEATHER_PERIOD,
    Incident,
    WeatherField,
    incident_process,
    place_cameras,
    place_stations,
    plan_incidents,
)
from smartcity.fleet.vehicles import PROFILE_CUM, PROFILES, Vehicle, assign_routes, cycle_routes

#: A planned route may be this slow on average: it sizes the window a fixed fleet's incidents are drawn for.
SLOWEST_PLANNED_KMH = 50.0
#: The rain band is below 1e-8 mm/h, which changes no speed, beyond this far behind (km) ...
RAIN_BEHIND_FRONT_KM = 150.0
#: ... or this far ahead of the front (km).
RAIN_AHEAD_OF_FRONT_KM = 50.0

#: A departure plan: (departure time, route name) per vehicle, in device order.
Plan = Sequence[tuple[datetime, str]]


@dataclass
class RunState:
    """Where a run of :meth:`FleetSimulation.events` has got to: what a live view shows, and how one
    can see that vehicles which arrived are no longer held."""

    clock: datetime | None = None  # the simulated time of the last tick
    departed: int = 0
    arrived: int = 0
    on_road: int = 0


@dataclass(frozen=True)
class TickView:
    """The fleet after one tick, for a live view: every vehicle on the road where it reported, and the
    incidents active (arrays and lists of the run: copy what you keep)."""

    now: datetime
    devices: list[str]
    lat: np.ndarray
    lon: np.ndarray
    incidents: list[Incident]


class FleetSimulation:
    """One run of the corridor: the fleet, the roadside sensors and the incidents, for given params.

    ``plan`` replaces the fleet of ``vehicles`` by one vehicle per (departure, route name) entry,
    in that order (vehicle-001 is the first entry); everything else about each vehicle is drawn
    from the seed as for any fleet. ``incidents`` replaces the seeded incident process by a list.
    With ``departure_rate_per_hour`` > 0 more vehicles keep leaving after the planned ones, and with
    ``duration_seconds`` 0 the run is then endless: :meth:`events` never ends, its caller stops it.
    ``following`` (live mode) sends the advised share of departing vehicles down the advised route and
    reports every trip as it ends (:mod:`smartcity.fleet.following`); the advised routes must be routes
    of ``network``. ``on_tick`` is called after every tick the fleet drives (a live map's view).
    """

    def __init__(
        self,
        params: FleetParams,
        network: RoadNetwork | None = None,
        incidents: list[Incident] | None = None,
        plan: Plan | None = None,
        following: Following | None = None,
        on_tick: Callable[[TickView], None] | None = None,
    ):
        self.params = params
        self.following = following
        self.on_tick = on_tick
        self.network = network or load_network()
        self.weights = params.weights
        self.cameras = place_cameras(self.network)
        self.stations = place_stations(self.network)
        self.roads = RoadTables(self.network, self.cameras)
        self.weather = WeatherField(params.start_time, self.network.nodes["london"].point)
        self.plan = self._check_plan(plan) if plan is not None else self._spaced_plan()
        self.vehicles: list[Vehicle] = list(islice(self._all_vehicles(), len(self.plan)))
        self.open_ended = params.open_ended
        start = params.start_time
        last = max((v.depart for v in self.vehicles), default=start)
        longest = max(
            (v.route.length_km for v in self.vehicles),
            default=max(self.network.route(r).length_km for r in self.weights),
        )
        #: how long a planned fleet takes at worst: what its incidents are drawn for when the run has no set end
        self.window = max(last - start, timedelta(0)) + timedelta(hours=longest / SLOWEST_PLANNED_KMH)
        #: the run's known end (None for an endless one)
        self.stop = start + timedelta(seconds=params.duration_seconds) if params.duration_seconds else None
        self.horizon = self.stop if self.stop is not None else (None if self.open_ended else start + self.window)
        self._given_incidents = (
            sorted(incidents, key=lambda i: (i.start, i.incident_id)) if incidents is not None else None
        )
        self._incidents: list[Incident] | None = self._given_incidents
        self._extent: tuple[float, float] | None = None
        #: progress of the latest :meth:`events` run
        self.state = RunState()

    # -- who drives -----------------------------------------------------------------------------
    def _spaced_plan(self) -> list[tuple[datetime, str]]:
        spacing = timedelta(seconds=self.params.departure_spacing_seconds)
        routes = assign_routes(self.weights, self.params.vehicles)
        return [(self.params.start_time + spacing * n, name) for n, name in enumerate(routes)]

    def _check_plan(self, plan: Plan) -> list[tuple[datetime, str]]:
        """A plan names at least one vehicle, each leaving at a time of the run on a known route."""
        checked = []
        for n, (depart, route_name) in enumerate(plan):
            if not isinstance(depart, datetime) or depart.tzinfo is None:
                raise ValueError(f"plan entry {n}: the departure must be a datetime with a UTC offset, got {depart!r}")
            if depart < self.params.start_time:
                raise ValueError(
                    f"plan entry {n}: departs at {depart.isoformat()}, before the run starts "
                    f"({self.params.start_time.isoformat()})"
                )
            self.network.route(route_name)  # an unknown route names itself
            checked.append((depart, route_name))
        if not checked:
            raise ValueError("a plan needs at least one vehicle")
        return checked

    def _all_vehicles(self) -> Iterator[Vehicle]:
        """Every vehicle of the run in device order: the planned ones, then (with a departure rate) an
        endless Poisson stream of departures after the last planned one. Drawn afresh on each call."""
        params = self.params
        fleet_rng = random.Random(f"{params.seed}/fleet")
        departures_rng = random.Random(f"{params.seed}/departures")
        routes = cycle_routes(self.weights)
        per_second = params.departure_rate_per_hour / 3600
        last = max((depart for depart, _ in self.plan), default=params.start_time)
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
        rng = random.Random(f"{self.params.seed}/vehicle/{serial}")
        profile = fleet_rng.choices(PROFILES, cum_weights=PROFILE_CUM)[0]
        route = self.network.route(route_name)
        year = min(2026, 2026 - int(abs(rng.gauss(0, 5))))
        driver = min(1.08, max(0.88, rng.gauss(0.98, 0.04)))
        odometer0 = round(rng.uniform(3_000, 140_000), 1)
        fuel0 = rng.uniform(55, 98)
        return Vehicle(
            f"vehicle-{serial + 1:03d}",
            profile,
            year,
            route,
            depart,
            driver,
            odometer0,
            fuel0,
            self.roads.route_cameras[route_name],
            serial,
        )

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
                self._incidents = plan_incidents(self.params, self.network, self.horizon - self.params.start_time)
            else:
                end = self.params.start_time + self.window
                self._incidents = list(takewhile(lambda i: i.start <= end, incident_process(self.params, self.network)))
        return self._incidents

    def _incident_stream(self) -> Iterator[Incident]:
        """What a run reports: the given incidents, those of the horizon, or (endless) the whole process."""
        if self._given_incidents is None and self.horizon is None:
            return incident_process(self.params, self.network)
        return iter(self.incidents)

    # -- tables for people ---------------------------------------------------------------------
    def fleet(self) -> pd.DataFrame:
        rows = [
            {
                "vehicle": v.device,
                "make": v.profile.make,
                "model": v.profile.model,
                "year": v.year,
                "fuel": v.profile.fuel,
                "type": v.profile.vehicle_type,
                "route": v.route.name,
                "route km": round(v.route.length_km, 1),
                "departs": v.depart.strftime("%H:%M"),
            }
            for v in self.vehicles
        ]
        return pd.DataFrame(
            rows, columns=["vehicle", "make", "model", "year", "fuel", "type", "route", "route km", "departs"]
        ).set_index("vehicle")

    def incident_table(self) -> pd.DataFrame:
        rows = [
            {
                "incident": i.incident_id,
                "type": i.kind,
                "severity": i.severity,
                "road": i.road,
                "near": i.place,
                "from": i.start.strftime("%H:%M"),
                "to": i.end.strftime("%H:%M"),
            }
            for i in self.incidents
        ]
        return pd.DataFrame(rows, columns=["incident", "type", "severity", "road", "near", "from", "to"]).set_index(
            "incident"
        )

    # -- the run ---------------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Every event of the run in event-time order (ties by topic, key, id), as it happens.

        A tick at ``now`` makes every event stamped up to ``now`` and camera passages up to one tick
        later; those wait for the next tick, so the stream stays in order. Each call starts afresh.
        """
        run = _Run(self)
        k = 0
        while True:
            now = run.start + run.tick * k
            run.board(now, k)
            minors = run.roadside(now)
            stamp = iso(now)
            telemetry, fixes = run.drive(Tick(k, now, run.tick.total_seconds()), stamp, minors)
            done = run.done(k)
            before, same, run.carry = _split(minors, stamp)
            if done:
                tail = before + telemetry + fixes + same + [e for _, e in run.carry]
                yield from (e for e in tail if run.last_stamp is None or e.value["timestamp"] <= run.last_stamp)
                return
            yield from before
            yield from telemetry
            yield from fixes
            yield from same
            k = run.next_tick(k + 1)

    def rain_on_corridor(self, at: datetime) -> bool:
        """Whether the rain band is anywhere near the roads at ``at``."""
        lo, hi = self._corridor_extent
        front = self.weather.front_km + self.weather.speed_kmh * (at - self.weather.start).total_seconds() / 3600
        return hi - front >= -RAIN_BEHIND_FRONT_KM and lo - front <= RAIN_AHEAD_OF_FRONT_KM

    @property
    def _corridor_extent(self) -> tuple[float, float]:
        """Least and greatest distance of the network's points along the front's heading (km from its origin)."""
        if self._extent is None:
            along = [
                self.weather.distance_km(p, self.weather.start) + self.weather.front_km
                for e in self.network.edges.values()
                for p in e.points
            ]
            self._extent = (min(along) - 1.0, max(along) + 1.0)
        return self._extent


def _split(minors: list[Keyed], stamp: str) -> tuple[list[Event], list[Event], list[Keyed]]:
    """A tick's roadside events: those before its stamp, those at it, and those after (carried over)."""
    if not minors:
        return [], [], []
    minors.sort(key=itemgetter(0))
    before = [e for key, e in minors if key[0] < stamp]
    same = [e for key, e in minors if key[0] == stamp]
    return before, same, [(key, e) for key, e in minors if key[0] > stamp]


class _Run:
    """The state of one pass of :meth:`FleetSimulation.events`: the clock, who is still to leave, the
    incidents to open and close, the weather's next report, and the vehicles on the road."""

    def __init__(self, sim: FleetSimulation) -> None:
        params = sim.params
        self.sim = sim
        self.start, self.stop = params.start_time, sim.stop
        self.tick = timedelta(seconds=params.tick_seconds)
        self.last_stamp = iso(self.stop) if self.stop is not None else None
        self.last_tick = (self.stop - self.start) // self.tick if self.stop is not None else None
        self.departures = sim.departures()
        self.leaving = next(self.departures, None)
        self.incidents = sim._incident_stream()
        self.next_incident = next(self.incidents, None)
        self.resolving: list[tuple[datetime, str, Incident]] = []
        self.zones: dict[str, list[Zone]] = {}
        self.weather_rng = random.Random(f"{params.seed}/weather")
        self.next_weather = self.start
        self.maker = EventMaker(params.seed, params.schema_version, sim.roads.leg_info)
        self.fleet = FleetArrays(params.seed, sim.roads, params.vehicle_weight)
        self.carry: list[Keyed] = []
        self.state = sim.state = RunState()

    def board(self, now: datetime, k: int) -> None:
        """Vehicles whose departure time has come join the road."""
        joining = []
        while self.leaving is not None and self.leaving.depart <= now:
            joining.append(self.leaving)
            self.leaving = next(self.departures, None)
        if joining:
            following = self.sim.following
            if following is not None:
                cameras = self.sim.roads.route_cameras
                seed, network = self.sim.params.seed, self.sim.network
                joining = [following.depart(v, seed, network, cameras, now) for v in joining]
            self.fleet.join(joining, k)
            self.state.departed += len(joining)

    def roadside(self, now: datetime) -> list[Keyed]:
        """What was carried over, the weather reports due, and incident reports in time order."""
        minors = self.carry
        while self.next_weather <= now:
            minors.extend(
                self.maker.weather_reports(self.sim.weather, self.sim.stations, self.next_weather, self.weather_rng)
            )
            self.next_weather += WEATHER_PERIOD
        while True:  # Active and Resolved interleaved
            opens = self.next_incident.start if self.next_incident is not None else None
            closes = self.resolving[0][0] if self.resolving else None
            if closes is not None and closes <= now and (opens is None or closes < opens):
                _, incident_id, incident = heapq.heappop(self.resolving)
                self.zones.pop(incident_id, None)
                minors.append(self.maker.incident_report(incident, "Resolved", closes))
            elif opens is not None and opens <= now:
                incident = self.next_incident
                heapq.heappush(self.resolving, (incident.end, incident.incident_id, incident))
                self.zones[incident.incident_id] = self.sim.roads.zones(incident)
                minors.append(self.maker.incident_report(incident, "Active", opens))
                self.next_incident = next(self.incidents, None)
            else:
                return minors

    def drive(self, tick: Tick, stamp: str, minors: list[Keyed]) -> tuple[list[Event], list[Event]]:
        """One tick of the fleet: its telemetry and fixes; camera passages go to ``minors``."""
        fleet, telemetry, fixes = self.fleet, [], []
        if fleet.size:
            weather, now = self.sim.weather, tick.now
            rain = (lambda lat, lon: weather.speed_factors(lat, lon, now)) if self.sim.rain_on_corridor(now) else None
            moves = drive(fleet, tick, [z for zs in self.zones.values() for z in zs], rain)
            for j, camera, share, speed in moves.passages:
                minors.append(self.maker.camera_passage(camera, fleet.devices[j], now + self.tick * share, speed))
            telemetry, fixes = self.maker.vehicle_reports(fleet, stamp, moves)
            if self.sim.following is not None and np.count_nonzero(moves.arrived):
                self.sim.following.arrived([fleet.devices[j] for j in np.flatnonzero(moves.arrived)], now)
            if self.sim.on_tick is not None:
                active = [incident for _, _, incident in self.resolving]
                self.sim.on_tick(TickView(now, fleet.devices, fleet.row("last_lat"), fleet.row("last_lon"), active))
            finish_tick(fleet, moves)
        self.state.clock, self.state.on_road = tick.now, fleet.size
        self.state.arrived = self.state.departed - fleet.size
        return telemetry, fixes

    def done(self, k: int) -> bool:
        if self.last_tick is not None:
            return k >= self.last_tick  # the next tick would be past the end: a set duration runs to it
        return not self.sim.open_ended and self.leaving is None and not self.fleet.size  # all have arrived

    def next_tick(self, k: int) -> int:
        """``k``, or, with nobody on the road, the tick of the next thing to happen."""
        if self.fleet.size or self.carry:
            return k
        due = [
            t
            for t in (
                self.leaving.depart if self.leaving is not None else None,
                self.next_weather,
                self.next_incident.start if self.next_incident is not None else None,
                self.resolving[0][0] if self.resolving else None,
            )
            if t is not None
        ]
        ahead = -((self.start - min(due)) // self.tick)  # the first tick at or after it
        return max(k, min(ahead, self.last_tick) if self.last_tick is not None else ahead)


def simulate_journey(params: FleetParams) -> list[Event]:
    """All events of one run, in event-time order (a bounded run: an endless one never returns)."""
    if params.open_ended and not params.duration_seconds:
        raise ValueError(
            "an open-ended fleet (departure_rate_per_hour > 0) without duration_seconds is endless: "
            "iterate FleetSimulation(params).events() instead of making a list"
        )
    return list(FleetSimulation(params).events())


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
