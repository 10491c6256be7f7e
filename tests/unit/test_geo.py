from __future__ import annotations

import pytest

from smartcity import geo

LONDON = (51.5074, -0.1278)
BIRMINGHAM = (52.4862, -1.8904)


def test_haversine_london_birmingham() -> None:
    assert geo.haversine_km(LONDON, BIRMINGHAM) == pytest.approx(163, abs=2)


@pytest.mark.parametrize(("to", "bearing"), [((52.0, -0.1278), 0.0), ((51.5074, 0.5), 90.0), ((51.0, -0.1278), 180.0)])
def test_bearing_cardinal_points(to: tuple[float, float], bearing: float) -> None:
    assert geo.bearing_deg(LONDON, to) == pytest.approx(bearing, abs=0.5)


def test_route_length_and_positions() -> None:
    route = geo.default_route()
    assert 170 < route.length_km < 200
    assert route.position(0)[0] == route.points[0]
    assert route.position(route.length_km + 5)[0] == route.points[-1]
    middle, heading = route.position(route.length_km / 2)
    assert 51.5 < middle[0] < 52.5 and 0 <= heading < 360


def test_offset_moves_by_metres() -> None:
    moved = geo.offset_m(LONDON, 100.0, 0.0)
    assert geo.haversine_km(LONDON, moved) == pytest.approx(0.1, rel=1e-3)
