"""Advice while they drive: a streaming query beside the lake's that knows the roads now.

Read it top to bottom, it is the whole query:

1. :func:`fixes`: the telemetry topic's messages, parsed (event time, edge, speed). Contract v2 names
   the edge a fix is on; v1 fixes have no edge id and are left out here (map-matching them is the
   batch model's work, in 06), as are messages that do not parse (the lake's query quarantines them).
2. :func:`edge_windows`: per edge, tumbling event-time windows of ``window_seconds``: the fixes and
   their mean speed. The watermark (``watermark_seconds`` behind the latest event time seen) says how
   late a fix may come and still count; a later one is dropped by Spark and counted
   (:class:`LateRows`, from each micro-batch's progress), never silently.
3. Each micro-batch's updated windows (output mode ``update``: a window's advice is refreshed as its
   fixes arrive, not only once it closes) go to :class:`Advisor` on the driver: a few dozen rows, one
   per edge driven, turned into the fastest route now for each origin and destination
   (:func:`smartcity.advice.now.advise`).
4. The refreshed advice goes to the ``route_advice`` topic as contract messages
   (:mod:`smartcity.advice.contract`), every one acknowledged before the micro-batch returns, so Spark
   records the batch done only after its advice is delivered: at least once, and a batch replayed after
   a restart sends the same ids again (a consumer keeps the last message per id, or per pair and window).
   With the lake's store, the same messages go to the lake's advice table first, a file per batch named
   by its id: exactly once (:mod:`smartcity.advice.table`).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from smartcity.advice import contract, table
from smartcity.advice.now import Observed, advise, corridor_pairs
from smartcity.advice.params import AdviceParams
from smartcity.fleet.contracts import Event
from smartcity.fleet.roads import RoadNetwork
from smartcity.ingest.producer import produce
from smartcity.platform import topics
from smartcity.stream.query import kafka_options
from smartcity.stream.store import LakeStore

#: The telemetry topic the advice reads: its fixes name the edge they are on (contract v2).
TELEMETRY = "vehicle_data"
#: Windows the driver keeps (their edges and advice): past the watermark Spark updates none of them again.
KEPT_WINDOWS = 120
#: What the query reads of each telemetry message.
FIX_SCHEMA = StructType(
    [
        StructField("timestamp", StringType()),
        StructField("edgeId", StringType()),
        StructField("speed", DoubleType()),
    ]
)


def fixes(spark: SparkSession, bootstrap: str, topic: str = TELEMETRY) -> DataFrame:
    """The telemetry as a stream of fixes: ``event_time``, ``edgeId``, ``speed`` (v2 fixes that parse)."""
    # Spark's Kafka source, as the lake's query reads it (the same options and consumer tuning)
    raw = kafka_options(spark.readStream, bootstrap, [topic]).load()
    fix = F.from_json(F.col("value").cast("string"), FIX_SCHEMA)
    return (
        raw.select(fix.alias("fix"))
        .select(F.to_timestamp("fix.timestamp").alias("event_time"), "fix.edgeId", "fix.speed")
        .where(F.col("event_time").isNotNull() & F.col("edgeId").isNotNull() & F.col("speed").isNotNull())
    )


def edge_windows(fixes: DataFrame, window_seconds: int, watermark_seconds: int) -> DataFrame:
    """Per edge and event-time window: the fixes reported from it and their mean speed (km/h)."""
    return (
        fixes.withWatermark("event_time", f"{watermark_seconds} seconds")
        .groupBy(F.window("event_time", f"{window_seconds} seconds"), "edgeId")
        .agg(F.count("*").alias("fixes"), F.avg("speed").alias("mean_kmh"))
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "edgeId",
            "fixes",
            "mean_kmh",
        )
    )


@dataclass
class Advisor:
    """The driver's side (``foreachBatch``): each window's edges as they update, and its advice, kept by window."""

    network: RoadNetwork
    pairs: Sequence[tuple[str, str]]
    publish: Callable[[list[dict[str, Any]]], None] | None = None  # sends a batch's refreshed advice
    record: Callable[[int, list[dict[str, Any]]], object] | None = None  # writes it to the lake, by batch id
    windows: dict[datetime, dict[str, Observed]] = field(default_factory=dict)  # window start (UTC) -> edge -> seen
    advice: dict[datetime, list[dict[str, object]]] = field(default_factory=dict)  # window start -> its advice
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.collect()  # the windows updated in this batch: one row per edge driven in each
        touched = {}
        with self.lock:
            for row in rows:
                start, end = _utc(row["window_start"]), _utc(row["window_end"])
                edges = self.windows.setdefault(start, {})
                edges[row["edgeId"]] = Observed(int(row["fixes"]), float(row["mean_kmh"]))
                touched[start] = end
            for start, end in touched.items():
                self.advice[start] = [
                    {"windowStart": start, "windowEnd": end, **a}
                    for a in advise(self.network, self.windows[start], self.pairs)
                ]
            refreshed = [contract.message(a) for start in sorted(touched) for a in self.advice[start]]
            for start in sorted(self.windows)[:-KEPT_WINDOWS]:
                del self.windows[start]
                self.advice.pop(start, None)
        if self.record is not None and refreshed:
            self.record(batch_id, refreshed)
        if self.publish is not None and refreshed:
            self.publish(refreshed)

    def speeds(self) -> dict[str, float]:
        """Mean km/h per edge driven in the latest two windows (the later wins): the roads now, for a live map."""
        with self.lock:
            return {e: o.mean_kmh for start in sorted(self.windows)[-2:] for e, o in self.windows[start].items()}

    def latest(self) -> dict[datetime, list[dict[str, object]]]:
        """Each window's advice as last updated, by window start."""
        with self.lock:
            return dict(self.advice)

    def messages(self) -> list[dict[str, Any]]:
        """The latest advice of every window kept, as ``route_advice`` messages (:mod:`smartcity.advice.contract`),
        in window order."""
        return [contract.message(a) for _, advice in sorted(self.latest().items()) for a in advice]


def _utc(stamp: datetime) -> datetime:
    """A window bound as Spark hands it to Python (naive, in the session's time zone: UTC in the lab), as UTC."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


class LateRows(StreamingQueryListener):
    """Counts the rows Spark dropped for coming behind the watermark, from every progress of one query."""

    def __init__(self, query_name: str) -> None:
        self.query_name, self.dropped = query_name, 0

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        if progress.name == self.query_name:
            self.dropped += sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


@dataclass(frozen=True)
class AdvicePublisher:
    """Sends advice messages to ``topic`` keyed ``origin→destination`` and waits for every acknowledgement."""

    bootstrap: str
    topic: str = contract.ADVICE_TOPIC

    def __call__(self, messages: list[dict[str, Any]]) -> None:
        events = [Event(self.topic, contract.key(m["origin"], m["destination"]), m) for m in messages]
        produce(self.bootstrap, events, backend="confluent-kafka", progress=False)


@dataclass
class AdviceQuery:
    """The running advice query, its advisor and its count of late rows; :meth:`stop` ends it."""

    spark: SparkSession
    query: StreamingQuery
    advisor: Advisor
    late: LateRows

    def stop(self) -> None:
        try:
            self.query.stop()
        finally:
            self.spark.streams.removeListener(self.late)


def start_advice(
    spark: SparkSession,
    bootstrap: str,
    network: RoadNetwork,
    checkpoint: str,
    *,
    window_seconds: int,
    watermark_seconds: int,
    trigger_seconds: float = 1.0,
    topic: str = TELEMETRY,
    advice_topic: str = contract.ADVICE_TOPIC,
    name: str = "route-advice",
    store: LakeStore | None = None,
) -> AdviceQuery:
    """Start the advice query on the telemetry ``topic`` at ``bootstrap`` (its state in ``checkpoint``), its
    advice published to ``advice_topic`` (created if missing, one partition: the messages of a pair in order)
    and, given the lake's ``store``, written to its advice table (:mod:`smartcity.advice.table`)."""
    topics.ensure_topics(bootstrap, [advice_topic], partitions=1)
    record = None if store is None else functools.partial(table.write_batch, store)
    advisor = Advisor(network, corridor_pairs(network), AdvicePublisher(bootstrap, advice_topic), record)
    late = LateRows(name)
    spark.streams.addListener(late)
    windows = edge_windows(fixes(spark, bootstrap, topic), window_seconds, watermark_seconds)
    query = (
        windows.writeStream.queryName(name)
        .outputMode("update")
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=f"{trigger_seconds} seconds")
        .foreachBatch(advisor)
        .start()
    )
    return AdviceQuery(spark, query, advisor, late)


def source(params: AdviceParams) -> str:
    """The query's DataFrame code as Markdown, with the window and watermark a run uses: what 02_stream shows."""
    code = "\n\n".join(inspect.getsource(f) for f in (fixes, edge_windows))
    return (
        f"The advice query reads the telemetry as fixes, then averages each edge's speed over event-time windows "
        f"of **{params.window_seconds} s** with a watermark of **{params.watermark_seconds} s** "
        f"(`advice_window_seconds`, `advice_watermark_seconds`), in output mode `update`; each micro-batch's "
        f"updated windows go to the `Advisor` (`lib/smartcity/advice/query.py`, `start_advice`):\n\n"
        f"```python\n{code}```"
    )
