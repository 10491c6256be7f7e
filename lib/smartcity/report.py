"""What a run leaves for people: per-stage event counts and the HTML report that links everything.

Each stage records how many events it holds per topic (produced to Kafka, in the lake, in the
catalog, in the warehouse) under ``<output_dir>/counts/``. The report reconciles them: every
produced event should be in every later stage exactly once.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smartcity.config import TOPICS, Params

STAGES = ("produced", "lake", "catalog", "warehouse")


def counts_dir(cfg: Params) -> Path:
    return cfg.output_path / "counts"


def record_counts(cfg: Params, stage: str, counts: Mapping[str, int]) -> None:
    """Remember how many events of each topic a stage holds after this run."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    counts_dir(cfg).mkdir(parents=True, exist_ok=True)
    data = {t: int(counts.get(t, 0)) for t in TOPICS}
    (counts_dir(cfg) / f"{stage}.json").write_text(json.dumps(data, indent=2) + "\n")


def clear_counts(cfg: Params) -> None:
    for stage in STAGES:
        (counts_dir(cfg) / f"{stage}.json").unlink(missing_ok=True)


def stage_counts(cfg: Params) -> pd.DataFrame:
    """Topics x stages: events per topic at each stage that has recorded its counts."""
    columns = {}
    for stage in STAGES:
        path = counts_dir(cfg) / f"{stage}.json"
        if path.exists():
            columns[stage] = json.loads(path.read_text())
    frame = pd.DataFrame(columns, index=list(TOPICS)).rename_axis("topic")
    return frame.astype("Int64")


def reconcile(cfg: Params) -> tuple[pd.DataFrame, list[str]]:
    """The counts table plus one message per topic and stage that disagrees with what was produced."""
    frame = stage_counts(cfg)
    problems = []
    missing = [s for s in STAGES if s not in frame.columns]
    if missing:
        problems.append(f"stages without recorded counts: {', '.join(missing)}")
    if "produced" in frame.columns:
        for stage in frame.columns.drop("produced"):
            for topic in frame.index:
                if frame.at[topic, stage] != frame.at[topic, "produced"]:
                    problems.append(
                        f"{topic}: {frame.at[topic, 'produced']} produced but {frame.at[topic, stage]} in {stage}"
                    )
    return frame, problems


@dataclass
class NotebookRun:
    name: str
    executed: Path
    html: Path | None
    seconds: float
    error: str = ""


def _link(path: Path | None, base: Path, label: str) -> str:
    if path is None or not path.exists():
        return ""
    return f'<a href="{html.escape(str(path.relative_to(base)))}">{html.escape(label)}</a>'


def write_index(cfg: Params, runs: Sequence[NotebookRun], maps: Sequence[Path]) -> Path:
    """The report's front page: run parameters, each notebook with its outcome, maps, reconciliation."""
    base = cfg.output_path
    frame, problems = reconcile(cfg)
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{:.1f}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(r.name),
            "failed: " + html.escape(r.error) if r.error else "ok",
            r.seconds,
            _link(r.html, base, "report"),
            _link(r.executed, base, "notebook"),
        )
        for r in runs
    )
    map_items = "\n".join(f"<li>{_link(m, base, m.stem)}</li>" for m in maps) or "<li>none</li>"
    verdict = (
        "<p class='ok'>Every produced event is in the lake, the catalog and the warehouse exactly once.</p>"
        if not problems
        else "<ul class='bad'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"
    )
    params = pd.DataFrame(sorted(cfg.as_dict().items()), columns=["parameter", "value"])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Smart City lab: {html.escape(cfg.profile)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; }}
th {{ background: #f3f3f3; }} .ok {{ color: #1b7a1b; }} .bad {{ color: #b00020; }}
</style></head><body>
<h1>Smart City lab &mdash; profile <code>{html.escape(cfg.profile)}</code></h1>
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>outcome</th><th>seconds</th><th>rendered</th><th>executed</th></tr>
{rows}
</table>
<h2>Maps</h2><ul>{map_items}</ul>
<h2>Events per stage</h2>
{frame.to_html(na_rep="-")}
{verdict}
<h2>Parameters</h2>
{params.to_html(index=False)}
</body></html>
"""
    index = base / "index.html"
    index.write_text(page)
    return index
