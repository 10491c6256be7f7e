"""The IoT fleet: vehicles driving London -> Birmingham and the sensors along the way.

Everything is derived from the seed and the simulated clock (``base_date``), never from the wall
clock, and ids are uuid5 of (seed, topic, device, sequence): the same params give the same
events, byte for byte, which is what makes the notebooks' stored outputs a regression check.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson
import pandas as pd

from smartcity import kafka, lake, report
from smartcity.config import TOPICS, Params
from smartcity.contracts import SCHEMA_VERSION, Event
from smartcity.geo import LatLon, Route, default_route, offset_m

_NAMESPACE = uuid.UUID("6f1f5b5e-3c55-4a7e-9d1e-5c17a0b1c0de")

VEHICLE_PROFILES: tuple[tuple[str, str, str, str], ...] = (
    # make, model, fuel, vehicle type
    ("Ford", "Focus", "Petrol", "private"),
    ("Vauxhall", "Corsa", "Petrol", "private"),
    ("Volkswagen", "Golf", "Diesel", "private"),
    ("Toyota", "Prius", "Hybrid", "taxi"),
    ("Tesla", "Model 3", "Electric", "private"),
    ("BMW", "3 Series", "Diesel", "private"),
    ("Mercedes-Benz", "Sprinter", "Diesel", "truck"),
)
INCIDENT_TYPES = ("Accident", "Breakdown", "Fire", "Medical", "Police")
CAMERA_SPACING_KM = 30.0
WEATHER_PERIOD = timedelta(minutes=15)
INCIDENT_SLOW_KMH = 30.0
INCIDENT_REACH_KM = 1.5
CRUISE_KMH = 105.0


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds: one spelling of time for every event."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass
class _Ids:
    """uuid5 ids numbered per (topic, device): stable across runs of the same params."""

    seed: int
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)

    def next(self, topic: str, device: str) -> str:
        n = self.counters[(topic, device)]
        self.counters[(topic, device)] += 1
        return str(uuid.uuid5(_NAMESPACE, f"{self.seed}/{topic}/{device}/{n}"))


@dataclass(frozen=True)
class Incident:
    incident_id: str
    kind: str
    km: float
    start: datetime
    end: datetime

    def slows(self, km: float, at: datetime) -> bool:
        return self.start <= at < self.end and abs(km - self.km) <= INCIDENT_REACH_KM


def _base(ids: _Ids, topic: str, device: str, at: datetime, where: LatLon) -> dict[str, object]:
    return {
        "id": ids.next(topic, device),
        "schemaVersion": SCHEMA_VERSION,
        "deviceId": device,
        "timestamp": iso(at),
        "latitude": round(where[0], 6),
        "longitude": round(where[1], 6),
    }


def _plan_incidents(rng: random.Random, route: Route, start: datetime, window: timedelta) -> list[Incident]:
    count = 1 + sum(rng.random() < 0.5 for _ in range(3))
    incidents = []
    for n in range(count):
        begin = start + timedelta(seconds=rng.uniform(0, window.total_seconds() * 0.7))
        incidents.append(
            Incident(
                incident_id=f"INC-{n + 1:03d}",
                kind=rng.choice(INCIDENT_TYPES),
                km=rng.uniform(0.1, 0.9) * route.length_km,
                start=begin,
                end=begin + timedelta(minutes=rng.uniform(20, 60)),
            )
        )
    return sorted(incidents, key=lambda i: i.start)


def _drive(
    cfg: Params, rng: random.Random, ids: _Ids, route: Route, vehicle: int, incidents: list[Incident]
) -> Iterator[Event]:
    """One vehicle's trip: telemetry and GPS every tick, a camera event at every camera it passes."""
    device = f"vehicle-{vehicle + 1:03d}"
    make, model, fuel, vtype = VEHICLE_PROFILES[rng.randrange(len(VEHICLE_PROFILES))]
    year = rng.randint(2012, 2026)
    cruise = rng.gauss(CRUISE_KMH, 6.0)
    at = cfg.start_time + timedelta(minutes=3 * vehicle)
    tick = timedelta(seconds=cfg.tick_seconds)
    cameras = [k * CAMERA_SPACING_KM for k in range(1, int(route.length_km // CAMERA_SPACING_KM) + 1)]
    km, speed = 0.0, 0.0
    while True:
        where, heading = route.position(km)
        noisy = offset_m(where, rng.gauss(0, 3), rng.gauss(0, 3))
        for topic, extra in (
            ("vehicle_data", {"make": make, "model": model, "year": year, "fuelType": fuel}),
            ("gps_data", {"vehicleType": vtype}),
        ):
            value = _base(ids, topic, device, at, noisy)
            value.update(speed=round(speed, 2), direction=round(heading, 1), **extra)
            yield Event(topic, device, value)
        if km >= route.length_km:
            return
        slowed = any(inc.slows(km, at) for inc in incidents)
        target = INCIDENT_SLOW_KMH if slowed else cruise
        speed = max(0.0, min(140.0, speed + 0.35 * (target - speed) + rng.gauss(0, 2.0)))
        step = speed * cfg.tick_seconds / 3600.0
        for cam_km in cameras:
            if km < cam_km <= km + step:
                passed = at + tick * ((cam_km - km) / step)
                camera = f"camera-{int(cam_km):03d}km"
                value = _base(ids, "traffic_data", camera, passed, route.position(cam_km)[0])
                value.update(
                    cameraId=camera,
                    vehicleId=device,
                    snapshot=f"snapshots/{camera}/{passed:%Y%m%dT%H%M%S}-{device}.jpg",
                )
                yield Event("traffic_data", camera, value)
        km += step
        at += tick


def _weather(cfg: Params, rng: random.Random, ids: _Ids, route: Route, end: datetime) -> Iterator[Event]:
    """Stations every ~45 km report a smooth field: a cool front drifting north-west over the trip."""
    stations = [route.position(k)[0] for k in (0.0, 45.0, 90.0, 135.0, route.length_km)]
    at = cfg.start_time
    while at <= end:
        hours = (at - cfg.start_time).total_seconds() / 3600
        for n, where in enumerate(stations):
            device = f"weather-{n + 1:02d}"
            front = 1 / (1 + math.exp(-(hours * 40 - n * 45) / 15))  # 1 once the front has passed
            rain = round(max(0.0, 4.0 * front * (1 - front) * 4 + rng.gauss(0, 0.2)), 2)
            condition = "Rain" if rain > 1.0 else ("Cloudy" if front > 0.2 else "Sunny")
            value = _base(ids, "weather_data", device, at, where)
            value.update(
                temperature=round(9.0 - 3.0 * front + 1.5 * math.sin(hours / 4 * math.pi) + rng.gauss(0, 0.3), 1),
                weatherCondition=condition,
                precipitation=rain,
                windSpeed=round(max(0.0, 15 + 20 * front + rng.gauss(0, 3)), 1),
                humidity=round(min(100.0, 70 + 25 * front + rng.gauss(0, 2)), 1),
                airQualityIndex=round(max(0.0, 35 - 10 * front + rng.gauss(0, 3)), 1),
            )
            yield Event("weather_data", device, value)
        at += WEATHER_PERIOD


def _incident_reports(ids: _Ids, route: Route, incidents: list[Incident]) -> Iterator[Event]:
    for inc in incidents:
        where = route.position(inc.km)[0]
        for status, at in (("Active", inc.start), ("Resolved", inc.end)):
            value = _base(ids, "emergency_data", "highways-control", at, where)
            value.update(
                incidentId=inc.incident_id,
                type=inc.kind,
                status=status,
                description=f"{inc.kind} near {route.nearest_waypoint(inc.km)}",
            )
            yield Event("emergency_data", "highways-control", value)


def simulate_journey(cfg: Params, route: Route | None = None) -> list[Event]:
    """All events of one run, in event-time order (ties broken by topic, key and id)."""
    route = route or default_route()
    rng = random.Random(cfg.seed)
    ids = _Ids(cfg.seed)
    window = timedelta(hours=2, minutes=3 * cfg.vehicles)
    incidents = _plan_incidents(rng, route, cfg.start_time, window)
    events: list[Event] = []
    for vehicle in range(cfg.vehicles):
        events.extend(_drive(cfg, rng, ids, route, vehicle, incidents))
    end = max(e.value["timestamp"] for e in events)
    events.extend(_weather(cfg, rng, ids, route, datetime.fromisoformat(end.replace("Z", "+00:00"))))
    events.extend(_incident_reports(ids, route, incidents))
    events.sort(key=lambda e: (e.value["timestamp"], TOPICS.index(e.topic), e.key, e.value["id"]))
    return events


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
    if cfg.reset_run:
        lake.reset(cfg)
        report.clear_counts(cfg)
    return kafka.ensure_topics(cfg.kafka_bootstrap, partitions=cfg.kafka_partitions, recreate=cfg.reset_run)


def summarize(events: list[Event]) -> pd.DataFrame:
    """Events per topic with their devices and time span: what a run is about to produce."""
    rows = []
    for topic in TOPICS:
        mine = [e for e in events if e.topic == topic]
        rows.append(
            {
                "topic": topic,
                "events": len(mine),
                "devices": len({e.key for e in mine}),
                "first": min((e.value["timestamp"] for e in mine), default=""),
                "last": max((e.value["timestamp"] for e in mine), default=""),
            }
        )
    return pd.DataFrame(rows).set_index("topic")
