"""Route suggestions from observed data: map matching, edge times, fastest paths, the counterfactual.

Lakes are written without Spark (tests/lake_fixture.py), from the simulator itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from smartcity import steps
from smartcity.fleet import simulation, vehicles
from smartcity.fleet.roads import load_network, offset_m
from smartcity.params import Params
from smartcity.routes import edge_times, judge, matching, routing
from tests.conftest import lab_params
from tests.lake_fixture import write_lake

#: The learnt run: 18 vehicles over three hours of a Monday morning, plenty of incidents.
LEARN = {
    "seed": 7,
    "vehicles": 18,
    "departure_spacing_seconds": 600.0,
    "incident_rate": 0.25,
    "base_date": "2026-01-05T06:00:00+00:00",
}


@pytest.fixture(scope="module")
def learnt(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Params, simulation.FleetSimulation, edge_times.EdgeTimes]]:
    cfg = lab_params(tmp_path_factory.mktemp("learn"), **LEARN)
    sim = simulation.FleetSimulation(cfg.fleet)
    write_lake(cfg, list(sim.events()))
    yield cfg, sim, edge_times.fit_edge_times(observations(cfg))


@pytest.fixture(scope="module")
def v1_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, edge_times.Observations]:
    cfg = lab_params(tmp_path_factory.mktemp("v1"), schema_version=1)
    write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    return cfg, observations(cfg)


def observations(cfg: Params) -> edge_times.Observations:
    """The run's observations, read from the profile's lake as 06_route_map reads them."""
    return edge_times.read_observations(steps.open_store(cfg))


def test_v1_telemetry_is_map_matched_onto_each_vehicles_own_route(
    v1_run: tuple[Params, edge_times.Observations],
) -> None:
    _, obs = v1_run
    assert obs.fixes["edgeId"].isna().all(), "contract v1 telemetry carries no edge id"
    traversals = matching.edge_traversals(obs.fixes)
    assert set(traversals["matched"]) == {"map-matched"}
    network = load_network()
    for device, own in traversals.sort_values("enter").groupby("deviceId"):
        route = obs.fixes.loc[obs.fixes["deviceId"] == device, "route"].iloc[0]
        assert [own["from_node"].iloc[0], *own["to_node"]] == list(network.route_nodes[route]), device


def test_map_matching_agrees_with_the_edge_ids_of_contract_v2(learnt) -> None:
    _, _, model = learnt
    fixes = observations(learnt[0]).fixes
    by_id = model.traversals
    matched = matching.edge_traversals(fixes, use_edge_ids=False)
    assert set(by_id["matched"]) == {"edgeId"} and set(matched["matched"]) == {"map-matched"}
    keys = ["deviceId", "edgeId", "from_node", "to_node"]
    both = by_id.merge(matched, on=keys, suffixes=("_id", "_mm"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all(), both[both["_merge"] != "both"][keys]
    # a boundary falls between two fixes a tick (5 s) apart; GPS noise can move it by a tick or so
    # where vehicles crawl (urban roads, queues), and the two ways may pick neighbouring fixes
    gap = (both["enter_mm"] - both["enter_id"]).abs().dt.total_seconds()
    assert gap.quantile(0.95) <= 1.0 and gap.max() <= 3 * 5.0, gap.describe()


def test_traversals_add_up_to_each_trip(learnt) -> None:
    cfg, _, model = learnt
    fixes = observations(cfg).fixes
    trip = fixes.groupby("deviceId")["timestamp"].agg(lambda t: (t.max() - t.min()).total_seconds() / 60)
    summed = model.traversals.groupby("deviceId")["minutes"].sum()
    assert len(summed) == cfg.fleet.vehicles
    assert np.allclose(summed.sort_index(), trip.sort_index(), atol=0.01)


def test_match_edges_follows_a_noisy_track_without_hopping() -> None:
    network = load_network()
    route = network.route("A5/A45")
    rng = np.random.default_rng(3)
    points = [offset_m(route.position(km)[0], *rng.normal(0, 7, 2)) for km in np.arange(0, route.length_km, 0.15)]
    edges, _ = matching.match_edges(network, [p[0] for p in points], [p[1] for p in points])
    visited = [e for e, _ in itertools.groupby(edges)]
    assert visited == [leg.edge.id for leg in route.legs]


def test_incidents_are_placed_on_the_edges_the_simulator_put_them(learnt) -> None:
    cfg, sim, _ = learnt
    spans = matching.incident_spans(observations(cfg).incidents)
    truth = {i.incident_id: i.edge_id for i in sim.incidents}  # some start after the last vehicle arrived
    assert len(spans) > 5
    assert dict(zip(spans["incidentId"], spans["edgeId"])) == {i: truth[i] for i in spans["incidentId"]}


def test_observed_incident_and_rain_effects_slow_traffic(learnt) -> None:
    _, _, model = learnt
    hit = model.traversals[model.traversals["incidentId"].notna()]
    assert len(hit) == model.incident_delay["traversals"].sum() > 0
    assert (model.incident_delay["median_extra_minutes"] > 0).any()
    rain = model.rain_effect["speed_vs_model"].str.rstrip("%").astype(float)
    assert rain.iloc[0] > rain.iloc[-1], "traffic in the heaviest rain band is slower than in the dry"


def test_leave_one_out_errors_cover_every_trip(learnt) -> None:
    cfg, _, model = learnt
    assert len(model.trip_errors) == cfg.fleet.vehicles
    assert model.trip_errors["error"].abs().max() < 0.5


def _all_paths(model: edge_times.EdgeTimes) -> list[list[str]]:
    graph = nx.Graph([(e.start, e.end) for e in model.network.edges.values()])
    return [list(p) for p in nx.all_simple_paths(graph, model.origin, model.destination)]


@pytest.mark.parametrize("hour", [6, 8, 11])
def test_router_finds_the_fastest_of_all_simple_paths(learnt, hour: int) -> None:
    cfg, _, model = learnt
    depart = cfg.fleet.start_time.replace(hour=hour)
    best = min(edge_times.path_minutes(model, p, depart) for p in _all_paths(model))
    found = edge_times.path_minutes(model, routing.Router(model, depart, depart).fastest(depart), depart)
    assert best - 1e-9 <= found <= best + 1.0  # the time-expanded graph rounds each arc to a minute


def test_a_known_incident_diverts_the_route(learnt) -> None:
    cfg, _, model = learnt
    depart = cfg.fleet.start_time.replace(hour=9)
    # an incident of a severity seen to cost two hours, on the middle edge of the usual route
    model = replace(
        model,
        _table={},
        incident_delay=pd.DataFrame(
            {"traversals": [1], "median_extra_minutes": [120.0]}, index=pd.Index(["severe"], name="severity")
        ),
    )
    router = routing.Router(model, depart, depart)
    usual = router.fastest(depart)
    edge = model.network.edge_between(usual[len(usual) // 2], usual[len(usual) // 2 + 1])[0]
    blocked = edge_times.KnownIncident("INC-X", edge.id, "severe", depart + timedelta(hours=6))
    diverted = router.fastest(depart, [blocked])
    assert edge.id not in {model.network.edge_between(a, b)[0].id for a, b in itertools.pairwise(diverted)}
    assert edge_times.path_minutes(model, diverted, depart) >= edge_times.path_minutes(model, usual, depart)
    assert edge_times.path_minutes(model, diverted, depart) < edge_times.path_minutes(model, usual, depart, [blocked])


def test_suggestions_by_hour_say_how_sure_they_are(learnt) -> None:
    cfg, _, model = learnt
    table = routing.suggest(model, routing.departures_by_hour(cfg.fleet.start_time), cfg.fleet.weights)
    assert list(table.index) == [f"{h:02d}:00" for h in routing.DEPARTURE_HOURS]
    assert (table["± min"] > 0).all() and (table["observations"] >= 0).all()
    named = table[[f"{n} min" for n in model.network.route_names]].min(axis=1)
    assert (table["expected min"] <= named + 1.0).all(), "the suggestion is never slower than a named route"


def test_a_plan_of_the_fleets_own_routes_replays_the_same_events() -> None:
    cfg = lab_params(Path("/nonexistent"), vehicles=4, duration_seconds=900.0)
    fleet = cfg.fleet
    mix = simulation.FleetSimulation(fleet)
    spacing = timedelta(seconds=fleet.departure_spacing_seconds)
    plan = [
        (fleet.start_time + spacing * i, name)
        for i, name in enumerate(vehicles.assign_routes(fleet.weights, fleet.vehicles))
    ]
    assert [e.value for e in simulation.FleetSimulation(fleet, plan=plan).events()] == [e.value for e in mix.events()]
    with pytest.raises(ValueError, match="before"):
        simulation.FleetSimulation(fleet, plan=[(fleet.start_time - timedelta(minutes=1), "M40")])


def test_the_counterfactual_judges_on_another_seed_and_measures_minutes_saved(learnt) -> None:
    cfg, _, model = learnt
    with pytest.raises(ValueError, match="same seed"):
        judge.judge(cfg.fleet, model, seed=cfg.fleet.seed, vehicles=3)
    verdict = judge.judge(cfg.fleet, model, seed=cfg.fleet.seed + 100, vehicles=9)
    trips = verdict.trips
    assert len(trips) == 9 and verdict.seed != verdict.learnt_from_seed
    assert set(trips["fleet route"]) == set(model.network.route_names)
    history = verdict.summary.loc["history"]
    assert history["95% CI low"] > 0, verdict.summary
    assert history["faster"] >= 0.8
    # half of the fleet follows the history suggestions, the others keep their routes; both groups measured
    follows = trips["half: follows"]
    assert follows.sum() == round(judge.FOLLOWING_SHARE * 9)
    assert (trips.loc[follows, "half: route"] == trips.loc[follows, "suggested"]).all()
    assert (trips.loc[~follows, "half: route"] == trips.loc[~follows, "fleet route"]).all()
    half = verdict.summary.loc[["history, half follow: followers", "history, half follow: the others"], "vehicles"]
    assert half.tolist() == [follows.sum(), (~follows).sum()]
    # learnt from a live profile's open-ended fleet, the judged run is still the fixed fleet asked for
    live = judge.judge(
        replace(cfg.fleet, departure_rate_per_hour=60.0),
        model,
        seed=cfg.fleet.seed + 100,
        vehicles=2,
        live_incidents=False,
    )
    assert len(live.trips) == 2


def test_with_routes_names_new_paths_by_their_roads() -> None:
    network = load_network()
    path = [
        "london",
        "marble_arch",
        "hanger_lane",
        "m40_j1",
        "m40_j1a",
        "m1_j6a",
        "m1_j10",
        "m1_j13",
        "m1_j15",
        "m1_j16",
        "m1_j19",
        "m6_j2",
        "m6_j4",
        "m6_j4a",
        "m6_j6",
        "birmingham",
    ]
    extended, names = judge.with_routes(network, [path, network.route_nodes["M40"]])
    assert names[tuple(path)] == "A400 › A40 › M40 › M25 › M1 › M6 › A38(M)"
    assert names[tuple(network.route_nodes["M40"])] == "M40"
    assert extended.route(names[tuple(path)]).length_km == pytest.approx(routing.path_km(network, path))
    assert network.route_names == ["M1/M6", "M40", "A5/A45"], "the shared network is left alone"


def test_save_results_is_what_the_report_reads(learnt, tmp_path: Path) -> None:
    cfg, _, model = learnt
    cfg = cfg.with_values(output_dir=str(tmp_path))
    table = routing.suggest(model, routing.departures_by_hour(cfg.fleet.start_time, [8]), cfg.fleet.weights)
    path = steps.save_routes(steps.open_lab(cfg), model, table)
    assert path == steps.routes_file(cfg)  # the file the report reads (steps.write_report)
    doc = pd.read_json(path, typ="series")
    assert doc["learnt_from"]["seed"] == cfg.fleet.seed and doc["suggestions"][0]["departs"] == "08:00"
