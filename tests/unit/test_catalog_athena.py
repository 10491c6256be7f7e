"""Crawler, catalog and Athena SQL on a lake written without Spark: fast, but real DuckDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcity import steps
from smartcity.catalog import crawler as catalog
from smartcity.fleet import simulation
from smartcity.fleet.contracts import TOPICS
from smartcity.query import athena
from smartcity.steps import Lab
from tests.conftest import lab_params
from tests.lake_fixture import write_lake


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lab, dict[str, int]]:
    lab = steps.open_lab(lab_params(tmp_path_factory.mktemp("catalog")))
    counts = write_lake(lab.cfg, simulation.simulate_journey(lab.cfg.fleet))
    steps.crawl_lake(lab)
    return lab, counts


def test_crawl_registers_every_table_with_schema_partitions_and_counts(crawled: tuple[Lab, dict[str, int]]) -> None:
    lab, counts = crawled
    tables = catalog.describe(lab.cfg.paths.catalog, "tables").set_index("table_name")
    assert sorted(tables.index) == sorted([*TOPICS, "quarantine"])
    assert tables["row_count"].to_dict() == {**counts, "quarantine": 0}
    assert set(tables.loc[list(TOPICS), "partition_keys"]) == {"event_date"}
    columns = catalog.describe(lab.cfg.paths.catalog, "columns", table="vehicle_data")
    assert columns["column_name"].tolist()[:4] == ["id", "schemaVersion", "deviceId", "timestamp"]
    assert columns.set_index("column_name").at["event_date", "is_partition"]
    assert columns.set_index("column_name").at["timestamp", "data_type"] == "timestamp"
    assert steps.catalog_counts(lab) == {**counts, "quarantine": 0}


def test_crawling_again_changes_nothing(crawled: tuple[Lab, dict[str, int]]) -> None:
    lab, counts = crawled
    before = [catalog.describe(lab.cfg.paths.catalog, t) for t in ("tables", "columns", "partitions")]
    steps.crawl_lake(lab)
    after = [catalog.describe(lab.cfg.paths.catalog, t) for t in ("tables", "columns", "partitions")]
    assert all(b.equals(a) for b, a in zip(before, after))
    assert lab.ledger.table()["catalog"].to_dict() == counts


def test_describe_names_a_missing_table(crawled: tuple[Lab, dict[str, int]]) -> None:
    with pytest.raises(KeyError, match="not in the catalog"):
        catalog.describe(crawled[0].cfg.paths.catalog, "columns", table="nope")


@pytest.mark.parametrize("name", athena.list_queries())
def test_every_athena_query_transpiles_and_runs(crawled: tuple[Lab, dict[str, int]], name: str) -> None:
    result = steps.query_lake(crawled[0], name)
    assert len(result) > 0
    assert not any(
        str(t).startswith("float") and c.endswith(("count", "fixes", "reports", "passages"))
        for c, t in result.dtypes.items()
    ), "counts come back as integers"


def test_row_counts_query_agrees_with_the_lake(crawled: tuple[Lab, dict[str, int]]) -> None:
    lab, counts = crawled
    result = steps.query_lake(lab, "row_counts").set_index("table_name")["row_count"].to_dict()
    assert result == counts


def test_unknown_query_and_missing_catalog_are_clear(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no athena query named 'nope'"):
        athena.athena_sql("nope")
    with pytest.raises(FileNotFoundError, match="run 03_catalog first"):
        steps.query_lake(steps.open_lab(lab_params(tmp_path)), "row_counts")


def test_a_table_without_events_yet_is_catalogued_empty_in_its_contracts_schema(tmp_path: Path) -> None:
    """A short live run may have had no incident yet: emergency_data exists all the same, and queries run."""
    lab = steps.open_lab(lab_params(tmp_path))
    cfg = lab.cfg
    events = [e for e in simulation.simulate_journey(cfg.fleet) if e.topic != "emergency_data"]
    counts = write_lake(cfg, events)
    summary = steps.crawl_lake(lab)
    assert summary.at["emergency_data", "row_count"] == 0 and summary.at["emergency_data", "files"] == 0
    columns = catalog.describe(cfg.paths.catalog, "columns", table="emergency_data").set_index("column_name")
    assert {"incidentId", "severity", "event_date"} <= set(columns.index) and columns.at["event_date", "is_partition"]
    assert steps.catalog_counts(lab) == {**counts, "emergency_data": 0, "quarantine": 0}
    for name in athena.list_queries():
        steps.query_lake(lab, name)  # none fails for the missing rows
    write_lake(cfg, simulation.simulate_journey(cfg.fleet))  # the incidents arrive: the next crawl picks them up
    assert steps.crawl_lake(lab).at["emergency_data", "row_count"] > 0
