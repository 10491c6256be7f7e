"""Geometry on the WGS84 sphere: distances, bearings and positions along a route polyline."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088

LatLon = tuple[float, float]

#: London (Charing Cross) to Birmingham (New Street) by the M1 and M6: junctions and towns the
#: motorway passes, coordinates read off OpenStreetMap to about 100 m.
LONDON_BIRMINGHAM_M1_M6: tuple[tuple[str, LatLon], ...] = (
    ("London, Charing Cross", (51.5074, -0.1278)),
    ("A41 Swiss Cottage", (51.5432, -0.1746)),
    ("M1 J1 Staples Corner", (51.5707, -0.2337)),
    ("M1 J4 Edgware", (51.6367, -0.2712)),
    ("M1 J6A (M25)", (51.7070, -0.3660)),
    ("M1 J10 Luton Airport", (51.8611, -0.4233)),
    ("M1 J13 Milton Keynes", (52.0190, -0.6290)),
    ("M1 J15 Northampton", (52.1932, -0.8896)),
    ("M1 J16 Weedon", (52.2392, -1.0230)),
    ("M1 Watford Gap", (52.3065, -1.1220)),
    ("M1 J19 / M6 Catthorpe", (52.4040, -1.1860)),
    ("M6 J1 Rugby", (52.4117, -1.2297)),
    ("M6 J2 Coventry", (52.4367, -1.4182)),
    ("M6 J3 Bedworth", (52.4757, -1.5037)),
    ("M6 J4 Coleshill", (52.5050, -1.7094)),
    ("M6 J5 Castle Bromwich", (52.5063, -1.7865)),
    ("A38 Aston Expressway", (52.4957, -1.8773)),
    ("Birmingham, New Street", (52.4778, -1.8983)),
)


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


@dataclass(frozen=True)
class Route:
    """A polyline with cumulative distances, so positions can be looked up by distance travelled."""

    names: tuple[str, ...]
    points: tuple[LatLon, ...]
    chainage_km: tuple[float, ...]

    @classmethod
    def from_waypoints(cls, waypoints: Sequence[tuple[str, LatLon]]) -> Route:
        if len(waypoints) < 2:
            raise ValueError("a route needs at least two waypoints")
        names = tuple(n for n, _ in waypoints)
        points = tuple(p for _, p in waypoints)
        chainage = [0.0]
        for a, b in zip(points, points[1:]):
            chainage.append(chainage[-1] + haversine_km(a, b))
        return cls(names, points, tuple(chainage))

    @property
    def length_km(self) -> float:
        return self.chainage_km[-1]

    def position(self, km: float) -> tuple[LatLon, float]:
        """Point and bearing after travelling km along the route (clamped to its ends)."""
        km = min(max(km, 0.0), self.length_km)
        i = min(bisect.bisect_right(self.chainage_km, km) - 1, len(self.points) - 2)
        a, b = self.points[i], self.points[i + 1]
        seg = self.chainage_km[i + 1] - self.chainage_km[i]
        t = 0.0 if seg == 0 else (km - self.chainage_km[i]) / seg
        point = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
        return point, bearing_deg(a, b)

    def nearest_waypoint(self, km: float) -> str:
        i = min(range(len(self.chainage_km)), key=lambda j: abs(self.chainage_km[j] - km))
        return self.names[i]


def default_route() -> Route:
    return Route.from_waypoints(LONDON_BIRMINGHAM_M1_M6)
