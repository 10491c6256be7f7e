"""Advice while they drive: a streaming query beside the lake's that knows the roads now.

Read it top to bottom, it is the whole query:

1. :func:`fixes`: the telemetry topic's messages, parsed (event time, edge, speed). Contract v2 names
   the edge a fix is on; v1 fixes have no edge id and are left out here (map-matching them is the
   batch model's work, in 06), as are messages that do not parse (the lake's query quarantines them).
   Beside it, :func:`reports` reads the incident and weather reports into what the advisor knows now
   (:class:`smartcity.advice.now.Context`: the incidents active, each station's latest rain).
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
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from smartcity.advice import contract, table
from smartcity.advice.now import Context, Observed, advise, corridor_pairs
from smartcity.advice.params import AdviceParams
from smartcity.fleet.contracts import Event
from smartcity.fleet.roads import RoadNetwork
from smartcity.ingest.producer import produce
from smartcity.platform import topics
from smartcity.stream.query import kafka_options
from smartcity.stream.store import LakeStore

#: The telemetry topic the advice reads: its fixes name the edge they are on (contract v2).
TELEMETRY = "vehicle_data"
#: What else it reads: incident reports (Active, then Resolved) and the weather stations' reports.
INCIDENTS, WEATHER = "emergency_data", "weather_data"
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


#: What the context query reads of an incident or weather report.
REPORT_SCHEMA = StructType(
    [
        StructField("timestamp", StringType()),
        StructField("deviceId", StringType()),
        StructField("latitude", DoubleType()),
        StructField("longitude", DoubleType()),
        StructField("incidentId", StringType()),
        StructField("status", StringType()),
        StructField("precipitation", DoubleType()),
    ]
)


def reports(spark: SparkSession, bootstrap: str, topics: Sequence[str] = (INCIDENTS, WEATHER)) -> DataFrame:
    """Incident and weather reports as they arrive (no window: each updates what is known now)."""
    raw = kafka_options(spark.readStream, bootstrap, list(topics)).load()
    report = F.from_json(F.col("value").cast("string"), REPORT_SCHEMA)
    return (
        raw.select(report.alias("r"))
        .select("r.*")
        .where(F.col("latitude").isNotNull() & F.col("longitude").isNotNull() & F.col("timestamp").isNotNull())
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
    context: Context = field(default_factory=Context)  # the incidents active and each station's latest report
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
                    for a in advise(self.network, self.windows[start], self.pairs, self.context)
                ]
            refreshed = [contract.message(a) for start in sorted(touched) for a in self.advice[start]]
            for start in sorted(self.windows)[:-KEPT_WINDOWS]:
                del self.windows[start]
                self.advice.pop(start, None)
        if self.record is not None and refreshed:
            self.record(batch_id, refreshed)
        if self.publish is not None and refreshed:
            self.publish(refreshed)

    def note(self, batch: DataFrame, batch_id: int) -> None:
        """The context query's ``foreachBatch``: incidents opened and resolved, stations' latest reports."""
        incidents, stations = dict(self.context.incidents), dict(self.context.stations)
        for row in sorted(batch.collect(), key=lambda r: r["timestamp"]):
            where = (float(row["latitude"]), float(row["longitude"]))
            if row["incidentId"] is not None and row["status"] == "Active":
                incidents[row["incidentId"]] = where
            elif row["incidentId"] is not None:
                incidents.pop(row["incidentId"], None)
            elif row["precipitation"] is not None:
                stations[row["deviceId"]] = (where, float(row["precipitation"]))
        with self.lock:
            self.context = Context(incidents, stations)

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
    """Counts the rows Spark dropped for coming behind the watermark, from every progress of one query; with
    ``on_batch``, hands on each batch's Kafka offsets too (what the advice freshness benchmark reads)."""

    def __init__(self, query_name: str, on_batch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.query_name, self.dropped, self.on_batch = query_name, 0, on_batch

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        if progress.name == self.query_name:
            self.dropped += sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)
            if self.on_batch is not None and progress.sources and progress.numInputRows:
                source = progress.sources[0]
                self.on_batch(
                    {
                        "batch": progress.batchId,
                        "rows": progress.numInputRows,
                        "start": _offsets(source.startOffset),
                        "end": _offsets(source.endOffset),
                    }
                )

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


def _offsets(offsets: Any) -> dict[str, dict[str, int]]:
    """A Kafka source's offsets as a progress reports them (JSON text or a dict): topic -> partition -> offset."""
    parsed = json.loads(offsets) if isinstance(offsets, str) else offsets
    return dict(parsed or {})


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
    context: StreamingQuery  # the incidents and weather reports (Advisor.note)
    context_checkpoint: str

    def stop(self) -> None:
        try:
            self.query.stop()
            self.context.stop()
        finally:
            self.spark.streams.removeListener(self.late)
            shutil.rmtree(self.context_checkpoint, ignore_errors=True)


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
    context_topics: Sequence[str] = (INCIDENTS, WEATHER),
    store: LakeStore | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> AdviceQuery:
    """Start the advice query on the telemetry ``topic`` at ``bootstrap`` (its state in ``checkpoint``), its
    advice published to ``advice_topic`` (created if missing, one partition: the messages of a pair in order)
    and, given the lake's ``store``, written to its advice table (:mod:`smartcity.advice.table`); ``on_batch``
    gets each batch's Kafka offsets (:class:`LateRows`). A second, stateless query reads ``context_topics``
    (incidents, weather) from their start into the advisor, its checkpoint a scratch folder: what is known
    now is rebuilt from the topics on every start."""
    topics.ensure_topics(bootstrap, [advice_topic], partitions=1)
    record = None if store is None else functools.partial(table.write_batch, store)
    advisor = Advisor(network, corridor_pairs(network), AdvicePublisher(bootstrap, advice_topic), record)
    late = LateRows(name, on_batch)
    spark.streams.addListener(late)
    every = {"processingTime": f"{trigger_seconds} seconds"}
    windows = edge_windows(fixes(spark, bootstrap, topic), window_seconds, watermark_seconds)
    query = _start_into(windows, name, checkpoint, advisor, every)
    scratch = tempfile.mkdtemp(prefix="smartcity-advice-context-")
    context = _start_into(reports(spark, bootstrap, context_topics), f"{name}-context", scratch, advisor.note, every)
    return AdviceQuery(spark, query, advisor, late, context, scratch)


def _start_into(
    frame: DataFrame, name: str, checkpoint: str, sink: Callable[[DataFrame, int], None], trigger: dict[str, Any]
) -> StreamingQuery:
    """Start ``frame`` as the query ``name``: each micro-batch's new or updated rows to ``sink`` (``foreachBatch``),
    its progress in ``checkpoint``, on ``trigger`` (``processingTime`` or ``availableNow``)."""
    writer = frame.writeStream.queryName(name).outputMode("update").option("checkpointLocation", checkpoint)
    return writer.trigger(**trigger).foreachBatch(sink).start()


def run_available(
    spark: SparkSession, bootstrap: str, network: RoadNetwork, window_seconds: int, watermark_seconds: int
) -> Advisor:
    """The advice query once over what the topics hold now (Spark's ``availableNow`` trigger), publishing
    nothing: what 02_stream runs in its cells. The incident and weather reports go first, so the advice knows
    the incidents active and the rain at the end of the topics; then the telemetry's windows, batch by batch,
    as the live run's query reads them. Its state lives in a scratch folder, deleted after."""
    advisor = Advisor(network, corridor_pairs(network))
    scratch = tempfile.mkdtemp(prefix="smartcity-advice-run-")
    windows = edge_windows(fixes(spark, bootstrap), window_seconds, watermark_seconds)
    try:
        for name, frame, sink in (("context", reports(spark, bootstrap), advisor.note), ("windows", windows, advisor)):
            query = _start_into(frame, f"route-advice-{name}-once", f"{scratch}/{name}", sink, {"availableNow": True})
            try:
                query.awaitTermination()
            finally:
                query.stop()  # already ended, unless interrupted (Ctrl-C in the notebook)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return advisor


#: The columns of :func:`advice_table`, from the ``route_advice`` messages.
ADVICE_COLUMNS = {
    "windowStart": "window",
    "pair": "from → to",
    "route": "advised route",
    "minutes": "expected min",
    "edgesObserved": "edges driven",
    "fixes": "fixes",
}


def advice_table(advisor: Advisor) -> pd.DataFrame:
    """Each window's latest advice, in window and pair order: when, which route, how long it expects."""
    frame = pd.DataFrame(advisor.messages(), columns=[f.name for f in contract.ADVICE_FIELDS])
    frame["pair"] = [contract.key(o, d) for o, d in zip(frame["origin"], frame["destination"], strict=True)]
    frame["minutes"] = frame["minutes"].round(1)
    return frame[list(ADVICE_COLUMNS)].rename(columns=ADVICE_COLUMNS)


def source(params: AdviceParams) -> str:
    """The query's DataFrame code as Markdown, with the window and watermark a run uses: what 02_stream shows
    (its stored output holds this code: after changing it, `make notebooks`, or nbval fails on 02)."""
    code = "\n\n".join(inspect.getsource(f) for f in (fixes, edge_windows, reports))
    return (
        f"The advice query reads the telemetry as fixes, then averages each edge's speed over event-time windows "
        f"of **{params.window_seconds} s** with a watermark of **{params.watermark_seconds} s** "
        f"(`advice_window_seconds`, `advice_watermark_seconds`), in output mode `update`; each micro-batch's "
        f"updated windows go to the `Advisor` (`lib/smartcity/advice/query.py`, `start_advice`). A second query "
        f"reads the incident and weather reports: which incidents are active, where it rains now.\n\n"
        f"```python\n{code}```"
    )
