"""The six notebooks on the AWS code paths, without an AWS account, on the cluster's engines with the lake
on S3 (params/cluster-s3.yaml).

moto serves S3 and Glue on 127.0.0.1; `smartcity aws provision` creates the bucket, the Glue database
and the Athena workgroup there. A 3-broker KRaft quorum and a Spark standalone master with 2 workers,
started by the fixture on ports it has just found free; the executors on the workers write each
micro-batch's Parquet straight to S3 and the driver commits from the tasks' small results, so driver and
workers share no folder. The catalog registers the tables in Glue; the Athena SQL runs unchanged on the
lab's Trino, whose Glue metastore and S3 file system are moto's (moto's Athena returns no rows), and
DuckDB's answers over the Glue tables' S3 files are checked against Trino's; the warehouse is PostgreSQL
loading from S3. Then readers that share no code with the lab check the result: boto3's listing, pyarrow
over S3, Glue's own partitions.

The aws-moto profile (the same AWS code paths on one local Spark and one broker) is not run as six
notebooks here: what it does differently, its stream over s3a:// from a local driver, is the S3 kill test's
(tests/integration/test_s3a.py); notebooks 03-06 run the same code on both profiles.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
import yaml

from smartcity import profiles, steps
from smartcity.fleet.contracts import TOPICS
from smartcity.ops import runner
from smartcity.ops.aws import provision as aws
from smartcity.params import Params
from smartcity.platform import cluster
from smartcity.platform.ledger import Ledger
from smartcity.platform.params import project_root
from smartcity.stream import lake
from tests.conftest import engines_using, free_port, quorum_ports

pytestmark = pytest.mark.integration

BUCKET = "smartcity-cluster-s3-test"
PREFIX = "lab"


def _stage_counts(cfg: Params) -> pd.DataFrame:
    """The profile's count ledger: events per topic at each stage (what the report shows)."""
    return Ledger(cfg.paths.counts, TOPICS).table()


@pytest.fixture(scope="module")
def moto_run(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Params, runner.RunResult]]:
    """A profile extending params/cluster-s3.yaml with this test's folders, ports and bucket; provisioned,
    its quorum and Spark cluster started at once (a port found free and left unused for a minute is a
    race with every other test), then run."""
    root = tmp_path_factory.mktemp("cluster-s3")
    params = root / "cluster-s3-test.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "extends": str(project_root() / "params" / "cluster-s3.yaml"),
                "profile": "cluster-s3-test",
                "data_dir": str(root / "data"),
                "output_dir": str(root / "outputs"),
                "kafka_bootstrap": ",".join(f"127.0.0.1:{p}" for p in quorum_ports(3)),
                "spark_master": f"spark://127.0.0.1:{free_port()}",
                "spark_master_ui_port": free_port(),
                "trino_port": free_port(),
                "postgres_port": free_port(),
                "postgres_fsync": False,
                "s3_bucket": BUCKET,
                "s3_prefix": PREFIX,
            },
            sort_keys=False,
        )
    )
    cfg = profiles.load_params(params)
    with steps.open_broker(cfg), cluster.ensure_cluster(cfg.spark, cfg.paths.data / "spark") as spark_cluster:
        assert spark_cluster is not None and spark_cluster.owned
        provisioned = aws.provision(cfg)
        assert provisioned.rows, "provisioning printed nothing"
        before = set(engines_using(cfg.paths.data))
        result = runner.run(params)  # finds the quorum and the master running, and uses them
        left = set(engines_using(cfg.paths.data)) - before
        assert not left, f"engines the run started outlived it: {sorted(left)}"
        yield cfg, result


def _objects(prefix: str) -> dict[str, int]:
    s3 = boto3.client("s3")
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


def test_the_six_notebooks_run_on_s3_and_glue_and_reconcile(moto_run: tuple[Params, runner.RunResult]) -> None:
    cfg, result = moto_run
    assert result.problems == [], result.problems
    counts = _stage_counts(cfg)
    produced = counts["produced"].to_dict() if "produced" in counts else {}
    assert produced and all(produced[t] > 0 for t in TOPICS), counts


def test_only_published_parquet_lies_below_the_table_prefixes(moto_run: tuple[Params, runner.RunResult]) -> None:
    """What Athena or a crawler reads under a table's prefix: every object, so nothing else may be there."""
    below_tables = {
        k: v for k, v in _objects(f"{PREFIX}/lake/").items() if k != f"{PREFIX}/lake/{lake.GENERATION_FILE}"
    }
    assert below_tables
    for key, size in below_tables.items():
        name = key.rsplit("/", 1)[1]
        assert name.startswith("part-") and name.endswith(".parquet") and size > 0, key
    assert not [k for k in _objects(f"{PREFIX}/checkpoints/lake/_staging/") if not k.endswith("/")], (
        "staging left behind after the run"
    )


def test_an_independent_reader_of_s3_counts_what_was_produced(moto_run: tuple[Params, runner.RunResult]) -> None:
    """pyarrow over S3, a prefix per table (as Athena reads a location): every event once."""
    cfg, _ = moto_run
    produced = _stage_counts(cfg)["produced"].to_dict()
    host, port = boto3.client("s3").meta.endpoint_url.removeprefix("http://").split(":")
    fs = pafs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        session_token="testing",
        region="us-east-1",
        endpoint_override=f"{host}:{port}",
        scheme="http",
    )
    for topic in TOPICS:
        table = ds.dataset(
            f"{BUCKET}/{PREFIX}/lake/{topic}", filesystem=fs, format="parquet", partitioning="hive"
        ).to_table(columns=["id"])
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)) == produced[topic], topic


def test_glue_holds_every_table_with_its_partitions_at_the_lake_prefixes(
    moto_run: tuple[Params, runner.RunResult],
) -> None:
    glue = boto3.client("glue")
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="smartcity")["TableList"]}
    assert set(tables) == {*TOPICS, "quarantine"}
    for topic in TOPICS:
        location = tables[topic]["StorageDescriptor"]["Location"]
        assert location == f"s3://{BUCKET}/{PREFIX}/lake/{topic}/"
        days = {k.split("event_date=")[1].split("/")[0] for k in _objects(f"{PREFIX}/lake/{topic}/")}
        registered = {
            p["Values"][0] for p in glue.get_partitions(DatabaseName="smartcity", TableName=topic)["Partitions"]
        }
        assert registered == days, topic
        columns = [c["Name"] for c in tables[topic]["StorageDescriptor"]["Columns"]]
        assert columns == [c.lower() for c in columns] and "id" in columns


def test_the_athena_sql_ran_on_the_glue_tables(moto_run: tuple[Params, runner.RunResult]) -> None:
    cfg, _ = moto_run
    import nbformat

    book = nbformat.read(cfg.paths.output / "notebooks" / "04_athena.ipynb", as_version=4)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    row_counts = next(c for c in book.cells if c.cell_type == "code" and "row_counts" in c.source)
    text = row_counts.outputs[0]["data"]["text/plain"]
    produced = _stage_counts(cfg)["produced"].to_dict()
    for topic in TOPICS:
        assert str(produced[topic]) in text, (topic, text)


def test_the_params_are_what_the_profile_says(moto_run: tuple[Params, runner.RunResult]) -> None:
    cfg, _ = moto_run
    run = cfg.pipeline
    assert (run.platform, run.lake_storage, run.catalog_engine, run.query_engine, run.warehouse_engine) == (
        "cluster",
        "s3",
        "glue",
        "trino",
        "postgres",
    )
    assert cfg.paths.lake.exists() is False, "an S3 profile wrote a lake folder on local disk"
    assert cfg.spark.standalone is not None and cfg.spark.workers == 2 and len(cfg.kafka.addresses) == 3


def test_duckdb_over_the_glue_tables_agrees_with_trino_over_glue_and_s3(
    moto_run: tuple[Params, runner.RunResult],
) -> None:
    """04's last section on this profile: each query on Trino (Glue metastore, S3) and on DuckDB (the Glue
    tables' S3 files), compared."""
    checked = pd.read_csv(steps.engines_compared_file(moto_run[0]), index_col="query", keep_default_na=False)
    assert list(checked.columns[:3]) == ["rows", "duckdb s", "trino s"] and (checked["rows"] > 0).all(), checked
    assert (checked["differences"] == "").all(), checked.to_string()
