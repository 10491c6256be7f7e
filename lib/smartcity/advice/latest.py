"""What a vehicle reads as it leaves: the latest ``route_advice`` message of each origin -> destination.

A Kafka consumer of the advice topic in a thread of its own, as any client of the topic would be (it
shares nothing with the advice query but the contract): it reads the topic from the start and keeps, per
key, the message of the latest window (for one window, the last message: the advice as refreshed last).
No consumer group, no committed offsets: every reader sees the whole topic.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from smartcity.advice.contract import ADVICE_TOPIC, PATH_SEPARATOR, key

#: How long one poll waits for messages (s): how soon the thread sees a stop.
POLL_S = 0.2


class LatestAdvice:
    """The latest advice per pair, kept up to date from ``topic`` while started (a context manager)."""

    def __init__(self, bootstrap: str, topic: str = ADVICE_TOPIC) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.latest: dict[str, dict[str, Any]] = {}
        self.read = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="latest-advice", daemon=True)

    def __enter__(self) -> LatestAdvice:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def get(self, origin: str, destination: str) -> dict[str, Any] | None:
        """The latest advice message for the pair, or None before the first."""
        with self._lock:
            return self.latest.get(key(origin, destination))

    def path(self, origin: str, destination: str) -> tuple[tuple[str, ...], str] | None:
        """The latest advised node path for the pair and the id of its message, or None before the first."""
        message = self.get(origin, destination)
        return None if message is None else (tuple(message["path"].split(PATH_SEPARATOR)), message["id"])

    def _keep(self, message: dict[str, Any], pair: str) -> None:
        with self._lock:
            held = self.latest.get(pair)
            if held is None or message["windowStart"] >= held["windowStart"]:  # ISO-8601 UTC: ordered as text
                self.latest[pair] = message
            self.read += 1

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"latest-advice-{id(self)}",  # required by the client; nothing is committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            while not self._stop.is_set():
                for record in consumer.consume(500, POLL_S):
                    if record.error() is not None:
                        if record.error().code() != KafkaError._PARTITION_EOF:
                            raise RuntimeError(f"reading {self.topic}: {record.error()}")
                        continue
                    self._keep(json.loads(record.value()), record.key().decode())
        except Exception as exc:
            self.error = exc
        finally:
            consumer.close()
