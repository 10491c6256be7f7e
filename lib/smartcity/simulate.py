"""The IoT fleet: vehicles driving London -> Birmingham on real roads, and the sensors beside them.

A time-stepped simulation on the corridor's road network (:mod:`smartcity.geo`):

* vehicles drawn from a fleet mix (make, model, year, fuel), each on one of the routes, leaving
  a few minutes apart; speed follows the road's free-flow speed, eased by rush-hour congestion,
  rain or fog where the vehicle is, and queues at active incidents, with bounded acceleration;
* telemetry and GPS every tick: a noisy fix along the polyline, the bearing of the motion,
  odometer and fuel (or charge) consistent with the distance driven;
* traffic cameras at fixed points of the roads, one event per vehicle passing, with the key of
  the snapshot it took;
* weather stations in the corridor's towns reporting one coherent field: a cold front with its
  rain band drifting east across the region;
* incidents as a Poisson process along the roads, reported Active, later Resolved, slowing the
  traffic on their stretch while active.

Everything is derived from the seed and the simulated clock, never from the wall clock; each part
(each vehicle, the weather, the incidents) draws from its own seeded stream, and ids are uuid5 of
(seed, topic, device, sequence). The same params give the same events, byte for byte.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pandas as pd
from tqdm import tqdm

from smartcity.config import TOPICS, Params, route_weights
from smartcity.contracts import Event
from smartcity.geo import LatLon, Route, RoadNetwork, bearing_deg, load_network, local_xy_km, offset_m

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


def _order(event: Event) -> tuple[str, int, str, str]:
    """Stream order: event time, then topic, device and id (all fixed by the params)."""
    return (event.value["timestamp"], _TOPIC_ORDER[event.topic], event.key, event.value["id"])


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds: one spelling of time for every event."""
    ts = ts.astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assign_routes(weights: dict[str, float], vehicles: int) -> list[str]:
    """Smooth weighted round robin: any prefix of the fleet is as close to the mix as it can be."""
    current = {name: 0.0 for name in weights}
    total = sum(weights.values())
    chosen = []
    for _ in range(vehicles):
        for name, weight in weights.items():
            current[name] += weight
        best = max(current, key=lambda n: current[n])
        current[best] -= total
        chosen.append(best)
    return chosen


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


def plan_incidents(cfg: Params, network: RoadNetwork, window: timedelta) -> list[Incident]:
    """Incidents over the window: Poisson in time and in road length, at ``incident_rate`` per 100 km·h."""
    rng = random.Random(f"{cfg.seed}/incidents")
    hours = window.total_seconds() / 3600
    edges = list(network.edges.values())
    count = _poisson(rng, cfg.incident_rate * network.length_km() / 100 * hours)
    incidents = []
    for n in range(count):
        edge = rng.choices(edges, weights=[e.length_km for e in edges])[0]
        kind = rng.choices(list(INCIDENT_MIX), weights=list(INCIDENT_MIX.values()))[0]
        severity = rng.choices(list(SEVERITY_MIX), weights=list(SEVERITY_MIX.values()))[0]
        edge_km = rng.uniform(0.1, 0.9) * edge.length_km
        begin = cfg.start_time + timedelta(seconds=rng.uniform(0, window.total_seconds()))
        minutes = SEVERITY_EFFECT[severity][2] * math.exp(rng.gauss(0, 0.35))
        start_node, end_node = network.nodes[edge.start], network.nodes[edge.end]
        place = start_node.name if edge_km < edge.length_km / 2 else end_node.name
        incidents.append(
            Incident(f"INC-{n + 1:03d}", kind, severity, edge.id, edge_km, edge.position(edge_km), edge.road, place,
                     begin, begin + timedelta(minutes=minutes))
        )
    return sorted(incidents, key=lambda i: (i.start, i.incident_id))


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


# -- vehicles -------------------------------------------------------------------------------------
@dataclass
class Vehicle:
    device: str
    profile: Profile
    year: int
    route: Route
    depart: datetime
    driver: float  # this driver's share of the free-flow speed
    odometer0: float
    fuel0: float  # % at departure
    rng: random.Random
    cameras: list[tuple[float, Camera]]
    incidents: list[tuple[float, Incident]]
    km: float = 0.0
    speed: float = 0.0
    fuel: float = 0.0
    heading: float = 0.0
    last_point: LatLon | None = None
    gps_error: tuple[float, float] = (0.0, 0.0)  # north, east, in units of the road's sigma
    arrived: datetime | None = None

    def target_kmh(self, km: float, at: datetime, weather: WeatherField) -> float:
        edge = self.route.leg_at(km).edge
        target = min(edge.speed_limit_kmh * FREE_FLOW_SHARE[edge.road_class], self.profile.max_kmh) * self.driver
        target *= 1 - RUSH_HOUR_DEPTH[edge.road_class] * rush_hour(at)
        target *= weather.speed_factor(self.route.position(km)[0], at)
        for inc_km, inc in self.incidents:
            if inc.active(at) and inc_km - inc.queue_km <= km <= inc_km + 0.3:
                target = min(target, inc.speed_kmh)
        return target


def _consumption(profile: Profile, speed: float) -> float:
    """Fuel per 100 km: least near 80 km/h, more in stop-go traffic and at motorway speed."""
    return profile.consumption * (1 + 0.00012 * (speed - 80) ** 2)


class FleetSimulation:
    """One run of the corridor: the fleet, the roadside sensors and the incidents, for given params."""

    def __init__(self, cfg: Params, network: RoadNetwork | None = None, incidents: list[Incident] | None = None):
        self.cfg = cfg
        self.network = network or load_network()
        weights = route_weights(cfg.routes)
        fleet_rng = random.Random(f"{cfg.seed}/fleet")
        self.cameras = place_cameras(self.network)
        self.stations = place_stations(self.network)
        routes = assign_routes(weights, cfg.vehicles)
        spacing = timedelta(seconds=cfg.departure_spacing_seconds)
        longest = max(self.network.route(r).length_km for r in set(routes))
        self.window = spacing * (cfg.vehicles - 1) + timedelta(hours=longest / 50)
        self.incidents = plan_incidents(cfg, self.network, self.window) if incidents is None else incidents
        self.weather = WeatherField(cfg.start_time, self.network.nodes["london"].point)
        self.vehicles = []
        for i, route_name in enumerate(routes):
            rng = random.Random(f"{cfg.seed}/vehicle/{i}")
            profile = fleet_rng.choices(PROFILES, weights=[p.share for p in PROFILES])[0]
            route = self.network.route(route_name)
            self.vehicles.append(
                Vehicle(
                    device=f"vehicle-{i + 1:03d}", profile=profile,
                    year=min(2026, 2026 - int(abs(rng.gauss(0, 5)))), route=route,
                    depart=cfg.start_time + spacing * i, driver=min(1.08, max(0.88, rng.gauss(0.98, 0.04))),
                    odometer0=round(rng.uniform(3_000, 140_000), 1), fuel0=rng.uniform(55, 98), rng=rng,
                    cameras=self._on_route(route, ((c.edge_id, c.edge_km, c) for c in self.cameras)),
                    incidents=self._on_route(route, ((i.edge_id, i.edge_km, i) for i in self.incidents)),
                )
            )

    @staticmethod
    def _on_route(route: Route, items: Iterable[tuple[str, float, object]]) -> list:
        legs = {leg.edge.id: leg for leg in route.legs}
        return sorted(((legs[e].route_km(km), obj) for e, km, obj in items if e in legs), key=lambda p: p[0])

    # -- tables for people ---------------------------------------------------------------------
    def fleet(self) -> pd.DataFrame:
        rows = [{"vehicle": v.device, "make": v.profile.make, "model": v.profile.model, "year": v.year,
                 "fuel": v.profile.fuel, "type": v.profile.vehicle_type, "route": v.route.name,
                 "route km": round(v.route.length_km, 1), "departs": v.depart.strftime("%H:%M")}
                for v in self.vehicles]
        return pd.DataFrame(rows).set_index("vehicle")

    def incident_table(self) -> pd.DataFrame:
        rows = [{"incident": i.incident_id, "type": i.kind, "severity": i.severity, "road": i.road, "near": i.place,
                 "from": i.start.strftime("%H:%M"), "to": i.end.strftime("%H:%M")} for i in self.incidents]
        return pd.DataFrame(rows, columns=["incident", "type", "severity", "road", "near", "from", "to"]).set_index("incident")

    # -- the run ---------------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Every event of the run in event-time order (ties by topic, key, id), as it happens."""
        cfg = self.cfg
        ids: Counter[tuple[str, str]] = Counter()
        tick = timedelta(seconds=cfg.tick_seconds)
        stop = cfg.start_time + timedelta(seconds=cfg.duration_seconds) if cfg.duration_seconds else None
        last_stamp = iso(stop) if stop is not None else None
        weather_rng = random.Random(f"{cfg.seed}/weather")
        next_weather = cfg.start_time
        pending_reports = sorted(
            [(i.start, "Active", i) for i in self.incidents] + [(i.end, "Resolved", i) for i in self.incidents],
            key=lambda r: (r[0], r[2].incident_id),
        )
        # A tick at `now` makes every event stamped up to `now`, and camera passages up to one tick
        # later; a heap holds those until the clock has reached them, so the stream stays in order.
        waiting: list[tuple[tuple[str, int, str, str], Event]] = []
        now = cfg.start_time
        while True:
            made: list[Event] = []
            for vehicle in self.vehicles:
                if vehicle.arrived is None and now >= vehicle.depart:
                    made.extend(self._step(vehicle, now, tick, ids))
            while next_weather <= now:
                made.extend(self._weather_reports(next_weather, weather_rng, ids))
                next_weather += WEATHER_PERIOD
            while pending_reports and pending_reports[0][0] <= now:
                at, status, incident = pending_reports.pop(0)
                made.append(self._incident_report(incident, status, at, ids))
            for event in made:
                heapq.heappush(waiting, (_order(event), event))
            # a set duration runs to its end (the roadside sensors keep reporting); else until all arrive
            done = now + tick > stop if stop is not None else all(v.arrived for v in self.vehicles)
            horizon = iso(now)
            while waiting and (done or waiting[0][0][0] <= horizon):
                event = heapq.heappop(waiting)[1]
                if last_stamp is None or event.value["timestamp"] <= last_stamp:
                    yield event
            if done:
                return
            now += tick

    def _base(self, ids: Counter, topic: str, device: str, at: datetime, where: LatLon) -> dict[str, object]:
        n = ids[(topic, device)]
        ids[(topic, device)] += 1
        return {
            "id": str(uuid.uuid5(_NAMESPACE, f"{self.cfg.seed}/{topic}/{device}/{n}")),
            "schemaVersion": self.cfg.schema_version,
            "deviceId": device,
            "timestamp": iso(at),
            "latitude": round(where[0], 6),
            "longitude": round(where[1], 6),
        }

    def _step(self, v: Vehicle, now: datetime, tick: timedelta, ids: Counter) -> list[Event]:
        """Report where the vehicle is at `now`, then drive it for one tick."""
        events: list[Event] = []
        true_point, _ = v.route.position(v.km)
        first = v.last_point is None
        if first:
            v.fuel, v.heading = v.fuel0, v.route.position(0.0)[1]
        elif v.last_point != true_point:
            v.heading = bearing_deg(v.last_point, true_point)
        v.last_point = true_point
        edge = v.route.leg_at(v.km).edge
        sigma = GPS_SIGMA_M[edge.road_class]
        north, east = v.rng.gauss(0, 1), v.rng.gauss(0, 1)
        if not first:  # the error drifts from the previous fix's; the first fix's is drawn afresh
            rho = math.exp(-tick.total_seconds() / GPS_CORRELATION_S)
            keep = math.sqrt(1 - rho * rho)
            north, east = rho * v.gps_error[0] + keep * north, rho * v.gps_error[1] + keep * east
        v.gps_error = (north, east)
        fix = offset_m(true_point, sigma * north, sigma * east)
        common = {"speed": round(v.speed, 2), "direction": round(v.heading, 1)}
        telemetry = self._base(ids, "vehicle_data", v.device, now, fix)
        telemetry.update(common, make=v.profile.make, model=v.profile.model, year=v.year, fuelType=v.profile.fuel,
                         odometer=round(v.odometer0 + v.km, 2), fuelLevel=round(max(0.0, v.fuel), 2),
                         route=v.route.name, road=edge.road)
        if self.cfg.schema_version >= 2:
            telemetry["edgeId"] = edge.id
        gps = self._base(ids, "gps_data", v.device, now, fix)
        gps.update(common, vehicleType=v.profile.vehicle_type, accuracy=round(sigma * 1.5, 1))
        events += [Event("vehicle_data", v.device, telemetry), Event("gps_data", v.device, gps)]
        if v.km >= v.route.length_km:
            v.arrived = now
            return events
        dt = tick.total_seconds()
        lookahead = v.km + (v.speed / 3.6) ** 2 / (2 * BRAKING_MS2) / 1000 + 0.2
        target = min(v.target_kmh(v.km, now, self.weather), v.target_kmh(lookahead, now, self.weather))
        target = max(0.0, target + v.rng.gauss(0, 1.5))
        change = max(-BRAKING_MS2 * 3.6 * dt, min(ACCELERATION_MS2 * 3.6 * dt, target - v.speed))
        new_speed = max(0.0, v.speed + change)
        step_km = (v.speed + new_speed) / 2 * dt / 3600
        for cam_km, camera in v.cameras:
            if v.km < cam_km <= v.km + step_km:
                share = (cam_km - v.km) / step_km
                events.append(self._camera_event(camera, v, now + tick * share, v.speed + change * share, ids))
        v.fuel -= _consumption(v.profile, (v.speed + new_speed) / 2) * step_km / 100 / v.profile.capacity * 100
        v.km = min(v.route.length_km, v.km + step_km)
        v.speed = new_speed if v.km < v.route.length_km else 0.0
        return events

    def _camera_event(self, camera: Camera, v: Vehicle, at: datetime, speed: float, ids: Counter) -> Event:
        value = self._base(ids, "traffic_data", camera.device, at, camera.point)
        value.update(cameraId=camera.camera_id, road=camera.road, vehicleId=v.device, speed=round(max(0.0, speed), 1),
                     snapshot=f"snapshots/{camera.camera_id}/{at:%Y/%m/%d/%H%M%S}-{at.microsecond // 1000:03d}-{v.device}.jpg")
        return Event("traffic_data", camera.device, value)

    def _weather_reports(self, at: datetime, rng: random.Random, ids: Counter) -> list[Event]:
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
            events.append(Event("weather_data", station.device, value))
        return events

    def _incident_report(self, incident: Incident, status: str, at: datetime, ids: Counter) -> Event:
        value = self._base(ids, "emergency_data", "traffic-control", at, incident.point)
        value.update(incidentId=incident.incident_id, type=incident.kind, severity=incident.severity, status=status,
                     road=incident.road, description=f"{incident.severity} {incident.kind.lower()} on the "
                     f"{incident.road} near {incident.place}")
        return Event("emergency_data", "traffic-control", value)


# -- entry points ---------------------------------------------------------------------------------
def simulate_journey(cfg: Params) -> list[Event]:
    """All events of one run, in event-time order."""
    return list(FleetSimulation(cfg).events())


def pace(events: Iterable[Event], speedup: float) -> Iterator[Event]:
    """Release events at the simulated clock's pace divided by ``speedup`` (0: as fast as possible)."""
    if speedup <= 0:
        yield from events
        return
    wall0 = sim0 = None
    for event in events:
        at = parse_iso(event.value["timestamp"])
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
    from smartcity import kafka, lake, report

    if cfg.reset_run:
        lake.reset(cfg)
        report.clear_counts(cfg)
    return kafka.ensure_topics(cfg.kafka_bootstrap, partitions=cfg.kafka_partitions, recreate=cfg.reset_run)


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
