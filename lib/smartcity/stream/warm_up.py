"""The stream's warm-up: its whole path run on simulated messages before the real stream starts.

A cold JVM runs the stream's code slowly until it is compiled (the first micro-batches of a cold
stream took 20 s for 500 messages here, while the live fleet's events piled up). The warm-up puts
the profile's own simulated events into scratch topics of the profile's broker and reads them back
through the same Kafka source, contract check, routing and writer; nothing reaches the lake.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.params import FleetParams
from smartcity.fleet.simulation import FleetSimulation
from smartcity.ingest.producer import produce
from smartcity.platform import topics
from smartcity.platform.engine_params import KafkaParams
from smartcity.stream import query

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Scratch topics the warm-up reads from ('warmup-vehicle_data', ...), on the profile's own broker.
PREFIX = "warmup-"
#: Simulated messages put through the stream's path, and how many times they are read back.
EVENTS = 300_000
ROUNDS = 5


def warm_up_stream(
    session: SparkSession,
    kafka: KafkaParams,
    fleet: FleetParams,
    scratch_dir: Path,
    events: int = EVENTS,
    rounds: int = ROUNDS,
) -> None:
    """``events`` of the fleet into ``warmup-<topic>`` topics (emptied afterwards), read back by Spark's
    Kafka source, routed and written ``rounds`` times under ``scratch_dir`` (see :func:`query.warm_up`)."""
    scratch = [PREFIX + t for t in TOPICS]
    topics.ensure_topics(
        kafka.bootstrap, scratch, partitions=kafka.partitions, replication=kafka.replication, empty=True
    )
    sample = (Event(PREFIX + e.topic, e.key, e.value) for e in islice(FleetSimulation(fleet).events(), events))
    produce(kafka.bootstrap, sample, backend=kafka.producer_backend, total=events, progress=False)
    try:
        query.warm_up(session, kafka.bootstrap, scratch, scratch_dir, PREFIX, rounds)
    finally:
        topics.truncate_topics(kafka.bootstrap, scratch)
