"""Producing the fleet's events to Kafka: fast, keyed, acknowledged, and honest about failures.

Two backends with the same settings and the same guarantees: kafka-python (the user's choice and
the default) and confluent-kafka (librdkafka, several times faster; see ``make bench`` and the
README for the measured figures). Both key each event by its device, so a device's events stay
in order in one partition; wait for ``acks=all`` with idempotence, so retries never duplicate;
batch and compress; serialize with orjson; and never flush per message. Every event is counted as
sent, acknowledged or failed; anything not acknowledged raises :class:`ProduceError` with the
counts per topic. Ctrl-C flushes what was handed over, prints the counts and then interrupts.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
import pandas as pd
from tqdm import tqdm

from smartcity.config import TOPICS, Params
from smartcity.contracts import SCHEMA_VERSION, Event
from smartcity.engines import EngineError

log = logging.getLogger(__name__)

HEADERS = [("schemaVersion", str(SCHEMA_VERSION).encode())]
LINGER_MS = 50
BATCH_BYTES = 1024 * 1024


class ProduceError(RuntimeError):
    """Some events were not acknowledged by the broker; the message counts them per topic."""


@dataclass
class ProduceReport:
    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    not_sent: int = 0
    first_error: str = ""

    def record_failure(self, topic: str, error: object) -> None:
        self.failed[topic] += 1
        self.first_error = self.first_error or str(error)

    def summary(self) -> str:
        return (f"{sum(self.sent.values())} sent, {sum(self.acked.values())} acknowledged, "
                f"{sum(self.failed.values())} failed" + (f", {self.not_sent} not sent" if self.not_sent else ""))

    def table(self, held: dict[str, int] | None = None) -> pd.DataFrame:
        """Per topic: sent, acknowledged, failed, and (if given) what the topic now holds."""
        topics = [t for t in TOPICS if t in self.sent] + sorted(set(self.sent) - set(TOPICS))
        rows = [{"topic": t, "sent": self.sent[t], "acked": self.acked[t], "failed": self.failed[t]} for t in topics]
        frame = pd.DataFrame(rows, columns=["topic", "sent", "acked", "failed"]).set_index("topic")
        if held is not None:
            frame["in topic"] = [held.get(t, 0) for t in frame.index]
        return frame


class _KafkaPython:
    """kafka-python: zstd batches of up to 1 MiB, 50 ms linger, acks=all, idempotent."""

    def __init__(self, bootstrap: str, report: ProduceReport, connect_timeout_s: float, delivery_timeout_s: float):
        from kafka import KafkaProducer
        from kafka.errors import KafkaTimeoutError

        self.report = report
        try:
            self.producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                client_id="smartcity-fleet",
                acks="all",
                enable_idempotence=True,
                linger_ms=LINGER_MS,
                batch_size=BATCH_BYTES,
                compression_type="zstd",
                max_request_size=8 * BATCH_BYTES,
                retries=10,
                request_timeout_ms=int(min(30.0, delivery_timeout_s / 2) * 1000),
                delivery_timeout_ms=int(delivery_timeout_s * 1000),
                max_block_ms=int(delivery_timeout_s * 1000),
            )
        except KafkaTimeoutError:
            raise EngineError(f"no Kafka broker answers at {bootstrap} (gave up after {connect_timeout_s:.0f} s)") from None
        self._ok = {t: self._acker(t) for t in TOPICS}
        self._fail = {t: self._failer(t) for t in TOPICS}

    def _acker(self, topic: str) -> Callable[[object], None]:
        return lambda _meta: self.report.acked.update((topic,))

    def _failer(self, topic: str) -> Callable[[BaseException], None]:
        return lambda exc: self.report.record_failure(topic, f"{type(exc).__name__}: {exc}")

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        from kafka.errors import KafkaError

        try:
            future = self.producer.send(topic, key=key, value=value, headers=HEADERS)
        except KafkaError as exc:
            raise _SendFailed(f"{type(exc).__name__}: {exc}") from exc
        ok = self._ok.get(topic) or self._acker(topic)
        fail = self._fail.get(topic) or self._failer(topic)
        future.add_callback(ok).add_errback(fail)

    def close(self, timeout_s: float) -> None:
        try:
            self.producer.flush(timeout=timeout_s)
        finally:
            self.producer.close(timeout=10)


class _Confluent:
    """confluent-kafka (librdkafka) with the same guarantees; lz4, which measured fastest here."""

    def __init__(self, bootstrap: str, report: ProduceReport, connect_timeout_s: float, delivery_timeout_s: float):
        from confluent_kafka import Producer

        self.report = report
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": "smartcity-fleet",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": LINGER_MS,
            "batch.size": BATCH_BYTES,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "logger": logging.getLogger("smartcity.producer.librdkafka"),
        })
        if not _reachable(self.producer, connect_timeout_s):
            raise EngineError(f"no Kafka broker answers at {bootstrap} (gave up after {connect_timeout_s:.0f} s)")
        self._count = 0

    def _delivered(self, err: object, msg: object) -> None:
        topic = msg.topic()  # type: ignore[attr-defined]
        if err is None:
            self.report.acked[topic] += 1
        else:
            self.report.record_failure(topic, err)

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=HEADERS, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let librdkafka deliver, then try again
                self.producer.poll(0.05)
        self._count += 1
        if self._count % 1000 == 0:
            self.producer.poll(0)

    def close(self, timeout_s: float) -> None:
        left = self.producer.flush(timeout_s)
        if left:
            self.report.first_error = self.report.first_error or f"{left} events still queued after {timeout_s:.0f} s"
        del self.producer


def _reachable(producer: object, timeout_s: float) -> bool:
    from confluent_kafka import KafkaException

    try:
        producer.list_topics(timeout=timeout_s)  # type: ignore[attr-defined]
        return True
    except KafkaException:
        return False


class _SendFailed(Exception):
    pass


BACKENDS = {"kafka-python": _KafkaPython, "confluent-kafka": _Confluent}


def produce(
    bootstrap: str,
    events: Iterable[Event],
    *,
    backend: str = "kafka-python",
    total: int | None = None,
    connect_timeout_s: float = 15.0,
    delivery_timeout_s: float = 60.0,
    progress: bool = True,
) -> ProduceReport:
    """Send events keyed by device and wait for every acknowledgement; failures raise, counted.

    A send that fails outright (a topic the broker does not have, say) stops the run instead of
    failing again for every following event: the rest are counted as not sent.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown producer backend {backend!r}; use one of {', '.join(BACKENDS)}")
    report = ProduceReport()
    sender = BACKENDS[backend](bootstrap, report, connect_timeout_s, delivery_timeout_s)
    stream = iter(tqdm(events, total=total, desc=f"producing ({backend})", unit="event", mininterval=1.0,
                       disable=not progress))
    interrupted = False
    try:
        for event in stream:
            report.sent[event.topic] += 1
            try:
                sender.send(event.topic, event.key.encode(), orjson.dumps(event.value))
            except _SendFailed as exc:
                report.record_failure(event.topic, exc)
                report.not_sent = sum(1 for _ in stream)
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sender.close(delivery_timeout_s)
    if interrupted:
        print(f"\ninterrupted: {report.summary()}", file=sys.stderr)
        raise KeyboardInterrupt
    lost = sum(report.sent.values()) - sum(report.acked.values())
    if lost or report.not_sent:
        raise ProduceError(
            f"{lost + report.not_sent} of {sum(report.sent.values()) + report.not_sent} events were not acknowledged "
            f"(unacknowledged per topic: {dict(report.sent - report.acked)}"
            + (f"; {report.not_sent} not sent after the first failure" if report.not_sent else "")
            + f"); first error: {report.first_error or 'timeout'}"
        )
    return report


def produce_run(cfg: Params, events: Iterable[Event], *, total: int | None = None) -> ProduceReport:
    """Produce a simulated run to the lab's broker at the params' pace, and record what was acknowledged."""
    from smartcity import report as stage_report
    from smartcity.simulate import pace

    if total is None and isinstance(events, list):
        total = len(events)
    result = produce(cfg.kafka_bootstrap, pace(events, cfg.speedup), backend=cfg.producer_backend, total=total)
    stage_report.record_counts(cfg, "produced", result.acked)
    return result
