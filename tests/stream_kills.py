"""kill -9 of the lab's stream process at random moments while events arrive: what the kill tests share.

The stream runs as `python -m smartcity stream` in its own process group, as a user runs it; a kill
is SIGKILL to that group (driver JVM and Python workers with it). The events are produced in parts,
each paced while the stream (re)starts, and the stream is killed once in each part but the last,
after it committed at least one batch of that part, at a random moment inside a batch or between
two. The test then reads the lake with its own readers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from smartcity.fleet import simulation
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.ingest.producer import produce
from smartcity.platform.params import project_root
from smartcity.stream import commits
from smartcity.stream import query as stream
from smartcity.stream.store import LakeStore

#: Simulated seconds per wall-clock second the parts are produced at: the kill tests' journeys (about
#: 9,000 simulated seconds) take some 40 s to produce, while the stream restarts.
SPEEDUP = 9000 / 40
#: Longest wait for a (re)started stream's first batch, and for the lake to hold every event at the end.
BATCH_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 240.0
#: The latest moment of a kill after the part's first committed batch.
MAX_KILL_DELAY_S = 3.0


def start_stream_process(params: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`smartcity stream --params` in a process group of its own, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "smartcity", "stream", "--params", str(params)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=project_root(),
            env=env,
        )


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def wait_for_batches(store: LakeStore, at_least: int, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while len(commits.commit_log(store).batches()) < at_least:
        assert proc.poll() is None, f"the stream process died:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no batch within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def stream_through_kills(
    bootstrap: str,
    store: LakeStore,
    params: Path,
    events: Sequence[Event],
    parts: int,
    seed: int,
    env_of_start: Callable[[int], dict[str, str] | None] = lambda start: None,
) -> int:
    """Produce ``events`` in ``parts`` while the stream of ``params`` runs, killing it with SIGKILL once in
    every part but the last and starting it again (start n in the environment ``env_of_start(n)``, None:
    this process's). Returns once the lake's commit log counts every event, the stream stopped; the kills."""
    log = params.parent / "stream.log"
    bounds = [len(events) * k // parts for k in range(parts + 1)]
    rng = random.Random(seed)
    kills = 0
    proc = start_stream_process(params, log, env_of_start(0))
    try:
        for part in range(parts):
            done = len(commits.commit_log(store).batches())
            producer = threading.Thread(
                target=produce,
                args=(bootstrap, simulation.pace(events[bounds[part] : bounds[part + 1]], SPEEDUP)),
                kwargs={"progress": False},
            )
            producer.start()
            wait_for_batches(store, done + 1, BATCH_TIMEOUT_S, proc, log)  # the (re)started stream commits
            if part < parts - 1:
                time.sleep(rng.uniform(0.0, MAX_KILL_DELAY_S))  # somewhere inside a batch, or between two
                kill_group(proc)
                kills += 1
                proc = start_stream_process(params, log, env_of_start(kills))
            producer.join(300)
            assert not producer.is_alive()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        produced = Counter(e.topic for e in events)
        while stream.lake_counts(store, TOPICS) != dict(produced):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                kill_group(proc)
    return kills
