"""How long each road stretch takes, learnt from the traversals: the edge-time model and its honest error.

3. **Edge times.** Speed, as a share of the speed limit, is modelled on a log scale as an edge
   effect plus a road-class effect per half hour of the day (Tukey's median polish: robust to the
   odd slow driver), and each (edge, direction, half hour) with observations is pulled towards
   what it saw. Edges nobody drove get their road class's speed at that time. What incidents and
   rain did is measured from the traversals too (:attr:`EdgeTimes.incident_delay`,
   :attr:`EdgeTimes.rain_effect`); known incidents add their observed delay to the edge they are on.
5. **How sure.** Each observed trip is predicted by a model fitted without that vehicle
   (leave-one-vehicle-out); the spread of those errors is how far a suggestion's time may be off.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from tqdm import tqdm

from smartcity.fleet.roads import RoadNetwork, haversine_km, load_network
from smartcity.routes.matching import edge_traversals, flag_incidents, incident_spans
from smartcity.stream import lake
from smartcity.stream.store import LakeStore

#: Width of a time-of-day slot of the edge-time model.
SLOT_MINUTES = 30
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
#: Weight of the model's prior against a cell's own observations (in observations).
PRIOR_WEIGHT = 1.0


@dataclass
class Observations:
    """What the sensors reported, as the route model needs it."""

    fixes: pd.DataFrame
    incidents: pd.DataFrame  # emergency_data reports
    weather: pd.DataFrame


def _frame(store: LakeStore, table: str, columns: list[str]) -> pd.DataFrame:
    return lake.read_table(store, table, columns=columns).to_pandas()


def read_observations(store: LakeStore) -> Observations:
    """Telemetry, incident reports and weather of a run, from its lake."""
    fixes = _frame(
        store, "vehicle_data", ["deviceId", "timestamp", "latitude", "longitude", "speed", "route", "edgeId"]
    )
    if fixes.empty:
        raise ValueError(
            f"no vehicle telemetry in the lake at {store.uri(lake.LAKE)}: run 01_simulate and 02_stream first"
        )
    incidents = _frame(
        store, "emergency_data", ["incidentId", "severity", "status", "timestamp", "latitude", "longitude"]
    )
    weather = _frame(store, "weather_data", ["stationName", "timestamp", "latitude", "longitude", "precipitation"])
    return Observations(fixes, incidents, weather)


def slot_of(at: pd.Series | datetime) -> pd.Series | int:
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
        return ends(self.network)[0]

    @property
    def destination(self) -> str:
        return ends(self.network)[1]

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
        log_ratio = self._class_curve(edge.road_class)[slot_of(at)] + float(self.edge_effect.get(edge.id, 0.0))
        return edge.length_km / (edge.speed_limit_kmh * math.exp(log_ratio)) * 60

    def minutes(self, edge_id: str, from_node: str, at: datetime) -> float:
        return float(self.slot_minutes(edge_id, from_node)[slot_of(at)])

    def observed(self) -> pd.DataFrame:
        """Clean traversals per edge, direction and slot: how many, median minutes and their spread."""
        clean = self.traversals[self.traversals["incidentId"].isna()]
        grouped = clean.groupby(
            ["edgeId", "from_node", "to_node", clean["enter"].dt.floor(f"{SLOT_MINUTES}min").dt.strftime("%H:%M")]
        )
        table = grouped["minutes"].agg(
            traversals="count", median="median", p25=lambda m: m.quantile(0.25), p75=lambda m: m.quantile(0.75)
        )
        table["km/h"] = grouped["kmh"].median()
        return table.rename_axis(["edge", "from", "to", "slot"]).round(2)


def ends(network: RoadNetwork) -> tuple[str, str]:
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
    clean["slot"] = slot_of(clean["enter"])
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
    probe = pd.DataFrame(
        {
            "at": traversals["enter"] + (traversals["exit"] - traversals["enter"]) / 2,
            "stationName": traversals["edgeId"].map(station_of),
            "row": traversals.index,
        }
    )
    probe["at"] = probe["at"].astype("datetime64[ns, UTC]")
    probe = probe.sort_values("at")
    reports = weather[["timestamp", "stationName", "precipitation"]].sort_values("timestamp")
    reports["timestamp"] = reports["timestamp"].astype("datetime64[ns, UTC]")
    merged = pd.merge_asof(probe, reports, left_on="at", right_on="timestamp", by="stationName", direction="nearest")
    return merged.set_index("row")["precipitation"].reindex(traversals.index)


def fit_edge_times(
    obs: Observations, network: RoadNetwork | None = None, use_edge_ids: bool = True, cross_validate: bool = True
) -> EdgeTimes:
    """Learn edge times, incident and rain effects and the model's own error from a run's observations."""
    network = network or load_network()
    spans = incident_spans(obs.incidents, network)
    traversals = flag_incidents(edge_traversals(obs.fixes, network, use_edge_ids), spans)
    a, b, cells = _fit(network, traversals)
    model = EdgeTimes(network, traversals, a, b, cells, pd.DataFrame(), pd.DataFrame())
    expected = np.array([model.minutes(t.edgeId, t.from_node, t.enter) for t in traversals.itertuples()])
    traversals["expected"] = expected
    hit = traversals[traversals["incidentId"].notna()]
    model.incident_delay = (
        (hit["minutes"] - hit["expected"])
        .groupby(hit["severity"])
        .agg(traversals="count", median_extra_minutes="median")
        .round(2)
    )
    durations = (spans["end"] - spans["start"]).dt.total_seconds() / 60
    model.incident_minutes = (
        durations.groupby(spans["severity"]).agg(incidents="count", median_minutes="median").round(1)
    )
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
    clean = traversals[
        traversals["incidentId"].isna() & traversals["rain"].notna() & traversals["expected_unseen"].notna()
    ]
    band = pd.cut(
        clean["rain"],
        [-0.01, 0.1, 1.0, 3.0, np.inf],
        labels=["dry (< 0.1 mm/h)", "drizzle (0.1-1)", "rain (1-3)", "heavy (> 3)"],
    )
    ratio = clean["expected_unseen"] / clean["minutes"]  # > 1: faster than expected
    table = ratio.groupby(band, observed=True).agg(traversals="count", speed_vs_model="median")
    table["speed_vs_model"] = (table["speed_vs_model"] - 1).map(lambda v: f"{v:+.1%}")
    return table.rename_axis("rain at the nearest station")


def _trip_chains(traversals: pd.DataFrame, origin: str, destination: str) -> dict[str, pd.DataFrame]:
    """Vehicles whose traversals chain from the origin to the destination (complete observed trips)."""
    chains = {}
    for device, own in traversals.sort_values("enter").groupby("deviceId"):
        nodes = [own["from_node"].iloc[0], *own["to_node"]]
        if (
            nodes[0] == origin
            and nodes[-1] == destination
            and (own["from_node"].iloc[1:].to_numpy() == own["to_node"].iloc[:-1].to_numpy()).all()
        ):
            chains[str(device)] = own
    return chains


def _leave_one_out(network: RoadNetwork, traversals: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Each vehicle predicted by a model that never saw it: the model's honest error.

    Returns the complete trips' errors and, for every traversal, the typical minutes that model
    expected there at that time of day (the baseline the rain effect is measured against).
    """
    origin, destination = ends(network)
    chains = _trip_chains(traversals, origin, destination)
    rows, expected = [], pd.Series(np.nan, index=traversals.index)
    for device, own in tqdm(
        traversals.groupby("deviceId", sort=True),
        desc="leave one vehicle out",
        unit="vehicle",
        leave=False,
        disable=None,
    ):
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
            rows.append(
                {
                    "vehicle": device,
                    "departed": depart,
                    "actual min": actual,
                    "predicted min": predicted,
                    "error": actual / predicted - 1,
                }
            )
    return pd.DataFrame(rows, columns=["vehicle", "departed", "actual min", "predicted min", "error"]), expected


# -- a path's expected minutes ---------------------------------------------------------------------
@dataclass(frozen=True)
class KnownIncident:
    """An incident reported active before departure, with when it is expected to clear."""

    incident_id: str
    edge_id: str
    severity: str
    expected_end: datetime


def delay_minutes(model: EdgeTimes, severity: str) -> float:
    table = model.incident_delay
    if table.empty:
        return 0.0  # no traversal ever met an incident: its effect is unknown, so not guessed
    if severity in table.index:
        return max(0.0, float(table.loc[severity, "median_extra_minutes"]))
    return max(0.0, float(table["median_extra_minutes"].median()))


def path_minutes(
    model: EdgeTimes, nodes: Sequence[str], depart: datetime, incidents: Sequence[KnownIncident] = ()
) -> float:
    """Expected minutes to drive a node path leaving at ``depart``, each edge costed when it is reached."""
    at = depart
    for a, b in itertools.pairwise(nodes):
        edge, _ = model.network.edge_between(a, b)
        minutes = model.minutes(edge.id, a, at)
        minutes += sum(
            delay_minutes(model, i.severity) for i in incidents if i.edge_id == edge.id and at < i.expected_end
        )
        at += timedelta(minutes=minutes)
    return (at - depart).total_seconds() / 60
