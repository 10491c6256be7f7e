"""Every setting of a lab run, as one validated record of groups: what a notebook's ``cfg`` is.

A notebook's ``parameters`` cell, a profile in ``params/`` (:mod:`smartcity.profiles`) and
papermill's ``-f``/``-p`` all give flat keys (``seed``, ``kafka_bootstrap``); :func:`from_mapping`
checks each key's name and type and builds :class:`Params`, whose groups are what functions take:
``cfg.pipeline`` (this module), ``cfg.fleet`` (:mod:`smartcity.fleet.params`), ``cfg.kafka``,
``cfg.spark``, ``cfg.stream``, ``cfg.trino``, ``cfg.warehouse``, ``cfg.aws`` (:mod:`smartcity.platform.engine_params`),
``cfg.routes`` (:mod:`smartcity.routes.params`) and ``cfg.advice`` (:mod:`smartcity.advice.params`). Defaults
are the small, offline ``local`` profile. Every path is resolved from the project root, never from the current directory.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartcity.advice.params import AdviceParams
from smartcity.fleet.params import FleetParams
from smartcity.platform import aws
from smartcity.platform.engine_params import (
    AwsParams,
    KafkaParams,
    SparkParams,
    StreamParams,
    TrinoParams,
    WarehouseParams,
)
from smartcity.platform.params import Group, ParamsError, ProfilePaths, check_type, param, project_root
from smartcity.routes.params import RoutesParams

if TYPE_CHECKING:
    import boto3

__all__ = ["Params", "ParamsError", "describe", "engines_in_use", "fingerprint", "from_mapping", "resolve"]

MODES: tuple[str, ...] = ("batch", "live")
#: Where a profile runs, and the engines each stage may use (docs/decisions/0002-aws-profile.md).
PLATFORMS: tuple[str, ...] = ("local", "compose", "cluster", "aws")
ENGINE_CHOICES: dict[str, tuple[str, ...]] = {
    "lake_storage": ("local", "s3"),
    "catalog_engine": ("duckdb", "glue"),
    "query_engine": ("duckdb", "trino", "athena"),
    "warehouse_engine": ("postgres", "redshift"),
}
#: An engine that reads what another provides: (engine key, value) needs (other key, value).
_NEEDS = {
    ("catalog_engine", "glue"): ("lake_storage", "s3"),
    ("query_engine", "athena"): ("catalog_engine", "glue"),
    ("warehouse_engine", "redshift"): ("lake_storage", "s3"),
}


@dataclass(frozen=True)
class PipelineParams(Group):
    """The run as a whole: its name and folders, batch or live, a fresh start or not, and the engine of each stage."""

    profile: str = param("local", "run name: data in data_dir, results in output_dir")
    platform: str = param(
        "local", "where the profile runs: local, compose, cluster or aws (which engine keys it must state)"
    )
    mode: str = param("batch", "batch: produce a bounded run, then stream it; live: drive and stream at once")
    reset_run: bool = param(True, "01_simulate starts afresh: empty topics, lake and stream checkpoints")
    live_seconds: float = param(
        0.0, "live mode: wall-clock seconds the fleet drives before the stream drains; 0 until stopped"
    )
    live_map_port: int = param(
        8765, "live mode: the live map's port on 127.0.0.1 (http://127.0.0.1:<port>/); 0: a free one"
    )
    lake_storage: str = param(
        "local", "local: the lake and checkpoints under data_dir; s3: under s3://s3_bucket/s3_prefix"
    )
    catalog_engine: str = param("duckdb", "duckdb: the lab's crawler into DuckDB; glue: the AWS Glue Data Catalog")
    query_engine: str = param(
        "duckdb",
        "duckdb: the Athena SQL transpiled to DuckDB; trino: unchanged on the lab's Trino (Athena's engine); "
        "athena: Amazon Athena",
    )
    warehouse_engine: str = param(
        "postgres", "postgres: PostgreSQL as Redshift's stand-in; redshift: Redshift Serverless"
    )
    data_dir: str = param("data/{profile}", "Kafka logs, lake, checkpoints, catalog, warehouse files")
    output_dir: str = param("outputs/{profile}", "executed notebooks, maps and report")

    def __post_init__(self) -> None:
        if not self.profile or any(c in self.profile for c in "/\\ "):
            raise self.fail("profile", f"must be a plain name, got {self.profile!r}")
        self.one_of("mode", MODES)
        self.not_negative(("live_seconds",))
        if not 0 <= self.live_map_port <= 65535:
            raise self.fail("live_map_port", f"must be a TCP port (1-65535) or 0, got {self.live_map_port}")
        self.one_of("platform", PLATFORMS)
        for name, choices in ENGINE_CHOICES.items():
            self.one_of(name, choices)
        for (name, value), (other, required) in _NEEDS.items():
            if getattr(self, name) == value and getattr(self, other) != required:
                raise self.fail(
                    name,
                    f"is {value}, which reads what {other} {required} provides, but {other} is "
                    f"{getattr(self, other)!r}: set {other}: {required}",
                )

    def _path(self, template: str) -> Path:
        path = Path(template.format(profile=self.profile))
        return path if path.is_absolute() else project_root() / path

    @property
    def paths(self) -> ProfilePaths:
        return ProfilePaths(self._path(self.data_dir), self._path(self.output_dir))


@dataclass(frozen=True)
class Params:
    """Every setting of a lab run, grouped by concern; defaults are the small, offline ``local`` profile."""

    pipeline: PipelineParams = field(default_factory=PipelineParams)
    fleet: FleetParams = field(default_factory=FleetParams)
    kafka: KafkaParams = field(default_factory=KafkaParams)
    spark: SparkParams = field(default_factory=SparkParams)
    stream: StreamParams = field(default_factory=StreamParams)
    trino: TrinoParams = field(default_factory=TrinoParams)
    warehouse: WarehouseParams = field(default_factory=WarehouseParams)
    aws: AwsParams = field(default_factory=AwsParams)
    routes: RoutesParams = field(default_factory=RoutesParams)
    advice: AdviceParams = field(default_factory=AdviceParams)

    def __post_init__(self) -> None:
        """What one group cannot check alone."""
        if self.routes.judge_seed and self.routes.judge_seed == self.fleet.seed:
            raise ParamsError(
                f"parameter 'route_judge_seed' must differ from 'seed' ({self.fleet.seed}): suggestions "
                "are judged on a run they did not learn from"
            )
        run = self.pipeline
        if run.lake_storage == "s3":
            self.aws.check_bucket()
        if run.lake_storage == "s3" and run.catalog_engine == "duckdb":
            raise run.fail(
                "catalog_engine",
                "is duckdb, whose views read the lake's local folders, but lake_storage "
                "is s3: set catalog_engine: glue (a DuckDB query engine then reads the "
                "Glue tables' S3 files)",
            )
        if run.warehouse_engine == "redshift":
            self.warehouse.check_copy_role()

    @property
    def paths(self) -> ProfilePaths:
        """Where this profile keeps its data and outputs."""
        return self.pipeline.paths

    @property
    def profile(self) -> str:
        return self.pipeline.profile

    def groups(self) -> list[Group]:
        return [getattr(self, f.name) for f in fields(self)]

    def as_dict(self) -> dict[str, Any]:
        """Every parameter under its flat key: what a params file, papermill and the report speak."""
        return {key: value for group in self.groups() for key, value in group.flat().items()}

    def with_values(self, **values: Any) -> Params:
        """A copy with some parameters changed, given by their flat keys (checked as any other)."""
        return from_mapping({**self.as_dict(), **values})


_GROUPS: dict[str, type[Group]] = {f.name: f.default_factory for f in fields(Params)}  # type: ignore[misc]
#: Parameter (flat key) -> its Python type.
PARAM_TYPES: dict[str, type] = {key: kind for group in _GROUPS.values() for key, _, kind, _, _ in group.specs()}


def describe() -> list[tuple[str, str, Any, str]]:
    """(name, type, default, doc) for every parameter: what the README and --help print."""
    return [
        (key, kind.__name__, default, doc) for group in _GROUPS.values() for key, _, kind, default, doc in group.specs()
    ]


def from_mapping(values: Mapping[str, Any], source: str = "parameters") -> Params:
    """Build Params from a flat mapping, rejecting unknown keys and wrong types by name."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in PARAM_TYPES:
            hint = difflib.get_close_matches(key, sorted(PARAM_TYPES), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ParamsError(f"{source}: unknown parameter '{key}'{suggestion}")
        checked[key] = check_type(key, value, PARAM_TYPES[key])
    return Params(**{name: group.from_flat(checked) for name, group in _GROUPS.items()})


# -- which engine keys a profile uses -------------------------------------------------------------
#: The engine each engine key configures; every other key is a pipeline key, the same on every platform.
ENGINE_OF: dict[str, str] = {
    **dict.fromkeys(("platform", *ENGINE_CHOICES), "selector"),
    **dict.fromkeys(("kafka_bootstrap", "kafka_embedded", "kafka_replication", "kafka_cluster_id"), "kafka"),
    **dict.fromkeys(("spark_master", "spark_driver_memory", "spark_driver_host", "spark_workers"), "spark"),
    **dict.fromkeys(
        (
            "spark_worker_cores",
            "spark_worker_memory",
            "spark_executor_memory",
            "spark_cores_max",
            "spark_master_ui_port",
        ),
        "spark_standalone",
    ),
    **dict.fromkeys(("trino_port", "trino_heap_mb"), "trino"),
    **dict.fromkeys(("postgres_dsn", "postgres_port", "postgres_fsync"), "postgres"),
    **dict.fromkeys(("aws_region", "s3_bucket", "s3_prefix"), "s3"),
    **dict.fromkeys(("glue_database", "glue_crawler"), "glue"),
    **dict.fromkeys(("athena_workgroup", "athena_output"), "athena"),
    **dict.fromkeys(
        ("redshift_workgroup", "redshift_database", "redshift_copy_role_arn", "redshift_base_rpu"), "redshift"
    ),
}
#: Keys a params file never holds: the resolved file's guard, and the link to a parent file.
FINGERPRINT, EXTENDS = "params_fingerprint", "extends"


def engines_in_use(p: Params) -> set[str]:
    """The engines a run of these params talks to (the engine keys of the others are ignored)."""
    run = p.pipeline
    used = {"selector", "kafka", "spark", run.warehouse_engine}
    if p.spark.standalone:
        used.add("spark_standalone")
    if run.lake_storage == "s3":
        used.add("s3")
    if run.catalog_engine == "glue":
        used.add("glue")
    if run.query_engine in ("athena", "trino"):
        used.add(run.query_engine)
    return used


#: The engines of :func:`engines_in_use` that are AWS services.
AWS_ENGINES = frozenset({"s3", "glue", "athena", "redshift"})


def uses_aws(p: Params) -> bool:
    return bool(AWS_ENGINES & engines_in_use(p))


def fingerprint(p: Params) -> str:
    """A hash of the engine keys in use: a notebook refuses engine settings that `params resolve` did not check."""
    used = engines_in_use(p)
    flat = p.as_dict()
    engine_values = {k: flat[k] for k, engine in sorted(ENGINE_OF.items()) if engine in used}
    return hashlib.sha256(json.dumps(engine_values, sort_keys=True).encode()).hexdigest()[:16]


def resolve(namespace: Mapping[str, Any]) -> Params:
    """Params for a notebook: its `parameters` cell plus whatever papermill injected (`-f`, `-p`).

    Only names that are lab parameters are taken from the namespace, so a notebook can pass
    ``globals()``; anything it does not set keeps the local-profile default. Engine settings of
    another platform must come from a resolved profile (``smartcity params resolve``), unchanged.
    """
    if EXTENDS in namespace:
        raise ParamsError(
            f"the notebook got a profile that extends {namespace[EXTENDS]!r} unresolved: papermill "
            "merges files without their parents; run `smartcity params resolve <profile> -o <file>` "
            "and pass that file with -f (or use `make run PARAMS=<profile>`)"
        )
    cfg = from_mapping({k: v for k, v in namespace.items() if k in PARAM_TYPES}, source="notebook parameters")
    if cfg.pipeline.platform != "local" and namespace.get(FINGERPRINT) != fingerprint(cfg):
        raise ParamsError(
            f"the notebook's engine settings for platform {cfg.pipeline.platform} were not resolved from a profile, or "
            "were changed after (-p of an engine key): run `smartcity params resolve <profile> -o <file>` and pass that "
            "file with -f; pipeline keys (vehicles, seed...) may still be overridden with -p"
        )
    return cfg


# -- '{account}' in AWS names -----------------------------------------------------------------------
def _fill(text: str, account: str, region: str) -> str:
    return text.replace("{account}", account).replace("{region}", region)


def fill_account(p: Params, boto3_session: boto3.Session | None = None) -> Params:
    """Params with '{account}' and '{region}' filled in from the credentials in use (STS GetCallerIdentity).

    A profile can then name its bucket ``smartcity-{account}-{region}`` and its COPY role by the name
    `smartcity aws provision` gives it, and run in any account unedited. No call if nothing is templated.
    """
    templated = (p.aws.s3_bucket, p.aws.athena_output, p.warehouse.redshift_copy_role_arn)
    if not any("{" in text for text in templated):
        return p
    region = p.aws.region
    account = aws.caller_account(aws.session(region, boto3_session))
    return replace(
        p,
        aws=replace(
            p.aws,
            s3_bucket=_fill(p.aws.s3_bucket, account, region),
            athena_output=_fill(p.aws.athena_output, account, region),
        ),
        warehouse=replace(
            p.warehouse, redshift_copy_role_arn=_fill(p.warehouse.redshift_copy_role_arn, account, region)
        ),
    )
