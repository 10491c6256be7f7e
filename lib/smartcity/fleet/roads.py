"""Geometry on the WGS84 sphere and the corridor's road network.

The network (``data/corridor.json``) holds nodes at real towns and junctions, edges with road
name, class, speed limit and a polyline, and the named London -> Birmingham routes as node
paths. Lengths are always computed from the polylines, never stored. A :class:`Route` is a
route's edges laid end to end, so positions, bearings and road attributes can be looked up by
the distance a vehicle has travelled.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np

EARTH_RADIUS_KM = 6371.0088
CORRIDOR_FILE = Path(__file__).with_name("data") / "corridor.json"

LatLon = tuple[float, float]


def haversine_km(a: LatLon, b: LatLon) -> float:
    """Great-circle distance between two points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Initial bearing from a to b, clockwise from north, in [0, 360)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    x = math.sin(lon2 - lon1) * math.cos(lat2)
    y = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(x, y)) % 360.0


def offset_m(point: LatLon, north_m: float, east_m: float) -> LatLon:
    """Move a point by metres north and east (small offsets: GPS noise, map jitter)."""
    lat, lon = point
    dlat = north_m / 1000 / EARTH_RADIUS_KM
    dlon = east_m / 1000 / (EARTH_RADIUS_KM * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def local_xy_km(point: LatLon, origin: LatLon) -> tuple[float, float]:
    """East and north kilometres of a point from an origin (equirectangular; fine over a region)."""
    x = math.radians(point[1] - origin[1]) * EARTH_RADIUS_KM * math.cos(math.radians(origin[0]))
    y = math.radians(point[0] - origin[0]) * EARTH_RADIUS_KM
    return x, y


def polyline_km(points: Sequence[LatLon]) -> list[float]:
    """Cumulative length at each vertex of a polyline, starting at 0."""
    chainage = [0.0]
    for a, b in itertools.pairwise(points):
        chainage.append(chainage[-1] + haversine_km(a, b))
    return chainage


def interpolate(points: Sequence[LatLon], chainage: Sequence[float], km: float) -> tuple[LatLon, int]:
    """Point at km along a polyline (clamped to its ends) and the index of the segment it is on."""
    km = min(max(km, 0.0), chainage[-1])
    i = min(max(bisect.bisect_right(chainage, km) - 1, 0), len(points) - 2)
    a, b = points[i], points[i + 1]
    span = chainage[i + 1] - chainage[i]
    t = 0.0 if span == 0 else (km - chainage[i]) / span
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t), i


def distance_to_polyline_m(point: LatLon, points: Sequence[LatLon]) -> float:
    """Shortest distance from a point to a polyline, in metres."""
    return float(distances_to_polyline_m([point], points)[0])


#: Points measured against a polyline at once (bounds the arrays to points x vertices of them).
_POINTS_PER_CHUNK = 512


def distances_to_polyline_m(points: Sequence[LatLon], polyline: Sequence[LatLon]) -> np.ndarray:
    """Shortest distance from each point to a polyline, in metres: each point's own local frame
    (:func:`local_xy_km` with the point as origin), the nearest spot of every segment, in arrays."""
    vertices = np.radians(np.asarray(polyline, dtype=float))
    out = []
    for start in range(0, len(points), _POINTS_PER_CHUNK):
        here = np.radians(np.asarray(points[start : start + _POINTS_PER_CHUNK], dtype=float))
        lat, lon = here[:, :1], here[:, 1:]
        x = (vertices[None, :, 1] - lon) * EARTH_RADIUS_KM * np.cos(lat)  # vertices east of each point
        y = (vertices[None, :, 0] - lat) * EARTH_RADIUS_KM  # and north of it
        ax, ay, dx, dy = x[:, :-1], y[:, :-1], np.diff(x, axis=1), np.diff(y, axis=1)
        length2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(length2 == 0, 0.0, np.clip(-(ax * dx + ay * dy) / length2, 0.0, 1.0))
        out.append(np.hypot(ax + t * dx, ay + t * dy).min(axis=1) * 1000)
    return np.concatenate(out) if out else np.empty(0)


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    lat: float
    lon: float
    kind: str  # city | town | junction

    @property
    def point(self) -> LatLon:
        return (self.lat, self.lon)


@dataclass(frozen=True)
class Edge:
    """One stretch of road between two nodes, drivable both ways."""

    id: str
    start: str
    end: str
    road: str
    road_class: str  # motorway | trunk | primary | urban
    speed_limit_kmh: float
    points: tuple[LatLon, ...]
    chainage_km: tuple[float, ...]

    @property
    def length_km(self) -> float:
        return self.chainage_km[-1]

    def position(self, km: float) -> LatLon:
        return interpolate(self.points, self.chainage_km, km)[0]


@dataclass(frozen=True)
class Leg:
    """An edge as a route drives it: where it starts on the route and in which direction."""

    edge: Edge
    start_km: float
    forward: bool

    @property
    def end_km(self) -> float:
        return self.start_km + self.edge.length_km

    def route_km(self, edge_km: float) -> float:
        """Route distance of a point given by its distance from the edge's own start."""
        return self.start_km + (edge_km if self.forward else self.edge.length_km - edge_km)


@dataclass(frozen=True)
class Route:
    """A named path through the network, as one polyline with its legs."""

    name: str
    nodes: tuple[Node, ...]
    legs: tuple[Leg, ...]
    points: tuple[LatLon, ...]
    chainage_km: tuple[float, ...]

    @property
    def length_km(self) -> float:
        return self.chainage_km[-1]

    def position(self, km: float) -> tuple[LatLon, float]:
        """Point and direction of travel after km along the route (clamped to its ends)."""
        point, i = interpolate(self.points, self.chainage_km, km)
        return point, bearing_deg(self.points[i], self.points[i + 1])

    @cached_property
    def _leg_starts(self) -> tuple[float, ...]:
        return tuple(leg.start_km for leg in self.legs)

    def leg_at(self, km: float) -> Leg:
        """The leg at km; called for every vehicle on every tick, hence the cached starts."""
        i = bisect.bisect_right(self._leg_starts, km) - 1
        return self.legs[max(0, min(i, len(self.legs) - 1))]

    def node_km(self) -> list[tuple[float, Node]]:
        """Each node of the route with its distance from the start."""
        return [(self.legs[0].start_km, self.nodes[0])] + [
            (leg.end_km, node) for leg, node in zip(self.legs, self.nodes[1:])
        ]

    def nearest_place(self, km: float) -> str:
        return min(self.node_km(), key=lambda item: abs(item[0] - km))[1].name

    def distance_m(self, point: LatLon) -> float:
        """How far a point lies from the route's polyline."""
        return distance_to_polyline_m(point, self.points)


@dataclass(eq=False)
class RoadNetwork:
    name: str
    source: str
    nodes: dict[str, Node]
    edges: dict[str, Edge]
    route_nodes: dict[str, tuple[str, ...]]
    _routes: dict[str, Route] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path = CORRIDOR_FILE) -> RoadNetwork:
        doc = json.loads(path.read_text())
        nodes = {n["id"]: Node(n["id"], n["name"], float(n["lat"]), float(n["lon"]), n["kind"]) for n in doc["nodes"]}
        edges = {}
        for e in doc["edges"]:
            points = tuple((float(lat), float(lon)) for lat, lon in e["polyline"])
            for end, point in ((e["from"], points[0]), (e["to"], points[-1])):
                if haversine_km(point, nodes[end].point) > 0.01:
                    raise ValueError(f"{path}: edge {e['id']} does not start or end at node {end}")
            edges[e["id"]] = Edge(
                e["id"],
                e["from"],
                e["to"],
                e["road"],
                e["class"],
                float(e["speed_limit_kmh"]),
                points,
                tuple(polyline_km(points)),
            )
        network = cls(doc["name"], doc["source"], nodes, edges, {r["name"]: tuple(r["nodes"]) for r in doc["routes"]})
        for name in network.route_nodes:
            network.route(name)  # every route must be a connected path
        return network

    @property
    def route_names(self) -> list[str]:
        return list(self.route_nodes)

    def edge_between(self, a: str, b: str) -> tuple[Edge, bool]:
        for edge in self.edges.values():
            if (edge.start, edge.end) == (a, b):
                return edge, True
            if (edge.start, edge.end) == (b, a):
                return edge, False
        raise ValueError(f"the network has no road between {a} and {b}")

    def route(self, name: str) -> Route:
        """A named route, built once from its node path."""
        if name not in self._routes:
            self._routes[name] = self._build_route(name)
        return self._routes[name]

    def _build_route(self, name: str) -> Route:
        if name not in self.route_nodes:
            raise KeyError(f"unknown route {name!r}; known routes: {', '.join(self.route_nodes)}")
        ids = self.route_nodes[name]
        legs: list[Leg] = []
        points: list[LatLon] = []
        km = 0.0
        for a, b in itertools.pairwise(ids):
            edge, forward = self.edge_between(a, b)
            legs.append(Leg(edge, km, forward))
            pts = edge.points if forward else tuple(reversed(edge.points))
            points.extend(pts if not points else pts[1:])
            km += edge.length_km
        return Route(name, tuple(self.nodes[i] for i in ids), tuple(legs), tuple(points), tuple(polyline_km(points)))

    def length_km(self) -> float:
        return sum(e.length_km for e in self.edges.values())


@cache
def load_network() -> RoadNetwork:
    """The corridor shipped with the library (loaded once)."""
    return RoadNetwork.load()
