"""The engines' settings, one group per engine: Kafka, Spark (and its stream), Trino, the warehouse, AWS.

Defaults are the small, offline ``local`` profile. Which of them a profile must state, and which
it may not, depends on the engines it uses (:func:`smartcity.params.engines_in_use`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from smartcity.platform.params import Group, ParamsError, host_port, param

#: Host names of this machine's loopback: where the lab starts engines, and binds its Spark driver.
LOCAL_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
PRODUCER_BACKENDS: tuple[str, ...] = ("kafka-python", "confluent-kafka")
#: Below this heap Trino 476 fails its own start-up checks or the lab's queries.
MIN_TRINO_HEAP_MB = 512


@dataclass(frozen=True)
class KafkaParams(Group):
    """The broker (or quorum) the fleet produces to and the stream reads, and how the producer sends."""

    PREFIX = "kafka_"
    bootstrap: str = param("127.0.0.1:9092", "Kafka bootstrap servers host:port")
    embedded: bool = param(
        True,
        "true: this profile's own broker (started on 127.0.0.1 if not running, data in "
        "data_dir); false: an external broker, used but never emptied",
    )
    partitions: int = param(3, "partitions per topic when the lab creates it")
    replication: int = param(
        1,
        "replicas per topic when the lab creates it; the lab's own brokers (one per "
        "kafka_bootstrap address) take it as their default, with min.insync.replicas = "
        "min(2, replicas)",
    )
    cluster_id: str = param(
        "",
        "cluster id of a broker this profile owns but did not start (docker compose's); "
        "empty: the id the lab formatted its own brokers with, in data_dir",
    )
    producer_backend: str = param(
        "kafka-python", "kafka-python (the default) or confluent-kafka (faster, librdkafka)", key="producer_backend"
    )

    def __post_init__(self) -> None:
        self.at_least_one(("partitions", "replication"))
        self.one_of("producer_backend", PRODUCER_BACKENDS)
        addresses = self.bootstrap.split(",")
        for address in addresses:
            if host_port(address) is None:
                raise self.fail(
                    "bootstrap",
                    f"must be host:port[,host:port...], got {self.bootstrap!r} ({address.strip()!r} is not host:port)",
                )
        if len(set(map(str.strip, addresses))) < len(addresses):
            raise self.fail("bootstrap", f"names an address twice: {self.bootstrap!r}")

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) of the bootstrap, in order: one per broker of the lab's own quorum."""
        return [hp for a in self.bootstrap.split(",") if (hp := host_port(a))]


@dataclass(frozen=True)
class SparkParams(Group):
    """Where Spark runs: local[N] in the driver's JVM, or a standalone cluster (found, or started by the lab)."""

    PREFIX = "spark_"
    master: str = param("local[2]", "Spark master URL")
    driver_memory: str = param("1g", "Spark driver heap")
    driver_host: str = param(
        "127.0.0.1", "address the driver listens on and executors call back to (a container's name under compose)"
    )
    workers: int = param(
        0,
        "standalone workers the lab starts with its own master when spark_master is "
        "spark://127.0.0.1:PORT and nothing answers there; 0: never start a cluster",
    )
    worker_cores: int = param(1, "cores each worker the lab starts offers")
    worker_memory: str = param("1g", "memory each worker the lab starts offers")
    executor_memory: str = param("768m", "heap of each executor on a standalone cluster")
    cores_max: int = param(0, "most cores the lab's application takes from a standalone cluster; 0: all offered")
    master_ui_port: int = param(8080, "web UI port of the standalone master (its /json/ lists the workers)")

    def __post_init__(self) -> None:
        self.at_least_one(("worker_cores",))
        self.not_negative(("workers", "cores_max"))
        self.tcp_port(("master_ui_port",))
        if self.master.startswith("spark://") and self.standalone is None:
            raise self.fail("master", f"must be spark://host:port, got {self.master!r}")
        if self.workers and (self.standalone or ("", 0))[0] not in LOCAL_HOSTS:
            raise self.fail(
                "workers",
                f"is {self.workers}, but the lab starts a cluster only for a master on "
                f"127.0.0.1 (spark://127.0.0.1:PORT), and spark_master is {self.master!r}: "
                "set spark_workers: 0",
            )

    @property
    def standalone(self) -> tuple[str, int] | None:
        """(host, port) of a spark:// master, None for local[...] and other masters."""
        if not self.master.startswith("spark://"):
            return None
        return host_port(self.master.removeprefix("spark://").split(",")[0])


@dataclass(frozen=True)
class StreamParams(Group):
    """How the stream's Spark query takes its micro-batches."""

    PREFIX = "stream_"
    max_batch_events: int = param(200_000, "most Kafka messages one micro-batch takes (bounds its memory)")
    trigger_seconds: float = param(1.0, "live mode: seconds between two micro-batches")
    timeout_seconds: int = param(600, "bound on a batch (availableNow) streaming run before it counts as stuck")
    warm_up_events: int = param(
        300_000,
        "live mode: simulated messages put through the stream's path before the fleet starts, so the "
        "JVM has compiled it (0: none, and the first micro-batches are slow)",
    )

    def __post_init__(self) -> None:
        self.at_least_one(("max_batch_events", "timeout_seconds"))
        self.positive(("trigger_seconds",))
        self.not_negative(("warm_up_events",))


@dataclass(frozen=True)
class TrinoParams(Group):
    """The lab's single-node Trino (query_engine: trino): Athena's engine, on this machine."""

    PREFIX = "trino_"
    port: int = param(8093, "port of the lab's Trino on 127.0.0.1 (coordinator and worker in one JVM)")
    heap_mb: int = param(1024, "Trino's JVM heap in MiB (queries may use about half of it)")

    def __post_init__(self) -> None:
        self.tcp_port(("port",))
        if self.heap_mb < MIN_TRINO_HEAP_MB:
            raise self.fail("heap_mb", f"must be at least {MIN_TRINO_HEAP_MB} (MiB), got {self.heap_mb}")


_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


@dataclass(frozen=True)
class WarehouseParams(Group):
    """The warehouse's engines: PostgreSQL (embedded, or at a DSN) and Redshift Serverless."""

    postgres_dsn: str = param("", "warehouse DSN; empty starts the embedded PostgreSQL on postgres_port")
    postgres_port: int = param(5433, "port of the embedded PostgreSQL on 127.0.0.1")
    postgres_fsync: bool = param(
        True, "embedded PostgreSQL flushes commits to disk; false is faster and loses them on a crash"
    )
    redshift_workgroup: str = param("smartcity", "Redshift Serverless workgroup the warehouse connects to")
    redshift_database: str = param("dev", "Redshift database of the warehouse")
    redshift_copy_role_arn: str = param(
        "", "IAM role Redshift assumes to COPY from the lake (smartcity aws provision prints it)"
    )
    redshift_base_rpu: int = param(
        8, "base capacity of the Redshift Serverless workgroup provisioning creates (8 is the least)"
    )

    def __post_init__(self) -> None:
        self.tcp_port(("postgres_port",))
        if urlsplit(self.postgres_dsn).password or "password=" in self.postgres_dsn:
            raise self.fail(
                "postgres_dsn",
                "must not carry a password (params files and notebook outputs are "
                "shared): leave it out and set PGPASSWORD or use ~/.pgpass",
            )
        if not 8 <= self.redshift_base_rpu <= 1024 or self.redshift_base_rpu % 8:
            raise self.fail(
                "redshift_base_rpu", f"must be a multiple of 8 from 8 to 1024, got {self.redshift_base_rpu}"
            )

    def check_copy_role(self, account_filler: str = "123456789012") -> None:
        """The COPY role must be an IAM role ARN (``{account}`` may stand for the caller's account)."""
        if not _ROLE_ARN.match(
            self.redshift_copy_role_arn.replace("{account}", account_filler).replace("{region}", "")
        ):
            raise self.fail(
                "redshift_copy_role_arn",
                "must be the ARN of the role Redshift COPYs with (arn:aws:iam::<account>:role/<name>; "
                f"`smartcity aws provision` prints it), got {self.redshift_copy_role_arn!r}",
            )


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class AwsParams(Group):
    """Where a profile's AWS resources are: region, bucket and prefix, Glue database, Athena workgroup."""

    region: str = param(
        "", "AWS region of every AWS resource (credentials come from the default chain)", key="aws_region"
    )
    s3_bucket: str = param("", "lake_storage s3: the bucket of the lake, checkpoints and Athena results")
    s3_prefix: str = param("smartcity", "lake_storage s3: the key prefix everything of this profile lives under")
    glue_database: str = param(
        "smartcity", "Glue database the catalog registers tables in (the .sql files say smartcity)"
    )
    glue_crawler: bool = param(
        False,
        "catalog_engine glue: also run a Glue crawler on the lab's tables (billed per "
        "DPU-hour; smartcity aws provision creates it)",
    )
    athena_workgroup: str = param("smartcity", "Athena workgroup the queries run in (enforces the result location)")
    athena_output: str = param("", "Athena result location s3://...; empty: s3://s3_bucket/s3_prefix/athena-results/")

    def __post_init__(self) -> None:
        if self.athena_output and not self.athena_output.startswith("s3://"):
            raise self.fail("athena_output", f"must be an s3:// location, got {self.athena_output!r}")

    def crawler_name(self, profile: str) -> str:
        """The optional Glue crawler of a profile (provisioning grants the runner StartCrawler on it)."""
        return f"{self.glue_database}-{profile}"

    def check_bucket(self) -> None:
        """What a lake on S3 needs: a bucket name, a region, a clean prefix (``{account}`` may be in the name)."""
        bucket = self.s3_bucket.replace("{account}", "123456789012").replace("{region}", self.region)
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise self.fail("s3_bucket", f"must be an S3 bucket name (3-63 of a-z 0-9 . -), got {self.s3_bucket!r}")
        if not self.region:
            raise ParamsError("parameter 'aws_region' is empty, but lake_storage is s3: name the bucket's region")
        if self.s3_prefix.startswith("/") or "//" in self.s3_prefix:
            raise self.fail(
                "s3_prefix", f"must be a key prefix without leading or double slashes, got {self.s3_prefix!r}"
            )

    @property
    def s3_root(self) -> str:
        """s3://bucket/prefix (no trailing slash); empty without a bucket."""
        if not self.s3_bucket:
            return ""
        return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}".rstrip("/")

    @property
    def athena_results(self) -> str:
        """Where Athena writes query results: athena_output, or a prefix beside the lake."""
        return self.athena_output or (f"{self.s3_root}/athena-results/" if self.s3_root else "")
