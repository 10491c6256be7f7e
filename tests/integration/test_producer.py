"""Both producer backends on the real broker: keyed, versioned, counted, interruptible."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from smartcity.fleet import simulation
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.params import FleetParams
from smartcity.ingest.producer import BACKENDS, ProduceError, produce
from smartcity.platform import topics
from smartcity.platform.broker import KafkaBroker, start_broker
from smartcity.platform.processes import EngineError, free_port
from tests.conftest import read_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def events() -> list[Event]:
    """A v2 run and a v1 run of other vehicles: the header follows each event's contract version."""
    v2 = simulation.simulate_journey(FleetParams(vehicles=2, duration_seconds=1800))
    v1 = simulation.simulate_journey(
        FleetParams(vehicles=1, duration_seconds=600, schema_version=1, seed=3, base_date="2026-01-05T09:00:00+00:00")
    )  # after the v2 run
    return v2 + [e for e in v1 if e.topic in ("vehicle_data", "gps_data")]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_event_arrives_keyed_in_order_with_its_version(
    broker: KafkaBroker, events: list[Event], backend: str
) -> None:
    topics.ensure_topics(broker.bootstrap, TOPICS, partitions=3, empty=True)
    report = produce(broker.bootstrap, events, backend=backend)
    sent = {t: sum(1 for e in events if e.topic == t) for t in TOPICS}
    assert dict(report.acked) == {t: n for t, n in sent.items() if n}
    assert topics.topic_counts(broker.bootstrap, TOPICS) == sent
    records = read_topics(broker.bootstrap, ("vehicle_data", "gps_data"))
    partitions = defaultdict(set)
    stamps = defaultdict(list)
    for record in records:
        value = orjson.loads(record.value)
        assert record.key.decode() == value["deviceId"]
        assert dict(record.headers)["schemaVersion"] == str(value["schemaVersion"]).encode()
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
def test_events_the_broker_refuses_are_counted_and_raised(broker: KafkaBroker, backend: str) -> None:
    # the lab's broker does not create topics on demand: sends to a missing topic fail
    events = [Event("it_missing_topic", "k", {"n": n}) for n in range(3)]
    with pytest.raises(ProduceError, match=r"of 3 events were not acknowledged .*it_missing_topic"):
        produce(broker.bootstrap, events, backend=backend, delivery_timeout_s=3)


def test_both_backends_put_a_key_in_the_same_partition(broker: KafkaBroker) -> None:
    # librdkafka's own default (CRC32) would scatter these keys differently from kafka-python (murmur2)
    topic, keys = "it_partitioning", [f"device-{n:04d}" for n in range(300)]
    topics.ensure_topics(broker.bootstrap, (topic,), partitions=6, empty=True)
    for backend in BACKENDS:
        produce(
            broker.bootstrap, [Event(topic, key, {"backend": backend}) for key in keys], backend=backend, progress=False
        )
    placed: dict[str, set[int]] = defaultdict(set)
    by_backend: dict[str, set[int]] = defaultdict(set)
    for record in read_topics(broker.bootstrap, (topic,)):
        placed[record.key.decode()].add(record.partition)
        by_backend[orjson.loads(record.value)["backend"]].add(record.partition)
    assert set(placed) == set(keys)
    split = {key: sorted(parts) for key, parts in placed.items() if len(parts) > 1}
    assert split == {}, f"{len(split)} keys landed in different partitions depending on the backend"
    assert all(parts == set(range(6)) for parts in by_backend.values()), "keys spread over every partition"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_flush_timeout_counts_what_is_still_buffered_as_failed(tmp_path: Path, backend: str) -> None:
    topic = "it_flush"
    with start_broker(free_port(), tmp_path / "kafka") as own:
        topics.ensure_topics(own.bootstrap, (topic,), partitions=1)

        def events() -> Iterator[Event]:
            yield from (Event(topic, "k", {"n": n}) for n in range(1000))
            own.stop()  # gone for good: what is handed over from now on can only stay buffered
            yield from (Event(topic, "k", {"n": n}) for n in range(1000, 3000))

        with pytest.raises(ProduceError, match="still buffered when the flush timed out after 3 s") as raised:
            produce(own.bootstrap, events(), backend=backend, delivery_timeout_s=300, flush_timeout_s=3, progress=False)
    report = raised.value.report
    assert sum(report.sent.values()) == 3000 and report.not_sent == 0
    assert sum(report.acked.values()) + sum(report.failed.values()) == 3000, "every event acked or failed"
    assert sum(report.failed.values()) >= 2000


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_failed_paced_run_counts_the_rest_without_sleeping_through_it(
    broker: KafkaBroker, events: list[Event], backend: str
) -> None:
    # half an hour of simulated events paced in real time, to a topic the broker does not have
    doomed = [Event("it_missing_paced", e.key, e.value) for e in events]
    raised: list[ProduceError] = []

    def run() -> None:
        try:
            produce(broker.bootstrap, doomed, backend=backend, speedup=1.0, delivery_timeout_s=3, progress=False)
        except ProduceError as exc:
            raised.append(exc)

    paced = threading.Thread(target=run, daemon=True)
    paced.start()
    paced.join(240)  # sleeping through the run would take 30 minutes; the first failure comes after 3 s
    assert not paced.is_alive(), "the paced run went on sleeping after its first failure"
    report = raised[0].report
    assert sum(report.sent.values()) + report.not_sent == len(doomed)
    assert report.not_sent > len(doomed) // 2, "it stopped at the first failure, not at the end"
    assert sum(report.acked.values()) == 0 and sum(report.failed.values()) == sum(report.sent.values())


def interrupted_after(events: list[Event], n: int) -> Iterator[Event]:
    for i, event in enumerate(events):
        if i == n:
            raise KeyboardInterrupt
        yield event


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_ctrl_c_flushes_what_was_sent_and_says_so(
    broker: KafkaBroker, events: list[Event], backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topics.ensure_topics(broker.bootstrap, TOPICS, partitions=3, empty=True)
    with pytest.raises(KeyboardInterrupt):
        produce(broker.bootstrap, interrupted_after(events, 500), backend=backend)
    assert "interrupted: 500 sent, 500 acknowledged, 0 failed" in capsys.readouterr().err
    assert sum(topics.topic_counts(broker.bootstrap, TOPICS).values()) == 500


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartcity", "simulate", *args], capture_output=True, text=True, check=False
    )


def test_cli_produces_to_the_broker(broker: KafkaBroker, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(f"kafka_bootstrap: '{broker.bootstrap}'\nkafka_embedded: false\n")
    topics.ensure_topics(broker.bootstrap, TOPICS, partitions=3, empty=True)
    result = run_cli("--params", str(params), "--vehicles", "1", "--duration", "600", "--backend", "confluent-kafka")
    assert result.returncode == 0, result.stderr
    held = topics.topic_counts(broker.bootstrap, TOPICS)
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
    from smartcity.ops.bench import producer as bench

    results = bench.run_producer_bench(events=3_000, seed_pattern_events=100, out_dir=tmp_path)
    assert [c["case"][:3] for c in results["cases"]] == ["(a)", "(b)", "(c)"]
    assert all(c["events_per_s"] > 0 for c in results["cases"])
    assert (tmp_path / "producer.json").exists() and "events/s" in (tmp_path / "producer.md").read_text()
