"""Lab parameters: one flat, typed record shared by the runner, the notebooks and the tests.

A profile is a flat YAML file in ``params/`` (``local.yaml`` is the default). Papermill injects its
keys into a notebook with ``-f``; the notebook then calls :func:`resolve` on its globals, so the
notebook defaults, a params file and the runner all meet in the same validated :class:`Params`.
Every path is resolved from the project root, never from the current directory.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
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
#: Where a profile runs, and the engines each stage may use (docs/decisions/0002-aws-profile.md).
PLATFORMS: tuple[str, ...] = ("local", "compose", "cluster", "aws")
ENGINE_CHOICES: dict[str, tuple[str, ...]] = {
    "lake_storage": ("local", "s3"),
    "catalog_engine": ("duckdb", "glue"),
    "query_engine": ("duckdb", "athena"),
    "warehouse_engine": ("postgres", "redshift"),
}
#: Host names of this machine's loopback: where the lab starts engines, and binds its Spark driver.
LOCAL_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")


class ParamsError(ValueError):
    """A parameter is unknown, has the wrong type or an impossible value; the message names it."""


def route_weights(spec: str) -> dict[str, float]:
    """Parse the ``routes`` parameter ('M1/M6:2,M40:1'); unknown routes and bad weights name it."""
    from smartcity.fleet.roads import load_network

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
    platform: str = field(
        default="local", metadata=_doc("where the profile runs: local, compose, cluster or aws (which engine keys it must state)")
    )
    lake_storage: str = field(
        default="local", metadata=_doc("local: the lake and checkpoints under data_dir; s3: under s3://s3_bucket/s3_prefix")
    )
    catalog_engine: str = field(default="duckdb", metadata=_doc("duckdb: the lab's crawler into DuckDB; glue: the AWS Glue Data Catalog"))
    query_engine: str = field(default="duckdb", metadata=_doc("duckdb: the Athena SQL transpiled to DuckDB; athena: Amazon Athena"))
    warehouse_engine: str = field(default="postgres", metadata=_doc("postgres: PostgreSQL as Redshift's stand-in; redshift: Redshift Serverless"))
    aws_region: str = field(default="", metadata=_doc("AWS region of every AWS resource (credentials come from the default chain)"))
    s3_bucket: str = field(default="", metadata=_doc("lake_storage s3: the bucket of the lake, checkpoints and Athena results"))
    s3_prefix: str = field(default="smartcity", metadata=_doc("lake_storage s3: the key prefix everything of this profile lives under"))
    glue_database: str = field(default="smartcity", metadata=_doc("Glue database the catalog registers tables in (the .sql files say smartcity)"))
    glue_crawler: bool = field(
        default=False, metadata=_doc("catalog_engine glue: also run a Glue crawler on the lab's tables (billed per "
                                     "DPU-hour; smartcity aws provision creates it)")
    )
    athena_workgroup: str = field(default="smartcity", metadata=_doc("Athena workgroup the queries run in (enforces the result location)"))
    athena_output: str = field(
        default="", metadata=_doc("Athena result location s3://...; empty: s3://s3_bucket/s3_prefix/athena-results/")
    )
    redshift_workgroup: str = field(default="smartcity", metadata=_doc("Redshift Serverless workgroup the warehouse connects to"))
    redshift_database: str = field(default="dev", metadata=_doc("Redshift database of the warehouse"))
    redshift_copy_role_arn: str = field(
        default="", metadata=_doc("IAM role Redshift assumes to COPY from the lake (smartcity aws provision prints it)")
    )
    redshift_base_rpu: int = field(
        default=8, metadata=_doc("base capacity of the Redshift Serverless workgroup provisioning creates (8 is the least)")
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
    def s3_root(self) -> str:
        """s3://bucket/prefix of this profile (no trailing slash); empty unless the lake is on S3."""
        if self.lake_storage != "s3":
            return ""
        return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}".rstrip("/")

    @property
    def athena_results(self) -> str:
        """Where Athena writes query results: athena_output, or a prefix beside the lake."""
        return self.athena_output or (f"{self.s3_root}/athena-results/" if self.s3_root else "")

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
    from smartcity.fleet.contracts import SCHEMA_VERSIONS

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
    _check_engines(p)
    if not p.profile or any(c in p.profile for c in "/\\ "):
        raise ParamsError(f"parameter 'profile' must be a plain name, got {p.profile!r}")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


#: Names an AWS profile may spell with these, filled in from the caller's account (so aws.yaml works as is).
ACCOUNT_NAMES: tuple[str, ...] = ("s3_bucket", "redshift_copy_role_arn", "athena_output")


def _fill_account(text: str, account: str, region: str) -> str:
    return text.replace("{account}", account).replace("{region}", region)


def fill_account(p: Params, boto3_session: Any = None) -> Params:
    """Params with '{account}' and '{region}' filled in from the credentials in use (STS GetCallerIdentity).

    A profile can then name its bucket ``smartcity-{account}-{region}`` and its COPY role by the name
    `smartcity aws provision` gives it, and run in any account unedited. No call if nothing is templated.
    """
    if not any("{" in getattr(p, name) for name in ACCOUNT_NAMES):
        return p
    import boto3

    account = caller_account(boto3_session or boto3.Session(region_name=p.aws_region))
    return replace(p, **{name: _fill_account(getattr(p, name), account, p.aws_region) for name in ACCOUNT_NAMES})


_ACCOUNTS: dict[tuple[str, str], str] = {}


def caller_account(boto3_session: Any) -> str:
    """The 12-digit account of the credentials in use: one STS call per access key and endpoint, not
    one per store or reader that fills in a profile's names."""
    sts = boto3_session.client("sts")
    credentials = boto3_session.get_credentials()
    key = (credentials.get_frozen_credentials().access_key if credentials else "", sts.meta.endpoint_url)
    if key not in _ACCOUNTS:
        _ACCOUNTS[key] = str(sts.get_caller_identity()["Account"])
    return _ACCOUNTS[key]


def _check_engines(p: Params) -> None:
    """The engine selectors name known engines, and AWS engines get what they stand on."""
    if p.platform not in PLATFORMS:
        raise ParamsError(f"parameter 'platform' must be one of {', '.join(PLATFORMS)}, got {p.platform!r}")
    for name, choices in ENGINE_CHOICES.items():
        if getattr(p, name) not in choices:
            raise ParamsError(f"parameter '{name}' must be one of {', '.join(choices)}, got {getattr(p, name)!r}")
    needs = {"catalog_engine": ("glue", "lake_storage", "s3"), "query_engine": ("athena", "catalog_engine", "glue"),
             "warehouse_engine": ("redshift", "lake_storage", "s3")}
    for name, (value, other, required) in needs.items():
        if getattr(p, name) == value and getattr(p, other) != required:
            raise ParamsError(
                f"parameter '{name}' is {value}, which reads what {other} {required} provides, but {other} is "
                f"{getattr(p, other)!r}: set {other}: {required}"
            )
    if p.lake_storage == "s3":
        bucket = _fill_account(p.s3_bucket, "123456789012", p.aws_region)
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ParamsError(f"parameter 's3_bucket' must be an S3 bucket name (3-63 of a-z 0-9 . -), got {p.s3_bucket!r}")
        if not p.aws_region:
            raise ParamsError("parameter 'aws_region' is empty, but lake_storage is s3: name the bucket's region")
        if p.s3_prefix.startswith("/") or "//" in p.s3_prefix:
            raise ParamsError(f"parameter 's3_prefix' must be a key prefix without leading or double slashes, got {p.s3_prefix!r}")
    if p.lake_storage == "s3" and p.catalog_engine == "duckdb":
        raise ParamsError("parameter 'catalog_engine' is duckdb, whose views read the lake's local folders, but lake_storage "
                          "is s3: set catalog_engine: glue (a DuckDB query engine then reads the Glue tables' S3 files)")
    if p.athena_output and not p.athena_output.startswith("s3://"):
        raise ParamsError(f"parameter 'athena_output' must be an s3:// location, got {p.athena_output!r}")
    if p.warehouse_engine == "redshift" and not _ROLE_ARN.match(_fill_account(p.redshift_copy_role_arn, "123456789012", "")):
        raise ParamsError(
            "parameter 'redshift_copy_role_arn' must be the ARN of the role Redshift COPYs with "
            f"(arn:aws:iam::<account>:role/<name>; `smartcity aws provision` prints it), got {p.redshift_copy_role_arn!r}"
        )
    if not 8 <= p.redshift_base_rpu <= 1024 or p.redshift_base_rpu % 8:
        raise ParamsError(f"parameter 'redshift_base_rpu' must be a multiple of 8 from 8 to 1024, got {p.redshift_base_rpu}")


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


#: The engine each engine key configures; every other key is a pipeline key, the same on every platform.
ENGINE_OF: dict[str, str] = {
    **dict.fromkeys(("platform", *ENGINE_CHOICES), "selector"),
    **dict.fromkeys(("kafka_bootstrap", "kafka_embedded", "kafka_replication", "kafka_cluster_id"), "kafka"),
    **dict.fromkeys(("spark_master", "spark_driver_memory", "spark_driver_host", "spark_workers"), "spark"),
    **dict.fromkeys(("spark_worker_cores", "spark_worker_memory", "spark_executor_memory", "spark_cores_max",
                     "spark_master_ui_port"), "spark_standalone"),
    **dict.fromkeys(("postgres_dsn", "postgres_port", "postgres_fsync"), "postgres"),
    **dict.fromkeys(("aws_region", "s3_bucket", "s3_prefix"), "s3"),
    **dict.fromkeys(("glue_database", "glue_crawler"), "glue"),
    **dict.fromkeys(("athena_workgroup", "athena_output"), "athena"),
    **dict.fromkeys(("redshift_workgroup", "redshift_database", "redshift_copy_role_arn", "redshift_base_rpu"),
                    "redshift"),
}
#: Keys a params file never holds: the resolved file's guard, and the link to a parent file.
FINGERPRINT, EXTENDS = "params_fingerprint", "extends"


def engines_in_use(p: Params) -> set[str]:
    """The engines a run of these params talks to (the engine keys of the others are ignored)."""
    used = {"selector", "kafka", "spark", p.warehouse_engine}
    if p.spark_standalone:
        used.add("spark_standalone")
    if p.lake_storage == "s3":
        used.add("s3")
    if p.catalog_engine == "glue":
        used.add("glue")
    if p.query_engine == "athena":
        used.add("athena")
    return used


def fingerprint(p: Params) -> str:
    """A hash of the engine keys in use: a notebook refuses engine settings that `params resolve` did not check."""
    used = engines_in_use(p)
    engine_values = {k: getattr(p, k) for k, engine in sorted(ENGINE_OF.items()) if engine in used}
    return hashlib.sha256(json.dumps(engine_values, sort_keys=True).encode()).hexdigest()[:16]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: must be a flat mapping of parameter: value")
    if FINGERPRINT in values:
        raise ParamsError(f"{path}: holds '{FINGERPRINT}', the mark of a resolved file; resolved files are "
                          "papermill's input, not a profile to edit or extend")
    return values


def _chain(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """A profile and the files it extends, base first (a cycle is an error)."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[Path] = []
    while True:
        path = path.resolve()
        if path in seen:
            raise ParamsError("params files extend each other in a cycle: " + " -> ".join(
                display_path(p) for p in (*seen, path)))
        seen.append(path)
        values = _read_yaml(path)
        chain.insert(0, (path, values))
        parent = values.get(EXTENDS)
        if parent is None:
            return chain
        if not isinstance(parent, str) or not parent:
            raise ParamsError(f"{path}: '{EXTENDS}' must name a params file beside it, got {parent!r}")
        path = path.parent / parent


def resolve_file(path: str | Path) -> dict[str, Any]:
    """A profile as one flat mapping: its chain merged, checked for leaks, with its fingerprint.

    Files merge base first, each key overriding its parent's (papermill's repeated ``-f``). Then the
    platform rule: an engine key the run uses must be stated by a file of the profile's own platform,
    because a value inherited from another platform, or a notebook's default, is a local value (the
    embedded broker, ``127.0.0.1``) silently reused on a cluster or on AWS. A profile may not state
    engine keys its engines do not use (but for their defaults, as a flat file of every key has them),
    and a file without a platform that others extend holds pipeline keys only.
    """
    chain = _chain(Path(path))
    leaf = chain[-1][0]
    merged: dict[str, Any] = {}
    origin: dict[str, tuple[Path, str | None]] = {}
    for file, values in chain:
        platform = values.get("platform", merged.get("platform"))
        if platform is None and file == leaf:  # a file extending nothing is a whole profile: local by default
            platform = Params().platform
        for key, value in values.items():
            if key == EXTENDS:
                continue
            if key in ENGINE_OF and platform is None:
                raise ParamsError(f"{display_path(file)} states the engine key '{key}' but no platform: a file "
                                  "without `platform:` holds pipeline keys only (see params/base.yaml)")
            merged[key] = value
            origin[key] = (file, platform)
    cfg = from_mapping(merged, source=display_path(leaf))
    if len(chain) > 1 and "profile" not in chain[-1][1]:  # else it would share its parent's data and outputs
        raise ParamsError(f"{display_path(leaf)} must state its own `profile:` (the name of its data and outputs)")
    used = engines_in_use(cfg)
    for key, engine in ENGINE_OF.items():
        stated_here = key in chain[-1][1]
        if engine not in used:
            if stated_here and chain[-1][1][key] != getattr(Params(), key):  # a default is harmless (a flat file)
                raise ParamsError(f"{display_path(leaf)} states '{key}', which no engine of this profile uses "
                                  f"({_why_unused(engine, cfg)}): remove it")
            merged.pop(key, None)
            continue
        if cfg.platform == "local":
            continue  # the defaults are the local platform's own values
        if key not in origin:
            raise ParamsError(f"{display_path(leaf)} (platform {cfg.platform}) must state '{key}': its {engine} "
                              f"engine uses it, and the default ({getattr(Params(), key)!r}) is the local profile's")
        file, platform = origin[key]
        if platform != cfg.platform:
            raise ParamsError(f"'{key}' comes from {display_path(file)} (platform {platform}); a {cfg.platform} "
                              f"profile must state it itself ({display_path(leaf)} or a {cfg.platform} file it extends)")
    flat = from_mapping(merged, source=display_path(leaf)).as_dict()
    return {**flat, FINGERPRINT: fingerprint(cfg)}


def _why_unused(engine: str, p: Params) -> str:
    selector = {"postgres": "warehouse_engine", "redshift": "warehouse_engine", "s3": "lake_storage", "glue": "catalog_engine",
                "athena": "query_engine", "spark_standalone": "spark_master"}.get(engine, "platform")
    return f"{selector} is {getattr(p, selector)!r}"


def load_params(path: str | Path | None = None) -> Params:
    """Read a profile (default: params/local.yaml), resolve what it extends, validate before anything starts."""
    values = resolve_file(Path(path) if path else project_root() / "params" / "local.yaml")
    values.pop(FINGERPRINT)
    return from_mapping(values)


def resolve(namespace: Mapping[str, Any]) -> Params:
    """Params for a notebook: its `parameters` cell plus whatever papermill injected (`-f`, `-p`).

    Only names that are lab parameters are taken from the namespace, so a notebook can pass
    ``globals()``; anything it does not set keeps the local-profile default. Engine settings of
    another platform must come from a resolved profile (``smartcity params resolve``), unchanged.
    """
    if EXTENDS in namespace:
        raise ParamsError(f"the notebook got a profile that extends {namespace[EXTENDS]!r} unresolved: papermill "
                          "merges files without their parents; run `smartcity params resolve <profile> -o <file>` "
                          "and pass that file with -f (or use `make run PARAMS=<profile>`)")
    cfg = from_mapping({k: v for k, v in namespace.items() if k in PARAM_TYPES}, source="notebook parameters")
    if cfg.platform != "local" and namespace.get(FINGERPRINT) != fingerprint(cfg):
        raise ParamsError(
            f"the notebook's engine settings for platform {cfg.platform} were not resolved from a profile, or were "
            "changed after (-p of an engine key): run `smartcity params resolve <profile> -o <file>` and pass that "
            "file with -f; pipeline keys (vehicles, seed...) may still be overridden with -p"
        )
    return cfg
