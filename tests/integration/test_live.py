"""`smartcity live`: the fleet produces while the stream runs; Ctrl-C drains, stops everything, loses nothing.

The live run is a process of its own with its own broker (its own data dir and port), as a user
starts it from a terminal. A terminal's Ctrl-C reaches the whole foreground process group, so the
test sends SIGINT to the group, not only to the Python process.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import jsonschema
import numpy as np
import psutil
import pytest
import yaml

from smartcity import steps
from smartcity.fleet.contracts import TOPICS
from smartcity.params import Params
from smartcity.platform import topics
from smartcity.platform.params import project_root
from smartcity.platform.processes import port_open
from smartcity.stream import lake, monitor
from tests import browser
from tests.browser import LOOPBACK_ONLY
from tests.conftest import lab_params, read_topics

pytestmark = pytest.mark.integration


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "smartcity", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=project_root(),
            start_new_session=True,
        )


def _family(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _written(cfg: Params) -> int:
    status = monitor.read_status(cfg.paths.live)
    return 0 if status.empty else int(sum(status[f"{t}.written"].iloc[-1] for t in TOPICS))


def _trips(cfg: Params) -> dict[str, int]:
    """Trips ended so far, advised and unadvised."""
    ended = Counter(json.loads(line)["group"] for line in _lines(cfg.paths.live / "trips.jsonl"))
    return {g: ended[g] for g in ("advised", "unadvised")}


def _lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def _glob_counts(cfg: Params) -> dict[str, int]:
    """What a reader that shares none of the lab's code sees: DuckDB over each table folder."""
    counts = {}
    for topic in TOPICS:
        pattern = cfg.paths.lake / topic / "**" / "*.parquet"
        found = glob.glob(str(pattern), recursive=True)  # DuckDB refuses a glob that matches nothing
        counts[topic] = (
            duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}', union_by_name = true)").fetchall()[0][0]
            if found
            else 0
        )
    return counts


@pytest.fixture(scope="module")
def live_cfg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, Path]:
    root = tmp_path_factory.mktemp("live")
    cfg = lab_params(
        root,
        mode="live",
        vehicles=6,
        departure_spacing_seconds=10.0,
        departure_rate_per_hour=40.0,
        tick_seconds=30.0,  # with speedup 600, a trip of 2-3 simulated hours ends in 12-18 s
        speedup=600.0,
        advised_share=0.5,
        advice_window_seconds=600,
        advice_watermark_seconds=300,
        live_seconds=0.0,
        live_map_port=0,
        producer_backend="confluent-kafka",
        incident_rate=2.0,
        stream_trigger_seconds=1.0,
        stream_warm_up_events=0,  # the warm-up is tested on the session's Spark (test_spark): 40 s less here
        base_date="2026-01-05T07:00:00+00:00",
    )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return cfg, params


def test_ctrl_c_drains_the_live_run_and_stops_everything_and_a_restart_finds_nothing_lost(
    live_cfg: tuple[Params, Path],
) -> None:
    cfg, params = live_cfg
    log = params.parent / "live.log"
    proc = _start(["live", "--params", str(params), "--quiet"], log)
    family: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 240
        while _written(cfg) < 2000 or min(_trips(cfg).values(), default=0) < 3:  # the stream and advice both at work
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not 3 trips of each group within 240 s:\n{log.read_text()[-3000:]}"
            family.update({p.pid: p for p in _family(proc)})
            time.sleep(0.5)
        _check_live_map(cfg)
        family.update({p.pid: p for p in _family(proc)})
        assert len(family) >= 3, "the live process, its broker and its Spark driver"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(180) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    _, alive = psutil.wait_procs(list(family.values()), timeout=20)
    assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"
    assert not port_open(*cfg.kafka.addresses[0]), "the broker the live run started is stopped"

    summary = json.loads((cfg.paths.live / "summary.json").read_text())
    status = monitor.read_status(cfg.paths.live)
    produced = {t: summary["produced"].get(t, 0) for t in TOPICS}
    assert sum(produced.values()) > 2000 and all(produced[t] > 0 for t in ("vehicle_data", "gps_data", "weather_data"))
    assert (status["phase"] == "producing").any() and status["phase"].iloc[-1] == "draining"
    assert status["lag"].max() >= 0 and status["lag"].iloc[-1] == 0, "the lag returns to 0 once the producer stops"
    # batches arrive every second or several, as busy as the machine is: what counts is that they arrived
    # while the fleet drove, not how many seconds saw one
    assert (status.loc[status["phase"] == "producing", "written_per_s"] > 0).any(), (
        "the lake filled while the fleet was driving"
    )
    assert {t: summary["in_lake"][t] for t in TOPICS} == produced == _glob_counts(cfg)
    assert summary["in_lake"][lake.QUARANTINE] == 0

    # a restart of the stream alone: Kafka holds nothing the lake lacks, nothing is written twice
    restart = _start(["stream", "--params", str(params), "--duration", "8"], log)  # a trigger a second
    assert restart.wait(240) == 0, log.read_text()[-3000:]
    assert _glob_counts(cfg) == produced
    with steps.open_broker(cfg) as broker:  # started again on its data: the topics hold what was produced
        ends = topics.topic_counts(broker.bootstrap, TOPICS)
        advice = read_topics(broker.bootstrap, ["route_advice"])
    assert {t: ends[t] for t in TOPICS} == produced
    lake_trips = _check_advice(cfg, summary, [json.loads(r.value) for r in advice])

    # and the later stages agree: catalog and warehouse take what the live run committed
    lab = steps.open_lab(cfg)
    in_lake = steps.advice_in_lake(lab)  # 06's comparison, from the lake alone
    assert {g: in_lake.loc[g, "trips"] for g in lake_trips} == lake_trips and lake_trips["advised"] >= 3, in_lake
    assert in_lake.loc["advised", "advice expected min"] > 0, "each advised vehicle's advice is in the advice table"
    steps.crawl_lake(lab)  # records the catalog's counts in the ledger
    assert {t: n for t, n in steps.catalog_counts(lab).items() if t in TOPICS} == produced
    with steps.open_warehouse(lab) as warehouse:  # this lab's own, as the live profile has
        steps.load_warehouse(lab, warehouse)  # records the warehouse's counts in the ledger
        assert warehouse.counts(TOPICS) == produced
    _, problems = lab.ledger.reconcile()
    assert problems == [], problems


#: The live map's colours (lib/smartcity/present/web/live_map.html): speed classes, and advised vehicles.
ROAD_COLOURS = ("#1a9850", "#fdae61", "#d73027")
ADVISED_DOT = "#2c7bb6"


def _pixels_near(image: np.ndarray, colour: str, tolerance: int = 40) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image - rgb).sum(axis=2) <= tolerance).sum())


def _check_live_map(cfg: Params) -> None:
    """The live map, in headless Chromium that reaches nothing but the loopback: it draws the roads coloured by
    speed and the advised vehicles, and two screenshots a few seconds apart differ (it follows the run)."""
    url = monitor.read_status(cfg.paths.live)["map"].iloc[-1]
    assert url.startswith("http://127.0.0.1:"), url
    first = browser.screenshot(url, 1000, 700, LOOPBACK_ONLY)
    time.sleep(3)
    second = browser.screenshot(url, 1000, 700, LOOPBACK_ONLY)
    assert (first != second).any(), "the map did not change in 3 s of a running fleet"
    assert sum(_pixels_near(second, c) for c in ROAD_COLOURS) > 500, "roads coloured by their speed now"
    assert _pixels_near(second, ADVISED_DOT) > 10, "advised vehicles on the road"
    dom = browser.dump_dom(url, 1000, 700, LOOPBACK_ONLY)
    updates = re.search(r'data-updates="(\d+)"', dom)
    assert updates and int(updates.group(1)) >= 2, f"the page polled the run's state:\n{dom[-1500:]}"
    assert "London → Birmingham, live" in dom and "advice:" in dom


def _check_advice(cfg: Params, summary: dict, messages: list[dict]) -> dict[str, int]:
    """Every advice message valid against its published JSON Schema; every advised vehicle drove the route of
    the message it followed, edge by edge as its telemetry in the lake says; the trips compared."""
    schema = json.loads((project_root() / "lib/smartcity/advice/schemas/route_advice.v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    assert messages and all(not list(validator.iter_errors(m)) for m in messages)
    table = cfg.paths.lake / "route_advice" / "**" / "*.parquet"
    in_lake = [r[0] for r in duckdb.sql(f"SELECT id FROM read_parquet('{table}', hive_partitioning = true)").fetchall()]
    assert sorted(in_lake) == sorted({m["id"] for m in messages}), "the lake's advice table: each update once"
    corridor = json.loads((project_root() / "lib/smartcity/fleet/data/corridor.json").read_text())
    edge_of = {frozenset((e["from"], e["to"])): e["id"] for e in corridor["edges"]}
    by_id = {m["id"]: m for m in messages}
    ended = [json.loads(line) for line in _lines(cfg.paths.live / "trips.jsonl")]
    advised = [t for t in ended if t["group"] == "advised"]
    assert len(advised) >= 3 and all(t["advice_id"] in by_id for t in advised)
    telemetry = cfg.paths.lake / "vehicle_data" / "**" / "*.parquet"
    for trip in advised:
        rows = duckdb.sql(
            f"SELECT edgeId, route FROM read_parquet('{telemetry}', union_by_name = true) "
            f"WHERE deviceId = '{trip['vehicle']}' ORDER BY timestamp"
        ).fetchall()
        message = by_id[trip["advice_id"]]
        path = [edge_of[frozenset(pair)] for pair in itertools.pairwise(message["path"].split(">"))]
        driven = [edge for edge, _ in itertools.groupby(r[0] for r in rows)]
        # in the path's order, from its first edge to its last (an edge shorter than a tick may have no fix)
        assert driven[0] == path[0] and driven[-1] == path[-1] and driven == [e for e in path if e in driven], trip
        assert {r[1] for r in rows} == {message["route"]}, trip
    figures = summary["trips"]
    assert figures["advised"]["trips"] == len(advised) and figures["unadvised"]["trips"] >= 3
    assert figures["saved"] is not None and figures["saved"]["ci_min"][0] <= figures["saved"]["mean_min"]
    return _check_lake_trips(cfg, ended)


def _check_lake_trips(cfg: Params, ended: list[dict]) -> dict[str, int]:
    """The trips as SQL written here finds them in the lake's telemetry (each vehicle's group, first fix to
    last, ended more than a tick before the run's last fix) are the live run's own, group and minutes."""
    telemetry = cfg.paths.lake / "vehicle_data" / "**" / "*.parquet"
    rows = duckdb.sql(
        f"""WITH fixes AS (SELECT * FROM read_parquet('{telemetry}', union_by_name = true)),
                 trips AS (SELECT deviceId, any_value(adviceGroup) AS grp, count(DISTINCT adviceGroup) AS groups,
                                  min(timestamp) AS depart, max(timestamp) AS arrive
                           FROM fixes WHERE adviceGroup IS NOT NULL GROUP BY deviceId)
            SELECT deviceId, grp, groups, round(epoch(arrive - depart) / 60, 3) FROM trips
            WHERE arrive < (SELECT max(timestamp) FROM fixes) - to_seconds({cfg.fleet.tick_seconds})
            ORDER BY deviceId"""
    ).fetchall()
    last = duckdb.sql(f"SELECT epoch(max(timestamp)) FROM read_parquet('{telemetry}', union_by_name = true)")
    before_end = last.fetchall()[0][0] - cfg.fleet.tick_seconds
    live = sorted(
        (t["vehicle"], t["group"], 1, t["minutes"])
        for t in ended
        if datetime.fromisoformat(t["arrive"]).timestamp() < before_end
    )
    assert rows == live, "the lake's trips are the live run's"
    return Counter(r[1] for r in rows)
