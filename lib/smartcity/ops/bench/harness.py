"""What the benchmarks that run the engines share: an isolated lab per run, a simulated run produced
into its topics, the stream's warm-up and a drain checked by a reader outside the lab's code.

Every such benchmark runs in a lab of its own (a temporary data dir, free ports), so it never
touches the lab's own data or a user's engines.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

from smartcity import steps
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.simulation import simulate_journey
from smartcity.ingest.producer import produce
from smartcity.ops.bench.common import CpuMeter
from smartcity.params import Params, from_mapping
from smartcity.platform.processes import free_port
from smartcity.stream import lake, query
from smartcity.stream.store import LakeStore
from smartcity.stream.warm_up import warm_up_stream


def bench_cfg(work: Path, **values: Any) -> Params:
    """An isolated lab for a benchmark: its own data dir and broker port, thrown away afterwards."""
    return from_mapping(
        {
            "profile": "bench",
            "data_dir": str(work / "data"),
            "output_dir": str(work / "outputs"),
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "postgres_port": free_port(),
            "live_map_port": 0,
            "producer_backend": "confluent-kafka",
            **values,
        },
        source="smartcity bench",
    )


def glob_counts(lake_root: Path, topics: tuple[str, ...] = TOPICS) -> dict[str, int]:
    """Rows per table as a reader that shares none of the lab's code sees them: DuckDB over a glob."""
    counts = {}
    for topic in topics:
        pattern = lake_root / topic / "**" / "*.parquet"
        counts[topic] = (
            duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0][0]
            if any((lake_root / topic).rglob("*.parquet"))
            else 0
        )
    return counts


class LakeReads:
    """Bytes this process (the stream's driver) reads through a lake store's ``get`` during a ``with`` block:
    event data (a Parquet file, or lines staged by the earlier driver-side conversion) apart from the commit's
    own small files (the staged batch's file list, manifests, markers). The executors run in other processes:
    what they read and write is not counted here."""

    def __init__(self, store: LakeStore) -> None:
        self.store = store
        self.bytes = {"event": 0, "commit": 0}

    def _get(self, key: str) -> bytes:
        data = self._real_get(key)
        is_event = key.endswith(".parquet") or f"/{lake.RAW_STAGING}/" in key
        self.bytes["event" if is_event else "commit"] += len(data)
        return data

    def __enter__(self) -> LakeReads:
        self._real_get = self.store.get
        self.store.get = self._get  # type: ignore[method-assign]  # this instance only, until the block ends
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store.get  # the class's method again


def drain(spark: Any, lab: steps.Lab, produced: dict[str, int], what: str, **pids: int) -> dict[str, float]:
    """The stream drains the topics into an empty lake, which must then hold what was produced.

    Returns wall seconds and CPU-seconds of this process and of the named process trees (see CpuMeter),
    and the bytes the driver read from the lake (see LakeReads).
    """
    lake.reset(lab.store, lab.cfg.paths.data)
    job = steps.stream_job(lab)
    with CpuMeter(**pids) as meter, LakeReads(job.store) as reads:
        query.run_bounded(spark, job)
    if glob_counts(lab.cfg.paths.lake) != produced:
        raise RuntimeError(f"{what}: the lake does not hold what was produced")
    if reads.bytes["commit"] == 0:
        raise RuntimeError(f"{what}: the driver's reads of the lake were not seen (not even its commits')")
    return {**meter.result, **{f"driver_{kind}_bytes_read": n for kind, n in reads.bytes.items()}}


def warm_up(lab: steps.Lab, spark: Any) -> float:
    """The stream's warm-up (:func:`smartcity.stream.warm_up.warm_up_stream`); returns its seconds."""
    started = time.monotonic()
    warm_up_stream(spark, lab.cfg.kafka, lab.cfg.fleet, lab.cfg.paths.data)
    return time.monotonic() - started


def fleet_run(cfg: Params) -> tuple[list[Event], dict[str, int]]:
    """A benchmark's simulated run, and how many events of each topic it has."""
    events = simulate_journey(cfg.fleet)
    return events, {t: sum(1 for e in events if e.topic == t) for t in TOPICS}


def produced_into(lab: steps.Lab, events: list[Event]) -> None:
    """A fresh run: topics emptied, lake reset, the events produced (confluent-kafka, no progress bar)."""
    steps.reset_run(lab)
    produce(lab.cfg.kafka.bootstrap, events, backend="confluent-kafka", progress=False)
