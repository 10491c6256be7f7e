"""Both producer backends on the real broker: keyed, versioned, counted, interruptible."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from smartcity import kafka, simulate
from smartcity.config import TOPICS, Params
from smartcity.contracts import Event
from smartcity.engines import EngineError, free_port
from smartcity.producer import BACKENDS, ProduceError, produce
from tests.conftest import read_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return simulate.simulate_journey(Params(vehicles=2, duration_seconds=1800))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_event_arrives_keyed_in_order_with_its_version(broker: kafka.KafkaBroker, events: list[Event],
                                                             backend: str) -> None:
    kafka.ensure_topics(broker.bootstrap, partitions=3, empty=True)
    report = produce(broker.bootstrap, events, backend=backend)
    sent = {t: sum(1 for e in events if e.topic == t) for t in TOPICS}
    assert dict(report.acked) == {t: n for t, n in sent.items() if n}
    assert kafka.topic_counts(broker.bootstrap) == sent
    records = read_topics(broker.bootstrap, ("vehicle_data", "gps_data"))
    partitions = defaultdict(set)
    stamps = defaultdict(list)
    for record in records:
        value = orjson.loads(record.value)
        assert record.key.decode() == value["deviceId"]
        assert dict(record.headers)["schemaVersion"] == b"1"
        partitions[(record.topic, value["deviceId"])].add(record.partition)
        stamps[(record.topic, record.partition, value["deviceId"])].append(value["timestamp"])
    assert all(len(p) == 1 for p in partitions.values()), "one device, one partition"
    assert all(s == sorted(s) for s in stamps.values()), "a device's events keep their order"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_an_unreachable_broker_is_a_clear_bounded_error(backend: str) -> None:
    port = free_port()
    with pytest.raises(EngineError, match=f"no Kafka broker answers at 127.0.0.1:{port}"):
        produce(f"127.0.0.1:{port}", [Event("x", "k", {"n": 1})], backend=backend, connect_timeout_s=3)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_events_the_broker_refuses_are_counted_and_raised(broker: kafka.KafkaBroker, backend: str) -> None:
    # the lab's broker does not create topics on demand: sends to a missing topic fail
    events = [Event("it_missing_topic", "k", {"n": n}) for n in range(3)]
    with pytest.raises(ProduceError, match=r"of 3 events were not acknowledged .*it_missing_topic"):
        produce(broker.bootstrap, events, backend=backend, delivery_timeout_s=3)


def interrupted_after(events: list[Event], n: int) -> Iterator[Event]:
    for i, event in enumerate(events):
        if i == n:
            raise KeyboardInterrupt
        yield event


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_ctrl_c_flushes_what_was_sent_and_says_so(broker: kafka.KafkaBroker, events: list[Event], backend: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    kafka.ensure_topics(broker.bootstrap, partitions=3, empty=True)
    with pytest.raises(KeyboardInterrupt):
        produce(broker.bootstrap, interrupted_after(events, 500), backend=backend)
    assert "interrupted: 500 sent, 500 acknowledged, 0 failed" in capsys.readouterr().err
    assert sum(kafka.topic_counts(broker.bootstrap).values()) == 500


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smartcity", "simulate", *args], capture_output=True, text=True)


def test_cli_produces_to_the_broker(broker: kafka.KafkaBroker, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(f"kafka_bootstrap: '{broker.bootstrap}'\nkafka_embedded: false\n")
    kafka.ensure_topics(broker.bootstrap, partitions=3, empty=True)
    result = run_cli("--params", str(params), "--vehicles", "1", "--duration", "600", "--backend", "confluent-kafka")
    assert result.returncode == 0, result.stderr
    held = kafka.topic_counts(broker.bootstrap)
    assert held["vehicle_data"] == 121 and held["weather_data"] == 24
    assert "vehicle_data" in result.stdout and "121" in result.stdout


def test_cli_dry_run_writes_the_same_bytes_every_time(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run_cli("--dry-run", "--out", str(first), "--vehicles", "2", "--seed", "7").returncode == 0
    assert run_cli("--dry-run", "--out", str(second), "--vehicles", "2", "--seed", "7").returncode == 0
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_bytes().splitlines()
    assert set(orjson.loads(lines[0])) == {"topic", "key", "value"} and len(lines) > 5000


def test_cli_bad_params_and_unreachable_broker(tmp_path: Path) -> None:
    bad = run_cli("--dry-run", "--out", str(tmp_path / "x"), "--vehicles", "0")
    assert bad.returncode == 2 and "parameter 'vehicles' must be at least 1" in bad.stderr
    params = tmp_path / "p.yaml"
    params.write_text(f"kafka_bootstrap: '127.0.0.1:{free_port()}'\nkafka_embedded: false\n")
    down = run_cli("--params", str(params), "--duration", "60")
    assert down.returncode == 1 and "no Kafka broker answers" in down.stderr and "Traceback" not in down.stderr


def test_the_bench_measures_all_three_cases(tmp_path: Path) -> None:
    from smartcity import bench

    results = bench.run_producer_bench(events=3_000, seed_pattern_events=100, out_dir=tmp_path)
    assert [c["case"][:3] for c in results["cases"]] == ["(a)", "(b)", "(c)"]
    assert all(c["events_per_s"] > 0 for c in results["cases"])
    assert (tmp_path / "producer.json").exists() and "events/s" in (tmp_path / "producer.md").read_text()
