"""Watching the stream while it runs: throughput, Kafka lag, freshness, and the files a live run leaves.

A live run (``smartcity live``) takes a status sample every second: per topic the events per second
produced and written to the lake, the Kafka lag (end offsets minus the stream's progress), the
freshness p50 and p95 of what was published lately (an event's Kafka timestamp, set when the
producer sent it, to the moment its file was moved into the table folder, where any reader's glob
sees it), and the quarantined count. Samples go to ``status.jsonl`` and every micro-batch to
``batches.jsonl`` in the run's folder (``outputs/<profile>/live/``), with ``summary.json`` at the end.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from smartcity.fleet.contracts import TOPICS
from smartcity.stream.lake import QUARANTINE

STATUS_FILE = "status.jsonl"
BATCHES_FILE = "batches.jsonl"
SUMMARY_FILE = "summary.json"
#: Freshness is reported over the batches published in this many seconds before each sample.
FRESHNESS_WINDOW_S = 5.0
#: How many published batches a board keeps for its freshness figures.
KEPT_BATCHES = 500


# -- figures ---------------------------------------------------------------------------------------
def freshness_percentiles(
    batches: Sequence[dict[str, Any]], quantiles: Sequence[float] = (0.5, 0.95)
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
            self.batches = self.batches[-KEPT_BATCHES:]
            for table, rows in done["rows"].items():
                if table == QUARANTINE:
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
            t: {
                "produced": produced[t],
                "written": written[t],
                "lag": lag.get(t, 0),
                "produced_per_s": round((produced[t] - last["produced"][t]) / span, 1),
                "written_per_s": round((written[t] - last["written"][t]) / span, 1),
            }
            for t in self.topics
        }
        self._last = {"at": now, "produced": Counter(produced), "written": written}
        return {
            "time": round(now, 3),
            "elapsed_s": round(now - self.started, 1),
            "phase": phase,
            "topics": topics,
            "produced_per_s": round(sum(v["produced_per_s"] for v in topics.values()), 1),
            "written_per_s": round(sum(v["written_per_s"] for v in topics.values()), 1),
            "lag": sum(v["lag"] for v in topics.values()),
            "freshness_p50_s": p50,
            "freshness_p95_s": p95,
            "quarantined": quarantined,
            "batches": len(self.batches),
        }


def format_sample(row: dict[str, Any]) -> str:
    """The status table of one sample, as the terminal shows it."""
    lines = [
        f"live  {row['elapsed_s']:>7.1f} s  {row['phase']:<10} freshness p50 "
        f"{_seconds(row['freshness_p50_s'])}  p95 {_seconds(row['freshness_p95_s'])}  "
        f"quarantined {row['quarantined']:,}",
        f"{'topic':<16}{'produced/s':>12}{'written/s':>12}{'lag':>10}{'produced':>12}{'in lake':>12}",
    ]
    for topic, v in row["topics"].items():
        lines.append(
            f"{topic:<16}{v['produced_per_s']:>12,.0f}{v['written_per_s']:>12,.0f}{v['lag']:>10,}"
            f"{v['produced']:>12,}{v['written']:>12,}"
        )
    lines.append(f"{'all':<16}{row['produced_per_s']:>12,.0f}{row['written_per_s']:>12,.0f}{row['lag']:>10,}")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "   -  " if value is None else f"{value:5.2f}s"


def lag(
    ends: dict[tuple[str, int], int], query: Any, starts: dict[tuple[str, int], int], topics: Sequence[str]
) -> dict[str, int]:
    """Per topic: messages in Kafka (up to ``ends``, :func:`smartcity.platform.topics.partition_offsets`)
    the query has not finished a batch of (its progress is reported after foreachBatch returns, so what
    the lake's query reports as read is in the lake)."""
    done = processed_offsets(query)
    behind: Counter[str] = Counter({t: 0 for t in topics})
    for part, end in ends.items():
        if part[0] in behind:
            behind[part[0]] += max(0, end - max(done.get(part, 0), starts.get(part, 0)))
    return dict(behind)


def batch_line(done: dict[str, Any]) -> dict[str, Any]:
    metrics = done.get("metrics", {})
    p50, p95 = freshness_percentiles([done])
    return {
        "batch": done["batch"],
        "published_at": round(done["published_at"], 3),
        "rows": done["rows"],
        "messages": metrics.get("messages", 0),
        "quarantined": metrics.get("quarantined", 0),
        "spark_seconds": metrics.get("spark_seconds"),
        "batch_seconds": round(done["published_at"] - metrics["started_at"], 3) if "started_at" in metrics else None,
        "freshness_p50_s": p50,
        "freshness_p95_s": p95,
        "produced_quantiles": metrics.get("produced_quantiles", []),
    }


def read_summary(folder: Path) -> dict[str, Any]:
    """The summary a finished live run wrote."""
    return json.loads((folder / SUMMARY_FILE).read_text())


def wait_for(
    ended: Callable[[], bool],
    started_at: float,
    live_seconds: float,
    timeout_s: float,
    hint: str,
    progress: bool = True,
) -> None:
    """Wait until a live run has ended, showing its producing then draining phase; ``hint`` says how to stop it
    if it has not ended within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    total = round(live_seconds)
    with tqdm(total=total, unit="s", desc="live run: producing", disable=not progress) as bar:
        while not ended():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the live run did not end within {timeout_s:.0f} s; {hint}")
            elapsed = min(round(time.time() - started_at), total)
            if elapsed > bar.n:
                bar.update(elapsed - bar.n)
                if elapsed == total:
                    bar.set_description("live run: draining")
            time.sleep(1.0)


def summarize_run(folder: Path) -> dict[str, Any]:
    """Figures of the whole run from its JSON Lines: rates, lag and freshness."""
    status = read_status(folder)
    batches = read_batches(folder)
    if status.empty:
        return {"samples": 0}
    producing = status[status["phase"] == "producing"]
    p50, p95 = freshness_percentiles(
        [
            {
                "published_at": b["published_at"],
                "metrics": {"messages": b["messages"], "produced_quantiles": b["produced_quantiles"]},
            }
            for b in batches
        ]
    )
    return {
        "samples": len(status),
        "seconds": float(status["elapsed_s"].iloc[-1]),
        "produced_per_s_mean": round(float(producing["produced_per_s"].mean()), 1) if len(producing) else 0.0,
        "written_per_s_mean": round(float(producing["written_per_s"].mean()), 1) if len(producing) else 0.0,
        "max_lag": int(status["lag"].max()),
        "freshness_p50_s": p50,
        "freshness_p95_s": p95,
        "batches": len(batches),
        "quarantined": int(status["quarantined"].iloc[-1]),
    }


# -- JSON Lines, for the notebooks ------------------------------------------------------------------
def read_status(folder: Path) -> pd.DataFrame:
    """The per-second samples of the latest live run: one row per second, totals and per-topic columns."""
    rows = _complete_lines(folder / STATUS_FILE)
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "topics"}
        for topic, values in row["topics"].items():
            item.update({f"{topic}.{k}": v for k, v in values.items()})
        flat.append(item)
    return pd.DataFrame(flat)


def read_batches(folder: Path) -> list[dict[str, Any]]:
    """The micro-batches of the latest live run, as the stream's commit log recorded them."""
    return _complete_lines(folder / BATCHES_FILE)


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON Lines a running live process has finished writing (a line ends with its newline)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


class RunLogs:
    """A live run's JSON Lines as it writes them: one line per status sample, one per published batch."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in (STATUS_FILE, BATCHES_FILE):
            (folder / name).unlink(missing_ok=True)
        self.status = open(folder / STATUS_FILE, "a")  # noqa: SIM115 - closed by close()
        self.batches = open(folder / BATCHES_FILE, "a")  # noqa: SIM115 - closed by close()

    @staticmethod
    def write(handle: Any, row: dict[str, Any]) -> None:
        handle.write(json.dumps(row) + "\n")
        handle.flush()

    def close(self) -> None:
        self.status.close()
        self.batches.close()
