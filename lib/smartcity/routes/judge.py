"""The proof: suggestions judged on another seed's run, which the model never saw.

6. **Proof.** :func:`judge` re-simulates another seed's fleet twice with the same incidents and
   weather, the same vehicles leaving at the same times: once on the fleet's own route mix, once
   on the suggested routes; minutes saved are measured, not predicted.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from smartcity.fleet.params import FleetParams
from smartcity.fleet.roads import RoadNetwork
from smartcity.fleet.simulation import FleetSimulation
from smartcity.routes.edge_times import EdgeTimes
from smartcity.routes.routing import Router, known_incidents, route_label, spread


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
            reports.append(
                {k: event.value[k] for k in ("incidentId", "severity", "status", "timestamp", "latitude", "longitude")}
            )
    trips = pd.DataFrame({"vehicle": sorted(first)})
    trips["departs"] = pd.to_datetime(trips["vehicle"].map(first), utc=True)
    trips["route"] = trips["vehicle"].map(routes)
    trips["minutes"] = (pd.to_datetime(trips["vehicle"].map(last), utc=True) - trips["departs"]).dt.total_seconds() / 60
    reports_frame = pd.DataFrame(
        reports, columns=["incidentId", "severity", "status", "timestamp", "latitude", "longitude"]
    )
    reports_frame["timestamp"] = pd.to_datetime(reports_frame["timestamp"], utc=True)
    return trips.set_index("vehicle"), reports_frame


def with_routes(network: RoadNetwork, paths: Iterable[Sequence[str]]) -> tuple[RoadNetwork, dict[tuple[str, ...], str]]:
    """The network plus each path as a named route the simulator can drive; returns the names too (a path that
    is one of the network's routes keeps that route's name: :func:`~smartcity.routes.routing.route_label`)."""
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
    return RoadNetwork(
        network.name, network.source, network.nodes, network.edges, {**network.route_nodes, **extra}
    ), names


def _summarise(saved: pd.Series, rng: random.Random, resamples: int = 2000) -> dict[str, float]:
    values = saved.to_numpy()
    means = [float(np.mean([values[rng.randrange(len(values))] for _ in values])) for _ in range(resamples)]
    return {
        "vehicles": len(values),
        "mean saved min": values.mean(),
        "sd min": values.std(ddof=1) if len(values) > 1 else math.nan,
        "95% CI low": float(np.quantile(means, 0.025)),
        "95% CI high": float(np.quantile(means, 0.975)),
        "p10": float(np.quantile(values, 0.1)),
        "median": float(np.median(values)),
        "p90": float(np.quantile(values, 0.9)),
        "faster": float((values > 0.5).mean()),
        "slower": float((values < -0.5).mean()),
    }


#: The share of the judged fleet that follows the suggestions in the judge's mixed run (the rest keep their routes).
FOLLOWING_SHARE = 0.5


def _followers(vehicles: Sequence[str], seed: int, share: float = FOLLOWING_SHARE) -> set[str]:
    """Which judged vehicles follow the suggestions in the mixed run: a seeded draw of ``share`` of them."""
    rng = random.Random(f"{seed}/followers")
    return set(rng.sample(sorted(vehicles), round(share * len(vehicles))))


def judge(fleet: FleetParams, model: EdgeTimes, seed: int, vehicles: int, live_incidents: bool = True) -> Verdict:
    """Minutes saved by the suggestions, measured on another seed's run (the model never saw it).

    The judged fleet (``seed``, ``vehicles``, the fleet's route mix and departure spacing) is
    simulated on its own routes; then the same vehicles, leaving at the same times, with the same
    incidents and weather, on the route suggested for their departure: from history alone, and
    (``live_incidents``) also knowing the incidents reported active when they leave. Roads slow with the
    flow on them (:mod:`smartcity.fleet.traffic`), so a suggestion that everyone follows can cost what it
    saves; a last run has only :data:`FOLLOWING_SHARE` of the vehicles follow the history suggestions,
    and its savings are reported for the followers and for the others, whose roads changed too.
    """
    if seed == fleet.seed:
        raise ValueError(f"suggestions learnt from seed {seed} cannot be judged on the same seed's run")
    judged = replace(
        fleet, seed=seed, vehicles=vehicles, duration_seconds=0.0, departure_rate_per_hour=0.0, speedup=0.0
    )  # a fixed fleet that arrives: a live profile's open-ended one never would
    variants = ["history"] + (["history + live incidents"] if live_incidents else [])
    progress = tqdm(total=2 + len(variants), desc="judging", unit="run")
    baseline = FleetSimulation(judged)
    own, reports = _run_trips(baseline)
    progress.update()
    departs = [d.to_pydatetime() for d in own["departs"]]
    router = Router(model, min(departs), max(departs))
    table = own.rename(columns={"route": "fleet route", "minutes": "fleet min"})
    rng = random.Random(f"{seed}/judge")
    summary = []
    runs = _Runs(judged, model.network, baseline, departs)
    for variant in variants:
        paths = []
        for depart in departs:
            known = known_incidents(reports, model, depart) if variant != "history" else []
            paths.append(tuple(router.fastest(depart, known)))
        names, trips = runs.drive(paths)
        progress.update()
        suffix = "" if variant == "history" else " (live)"
        table[f"suggested{suffix}"] = names
        table[f"suggested min{suffix}"] = trips["minutes"].to_numpy()
        table[f"saved min{suffix}"] = table["fleet min"] - table[f"suggested min{suffix}"]
        summary.append({"suggestions from": variant, **_summarise(table[f"saved min{suffix}"], rng)})
        if variant == "history":
            history_paths = paths
    summary.extend(_half_following(table, runs, history_paths, seed, rng))
    progress.update()
    progress.close()
    table["departs"] = table["departs"].dt.strftime("%H:%M")
    return Verdict(table.round(1), pd.DataFrame(summary).set_index("suggestions from").round(2), seed, fleet.seed)


class _Runs:
    """The judged fleet driven on given paths (one per vehicle, in departure order), each plan simulated once."""

    def __init__(self, judged: FleetParams, network: RoadNetwork, baseline: FleetSimulation, departs: list) -> None:
        self.judged, self.network, self.baseline, self.departs = judged, network, baseline, departs
        self.simulated: dict[tuple[tuple[str, ...], ...], pd.DataFrame] = {}

    def drive(self, paths: Sequence[tuple[str, ...]]) -> tuple[list[str], pd.DataFrame]:
        """The route name each vehicle drove and the trips (the same plan drives the same trips: simulated once)."""
        network, names = with_routes(self.network, paths)
        plan = [(depart, names[p]) for depart, p in zip(self.departs, paths, strict=True)]
        if tuple(paths) not in self.simulated:
            sim = FleetSimulation(self.judged, network=network, incidents=self.baseline.incidents, plan=plan)
            self.simulated[tuple(paths)] = _run_trips(sim)[0]
        return [name for _, name in plan], self.simulated[tuple(paths)]


def _half_following(
    table: pd.DataFrame, runs: _Runs, suggested: list[tuple[str, ...]], seed: int, rng: random.Random
) -> list[dict[str, object]]:
    """The mixed run: the followers on the history suggestions, the others on their own routes; the minutes
    each group saves against the fleet's own run (columns ``half: route``, ``half: min``, ``half: saved min``)."""
    followers = _followers(list(table.index), seed)
    own = {name: tuple(runs.network.route_nodes[name]) for name in set(table["fleet route"])}
    paths = [
        path if vehicle in followers else own[route]
        for vehicle, route, path in zip(table.index, table["fleet route"], suggested, strict=True)
    ]
    names, trips = runs.drive(paths)
    table["half: follows"] = [vehicle in followers for vehicle in table.index]
    table["half: route"] = names
    table["half: min"] = trips["minutes"].to_numpy()
    table["half: saved min"] = table["fleet min"] - table["half: min"]
    follows = table["half: follows"]
    return [
        {
            "suggestions from": "history, half follow: followers",
            **_summarise(table.loc[follows, "half: saved min"], rng),
        },
        {
            "suggestions from": "history, half follow: the others",
            **_summarise(table.loc[~follows, "half: saved min"], rng),
        },
    ]


# -- results for the report -----------------------------------------------------------------------
def save_results(
    path: Path, learnt_seed: int, model: EdgeTimes, suggestions: pd.DataFrame, verdict: Verdict | None = None
) -> Path:
    """Suggestions, what they were learnt from (the run of ``learnt_seed``) and the judged verdict, as JSON
    for the report."""
    rms, trips = spread(model)
    doc = {
        "learnt_from": {
            "seed": learnt_seed,
            "vehicles": int(model.traversals["deviceId"].nunique()),
            "traversals": len(model.traversals),
            "trips_cross_validated": trips,
            "typical_error": None if math.isnan(rms) else round(rms, 4),
        },
        "suggestions": suggestions.drop(columns=["nodes"]).reset_index().to_dict(orient="records"),
        "verdict": None
        if verdict is None
        else {
            "seed": verdict.seed,
            "learnt_from_seed": verdict.learnt_from_seed,
            "summary": verdict.summary.reset_index().to_dict(orient="records"),
            "trips": verdict.trips.reset_index().to_dict(orient="records"),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path
