"""A broker restart while the fleet produces: nothing lost, nothing doubled.

The producer is idempotent with acks=all and retries until its delivery timeout, which is longer
than the restart: batches in flight when the broker stops, and everything sent while it is down,
are delivered once it is back, and the broker discards a retried batch it had already written.
Checked by reading the topics with a plain consumer and comparing event ids with what was sent.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from smartcity import kafka
from smartcity.config import TOPICS
from smartcity.contracts import Event
from smartcity.engines import free_port
from smartcity.producer import BACKENDS, ProduceReport, produce
from tests.conftest import read_topics

pytestmark = pytest.mark.integration

EVENTS = 200_000
DEVICES = 601  # not a multiple of the 5 topics: every device reports on each
ID_BASE = 0x6F1F3A52_9A51_4C41_9D0E_000000000000  # event n has id UUID(ID_BASE + n)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    """Events shaped like the fleet's (about 250 bytes of JSON, keyed by device), each with a unique id."""
    made = []
    for n in range(EVENTS):
        device = f"vehicle-{n % DEVICES:04d}"
        made.append(Event(TOPICS[n % len(TOPICS)], device, {
            "id": str(uuid.UUID(int=ID_BASE + n)), "schemaVersion": 1,
            "deviceId": device, "timestamp": f"2026-01-05T08:{n // 60_000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
            "latitude": 51.5 + n % 997 / 1000, "longitude": -0.12 - n % 991 / 1000, "speed": float(n % 130),
            "direction": float(n % 360), "route": "M1/M6", "road": "M1",
        }))
    return made


class RestartableBroker:
    """A broker on a fixed port and data dir that a test can stop and start again."""

    def __init__(self, data: Path) -> None:
        self.port, self.data = free_port(), data
        self.broker = kafka.start_broker(self.port, self.data)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def stop(self) -> None:
        self.broker.stop()

    def start(self) -> None:
        self.broker = kafka.start_broker(self.port, self.data)


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableBroker]:
    slot = RestartableBroker(tmp_path_factory.mktemp("restart") / "kafka")
    try:
        yield slot
    finally:
        slot.stop()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_broker_restart_while_producing_loses_and_doubles_nothing(restartable: RestartableBroker,
                                                                   events: list[Event], backend: str) -> None:
    third = EVENTS // 3
    first_third_sent, broker_down = threading.Event(), threading.Event()

    def feed() -> Iterator[Event]:
        # a third before the restart, a third while the broker shuts down, a third while it is down
        yield from events[:third]
        first_third_sent.set()
        yield from events[third:2 * third]
        broker_down.wait()
        yield from events[2 * third:]

    outcome: dict[str, ProduceReport | BaseException] = {}

    def run() -> None:
        try:
            outcome["report"] = produce(restartable.bootstrap, feed(), backend=backend, delivery_timeout_s=600,
                                        progress=False)
        except BaseException as exc:  # noqa: BLE001 - the main thread reports it
            outcome["error"] = exc

    kafka.ensure_topics(restartable.bootstrap, partitions=3, empty=True)
    producer = threading.Thread(target=run, name=f"producer-{backend}")
    producer.start()
    try:
        assert first_third_sent.wait(600), "the producer never got going"
        restartable.stop()
        broker_down.set()
        restartable.start()  # the same data dir and port
        producer.join(900)
    finally:
        broker_down.set()  # never leave the producer waiting
    assert not producer.is_alive(), "the producer did not finish after the broker came back"
    assert "error" not in outcome, f"the producer failed: {outcome.get('error')}"
    report = outcome["report"]
    assert isinstance(report, ProduceReport)
    assert sum(report.acked.values()) == EVENTS and not report.failed and report.not_sent == 0
    seen: Counter[str] = Counter()
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for record in read_topics(restartable.bootstrap, TOPICS):  # each partition in offset order
        value = orjson.loads(record.value)
        seen[value["id"]] += 1
        order[(record.topic, value["deviceId"])].append(uuid.UUID(value["id"]).int - ID_BASE)
    produced = {e.value["id"] for e in events}
    missing = produced - set(seen)
    doubled = {event_id: n for event_id, n in seen.items() if n > 1}
    assert (len(missing), len(doubled)) == (0, 0), f"{len(missing)} missing, {len(doubled)} duplicated"
    assert sum(seen.values()) == EVENTS and set(seen) == produced
    shuffled = [key for key, sent in order.items() if sent != sorted(sent)]
    assert shuffled == [], f"{len(shuffled)} devices' events out of order after the restart"
