"""Live mode: the fleet drives while Spark streams, and the lab shows how fresh the lake is.

``smartcity live`` (``make live``) runs, in one process that owns them all: this profile's Kafka
broker (reused if it is already running), the stream as a continuous query with a micro-batch
every ``stream_trigger_seconds``, and the open-ended fleet producing in simulated time paced by
``speedup``. Every second it takes a status sample (:mod:`smartcity.stream.monitor`): per topic
the events per second produced and written to the lake, the Kafka lag, the freshness p50 and p95
of what was published lately, and the quarantined count. Samples are printed as a table and
appended to ``outputs/<profile>/live/status.jsonl``; every micro-batch goes to ``batches.jsonl``.

The run ends after ``live_seconds`` (0: until Ctrl-C or SIGTERM): the producer stops, the stream
drains until the lag is 0, and everything stops, leaving nothing running. The counts of what was
produced and what the lake holds are recorded for the report's reconciliation.

Notebooks in live mode start this as a background process (:func:`smartcity.steps.start_live`).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smartcity import steps
from smartcity.advice.trips import format_trips
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.params import FleetParams
from smartcity.ingest.producer import ProduceError, ProduceReport, produce
from smartcity.ops import live_advice
from smartcity.params import Params
from smartcity.platform import topics
from smartcity.platform.processes import EngineError
from smartcity.stream import lake, monitor, query, warm_up

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: A status sample every this many seconds.
SAMPLE_EVERY_S = 1.0


def until(stop: threading.Event, events: Iterable[Event]) -> Iterator[Event]:
    """The events until ``stop`` is set: how the live producer is told to finish."""
    for event in events:
        if stop.is_set():
            return
        yield event


class _Console:
    """Redraws the status table in place on a terminal; prints one line per sample elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stdout.isatty()
        self.height = 0

    def show(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.tty:
            text = monitor.format_sample(row)
            if "trips" in row:
                text += "\n" + format_trips(row["trips"])
            sys.stdout.write(("\x1b[F" * self.height) + "\x1b[J" + text + "\n")
            self.height = text.count("\n") + 1
        else:
            print(
                f"{row['elapsed_s']:.0f} s {row['phase']}: produced {row['produced_per_s']:,.0f}/s, written "
                f"{row['written_per_s']:,.0f}/s, lag {row['lag']:,}, freshness p50 {row['freshness_p50_s']} s, "
                f"p95 {row['freshness_p95_s']} s, quarantined {row['quarantined']}"
                + (f"; {format_trips(row['trips'])}" if "trips" in row else "")
            )
        sys.stdout.flush()


class FleetProducer:
    """The producer thread: the fleet's events, paced, until told to stop (then it flushes and ends)."""

    def __init__(self, fleet: FleetParams, bootstrap: str, backend: str, events: Iterable[Event]) -> None:
        self.stop_event = threading.Event()
        self.counts = ProduceReport()
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run,
            name="live-producer",
            daemon=True,
            args=(bootstrap, backend, fleet.speedup, until(self.stop_event, events)),
        )

    def _run(self, bootstrap: str, backend: str, speedup: float, events: Iterable[Event]) -> None:
        try:
            produce(bootstrap, events, backend=backend, speedup=speedup, progress=False, report=self.counts)
        except (ProduceError, EngineError) as exc:
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)


@dataclass
class _Phase:
    """Producing until the duration is up (or a stop), then draining until the lag is 0."""

    name: str = "producing"
    drain_deadline: float = float("inf")


def _watch(
    cfg: Params,
    running: query.LakeStream,
    fleet: FleetProducer,
    board: monitor.StatusBoard,
    logs: monitor.RunLogs,
    admin: Any,
    seconds: float,
    console: bool,
    advice: live_advice.LiveAdvice | live_advice.NoAdvice,
) -> None:
    """Sample every second until the fleet has stopped and the stream has drained what it produced."""
    view = _Console(console)
    starts = topics.partition_offsets(admin, board.topics, earliest=True)
    deadline = time.monotonic() + seconds if seconds else float("inf")
    phase = _Phase()
    while True:
        time.sleep(max(0.0, SAMPLE_EVERY_S - (time.time() - board.started) % SAMPLE_EVERY_S))
        problem = running.failure() or advice.failure()
        if problem:
            raise query.StreamError(f"the live stream failed: {problem}")
        if phase.name == "producing" and (
            fleet.stop_event.is_set() or time.monotonic() >= deadline or not fleet.thread.is_alive()
        ):
            fleet.stop(cfg.stream.timeout_seconds)
            phase = _Phase("draining", time.monotonic() + cfg.stream.timeout_seconds)
        ends = topics.partition_offsets(admin, board.topics)  # one round of admin calls for both queries' lag
        lag = monitor.lag(ends, running.query, starts, board.topics)
        advice_lag = advice.lag(ends, starts)
        row = {**board.sample(fleet.counts.acked, lag, phase.name), **advice.figures(), "advice_lag": advice_lag}
        logs.write(logs.status, row)
        view.show(row)
        # drained: the lake has every event, and the advice query has read every fix (its batch done, its advice out)
        if phase.name == "draining" and sum(lag.values()) == 0 and advice_lag == 0 and running.published():
            return
        if time.monotonic() > phase.drain_deadline:
            raise query.StreamError(
                f"the stream did not drain within stream_timeout_seconds={cfg.stream.timeout_seconds}"
            )


def run_live(
    cfg: Params, seconds: float | None = None, *, console: bool = True, events: Iterable[Event] | None = None
) -> dict[str, Any]:
    """Broker, stream and fleet together until ``seconds`` (default ``live_seconds``; 0: until stopped).

    Ctrl-C or SIGTERM end the run the same way as the duration: producer stopped, stream
    drained, everything stopped (in that order, also on error). Returns the summary also written
    to ``summary.json``.
    """
    seconds = cfg.pipeline.live_seconds if seconds is None else seconds
    out = cfg.paths.live
    board = monitor.StatusBoard()
    lab = steps.open_lab(cfg)
    with ExitStack() as stack:
        broker = stack.enter_context(steps.open_broker(cfg))
        stack.enter_context(lake.writer_lock(cfg.paths.data))
        steps.reset_run(lab)
        logs = monitor.RunLogs(out)
        stack.callback(logs.close)

        def on_batch(done: dict[str, Any]) -> None:
            board.add_batch(done)
            logs.write(logs.batches, monitor.batch_line(done))

        spark = stack.enter_context(steps.spark(cfg))
        _warm_up(spark, cfg)
        running = stack.enter_context(
            query.start_stream(spark, steps.stream_job(lab), available_now=False, on_batch=on_batch)
        )
        advice = live_advice.start(stack, lab, spark, broker.bootstrap)
        admin = topics.admin_client(broker.bootstrap)
        stack.callback(admin.close)
        fleet = FleetProducer(
            cfg.fleet,
            broker.bootstrap,
            cfg.kafka.producer_backend,
            events if events is not None else advice.simulation(cfg.fleet).events(),
        )
        stack.callback(fleet.stop)
        stack.enter_context(_stop_on_signals(fleet.stop_event))
        board.started = time.time()  # the run's clock starts with the fleet, after engines and warm-up
        fleet.start()
        _watch(cfg, running, fleet, board, logs, admin, seconds, console, advice)
        if fleet.error is not None:
            raise fleet.error
    return _record(lab, fleet.counts, advice)


def _warm_up(spark: SparkSession, cfg: Params) -> None:
    """The stream's warm-up before the fleet starts: ``stream_warm_up_events`` messages (none if 0)."""
    events = cfg.stream.warm_up_events
    if not events:
        print("no warm-up (stream_warm_up_events: 0): the first micro-batches will be slow", file=sys.stderr)
        return
    print(
        f"warming the stream up on {events:,} simulated messages through scratch topics (nothing reaches the lake)...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    warm_up.warm_up_stream(spark, cfg.kafka, cfg.fleet, cfg.paths.data, events)
    print(f"warmed up in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def _record(
    lab: steps.Lab, counts: ProduceReport, advice: live_advice.LiveAdvice | live_advice.NoAdvice
) -> dict[str, Any]:
    """The run's counts into the ledger, and its summary into summary.json."""
    in_lake = query.lake_counts(lab.store, lake.TABLES)
    lab.ledger.record("produced", counts.acked)
    lab.ledger.record("lake", {t: in_lake[t] for t in TOPICS})
    summary = monitor.summarize_run(lab.cfg.paths.live)
    summary.update(produced=dict(counts.acked), in_lake=in_lake, **advice.figures())
    (lab.cfg.paths.live / monitor.SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM end a live run as the duration does: stop producing, drain, stop.

    A second Ctrl-C interrupts at once (what Spark handed over is still published). Only the main
    thread can take signals; elsewhere the caller stops the run through ``stop``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            print("\nstopping: the producer stops, the stream drains (Ctrl-C again to stop at once)", file=sys.stderr)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def record_exit(cfg: Params, error: BaseException | None) -> None:
    """What the CLI leaves for the notebook that started the run: ok, or the error that ended it."""
    text = None if error is None else (query.describe(error) or type(error).__name__)
    steps.live_process(cfg).record_exit(text)
