"""The roads now, from one event-time window of telemetry: minutes per edge and the fastest route.

What the advice query (:mod:`smartcity.advice.query`) hands over per window is small: for each edge a
vehicle reported from, the fixes and their mean speed. From it:

* an edge driven in the window takes its length at that mean speed;
* an edge nobody drove in the window takes its length at its speed limit times the median ratio of
  observed speed to limit over the edges that were driven (the window's general state: a rush hour or
  rain slows every road), or at its limit when no edge was driven;
* the fastest route between two nodes is a shortest path over those minutes (networkx Dijkstra, both
  directions of an edge alike: the corridor's fleet drives one way, so an edge's observations are of
  the direction it is advised in).

The jam a vehicle reports is in its speed, so the window's minutes already carry incidents and rain
where vehicles drive; where none drove, the median ratio is all the window knows.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from smartcity.fleet.roads import RoadNetwork
from smartcity.routes.judge import with_routes
from smartcity.routes.routing import route_label

#: Below this mean speed (km/h) an edge counts as at a standstill: its minutes are its length at this speed.
CRAWL_KMH = 2.0


@dataclass(frozen=True)
class Observed:
    """One edge in one window: how many fixes reported from it and their mean speed (km/h)."""

    fixes: int
    mean_kmh: float


def edge_minutes(network: RoadNetwork, observed: Mapping[str, Observed]) -> dict[str, float]:
    """Minutes to drive each edge of the network now (see the module doc); unknown edge ids are ignored."""
    ratios = [
        max(o.mean_kmh, CRAWL_KMH) / network.edges[edge_id].speed_limit_kmh
        for edge_id, o in observed.items()
        if edge_id in network.edges and o.fixes > 0
    ]
    general = statistics.median(ratios) if ratios else 1.0
    minutes = {}
    for edge_id, edge in network.edges.items():
        seen = observed.get(edge_id)
        kmh = max(seen.mean_kmh, CRAWL_KMH) if seen and seen.fixes > 0 else edge.speed_limit_kmh * general
        minutes[edge_id] = edge.length_km / kmh * 60.0
    return minutes


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
    network: RoadNetwork, observed: Mapping[str, Observed], pairs: Sequence[tuple[str, str]]
) -> list[dict[str, object]]:
    """The advice of one window: for each origin and destination, the fastest route now and its minutes, with
    what it rests on (edges driven in the window, their fixes)."""
    minutes = edge_minutes(network, observed)
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
