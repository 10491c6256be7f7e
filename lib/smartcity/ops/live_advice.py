"""The live run's advice: the advice query beside the lake's, the fleet's advised share reading its topic,
the trips compared as they end, and the live map served on 127.0.0.1 (:mod:`smartcity.ops.live` runs it)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartcity import steps
from smartcity.advice import latest as advice_latest
from smartcity.advice import now as advice_now
from smartcity.advice import query as advice_query
from smartcity.advice.trips import TripBoard, format_trips
from smartcity.fleet.following import UNADVISED, Following, Trip
from smartcity.fleet.params import FleetParams
from smartcity.fleet.roads import load_network
from smartcity.fleet.simulation import FleetSimulation
from smartcity.present import live_map
from smartcity.stream import lake, monitor

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The advice query's checkpoint, beside the lake query's (a reset clears both).
ADVICE_CHECKPOINT = "route-advice"
#: Each trip of the live run as it ends (:class:`smartcity.fleet.following.Trip`), in the run's folder.
TRIPS_FILE = "trips.jsonl"
#: Each micro-batch of the advice query: its id and the telemetry's Kafka offsets it read, in the run's folder.
ADVICE_BATCHES_FILE = "advice_batches.jsonl"


@dataclass
class LiveAdvice:
    """The query, what vehicles read of its topic, the trips as they end, and the live map's state."""

    query: advice_query.AdviceQuery
    latest: advice_latest.LatestAdvice
    trip_log: Any
    trips: TripBoard = field(default_factory=TripBoard)
    following: Following | None = None
    map_url: str = ""

    def __post_init__(self) -> None:
        self.map = live_map.MapState(load_network(), self.query.advisor.speeds, self._advice, self._trips, self._group)

    def simulation(self, fleet: FleetParams) -> FleetSimulation:
        """The live fleet: on a network where every advisable route is drivable, its advised share following."""
        network, names = advice_now.advisable(load_network())

        def lookup(origin: str, destination: str) -> tuple[str, str] | None:
            found = self.latest.path(origin, destination)
            return None if found is None or found[0] not in names else (names[found[0]], found[1])

        self.following = Following(fleet.advised_share, lookup, self.on_trip)
        return FleetSimulation(fleet, network=network, following=self.following, on_tick=self.map.on_tick)

    def on_trip(self, trip: Trip) -> None:
        self.trips.add(trip)
        monitor.RunLogs.write(self.trip_log, trip.as_dict())

    def _advice(self) -> list[dict[str, Any]]:
        return [m for m in (self.latest.get(o, d) for o, d in advice_now.corridor_pairs(load_network())) if m]

    def _trips(self) -> str:
        return format_trips(self.trips.compare())

    def _group(self, device: str) -> str:
        """A vehicle's group (from the fleet's thread, which keeps the groups)."""
        return self.following.under_way.get(device, (UNADVISED,))[0] if self.following else UNADVISED

    def lag(self, ends: dict[tuple[str, int], int], starts: dict[tuple[str, int], int]) -> int:
        """Telemetry in Kafka (up to ``ends``) the advice query has not finished a batch of."""
        return sum(monitor.lag(ends, self.query.query, starts, [advice_query.TELEMETRY]).values())

    def figures(self) -> dict[str, Any]:
        """The advice's part of a status sample: trips compared, advice messages read, fixes come too late."""
        return {
            "trips": self.trips.compare(),
            "advice_read": self.latest.read,
            "advice_late": self.query.late.dropped,
            "map": self.map_url,
        }

    def failure(self) -> str | None:
        if self.query.query.exception() is not None:
            return f"the advice query failed: {self.query.query.exception()}"
        return None if self.latest.error is None else f"reading route_advice failed: {self.latest.error}"


class NoAdvice:
    """A live run with ``advice_enabled: false``: the lake's stream alone, the fleet on its route mix, no map."""

    map_url = ""

    def simulation(self, fleet: FleetParams) -> FleetSimulation:
        return FleetSimulation(fleet)

    def lag(self, ends: dict[tuple[str, int], int], starts: dict[tuple[str, int], int]) -> int:
        return 0

    def figures(self) -> dict[str, Any]:
        return {}

    def failure(self) -> str | None:
        return None


def start(stack: ExitStack, lab: steps.Lab, spark: SparkSession, bootstrap: str) -> LiveAdvice | NoAdvice:
    """The advice query beside the lake's (its state in the checkpoints a reset clears), and a reader of its topic."""
    cfg = lab.cfg
    if not cfg.advice.enabled:
        return NoAdvice()
    batch_log = stack.enter_context(open(cfg.paths.live / ADVICE_BATCHES_FILE, "w"))  # noqa: SIM115 - closed by the stack
    started = advice_query.start_advice(
        spark,
        bootstrap,
        load_network(),
        lab.store.spark_uri(f"{lake.CHECKPOINTS}/{ADVICE_CHECKPOINT}"),
        window_seconds=cfg.advice.window_seconds,
        watermark_seconds=cfg.advice.watermark_seconds,
        trigger_seconds=cfg.stream.trigger_seconds,
        store=lab.store,
        on_batch=lambda batch: None if batch_log.closed else monitor.RunLogs.write(batch_log, batch),
    )
    stack.callback(started.stop)
    latest = stack.enter_context(advice_latest.LatestAdvice(bootstrap))
    trip_log = stack.enter_context(open(cfg.paths.live / TRIPS_FILE, "w"))  # noqa: SIM115 - closed by the stack
    advice = LiveAdvice(started, latest, trip_log)
    advice.map_url = stack.enter_context(live_map.serve(advice.map, cfg.pipeline.live_map_port))
    print(f"live map: {advice.map_url}", file=sys.stderr, flush=True)
    return advice
