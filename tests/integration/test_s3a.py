"""Spark on s3a:// against moto's S3 server (docs/decisions/0002-aws-profile.md §1, build step 4):
a partitioned write, a stream whose checkpoint lives on S3 and resumes in a new driver, and the
classic v1 committer leaving nothing behind; checked with boto3, which shares no code with S3A.

Spark runs in child processes (``python -m tests.integration.test_s3a``) through the lab's own
``spark_session``: the session-wide Spark of the other integration tests runs without S3A's jars,
and jars are fixed when a JVM starts. A second driver JVM is also what a checkpoint must survive.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pyarrow.parquet as pq
import pytest
import yaml

from smartcity import params as config
from smartcity import steps
from smartcity.params import Params
from smartcity.platform import jvm
from smartcity.platform.params import project_root
from smartcity.platform.processes import EngineError
from smartcity.platform.spark import S3A_CREDENTIALS, jars_missing, s3a_conf, spark_conf
from tests.conftest import lab_params

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = pytest.mark.integration

BUCKET = "smartcity-s3a-test"
TABLE = "lake/readings"  # the partitioned Parquet write
TABLE_ROWS, DAYS = 3000, 3
INPUT = "input"  # JSON files the bounded stream reads
INPUT_FILES, ROWS_PER_FILE, FILES_PER_BATCH = 4, 25, 2
CHECKPOINT = "checkpoints/lake"  # as the lab lays it out: the query's checkpoint, its staging beside it
STAGING = f"{CHECKPOINT}/_staging"
CHILD_TIMEOUT_S = 600


def s3a_uri(cfg: Params, key: str) -> str:
    return f"s3a://{cfg.aws.s3_bucket}/{cfg.aws.s3_prefix}/{key}"


# --- what the child process runs -----------------------------------------------------------------


def write_table(spark: SparkSession, cfg: Params) -> dict[str, Any]:
    """A Parquet table partitioned by day, written and read back through s3a://."""
    rows = spark.range(TABLE_ROWS).selectExpr(
        "id", f"date_add(DATE'2026-01-05', CAST(id % {DAYS} AS INT)) AS event_date"
    )
    rows.write.partitionBy("event_date").parquet(s3a_uri(cfg, TABLE))
    hadoop = spark._jsc.hadoopConfiguration()
    return {
        "count": spark.read.parquet(s3a_uri(cfg, TABLE)).count(),
        "algorithm": hadoop.get("mapreduce.fileoutputcommitter.algorithm.version"),
        "committer": hadoop.get("fs.s3a.committer.name"),
        "credentials": hadoop.get("fs.s3a.aws.credentials.provider"),
    }


def stream_once(spark: SparkSession, cfg: Params) -> list[list[int]]:
    """The bounded stream (availableNow) over the input files, staging each batch as text like the lab's
    stream does; its checkpoint on s3a://. Returns [batch id, rows] of every batch it ran."""
    batches: list[list[int]] = []

    def stage(batch: DataFrame, batch_id: int) -> None:
        batches.append([batch_id, batch.count()])
        (
            batch.selectExpr("kind", "to_json(struct(*)) AS line")
            .write.partitionBy("kind")
            .text(s3a_uri(cfg, f"{STAGING}/{batch_id}/_raw"))
        )

    query = (
        spark.readStream.schema("id LONG, kind STRING")
        .option("maxFilesPerTrigger", FILES_PER_BATCH)
        .json(s3a_uri(cfg, INPUT))
        .writeStream.queryName("s3a_test")
        .option("checkpointLocation", s3a_uri(cfg, CHECKPOINT))
        .foreachBatch(stage)
        .trigger(availableNow=True)
        .start()
    )
    try:
        if not query.awaitTermination(CHILD_TIMEOUT_S - 60):
            raise TimeoutError("the bounded stream did not finish")
    finally:
        query.stop()
    return batches


def child_main(job: str, params: Path, out: Path) -> None:
    """Run one job in this (child) process with the lab's own session, and write what it saw as JSON."""
    cfg = config.from_mapping(yaml.safe_load(params.read_text()))
    result: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = time.monotonic()
    with steps.spark(cfg) as spark:
        seconds["session"] = time.monotonic() - started
        if job == "first":
            result["table"] = write_table(spark, cfg)
            seconds["table"] = time.monotonic() - started - sum(seconds.values())
        result["batches"] = stream_once(spark, cfg)
        seconds["stream"] = time.monotonic() - started - sum(seconds.values())
    seconds["stop"] = time.monotonic() - started - sum(seconds.values())
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    out.write_text(json.dumps(result))


# --- the tests ---------------------------------------------------------------------------------------


def run_child(cfg: Params, job: str, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One driver process doing ``job``; its results, or a failure that shows the child's and Spark's logs."""
    params, out = work / "params.yaml", work / f"{job}.json"
    params.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_s3a", job, str(params), str(out)],
        check=False,
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        log = cfg.paths.data / "logs" / "spark.log"
        spark_log = "\n".join(log.read_text().splitlines()[-40:]) if log.exists() else "(no spark.log)"
        pytest.fail(
            f"the {job} driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n--- spark.log ---\n{spark_log}"
        )
    result = json.loads(out.read_text())
    print(f"{job} driver seconds: {result['seconds']}")  # shown with -s or -rP
    return result


def keys(prefix: str = "") -> list[str]:
    """Every key in the test bucket under a prefix (boto3, paginated)."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3_cfg(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Params:
    """A profile with its lake on S3 (moto), its bucket and the stream's input files."""
    cfg = lab_params(
        tmp_path_factory.mktemp("s3a"),
        profile="s3a-test",
        platform="aws",
        lake_storage="s3",
        catalog_engine="glue",
        s3_bucket=BUCKET,
        s3_prefix="lab",
        aws_region=os.environ["AWS_DEFAULT_REGION"],
    )
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for n in range(INPUT_FILES):
        lines = [json.dumps({"id": n * ROWS_PER_FILE + i, "kind": "ab"[i % 2]}) for i in range(ROWS_PER_FILE)]
        s3.put_object(Bucket=BUCKET, Key=f"{cfg.aws.s3_prefix}/{INPUT}/part-{n}.json", Body="\n".join(lines).encode())
    return cfg


@pytest.fixture(scope="module")
def first_run(s3_cfg: Params, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A driver that writes the table, then runs the stream once (environment credentials)."""
    return run_child(s3_cfg, "first", tmp_path_factory.mktemp("first"), dict(os.environ))


def test_a_partitioned_parquet_write_on_s3a_reads_back(s3_cfg: Params, first_run: dict[str, Any]) -> None:
    table = first_run["table"]
    assert table["count"] == TABLE_ROWS
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{s3_cfg.aws.s3_prefix}/{TABLE}/", Delimiter="/")
    folders = sorted(p["Prefix"].rsplit("/", 2)[1] for p in listed.get("CommonPrefixes", []))
    assert folders == ["event_date=2026-01-05", "event_date=2026-01-06", "event_date=2026-01-07"]
    files = [k for k in keys(f"{s3_cfg.aws.s3_prefix}/{TABLE}/") if k.endswith(".parquet")]
    rows = {}
    for key in files:  # read with pyarrow from the bytes boto3 fetched: no Hadoop, no S3A
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        rows[key] = pq.read_table(io.BytesIO(body)).num_rows
    assert sum(rows.values()) == TABLE_ROWS
    per_day = {day: sum(n for k, n in rows.items() if f"/{day}/" in k) for day in folders}
    assert set(per_day.values()) == {TABLE_ROWS // DAYS}


def staged_ids(cfg: Params) -> list[int]:
    """Ids of every line the stream staged, read back with boto3."""
    s3, ids = boto3.client("s3"), []
    for key in keys(f"{cfg.aws.s3_prefix}/{STAGING}/"):
        if key.endswith(".txt"):
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            ids += [json.loads(line)["id"] for line in body.splitlines() if line]
    return sorted(ids)


def test_the_stream_checkpoint_on_s3a_resumes_in_a_new_driver(
    s3_cfg: Params, first_run: dict[str, Any], tmp_path: Path
) -> None:
    batches = INPUT_FILES // FILES_PER_BATCH
    assert first_run["batches"] == [[b, FILES_PER_BATCH * ROWS_PER_FILE] for b in range(batches)]
    assert staged_ids(s3_cfg) == list(range(INPUT_FILES * ROWS_PER_FILE))
    checkpoint = f"{s3_cfg.aws.s3_prefix}/{CHECKPOINT}"
    commits = [k for k in keys(f"{checkpoint}/commits/") if not k.endswith("/")]
    assert commits == [f"{checkpoint}/commits/{b}" for b in range(batches)]
    staged_before = keys(f"{s3_cfg.aws.s3_prefix}/{STAGING}/")

    # A second driver JVM, with credentials only in a shared credentials file (no key in the
    # environment, no instance metadata): S3A finds them through the SDK's default chain alone.
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = profile-testing\naws_secret_access_key = profile-testing\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    second = run_child(s3_cfg, "resume", tmp_path, env)

    assert second["batches"] == [], "the resumed stream read input its checkpoint had already committed"
    assert keys(f"{s3_cfg.aws.s3_prefix}/{STAGING}/") == staged_before
    assert [k for k in keys(f"{checkpoint}/commits/") if not k.endswith("/")] == commits


def test_the_v1_committer_leaves_no_temporary_files(s3_cfg: Params, first_run: dict[str, Any]) -> None:
    table = first_run["table"]
    assert (table["algorithm"], table["committer"], table["credentials"]) == ("1", "file", S3A_CREDENTIALS)
    everything = keys()
    assert any(k.endswith(".parquet") for k in everything) and any(k.endswith(".txt") for k in everything)
    left = [
        k
        for k in everything
        if any(part in ("_temporary", "_SUCCESS") or part.startswith(".spark-staging") for part in k.split("/"))
    ]
    assert left == [], f"a job left its commit files behind: {left[:5]}"


# --- settings, no JVM --------------------------------------------------------------------------------


def s3_params(tmp_path: Path) -> Params:
    return lab_params(
        tmp_path, platform="aws", lake_storage="s3", catalog_engine="glue", s3_bucket=BUCKET, aws_region="eu-west-2"
    )


def test_local_profiles_get_no_s3a_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = lab_params(tmp_path)
    assert cfg.pipeline.lake_storage == "local"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # not even an S3 endpoint in the environment
    spec = steps.session_spec(cfg)
    assert not spec.on_s3 and spec.s3_region == ""  # the profile's session decides: no S3A at all
    conf = spark_conf(spec)
    assert [k for k in conf if ".s3a." in k or k.endswith(".s3a")] == []
    s3a_only = {j.name for j in jvm.s3a_jars()} - {j.name for j in jvm.spark_connector_jars()}
    assert s3a_only and not s3a_only & {Path(j).name for j in conf["spark.jars"].split(",")}
    assert conf["spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version"] == "2"
    assert conf["spark.hadoop.fs.file.impl"] == "org.apache.hadoop.fs.RawLocalFileSystem"


def test_an_s3_profile_adds_s3a_and_the_v1_committer(tmp_path: Path) -> None:
    cfg = s3_params(tmp_path)
    local = spark_conf(steps.session_spec(lab_params(tmp_path)))
    conf = spark_conf(steps.session_spec(cfg))
    changed = {k for k in conf if conf[k] != local.get(k)}
    assert changed == {"spark.jars", *s3a_conf(cfg.aws.region)}
    assert conf["spark.jars"].startswith(local["spark.jars"] + ",")
    assert conf["spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version"] == "1"
    assert conf["spark.hadoop.fs.s3a.committer.name"] == "file"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"] == S3A_CREDENTIALS
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-2"


@pytest.mark.parametrize(
    ("environ", "endpoint", "ssl"),
    [
        ({}, None, None),  # real AWS: the SDK derives the endpoint from the region, virtual-hosted style
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, "http://127.0.0.1:5000", "false"),
        (
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_S3": "https://s3.example.test"},
            "https://s3.example.test",
            "true",
        ),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, None, None),
    ],
)
def test_the_endpoint_and_path_style_come_from_the_environment(
    tmp_path: Path, environ: dict[str, str], endpoint: str | None, ssl: str | None
) -> None:
    conf = s3a_conf(s3_params(tmp_path).aws.region, environ)
    assert conf.get("spark.hadoop.fs.s3a.endpoint") == endpoint
    assert conf.get("spark.hadoop.fs.s3a.path.style.access") == ("true" if endpoint else None)
    assert conf.get("spark.hadoop.fs.s3a.connection.ssl.enabled") == ssl


def test_an_endpoint_without_a_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="must be an http:// or https:// URL, got '127.0.0.1:5000'"):
        s3a_conf(s3_params(tmp_path).aws.region, {"AWS_ENDPOINT_URL": "127.0.0.1:5000"})


def test_s3a_jars_are_hadoop_aws_and_sdk_modules_without_what_pyspark_ships() -> None:
    jars = jvm.s3a_jars()
    names = {jvm.artifact_name(j) for j in jars}
    assert {"hadoop-aws", "s3", "s3-transfer-manager", "sts", "sdk-core", "apache-client"} <= names
    shipped = {jvm.artifact_name(j) for j in jvm.pyspark_jars()}
    assert not names & (shipped | {"bundle", "commons-logging"})
    assert f"hadoop-aws-{jvm.pyspark_hadoop_version()}.jar" in {j.name for j in jars}
    assert sum(j.stat().st_size for j in jars) < 20e6  # vs 686 MB for the SDK's bundle


def test_a_running_session_without_the_s3a_jars_is_named() -> None:
    assert jars_missing("/a.jar,/b.jar", "/a.jar,/c.jar") == ["/c.jar"]
    assert jars_missing("/a.jar,/b.jar", "/b.jar") == []


if __name__ == "__main__":  # the child driver: python -m tests.integration.test_s3a <job> <params> <out>
    child_main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
