"""The advice's freshness in a live run: from an event's Kafka timestamp to the advice that includes it.

Read after the run from what it left, with readers that share none of the lab's code: each telemetry
event's Kafka timestamp by partition and offset, and each ``route_advice`` message's Kafka timestamp
(when it reached the topic), both read back from the broker by a plain consumer; which micro-batch of
the advice query wrote each message, from the lake's advice table (DuckDB over its folder); and which
telemetry offsets each micro-batch read, from Spark's own progress reports (``advice_batches.jsonl``).
An event is in the advice of the batch whose offsets cover it; its freshness is the moment the last
message of that batch reached the topic minus the event's Kafka timestamp. Events of a batch that
wrote no advice (every fix of it behind the watermark) have none and are counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from smartcity import steps
from smartcity.advice.contract import ADVICE_TOPIC
from smartcity.advice.query import TELEMETRY
from smartcity.ops.live_advice import ADVICE_BATCHES_FILE
from smartcity.params import Params

#: A consume call's size and wait.
CONSUME_BATCH, CONSUME_WAIT_S = 10_000, 1.0


def _records(bootstrap: str, topic: str) -> Iterator[tuple[int, int, int, bytes]]:
    """(partition, offset, Kafka timestamp ms, value) of every record the topic holds, read to its end offsets."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "smartcity-bench-advice", "enable.auto.commit": False}
    )
    try:
        parts = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done = {p: ends[p] == 0 for p in parts}
        while not all(done.values()):
            for msg in consumer.consume(CONSUME_BATCH, CONSUME_WAIT_S):
                if msg.error() is not None:
                    raise RuntimeError(f"reading {topic}: {msg.error()}")
                yield msg.partition(), msg.offset(), msg.timestamp()[1], msg.value()
                done[msg.partition()] = msg.offset() + 1 >= ends[msg.partition()]
    finally:
        consumer.close()


def _published_by_batch(cfg: Params, bootstrap: str) -> dict[int, float]:
    """Each advice batch's publication: when its last message reached the topic (s since the epoch)."""
    reached: dict[str, int] = {}
    for _, _, stamp, value in _records(bootstrap, ADVICE_TOPIC):
        reached.setdefault(json.loads(value)["id"], stamp)  # a replayed batch's repeat counts from the first
    table = cfg.paths.lake / ADVICE_TOPIC / "**" / "*.parquet"
    batches: dict[int, float] = {}
    for ident, batch in duckdb.sql(
        f"SELECT id, advice_batch FROM read_parquet('{table}', hive_partitioning = true)"
    ).fetchall():
        if ident in reached:
            batches[batch] = max(batches.get(batch, 0.0), reached[ident] / 1000)
    return batches


def advice_ages(cfg: Params) -> dict[str, Any]:
    """The freshness of every telemetry event the advice query read in a finished live run of ``cfg``: (sent, age)
    pairs, and the events of batches that published no advice."""
    runs = [json.loads(line) for line in (cfg.paths.live / ADVICE_BATCHES_FILE).read_text().splitlines() if line]
    with steps.open_broker(cfg) as broker:  # started again on the run's data: its topics as the run left them
        published = _published_by_batch(cfg, broker.bootstrap)
        stamps: dict[int, dict[int, int]] = {}
        for partition, offset, stamp, _ in _records(broker.bootstrap, TELEMETRY):
            stamps.setdefault(partition, {})[offset] = stamp
    ages, without = match(runs, published, stamps)
    return {"ages": ages, "events_without_advice": without, "batches": len(runs)}


def match(
    runs: list[dict[str, Any]], published: dict[int, float], stamps: dict[int, dict[int, int]]
) -> tuple[list[tuple[float, float]], int]:
    """(sent, age) of every event each batch read (its telemetry offsets, from Spark's progress), aged to its
    batch's publication; and how many events were read by batches that published nothing."""
    ages: list[tuple[float, float]] = []
    without = 0
    for run in runs:
        start, end = run["start"].get(TELEMETRY, {}), run["end"][TELEMETRY]
        for partition, last in end.items():
            held = stamps.get(int(partition), {})
            first = start.get(partition, min(held, default=last))  # the first batch starts at the earliest offset
            sent = [held[o] / 1000 for o in range(first, last)]
            if run["batch"] in published:
                ages.extend((s, published[run["batch"]] - s) for s in sent)
            else:
                without += len(sent)
    return ages, without
