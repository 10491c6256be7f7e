from __future__ import annotations

from pathlib import Path

import pytest

from smartcity import steps
from smartcity.fleet.contracts import TOPICS
from smartcity.platform.ledger import STAGES
from smartcity.present import report
from tests.conftest import lab_params


def test_reconcile_agrees_when_every_stage_holds_what_was_produced(tmp_path: Path) -> None:
    ledger = steps.open_lab(lab_params(tmp_path)).ledger
    counts = {t: n for n, t in enumerate(TOPICS, start=1)}
    for stage in STAGES:
        ledger.record(stage, counts)
    frame, problems = ledger.reconcile()
    assert problems == []
    assert list(frame.columns) == list(STAGES)


def test_reconcile_names_the_topic_and_stage_that_disagree(tmp_path: Path) -> None:
    ledger = steps.open_lab(lab_params(tmp_path)).ledger
    counts = {t: 10 for t in TOPICS}
    for stage in STAGES:
        ledger.record(stage, counts)
    ledger.record("warehouse", {**counts, "gps_data": 9})
    _, problems = ledger.reconcile()
    assert problems == ["gps_data: 10 produced but 9 in warehouse"]


def test_missing_stages_are_reported(tmp_path: Path) -> None:
    ledger = steps.open_lab(lab_params(tmp_path)).ledger
    ledger.record("produced", {t: 1 for t in TOPICS})
    _, problems = ledger.reconcile()
    assert problems == ["stages without recorded counts: lake, catalog, warehouse"]
    with pytest.raises(ValueError, match="unknown stage"):
        ledger.record("kafka", {})


def test_index_links_what_exists(tmp_path: Path) -> None:
    lab = steps.open_lab(lab_params(tmp_path))
    executed = lab.cfg.paths.output / "notebooks" / "01_simulate.ipynb"
    executed.parent.mkdir(parents=True)
    executed.write_text("{}")
    page = steps.write_report(lab, [report.NotebookRun("01_simulate", executed, None, 1.5)]).read_text()
    assert 'href="notebooks/01_simulate.ipynb"' in page and "<td>ok</td>" in page


@pytest.fixture(scope="module")
def run_outputs(tmp_path_factory: pytest.TempPathFactory) -> steps.Lab:
    """A small run's lake, catalog, maps and route results, written without Kafka or Spark."""
    from smartcity.fleet import simulation
    from smartcity.present import maps
    from smartcity.routes import edge_times, judge, routing
    from tests.lake_fixture import write_lake

    cfg = lab_params(tmp_path_factory.mktemp("run"))
    lab = steps.open_lab(cfg)
    counts = write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    for stage in ("produced", "lake"):
        lab.ledger.record(stage, counts)
    steps.crawl_lake(lab)  # the catalog, and its counts in the ledger
    model = edge_times.fit_edge_times(steps.observations(lab))
    table = routing.suggest(model, routing.departures_by_hour(cfg.fleet.start_time, [7, 9]), cfg.fleet.weights)
    steps.save_routes(lab, model, table, judge.judge(cfg.fleet, model, seed=cfg.fleet.seed + 1, vehicles=3))
    maps.save_map(maps.corridor_map(), cfg.paths.maps, "corridor")
    maps.save_map(steps.journey_map(lab, suggestions=table), cfg.paths.maps, "journey")
    return lab


def test_index_shows_counts_maps_suggestions_and_charts(run_outputs: steps.Lab) -> None:
    import re

    page = steps.write_report(run_outputs, []).read_text()  # with the profile's maps (outputs/<profile>/maps)
    for heading in ("Events per stage", "Maps", "Route suggestions", "What the sensors saw", "Notebooks"):
        assert f"<h2>{heading}</h2>" in page
    # two map thumbnails linking to their maps, four charts (trips, speed, rain, minutes saved)
    assert page.count('<figure class="map"><a href="maps/') == 2
    assert page.count('<figure class="chart">') == 4 and "not available" not in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 6
    assert "Judged on another seed (43)" in page and "trips took" in page and "reached Birmingham first" in page
    assert not re.search(r'<(script|link|img|iframe)\b[^>]*\b(src|href)="(https?:)?//', page), "self-contained"


def test_index_is_written_when_the_lake_is_missing(tmp_path: Path) -> None:
    lab = steps.open_lab(lab_params(tmp_path))
    page = steps.write_report(lab, []).read_text()
    assert page.count("not available") == 3 and "No route suggestions in this run" in page
