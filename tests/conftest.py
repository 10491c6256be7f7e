"""Shared fixtures. Engines are started once per test session, on free ports and in a temporary
folder, so tests never touch the lab's own data/ or the default ports a user may have in use."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest
from hypothesis import HealthCheck, settings

from smartcity import config
from smartcity.engines import free_port


# `make test` (laptop and CI alike) runs the same small set of hypothesis examples every time, so
# it passes or fails the same way everywhere; `make fuzz` explores many new random examples and
# keeps the failing ones in .hypothesis/ to replay them first on its next run. Timing-based checks
# (deadline, too_slow) are off in both: a busy machine must not turn a property into a flaky test.
_UNTIMED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("repeatable", derandomize=True, database=None, max_examples=8, **_UNTIMED)
settings.register_profile("fuzz", derandomize=False, max_examples=200, print_blob=True, **_UNTIMED)


def pytest_configure(config: pytest.Config) -> None:
    """Load the repeatable profile unless the command line chose one (`make fuzz` does)."""
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("repeatable")


def lab_params(root: Path, **overrides: object) -> config.Params:
    """Params for an isolated lab: its own data and output folders and free ports.

    Its PostgreSQL skips fsync: test data is thrown away, and flushing every commit would only
    slow the tests down (a user's run keeps the default, fsync on).
    """
    values: dict[str, object] = {
        "profile": "test",
        "data_dir": str(root / "data"),
        "output_dir": str(root / "outputs"),
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "postgres_port": free_port(),
        "postgres_fsync": False,
    }
    values.update(overrides)
    return config.from_mapping(values)


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def read_topics(bootstrap: str, topics: Sequence[str], timeout_s: float = 300.0) -> list[Record]:
    """Every record the topics hold, read with a plain consumer up to the end offsets seen at the start.

    Reading to known end offsets (not until the consumer has been idle a while) makes the result
    independent of how busy the machine is; the timeout only bounds a broken broker. The reader is
    confluent-kafka's consumer, which shares no code with the lab's producers and reads a few
    hundred thousand records in seconds.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "smartcity-test-reader",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        listed = consumer.list_topics(timeout=30).topics
        parts = [(t, p) for t in topics for p in sorted(listed[t].partitions)]
        marks = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=30) for tp in parts}
        next_offset = {tp: low for tp, (low, _) in marks.items()}  # a truncated topic starts past 0
        ends = {tp: high for tp, (_, high) in marks.items()}
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(next_offset[tp] < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"could not read {ends} within {timeout_s:.0f} s"
            for msg in consumer.consume(10_000, timeout=0.5):
                assert msg.error() is None, f"reading {msg.topic()}: {msg.error()}"
                tp = (msg.topic(), msg.partition())
                next_offset[tp] = msg.offset() + 1
                if msg.offset() < ends[tp]:
                    records.append(Record(*tp, msg.offset(), msg.key(), msg.value(), list(msg.headers() or [])))
        return records
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def lab_cfg(tmp_path_factory: pytest.TempPathFactory) -> config.Params:
    return lab_params(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def broker(lab_cfg: config.Params) -> Iterator[object]:
    from smartcity import kafka

    with kafka.ensure_broker(lab_cfg) as running:
        assert running.owned, "the session broker must be one the tests started"
        yield running


@pytest.fixture(scope="session")
def spark(lab_cfg: config.Params) -> Iterator[object]:
    from smartcity.spark import spark_session

    with spark_session(lab_cfg) as session:
        yield session


@pytest.fixture(scope="session")
def warehouse(lab_cfg: config.Params) -> Iterator[object]:
    from smartcity import postgres

    with postgres.ensure_warehouse(lab_cfg) as running:
        yield running


ENGINE_MARKERS = ("kafka.Kafka", "bin/postgres", "org.apache.spark.deploy.SparkSubmit")


def running_engines() -> dict[int, str]:
    """Kafka, PostgreSQL and Spark driver processes of this checkout: pid -> command line.

    Every engine the lab starts runs from this checkout (the jars in .cache/, the binaries and
    pyspark in .venv/), so its command line names the lab's root; engines of another clone or
    another user's lab on the same machine are not this session's business.
    """
    root = f"{config.project_root()}/"
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and root in cmd and any(m in cmd for m in ENGINE_MARKERS):
            found[proc.info["pid"]] = cmd
    return found


_BEFORE_TESTS = set(running_engines())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any engine started during the tests outlived them (the lab stops what it starts)."""
    deadline = time.monotonic() + 20
    while True:
        left = {pid: cmd for pid, cmd in running_engines().items() if pid not in _BEFORE_TESTS}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if left:
        lines = [f"pid {pid}: {cmd[:160]}" for pid, cmd in sorted(left.items())]
        print("\nengines left running after the tests:\n  " + "\n  ".join(lines), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
