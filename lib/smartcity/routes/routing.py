"""The fastest route now, and how sure the model is of it.

4. **Fastest route.** Time-dependent shortest path with networkx over a time-expanded graph
   (one node per road node and minute, one arc per edge and entry minute), so an edge costs what
   it costs *when the vehicle gets there*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import networkx as nx
import numpy as np
import pandas as pd
from tqdm import tqdm

from smartcity.fleet.roads import Edge, LatLon, RoadNetwork
from smartcity.routes.edge_times import (
    EdgeTimes,
    KnownIncident,
    delay_minutes,
    path_minutes,
    slot_of,
)
from smartcity.routes.matching import incident_spans

#: Horizon of the time-expanded graph: no London-Birmingham trip takes longer.
HORIZON = timedelta(hours=6)


def known_incidents(reports: pd.DataFrame, model: EdgeTimes, at: datetime) -> list[KnownIncident]:
    """Incidents reported Active and not Resolved by ``at`` (what a traffic service knows then).

    Each is expected to last its severity's median observed duration from its report.
    """
    seen = reports[reports["timestamp"] <= pd.Timestamp(at)]
    spans = incident_spans(seen, model.network)
    typical = model.incident_minutes["median_minutes"] if not model.incident_minutes.empty else pd.Series(dtype=float)
    fallback = float(typical.median()) if len(typical) else 0.0
    out = []
    for span in spans[spans["end"].isna()].itertuples():
        minutes = float(typical.get(span.severity, fallback))
        out.append(
            KnownIncident(
                span.incidentId,
                span.edgeId,
                span.severity,
                max(span.start.to_pydatetime() + timedelta(minutes=minutes), at),
            )
        )
    return out


class Router:
    """Time-dependent fastest paths over a time-expanded graph (networkx Dijkstra).

    Nodes are (road node, minute since ``start``); an arc leaves (u, k) for (v, k + the edge's
    minutes when entered at minute k), so waiting for a queue to clear or taking a longer road
    that is faster at that hour falls out of an ordinary shortest path. Graphs are built once per
    set of known incidents and reused for every departure in the window.
    """

    def __init__(self, model: EdgeTimes, start: datetime, end: datetime):
        self.model = model
        self.start = start.replace(second=0, microsecond=0)
        self.minutes = int((end - self.start + HORIZON).total_seconds() // 60) + 1
        self._graphs: dict[frozenset[KnownIncident], nx.DiGraph] = {}

    def _graph(self, incidents: frozenset[KnownIncident]) -> nx.DiGraph:
        if incidents in self._graphs:
            return self._graphs[incidents]
        model, k_all = self.model, np.arange(self.minutes)
        slots = np.array([slot_of(self.start + timedelta(minutes=int(k))) for k in k_all])
        arcs = []
        for edge in model.network.edges.values():
            for u, v in ((edge.start, edge.end), (edge.end, edge.start)):
                weight = model.slot_minutes(edge.id, u)[slots].copy()
                for inc in incidents:
                    if inc.edge_id == edge.id:
                        until = (inc.expected_end - self.start).total_seconds() / 60
                        weight[k_all < until] += delay_minutes(model, inc.severity)
                landing = k_all + np.maximum(1, np.rint(weight)).astype(int)
                ok = landing < self.minutes
                arcs += [((u, int(k)), (v, int(k2)), float(w)) for k, k2, w in zip(k_all[ok], landing[ok], weight[ok])]
        graph = nx.DiGraph()
        graph.add_weighted_edges_from(arcs)
        graph.add_weighted_edges_from(((model.destination, int(k)), "arrive", 0.0) for k in k_all)
        self._graphs[incidents] = graph
        return graph

    def fastest(self, depart: datetime, incidents: Iterable[KnownIncident] = ()) -> list[str]:
        """Node path of the fastest route leaving at ``depart`` (given the incidents known then)."""
        known = frozenset(incidents)
        k = int((depart - self.start).total_seconds() // 60)
        if not 0 <= k < self.minutes:
            raise ValueError(f"departure {depart} is outside this router's window from {self.start}")
        path = nx.dijkstra_path(self._graph(known), (self.model.origin, k), "arrive", weight="weight")
        nodes = [node for node, _ in path[:-1]]
        return [n for i, n in enumerate(nodes) if i == 0 or n != nodes[i - 1]]


def short_road(edge: Edge) -> str:
    """'A5' for 'A5 Watling Street', 'A41' for 'A41 Finchley Road': how drivers name a road."""
    return edge.road.split()[0].split("/")[0]


def route_label(network: RoadNetwork, nodes: Sequence[str]) -> str:
    """A named route's name if the path is one, else the roads it takes ('A40 › M25 › M1 › M6')."""
    for name, route_nodes in network.route_nodes.items():
        if tuple(nodes) == tuple(route_nodes):
            return name
    roads: list[str] = []
    for a, b in itertools.pairwise(nodes):
        road = short_road(network.edge_between(a, b)[0])
        if not roads or roads[-1] != road:
            roads.append(road)
    return " › ".join(roads)


def path_km(network: RoadNetwork, nodes: Sequence[str]) -> float:
    return sum(network.edge_between(a, b)[0].length_km for a, b in itertools.pairwise(nodes))


def path_points(network: RoadNetwork, nodes: Sequence[str]) -> list[LatLon]:
    """The polyline of a node path, in driving order."""
    points: list[LatLon] = []
    for a, b in itertools.pairwise(nodes):
        edge, forward = network.edge_between(a, b)
        pts = list(edge.points if forward else reversed(edge.points))
        points.extend(pts if not points else pts[1:])
    return points


def spread(model: EdgeTimes) -> tuple[float, int]:
    """Typical relative error of a trip prediction (RMS of leave-one-vehicle-out errors) and on how many trips."""
    errors = model.trip_errors["error"] if not model.trip_errors.empty else pd.Series(dtype=float)
    errors = errors.astype(float)
    return (float(np.sqrt((errors**2).mean())) if len(errors) else math.nan), len(errors)


def suggest(model: EdgeTimes, departures: Sequence[datetime], weights: dict[str, float] | None = None) -> pd.DataFrame:
    """The fastest route for each departure with its expected time, how sure, and the named routes' times.

    How sure: ``± min`` is the typical error of a predicted trip (leave-one-vehicle-out), ``km
    observed`` the share of the route on edges someone drove, ``observations`` the clean
    traversals of its edges from an hour before departure to an hour after the expected arrival.
    ``saves vs mix min`` compares with the fleet's route mix (``weights``) at the same departure.
    """
    network = model.network
    router = Router(model, min(departures), max(departures))
    rms, _ = spread(model)
    clean = model.traversals[model.traversals["incidentId"].isna()]
    seen_edges = set(clean["edgeId"])
    rows = []
    for depart in tqdm(departures, desc="fastest routes", unit="departure", disable=None):
        nodes = router.fastest(depart)
        expected = path_minutes(model, nodes, depart)
        legs = [network.edge_between(a, b)[0] for a, b in itertools.pairwise(nodes)]
        window = clean[
            (clean["enter"] >= pd.Timestamp(depart) - timedelta(hours=1))
            & (clean["enter"] <= pd.Timestamp(depart) + timedelta(minutes=expected + 60))
        ]
        row = {
            "departs": depart.strftime("%H:%M"),
            "suggested": route_label(network, nodes),
            "km": round(path_km(network, nodes), 1),
            "expected min": round(expected, 1),
            "± min": round(expected * rms, 1) if not math.isnan(rms) else math.nan,
            "km observed": f"{sum(e.length_km for e in legs if e.id in seen_edges) / path_km(network, nodes):.0%}",
            "observations": int(window["edgeId"].isin({e.id for e in legs}).sum()),
        }
        for name in network.route_names:
            row[f"{name} min"] = round(path_minutes(model, network.route_nodes[name], depart), 1)
        if weights:
            total = sum(weights.values())
            mix = sum(w * row[f"{n} min"] for n, w in weights.items()) / total
            row["saves vs mix min"] = round(mix - expected, 1)
        row["nodes"] = nodes
        rows.append(row)
    return pd.DataFrame(rows).set_index("departs")


#: Departure hours of the suggestion table: the morning peak and either side of it.
DEPARTURE_HOURS = range(6, 13)


def departures_by_hour(day: datetime, hours: Iterable[int] = DEPARTURE_HOURS) -> list[datetime]:
    """One departure at each full hour of ``day`` (in its own time zone, UTC for the lab's runs)."""
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return [start + timedelta(hours=h) for h in hours]
