"""Route suggestions from what the sensors saw, and the proof that they are better.

The pipeline's telemetry says how long each stretch of road took, when. From the lake:

1. **Edges per fix.** Contract v2 telemetry names the corridor edge a vehicle is on (``edgeId``);
   v1 telemetry has only positions, so those fixes are map-matched: a hidden-Markov match over
   the edges within reach of each fix, scored by distance from the road and by how well the
   distance along the roads between two fixes agrees with the distance between them.
2. **Traversals.** Consecutive fixes on one edge, entered at one end and left at the other, give
   one traversal with its entry and exit times (interpolated at the node between the two fixes
   that straddle it). Traversals that overlapped an incident reported on that edge are kept apart.
3. **Edge times.** Speed, as a share of the speed limit, is modelled on a log scale as an edge
   effect plus a road-class effect per half hour of the day (Tukey's median polish: robust to the
   odd slow driver), and each (edge, direction, half hour) with observations is pulled towards
   what it saw. Edges nobody drove get their road class's speed at that time. What incidents and
   rain did is measured from the traversals too (:attr:`EdgeTimes.incident_delay`,
   :attr:`EdgeTimes.rain_effect`); known incidents add their observed delay to the edge they are on.
4. **Fastest route.** Time-dependent shortest path with networkx over a time-expanded graph
   (one node per road node and minute, one arc per edge and entry minute), so an edge costs what
   it costs *when the vehicle gets there*.
5. **How sure.** Each observed trip is predicted by a model fitted without that vehicle
   (leave-one-vehicle-out); the spread of those errors is how far a suggestion's time may be off.
6. **Proof.** :func:`judge` re-simulates another seed's fleet twice with the same incidents and
   weather, the same vehicles leaving at the same times: once on the fleet's own route mix, once
   on the suggested routes; minutes saved are measured, not predicted.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from tqdm import tqdm

from smartcity.stream import lake
from smartcity.params import Params, route_weights
from smartcity.fleet.roads import Edge, LatLon, RoadNetwork, haversine_km, load_network, local_xy_km

#: Width of a time-of-day slot of the edge-time model.
SLOT_MINUTES = 30
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
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
#: Weight of the model's prior against a cell's own observations (in observations).
PRIOR_WEIGHT = 1.0
#: Horizon of the time-expanded graph: no London-Birmingham trip takes longer.
HORIZON = timedelta(hours=6)


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
            rows.append((*xy[i], xy[i + 1][0] - xy[i][0], xy[i + 1][1] - xy[i][1], edge.chainage_km[i],
                         edge.chainage_km[i + 1] - edge.chainage_km[i]))
    a = np.array(rows)
    return _Segments(tuple(network.edges), np.array(starts), a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], origin)


def _local_xy(seg: _Segments, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    earth = 6371.0088
    x = np.radians(lon - seg.origin[1]) * earth * math.cos(math.radians(seg.origin[0]))
    y = np.radians(lat - seg.origin[0]) * earth
    return x, y


def project_fixes(network: RoadNetwork, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) of each fix to each edge, and where along the edge (km from its start) it is nearest.

    Arrays of shape (fixes, edges), edges in ``network.edges`` order.
    """
    seg = _segments(network)
    x, y = _local_xy(seg, np.asarray(lat, float), np.asarray(lon, float))
    length2 = seg.dx**2 + seg.dy**2
    t = np.clip(((x[:, None] - seg.ax) * seg.dx + (y[:, None] - seg.ay) * seg.dy) / np.where(length2 > 0, length2, 1), 0, 1)
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


def _node_km(edge: Edge, node: str) -> float:
    return 0.0 if node == edge.start else edge.length_km


def _shared_node(a: Edge, b: Edge) -> str | None:
    common = {a.start, a.end} & {b.start, b.end}
    return next(iter(sorted(common))) if common else None


def _road_km(a: Edge, pa: float, b: Edge, pb: float) -> float:
    """Distance along the roads from a point on edge a to a point on edge b (inf if not adjacent)."""
    if a.id == b.id:
        return abs(pb - pa)
    node = _shared_node(a, b)
    if node is None:
        return math.inf
    return abs(_node_km(a, node) - pa) + abs(_node_km(b, node) - pb)


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
    candidates = [np.flatnonzero(row <= MATCH_RADIUS_M) if (row <= MATCH_RADIUS_M).any() else np.array([row.argmin()])
                  for row in dist]
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


def _traversals_of(network: RoadNetwork, device: str, times: np.ndarray, edge_ids: Sequence[str], km: np.ndarray,
                   matched: str) -> list[dict[str, object]]:
    runs: list[tuple[str, int, int]] = []
    for i, e in enumerate(edge_ids):
        if runs and runs[-1][0] == e:
            runs[-1] = (e, runs[-1][1], i)
        else:
            runs.append((e, i, i))

    def boundary(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, np.datetime64] | None:
        ea, eb = network.edges[a[0]], network.edges[b[0]]
        node = _shared_node(ea, eb)
        t_a, t_b = times[a[2]], times[b[1]]
        if node is None or (t_b - t_a) > np.timedelta64(MAX_GAP):
            return None
        ra, db = abs(_node_km(ea, node) - km[a[2]]), abs(_node_km(eb, node) - km[b[1]])
        share = ra / (ra + db) if ra + db > 0 else 1.0
        return node, t_a + (t_b - t_a) * share

    def end_node(edge: Edge, at_km: float) -> str | None:
        node = edge.start if at_km <= edge.length_km / 2 else edge.end
        return node if abs(_node_km(edge, node) - at_km) <= END_SLACK_KM else None

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
        rows.append({"deviceId": device, "edgeId": edge.id, "from_node": entry[0], "to_node": leave[0],
                     "enter": entry[1], "exit": leave[1], "minutes": minutes, "km": edge.length_km,
                     "kmh": edge.length_km / minutes * 60, "matched": matched})
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
    for device, own in tqdm(fixes.sort_values(["deviceId", "timestamp"]).groupby("deviceId", sort=True),
                            desc="edges per fix", unit="vehicle", leave=False, disable=None):
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
    frame = pd.DataFrame({
        "incidentId": first.index, "severity": first["severity"].to_numpy(),
        "edgeId": [ids[i] for i in nearest], "edge_km": km[np.arange(len(first)), nearest],
        "start": active.reindex(first.index).to_numpy(), "end": resolved.reindex(first.index).to_numpy(),
    })
    frame["start"] = frame["start"].fillna(frame["end"])  # resolved before the data starts: span unknown
    return frame.reset_index(drop=True)[columns]


def flag_incidents(traversals: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Traversals with the incident (id and severity) that was active on their edge while they drove it."""
    out = traversals.copy()
    out["incidentId"], out["severity"] = None, None
    for span in spans.itertuples():
        end = span.end if pd.notna(span.end) else pd.Timestamp.max.tz_localize("UTC")
        hit = (out["edgeId"] == span.edgeId) & (out["enter"] < end) & (out["exit"] > span.start) & out["incidentId"].isna()
        out.loc[hit, "incidentId"] = span.incidentId
        out.loc[hit, "severity"] = span.severity
    return out


# -- observations from the lake -------------------------------------------------------------------
@dataclass
class Observations:
    """What the sensors reported, as the route model needs it."""

    fixes: pd.DataFrame
    incidents: pd.DataFrame  # emergency_data reports
    weather: pd.DataFrame


def _frame(cfg: Params, table: str, columns: list[str]) -> pd.DataFrame:
    return lake.read_table(cfg, table, columns=columns).to_pandas()


def read_observations(cfg: Params) -> Observations:
    """Telemetry, incident reports and weather of a run, from its lake."""
    fixes = _frame(cfg, "vehicle_data", ["deviceId", "timestamp", "latitude", "longitude", "speed", "route", "edgeId"])
    if fixes.empty:
        raise ValueError(f"no vehicle telemetry in the lake of profile {cfg.profile!r}: run 01_simulate and 02_stream first")
    incidents = _frame(cfg, "emergency_data", ["incidentId", "severity", "status", "timestamp", "latitude", "longitude"])
    weather = _frame(cfg, "weather_data", ["stationName", "timestamp", "latitude", "longitude", "precipitation"])
    return Observations(fixes, incidents, weather)


# -- the edge-time model --------------------------------------------------------------------------
def _slot(at: pd.Series | datetime) -> pd.Series | int:
    if isinstance(at, pd.Series):
        return (at.dt.hour * 60 + at.dt.minute) // SLOT_MINUTES
    return (at.hour * 60 + at.minute) // SLOT_MINUTES


def _median_polish(frame: pd.DataFrame, iterations: int = 10) -> tuple[pd.Series, pd.DataFrame]:
    """Edge effects and class x slot effects of log speed ratio (Tukey's robust two-way fit)."""
    r = frame["r"].to_numpy()
    edge_code, edges = pd.factorize(frame["edgeId"])
    cell_code, cells = pd.factorize(pd.MultiIndex.from_arrays([frame["road_class"], frame["slot"]]))
    edge_class = pd.Series(frame["road_class"].to_numpy(), index=edge_code).groupby(level=0).first().sort_index()
    a = np.zeros(len(edges))
    for _ in range(iterations):
        b = pd.Series(r - a[edge_code]).groupby(cell_code).median().sort_index().to_numpy()
        new = pd.Series(r - b[cell_code]).groupby(edge_code).median().sort_index().to_numpy()
        # each class's typical edge has effect 0: the level belongs to the class x slot effect
        new = new - pd.Series(new).groupby(edge_class.to_numpy()).transform("median").to_numpy()
        converged = np.abs(new - a).max() < 1e-6
        a = new
        if converged:
            break
    b = pd.Series(r - a[edge_code]).groupby(cell_code).median().sort_index().to_numpy()
    class_slot = pd.DataFrame({"road_class": cells.get_level_values(0), "slot": cells.get_level_values(1), "b": b})
    return pd.Series(a, index=edges), class_slot


@dataclass
class EdgeTimes:
    """Expected minutes to drive each edge, by direction and time of day, learnt from traversals."""

    network: RoadNetwork
    traversals: pd.DataFrame  # every traversal, incident-flagged
    edge_effect: pd.Series
    class_slot: pd.DataFrame  # road_class, slot, b
    cells: pd.DataFrame  # (edgeId, from_node, slot) -> n, mean r (clean traversals)
    incident_delay: pd.DataFrame  # severity -> traversals, median extra minutes
    incident_minutes: pd.DataFrame  # severity -> incidents, median minutes active
    rain_effect: pd.DataFrame = field(default_factory=pd.DataFrame)
    trip_errors: pd.DataFrame = field(default_factory=pd.DataFrame)  # leave-one-vehicle-out
    _table: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)  # cache

    @property
    def origin(self) -> str:
        return _ends(self.network)[0]

    @property
    def destination(self) -> str:
        return _ends(self.network)[1]

    def _class_curve(self, road_class: str) -> np.ndarray:
        """The class x slot effect for every slot of the day, interpolated between observed slots."""
        key = ("class", road_class)
        if key not in self._table:
            cls = self.class_slot[self.class_slot["road_class"] == road_class]
            if cls.empty:  # a class nobody drove: the median of the others
                cls = self.class_slot.groupby("slot", as_index=False)["b"].median()
            cls = cls.sort_values("slot")
            self._table[key] = np.interp(np.arange(SLOTS_PER_DAY), cls["slot"], cls["b"])
        return self._table[key]

    def slot_minutes(self, edge_id: str, from_node: str) -> np.ndarray:
        """Expected minutes on an edge entered from ``from_node``, for each slot of the day."""
        key = (edge_id, from_node)
        if key not in self._table:
            edge = self.network.edges[edge_id]
            log_ratio = self._class_curve(edge.road_class) + float(self.edge_effect.get(edge.id, 0.0))
            for slot in range(SLOTS_PER_DAY):
                n, mean = self.cells.get((edge.id, from_node, slot), (0, 0.0))
                log_ratio[slot] = (n * mean + PRIOR_WEIGHT * log_ratio[slot]) / (n + PRIOR_WEIGHT)
            self._table[key] = edge.length_km / (edge.speed_limit_kmh * np.exp(log_ratio)) * 60
        return self._table[key]

    def typical_minutes(self, edge_id: str, at: datetime) -> float:
        """Minutes from the edge and its class's time-of-day effect only, not from that edge's own half hours."""
        edge = self.network.edges[edge_id]
        log_ratio = self._class_curve(edge.road_class)[_slot(at)] + float(self.edge_effect.get(edge.id, 0.0))
        return edge.length_km / (edge.speed_limit_kmh * math.exp(log_ratio)) * 60

    def minutes(self, edge_id: str, from_node: str, at: datetime) -> float:
        return float(self.slot_minutes(edge_id, from_node)[_slot(at)])

    def observed(self) -> pd.DataFrame:
        """Clean traversals per edge, direction and slot: how many, median minutes and their spread."""
        clean = self.traversals[self.traversals["incidentId"].isna()]
        grouped = clean.groupby(["edgeId", "from_node", "to_node", clean["enter"].dt.floor(f"{SLOT_MINUTES}min").dt.strftime("%H:%M")])
        table = grouped["minutes"].agg(traversals="count", median="median", p25=lambda m: m.quantile(0.25),
                                       p75=lambda m: m.quantile(0.75))
        table["km/h"] = grouped["kmh"].median()
        return table.rename_axis(["edge", "from", "to", "slot"]).round(2)


def _ends(network: RoadNetwork) -> tuple[str, str]:
    firsts = {nodes[0] for nodes in network.route_nodes.values()}
    lasts = {nodes[-1] for nodes in network.route_nodes.values()}
    if len(firsts) != 1 or len(lasts) != 1:
        raise ValueError("the corridor's routes must share their start and their end")
    return firsts.pop(), lasts.pop()


def _fit(network: RoadNetwork, traversals: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, dict]:
    clean = traversals[traversals["incidentId"].isna()].copy()
    if clean.empty:
        raise ValueError("no traversal without an incident to learn edge times from")
    clean["road_class"] = clean["edgeId"].map(lambda e: network.edges[e].road_class)
    clean["r"] = np.log(clean["kmh"] / clean["edgeId"].map(lambda e: network.edges[e].speed_limit_kmh))
    clean["slot"] = _slot(clean["enter"])
    a, b = _median_polish(clean)
    cells = clean.groupby(["edgeId", "from_node", "slot"])["r"].agg(["count", "mean"])
    return a, b, dict(zip(cells.index, zip(cells["count"].astype(int), cells["mean"].astype(float))))


def _rain_at(traversals: pd.DataFrame, weather: pd.DataFrame, network: RoadNetwork) -> pd.Series:
    """Rain (mm/h) at the weather station nearest each traversed edge, at the report nearest its middle."""
    if weather.empty or traversals.empty:
        return pd.Series(np.nan, index=traversals.index)
    stations = weather.groupby("stationName")[["latitude", "longitude"]].first()
    def nearest(edge_id: str) -> str:
        mid = network.edges[edge_id].position(network.edges[edge_id].length_km / 2)
        return min(stations.index, key=lambda s: haversine_km(mid, tuple(stations.loc[s])))
    station_of = {e: nearest(e) for e in traversals["edgeId"].unique()}
    probe = pd.DataFrame({"at": traversals["enter"] + (traversals["exit"] - traversals["enter"]) / 2,
                          "stationName": traversals["edgeId"].map(station_of), "row": traversals.index})
    probe["at"] = probe["at"].astype("datetime64[ns, UTC]")
    probe = probe.sort_values("at")
    reports = weather[["timestamp", "stationName", "precipitation"]].sort_values("timestamp")
    reports["timestamp"] = reports["timestamp"].astype("datetime64[ns, UTC]")
    merged = pd.merge_asof(probe, reports, left_on="at", right_on="timestamp", by="stationName", direction="nearest")
    return merged.set_index("row")["precipitation"].reindex(traversals.index)


def fit_edge_times(obs: Observations, network: RoadNetwork | None = None, use_edge_ids: bool = True,
                   cross_validate: bool = True) -> EdgeTimes:
    """Learn edge times, incident and rain effects and the model's own error from a run's observations."""
    network = network or load_network()
    spans = incident_spans(obs.incidents, network)
    traversals = flag_incidents(edge_traversals(obs.fixes, network, use_edge_ids), spans)
    a, b, cells = _fit(network, traversals)
    model = EdgeTimes(network, traversals, a, b, cells, pd.DataFrame(), pd.DataFrame())
    expected = np.array([model.minutes(t.edgeId, t.from_node, t.enter) for t in traversals.itertuples()])
    traversals["expected"] = expected
    hit = traversals[traversals["incidentId"].notna()]
    model.incident_delay = (hit["minutes"] - hit["expected"]).groupby(hit["severity"]).agg(
        traversals="count", median_extra_minutes="median").round(2)
    durations = (spans["end"] - spans["start"]).dt.total_seconds() / 60
    model.incident_minutes = durations.groupby(spans["severity"]).agg(incidents="count", median_minutes="median").round(1)
    traversals["rain"] = _rain_at(traversals, obs.weather, network)
    if cross_validate:
        model.trip_errors, traversals["expected_unseen"] = _leave_one_out(network, traversals)
        model.rain_effect = _rain_effect(traversals)
    return model


def _rain_effect(traversals: pd.DataFrame) -> pd.DataFrame:
    """Clean traversals' speed against what is typical there at that time of day, by rain at the time.

    Typical comes from a model that never saw the vehicle, from its edge and road-class effects
    only: against the full model the answer would be ~0 by construction, as its half-hour cells
    of each edge learnt that day's rain.
    """
    clean = traversals[traversals["incidentId"].isna() & traversals["rain"].notna() & traversals["expected_unseen"].notna()]
    band = pd.cut(clean["rain"], [-0.01, 0.1, 1.0, 3.0, np.inf], labels=["dry (< 0.1 mm/h)", "drizzle (0.1-1)",
                                                                           "rain (1-3)", "heavy (> 3)"])
    ratio = clean["expected_unseen"] / clean["minutes"]  # > 1: faster than expected
    table = ratio.groupby(band, observed=True).agg(traversals="count", speed_vs_model="median")
    table["speed_vs_model"] = (table["speed_vs_model"] - 1).map(lambda v: f"{v:+.1%}")
    return table.rename_axis("rain at the nearest station")


def _trip_chains(traversals: pd.DataFrame, origin: str, destination: str) -> dict[str, pd.DataFrame]:
    """Vehicles whose traversals chain from the origin to the destination (complete observed trips)."""
    chains = {}
    for device, own in traversals.sort_values("enter").groupby("deviceId"):
        nodes = [own["from_node"].iloc[0], *own["to_node"]]
        if nodes[0] == origin and nodes[-1] == destination and (own["from_node"].iloc[1:].to_numpy() == own["to_node"].iloc[:-1].to_numpy()).all():
            chains[str(device)] = own
    return chains


def _leave_one_out(network: RoadNetwork, traversals: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Each vehicle predicted by a model that never saw it: the model's honest error.

    Returns the complete trips' errors and, for every traversal, the typical minutes that model
    expected there at that time of day (the baseline the rain effect is measured against).
    """
    origin, destination = _ends(network)
    chains = _trip_chains(traversals, origin, destination)
    rows, expected = [], pd.Series(np.nan, index=traversals.index)
    for device, own in tqdm(traversals.groupby("deviceId", sort=True), desc="leave one vehicle out", unit="vehicle",
                            leave=False, disable=None):
        rest = traversals[traversals["deviceId"] != device]
        if rest["incidentId"].isna().sum() == 0:
            continue
        other = EdgeTimes(network, rest, *_fit(network, rest), pd.DataFrame(), pd.DataFrame())
        expected[own.index] = [other.typical_minutes(t.edgeId, t.enter) for t in own.itertuples()]
        if device in chains:
            trip = chains[device]
            depart = trip["enter"].iloc[0].to_pydatetime()
            predicted = path_minutes(other, [trip["from_node"].iloc[0], *trip["to_node"]], depart)
            actual = (trip["exit"].iloc[-1] - trip["enter"].iloc[0]).total_seconds() / 60
            rows.append({"vehicle": device, "departed": depart, "actual min": actual, "predicted min": predicted,
                         "error": actual / predicted - 1})
    return pd.DataFrame(rows, columns=["vehicle", "departed", "actual min", "predicted min", "error"]), expected


# -- routing --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnownIncident:
    """An incident reported active before departure, with when it is expected to clear."""

    incident_id: str
    edge_id: str
    severity: str
    expected_end: datetime


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
        out.append(KnownIncident(span.incidentId, span.edgeId, span.severity,
                                 max(span.start.to_pydatetime() + timedelta(minutes=minutes), at)))
    return out


def _delay(model: EdgeTimes, severity: str) -> float:
    table = model.incident_delay
    if table.empty:
        return 0.0  # no traversal ever met an incident: its effect is unknown, so not guessed
    if severity in table.index:
        return max(0.0, float(table.loc[severity, "median_extra_minutes"]))
    return max(0.0, float(table["median_extra_minutes"].median()))


def path_minutes(model: EdgeTimes, nodes: Sequence[str], depart: datetime,
                 incidents: Sequence[KnownIncident] = ()) -> float:
    """Expected minutes to drive a node path leaving at ``depart``, each edge costed when it is reached."""
    at = depart
    for a, b in zip(nodes, nodes[1:]):
        edge, _ = model.network.edge_between(a, b)
        minutes = model.minutes(edge.id, a, at)
        minutes += sum(_delay(model, i.severity) for i in incidents if i.edge_id == edge.id and at < i.expected_end)
        at += timedelta(minutes=minutes)
    return (at - depart).total_seconds() / 60


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
        slots = np.array([_slot(self.start + timedelta(minutes=int(k))) for k in k_all])
        arcs = []
        for edge in model.network.edges.values():
            for u, v in ((edge.start, edge.end), (edge.end, edge.start)):
                weight = model.slot_minutes(edge.id, u)[slots].copy()
                for inc in incidents:
                    if inc.edge_id == edge.id:
                        until = (inc.expected_end - self.start).total_seconds() / 60
                        weight[k_all < until] += _delay(model, inc.severity)
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
    for a, b in zip(nodes, nodes[1:]):
        road = short_road(network.edge_between(a, b)[0])
        if not roads or roads[-1] != road:
            roads.append(road)
    return " › ".join(roads)


def path_km(network: RoadNetwork, nodes: Sequence[str]) -> float:
    return sum(network.edge_between(a, b)[0].length_km for a, b in zip(nodes, nodes[1:]))


def path_points(network: RoadNetwork, nodes: Sequence[str]) -> list[LatLon]:
    """The polyline of a node path, in driving order."""
    points: list[LatLon] = []
    for a, b in zip(nodes, nodes[1:]):
        edge, forward = network.edge_between(a, b)
        pts = list(edge.points if forward else reversed(edge.points))
        points.extend(pts if not points else pts[1:])
    return points


def _spread(model: EdgeTimes) -> tuple[float, int]:
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
    rms, _ = _spread(model)
    clean = model.traversals[model.traversals["incidentId"].isna()]
    seen_edges = set(clean["edgeId"])
    rows = []
    for depart in tqdm(departures, desc="fastest routes", unit="departure", disable=None):
        nodes = router.fastest(depart)
        expected = path_minutes(model, nodes, depart)
        legs = [network.edge_between(a, b)[0] for a, b in zip(nodes, nodes[1:])]
        window = clean[(clean["enter"] >= pd.Timestamp(depart) - timedelta(hours=1))
                       & (clean["enter"] <= pd.Timestamp(depart) + timedelta(minutes=expected + 60))]
        row = {
            "departs": depart.strftime("%H:%M"), "suggested": route_label(network, nodes),
            "km": round(path_km(network, nodes), 1), "expected min": round(expected, 1),
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


# -- the counterfactual ---------------------------------------------------------------------------
@dataclass
class Verdict:
    """Measured trip times of the same vehicles on the fleet's routes and on the suggested ones."""

    trips: pd.DataFrame
    summary: pd.DataFrame
    seed: int
    learnt_from_seed: int


def _run_trips(sim: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trip minutes per vehicle (first to last telemetry) and the emergency reports of a simulation."""
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    routes: dict[str, str] = {}
    reports = []
    for event in sim.events():  # type: ignore[attr-defined]
        if event.topic == "vehicle_data":
            first.setdefault(event.key, event.value["timestamp"])
            last[event.key] = event.value["timestamp"]
            routes.setdefault(event.key, event.value["route"])
        elif event.topic == "emergency_data":
            reports.append({k: event.value[k] for k in ("incidentId", "severity", "status", "timestamp", "latitude", "longitude")})
    trips = pd.DataFrame({"vehicle": sorted(first)})
    trips["departs"] = pd.to_datetime(trips["vehicle"].map(first), utc=True)
    trips["route"] = trips["vehicle"].map(routes)
    trips["minutes"] = (pd.to_datetime(trips["vehicle"].map(last), utc=True) - trips["departs"]).dt.total_seconds() / 60
    reports_frame = pd.DataFrame(reports, columns=["incidentId", "severity", "status", "timestamp", "latitude", "longitude"])
    reports_frame["timestamp"] = pd.to_datetime(reports_frame["timestamp"], utc=True)
    return trips.set_index("vehicle"), reports_frame


def with_routes(network: RoadNetwork, paths: Iterable[Sequence[str]]) -> tuple[RoadNetwork, dict[tuple[str, ...], str]]:
    """The network plus each path as a named route the simulator can drive; returns the names too."""
    names: dict[tuple[str, ...], str] = {}
    extra: dict[str, tuple[str, ...]] = {}
    for nodes in paths:
        key = tuple(nodes)
        if key in names:
            continue
        label = route_label(network, key)
        while label in extra and extra[label] != key:
            label += "'"
        names[key] = label
        if label not in network.route_nodes:
            extra[label] = key
    return RoadNetwork(network.name, network.source, network.nodes, network.edges, {**network.route_nodes, **extra}), names


def _summarise(saved: pd.Series, rng: random.Random, resamples: int = 2000) -> dict[str, float]:
    values = saved.to_numpy()
    means = [float(np.mean([values[rng.randrange(len(values))] for _ in values])) for _ in range(resamples)]
    return {
        "vehicles": len(values), "mean saved min": values.mean(), "sd min": values.std(ddof=1) if len(values) > 1 else math.nan,
        "95% CI low": float(np.quantile(means, 0.025)), "95% CI high": float(np.quantile(means, 0.975)),
        "p10": float(np.quantile(values, 0.1)), "median": float(np.median(values)), "p90": float(np.quantile(values, 0.9)),
        "faster": float((values > 0.5).mean()), "slower": float((values < -0.5).mean()),
    }


def judge(cfg: Params, model: EdgeTimes, seed: int, vehicles: int, live_incidents: bool = True) -> Verdict:
    """Minutes saved by the suggestions, measured on another seed's run (the model never saw it).

    The judged fleet (``seed``, ``vehicles``, the params' route mix and departure spacing) is
    simulated on its own routes; then the same vehicles, leaving at the same times, with the same
    incidents and weather, on the route suggested for their departure: from history alone, and
    (``live_incidents``) also knowing the incidents reported active when they leave.
    """
    from smartcity.fleet import simulation

    if seed == cfg.seed:
        raise ValueError(f"suggestions learnt from seed {seed} cannot be judged on the same seed's run")
    judged = replace(cfg, seed=seed, vehicles=vehicles, duration_seconds=0.0, departure_rate_per_hour=0.0, speedup=0.0,
                     route_judge_seed=0)  # a fixed fleet that arrives: a live profile's open-ended one never would
    variants = ["history"] + (["history + live incidents"] if live_incidents else [])
    progress = tqdm(total=1 + len(variants), desc="judging", unit="run")
    baseline = simulation.FleetSimulation(judged)
    fleet, reports = _run_trips(baseline)
    progress.update()
    departs = [d.to_pydatetime() for d in fleet["departs"]]
    router = Router(model, min(departs), max(departs))
    table = fleet.rename(columns={"route": "fleet route", "minutes": "fleet min"})
    rng = random.Random(f"{seed}/judge")
    summary = []
    simulated: dict[tuple[tuple[str, ...], ...], pd.DataFrame] = {}
    for variant in variants:
        paths = []
        for depart in departs:
            known = known_incidents(reports, model, depart) if variant != "history" else []
            paths.append(tuple(router.fastest(depart, known)))
        network, names = with_routes(model.network, paths)
        plan = [(depart, names[p]) for depart, p in zip(departs, paths)]
        if tuple(paths) not in simulated:  # the same plan drives the same trips: simulate it once
            sim = simulation.FleetSimulation(judged, network=network, incidents=baseline.incidents, plan=plan)
            simulated[tuple(paths)] = _run_trips(sim)[0]
        trips = simulated[tuple(paths)]
        progress.update()
        suffix = "" if variant == "history" else " (live)"
        table[f"suggested{suffix}"] = [name for _, name in plan]
        table[f"suggested min{suffix}"] = trips["minutes"].to_numpy()
        table[f"saved min{suffix}"] = table["fleet min"] - table[f"suggested min{suffix}"]
        summary.append({"suggestions from": variant, **_summarise(table[f"saved min{suffix}"], rng)})
    progress.close()
    table["departs"] = table["departs"].dt.strftime("%H:%M")
    return Verdict(table.round(1), pd.DataFrame(summary).set_index("suggestions from").round(2), seed, cfg.seed)


def fleet_weights(cfg: Params) -> dict[str, float]:
    """The params' route mix: what the fleet drives without suggestions."""
    return route_weights(cfg.routes)


def judge_seed(cfg: Params) -> int:
    """The seed suggestions are judged on: ``route_judge_seed``, or the learnt seed + 1."""
    return cfg.route_judge_seed or cfg.seed + 1


# -- results for the report -----------------------------------------------------------------------
def results_path(cfg: Params) -> Path:
    return cfg.output_path / "routes" / "routes.json"


def save_results(cfg: Params, model: EdgeTimes, suggestions: pd.DataFrame, verdict: Verdict | None = None) -> Path:
    """Suggestions, what they were learnt from and the judged verdict, as JSON for the report."""
    rms, trips = _spread(model)
    doc = {
        "learnt_from": {"seed": cfg.seed, "vehicles": int(model.traversals["deviceId"].nunique()),
                        "traversals": len(model.traversals), "trips_cross_validated": trips,
                        "typical_error": None if math.isnan(rms) else round(rms, 4)},
        "suggestions": suggestions.drop(columns=["nodes"]).reset_index().to_dict(orient="records"),
        "verdict": None if verdict is None else {
            "seed": verdict.seed, "learnt_from_seed": verdict.learnt_from_seed,
            "summary": verdict.summary.reset_index().to_dict(orient="records"),
            "trips": verdict.trips.reset_index().to_dict(orient="records"),
        },
    }
    path = results_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path
