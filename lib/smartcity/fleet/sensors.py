"""What the roadside reports: the weather over the corridor, incidents on its roads, the cameras and stations.

The weather is one coherent field, a cold front with its rain band drifting east across the region;
incidents are a Poisson process along the roads, reported Active, later Resolved, slowing the
traffic on their stretch while active; cameras stand every :data:`CAMERA_SPACING_KM` along each
road, and weather stations in the corridor's towns. Everything is a pure function of the seed,
the place and the simulated time.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate, count
from typing import Any

import numpy as np

from smartcity.fleet.params import FleetParams
from smartcity.fleet.roads import EARTH_RADIUS_KM, LatLon, RoadNetwork, local_xy_km
from smartcity.fleet.vehicles import rush_hour

CAMERA_SPACING_KM = 15.0
WEATHER_PERIOD = timedelta(minutes=10)
#: Weather stations: the town each is named after, and the network node it stands at.
WEATHER_STATIONS = (
    ("London", "london"),
    ("St Albans", "st_albans"),
    ("Luton", "m1_j10"),
    ("Milton Keynes", "fenny_stratford"),
    ("Northampton", "m1_j15"),
    ("High Wycombe", "m40_j4"),
    ("Oxford", "m40_j8"),
    ("Banbury", "m40_j11"),
    ("Rugby", "m1_j19"),
    ("Coventry", "tollbar_end"),
    ("Warwick", "m40_j15"),
    ("Birmingham", "birmingham"),
)
#: An incident's effect: (queue upstream in km, speed through it in km/h, mean minutes active).
SEVERITY_EFFECT = {"minor": (0.5, 60.0, 20.0), "major": (1.5, 30.0, 45.0), "severe": (3.0, 10.0, 90.0)}
INCIDENT_MIX = {"Breakdown": 40, "Accident": 25, "Roadworks": 15, "Police": 10, "Medical": 6, "Fire": 4}
SEVERITY_MIX = {"minor": 55, "major": 35, "severe": 10}


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
        return {
            "temperature": temperature,
            "precipitation": rain,
            "windSpeed": wind,
            "humidity": humidity,
            "weatherCondition": condition,
            "airQualityIndex": aqi,
        }

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


def _draw_incident(
    rng: random.Random,
    network: RoadNetwork,
    edges: list[Any],
    edge_cum: list[float],
    n: int,
    when: Callable[[], datetime],
) -> Incident:
    """Where, what, when (``when`` draws it, in that order, so a seed keeps its incidents) and how long."""
    edge = rng.choices(edges, cum_weights=edge_cum)[0]
    kind = rng.choices(list(INCIDENT_MIX), weights=list(INCIDENT_MIX.values()))[0]
    severity = rng.choices(list(SEVERITY_MIX), weights=list(SEVERITY_MIX.values()))[0]
    edge_km = rng.uniform(0.1, 0.9) * edge.length_km
    begin = when()
    minutes = SEVERITY_EFFECT[severity][2] * math.exp(rng.gauss(0, 0.35))
    start_node, end_node = network.nodes[edge.start], network.nodes[edge.end]
    place = start_node.name if edge_km < edge.length_km / 2 else end_node.name
    return Incident(
        f"INC-{n:03d}",
        kind,
        severity,
        edge.id,
        edge_km,
        edge.position(edge_km),
        edge.road,
        place,
        begin,
        begin + timedelta(minutes=minutes),
    )


def plan_incidents(cfg: FleetParams, network: RoadNetwork, window: timedelta) -> list[Incident]:
    """Incidents over a window known in advance (a run with an end): Poisson in time and in road length,
    at ``incident_rate`` per 100 km·h, drawn as a Poisson count at uniform times, which is what such a
    process is on a fixed window."""
    rng = random.Random(f"{cfg.seed}/incidents")
    seconds = window.total_seconds()
    edges = list(network.edges.values())
    edge_cum = list(accumulate(e.length_km for e in edges))
    how_many = _poisson(rng, cfg.incident_rate * network.length_km() / 100 * (seconds / 3600))
    incidents = [
        _draw_incident(
            rng, network, edges, edge_cum, n + 1, lambda: cfg.start_time + timedelta(seconds=rng.uniform(0, seconds))
        )
        for n in range(how_many)
    ]
    return sorted(incidents, key=lambda i: (i.start, i.incident_id))


def incident_process(cfg: FleetParams, network: RoadNetwork) -> Iterator[Incident]:
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
        Station(
            f"weather-{name.lower().replace(' ', '-')}",
            name,
            network.nodes[node].point,
            network.nodes[node].kind == "city",
        )
        for name, node in WEATHER_STATIONS
    ]
