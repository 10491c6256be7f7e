from __future__ import annotations

from pathlib import Path

import pytest

from smartcity.present import report
from smartcity.params import TOPICS
from tests.conftest import lab_params


def test_reconcile_agrees_when_every_stage_holds_what_was_produced(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    counts = {t: n for n, t in enumerate(TOPICS, start=1)}
    for stage in report.STAGES:
        report.record_counts(cfg, stage, counts)
    frame, problems = report.reconcile(cfg)
    assert problems == []
    assert list(frame.columns) == list(report.STAGES)


def test_reconcile_names_the_topic_and_stage_that_disagree(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    counts = {t: 10 for t in TOPICS}
    for stage in report.STAGES:
        report.record_counts(cfg, stage, counts)
    report.record_counts(cfg, "warehouse", {**counts, "gps_data": 9})
    _, problems = report.reconcile(cfg)
    assert problems == ["gps_data: 10 produced but 9 in warehouse"]


def test_missing_stages_are_reported(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    report.record_counts(cfg, "produced", {t: 1 for t in TOPICS})
    _, problems = report.reconcile(cfg)
    assert problems == ["stages without recorded counts: lake, catalog, warehouse"]
    with pytest.raises(ValueError, match="unknown stage"):
        report.record_counts(cfg, "kafka", {})


def test_index_links_what_exists(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    executed = cfg.output_path / "notebooks" / "01_simulate.ipynb"
    executed.parent.mkdir(parents=True)
    executed.write_text("{}")
    page = report.write_index(cfg, [report.NotebookRun("01_simulate", executed, None, 1.5)], []).read_text()
    assert 'href="notebooks/01_simulate.ipynb"' in page and "<td>ok</td>" in page


@pytest.fixture(scope="module")
def run_outputs(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A small run's lake, catalog, maps and route results, written without Kafka or Spark."""
    from smartcity.catalog import crawler as catalog
    from smartcity.present import maps
    from smartcity.routes import model as routes
    from smartcity.fleet import simulation
    from tests.unit.lake_fixture import write_lake

    cfg = lab_params(tmp_path_factory.mktemp("run"))
    counts = write_lake(cfg, simulation.simulate_journey(cfg))
    for stage in ("produced", "lake"):
        report.record_counts(cfg, stage, counts)
    catalog.crawl(cfg)
    model = routes.fit_edge_times(routes.read_observations(cfg))
    table = routes.suggest(model, routes.departures_by_hour(cfg.start_time, [7, 9]), routes.fleet_weights(cfg))
    routes.save_results(cfg, model, table, routes.judge(cfg, model, seed=cfg.seed + 1, vehicles=3))
    maps.save_map(maps.corridor_map(), cfg, "corridor")
    maps.save_map(maps.journey_map(cfg, suggestions=table), cfg, "journey")
    return cfg


def test_index_shows_counts_maps_suggestions_and_charts(run_outputs: object) -> None:
    import re

    cfg = run_outputs
    maps = sorted((cfg.output_path / "maps").glob("*.html"))
    page = report.write_index(cfg, [], maps).read_text()
    for heading in ("Events per stage", "Maps", "Route suggestions", "What the sensors saw", "Notebooks"):
        assert f"<h2>{heading}</h2>" in page
    # two map thumbnails linking to their maps, four charts (trips, speed, rain, minutes saved)
    assert page.count('<figure class="map"><a href="maps/') == 2
    assert page.count('<figure class="chart">') == 4 and "not available" not in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 6
    assert "Judged on another seed (43)" in page and "trips took" in page and "reached Birmingham first" in page
    assert not re.search(r'<(script|link|img|iframe)\b[^>]*\b(src|href)="(https?:)?//', page), "self-contained"


def test_index_is_written_when_the_lake_is_missing(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    page = report.write_index(cfg, [], []).read_text()
    assert page.count("not available") == 3 and "No route suggestions in this run" in page
