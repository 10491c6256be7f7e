"""Lab parameters: one flat, typed record shared by the runner, the notebooks and the tests.

A profile is a flat YAML file in ``params/`` (``local.yaml`` is the default). Papermill injects its
keys into a notebook with ``-f``; the notebook then calls :func:`resolve` on its globals, so the
notebook defaults, a params file and the runner all meet in the same validated :class:`Params`.
Every path is resolved from the project root, never from the current directory.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

#: The five seed topics, in the order the pipeline treats them.
TOPICS: tuple[str, ...] = ("vehicle_data", "gps_data", "traffic_data", "weather_data", "emergency_data")

#: The six notebooks, in run order.
NOTEBOOKS: tuple[str, ...] = (
    "01_simulate",
    "02_stream",
    "03_catalog",
    "04_athena",
    "05_redshift",
    "06_route_map",
)


PRODUCER_BACKENDS: tuple[str, ...] = ("kafka-python", "confluent-kafka")
MODES: tuple[str, ...] = ("batch", "live")
#: Host names of this machine's loopback: where the lab starts engines, and binds its Spark driver.
LOCAL_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")


class ParamsError(ValueError):
    """A parameter is unknown, has the wrong type or an impossible value; the message names it."""


def route_weights(spec: str) -> dict[str, float]:
    """Parse the ``routes`` parameter ('M1/M6:2,M40:1'); unknown routes and bad weights name it."""
    from smartcity.geo import load_network

    known = load_network().route_names
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, weight = item.partition(":")
        name = name.strip()
        if name not in known:
            raise ParamsError(f"parameter 'routes': unknown route {name!r}; the corridor has {', '.join(known)}")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ParamsError(f"parameter 'routes': the weight of {name!r} is not a number: {weight!r}") from None
        if not 0 <= value < float("inf"):
            raise ParamsError(f"parameter 'routes': the weight of {name!r} must be zero or positive, got {weight}")
        weights[name] = value
    if sum(weights.values()) <= 0:
        raise ParamsError("parameter 'routes' must give at least one route a positive weight")
    return weights


def project_root() -> Path:
    """Find the lab's root so paths never depend on where a notebook or test runs from."""
    env = os.environ.get("SMARTCITY_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "params").is_dir():
        return here
    for candidate in (Path.cwd(), *Path.cwd().parents):
        if (candidate / "params").is_dir() and (candidate / "notebooks").is_dir():
            return candidate
    raise ParamsError("cannot find the lab root (a folder with params/ and notebooks/); set SMARTCITY_HOME")


def display_path(path: Path) -> str:
    """A path as people should read it (and notebooks print it): relative to the lab root when inside it."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def _doc(text: str) -> Any:
    return {"doc": text}


@dataclass(frozen=True)
class Params:
    """Every setting of a lab run. Defaults are the small, offline ``local`` profile."""

    profile: str = field(default="local", metadata=_doc("run name: data in data_dir, results in output_dir"))
    seed: int = field(default=42, metadata=_doc("random seed: same seed and params give the same events"))
    base_date: str = field(
        default="2026-01-05T08:00:00+00:00", metadata=_doc("simulated clock start, ISO 8601 with offset")
    )
    vehicles: int = field(default=3, metadata=_doc("fleet size: vehicles driving London to Birmingham"))
    routes: str = field(
        default="M1/M6:1,M40:1,A5/A45:1", metadata=_doc("route mix, name:weight, from the corridor's routes")
    )
    departure_spacing_seconds: float = field(default=180.0, metadata=_doc("seconds between two departures"))
    departure_rate_per_hour: float = field(
        default=0.0,
        metadata=_doc("after the first `vehicles`, more keep leaving at this mean rate (Poisson) for as long as "
                      "the run lasts, endless if duration_seconds is 0; 0 keeps the fixed fleet of `vehicles`"),
    )
    tick_seconds: float = field(default=5.0, metadata=_doc("simulated seconds between two telemetry fixes"))
    duration_seconds: float = field(
        default=0.0, metadata=_doc("simulated seconds to run (sensors report to the end); 0: until all arrive")
    )
    incident_rate: float = field(
        default=0.1, metadata=_doc("incidents per 100 km of road per hour (a Poisson process)")
    )
    speedup: float = field(
        default=0.0, metadata=_doc("1 paces events in real time, 60 a minute per second; 0 as fast as possible")
    )
    schema_version: int = field(
        default=2, metadata=_doc("contract version the fleet produces (1, or 2 which adds vehicle_data.edgeId)")
    )
    route_judge_seed: int = field(
        default=0, metadata=_doc("seed of the run 06_route_map judges its suggestions on; 0: seed + 1 (never seed)")
    )
    route_judge_vehicles: int = field(
        default=24, metadata=_doc("vehicles of that judged run, each driven on its own route and on the suggestion")
    )
    reset_run: bool = field(
        default=True, metadata=_doc("01_simulate starts afresh: empty topics, lake and stream checkpoints")
    )
    mode: str = field(
        default="batch", metadata=_doc("batch: produce a bounded run, then stream it; live: drive and stream at once")
    )
    live_seconds: float = field(
        default=0.0, metadata=_doc("live mode: wall-clock seconds the fleet drives before the stream drains; 0 until stopped")
    )
    kafka_bootstrap: str = field(default="127.0.0.1:9092", metadata=_doc("Kafka bootstrap servers host:port"))
    kafka_embedded: bool = field(
        default=True,
        metadata=_doc("true: this profile's own broker (started on 127.0.0.1 if not running, data in data_dir); "
                      "false: an external broker, used but never emptied"),
    )
    kafka_partitions: int = field(default=3, metadata=_doc("partitions per topic when the lab creates it"))
    kafka_replication: int = field(
        default=1,
        metadata=_doc("replicas per topic when the lab creates it; the lab's own brokers (one per kafka_bootstrap "
                      "address) take it as their default, with min.insync.replicas = min(2, replicas)"),
    )
    kafka_cluster_id: str = field(
        default="",
        metadata=_doc("cluster id of a broker this profile owns but did not start (docker compose's); "
                      "empty: the id the lab formatted its own brokers with, in data_dir"),
    )
    producer_backend: str = field(
        default="kafka-python", metadata=_doc("kafka-python (the default) or confluent-kafka (faster, librdkafka)")
    )
    spark_master: str = field(default="local[*]", metadata=_doc("Spark master URL"))
    spark_driver_memory: str = field(default="1g", metadata=_doc("Spark driver heap"))
    spark_driver_host: str = field(
        default="127.0.0.1",
        metadata=_doc("address the driver listens on and executors call back to (a container's name under compose)"),
    )
    spark_workers: int = field(
        default=0,
        metadata=_doc("standalone workers the lab starts with its own master when spark_master is "
                      "spark://127.0.0.1:PORT and nothing answers there; 0: never start a cluster"),
    )
    spark_worker_cores: int = field(default=1, metadata=_doc("cores each worker the lab starts offers"))
    spark_worker_memory: str = field(default="1g", metadata=_doc("memory each worker the lab starts offers"))
    spark_executor_memory: str = field(default="768m", metadata=_doc("heap of each executor on a standalone cluster"))
    spark_cores_max: int = field(
        default=0, metadata=_doc("most cores the lab's application takes from a standalone cluster; 0: all offered")
    )
    spark_master_ui_port: int = field(
        default=8080, metadata=_doc("web UI port of the standalone master (its /json/ lists the workers)")
    )
    stream_max_batch_events: int = field(
        default=200_000, metadata=_doc("most Kafka messages one micro-batch takes (bounds its memory)")
    )
    stream_trigger_seconds: float = field(
        default=1.0, metadata=_doc("live mode: seconds between two micro-batches")
    )
    stream_timeout_seconds: int = field(
        default=600, metadata=_doc("bound on a batch (availableNow) streaming run before it counts as stuck")
    )
    postgres_dsn: str = field(
        default="", metadata=_doc("warehouse DSN; empty starts the embedded PostgreSQL on postgres_port")
    )
    postgres_port: int = field(default=5433, metadata=_doc("port of the embedded PostgreSQL on 127.0.0.1"))
    postgres_fsync: bool = field(
        default=True, metadata=_doc("embedded PostgreSQL flushes commits to disk; false is faster and loses them on a crash")
    )
    data_dir: str = field(
        default="data/{profile}", metadata=_doc("Kafka logs, lake, checkpoints, catalog, warehouse files")
    )
    output_dir: str = field(default="outputs/{profile}", metadata=_doc("executed notebooks, maps and report"))

    def __post_init__(self) -> None:
        _check_values(self)

    # -- derived locations -------------------------------------------------------------------
    def _path(self, template: str) -> Path:
        path = Path(template.format(profile=self.profile))
        return path if path.is_absolute() else project_root() / path

    @property
    def data_path(self) -> Path:
        return self._path(self.data_dir)

    @property
    def output_path(self) -> Path:
        return self._path(self.output_dir)

    @property
    def lake_path(self) -> Path:
        return self.data_path / "lake"

    @property
    def checkpoint_path(self) -> Path:
        return self.data_path / "checkpoints"

    @property
    def catalog_path(self) -> Path:
        return self.data_path / "catalog.duckdb"

    @property
    def kafka_addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) of kafka_bootstrap, in order: one per broker of the lab's own quorum."""
        return [hp for a in self.kafka_bootstrap.split(",") if (hp := _host_port(a))]

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        return self.kafka_addresses[0]

    @property
    def spark_standalone(self) -> tuple[str, int] | None:
        """(host, port) of a spark:// master, None for local[...] and other masters."""
        if not self.spark_master.startswith("spark://"):
            return None
        return _host_port(self.spark_master.removeprefix("spark://").split(",")[0])

    @property
    def start_time(self) -> datetime:
        return datetime.fromisoformat(self.base_date)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of 'host:port'; None when it is not that (validation names the parameter)."""
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
#: Parameter name -> its Python type (annotations are strings under ``from __future__``).
PARAM_TYPES: dict[str, type] = {f.name: _SCALARS[str(f.type)] for f in fields(Params)}


def describe() -> list[tuple[str, str, Any, str]]:
    """(name, type, default, doc) for every parameter: what the README and --help print."""
    return [(f.name, PARAM_TYPES[f.name].__name__, f.default, f.metadata["doc"]) for f in fields(Params)]


def _check_type(key: str, value: Any) -> Any:
    want = PARAM_TYPES[key]
    ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ParamsError(
            f"parameter '{key}' must be {want.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _check_values(p: Params) -> None:
    for name in ("vehicles", "kafka_partitions", "kafka_replication", "stream_timeout_seconds",
                 "stream_max_batch_events", "route_judge_vehicles", "spark_worker_cores"):
        if getattr(p, name) < 1:
            raise ParamsError(f"parameter '{name}' must be at least 1, got {getattr(p, name)}")
    if p.route_judge_seed and p.route_judge_seed == p.seed:
        raise ParamsError(
            f"parameter 'route_judge_seed' must differ from 'seed' ({p.seed}): suggestions are judged on a run they did not learn from"
        )
    for name in ("tick_seconds", "stream_trigger_seconds"):
        if not 0 < getattr(p, name) < float("inf"):
            raise ParamsError(f"parameter '{name}' must be positive, got {getattr(p, name)}")
    for name in ("departure_spacing_seconds", "departure_rate_per_hour", "duration_seconds", "incident_rate", "speedup"):
        if not 0 <= getattr(p, name) < float("inf"):
            raise ParamsError(f"parameter '{name}' must be zero or positive, got {getattr(p, name)}")
    from smartcity.contracts import SCHEMA_VERSIONS

    if p.schema_version not in SCHEMA_VERSIONS:
        raise ParamsError(
            f"parameter 'schema_version' must be one of {', '.join(map(str, SCHEMA_VERSIONS))}, got {p.schema_version}"
        )
    if p.mode not in MODES:
        raise ParamsError(f"parameter 'mode' must be one of {', '.join(MODES)}, got {p.mode!r}")
    if not 0 <= p.live_seconds < float("inf"):
        raise ParamsError(f"parameter 'live_seconds' must be zero or positive, got {p.live_seconds}")
    if p.producer_backend not in PRODUCER_BACKENDS:
        raise ParamsError(
            f"parameter 'producer_backend' must be one of {', '.join(PRODUCER_BACKENDS)}, got {p.producer_backend!r}"
        )
    route_weights(p.routes)
    try:
        start = datetime.fromisoformat(p.base_date)
    except ValueError:
        raise ParamsError(f"parameter 'base_date' is not an ISO 8601 date-time: {p.base_date!r}") from None
    if start.tzinfo is None:
        raise ParamsError(f"parameter 'base_date' needs a UTC offset, e.g. '+00:00': {p.base_date!r}")
    addresses = p.kafka_bootstrap.split(",")
    for address in addresses:
        if _host_port(address) is None:
            raise ParamsError(
                f"parameter 'kafka_bootstrap' must be host:port[,host:port...], got {p.kafka_bootstrap!r} "
                f"({address.strip()!r} is not host:port)"
            )
    if len(set(map(str.strip, addresses))) < len(addresses):
        raise ParamsError(f"parameter 'kafka_bootstrap' names an address twice: {p.kafka_bootstrap!r}")
    for name in ("spark_workers", "spark_cores_max"):
        if getattr(p, name) < 0:
            raise ParamsError(f"parameter '{name}' must be zero or positive, got {getattr(p, name)}")
    if p.spark_master.startswith("spark://") and p.spark_standalone is None:
        raise ParamsError(f"parameter 'spark_master' must be spark://host:port, got {p.spark_master!r}")
    if p.spark_workers and (p.spark_standalone or ("", 0))[0] not in LOCAL_HOSTS:
        raise ParamsError(
            f"parameter 'spark_workers' is {p.spark_workers}, but the lab starts a cluster only for a master on "
            f"127.0.0.1 (spark://127.0.0.1:PORT), and spark_master is {p.spark_master!r}: set spark_workers: 0"
        )
    for name in ("postgres_port", "spark_master_ui_port"):
        if not 1 <= getattr(p, name) <= 65535:
            raise ParamsError(f"parameter '{name}' must be a TCP port (1-65535), got {getattr(p, name)}")
    if p.postgres_dsn and urlsplit(p.postgres_dsn).password or "password=" in p.postgres_dsn:
        raise ParamsError(
            "parameter 'postgres_dsn' must not carry a password (params files and notebook outputs are "
            "shared): leave it out and set PGPASSWORD or use ~/.pgpass"
        )
    if not p.profile or any(c in p.profile for c in "/\\ "):
        raise ParamsError(f"parameter 'profile' must be a plain name, got {p.profile!r}")


def from_mapping(values: Mapping[str, Any], source: str = "parameters") -> Params:
    """Build Params from a flat mapping, rejecting unknown keys and wrong types by name."""
    known = set(PARAM_TYPES)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ParamsError(f"{source}: unknown parameter '{key}'{suggestion}")
        checked[key] = _check_type(key, value)
    return Params(**checked)


def load_params(path: str | Path | None = None) -> Params:
    """Read a params YAML file (default: params/local.yaml) and validate it before anything starts."""
    path = Path(path) if path else project_root() / "params" / "local.yaml"
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: must be a flat mapping of parameter: value")
    return from_mapping(values, source=str(path))


def resolve(namespace: Mapping[str, Any]) -> Params:
    """Params for a notebook: its `parameters` cell plus whatever papermill injected (`-f`, `-p`).

    Only names that are lab parameters are taken from the namespace, so a notebook can pass
    ``globals()``; anything it does not set keeps the local-profile default.
    """
    return from_mapping({k: v for k, v in namespace.items() if k in PARAM_TYPES}, source="notebook parameters")
