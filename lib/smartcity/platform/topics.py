"""Kafka topics and offsets for the lab: create and grow topics, empty them, count what they hold.

Topics are never deleted and re-created (which races the controller on a busy machine): emptying
is Kafka's DeleteRecords up to the end offsets.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence

import pandas as pd
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import InvalidPartitionsError, KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from smartcity.platform.processes import EngineError

log = logging.getLogger(__name__)


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smartcity-admin", request_timeout_ms=30000)


def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    partitions: int,
    replication: int = 1,
    empty: bool = False,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """Create missing topics, grow those with fewer partitions, optionally empty them; name -> partitions.

    A topic with more partitions than asked keeps them (Kafka cannot remove partitions) and the
    table shows it. Emptying truncates the records (:func:`truncate_topics`): topics are never
    deleted and re-created, which races the controller on a busy machine.
    """
    admin = admin_client(bootstrap)
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if missing:
            # another client may create one meanwhile: it exists, which is all we need
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    {t: {"num_partitions": partitions, "replication_factor": replication} for t in missing},
                    timeout_ms=int(timeout_s * 1000),
                )
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
        counts = _partition_counts(admin, topics)
        fewer = {t: partitions for t, n in counts.items() if n < partitions}
        if fewer:
            # a broker of a quorum may answer with metadata a moment old (the topic just created, its
            # partitions not all listed yet): Kafka then refuses to grow it to what it already has
            with contextlib.suppress(InvalidPartitionsError):
                admin.create_partitions(fewer, timeout_ms=int(timeout_s * 1000))
            deadline = time.monotonic() + timeout_s
            counts = _partition_counts(admin, topics)
            while any(n < partitions for n in counts.values()):
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"topics {sorted(fewer)} did not reach {partitions} partitions within {timeout_s:.0f} s"
                    )
                time.sleep(0.2)
                counts = _partition_counts(admin, topics)
            admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))  # new partitions have leaders
        for topic, n in counts.items():
            if n > partitions:
                log.warning("topic %s keeps its %d partitions (kafka_partitions is %d)", topic, n, partitions)
    finally:
        admin.close()
    if empty:
        truncate_topics(bootstrap, topics, timeout_s=timeout_s)
    return pd.DataFrame({"topic": list(topics), "partitions": [counts[t] for t in topics]}).set_index("topic")


def _partition_counts(admin: KafkaAdminClient, topics: Sequence[str]) -> dict[str, int]:
    return {d["name"]: len(d["partitions"]) for d in admin.describe_topics(list(topics))}


def truncate_topics(bootstrap: str, topics: Sequence[str], *, timeout_s: float = 60.0) -> dict[str, int]:
    """Delete every record the topics hold now (Kafka DeleteRecords up to the end offsets); returns how many.

    The topics, their partitions and their configs stay: nothing waits for a deletion to finish.
    Offsets go on from where they were (a new run's first record is not at offset 0).
    """
    admin = admin_client(bootstrap)
    try:
        parts = [
            TopicPartition(d["name"], p["partition_index"])
            for d in admin.describe_topics(list(topics))
            for p in d["partitions"]
        ]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in parts})
        upto = {tp: ends[tp].offset for tp in parts if ends[tp].offset > starts[tp].offset}
        if upto:
            done = admin.delete_records(upto, timeout_ms=int(timeout_s * 1000))
            short = {
                f"{tp.topic}[{tp.partition}]": r["low_watermark"]
                for tp, r in done.items()
                if r["low_watermark"] < upto[tp]
            }
            if short:
                raise EngineError(f"Kafka did not delete the records of {short} up to their end offsets")
    except UnknownTopicOrPartitionError as exc:
        raise EngineError(f"a topic is missing on {bootstrap}: {exc}") from None
    finally:
        admin.close()
    removed: Counter[str] = Counter({t: 0 for t in topics})
    for tp, offset in upto.items():
        removed[tp.topic] += offset - starts[tp].offset
    return dict(removed)


#: How often a retriable answer to an offsets request is asked again, and the first pause (doubling) between.
OFFSETS_ATTEMPTS = 6
OFFSETS_BACKOFF_S = 0.1


def partition_offsets(
    admin: KafkaAdminClient, topics: Sequence[str], *, earliest: bool = False
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the latest (or earliest) offset, in one round of admin calls.

    A retriable answer (a partition whose leader just moved answers OffsetNotAvailable or NotLeader for a
    moment, as on a busy quorum) is asked again, up to :data:`OFFSETS_ATTEMPTS` times, about 3 s in all.
    """
    spec = OffsetSpec.EARLIEST if earliest else OffsetSpec.LATEST
    for attempt in range(OFFSETS_ATTEMPTS):
        try:
            described = admin.describe_topics(list(topics))
            parts = [TopicPartition(d["name"], p["partition_index"]) for d in described for p in d["partitions"]]
            found = admin.list_partition_offsets({tp: spec for tp in parts})
            return {(tp.topic, tp.partition): found[tp].offset for tp in parts}
        except UnknownTopicOrPartitionError as exc:
            raise EngineError(f"a topic is missing: {exc}") from None
        except KafkaError as exc:
            if not exc.retriable or attempt == OFFSETS_ATTEMPTS - 1:
                raise
            log.info("offsets of %s not available yet (%s): asking again", ",".join(topics), exc)
            time.sleep(OFFSETS_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def topic_counts(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Messages held per topic (end offset minus start offset, summed over partitions)."""
    admin = admin_client(bootstrap)
    try:
        ends = partition_offsets(admin, topics)
        starts = partition_offsets(admin, topics, earliest=True)
    finally:
        admin.close()
    counts: Counter[str] = Counter({t: 0 for t in topics})
    for (topic, partition), end in ends.items():
        counts[topic] += end - starts[(topic, partition)]
    return dict(counts)
