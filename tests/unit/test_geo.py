from __future__ import annotations

import pytest

from smartcity.fleet import roads

LONDON = (51.5074, -0.1278)
BIRMINGHAM = (52.4862, -1.8904)


@pytest.fixture(scope="module")
def network() -> roads.RoadNetwork:
    return roads.load_network()


def test_haversine_london_birmingham() -> None:
    assert roads.haversine_km(LONDON, BIRMINGHAM) == pytest.approx(163, abs=2)


@pytest.mark.parametrize(("to", "bearing"), [((52.0, -0.1278), 0.0), ((51.5074, 0.5), 90.0), ((51.0, -0.1278), 180.0)])
def test_bearing_cardinal_points(to: tuple[float, float], bearing: float) -> None:
    assert roads.bearing_deg(LONDON, to) == pytest.approx(bearing, abs=0.5)


def test_offset_moves_by_metres() -> None:
    moved = roads.offset_m(LONDON, 100.0, 0.0)
    assert roads.haversine_km(LONDON, moved) == pytest.approx(0.1, rel=1e-3)


def test_distance_to_polyline() -> None:
    line = [(51.5, -0.1), (51.5, 0.1)]
    assert roads.distance_to_polyline_m(roads.offset_m((51.5, 0.0), 25.0, 0.0), line) == pytest.approx(25.0, abs=0.5)
    assert roads.distance_to_polyline_m((51.5, 0.2), line) == pytest.approx(6930, rel=0.01)  # past the end


def test_three_distinct_routes_from_london_to_birmingham(network: roads.RoadNetwork) -> None:
    assert len(network.route_names) >= 3
    edge_sets = [{leg.edge.id for leg in network.route(name).legs} for name in network.route_names]
    for name in network.route_names:
        route = network.route(name)
        assert route.nodes[0].name.startswith("London") and route.nodes[-1].name.startswith("Birmingham")
        # lengths come from the geometry; straight chords make them a few per cent short of driven
        assert 168 <= route.length_km <= 200, (name, route.length_km)
    motorways = {name: {leg.edge.road for leg in network.route(name).legs} for name in network.route_names}
    assert {"M1", "M6"} <= motorways["M1/M6"] and "M40" in motorways["M40"]
    assert not {"M1", "M6", "M40"} & motorways["A5/A45"]
    shared = edge_sets[0] & edge_sets[1] & edge_sets[2]
    assert len(shared) <= 1, "the routes may share the first street in London, not the road between"


def test_the_m1_matches_a_routing_services_leg_lengths(network: roads.RoadNetwork) -> None:
    # A public routing-service test suite expects 83.7 km of M1 from J10 to the M6 and 51.9 km of
    # M6 from there to the A38(M); the corridor's chords may be a few per cent shorter, not more.
    route = network.route("M1/M6")
    km = {node.id: km for km, node in route.node_km()}
    assert 0.95 * 83.7 <= km["m1_j19"] - km["m1_j10"] <= 83.7
    assert 0.94 * 51.9 <= km["m6_j6"] - km["m1_j19"] <= 51.9


def test_polylines_are_dense_and_join_their_nodes(network: roads.RoadNetwork) -> None:
    for edge in network.edges.values():
        gaps = [b - a for a, b in zip(edge.chainage_km, edge.chainage_km[1:])]
        assert max(gaps) <= 10.0, f"{edge.id}: a {max(gaps):.1f} km straight stretch"
        assert edge.road_class in {"motorway", "trunk", "primary", "urban"} and 30 <= edge.speed_limit_kmh <= 113
        assert roads.haversine_km(edge.points[0], network.nodes[edge.start].point) < 0.01


def test_positions_follow_the_route(network: roads.RoadNetwork) -> None:
    route = network.route("M40")
    assert route.position(0)[0] == route.points[0]
    assert route.position(route.length_km + 5)[0] == route.points[-1]
    for km in (1.0, 50.0, 120.0, 170.0):
        point, heading = route.position(km)
        assert route.distance_m(point) < 1.0 and 0 <= heading < 360
    assert route.leg_at(100.0).edge.road == "M40"
    assert route.nearest_place(0.5).startswith("London")


def test_unknown_route_is_named(network: roads.RoadNetwork) -> None:
    with pytest.raises(KeyError, match="unknown route 'M99'"):
        network.route("M99")
