"""The roads now from one window's telemetry: minutes per edge, the fastest route that follows from them, and
the route_advice contract the advice is published under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import jsonschema
import pyarrow.parquet as pq
import pytest

from smartcity.advice import contract, table
from smartcity.advice.now import CRAWL_KMH, Context, Observed, advise, corridor_pairs, edge_minutes, fastest
from smartcity.fleet.roads import load_network
from smartcity.stream.store import LocalStore

NETWORK = load_network()


def _at_share(share: float, edges: list[str] | None = None) -> dict[str, Observed]:
    chosen = list(NETWORK.edges) if edges is None else edges
    return {e: Observed(3, NETWORK.edges[e].speed_limit_kmh * share) for e in chosen}


def test_an_edge_driven_in_the_window_takes_its_length_at_its_speed_and_the_others_follow_the_median() -> None:
    m40 = [leg.edge.id for leg in NETWORK.route("M40").legs]
    observed = _at_share(0.5, m40)
    observed[m40[3]] = Observed(2, 0.0)  # stopped: counted at a crawl, not as infinitely slow
    minutes = edge_minutes(NETWORK, observed)
    for edge_id in m40[:3]:
        assert minutes[edge_id] == pytest.approx(
            NETWORK.edges[edge_id].length_km / (NETWORK.edges[edge_id].speed_limit_kmh * 0.5) * 60
        )
    assert minutes[m40[3]] == pytest.approx(NETWORK.edges[m40[3]].length_km / CRAWL_KMH * 60)
    unseen = next(e for e in NETWORK.edges if e not in observed)
    assert minutes[unseen] == pytest.approx(
        NETWORK.edges[unseen].length_km / (NETWORK.edges[unseen].speed_limit_kmh * 0.5) * 60
    )
    nothing = edge_minutes(NETWORK, {"no-such-edge": Observed(5, 10.0)})  # unknown ids ignored: the limits
    assert nothing[unseen] == pytest.approx(
        NETWORK.edges[unseen].length_km / NETWORK.edges[unseen].speed_limit_kmh * 60
    )


def test_a_jam_on_the_fastest_route_sends_the_advice_round_it_and_clearing_it_brings_it_back() -> None:
    (pair,) = corridor_pairs(NETWORK)
    assert pair == ("london", "birmingham")
    free = advise(NETWORK, _at_share(0.9), [pair])[0]
    jam = max(free["edges"][2:-2], key=lambda e: NETWORK.edges[e].length_km)
    jammed_roads = _at_share(0.9)
    jammed_roads[jam] = Observed(4, 5.0)
    jammed = advise(NETWORK, jammed_roads, [pair])[0]
    assert jam not in jammed["edges"] and jammed["minutes"] > free["minutes"]
    assert advise(NETWORK, _at_share(0.9), [pair])[0] == free
    nodes, minutes = fastest(NETWORK, edge_minutes(NETWORK, _at_share(0.9)), *pair)
    assert (nodes, round(minutes, 2)) == (free["nodes"], free["minutes"])
    assert free["edgesObserved"] == len(NETWORK.edges) and free["fixes"] == 3 * len(NETWORK.edges)


def test_an_incident_on_an_edge_nobody_drove_sends_the_advice_round_it_until_it_is_resolved() -> None:
    (pair,) = corridor_pairs(NETWORK)
    free = advise(NETWORK, _at_share(0.9), [pair])[0]
    jam = max(free["edges"][2:-2], key=lambda e: NETWORK.edges[e].length_km)
    observed = _at_share(0.9, [e for e in NETWORK.edges if e != jam])
    observed[free["edges"][0]] = Observed(3, NETWORK.edges[free["edges"][0]].speed_limit_kmh * 0.3)  # one slow road
    assert advise(NETWORK, observed, [pair])[0]["edges"] == free["edges"], "unobserved: the window's median"
    edge = NETWORK.edges[jam]
    on_it = Context(incidents={"incident-1": edge.position(edge.length_km / 2)})
    assert on_it.incident_edges(NETWORK) == {jam}
    minutes = edge_minutes(NETWORK, observed, on_it)
    assert minutes[jam] == pytest.approx(edge.length_km / (edge.speed_limit_kmh * 0.3) * 60), "as slow as the slowest"
    assert jam not in advise(NETWORK, observed, [pair], on_it)[0]["edges"]
    assert advise(NETWORK, observed, [pair], Context())[0]["edges"] == free["edges"], "resolved: back"
    far = Context(incidents={"incident-2": (52.0, -3.5)})  # in Wales: on no edge of the corridor
    assert far.incident_edges(NETWORK) == set()


def test_an_edge_nobody_drove_follows_the_wet_or_the_dry_roads_by_its_nearest_station() -> None:
    london, birmingham = NETWORK.nodes["london"].point, NETWORK.nodes["birmingham"].point
    rain = Context(stations={"weather-london": (london, 6.0), "weather-birmingham": (birmingham, 0.0)})
    wet = rain.wet_edges(NETWORK)
    assert wet and wet != set(NETWORK.edges), "rain at one end of the corridor only"
    wet_seen, dry_seen = sorted(wet)[0], sorted(set(NETWORK.edges) - wet)[0]
    observed = {
        wet_seen: Observed(3, NETWORK.edges[wet_seen].speed_limit_kmh * 0.5),
        dry_seen: Observed(3, NETWORK.edges[dry_seen].speed_limit_kmh * 0.9),
    }
    minutes = edge_minutes(NETWORK, observed, rain)
    for edge_id, share in ((sorted(wet)[-1], 0.5), (sorted(set(NETWORK.edges) - wet)[-1], 0.9)):
        edge = NETWORK.edges[edge_id]
        assert minutes[edge_id] == pytest.approx(edge.length_km / (edge.speed_limit_kmh * share) * 60)
    dry = edge_minutes(NETWORK, observed)  # without the stations' reports: the median of both, for every edge
    edge = NETWORK.edges[sorted(wet)[-1]]
    assert dry[edge.id] == pytest.approx(edge.length_km / (edge.speed_limit_kmh * 0.7) * 60)


def test_the_published_advice_schema_is_the_generated_one_and_its_own_version_line() -> None:
    # `smartcity schemas` writes it; a contract change without it fails here
    assert contract.SCHEMA_FILE.read_text() == contract.render_schema()
    schema = contract.published_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "route_advice" and schema["properties"]["schemaVersion"]["const"] == 1


def test_every_advice_is_a_valid_message_with_an_id_that_a_replay_gives_again() -> None:
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    window = {"windowStart": start, "windowEnd": start + timedelta(minutes=1)}
    (advice,) = advise(NETWORK, _at_share(0.9), corridor_pairs(NETWORK))
    message = contract.message({**window, **advice})
    jsonschema.Draft202012Validator(contract.published_schema(), format_checker=jsonschema.FormatChecker()).validate(
        message
    )
    assert message["path"].split(contract.PATH_SEPARATOR) == advice["nodes"]
    assert (message["timestamp"], message["windowStart"]) == ("2026-01-05T08:01:00.000Z", "2026-01-05T08:00:00.000Z")
    assert contract.message({**window, **advice}) == message, "the same window and fixes, the same id"
    assert contract.message({**window, **advice, "fixes": advice["fixes"] + 1})["id"] != message["id"]
    assert contract.key("london", "birmingham") == "london→birmingham"


def test_the_lake_table_holds_a_batch_once_in_a_file_per_date_and_a_replay_replaces_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    pairs = corridor_pairs(NETWORK)

    def messages(start: datetime, share: float) -> list[dict]:
        window = {"windowStart": start, "windowEnd": start + timedelta(minutes=5)}
        return [contract.message({**window, **a}) for a in advise(NETWORK, _at_share(share), pairs)]

    before, after = datetime(2026, 1, 5, 23, 55, tzinfo=UTC), datetime(2026, 1, 6, 0, 0, tzinfo=UTC)
    first = messages(before, 0.9) + messages(after, 0.8)
    assert table.write_batch(store, 7, first) == [table.batch_key("2026-01-05", 7), table.batch_key("2026-01-06", 7)]
    # a replay after a restart: the same windows (Spark restores the batch's state and reads the same offsets),
    # advice that may differ (the advisor's memory of earlier batches is gone)
    replayed = messages(before, 0.7) + messages(after, 0.6)
    table.write_batch(store, 7, replayed)
    table.write_batch(store, 8, messages(after, 0.5))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "lake/route_advice/event_date=2026-01-05/part-advice-0000000007.parquet",
        "lake/route_advice/event_date=2026-01-06/part-advice-0000000007.parquet",
        "lake/route_advice/event_date=2026-01-06/part-advice-0000000008.parquet",
    ]
    read = duckdb.sql(
        f"SELECT * FROM read_parquet('{tmp_path}/lake/route_advice/**/*.parquet', hive_partitioning = true)"
    ).df()
    assert sorted(read["id"]) == sorted(m["id"] for m in [*replayed, *messages(after, 0.5)])
    assert set(read["event_date"].astype(str)) == {"2026-01-05", "2026-01-06"}
    assert table.read_table(store)["advice_batch"].tolist() == [7, 7, 8]
    assert pq.read_schema(tmp_path / files[0]).names == [*(f.name for f in contract.ADVICE_FIELDS), "advice_batch"]
    assert table.read_table(LocalStore(tmp_path / "none")).empty
