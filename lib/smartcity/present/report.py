"""What a run leaves for people: the HTML report that shows the run.

It reconciles the count ledger (:mod:`smartcity.platform.ledger`: how many events of each topic
every stage holds): every produced event should be in every later stage exactly once.

The report page (``<output_dir>/index.html``) is one self-contained file: the counts, a thumbnail
of each map (linking to the map), the route suggestions and how much they saved, and the key
charts from the lake, each with a sentence saying what it shows. Images are inline PNGs, so the
page reads the same offline, archived or mailed.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from smartcity.platform.ledger import Ledger
from smartcity.present import charts


@dataclass
class NotebookRun:
    name: str
    executed: Path
    html: Path | None
    seconds: float
    error: str = ""


def _link(path: Path | None, base: Path, label: str, inner_html: str = "") -> str:
    if path is None or not path.exists():
        return inner_html
    return f'<a href="{html.escape(str(path.relative_to(base)))}">{inner_html or html.escape(label)}</a>'


log = logging.getLogger(__name__)

#: What each of the lab's maps shows, for the captions of their thumbnails.
MAP_CAPTIONS = {
    "corridor": "The three routes, the traffic cameras and the weather stations along them.",
    "journey": "Each vehicle's GPS track, the incidents, weather stations and cameras, and the suggested routes.",
}


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{html.escape(alt)}"{size}>'


def _map_cards(maps: Sequence[Path], base: Path) -> str:
    cards = []
    for m in maps:
        thumb = m.with_suffix(".png")
        picture = (
            _img(thumb.read_bytes(), f"map {m.stem}", 480) if thumb.exists() else f"<span>{html.escape(m.stem)}</span>"
        )
        caption = MAP_CAPTIONS.get(m.stem, "")
        cards.append(
            f'<figure class="map">{_link(m, base, "", picture)}<figcaption><b>{_link(m, base, m.stem)}</b> '
            f"{html.escape(caption)} Opens offline; with network the OpenStreetMap tiles appear under it.</figcaption></figure>"
        )
    return "\n".join(cards) or "<p>No map was saved in this run.</p>"


#: Reads one lake table as pandas (the lake of the run the report shows).
TableReader = Callable[[str], pd.DataFrame]


def _charts(read: TableReader) -> list[object]:
    """The key charts from the lake; a chart that cannot be drawn says why instead of breaking the report."""

    def frame(table: str) -> pd.DataFrame:
        data = read(table)
        if data.empty:
            raise LookupError(f"the lake has no {table} rows")
        return data

    made: list[object] = []
    makers = (
        ("Trip times by route", lambda: charts.trip_times(frame("vehicle_data"))),
        (
            "Speed along each route, incidents marked",
            lambda: charts.speed_along_routes(frame("vehicle_data"), frame("emergency_data")),
        ),
        ("The rain band's passage", lambda: charts.rain_band(frame("weather_data"))),
    )
    for title, make in makers:
        try:
            made.append(make())
        except Exception as exc:
            log.warning("report chart %r not drawn: %s", title, exc)
            made.append((title, f"not available: {exc}"))
    return made


def _chart_html(chart: object) -> str:
    if isinstance(chart, charts.Chart):
        return (
            f'<figure class="chart"><h3>{html.escape(chart.title)}</h3>{_img(chart.png, chart.title)}'
            f"<figcaption>{html.escape(chart.sentence)}</figcaption></figure>"
        )
    title, why = chart  # type: ignore[misc]
    return f'<figure class="chart"><h3>{html.escape(title)}</h3><p class="bad">{html.escape(why)}</p></figure>'


def _routes_section(path: Path) -> str:
    """Suggestions by departure hour and the judged minutes saved, when 06_route_map made them (``path``)."""
    if not path.exists():
        return "<p>No route suggestions in this run (06_route_map makes them).</p>"
    doc = json.loads(path.read_text())
    learnt = doc["learnt_from"]
    table = pd.DataFrame(doc["suggestions"]).set_index("departs")
    error = (
        f"{learnt['typical_error']:.1%} (leave-one-vehicle-out over {learnt['trips_cross_validated']} trips)"
        if learnt["typical_error"] is not None
        else "not measurable (no complete trip to leave out)"
    )
    parts = [
        f"<p>Learnt from {learnt['traversals']} edge traversals by {learnt['vehicles']} vehicles of this run "
        f"(seed {learnt['seed']}); typical error of a predicted trip time: {error}.</p>",
        table.to_html(na_rep="-", classes="numbers"),
    ]
    verdict = doc.get("verdict")
    if verdict:
        summary = pd.DataFrame(verdict["summary"]).set_index("suggestions from")
        first = summary.iloc[0]
        parts.append(
            f"<p><b>Judged on another seed ({verdict['seed']}), never seen by the model:</b> the same "
            f"{int(first['vehicles'])} vehicles, leaving at the same times with the same incidents and weather, saved "
            f"{first['mean saved min']:.1f} minutes on average on the suggested routes (95% interval of the mean "
            f"{first['95% CI low']:.1f} to {first['95% CI high']:.1f}; sd {first['sd min']:.1f}).</p>"
        )
        parts.append(summary.to_html(na_rep="-", classes="numbers"))
        trips = pd.DataFrame(verdict["trips"])
        parts.append(_chart_html(charts.minutes_saved(trips)))
    return "\n".join(parts)


def _safely(section: Callable[[Any], str], arg: Any) -> str:
    try:
        return section(arg)
    except Exception as exc:
        log.warning("report section %s failed: %s", getattr(section, "__name__", section), exc)
        return f"<p class='bad'>not available: {html.escape(str(exc))}</p>"


@dataclass(frozen=True)
class RunRecord:
    """What the report shows of one profile's run."""

    profile: str
    output: Path  # the profile's outputs/<profile>/, where index.html goes
    parameters: Mapping[str, Any]
    ledger: Ledger
    read_table: TableReader
    routes_file: Path  # 06_route_map's results (suggestions and verdict), if it ran


#: The front page's style sheet.
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 64rem; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; } td, th { border: 1px solid #ccc; padding: .25rem .5rem; }
th { background: #f3f3f3; } .ok { color: #1b7a1b; } .bad { color: #b00020; }
.maps { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0 0 1.5rem 0; }
figure.map { width: 480px; } figure.map img { border: 1px solid #ccc; display: block; }
figcaption { font-size: .9rem; color: #444; margin-top: .3rem; } .chart img { max-width: 100%; }
h3 { margin: .5rem 0; font-size: 1rem; } details { margin: 1rem 0; }
"""


def _counts_section(run: RunRecord) -> str:
    """What each stage holds, topic by topic, and whether every produced event is in each exactly once."""
    frame, problems = run.ledger.reconcile()
    verdict = (
        "<p class='ok'>Every produced event is in the lake, the catalog and the warehouse exactly once.</p>"
        if not problems
        else "<ul class='bad'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"
    )
    produced = int(frame["produced"].sum()) if "produced" in frame.columns else 0
    sentence = (
        f"{produced:,} events were produced to Kafka; each later column counts what that stage holds, topic by topic."
        if produced
        else "No stage has recorded its counts yet."
    )
    return f"<p>{sentence}</p>\n{frame.to_html(na_rep='-')}\n{verdict}"


def _notebooks_section(runs: Sequence[NotebookRun], base: Path) -> tuple[str, str]:
    """How far the run got (a sentence) and a row per notebook for the table at the end."""
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
    failed = [r.name for r in runs if r.error]
    status = (
        f"<p class='bad'>Stopped at {html.escape(failed[0])}: later stages did not run.</p>"
        if failed
        else f"<p>{len(runs)} notebook(s) ran: {html.escape(', '.join(r.name for r in runs))}.</p>"
        if runs
        else ""
    )
    return status, rows


def write_index(run: RunRecord, runs: Sequence[NotebookRun], maps: Sequence[Path]) -> Path:
    """The report's front page: counts, maps, route suggestions, key charts, notebooks, parameters."""
    base = run.output
    status, rows = _notebooks_section(runs, base)
    params = pd.DataFrame(sorted(run.parameters.items()), columns=["parameter", "value"])
    charts_html = "\n".join(_chart_html(c) for c in _charts(run.read_table))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Smart City lab: {html.escape(run.profile)}</title>
<style>{_STYLE}</style></head><body>
<h1>Smart City lab &mdash; profile <code>{html.escape(run.profile)}</code></h1>
{status}
<h2>Events per stage</h2>
{_counts_section(run)}
<h2>Maps</h2>
<div class="maps">{_map_cards(maps, base)}</div>
<h2>Route suggestions</h2>
{_safely(_routes_section, run.routes_file)}
<h2>What the sensors saw</h2>
{charts_html}
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>outcome</th><th>seconds</th><th>rendered</th><th>executed</th></tr>
{rows}
</table>
<details><summary>Parameters of this run</summary>
{params.to_html(index=False)}
</details>
</body></html>
"""
    index = base / "index.html"
    base.mkdir(parents=True, exist_ok=True)
    index.write_text(page)
    return index
