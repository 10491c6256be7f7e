"""A Spark standalone cluster on this machine, started from pyspark's own launcher (no Docker).

The pip wheel has no ``start-master.sh``, but ``bin/spark-class`` runs the master and worker
classes as the tarball's scripts would. The lab starts a master and ``spark_workers`` workers when
``spark_master`` is ``spark://127.0.0.1:PORT`` and nothing answers there, all bound to 127.0.0.1;
it is ready when the master's ``/json/`` lists every worker ALIVE. Each worker keeps its
executors' logs and scratch space under ``<data_dir>/spark/worker-<n>/``. A master found running
is used as it is and never stopped.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark

from smartcity.platform import jvm
from smartcity.platform.engine_params import SparkParams
from smartcity.platform.params import project_root
from smartcity.platform.processes import (
    EngineError,
    EngineHandle,
    ManagedProcess,
    free_port,
    port_open,
    stop_together,
    wait_until,
)

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
#: Heap of the master and worker daemons themselves (executors get spark_executor_memory).
DAEMON_MEMORY = "256m"


def spark_home() -> Path:
    return Path(pyspark.__file__).parent


def master_state(host: str, ui_port: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The master's own view (``/json/``: status, workers, applications), None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{ui_port}/json/", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def alive_workers(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]


@dataclass
class SparkCluster(EngineHandle):
    """The standalone master at ``url``; stopping it stops the master and workers the lab started."""

    url: str
    ui: tuple[str, int]
    process: ManagedProcess | None = None
    workers: list[ManagedProcess] = field(default_factory=list)

    def state(self) -> dict[str, Any] | None:
        return master_state(*self.ui)

    def alive(self) -> bool:
        return self.process is None or self.process.alive()

    def stop(self) -> None:
        """Workers first (each takes its executors down), then the master."""
        stop_together(self.workers)
        super().stop()


def _daemon_env(local_dirs: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "JAVA_HOME": str(jvm.java_home()),
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            "SPARK_NO_DAEMONIZE": "1",
        }
    )
    if local_dirs is not None:
        env["SPARK_LOCAL_DIRS"] = str(local_dirs)  # executors' scratch space: the worker's, not the driver's
    return env


def _spark_class(
    name: str, main: str, args: list[str], log_path: Path, local_dirs: Path | None = None
) -> ManagedProcess:
    return ManagedProcess(
        name,
        [str(spark_home() / "bin" / "spark-class"), main, *args],
        log_path=log_path,
        cwd=project_root(),
        env=_daemon_env(local_dirs),
    )


def start_worker(spark: SparkParams, spark_dir: Path, number: int, master_url: str) -> ManagedProcess:
    """Launch worker ``number`` (1-based) of this profile's cluster (files under ``spark_dir``); it registers
    with the master by itself."""
    home = spark_dir / f"worker-{number}"
    (home / "work").mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return _spark_class(
        f"Spark worker {number}",
        "org.apache.spark.deploy.worker.Worker",
        [
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--webui-port",
            str(free_port()),
            "--cores",
            str(spark.worker_cores),
            "--memory",
            spark.worker_memory,
            "--work-dir",
            str(home / "work"),
            master_url,
        ],
        home / "worker.log",
        local_dirs=home / "tmp",
    )


def wait_for_workers(cluster: SparkCluster, count: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until the master lists ``count`` workers ALIVE (its own word, not an open port); fails if one of them dies."""
    procs = [p for p in (cluster.process, *cluster.workers) if p is not None]
    try:
        wait_until(
            lambda: len(alive_workers(cluster.state())) >= count,
            timeout=timeout_s,
            what=f"the Spark master and {count} workers",
            alive=lambda: all(p.alive() for p in procs),
        )
    except EngineError as exc:
        tails = "\n".join(f"{p.log_path}:\n{p.log_tail(10)}" for p in procs)
        raise EngineError(f"{exc}; last lines of their logs:\n{tails}") from None


def ensure_cluster(spark: SparkParams, spark_dir: Path) -> SparkCluster | None:
    """The standalone master of spark_master: running already, or started with its workers (files under
    ``spark_dir``); None for local[*]."""
    address = spark.standalone
    if address is None:
        return None
    host, port = address
    ui = (host, spark.master_ui_port)
    if port_open(host, port):
        state = master_state(*ui)
        if state is None:
            raise EngineError(
                f"{host}:{port} accepts connections but no Spark master UI answers at http://{host}:"
                f"{spark.master_ui_port}/json/: check spark_master and spark_master_ui_port"
            )
        if not alive_workers(state):
            raise EngineError(f"the Spark master at {spark.master} has no ALIVE worker: start workers for it")
        log.info("using the Spark master at %s (%d workers alive)", spark.master, len(alive_workers(state)))
        return SparkCluster(spark.master, ui)
    if not spark.workers:
        raise EngineError(
            f"no Spark master answers at {spark.master} (spark_workers is 0, so the lab does not start one): "
            "start the cluster, or set spark_workers to have the lab start it"
        )
    if port_open(*ui, 0.2):
        raise EngineError(f"port {spark.master_ui_port} (spark_master_ui_port) is in use by another program")
    home = spark_dir
    home.mkdir(parents=True, exist_ok=True)
    master = _spark_class(
        f"Spark master {spark.master}",
        "org.apache.spark.deploy.master.Master",
        ["--host", host, "--port", str(port), "--webui-port", str(spark.master_ui_port)],
        home / "master.log",
    )
    cluster = SparkCluster(spark.master, ui, master)
    try:
        master.wait_ready(lambda: master_state(*ui) is not None, timeout=START_TIMEOUT_S)
        for number in range(1, spark.workers + 1):
            cluster.workers.append(start_worker(spark, spark_dir, number, spark.master))
        wait_for_workers(cluster, spark.workers)
    except BaseException:
        cluster.stop()
        raise
    log.info("started a Spark standalone master at %s with %d workers", spark.master, spark.workers)
    return cluster
