"""From fixes to road stretches: which edge each fix is on, and when each vehicle drove each edge.

1. **Edges per fix.** Contract v2 telemetry names the corridor edge a vehicle is on (``edgeId``);
   v1 telemetry has only positions, so those fixes are map-matched: a hidden-Markov match over
   the edges within reach of each fix, scored by distance from the road and by how well the
   distance along the roads between two fixes agrees with the distance between them.
2. **Traversals.** Consecutive fixes on one edge, entered at one end and left at the other, give
   one traversal with its entry and exit times (interpolated at the node between the two fixes
   that straddle it). Traversals that overlapped an incident reported on that edge are kept apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from tqdm import tqdm

from smartcity.fleet.roads import EARTH_RADIUS_KM, Edge, LatLon, RoadNetwork, load_network, local_xy_km

#: Edges farther than this from a fix are not candidates for it (GPS error here is 3.5-7 m, 1 sigma).
MATCH_RADIUS_M = 60.0
#: Scale of the distance-from-road score in map matching (a few GPS sigmas).
MATCH_SIGMA_M = 10.0
#: Scale of the score for disagreement between road distance and straight-line distance of two fixes.
MATCH_BETA_KM = 0.05
#: A vehicle's first or last fix this close to a node counts as starting or ending there.
END_SLACK_KM = 0.25
#: Two fixes further apart than this in time do not bound one traversal (data missing between them).
MAX_GAP = timedelta(seconds=60)


# -- geometry for matching ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Segments:
    """Every polyline segment of the network, in local km, grouped by edge (for vectorised projection)."""

    edge_ids: tuple[str, ...]
    starts: np.ndarray  # index of each edge's first segment
    ax: np.ndarray
    ay: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    km0: np.ndarray  # chainage at the segment's start
    span: np.ndarray  # chainage length of the segment
    origin: LatLon


def _segments(network: RoadNetwork) -> _Segments:
    lats = [n.lat for n in network.nodes.values()]
    lons = [n.lon for n in network.nodes.values()]
    origin = ((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)
    rows, starts = [], []
    for edge in network.edges.values():
        starts.append(len(rows))
        xy = [local_xy_km(p, origin) for p in edge.points]
        for i in range(len(xy) - 1):
            rows.append(
                (
                    *xy[i],
                    xy[i + 1][0] - xy[i][0],
                    xy[i + 1][1] - xy[i][1],
                    edge.chainage_km[i],
                    edge.chainage_km[i + 1] - edge.chainage_km[i],
                )
            )
    a = np.array(rows)
    return _Segments(
        tuple(network.edges), np.array(starts), a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], origin
    )


def _local_xy(seg: _Segments, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.radians(lon - seg.origin[1]) * EARTH_RADIUS_KM * math.cos(math.radians(seg.origin[0]))
    y = np.radians(lat - seg.origin[0]) * EARTH_RADIUS_KM
    return x, y


def project_fixes(network: RoadNetwork, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) of each fix to each edge, and where along the edge (km from its start) it is nearest.

    Arrays of shape (fixes, edges), edges in ``network.edges`` order.
    """
    seg = _segments(network)
    x, y = _local_xy(seg, np.asarray(lat, float), np.asarray(lon, float))
    length2 = seg.dx**2 + seg.dy**2
    t = np.clip(
        ((x[:, None] - seg.ax) * seg.dx + (y[:, None] - seg.ay) * seg.dy) / np.where(length2 > 0, length2, 1), 0, 1
    )
    dist = np.hypot(seg.ax + t * seg.dx - x[:, None], seg.ay + t * seg.dy - y[:, None]) * 1000
    km = seg.km0 + t * seg.span
    ends = np.append(seg.starts[1:], len(seg.ax))
    best_d = np.empty((len(x), len(seg.starts)))
    best_km = np.empty_like(best_d)
    for e, (a, b) in enumerate(zip(seg.starts, ends)):
        i = np.argmin(dist[:, a:b], axis=1)
        best_d[:, e] = dist[np.arange(len(x)), a + i]
        best_km[:, e] = km[np.arange(len(x)), a + i]
    return best_d, best_km


def node_km(edge: Edge, node: str) -> float:
    return 0.0 if node == edge.start else edge.length_km


def shared_node(a: Edge, b: Edge) -> str | None:
    common = {a.start, a.end} & {b.start, b.end}
    return next(iter(sorted(common))) if common else None


def _road_km(a: Edge, pa: float, b: Edge, pb: float) -> float:
    """Distance along the roads from a point on edge a to a point on edge b (inf if not adjacent)."""
    if a.id == b.id:
        return abs(pb - pa)
    node = shared_node(a, b)
    if node is None:
        return math.inf
    return abs(node_km(a, node) - pa) + abs(node_km(b, node) - pb)


def match_edges(network: RoadNetwork, lat: Sequence[float], lon: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """Map-match one vehicle's fixes (in time order) to edges: (edge id per fix, km along that edge).

    Viterbi over candidate edges within MATCH_RADIUS_M: a fix scores by its distance from the
    edge, a step between two fixes by how much the road distance between their matched points
    differs from the straight distance between them, so a vehicle cannot hop to a parallel road
    and back, and a switch between two edges happens at the node they share.
    """
    lat_a, lon_a = np.asarray(lat, float), np.asarray(lon, float)
    if len(lat_a) == 0:
        return [], np.empty(0)
    dist, km = project_fixes(network, lat_a, lon_a)
    edges = [network.edges[e] for e in network.edges]
    seg = _segments(network)
    x, y = _local_xy(seg, lat_a, lon_a)
    candidates = [
        np.flatnonzero(row <= MATCH_RADIUS_M) if (row <= MATCH_RADIUS_M).any() else np.array([row.argmin()])
        for row in dist
    ]
    cost = 0.5 * (dist[0, candidates[0]] / MATCH_SIGMA_M) ** 2
    back: list[np.ndarray] = []
    for i in range(1, len(candidates)):
        prev, here = candidates[i - 1], candidates[i]
        straight = math.hypot(x[i] - x[i - 1], y[i] - y[i - 1])
        step = np.empty((len(here), len(prev)))
        for j, e in enumerate(here):
            for k, p in enumerate(prev):
                road = _road_km(edges[p], km[i - 1, p], edges[e], km[i, e])
                # not adjacent: only if fixes are missing in between; allowed, at a price
                step[j, k] = (abs(road - straight) if road < math.inf else straight + 2.0) / MATCH_BETA_KM
        total = cost[None, :] + step
        best = total.argmin(axis=1)
        back.append(best)
        cost = total[np.arange(len(here)), best] + 0.5 * (dist[i, here] / MATCH_SIGMA_M) ** 2
    path = [int(cost.argmin())]
    for best in reversed(back):
        path.append(int(best[path[-1]]))
    path.reverse()
    chosen = [int(candidates[i][j]) for i, j in enumerate(path)]
    return [seg.edge_ids[e] for e in chosen], km[np.arange(len(chosen)), chosen]


# -- traversals -----------------------------------------------------------------------------------
TRAVERSAL_COLUMNS = ["deviceId", "edgeId", "from_node", "to_node", "enter", "exit", "minutes", "km", "kmh", "matched"]


def _traversals_of(
    network: RoadNetwork, device: str, times: np.ndarray, edge_ids: Sequence[str], km: np.ndarray, matched: str
) -> list[dict[str, object]]:
    runs: list[tuple[str, int, int]] = []
    for i, e in enumerate(edge_ids):
        if runs and runs[-1][0] == e:
            runs[-1] = (e, runs[-1][1], i)
        else:
            runs.append((e, i, i))

    def boundary(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, np.datetime64] | None:
        ea, eb = network.edges[a[0]], network.edges[b[0]]
        node = shared_node(ea, eb)
        t_a, t_b = times[a[2]], times[b[1]]
        if node is None or (t_b - t_a) > np.timedelta64(MAX_GAP):
            return None
        ra, db = abs(node_km(ea, node) - km[a[2]]), abs(node_km(eb, node) - km[b[1]])
        share = ra / (ra + db) if ra + db > 0 else 1.0
        return node, t_a + (t_b - t_a) * share

    def end_node(edge: Edge, at_km: float) -> str | None:
        node = edge.start if at_km <= edge.length_km / 2 else edge.end
        return node if abs(node_km(edge, node) - at_km) <= END_SLACK_KM else None

    rows = []
    for n, run in enumerate(runs):
        edge = network.edges[run[0]]
        if n > 0:
            entry = boundary(runs[n - 1], run)
        else:
            node = end_node(edge, km[run[1]])
            entry = (node, times[run[1]]) if node else None
        if n + 1 < len(runs):
            leave = boundary(run, runs[n + 1])
        else:
            node = end_node(edge, km[run[2]])
            leave = (node, times[run[2]]) if node else None
        if entry is None or leave is None or entry[0] == leave[0]:
            continue  # started or ended mid-edge, data missing, or turned back
        minutes = (leave[1] - entry[1]) / np.timedelta64(1, "s") / 60
        if minutes <= 0:
            continue
        rows.append(
            {
                "deviceId": device,
                "edgeId": edge.id,
                "from_node": entry[0],
                "to_node": leave[0],
                "enter": entry[1],
                "exit": leave[1],
                "minutes": minutes,
                "km": edge.length_km,
                "kmh": edge.length_km / minutes * 60,
                "matched": matched,
            }
        )
    return rows


def edge_traversals(fixes: pd.DataFrame, network: RoadNetwork | None = None, use_edge_ids: bool = True) -> pd.DataFrame:
    """One row per vehicle and edge it drove from one end to the other, with entry and exit times.

    ``fixes`` has deviceId, timestamp, latitude, longitude and, from contract v2, edgeId. A
    vehicle whose every fix carries an edgeId uses it (``matched = 'edgeId'``); any other is
    map-matched from its positions (``matched = 'map-matched'``), as is every vehicle when
    ``use_edge_ids`` is false.
    """
    network = network or load_network()
    rows: list[dict[str, object]] = []
    has_ids = use_edge_ids and "edgeId" in fixes.columns
    for device, own in tqdm(
        fixes.sort_values(["deviceId", "timestamp"]).groupby("deviceId", sort=True),
        desc="edges per fix",
        unit="vehicle",
        leave=False,
        disable=None,
    ):
        times = own["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
        if has_ids and own["edgeId"].notna().all() and own["edgeId"].isin(list(network.edges)).all():
            ids = own["edgeId"].tolist()
            _, km_all = project_fixes(network, own["latitude"].to_numpy(), own["longitude"].to_numpy())
            index = {e: i for i, e in enumerate(network.edges)}
            km = km_all[np.arange(len(ids)), [index[e] for e in ids]]
            matched = "edgeId"
        else:
            ids, km = match_edges(network, own["latitude"].to_numpy(), own["longitude"].to_numpy())
            matched = "map-matched"
        rows += _traversals_of(network, str(device), times, ids, km, matched)
    frame = pd.DataFrame(rows, columns=TRAVERSAL_COLUMNS)
    for col in ("enter", "exit"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
    return frame


def incident_spans(reports: pd.DataFrame, network: RoadNetwork | None = None) -> pd.DataFrame:
    """Incidents from the emergency feed: the edge each is on, when reported active and resolved.

    ``end`` is NaT for an incident not (yet) reported resolved.
    """
    network = network or load_network()
    columns = ["incidentId", "severity", "edgeId", "edge_km", "start", "end"]
    if reports.empty:
        return pd.DataFrame(columns=columns)
    first = reports.sort_values("timestamp").groupby("incidentId", sort=True).first()
    dist, km = project_fixes(network, first["latitude"].to_numpy(), first["longitude"].to_numpy())
    nearest = dist.argmin(axis=1)
    ids = list(network.edges)
    active = reports[reports["status"] == "Active"].groupby("incidentId")["timestamp"].min()
    resolved = reports[reports["status"] == "Resolved"].groupby("incidentId")["timestamp"].min()
    frame = pd.DataFrame(
        {
            "incidentId": first.index,
            "severity": first["severity"].to_numpy(),
            "edgeId": [ids[i] for i in nearest],
            "edge_km": km[np.arange(len(first)), nearest],
            "start": active.reindex(first.index).to_numpy(),
            "end": resolved.reindex(first.index).to_numpy(),
        }
    )
    frame["start"] = frame["start"].fillna(frame["end"])  # resolved before the data starts: span unknown
    return frame.reset_index(drop=True)[columns]


def flag_incidents(traversals: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Traversals with the incident (id and severity) that was active on their edge while they drove it."""
    out = traversals.copy()
    out["incidentId"], out["severity"] = None, None
    for span in spans.itertuples():
        end = span.end if pd.notna(span.end) else pd.Timestamp.max.tz_localize("UTC")
        hit = (
            (out["edgeId"] == span.edgeId)
            & (out["enter"] < end)
            & (out["exit"] > span.start)
            & out["incidentId"].isna()
        )
        out.loc[hit, "incidentId"] = span.incidentId
        out.loc[hit, "severity"] = span.severity
    return out
