"""The roads now, from one event-time window of telemetry: minutes per edge and the fastest route.

What the advice query (:mod:`smartcity.advice.query`) hands over per window is small: for each edge a
vehicle reported from, the fixes and their mean speed. From it:

* an edge driven in the window takes its length at that mean speed;
* an edge nobody drove in the window takes its length at its speed limit times a ratio of observed
  speed to limit learnt from the edges that were driven (:class:`Context` says which): with an active
  incident on it, the lowest ratio seen in the window (as slow as the slowest road now); wet (its
  nearest weather station reports rain), the median ratio of the wet edges driven; otherwise the
  median of the dry ones; each falls back on the median of all edges driven, or on the limit when
  no edge was driven;
* the fastest route between two nodes is a shortest path over those minutes (networkx Dijkstra, both
  directions of an edge alike: the corridor's fleet drives one way, so an edge's observations are of
  the direction it is advised in).

The jam a vehicle reports is in its speed, so the window's minutes carry incidents and rain where
vehicles drive; where none drove, the incidents reported (``emergency_data``) and the rain the weather
stations report (``weather_data``) say which of the window's observations stand for the edge.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from smartcity.fleet.roads import LatLon, RoadNetwork, distance_to_polyline_m, haversine_km
from smartcity.routes.judge import with_routes
from smartcity.routes.routing import route_label

#: Below this mean speed (km/h) an edge counts as at a standstill: its minutes are its length at this speed.
CRAWL_KMH = 2.0
#: An incident reported this close to an edge's polyline (m) is on that edge.
INCIDENT_ON_EDGE_M = 100.0
#: A station reporting at least this precipitation rate (mm/h) makes the edges nearest to it wet.
WET_MM_H = 0.5


@dataclass(frozen=True)
class Context:
    """What the advice knows besides speeds: where the active incidents are and what each weather station
    reports (the latest report of each)."""

    incidents: Mapping[str, LatLon] = field(default_factory=dict)  # active incident id -> where
    stations: Mapping[str, tuple[LatLon, float]] = field(default_factory=dict)  # station -> (where, mm/h)

    def incident_edges(self, network: RoadNetwork) -> set[str]:
        """Edges an active incident is on."""
        return {
            edge.id
            for point in self.incidents.values()
            for edge in network.edges.values()
            if distance_to_polyline_m(point, edge.points) <= INCIDENT_ON_EDGE_M
        }

    def wet_edges(self, network: RoadNetwork) -> set[str]:
        """Edges whose nearest station (from the edge's middle) reports rain."""
        if not self.stations:
            return set()
        wet = set()
        for edge in network.edges.values():
            middle = edge.position(edge.length_km / 2)
            _, rate = min(self.stations.values(), key=lambda s: haversine_km(s[0], middle))
            if rate >= WET_MM_H:
                wet.add(edge.id)
        return wet


@dataclass(frozen=True)
class Observed:
    """One edge in one window: how many fixes reported from it and their mean speed (km/h)."""

    fixes: int
    mean_kmh: float


def edge_minutes(
    network: RoadNetwork, observed: Mapping[str, Observed], context: Context | None = None
) -> dict[str, float]:
    """Minutes to drive each edge of the network now (see the module doc); unknown edge ids are ignored."""
    context = context or Context()
    ratios = {
        edge_id: max(o.mean_kmh, CRAWL_KMH) / network.edges[edge_id].speed_limit_kmh
        for edge_id, o in observed.items()
        if edge_id in network.edges and o.fixes > 0
    }
    general = statistics.median(ratios.values()) if ratios else 1.0
    wet = context.wet_edges(network)
    wet_ratio = _median([r for e, r in ratios.items() if e in wet], general)
    dry_ratio = _median([r for e, r in ratios.items() if e not in wet], general)
    blocked = context.incident_edges(network)
    slowest = min(ratios.values(), default=general)
    minutes = {}
    for edge_id, edge in network.edges.items():
        unseen = slowest if edge_id in blocked else wet_ratio if edge_id in wet else dry_ratio
        minutes[edge_id] = edge.length_km / max(edge.speed_limit_kmh * ratios.get(edge_id, unseen), CRAWL_KMH) * 60.0
    return minutes


def _median(values: Sequence[float], otherwise: float) -> float:
    return statistics.median(values) if values else otherwise


def fastest(
    network: RoadNetwork, minutes: Mapping[str, float], origin: str, destination: str
) -> tuple[list[str], float]:
    """The node path of the fastest route from ``origin`` to ``destination`` over ``minutes``, and its minutes."""
    graph = nx.Graph()
    graph.add_weighted_edges_from((e.start, e.end, minutes[e.id]) for e in network.edges.values())
    length, path = nx.single_source_dijkstra(graph, origin, destination, weight="weight")
    return list(path), float(length)


def corridor_pairs(network: RoadNetwork) -> list[tuple[str, str]]:
    """The origins and destinations advice is given for: the first and last node of each of the corridor's
    routes (London -> Birmingham)."""
    return sorted({(nodes[0], nodes[-1]) for nodes in network.route_nodes.values()})


def advisable(network: RoadNetwork) -> tuple[RoadNetwork, dict[tuple[str, ...], str]]:
    """The network with every route advice can give as a route a simulated vehicle can drive (each simple path
    between a corridor pair: a fastest path never visits a node twice), and the route name of each path."""
    graph = nx.Graph()
    graph.add_edges_from((e.start, e.end) for e in network.edges.values())
    paths = [
        tuple(path)
        for origin, destination in corridor_pairs(network)
        for path in nx.all_simple_paths(graph, origin, destination)
    ]
    return with_routes(network, sorted(paths))


def advise(
    network: RoadNetwork,
    observed: Mapping[str, Observed],
    pairs: Sequence[tuple[str, str]],
    context: Context | None = None,
) -> list[dict[str, object]]:
    """The advice of one window: for each origin and destination, the fastest route now and its minutes, with
    what it rests on (edges driven in the window, their fixes)."""
    minutes = edge_minutes(network, observed, context)
    driven = [o for e, o in observed.items() if e in network.edges and o.fixes > 0]
    advice = []
    for origin, destination in pairs:
        nodes, total = fastest(network, minutes, origin, destination)
        advice.append(
            {
                "origin": origin,
                "destination": destination,
                "route": route_label(network, nodes),
                "nodes": nodes,
                "edges": [network.edge_between(a, b)[0].id for a, b in itertools.pairwise(nodes)],
                "minutes": round(total, 2),
                "edgesObserved": len(driven),
                "fixes": sum(o.fixes for o in driven),
            }
        )
    return advice
