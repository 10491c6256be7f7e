"""Shared fixtures. Engines are started once per test session, on free ports and in a temporary
folder, so tests never touch the lab's own data/ or the default ports a user may have in use."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import orjson
import psutil
import pytest
from hypothesis import HealthCheck, settings

from smartcity import params
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.platform import broker as kafka_broker
from smartcity.platform.params import project_root
from smartcity.platform.processes import free_port, port_open

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


def lab_params(root: Path, **overrides: object) -> params.Params:
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
        "live_map_port": 0,  # a free port: a live run of the tests never takes a user's live map port
    }
    values.update(overrides)
    return params.from_mapping(values)


def quorum_ports(count: int) -> list[int]:
    """Free ports for a KRaft quorum whose controller ports (port + 1000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        controller = port + kafka_broker.CONTROLLER_PORT_OFFSET
        if controller < 65536 and not port_open("127.0.0.1", controller):
            ports.append(port)
    return ports


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

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "smartcity-test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
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


ID_BASE = 0x6F1F3A52_9A51_4C41_9D0E_000000000000  # event n has id UUID(ID_BASE + n)


def numbered_events(count: int, devices: int = 601) -> list[Event]:
    """Events shaped like the fleet's (about 250 bytes of JSON, keyed by device), event n with id UUID(ID_BASE + n).

    601 devices, not a multiple of the 5 topics: every device reports on each.
    """
    made = []
    for n in range(count):
        device = f"vehicle-{n % devices:04d}"
        made.append(
            Event(
                TOPICS[n % len(TOPICS)],
                device,
                {
                    "id": str(uuid.UUID(int=ID_BASE + n)),
                    "schemaVersion": 1,
                    "deviceId": device,
                    "timestamp": f"2026-01-05T08:{n // 60_000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
                    "latitude": 51.5 + n % 997 / 1000,
                    "longitude": -0.12 - n % 991 / 1000,
                    "speed": float(n % 130),
                    "direction": float(n % 360),
                    "route": "M1/M6",
                    "road": "M1",
                },
            )
        )
    return made


def unique_delivery(bootstrap: str, events: Sequence[Event]) -> None:
    """Assert the topics hold each of ``events`` exactly once, each device's in the order sent (a plain consumer reads)."""
    seen: Counter[str] = Counter()
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for record in read_topics(bootstrap, TOPICS):  # each partition in offset order
        value = orjson.loads(record.value)
        seen[value["id"]] += 1
        order[(record.topic, value["deviceId"])].append(uuid.UUID(value["id"]).int - ID_BASE)
    produced = {e.value["id"] for e in events}
    missing = produced - set(seen)
    doubled = {event_id: n for event_id, n in seen.items() if n > 1}
    assert (len(missing), len(doubled)) == (0, 0), f"{len(missing)} missing, {len(doubled)} duplicated"
    assert sum(seen.values()) == len(events) and set(seen) == produced
    shuffled = [key for key, sent in order.items() if sent != sorted(sent)]
    assert shuffled == [], f"{len(shuffled)} devices' events out of order"


def produce_through(
    bootstrap: str, events: Sequence[Event], backend: str, disrupt: Callable[[Callable[[], None]], None]
) -> None:
    """Produce ``events`` in a thread and call ``disrupt`` once a third is sent; every event must be acked.

    A second third goes while ``disrupt`` runs; the last waits until it calls the ``release``
    it is given (say, once a broker is down), so some events are always sent into the disruption.
    """
    from smartcity.ingest.producer import ProduceReport, produce

    third = len(events) // 3
    first_third_sent, released = threading.Event(), threading.Event()

    def feed() -> Iterator[Event]:
        yield from events[:third]
        first_third_sent.set()
        yield from events[third : 2 * third]
        released.wait()
        yield from events[2 * third :]

    outcome: dict[str, ProduceReport | BaseException] = {}

    def run() -> None:
        try:
            outcome["report"] = produce(bootstrap, feed(), backend=backend, delivery_timeout_s=600, progress=False)
        except BaseException as exc:
            outcome["error"] = exc

    producer = threading.Thread(target=run, name=f"producer-{backend}")
    producer.start()
    try:
        assert first_third_sent.wait(600), "the producer never got going"
        disrupt(released.set)
        producer.join(900)
    finally:
        released.set()  # never leave the producer waiting
    assert not producer.is_alive(), "the producer did not finish after the disruption"
    assert "error" not in outcome, f"the producer failed: {outcome.get('error')}"
    report = outcome["report"]
    assert isinstance(report, ProduceReport)
    assert sum(report.acked.values()) == len(events) and not report.failed and report.not_sent == 0


@pytest.fixture(scope="session")
def lab_cfg(tmp_path_factory: pytest.TempPathFactory) -> params.Params:
    return lab_params(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def lab(lab_cfg: params.Params) -> object:
    """The session lab's engines, as the notebooks' steps see them (store, ledger, ...)."""
    from smartcity import steps

    return steps.open_lab(lab_cfg)


@pytest.fixture(scope="session")
def broker(lab_cfg: params.Params) -> Iterator[object]:
    from smartcity import steps

    with steps.open_broker(lab_cfg) as running:
        assert running.owned, "the session broker must be one the tests started"
        yield running


@pytest.fixture(scope="session")
def spark(lab_cfg: params.Params) -> Iterator[object]:
    from smartcity import steps

    with steps.spark(lab_cfg) as session:
        yield session


@pytest.fixture(scope="session")
def warehouse(lab: object) -> Iterator[object]:
    """The session's PostgreSQL warehouse (the lab's embedded server, fsync off)."""
    from smartcity import steps

    with steps.open_warehouse(lab) as running:
        yield running


#: Fake credentials (so nothing can reach a real account, and botocore and the JVM's AWS SDK find
#: some) and a region. The Java SDK reads AWS_REGION, botocore AWS_DEFAULT_REGION; with the instance
#: metadata service off, a chain that finds no credentials fails at once instead of probing 169.254.169.254.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Unset for a test: a profile, an endpoint or an opt-out of the machine must not redirect it.
#: (So are the per-service endpoints, AWS_ENDPOINT_URL_<SERVICE>.)
AWS_ENV_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SECURITY_TOKEN",
)


def use_fake_aws(patch: pytest.MonkeyPatch, home: Path) -> None:
    """Fake credentials and region; nothing of the machine's AWS setup (profile, ~/.aws, endpoint, role)."""
    for name in [*AWS_ENV_CLEARED, *(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_"))]:
        patch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        patch.setenv(name, value)
    patch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """For one test: the fake AWS environment (use with moto's mock_aws or the moto server)."""
    use_fake_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """moto's S3, Glue, ... API server on 127.0.0.1, once for the session; yields its endpoint URL.

    It runs in this process and shares moto's state with any `mock_aws` (which resets it): tests
    that use it create their buckets per module (the `moto_server` fixture).
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free one, no race
    requests_log = logging.getLogger("werkzeug")  # one INFO line per request would bury a failure's report
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    try:
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()
    finally:
        requests_log.setLevel(level)


@pytest.fixture(scope="module")
def moto_server(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The moto endpoint, with this module's environment pointing every AWS client at it.

    boto3 and awswrangler follow AWS_ENDPOINT_URL, Spark's S3A follows it through
    smartcity.platform.spark.s3a_conf; credentials are fake and ~/.aws is hidden, so a developer's real
    profile is never read. The environment is restored when the module ends, so no other test
    talks to moto by accident.
    """
    with pytest.MonkeyPatch.context() as patch:
        use_fake_aws(patch, tmp_path_factory.mktemp("no-aws-config"))
        patch.setenv("AWS_ENDPOINT_URL", moto_server_url)
        yield moto_server_url


ENGINE_MARKERS = (
    "kafka.Kafka",
    "bin/postgres",
    "org.apache.spark.deploy.SparkSubmit",
    "io.trino.server.TrinoServer",
    "org.apache.spark.deploy.master.Master",
    "org.apache.spark.deploy.worker.Worker",
    "org.apache.spark.executor.CoarseGrainedExecutorBackend",
)


def running_engines() -> dict[int, str]:
    """Kafka, PostgreSQL, Spark and Trino processes of this checkout: pid -> command line.

    Every engine the lab starts runs from this checkout (the jars in .cache/, the binaries and
    pyspark in .venv/), so its command line names the lab's root; engines of another clone or
    another user's lab on the same machine are not this session's business.
    """
    root = f"{project_root()}/"
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and root in cmd and any(m in cmd for m in ENGINE_MARKERS):
            found[proc.info["pid"]] = cmd
    return found


def engines_using(folder: Path) -> list[str]:
    """Processes whose command line mentions a folder: the engines a run started there."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(folder) in cmd and proc.info["pid"] != os.getpid():
            found.append(f"{proc.info['pid']}: {cmd[:120]}")
    return found


_BEFORE_TESTS = set(running_engines())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any engine started during the tests outlived them (the lab stops what it starts).

    With pytest-xdist the controller checks, once every worker is done (a worker would count the
    engines the other workers are still running)."""
    if hasattr(session.config, "workerinput"):
        return
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
