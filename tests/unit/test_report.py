from __future__ import annotations

from pathlib import Path

import pytest

from smartcity import report
from smartcity.config import TOPICS
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
