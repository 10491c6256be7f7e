"""Live mode: the fleet drives while Spark streams, and the lab shows how fresh the lake is.

``smartcity live`` (``make live``) runs, in one process that owns them all: this profile's Kafka
broker (reused if it is already running), the stream as a continuous query with a micro-batch
every ``stream_trigger_seconds``, and the open-ended fleet producing in simulated time paced by
``speedup``. Every second it takes a status sample: per topic the events per second produced and
written to the lake, the Kafka lag (end offsets minus the stream's progress), the freshness p50
and p95 of what was published lately (an event's Kafka timestamp, set when the producer sent it,
to the moment its file was moved into the table folder, where any reader's glob sees it), and the
quarantined count. Samples are printed as a table and appended to
``outputs/<profile>/live/status.jsonl``; every micro-batch goes to ``batches.jsonl``.

The run ends after ``live_seconds`` (0: until Ctrl-C or SIGTERM): the producer stops, the stream
drains until the lag is 0, and everything stops, leaving nothing running. The counts of what was
produced and what the lake holds are recorded for the report's reconciliation.

Notebooks in live mode start this as a background process (:func:`start_background`) and read its
JSON Lines (:func:`read_status`); :func:`stop_background` ends it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from smartcity import kafka, lake, report, simulate, stream
from smartcity.config import TOPICS, Params, display_path, project_root
from smartcity.contracts import Event
from smartcity.engines import EngineError
from smartcity.producer import ProduceError, ProduceReport, produce

STATUS_FILE = "status.jsonl"
BATCHES_FILE = "batches.jsonl"
#: Freshness is reported over the batches published in this many seconds before each sample.
FRESHNESS_WINDOW_S = 5.0


def live_dir(cfg: Params) -> Path:
    """Where the live run's figures go: outputs/<profile>/live/."""
    return cfg.output_path / "live"


def state_path(cfg: Params) -> Path:
    return cfg.data_path / "live" / "state.json"


# -- figures ---------------------------------------------------------------------------------------
def freshness_percentiles(batches: Sequence[dict[str, Any]], quantiles: Sequence[float] = (0.5, 0.95)
                          ) -> list[float | None]:
    """Percentiles of (published - produced) over the events of some batches, in seconds.

    Each batch records 21 quantiles of its events' Kafka timestamps; its events are spread
    between them, so the batches together give a weighted sample of every event's freshness
    (to within a twentieth of each batch).
    """
    ages: list[tuple[float, float]] = []
    for batch in batches:
        stamps = batch.get("metrics", {}).get("produced_quantiles") or []
        count = batch.get("metrics", {}).get("messages", 0)
        if len(stamps) < 2 or not count:
            continue
        last = len(stamps) - 1
        for i, stamp in enumerate(stamps):
            ages.append((batch["published_at"] - stamp, count / last * (0.5 if i in (0, last) else 1.0)))
    if not ages:
        return [None for _ in quantiles]
    ages.sort()
    total = sum(w for _, w in ages)
    results: list[float | None] = []
    for q in quantiles:
        target, seen = q * total, 0.0
        for age, weight in ages:
            seen += weight
            if seen >= target:
                results.append(round(age, 3))
                break
        else:
            results.append(round(ages[-1][0], 3))
    return results


def processed_offsets(query: Any) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset the stream will read, from its last progress report."""
    progress = query.lastProgress
    if not progress or not progress.sources:
        return {}
    end = progress.sources[0].endOffset
    offsets = json.loads(end) if isinstance(end, str) else end
    return {(topic, int(p)): int(o) for topic, parts in (offsets or {}).items() for p, o in parts.items()}


@dataclass
class StatusBoard:
    """Cumulative counts since the run began, and the sample of each second."""

    topics: tuple[str, ...] = TOPICS
    started: float = field(default_factory=time.time)
    batches: list[dict[str, Any]] = field(default_factory=list)
    written: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    _last: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_batch(self, done: dict[str, Any]) -> None:
        """Called by the stream after each published batch (from Spark's callback thread)."""
        with self._lock:
            self.batches.append(done)
            self.batches = self.batches[-500:]
            for table, rows in done["rows"].items():
                if table == lake.QUARANTINE:
                    self.quarantined += rows
                else:
                    self.written[table] += rows

    def sample(self, produced: Counter[str], lag: dict[str, int], phase: str) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            recent = [b for b in self.batches if b["published_at"] >= now - FRESHNESS_WINDOW_S] or self.batches[-1:]
            written = Counter(self.written)
            quarantined = self.quarantined
        p50, p95 = freshness_percentiles(recent)
        last = self._last or {"at": self.started, "produced": Counter(), "written": Counter()}
        span = max(now - last["at"], 1e-6)
        topics = {
            t: {"produced": produced[t], "written": written[t], "lag": lag.get(t, 0),
                "produced_per_s": round((produced[t] - last["produced"][t]) / span, 1),
                "written_per_s": round((written[t] - last["written"][t]) / span, 1)}
            for t in self.topics
        }
        self._last = {"at": now, "produced": Counter(produced), "written": written}
        return {
            "time": round(now, 3), "elapsed_s": round(now - self.started, 1), "phase": phase, "topics": topics,
            "produced_per_s": round(sum(v["produced_per_s"] for v in topics.values()), 1),
            "written_per_s": round(sum(v["written_per_s"] for v in topics.values()), 1),
            "lag": sum(v["lag"] for v in topics.values()), "freshness_p50_s": p50, "freshness_p95_s": p95,
            "quarantined": quarantined, "batches": len(self.batches),
        }


def format_sample(row: dict[str, Any]) -> str:
    """The status table of one sample, as the terminal shows it."""
    lines = [f"live  {row['elapsed_s']:>7.1f} s  {row['phase']:<10} freshness p50 "
             f"{_seconds(row['freshness_p50_s'])}  p95 {_seconds(row['freshness_p95_s'])}  "
             f"quarantined {row['quarantined']:,}",
             f"{'topic':<16}{'produced/s':>12}{'written/s':>12}{'lag':>10}{'produced':>12}{'in lake':>12}"]
    for topic, v in row["topics"].items():
        lines.append(f"{topic:<16}{v['produced_per_s']:>12,.0f}{v['written_per_s']:>12,.0f}{v['lag']:>10,}"
                     f"{v['produced']:>12,}{v['written']:>12,}")
    lines.append(f"{'all':<16}{row['produced_per_s']:>12,.0f}{row['written_per_s']:>12,.0f}{row['lag']:>10,}")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "   -  " if value is None else f"{value:5.2f}s"


# -- the run ---------------------------------------------------------------------------------------
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
            text = format_sample(row)
            sys.stdout.write(("\x1b[F" * self.height) + "\x1b[J" + text + "\n")
            self.height = text.count("\n") + 1
        else:
            print(f"{row['elapsed_s']:.0f} s {row['phase']}: produced {row['produced_per_s']:,.0f}/s, written "
                  f"{row['written_per_s']:,.0f}/s, lag {row['lag']:,}, freshness p50 {row['freshness_p50_s']} s, "
                  f"p95 {row['freshness_p95_s']} s, quarantined {row['quarantined']}")
        sys.stdout.flush()


def run_live(cfg: Params, seconds: float | None = None, *, console: bool = True,
             events: Iterable[Event] | None = None) -> dict[str, Any]:
    """Broker, stream and fleet together until ``seconds`` (default ``live_seconds``; 0: until stopped).

    Ctrl-C or SIGTERM end the run the same way as the duration: producer stopped, stream
    drained, everything stopped. Returns the summary also written to ``summary.json``.
    """
    from smartcity.spark import spark_session

    seconds = cfg.live_seconds if seconds is None else seconds
    out = live_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    previous = _on_sigterm(stopping.set)
    board = StatusBoard()
    produced = ProduceReport()
    view = _Console(console)
    try:
        with kafka.ensure_broker(cfg) as broker, lake.writer_lock(cfg):
            simulate.prepare_run(cfg)
            for name in (STATUS_FILE, BATCHES_FILE):
                (out / name).unlink(missing_ok=True)
            batches_log = open(out / BATCHES_FILE, "a")  # noqa: SIM115 - closed below
            status_log = open(out / STATUS_FILE, "a")  # noqa: SIM115 - closed below

            def on_batch(done: dict[str, Any]) -> None:
                board.add_batch(done)
                batches_log.write(json.dumps(_batch_line(done)) + "\n")
                batches_log.flush()

            with spark_session(cfg) as spark:
                query = stream.start_stream(spark, cfg, available_now=False, on_batch=on_batch)
                fleet = events if events is not None else simulate.FleetSimulation(cfg).events()
                producer_error: list[BaseException] = []
                producer = threading.Thread(
                    target=_produce, name="live-producer", daemon=True,
                    args=(broker.bootstrap, until(stopping, fleet), cfg, produced, producer_error))
                admin = kafka.admin_client(broker.bootstrap)
                starts = kafka.partition_offsets(admin, board.topics, earliest=True)
                try:
                    producer.start()
                    deadline = time.monotonic() + seconds if seconds else float("inf")
                    phase = "producing"
                    drain_deadline = float("inf")
                    while True:
                        time.sleep(max(0.0, 1.0 - (time.time() - board.started) % 1.0))
                        if query.exception() is not None:
                            raise stream.StreamError(f"the live stream failed: {query.exception()}")
                        if phase == "producing" and (stopping.is_set() or time.monotonic() >= deadline
                                                     or not producer.is_alive()):
                            stopping.set()
                            producer.join(cfg.stream_timeout_seconds)
                            phase, drain_deadline = "draining", time.monotonic() + cfg.stream_timeout_seconds
                        lag = _lag(admin, query, starts, board.topics)
                        row = board.sample(produced.acked, lag, phase)
                        status_log.write(json.dumps(row) + "\n")
                        status_log.flush()
                        view.show(row)
                        if phase == "draining" and sum(lag.values()) == 0:
                            break
                        if time.monotonic() > drain_deadline:
                            raise stream.StreamError(
                                f"the stream did not drain within stream_timeout_seconds={cfg.stream_timeout_seconds}")
                finally:
                    stopping.set()
                    admin.close()
                    stream.stop_stream(query)
                    producer.join(30)
                    batches_log.close()
                    status_log.close()
                if producer_error:
                    raise producer_error[0]
    finally:
        signal.signal(signal.SIGTERM, previous)
    in_lake = stream.lake_counts(cfg, TOPICS)
    report.record_counts(cfg, "produced", produced.acked)
    report.record_counts(cfg, "lake", in_lake)
    summary = summarize_run(cfg)
    summary.update(produced=dict(produced.acked), in_lake=in_lake)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _produce(bootstrap: str, events: Iterable[Event], cfg: Params, counts: ProduceReport,
             errors: list[BaseException]) -> None:
    try:
        produce(bootstrap, events, backend=cfg.producer_backend, speedup=cfg.speedup, progress=False, report=counts)
    except (ProduceError, EngineError) as exc:
        errors.append(exc)


def _lag(admin: Any, query: Any, starts: dict[tuple[str, int], int], topics: Sequence[str]) -> dict[str, int]:
    """Per topic: messages in Kafka the stream has not published yet (its progress is reported after
    foreachBatch returns, so what it reports as read is in the lake)."""
    ends = kafka.partition_offsets(admin, topics)
    done = processed_offsets(query)
    lag: Counter[str] = Counter({t: 0 for t in topics})
    for part, end in ends.items():
        lag[part[0]] += max(0, end - max(done.get(part, 0), starts.get(part, 0)))
    return dict(lag)


def _batch_line(done: dict[str, Any]) -> dict[str, Any]:
    metrics = done.get("metrics", {})
    p50, p95 = freshness_percentiles([done])
    return {"batch": done["batch"], "published_at": round(done["published_at"], 3), "rows": done["rows"],
            "messages": metrics.get("messages", 0), "quarantined": metrics.get("quarantined", 0),
            "parse_seconds": round(metrics.get("parse_seconds", 0.0), 3),
            "write_seconds": round(metrics.get("write_seconds", 0.0), 3),
            "freshness_p50_s": p50, "freshness_p95_s": p95,
            "produced_quantiles": metrics.get("produced_quantiles", [])}


def _on_sigterm(handler: Any) -> Any:
    """SIGTERM ends a live run like Ctrl-C does, cleanly (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signal.SIGTERM)
    return signal.signal(signal.SIGTERM, lambda _signum, _frame: handler())


def summarize_run(cfg: Params) -> dict[str, Any]:
    """Figures of the whole run from its JSON Lines: rates, lag and freshness."""
    status = read_status(cfg)
    batches = read_batches(cfg)
    if status.empty:
        return {"samples": 0}
    producing = status[status["phase"] == "producing"]
    p50, p95 = freshness_percentiles([{"published_at": b["published_at"], "metrics": {
        "messages": b["messages"], "produced_quantiles": b["produced_quantiles"]}} for b in batches])
    return {
        "samples": len(status), "seconds": float(status["elapsed_s"].iloc[-1]),
        "produced_per_s_mean": round(float(producing["produced_per_s"].mean()), 1) if len(producing) else 0.0,
        "written_per_s_mean": round(float(producing["written_per_s"].mean()), 1) if len(producing) else 0.0,
        "max_lag": int(status["lag"].max()), "freshness_p50_s": p50, "freshness_p95_s": p95,
        "batches": len(batches), "quarantined": int(status["quarantined"].iloc[-1]),
    }


# -- JSON Lines, for the notebooks ------------------------------------------------------------------
def read_status(cfg: Params) -> pd.DataFrame:
    """The per-second samples of the latest live run: one row per second, totals and per-topic columns."""
    path = live_dir(cfg) / STATUS_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "topics"}
        for topic, values in row["topics"].items():
            item.update({f"{topic}.{k}": v for k, v in values.items()})
        flat.append(item)
    return pd.DataFrame(flat)


def read_batches(cfg: Params) -> list[dict[str, Any]]:
    """The micro-batches of the latest live run, as the stream's commit log recorded them."""
    path = live_dir(cfg) / BATCHES_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]
