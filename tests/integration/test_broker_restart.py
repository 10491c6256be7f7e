"""A broker restart while the fleet produces: nothing lost, nothing doubled.

The producer is idempotent with acks=all and retries until its delivery timeout, which is longer
than the restart: batches in flight when the broker stops, and everything sent while it is down,
are delivered once it is back, and the broker discards a retried batch it had already written.
Checked by reading the topics with a plain consumer and comparing event ids with what was sent.
The broker is the lab's own (``steps.open_broker``), stopped and started again on its data the way a
profile's next step finds it: owned by the lab, its records all there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smartcity import steps
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.ingest.producer import BACKENDS
from smartcity.platform import broker as kraft
from smartcity.platform import topics
from tests.conftest import lab_params, numbered_events, produce_through, unique_delivery

pytestmark = pytest.mark.integration

EVENTS = 100_000  # the last third always goes while the broker is down


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return numbered_events(EVENTS)


class RestartableBroker:
    """A profile's own broker (its port and data dir) that a test can stop and start again through the lab."""

    def __init__(self, root: Path) -> None:
        self.cfg = lab_params(root)
        self.broker = steps.open_broker(self.cfg)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def stop(self) -> None:
        self.broker.stop()
        assert not kraft.is_kafka(self.cfg.kafka.bootstrap, timeout_s=1), "the broker stopped"

    def start(self) -> None:
        self.broker = steps.open_broker(self.cfg)  # nothing answers: the lab starts it again on its data
        assert self.broker.owned


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableBroker]:
    slot = RestartableBroker(tmp_path_factory.mktemp("restart"))
    try:
        yield slot
    finally:
        slot.stop()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_broker_restart_while_producing_loses_and_doubles_nothing(
    restartable: RestartableBroker, events: list[Event], backend: str
) -> None:
    def restart(release: Callable[[], None]) -> None:
        restartable.stop()
        release()  # the last third is sent while the broker is down
        restartable.start()  # the same data dir and port

    topics.ensure_topics(restartable.bootstrap, TOPICS, partitions=3, empty=True)
    produce_through(restartable.bootstrap, events, backend, restart)
    unique_delivery(restartable.bootstrap, events)
