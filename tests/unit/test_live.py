"""Live mode's figures and its background run's bookkeeping, without engines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from smartcity import steps
from smartcity.fleet.contracts import TOPICS
from smartcity.ops import live
from smartcity.params import Params
from smartcity.platform.background import SUPERVISOR_FILE, BackgroundError
from smartcity.present import charts
from smartcity.stream import monitor
from tests.conftest import lab_params


def _batch(published_at: float, produced: list[float], messages: int) -> dict:
    return {"published_at": published_at, "metrics": {"messages": messages, "produced_quantiles": produced}}


def test_freshness_weights_each_batch_by_its_events() -> None:
    small_and_stale = _batch(100.0, [90.0, 90.0, 90.0], 10)  # 10 s old
    big_and_fresh = _batch(100.0, [99.0, 99.5, 100.0], 990)  # 0 to 1 s old
    p50, p95 = monitor.freshness_percentiles([small_and_stale, big_and_fresh])
    assert p50 == pytest.approx(0.5) and p95 <= 1.0
    assert monitor.freshness_percentiles([]) == [None, None]
    assert monitor.freshness_percentiles([small_and_stale], (0.5,)) == [10.0]


def _run_files(tmp_path: Path) -> Params:
    """The JSON Lines of a 4-second live run: three seconds producing, one draining."""
    cfg = lab_params(tmp_path, mode="live", live_seconds=3.0)
    board = monitor.StatusBoard(started=time.time() - 4)
    produced: Counter[str] = Counter()
    rows = []
    for second in range(4):
        if second < 3:
            produced.update({t: 100 for t in TOPICS})
        done = {
            "batch": second,
            "published_at": time.time(),
            "rows": {t: 100 for t in TOPICS},
            "metrics": {"messages": 500, "produced_quantiles": [time.time() - 2.0, time.time() - 1.0]},
        }
        board.add_batch(done)
        rows.append(board.sample(produced, {t: 0 for t in TOPICS}, "producing" if second < 3 else "draining"))
    out = cfg.paths.live
    out.mkdir(parents=True)
    (out / monitor.STATUS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return cfg


def test_the_status_lines_read_back_flat_and_summarize(tmp_path: Path) -> None:
    cfg = _run_files(tmp_path)
    status = monitor.read_status(cfg.paths.live)
    assert len(status) == 4 and list(status["phase"]) == ["producing"] * 3 + ["draining"]
    assert status["vehicle_data.written"].iloc[-1] == 400 and status["lag"].iloc[-1] == 0
    summary = monitor.summarize_run(cfg.paths.live)
    assert summary["samples"] == 4 and summary["max_lag"] == 0 and summary["quarantined"] == 0


def test_the_live_chart_says_what_it_shows(tmp_path: Path) -> None:
    chart = charts.live_run(monitor.read_status(_run_files(tmp_path).paths.live))
    assert chart.png.startswith(b"\x89PNG") and chart._repr_png_() == chart.png
    assert "ended at 0" in chart.sentence and "draining" in chart.sentence
    assert repr(chart).startswith("The live run:") and "PNG" not in repr(chart)


def test_batch_mode_has_no_live_plot_but_says_how_to_get_one(tmp_path: Path) -> None:
    note = steps.plot_live_run(steps.open_lab(lab_params(tmp_path)))
    assert "params/live.yaml" in note.data


def test_attaching_without_a_live_run_or_to_a_failed_one_is_a_clear_error(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path, mode="live", live_seconds=5.0)
    with pytest.raises(BackgroundError, match="run 01_simulate with mode: live"):
        steps.wait_live(cfg)
    assert steps.stop_live(cfg) is False
    out = cfg.paths.live
    out.mkdir(parents=True)
    (out / SUPERVISOR_FILE).write_text(json.dumps({"pid": 2**22 + 7, "params": "p", "started_at": time.time()}))
    steps.live_process(cfg).log.write_text("boom: the broker went away\n")
    live.record_exit(cfg, RuntimeError("the live stream failed: broker gone"))
    with pytest.raises(BackgroundError, match="broker gone(.|\n)*boom: the broker went away"):
        steps.wait_live(cfg, progress=False)
    live.record_exit(cfg, None)
    (out / "summary.json").write_text(json.dumps({"produced": {"gps_data": 1}}))
    assert steps.wait_live(cfg, progress=False) == {"produced": {"gps_data": 1}}


def test_only_a_running_smartcity_live_process_counts_as_alive(tmp_path: Path) -> None:
    process = steps.live_process(lab_params(tmp_path))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not process.alive(other.pid), "a pid that is not `smartcity live` (a reused pid) is not the run"
    finally:
        other.kill()
        other.wait()
    assert not process.alive(2**22 + 7)


def test_a_line_the_live_process_is_still_writing_is_not_read(tmp_path: Path) -> None:
    cfg = _run_files(tmp_path)
    path = cfg.paths.live / monitor.STATUS_FILE
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[0][:40])  # half a line, as a reader may catch it
    assert len(monitor.read_status(cfg.paths.live)) == 4


def test_the_live_map_serves_its_page_and_state_and_says_when_its_port_is_taken() -> None:
    import urllib.request
    from datetime import UTC, datetime

    import numpy as np

    from smartcity.fleet.roads import load_network
    from smartcity.fleet.simulation import TickView
    from smartcity.present import live_map

    network = load_network()
    state = live_map.MapState(network, lambda: {"london--marble_arch": 20.0}, list, lambda: "trips: none", str.upper)
    view = TickView(datetime(2026, 1, 5, 8, 30, tzinfo=UTC), ["vehicle-001"], np.array([51.5]), np.array([-0.12]), [])
    state.on_tick(view)
    with live_map.serve(state) as url:
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "L.map(" in page and len(page) > 100_000, "Leaflet inlined"
        fetches = re.findall(r"<script[^>]*\ssrc=|<link[^>]*\shref=[\"']?https?:|url\([\"']?https?:", page)
        assert fetches == [], "nothing fetched from elsewhere"
        shown = json.loads(urllib.request.urlopen(url + "state.json", timeout=10).read())
        assert shown["clock"] == "08:30" and shown["vehicles"] == [["vehicle-001", 51.5, -0.12, "VEHICLE-001"]]
        assert shown["speeds"] == {"london--marble_arch": 20.0} and shown["trips"] == "trips: none"
        roads = json.loads(urllib.request.urlopen(url + "network.json", timeout=10).read())
        assert set(roads["edges"]) == set(network.edges)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(OSError, match="live_map_port"), live_map.serve(state, port):
            pass


def test_the_advice_chart_follows_the_trips_as_they_end(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from smartcity.advice import trips
    from smartcity.fleet.following import ADVISED, UNADVISED, Trip

    cfg = _run_files(tmp_path)
    depart = datetime(2026, 1, 5, 8, tzinfo=UTC)
    ended = [
        Trip(f"v{n}", group, "M40", depart, depart + timedelta(minutes=minutes))
        for n, (group, minutes) in enumerate(
            [(ADVISED, 150 + n % 4) if n % 2 else (UNADVISED, 165 + n % 5) for n in range(16)]
        )
    ]
    status = cfg.paths.live / monitor.STATUS_FILE
    rows = [json.loads(line) for line in status.read_text().splitlines()]
    for row, seen in zip(rows, (2, 6, 12, 16), strict=True):  # trips ended by each second
        row["trips"] = trips.compare(ended[:seen])
    status.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lab = steps.open_lab(cfg)
    chart = steps.plot_advice(lab)
    assert chart.png.startswith(b"\x89PNG") and "saved 15.0 min" in chart.sentence and "95% CI" in chart.sentence
    rows[-1]["trips"] = trips.compare(ended[:6])  # 3 of each: too few for a saving
    status.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "No saving yet" in steps.plot_advice(lab).sentence
    assert "params/live.yaml" in steps.plot_advice(steps.open_lab(lab_params(tmp_path / "batch"))).data
