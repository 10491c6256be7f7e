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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from smartcity.platform import kafka
from smartcity.stream import lake
from smartcity.present import report
from smartcity.fleet import simulation
from smartcity.stream import query as stream
from smartcity.params import TOPICS, Params, display_path, project_root
from smartcity.fleet.contracts import Event
from smartcity.platform.processes import EngineError
from smartcity.ingest.producer import ProduceError, ProduceReport, produce

STATUS_FILE = "status.jsonl"
BATCHES_FILE = "batches.jsonl"
#: Freshness is reported over the batches published in this many seconds before each sample.
FRESHNESS_WINDOW_S = 5.0


def live_dir(cfg: Params) -> Path:
    """Where the live run's figures go: outputs/<profile>/live/."""
    return cfg.output_path / "live"


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


class _Fleet:
    """The producer thread: the fleet's events, paced, until told to stop (then it flushes and ends)."""

    def __init__(self, cfg: Params, bootstrap: str, events: Iterable[Event]) -> None:
        self.stop_event = threading.Event()
        self.counts = ProduceReport()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="live-producer", daemon=True,
                                       args=(cfg, bootstrap, until(self.stop_event, events)))

    def _run(self, cfg: Params, bootstrap: str, events: Iterable[Event]) -> None:
        try:
            produce(bootstrap, events, backend=cfg.producer_backend, speedup=cfg.speedup, progress=False,
                    report=self.counts)
        except (ProduceError, EngineError) as exc:
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)


class _Logs:
    """The run's JSON Lines: one line per status sample, one per published batch."""

    def __init__(self, out: Path) -> None:
        for name in (STATUS_FILE, BATCHES_FILE):
            (out / name).unlink(missing_ok=True)
        self.status = open(out / STATUS_FILE, "a")  # noqa: SIM115 - closed by close()
        self.batches = open(out / BATCHES_FILE, "a")  # noqa: SIM115 - closed by close()

    def write(self, handle: Any, row: dict[str, Any]) -> None:
        handle.write(json.dumps(row) + "\n")
        handle.flush()

    def close(self) -> None:
        self.status.close()
        self.batches.close()


def run_live(cfg: Params, seconds: float | None = None, *, console: bool = True,
             events: Iterable[Event] | None = None) -> dict[str, Any]:
    """Broker, stream and fleet together until ``seconds`` (default ``live_seconds``; 0: until stopped).

    Ctrl-C or SIGTERM end the run the same way as the duration: producer stopped, stream
    drained, everything stopped (in that order, also on error). Returns the summary also written
    to ``summary.json``.
    """
    from smartcity.platform.spark import spark_session

    seconds = cfg.live_seconds if seconds is None else seconds
    out = live_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    board = StatusBoard()
    view = _Console(console)
    with ExitStack() as stack:
        broker = stack.enter_context(kafka.ensure_broker(cfg))
        stack.enter_context(lake.writer_lock(cfg))
        simulation.prepare_run(cfg)
        logs = _Logs(out)
        stack.callback(logs.close)

        def on_batch(done: dict[str, Any]) -> None:
            board.add_batch(done)
            logs.write(logs.batches, _batch_line(done))

        spark = stack.enter_context(spark_session(cfg))
        print("warming the stream up on simulated messages through scratch topics (nothing reaches the lake)...",
              file=sys.stderr, flush=True)
        print(f"warmed up in {stream.warm_up(spark, cfg):.0f} s", file=sys.stderr, flush=True)
        running = stack.enter_context(stream.start_stream(spark, cfg, available_now=False, on_batch=on_batch))
        admin = kafka.admin_client(broker.bootstrap)
        stack.callback(admin.close)
        starts = kafka.partition_offsets(admin, board.topics, earliest=True)
        fleet = _Fleet(cfg, broker.bootstrap, events if events is not None else simulation.FleetSimulation(cfg).events())
        stack.callback(fleet.stop)
        stack.enter_context(_stop_on_signals(fleet.stop_event))
        board.started = time.time()  # the run's clock starts with the fleet, after engines and warm-up
        fleet.start()
        deadline = time.monotonic() + seconds if seconds else float("inf")
        phase, drain_deadline = "producing", float("inf")
        while True:
            time.sleep(max(0.0, 1.0 - (time.time() - board.started) % 1.0))
            problem = running.failure()
            if problem:
                raise stream.StreamError(f"the live stream failed: {problem}")
            if phase == "producing" and (fleet.stop_event.is_set() or time.monotonic() >= deadline
                                         or not fleet.thread.is_alive()):
                fleet.stop(cfg.stream_timeout_seconds)
                phase, drain_deadline = "draining", time.monotonic() + cfg.stream_timeout_seconds
            lag = _lag(admin, running.query, starts, board.topics)
            row = board.sample(fleet.counts.acked, lag, phase)
            logs.write(logs.status, row)
            view.show(row)
            if phase == "draining" and sum(lag.values()) == 0 and running.published():
                break
            if time.monotonic() > drain_deadline:
                raise stream.StreamError(
                    f"the stream did not drain within stream_timeout_seconds={cfg.stream_timeout_seconds}")
        if fleet.error is not None:
            raise fleet.error
    in_lake = stream.lake_counts(cfg, [*TOPICS, lake.QUARANTINE])
    report.record_counts(cfg, "produced", fleet.counts.acked)
    report.record_counts(cfg, "lake", {t: in_lake[t] for t in TOPICS})
    summary = summarize_run(cfg)
    summary.update(produced=dict(fleet.counts.acked), in_lake=in_lake)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
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
            "spark_seconds": metrics.get("spark_seconds"),
            "batch_seconds": round(done["published_at"] - metrics["started_at"], 3) if "started_at" in metrics else None,
            "freshness_p50_s": p50, "freshness_p95_s": p95,
            "produced_quantiles": metrics.get("produced_quantiles", [])}


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
    rows = _complete_lines(live_dir(cfg) / STATUS_FILE)
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "topics"}
        for topic, values in row["topics"].items():
            item.update({f"{topic}.{k}": v for k, v in values.items()})
        flat.append(item)
    return pd.DataFrame(flat)


def read_batches(cfg: Params) -> list[dict[str, Any]]:
    """The micro-batches of the latest live run, as the stream's commit log recorded them."""
    return _complete_lines(live_dir(cfg) / BATCHES_FILE)


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON Lines a running live process has finished writing (a line ends with its newline)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


# -- the live run in the background, for the notebooks -----------------------------------------------
SUPERVISOR_FILE = "supervisor.json"
EXIT_FILE = "exit.json"
LOG_FILE = "live.log"


class LiveRunError(RuntimeError):
    """The background live run failed or could not start; the message carries its log's tail."""


def _supervisor(cfg: Params) -> dict[str, Any] | None:
    path = live_dir(cfg) / SUPERVISOR_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _alive(pid: int) -> bool:
    """A running `smartcity live` process (a zombie, or a pid reused by another program, is not)."""
    if not Path("/proc/self").is_dir():  # no /proc (macOS): the signal test is all there is
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and b"smartcity" in cmdline and b"live" in cmdline


def _log_tail(cfg: Params, lines: int = 30) -> str:
    path = live_dir(cfg) / LOG_FILE
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def running_pid(cfg: Params) -> int | None:
    """The pid of this profile's background live run, if one is running."""
    info = _supervisor(cfg)
    return info["pid"] if info and _alive(info["pid"]) else None


def start_background(cfg: Params, ready_timeout_s: float = 300.0) -> dict[str, Any]:
    """Start ``smartcity live`` for this profile as a process of its own (01_simulate in live mode).

    It outlives the notebook that started it: 02_stream attaches to it, and it stops by itself after
    ``live_seconds`` (or on :func:`stop_background`, ``smartcity live --stop``, Ctrl-C in its terminal).
    Returns once its first status sample is written, so a failure to start is raised here.
    """
    out = live_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    pid = running_pid(cfg)
    if pid is not None:
        raise LiveRunError(f"a live run of profile {cfg.profile!r} is already running (pid {pid}); "
                           f"stop it first: smartcity live --stop --params {display_path(out / 'params.yaml')}")
    for name in (STATUS_FILE, BATCHES_FILE, EXIT_FILE, "summary.json"):
        (out / name).unlink(missing_ok=True)
    params = out / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    with open(out / LOG_FILE, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartcity", "live", "--params", str(params), "--quiet"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=project_root(),
            start_new_session=True,  # its own process group: a notebook kernel's restart does not kill it
        )
    info = {"pid": proc.pid, "params": display_path(params), "log": display_path(out / LOG_FILE),
            "status": display_path(out / STATUS_FILE), "started_at": time.time(),
            "stops": f"after {cfg.live_seconds:g} s, then drains" if cfg.live_seconds else "when stopped"}
    (out / SUPERVISOR_FILE).write_text(json.dumps(info, indent=1) + "\n")
    deadline = time.monotonic() + ready_timeout_s
    while not (out / STATUS_FILE).exists() or not (out / STATUS_FILE).stat().st_size:
        if proc.poll() is not None:
            raise LiveRunError(f"the live run exited with code {proc.returncode} before its first status:\n"
                               f"{_log_tail(cfg)}")
        if time.monotonic() > deadline:
            stop_background(cfg)
            raise LiveRunError(f"the live run wrote no status within {ready_timeout_s:.0f} s:\n{_log_tail(cfg)}")
        time.sleep(0.5)
    return info


def wait_background(cfg: Params, timeout_s: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Wait for a bounded background run to finish (02_stream in live mode) and return its summary.

    An open-ended run (``live_seconds`` 0) is not waited for: the summary so far is returned and it
    keeps running. A failed run raises with its error and log.
    """
    from tqdm import tqdm

    info = _supervisor(cfg)
    if info is None:
        raise LiveRunError(f"no live run of profile {cfg.profile!r} was started: run 01_simulate with mode: live")
    if cfg.live_seconds == 0 and _alive(info["pid"]):
        return summarize_run(cfg)
    timeout_s = timeout_s if timeout_s is not None else cfg.live_seconds + cfg.stream_timeout_seconds + 120
    deadline = time.monotonic() + timeout_s
    total = round(cfg.live_seconds)
    with tqdm(total=total, unit="s", desc="live run: producing", disable=not progress) as bar:
        while _alive(info["pid"]):
            if time.monotonic() > deadline:
                raise LiveRunError(f"the live run (pid {info['pid']}) did not end within {timeout_s:.0f} s; "
                                   f"stop it with smartcity live --stop --params {info['params']}")
            elapsed = min(round(time.time() - info["started_at"]), total)
            if elapsed > bar.n:
                bar.update(elapsed - bar.n)
                if elapsed == total:
                    bar.set_description("live run: draining")
            time.sleep(1.0)
    return finished_summary(cfg)


def finished_summary(cfg: Params) -> dict[str, Any]:
    """The summary of the ended run, or its error."""
    out = live_dir(cfg)
    ended = json.loads((out / EXIT_FILE).read_text()) if (out / EXIT_FILE).exists() else None
    if ended is None or not ended.get("ok"):
        why = ended.get("error") if ended else "it ended without saying how (killed?)"
        raise LiveRunError(f"the live run failed: {why}\n{_log_tail(cfg)}")
    return json.loads((out / "summary.json").read_text())


def stop_background(cfg: Params, timeout_s: float | None = None) -> bool:
    """Stop this profile's background run the way Ctrl-C does (producer stops, stream drains); True if one ran.

    If it has not ended after ``timeout_s`` its whole process group is killed.
    """
    info = _supervisor(cfg)
    if info is None or not _alive(info["pid"]):
        return False
    pid = info["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else cfg.stream_timeout_seconds + 60)
    while _alive(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.5)
    return True


def record_exit(cfg: Params, error: BaseException | None) -> None:
    """What the CLI leaves for :func:`finished_summary`: ok, or the error that ended the run."""
    out = live_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    text = None if error is None else (stream.describe(error) or type(error).__name__)
    (out / EXIT_FILE).write_text(json.dumps({"ok": error is None, "error": text}) + "\n")


def plot_run(cfg: Params) -> Any:
    """02_stream's figure: the live run's throughput, lag and freshness over time (a note in batch mode)."""
    from IPython.display import Markdown

    from smartcity.present import charts

    status = read_status(cfg)
    if cfg.mode != "live" or status.empty:
        return Markdown("Batch mode drains the topics and stops, so there is no live run to plot; "
                        "run the notebooks with `params/live.yaml` to see throughput, lag and freshness over time.")
    return charts.live_run(status)
