"""Producing the fleet's events to Kafka: fast, keyed, acknowledged, and honest about failures.

Two backends with the same settings and the same guarantees: kafka-python (the user's choice and
the default) and confluent-kafka (librdkafka, several times faster; see ``make bench`` and the
README for the measured figures). Both key each event by its device, so a device's events stay
in order in one partition; wait for ``acks=all`` with idempotence, so retries never duplicate;
batch and compress; serialize with orjson; and never flush per message. Both retry a failed
request until the delivery timeout (not a fixed number of times), so a broker restart shorter
than it costs nothing. confluent-kafka is told to partition like kafka-python and the Java client
(murmur2 of the key), so a device's events land in the same partition whichever backend wrote
them. Every event is counted as sent, acknowledged, failed or not sent; anything not acknowledged
raises :class:`ProduceError` with the counts per topic. Ctrl-C flushes what was handed over,
prints the counts and then interrupts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import pandas as pd
from confluent_kafka import KafkaException, Producer
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from tqdm import tqdm

from smartcity.fleet.contracts import SCHEMA_VERSIONS, TOPICS, Event
from smartcity.platform.processes import EngineError

log = logging.getLogger(__name__)

#: The Kafka header that names an event's contract version, the same as its ``schemaVersion`` field.
HEADERS = {v: [("schemaVersion", str(v).encode())] for v in SCHEMA_VERSIONS}
LINGER_MS = 50
BATCH_BYTES = 1024 * 1024


@dataclass
class ProduceReport:
    """What became of every event: sent (handed to the client), acknowledged, failed, or not sent at all."""

    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    not_sent: int = 0
    first_error: str = ""

    def record_failure(self, topic: str, error: object) -> None:
        self.failed[topic] += 1
        self.first_error = self.first_error or str(error)

    def settle(self, why: str) -> None:
        """Count as failed whatever is neither acknowledged nor failed yet (still buffered when the client closed)."""
        pending = self.sent - self.acked - self.failed
        if pending:
            self.failed.update(pending)
            self.first_error = self.first_error or f"{sum(pending.values())} events {why}"

    def summary(self) -> str:
        return (
            f"{sum(self.sent.values())} sent, {sum(self.acked.values())} acknowledged, "
            f"{sum(self.failed.values())} failed" + (f", {self.not_sent} not sent" if self.not_sent else "")
        )

    def table(self, held: dict[str, int] | None = None) -> pd.DataFrame:
        """Per topic: sent, acknowledged, failed, and (if given) what the topic now holds."""
        topics = [t for t in TOPICS if t in self.sent] + sorted(set(self.sent) - set(TOPICS))
        rows = [{"topic": t, "sent": self.sent[t], "acked": self.acked[t], "failed": self.failed[t]} for t in topics]
        frame = pd.DataFrame(rows, columns=["topic", "sent", "acked", "failed"]).set_index("topic")
        if held is not None:
            frame["in topic"] = [held.get(t, 0) for t in frame.index]
        return frame


class ProduceError(RuntimeError):
    """Some events were not acknowledged by the broker; the message counts them per topic, ``report`` holds all counts."""

    def __init__(self, message: str, report: ProduceReport) -> None:
        super().__init__(message)
        self.report = report


class _KafkaPython:
    """kafka-python: zstd batches of up to 1 MiB, 50 ms linger, acks=all, idempotent."""

    def __init__(self, bootstrap: str, report: ProduceReport, connect_timeout_s: float, delivery_timeout_s: float):
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
                # no `retries`: kafka-python 3 retries without a count limit, until delivery_timeout_ms
                request_timeout_ms=int(min(30.0, delivery_timeout_s / 2) * 1000),
                delivery_timeout_ms=int(delivery_timeout_s * 1000),
                max_block_ms=int(delivery_timeout_s * 1000),
                reconnect_backoff_max_ms=1000,  # the Java client's value: back within a second of a broker restart
            )
        except KafkaTimeoutError:
            raise EngineError(
                f"no Kafka broker answers at {bootstrap} (gave up after {connect_timeout_s:.0f} s)"
            ) from None
        self.failure = threading.Event()
        self._ok = {t: self._acker(t) for t in TOPICS}
        self._fail = {t: self._failer(t) for t in TOPICS}

    def _acker(self, topic: str) -> Callable[[object], None]:
        return lambda _meta: self.report.acked.update((topic,))

    def _failer(self, topic: str) -> Callable[[BaseException], None]:
        def failed(exc: BaseException) -> None:
            text = str(exc)  # kafka-python's errors often start with their class name already
            self.report.record_failure(
                topic, text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
            )
            self.failure.set()

        return failed

    def wait(self, seconds: float) -> None:
        """Sleep (the client's I/O thread delivers meanwhile), waking early if a delivery fails."""
        self.failure.wait(seconds)

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        try:
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as exc:
            raise _SendFailed(f"{type(exc).__name__}: {exc}") from exc
        ok = self._ok.get(topic) or self._acker(topic)
        fail = self._fail.get(topic) or self._failer(topic)
        future.add_callback(ok).add_errback(fail)

    def close(self, timeout_s: float) -> None:
        """Flush; on a timeout fail what is still buffered instead of raising KafkaTimeoutError."""
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            buffered = sum((self.report.sent - self.report.acked - self.report.failed).values())
            self.report.first_error = self.report.first_error or (
                f"{buffered} events still buffered when the flush timed out after {timeout_s:.0f} s"
            )
            # close() would flush again and raise again: stop the client's I/O thread first, which
            # fails every batch it still holds (kafka-python has no public call for this)
            self.producer._sender.force_close()
            self.producer._sender.join(10)
        self.producer.close(timeout=10)
        self.report.settle("were still buffered when the producer closed")


class _Confluent:
    """confluent-kafka (librdkafka) with the same guarantees; lz4, which measured fastest here."""

    def __init__(self, bootstrap: str, report: ProduceReport, connect_timeout_s: float, delivery_timeout_s: float):
        self.report = report
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": "smartcity-fleet",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": LINGER_MS,
                "batch.size": BATCH_BYTES,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                # retries are unlimited by default: a message is retried until message.timeout.ms
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                # murmur2 of the key like kafka-python and the Java client (librdkafka's default is CRC32),
                # random for a null key; so a device's partition does not depend on the backend
                "partitioner": "murmur2_random",
                "logger": logging.getLogger("smartcity.ingest.producer.librdkafka"),
            }
        )
        if not _reachable(self.producer, connect_timeout_s):
            raise EngineError(f"no Kafka broker answers at {bootstrap} (gave up after {connect_timeout_s:.0f} s)")
        self._count = 0

    def _delivered(self, err: object, msg: object) -> None:
        topic = msg.topic()  # type: ignore[attr-defined]
        if err is None:
            self.report.acked[topic] += 1
        else:
            self.report.record_failure(topic, err)

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let librdkafka deliver, then try again
                self.producer.poll(0.05)
        self._count += 1
        if self._count % 1000 == 0:
            self.producer.poll(0)

    def wait(self, seconds: float) -> None:
        """Serve delivery reports while waiting (librdkafka reports only in poll), waking early on a failure."""
        deadline = time.monotonic() + seconds
        failed = sum(self.report.failed.values())
        while (left := deadline - time.monotonic()) > 0 and sum(self.report.failed.values()) == failed:
            self.producer.poll(min(left, 0.1))

    def close(self, timeout_s: float) -> None:
        """Flush; on a timeout purge what is still queued, which reports it failed."""
        left = self.producer.flush(timeout_s)
        if left:
            self.report.first_error = self.report.first_error or (
                f"{left} events still buffered when the flush timed out after {timeout_s:.0f} s"
            )
            self.producer.purge()
            self.producer.flush(5)  # serves the purged messages' failure reports
        del self.producer
        self.report.settle("were still buffered when the producer closed")


def _reachable(producer: object, timeout_s: float) -> bool:
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
    speedup: float = 0.0,
    connect_timeout_s: float = 15.0,
    delivery_timeout_s: float = 60.0,
    flush_timeout_s: float | None = None,
    progress: bool = True,
    report: ProduceReport | None = None,
) -> ProduceReport:
    """Send events keyed by device and wait for every acknowledgement; failures raise, counted.

    ``speedup`` paces the events by their simulated timestamps (1 = real time, 0 = as fast as
    possible). The first failure stops the run, a send that fails outright or a delivery that
    failed: the remaining events are counted as not sent, straight from the input, so a paced run
    does not sleep through hours of events it will not send. The final flush waits
    ``flush_timeout_s`` (default: the delivery timeout and 10 s); what is still buffered then is
    counted as failed. Pass ``report`` to watch the counts while the run goes on (the live mode does).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown producer backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if not 0 <= speedup < float("inf"):
        raise ValueError(f"speedup must be zero or positive, got {speedup}")
    report = ProduceReport() if report is None else report
    sender = BACKENDS[backend](bootstrap, report, connect_timeout_s, delivery_timeout_s)
    if total is None and isinstance(events, Sized):
        total = len(events)
    pacer = _Pacer(speedup) if speedup > 0 else None
    interrupted = False
    try:
        remaining = iter(events)  # counted from here, unpaced, when the run stops early
        shown = _progress(remaining, total, backend, progress)
        _send_all(sender, remaining, shown, report, pacer)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sender.close(delivery_timeout_s + 10 if flush_timeout_s is None else flush_timeout_s)
    if interrupted:
        print(f"\ninterrupted: {report.summary()}", file=sys.stderr)
        raise KeyboardInterrupt
    _check_delivered(report)
    return report


def _progress(events: Iterator[Event], total: int | None, backend: str, progress: bool) -> Iterable[Event]:
    return tqdm(events, total=total, desc=f"producing ({backend})", unit="event", mininterval=1.0, disable=not progress)


def _send_all(
    sender: _KafkaPython | _Confluent,
    remaining: Iterator[Event],
    shown: Iterable[Event],
    report: ProduceReport,
    pacer: _Pacer | None,
) -> None:
    """Send ``shown`` (``remaining`` with a progress bar) until it ends or the first failure; what is left
    then is counted as not sent, straight from ``remaining``."""
    for event in shown:
        if pacer is not None and (due := pacer.seconds_until(event)) > 0:
            sender.wait(due)
        if report.failed:  # a delivery failed meanwhile: stop instead of failing again for every event
            report.not_sent = 1 + sum(1 for _ in remaining)
            return
        report.sent[event.topic] += 1
        try:
            version = event.value.get("schemaVersion")
            headers = HEADERS.get(version) or [("schemaVersion", str(version).encode())]
            sender.send(event.topic, event.key.encode(), orjson.dumps(event.value), headers)
        except _SendFailed as exc:
            report.record_failure(event.topic, exc)
            report.not_sent = sum(1 for _ in remaining)
            return


def _check_delivered(report: ProduceReport) -> None:
    """Raise :class:`ProduceError` when any event was not acknowledged or not sent."""
    lost = sum(report.sent.values()) - sum(report.acked.values())
    if lost or report.not_sent:
        raise ProduceError(
            f"{lost + report.not_sent} of {sum(report.sent.values()) + report.not_sent} events were not acknowledged "
            f"(unacknowledged per topic: {dict(report.sent - report.acked)}"
            + (f"; {report.not_sent} not sent after the first failure" if report.not_sent else "")
            + f"); first error: {report.first_error or 'unknown'}",
            report,
        )


class _Pacer:
    """Due times of events at ``speedup`` times their simulated clock, from the first event on."""

    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        self.start: tuple[float, float] | None = None

    def seconds_until(self, event: Event) -> float:
        try:
            at = datetime.fromisoformat(event.value["timestamp"]).timestamp()
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"pacing (speedup) needs an ISO 8601 'timestamp' in every event; {event.topic} "
                f"event {event.key!r} has {event.value.get('timestamp')!r}"
            ) from None
        if self.start is None:
            self.start = (time.monotonic(), at)
        wall0, sim0 = self.start
        return (at - sim0) / self.speedup - (time.monotonic() - wall0)
