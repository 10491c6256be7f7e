"""The capacity model's arithmetic (pure functions over a hand-made rates dict) and the committed rates file."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from smartcity.fleet.contracts import TOPICS
from smartcity.ops import capacity
from smartcity.ops.cli import main

PROVENANCE = {"source": "test", "measured_at": "2026-01-01T00:00:00Z", "conditions": "made up for the arithmetic"}


def _rates(**overrides: float) -> dict[str, Any]:
    """Round numbers, so that expected values can be worked out by hand."""
    values = {
        "simulator_events_per_cpu_s": 100_000,
        "producer_events_per_cpu_s": 50_000,
        "stream_events_per_cpu_s_net_of_batches": 20_000,
        "stream_cpu_s_per_batch": 0.5,
        "stream_driver_cpu_s_per_batch": 0.02,
        "stream_driver_cpu_s_per_file": 0.002,
        "stream_events_per_s_wall_max": 40_000,
        "broker_ingest_events_per_cpu_s": 30_000,
        "broker_fetch_events_per_cpu_s": 60_000,
        "catalog_cpu_s_per_new_file": 0.01,
        "warehouse_events_per_cpu_s": 25_000,
        **overrides,
    }
    return {
        "measured_at": "2026-01-01T00:00:00Z",
        "machine": {"cpu": "x86_64", "cores": 2, "memory_gib": 8, "platform": "Linux", "python": "3.11"},
        "rates": {name: {"value": value, **PROVENANCE} for name, value in values.items()},
        "event_mix": {
            "per_vehicle_fix": {"vehicle_data": 1.0, "gps_data": 1.0},
            "traffic_data_per_vehicle_second": 0.001,
            "background_per_hour": {"weather_data": 72.0, "emergency_data": 0.0},
            **PROVENANCE,
        },
        "bytes_per_event": {
            "kafka_log": {t: 100.0 for t in TOPICS},
            "parquet": {t: 50.0 for t in TOPICS},
            **PROVENANCE,
        },
        "stream_scaling_1_to_2": None,
    }


BACKGROUND = 72.0 / 3600  # weather reports per second in _rates()


def test_events_per_second_by_hand() -> None:
    topics = capacity.events_per_second(_rates(), 1_000, 5.0)
    assert topics["vehicle_data"] == pytest.approx(200.0)
    assert topics["gps_data"] == pytest.approx(200.0)
    assert topics["traffic_data"] == pytest.approx(1.0)  # 1,000 vehicles x 0.001 per vehicle-second
    assert topics["weather_data"] == pytest.approx(BACKGROUND)
    assert topics["emergency_data"] == 0.0


def test_doubling_vehicles_doubles_vehicle_events_and_cores() -> None:
    rates = _rates()
    one, two = capacity.estimate(rates, 10_000_000, 5.0), capacity.estimate(rates, 20_000_000, 5.0)
    assert two.events_per_s - BACKGROUND == pytest.approx(2 * (one.events_per_s - BACKGROUND))
    # one micro-batch per trigger at any rate (the cap rises with the events): the per-event work doubles,
    # the 0.5 CPU-s of the one batch a second does not
    assert two.spark_work - 0.5 == pytest.approx(2 * (one.spark_work - 0.5), rel=1e-6)
    assert two.broker_work == pytest.approx(2 * one.broker_work, rel=1e-6)
    assert two.spark_cores == capacity.cores(two.spark_work) < 2 * one.spark_cores
    assert two.lake_gb_per_day == pytest.approx(2 * one.lake_gb_per_day, rel=1e-6)
    assert two.warehouse_load_cpu_h_per_day == pytest.approx(2 * one.warehouse_load_cpu_h_per_day, rel=1e-6)


def test_halving_fix_seconds_doubles_the_fix_events_only() -> None:
    rates = _rates()
    five, half = capacity.events_per_second(rates, 1_000, 5.0), capacity.events_per_second(rates, 1_000, 2.5)
    for topic in ("vehicle_data", "gps_data"):
        assert half[topic] == pytest.approx(2 * five[topic])
    for topic in ("traffic_data", "weather_data", "emergency_data"):  # cameras and stations do not follow the fix
        assert half[topic] == pytest.approx(five[topic])


def test_cores_round_up_at_the_target_utilisation() -> None:
    assert capacity.cores(0) == 0
    assert capacity.cores(0.7) == 1
    assert capacity.cores(0.71) == 2
    assert capacity.cores(7.0) == 10


def test_spark_work_counts_events_and_micro_batches() -> None:
    est = capacity.estimate(_rates(), 1_000, 5.0)
    events = 400 + 1 + BACKGROUND
    assert est.events_per_s == pytest.approx(events)
    # one batch a second (1 s trigger, far below 200,000 events a batch) at 0.5 CPU-s each
    assert est.spark_work == pytest.approx(events / 20_000 + 0.5)
    assert est.spark_cores == 1
    files = 1 * len(TOPICS)  # one staging task (one core) holds all 15 partitions: a file per table
    assert (est.batch_events, est.files_per_batch) == (math.ceil(events), files)
    assert est.catalog_cpu_min_per_day == pytest.approx(1 * files * 86_400 * 0.01 / 60)
    assert est.driver_work == pytest.approx(1 * (0.02 + files * 0.002))


def test_a_trigger_of_more_events_than_the_cap_is_one_larger_micro_batch() -> None:
    """Beyond 200,000 events a second, the cap is raised to a trigger's events: one batch a trigger, each
    paying the driver's cost per batch once, and a file per partition of each topic."""
    est = capacity.estimate(_rates(), 5_000_000, 5.0)
    assert est.batch_events == math.ceil(est.events_per_s) > capacity.MAX_BATCH_EVENTS
    assert capacity.batches_per_second(est.events_per_s, 1.0, est.batch_events) == 1.0
    files = 2 * est.partitions_per_heavy_topic + 3 * capacity.MIN_PARTITIONS  # a task per core, more cores
    assert est.spark_cores * len(TOPICS) > files == est.files_per_batch
    assert est.driver_work == pytest.approx(0.02 + files * 0.002)
    assert est.spark_work == pytest.approx(est.events_per_s / 20_000 + 0.5)


def test_brokers_partitions_and_bytes() -> None:
    est = capacity.estimate(_rates(), 5_000_000, 5.0)
    events = est.events_per_s
    broker_work = events * 3 * (1 / 30_000 + 1 / 60_000)
    assert est.broker_work == pytest.approx(broker_work)
    assert est.brokers == max(3, math.ceil(capacity.cores(broker_work) / capacity.BROKER_CORES))
    assert est.partitions_per_heavy_topic % est.brokers == 0
    assert est.partitions_per_heavy_topic * len(capacity.HEAVY_TOPICS) >= est.spark_cores
    assert est.lake_gb_per_day == pytest.approx(events * 50 * 86_400 / 1e9)
    assert est.kafka_gb_per_day == pytest.approx(events * 100 * 3 * 86_400 / 1e9)
    assert est.kafka_mb_per_s == pytest.approx(events * 100 / 1e6)
    assert est.times_largest_measured == pytest.approx(events / 40_000)


def test_a_small_fleet_still_gets_the_replicas_and_a_core() -> None:
    est = capacity.estimate(_rates(), 1, 5.0)
    assert est.brokers == capacity.REPLICATION_FACTOR
    assert est.partitions_per_heavy_topic >= capacity.MIN_PARTITIONS
    assert est.spark_cores == 1


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        capacity.events_per_second(_rates(), 1_000, 0.0)
    with pytest.raises(ValueError):
        capacity.events_per_second(_rates(), -1, 5.0)


def test_preset_table_has_the_three_fleets() -> None:
    frame = capacity.preset_table(_rates())
    assert list(frame.index) == ["corridor", "London", "UK"]
    assert list(frame.columns) == list(capacity.COLUMNS.values())
    assert list(frame["vehicles"]) == [1_000, 2_600_000, 41_200_000]
    assert frame["events/s"].is_monotonic_increasing
    shown = capacity.format_table(frame)
    assert list(shown.columns) == ["corridor", "London", "UK"]


def test_null_scaling_says_not_measured_and_a_figure_is_shown() -> None:
    rates = _rates()
    text = capacity.render(rates, "rates: test", capacity.preset_table(rates))
    assert "1 -> 2 executors (cluster profile): not measured" in text
    assert "London: " in text and "x the largest stream rate measured here" in text
    assert "corridor: within the stream rates measured here" in text
    rates["stream_scaling_1_to_2"], rates["stream_scaling_note"] = 1.8, "test"
    assert capacity.scaling_line(rates) == (
        "stream scaling measured 1 -> 2 executors (cluster profile): ratio 1.80 (90% of linear)"
    )
    text = capacity.render(rates, "rates: test", capacity.preset_table(rates))
    assert "not measured" not in text and "backed to 2 executors (ratio 1.80)" in text
    rates["stream_scaling_1_to_2"] = 1.13  # a second executor that adds little backs no linear extrapolation
    text = capacity.render(rates, "rates: test", capacity.preset_table(rates))
    assert "which nothing measured here backs: a second executor gave 1.13x" in text and "backed to" not in text


def test_a_driver_beyond_its_share_of_one_core_is_flagged() -> None:
    rates = _rates(stream_driver_cpu_s_per_file=0.02)  # London's tens of files a batch: most of a second
    lines = capacity.backing_lines(rates, capacity.preset_table(rates))
    assert any(line.startswith("London, UK: the driver's Python (foreachBatch callbacks") for line in lines)
    assert not any(line.startswith("corridor") and "driver's Python" in line for line in lines)
    assert not any("limits no row" in line for line in lines)


def test_a_driver_under_its_share_everywhere_says_what_limits_next() -> None:
    rates = _rates(stream_driver_cpu_s_per_file=0.0001)
    frame = capacity.preset_table(rates)
    lines = capacity.backing_lines(rates, frame)
    (line,) = [line for line in lines if "driver's Python" in line]
    assert "limits no row" in line and "What limits next" in line and "0.00010 per staged file" in line
    assert "(UK: " in line and f"{frame.loc['UK', 'files per micro-batch']:,} files per micro-batch" in line


def test_rates_without_a_figure_or_its_provenance_are_refused() -> None:
    capacity.check_rates(_rates())
    for broken in ("value", "source", "measured_at"):
        rates = _rates()
        del rates["rates"]["stream_events_per_cpu_s_net_of_batches"][broken]
        with pytest.raises(capacity.RatesError, match="stream_events_per_cpu_s_net_of_batches"):
            capacity.check_rates(rates)
    rates = _rates()
    del rates["stream_scaling_1_to_2"]
    with pytest.raises(capacity.RatesError, match="stream_scaling_1_to_2"):
        capacity.check_rates(rates)
    rates = _rates()
    rates["stream_scaling_1_to_2"] = 1.9  # a figure without a note on how it was measured
    with pytest.raises(capacity.RatesError, match="stream_scaling_note"):
        capacity.check_rates(rates)
    rates["stream_scaling_note"] = "cluster profile, 2026-12-01, 310,719 events"
    capacity.check_rates(rates)
    rates = _rates()
    del rates["bytes_per_event"]["parquet"]["gps_data"]
    with pytest.raises(capacity.RatesError, match="parquet"):
        capacity.check_rates(rates)


def test_newer_measured_rates_win_and_keep_the_committed_scaling() -> None:
    committed = _rates()
    committed["stream_scaling_1_to_2"] = 1.7
    measured = copy.deepcopy(_rates())
    measured["measured_at"] = "2026-02-01T00:00:00Z"
    chosen, which = capacity.choose_rates(committed, measured)
    assert which == "measured" and chosen["measured_at"] == "2026-02-01T00:00:00Z"
    assert chosen["stream_scaling_1_to_2"] == 1.7
    measured["measured_at"] = "2025-12-01T00:00:00Z"
    assert capacity.choose_rates(committed, measured)[1] == "committed"
    assert capacity.choose_rates(committed, None)[1] == "committed"


def test_load_rates_says_which_file(tmp_path: Path) -> None:
    committed, measured = tmp_path / "committed.json", tmp_path / "rates.json"
    committed.write_text(json.dumps(_rates()))
    rates, line = capacity.load_rates(committed, measured)
    assert line.startswith(f"rates: {committed}") and rates["measured_at"] == "2026-01-01T00:00:00Z"
    newer = _rates()
    newer["measured_at"] = "2026-03-01T00:00:00Z"
    measured.write_text(json.dumps(newer))
    rates, line = capacity.load_rates(committed, measured)
    assert line.startswith(f"rates: {measured}") and "newer than the committed" in line


def test_the_committed_rates_are_complete_and_say_where_they_come_from() -> None:
    rates = json.loads(capacity.COMMITTED_RATES.read_text())
    capacity.check_rates(rates)  # every figure, positive, with source, date and conditions
    assert rates["machine"]["cores"] >= 1 and rates["machine"]["platform"]
    for name in capacity.REQUIRED_RATES:
        assert rates["rates"][name]["source"].startswith("outputs/bench/"), name
    assert rates["stream_scaling_1_to_2"] is None or rates["stream_scaling_1_to_2"] > 0
    assert rates["event_mix"]["per_vehicle_fix"] == {"vehicle_data": 1.0, "gps_data": 1.0}


def test_cli_prints_the_presets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--rates", str(tmp_path / "none.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rates: lib/smartcity/ops/data/capacity_rates.json (measured ")
    header = next(line for line in out.splitlines() if "corridor" in line)
    assert header.split() == ["corridor", "London", "UK"]
    assert "1 -> 2 executors" in out


def test_cli_sizes_one_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--vehicles", "2000", "--fix-seconds", "2.5", "--rates", str(tmp_path / "none.json")]) == 0
    out = capsys.readouterr().out
    assert "2,000 vehicles" in out and "2.5" in out
    assert main(["capacity", "--vehicles", "10", "--fix-seconds", "0", "--rates", str(tmp_path / "none.json")]) == 2
