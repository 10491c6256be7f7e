"""The lab's stream on s3a:// against moto's S3 server, killed with kill -9 at random moments and
started again: every event once for a reader that shares no code with the lab (boto3's listing read
with pyarrow). Each start is a new driver JVM whose checkpoint lives on S3 (S3A) while the executors
write the lake's Parquet with pyarrow; the last start finds its credentials only in a shared
credentials file, through the SDKs' default chains. Then the s3a settings a profile gets, no JVM.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import yaml

from smartcity import steps
from smartcity.fleet import simulation
from smartcity.fleet.contracts import TOPICS
from smartcity.params import Params
from smartcity.platform import jvm
from smartcity.platform.broker import KafkaBroker
from smartcity.platform.processes import EngineError
from smartcity.platform.spark import S3A_CREDENTIALS, jars_missing, s3a_conf, spark_conf
from smartcity.stream import lake
from tests import stream_kills
from tests.conftest import lab_params

pytestmark = pytest.mark.integration

BUCKET = "smartcity-s3a-test"
PREFIX = "lab"
#: The S3 kill test produces its run in this many parts: two kills, three driver starts.
PARTS = 3


def keys(prefix: str = "") -> dict[str, int]:
    """Every key in the test bucket under a prefix, with its size (boto3, paginated)."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


@pytest.fixture(scope="module")
def s3_cfg(moto_server: str, broker: KafkaBroker, lab_cfg: Params) -> Params:
    """The session lab (its data folder, so its broker is this profile's own) with the lake and the
    checkpoints on S3 (moto); the bucket created."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return lab_cfg.with_values(
        profile="s3a-test",
        platform="aws",
        lake_storage="s3",
        catalog_engine="glue",
        s3_bucket=BUCKET,
        s3_prefix=PREFIX,
        aws_region=os.environ["AWS_DEFAULT_REGION"],
        vehicles=3,  # about 12,000 events: a few batches in each part, each batch a round of S3 requests
        departure_spacing_seconds=60.0,
        stream_max_batch_events=4000,
        stream_trigger_seconds=0.5,
    )


def _credentials_file_only(folder: Path) -> dict[str, str]:
    """This process's environment without AWS keys: credentials only in a shared credentials file."""
    credentials = folder / "credentials"
    credentials.write_text("[default]\naws_access_key_id = profile-testing\naws_secret_access_key = profile-testing\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
    }
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    return env


def test_kill_minus_nine_of_the_stream_on_s3_never_loses_or_doubles_an_event(s3_cfg: Params, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(s3_cfg.as_dict(), sort_keys=False))
    lab = steps.open_lab(s3_cfg)
    steps.reset_run(lab)
    events = simulation.simulate_journey(s3_cfg.fleet)
    last_start = _credentials_file_only(tmp_path)
    kills = stream_kills.stream_through_kills(
        s3_cfg.kafka.bootstrap,
        lab.store,
        params,
        events,
        PARTS,
        seed=7,
        env_of_start=lambda start: last_start if start == PARTS - 1 else None,
    )
    assert kills == PARTS - 1

    s3 = boto3.client("s3")
    below_tables = {k: n for k, n in keys(f"{PREFIX}/{lake.LAKE}/").items() if not k.endswith(lake.GENERATION_FILE)}
    for key, size in below_tables.items():  # what a reader of a table's prefix reads: whole Parquet files only
        assert key.rsplit("/", 1)[1].startswith("part-") and key.endswith(".parquet") and size > 0, key
    for topic in TOPICS:
        ids = []
        for key in sorted(k for k in below_tables if k.startswith(f"{PREFIX}/{lake.LAKE}/{topic}/")):
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # pyarrow over boto3's bytes: no S3A
            ids += pq.read_table(io.BytesIO(body), columns=["id"]).column("id").to_pylist()
        want = sorted(e.value["id"] for e in events if e.topic == topic)
        assert Counter(ids) == Counter(want), f"{topic}: missing or doubled events on S3"


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
