"""Crawler, catalog and Athena SQL on a lake written without Spark: fast, but real DuckDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcity import athena, catalog, report, simulate
from smartcity.config import TOPICS, Params
from tests.conftest import lab_params
from tests.unit.lake_fixture import write_lake


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, dict[str, int]]:
    cfg = lab_params(tmp_path_factory.mktemp("catalog"))
    counts = write_lake(cfg, simulate.simulate_journey(cfg))
    catalog.crawl(cfg)
    return cfg, counts


def test_crawl_registers_every_table_with_schema_partitions_and_counts(crawled: tuple[Params, dict[str, int]]) -> None:
    cfg, counts = crawled
    tables = catalog.describe(cfg, "tables").set_index("table_name")
    assert sorted(tables.index) == sorted(TOPICS)
    assert tables["row_count"].to_dict() == counts
    assert set(tables["partition_keys"]) == {"event_date"}
    columns = catalog.describe(cfg, "columns", table="vehicle_data")
    assert columns["column_name"].tolist()[:4] == ["id", "schemaVersion", "deviceId", "timestamp"]
    assert columns.set_index("column_name").at["event_date", "is_partition"]
    assert columns.set_index("column_name").at["timestamp", "data_type"] == "timestamp"
    assert catalog.view_counts(cfg) == counts


def test_crawling_again_changes_nothing(crawled: tuple[Params, dict[str, int]]) -> None:
    cfg, counts = crawled
    before = [catalog.describe(cfg, t) for t in ("tables", "columns", "partitions")]
    catalog.crawl(cfg)
    after = [catalog.describe(cfg, t) for t in ("tables", "columns", "partitions")]
    assert all(b.equals(a) for b, a in zip(before, after))
    assert report.stage_counts(cfg)["catalog"].to_dict() == counts


def test_describe_names_a_missing_table(crawled: tuple[Params, dict[str, int]]) -> None:
    with pytest.raises(KeyError, match="not in the catalog"):
        catalog.describe(crawled[0], "columns", table="nope")


@pytest.mark.parametrize("name", athena.list_queries())
def test_every_athena_query_transpiles_and_runs(crawled: tuple[Params, dict[str, int]], name: str) -> None:
    result = athena.run_query(crawled[0], name)
    assert len(result) > 0
    assert not any(str(t).startswith("float") and c.endswith(("count", "fixes", "reports", "passages"))
                   for c, t in result.dtypes.items()), "counts come back as integers"


def test_row_counts_query_agrees_with_the_lake(crawled: tuple[Params, dict[str, int]]) -> None:
    cfg, counts = crawled
    result = athena.run_query(cfg, "row_counts").set_index("table_name")["row_count"].to_dict()
    assert result == counts


def test_unknown_query_and_missing_catalog_are_clear(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no athena query named 'nope'"):
        athena.athena_sql("nope")
    with pytest.raises(FileNotFoundError, match="run 03_catalog first"):
        athena.run_query(lab_params(tmp_path), "row_counts")
