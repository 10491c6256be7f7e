"""The advice query on a crafted stream: a jam on one edge switches the advice away from it within one
window, the jam clearing switches it back, and fixes behind the watermark are counted, not silently lost;
an incident reported on an edge nobody drove moves the advice too, until it is resolved.

The session's broker and Spark; a topic of its own, so no other test's telemetry reaches the query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import jsonschema
import pytest

from smartcity.advice import contract
from smartcity.advice.latest import LatestAdvice
from smartcity.advice.query import AdviceQuery, start_advice
from smartcity.fleet.contracts import Event
from smartcity.fleet.roads import load_network
from smartcity.ingest.producer import produce
from smartcity.platform import topics
from smartcity.platform.broker import KafkaBroker
from smartcity.platform.processes import wait_until
from smartcity.stream.store import LocalStore
from tests.conftest import read_topics

pytestmark = pytest.mark.integration

TOPIC = "advice_test_vehicle_data"
ADVICE_TOPIC = "advice_test_route_advice"
INCIDENTS, WEATHER = "advice_test_emergency_data", "advice_test_weather_data"
WINDOW_S, WATERMARK_S = 60, 30
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
NETWORK = load_network()
#: Every edge of the corridor's routes: each window of the crafted stream has fixes on all of them.
ROUTE_EDGES = sorted({leg.edge.id for name in NETWORK.route_names for leg in NETWORK.route(name).legs})
FREE_SHARE = 0.9  # of the limit, on every edge in free flow
JAM_KMH = 5.0
#: The most a window's advice may take to appear (a micro-batch or two, on a busy machine).
WAIT_S = 120.0


def _window(n: int, jam: str | None = None, fixes_per_edge: int = 3, edges: list[str] = ROUTE_EDGES) -> list[Event]:
    """Fixes on every one of ``edges`` at 90 % of its limit (``jam`` at 5 km/h), inside window ``n``."""
    events = []
    for k, edge_id in enumerate(edges):
        kmh = JAM_KMH if edge_id == jam else NETWORK.edges[edge_id].speed_limit_kmh * FREE_SHARE
        for i in range(fixes_per_edge):
            at = START + timedelta(seconds=n * WINDOW_S + 10 + 15 * i)
            value = {"timestamp": at.isoformat().replace("+00:00", "Z"), "edgeId": edge_id, "speed": kmh}
            events.append(Event(TOPIC, f"vehicle-{k:03d}", value))
    return events


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The advice query's checkpoint and lake (its advice table)."""
    return tmp_path_factory.mktemp("advice")


@pytest.fixture(scope="module")
def advice(broker: KafkaBroker, spark: object, folder: Path) -> Iterator[AdviceQuery]:
    topics.ensure_topics(broker.bootstrap, [TOPIC, ADVICE_TOPIC, INCIDENTS, WEATHER], partitions=1, empty=True)
    checkpoint = folder / "checkpoint"
    running = start_advice(
        spark,  # type: ignore[arg-type]
        broker.bootstrap,
        NETWORK,
        str(checkpoint),
        window_seconds=WINDOW_S,
        watermark_seconds=WATERMARK_S,
        trigger_seconds=0.5,
        topic=TOPIC,
        advice_topic=ADVICE_TOPIC,
        context_topics=(INCIDENTS, WEATHER),
        store=LocalStore(folder),
    )
    try:
        yield running
    finally:
        running.stop()


def _advice_of(running: AdviceQuery, n: int, fixes: int) -> dict[str, object]:
    """Window ``n``'s advice once all ``fixes`` of it are in (London -> Birmingham: the corridor's one pair)."""
    start = START + timedelta(seconds=n * WINDOW_S)

    def ready() -> bool:
        found = running.advisor.latest().get(start)
        return bool(found) and found[0]["fixes"] == fixes

    wait_until(ready, timeout=WAIT_S, what=f"window {n}'s advice", alive=lambda: running.query.isActive)
    (advice,) = running.advisor.latest()[start]
    return advice


def test_a_jam_moves_the_advice_off_its_edge_within_a_window_and_back_and_late_fixes_are_counted(
    broker: KafkaBroker, advice: AdviceQuery, folder: Path
) -> None:
    per_window = len(ROUTE_EDGES) * 3
    produce(broker.bootstrap, _window(0), progress=False)
    free = _advice_of(advice, 0, per_window)
    assert (free["origin"], free["destination"]) == ("london", "birmingham")
    jam = _jam_edge(free["edges"])  # the longest edge of the advised route that another route avoids

    produce(broker.bootstrap, _window(1, jam=jam), progress=False)
    jammed = _advice_of(advice, 1, per_window)
    assert jam not in jammed["edges"] and jammed["route"] != free["route"]
    assert jammed["minutes"] > free["minutes"], "the way round the jam is slower than the free road was"

    produce(broker.bootstrap, _window(2), progress=False)
    cleared = _advice_of(advice, 2, per_window)
    assert cleared["edges"] == free["edges"] and cleared["minutes"] == free["minutes"]

    # window 0 is 90 s behind the watermark now: a fix for it is dropped by Spark, and counted
    assert advice.late.dropped == 0
    late = _window(0, fixes_per_edge=1)[:5]
    produce(broker.bootstrap, late, progress=False)
    wait_until(
        lambda: advice.late.dropped >= len(late),
        timeout=WAIT_S,
        what="the count of the late fixes",
        alive=lambda: advice.query.isActive,
    )
    assert advice.late.dropped == len(late)
    assert advice.advisor.latest()[START][0]["fixes"] == per_window, "window 0's advice kept what it had"
    # what the query would publish: a route_advice message per window, valid against the published contract
    validator = jsonschema.Draft202012Validator(contract.published_schema(), format_checker=jsonschema.FormatChecker())
    messages = advice.advisor.messages()
    assert [m["windowStart"][11:19] for m in messages] == ["08:00:00", "08:01:00", "08:02:00"]
    for message in messages:
        validator.validate(message)
    assert messages[1]["path"] != messages[0]["path"] == messages[2]["path"]
    # ... and what it did publish: every refresh of each window's advice on the topic, a plain consumer's read
    published = read_topics(broker.bootstrap, [ADVICE_TOPIC])
    assert {r.key for r in published} == {"london→birmingham".encode()}
    last: dict[str, dict[str, object]] = {}
    for record in published:
        value = json.loads(record.value)
        validator.validate(value)
        last[value["windowStart"]] = value
    assert list(last.values()) == messages, "the last message of each window is the advisor's latest advice"
    # what a departing vehicle reads (smartcity.advice.latest): the latest window's last message
    with LatestAdvice(broker.bootstrap, ADVICE_TOPIC) as reader:
        wait_until(
            lambda: reader.read == len(published),
            timeout=WAIT_S,
            what="the advice topic read to its end",
            alive=lambda: reader.error is None,
        )
        assert reader.get("london", "birmingham") == messages[-1] and reader.get("london", "oxford") is None
        assert reader.path("london", "birmingham") == (tuple(messages[-1]["path"].split(">")), messages[-1]["id"])
        assert reader.error is None
    # and the lake's advice table, read with a glob: every message once, a file per batch
    lake = folder / "lake" / "route_advice"
    rows = duckdb.sql(
        f"SELECT id, advice_batch, count(*) OVER (PARTITION BY advice_batch, filename) AS n, filename "
        f"FROM read_parquet('{lake}/**/*.parquet', hive_partitioning = true, filename = true)"
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted({json.loads(r.value)["id"] for r in published})
    assert len({r[1] for r in rows}) == len({r[3] for r in rows}), "one file per batch (one event date here)"


def _jam_edge(advised: list[str]) -> str:
    """The longest edge of the advised route that another route avoids."""
    others = [set(NETWORK.route_nodes[name]) for name in NETWORK.route_names]
    avoidable = [e for e in advised if any(not {NETWORK.edges[e].start, NETWORK.edges[e].end} <= o for o in others)]
    return max(avoidable, key=lambda e: NETWORK.edges[e].length_km)


def _incident(status: str, at: datetime, point: tuple[float, float]) -> Event:
    stamp = at.isoformat().replace("+00:00", "Z")
    value = {"timestamp": stamp, "deviceId": "traffic-control", "latitude": point[0], "longitude": point[1]}
    return Event(INCIDENTS, "traffic-control", {**value, "incidentId": "incident-test", "status": status})


def test_an_incident_reported_on_an_edge_nobody_drove_moves_the_advice_until_it_is_resolved(
    broker: KafkaBroker, advice: AdviceQuery
) -> None:
    """Window 3 has no fix on the advised route's jam edge and a crawl out of London (the one edge every route
    starts with): the window's median would keep the route, the incident reported on the edge makes it as
    slow as that crawl; resolved, window 4 advises the route again."""
    free = advice.advisor.latest()[START][0]
    jam = _jam_edge(free["edges"])
    slow = free["edges"][0]
    assert all(NETWORK.route(name).legs[0].edge.id == slow for name in NETWORK.route_names)
    seen = [e for e in ROUTE_EDGES if e != jam]
    edge = NETWORK.edges[jam]
    at = START + timedelta(seconds=3 * WINDOW_S)

    def context_has(incidents: int) -> None:
        wait_until(
            lambda: len(advice.advisor.context.incidents) == incidents,
            timeout=WAIT_S,
            what=f"{incidents} active incident(s) in the advisor",
            alive=lambda: advice.context.isActive,
        )

    produce(broker.bootstrap, [_incident("Active", at, edge.position(edge.length_km / 2))], progress=False)
    context_has(1)
    produce(broker.bootstrap, _window(3, jam=slow, edges=seen), progress=False)
    blocked = _advice_of(advice, 3, len(seen) * 3)
    assert jam not in blocked["edges"] and blocked["minutes"] > free["minutes"]

    produce(broker.bootstrap, [_incident("Resolved", at + timedelta(seconds=70), (0.0, 0.0))], progress=False)
    context_has(0)
    produce(broker.bootstrap, _window(4, jam=slow, edges=seen), progress=False)
    assert _advice_of(advice, 4, len(seen) * 3)["edges"] == free["edges"]
