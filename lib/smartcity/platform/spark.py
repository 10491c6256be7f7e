"""The one Spark session factory: master from params, Kafka connector on the classpath, quiet.

A session is described by a :class:`SessionSpec`: the Spark settings, the profile's data dir, the
jars of the stages that run on it (the stream's contract check), and whether the lake is on S3.
A lake on S3 also gets S3A (hadoop-aws and the AWS SDK modules it needs) and its settings
(:func:`s3a_conf`); the local profiles' settings do not change.

Spark's own logs go to ``<data_dir>/logs/spark.log`` (not the notebook), the UI and the console
progress bar are off, timestamps are UTC and Parquet timestamps are written as standard INT64
microseconds so DuckDB, Arrow and PostgreSQL loaders read them without conversion. The driver
listens on 127.0.0.1 only: left alone, Spark picks the machine's external interface when the
host name resolves to loopback, and would serve its block manager and RPC there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pyspark import SparkContext
from pyspark.sql import SparkSession

from smartcity.platform import aws, jvm
from smartcity.platform.cluster import SparkCluster, ensure_cluster
from smartcity.platform.engine_params import LOCAL_HOSTS, SparkParams
from smartcity.platform.processes import EngineError

_LOG4J = Path(__file__).with_name("conf") / "log4j2-spark.properties"
_EXECUTOR_LOG4J = Path(__file__).with_name("conf") / "log4j2-executor.properties"
LOCAL_IP = "127.0.0.1"
#: The standalone cluster get_spark started (None when it found one running or uses local[*]).
_cluster: SparkCluster | None = None


#: The throughput collector for every JVM that runs tasks: the stream allocates a short-lived row, string
#: and buffer per message, and on two cores G1's concurrent work and barriers cost it a quarter of its
#: CPU per event (measured: docs/decisions/0001-lake-commits.md, "Throughput").
JVM_GC = "-XX:+UseParallelGC"


@dataclass(frozen=True)
class SessionSpec:
    """What one of the lab's Spark sessions is made of."""

    spark: SparkParams
    data_dir: Path  # logs, the driver's scratch space, a standalone cluster's workers
    app: str  # spark.app.name: smartcity-<profile>
    jars: tuple[Path, ...] = ()  # the stages' own jars (the stream's contract check)
    s3_region: str = ""  # the lake is on S3 in this region: S3A's jars and settings

    @property
    def on_s3(self) -> bool:
        return bool(self.s3_region)


def spark_conf(spec: SessionSpec) -> dict[str, str]:
    """Every setting the lab gives Spark, in one place (tests and docs read it too).

    On a standalone cluster the executors are other JVMs, maybe on other hosts: they get their own
    logging (to stderr, which each worker keeps under its work dir) rather than the driver's log
    file, and their scratch space is their worker's (SPARK_LOCAL_DIRS), not the driver's
    (which :func:`get_spark` sets in the driver's environment, not in this conf).
    """
    spark = spec.spark
    log_file = spec.data_dir / "logs" / "spark.log"
    driver_opts = f"-Dlog4j2.configurationFile=file:{_LOG4J} -Dsmartcity.spark.log={log_file} {JVM_GC}"
    loopback = spark.driver_host in LOCAL_HOSTS
    conf = {
        "spark.master": spark.master,
        "spark.driver.host": spark.driver_host,
        # behind a container's name the driver must listen on the container's interfaces
        "spark.driver.bindAddress": LOCAL_IP if loopback else "0.0.0.0",
        "spark.app.name": spec.app,
        "spark.jars": ",".join(str(j) for j in [*jvm.spark_connector_jars(), *spec.jars]),
        "spark.driver.memory": spark.driver_memory,
        "spark.driver.extraJavaOptions": driver_opts,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        "spark.sql.adaptive.enabled": "true",
        # the stream stages each micro-batch with a small file write: commit task files in place
        # (algorithm 2), no _SUCCESS file (the lake's commit log has its own marker), no .crc files
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    }
    if not spec.on_s3:
        # the stream's checkpoint (offsets, commits) through Hadoop's FileSystem: an atomic rename
        # on a local disk. The default manager (FileContext) cost 150-200 ms per micro-batch here, a
        # fifth of a 10,000-event batch; this one 30 ms (measured with the queries' durationMs)
        conf["spark.sql.streaming.checkpointFileManagerClass"] = (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        )
    else:  # s3
        conf["spark.jars"] = ",".join([conf["spark.jars"], *(str(j) for j in jvm.s3a_jars())])
        conf.update(s3a_conf(spec.s3_region))
    if spark.standalone:
        conf["spark.executor.extraJavaOptions"] = f"-Dlog4j2.configurationFile={_EXECUTOR_LOG4J.as_uri()} {JVM_GC}"
        conf["spark.executor.memory"] = spark.executor_memory
        if spark.cores_max:
            conf["spark.cores.max"] = str(spark.cores_max)
    else:  # local[*]: the executor is the driver's JVM
        conf["spark.executor.extraJavaOptions"] = driver_opts
    return conf


#: The AWS SDK's own default chain (system properties, environment, web identity, ~/.aws profiles,
#: container and instance roles); S3A's default list has no profile provider. S3A builds it with
#: its static create(), the SDK's one shared instance, which closing an S3A FileSystem closes too
#: (harmless for environment and profile credentials; aws/aws-sdk-java-v2#3493). SSO profiles need
#: SDK modules (sso, ssooidc) that hadoop-aws.pom.xml leaves out.
S3A_CREDENTIALS = "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"


def s3a_conf(region: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Spark settings for s3a:// when the lake is on S3 (docs/decisions/0002-aws-profile.md §1, §5).

    Credentials come from the AWS default chain, never from params. The classic `file` committer
    with algorithm 1 promotes only committed task attempts, at job commit; with algorithm 2 each task
    copies its files into the destination as it commits, so a failed job leaves part of its output
    there. An endpoint from the environment (moto in tests, any S3-compatible store) is addressed
    path-style: a bucket as a host name needs DNS that a test endpoint does not have.
    """
    conf = {
        "spark.hadoop.fs.s3a.aws.credentials.provider": S3A_CREDENTIALS,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.committer.name": "file",
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "1",
        # S3A buffers uploads in local files it gets through FileSystem.getLocal, which must be the
        # checksummed LocalFileSystem (RawLocalFileSystem fails a cast there, see HADOOP-18904).
        # This profile's output goes to S3, where no .crc files are written.
        "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.LocalFileSystem",
    }
    endpoint = aws.endpoint("s3", environ)
    if endpoint:
        scheme = urlsplit(endpoint).scheme
        if scheme not in ("http", "https"):
            raise EngineError(
                f"the S3 endpoint must be an http:// or https:// URL, got {endpoint!r} "
                "(from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)"
            )
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(scheme == "https").lower()
    return conf


def get_spark(spec: SessionSpec) -> SparkSession:
    """Start (or return the running) Spark session for this profile."""
    global _cluster
    os.environ.setdefault("JAVA_HOME", str(jvm.java_home()))
    if spec.spark.driver_host in LOCAL_HOSTS:
        os.environ["SPARK_LOCAL_IP"] = LOCAL_IP  # read by the JVM at start-up, before any conf is applied
    (spec.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    scratch = spec.data_dir / "spark" / "driver-tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    # the driver's scratch space, as an environment variable: spark.local.dir would also be sent to
    # executors, which must use their worker's (SPARK_LOCAL_DIRS, set by the lab's workers)
    os.environ["SPARK_LOCAL_DIRS"] = str(scratch)
    if not spec.spark.standalone or spec.spark.workers:
        # the executors' Python workers (the stream's Parquet writer) run this interpreter, with the lab's
        # packages: local[*] and the lab's own workers are on this machine. PySpark sends the driver's
        # PYSPARK_PYTHON with each task; workers the lab did not start (compose, your cluster) get
        # "python3" unless you set it, and need the lab's package there (docker/spark/Dockerfile has it)
        os.environ["PYSPARK_PYTHON"] = sys.executable
    conf = spark_conf(spec)
    if spec.on_s3:
        refuse_session_without(conf["spark.jars"])
    if _cluster is None or not _cluster.alive():
        _cluster = ensure_cluster(spec.spark, spec.data_dir / "spark")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    with _jvm_output_to(spec.data_dir / "logs" / "spark-driver.out"):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def jars_missing(running: str, wanted: str) -> list[str]:
    """Jars of ``wanted`` (a spark.jars value) that the ``running`` session's spark.jars lacks."""
    have = set(filter(None, running.split(",")))
    return [jar for jar in filter(None, wanted.split(",")) if jar not in have]


def refuse_session_without(jars: str) -> None:
    """Fail if this process already runs a Spark session without these jars.

    getOrCreate would return that session as it is (jars are fixed when its JVM starts), and an s3a://
    path would then fail far from the cause, with "No FileSystem for scheme s3a".
    """
    running = SparkContext._active_spark_context
    if running is None:
        return
    missing = jars_missing(running.getConf().get("spark.jars", ""), jars)
    if missing:
        raise EngineError(
            f"this process already runs a Spark session ({running.appName}) without {len(missing)} of the jars this "
            f"profile needs ({Path(missing[0]).name}, ...); stop it first (smartcity.platform.spark.stop_spark) or restart "
            "the kernel"
        )


@contextmanager
def _jvm_output_to(path: Path) -> Iterator[None]:
    """Point fds 1 and 2 at a file while the driver JVM starts, so it inherits them for life.

    The JVM writes to the process's real stdout/stderr (start-up warnings such as the incubator
    module notice), which a notebook kernel would show in cell outputs; Python's own output is
    unaffected because sys.stdout/sys.stderr are restored before anything else runs.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "ab") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def stop_spark(spark: SparkSession, timeout_s: float = 30.0) -> None:
    """Stop the session and its driver JVM.

    ``SparkSession.stop()`` leaves pyspark's gateway JVM running for as long as the Python process
    lives; the lab stops what it starts, so the JVM goes too (it exits when its stdin closes), and
    the next :func:`get_spark` starts a fresh one.
    """
    global _cluster
    try:
        spark.stop()
    finally:
        if _cluster is not None:  # a cluster this session started goes with it
            _cluster.stop()
            _cluster = None
    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    finally:
        SparkContext._gateway = None
        SparkContext._jvm = None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def spark_session(spec: SessionSpec) -> Iterator[SparkSession]:
    """A Spark session whose driver JVM is stopped on exit, also on error and Ctrl-C."""
    spark = get_spark(spec)
    try:
        yield spark
    finally:
        stop_spark(spark)
