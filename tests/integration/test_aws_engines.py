"""The AWS engines' testable parts (0002 §2-§4): Glue registration on moto, the Athena call, the
Redshift loader's generated artifacts (manifests, in-flight exclusion, COPY, staging SQL), and the
staging + merge semantics on the embedded PostgreSQL.

What moto cannot check is not pretended here: Athena returns no rows, Redshift has no SQL, the
crawler crawls nothing. Those are for the real-account smoke tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import awswrangler as wr
import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlglot
from botocore.stub import Stubber
from moto import mock_aws

from smartcity import steps
from smartcity.catalog import crawler
from smartcity.catalog.crawler import table_names
from smartcity.catalog.glue import CatalogError, GlueCatalog
from smartcity.fleet import contracts, simulation
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.params import Params
from smartcity.query import athena
from smartcity.stream import commits, lake, staging
from smartcity.stream.store import LocalStore, ObjectInfo, S3Store
from smartcity.warehouse import redshift
from smartcity.warehouse.schema import SCHEMA, STAGE_SCHEMA, ensure_tables, target_of
from tests.conftest import lab_params
from tests.lake_fixture import to_row, write_lake

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
BUCKET = "lab-bucket"
ROLE = "arn:aws:iam::123456789012:role/smartcity-copy"


class S3NamedStore(LocalStore):
    """A lake on the local disk that names its objects as the S3 store would: Glue locations and
    manifests then read like AWS's, while footers are read locally (pyarrow's S3 client cannot see
    moto's in-process mock)."""

    def uri(self, key: str) -> str:
        return f"s3://{BUCKET}/lab/{key}"


@pytest.fixture
def aws_env(fake_aws: None) -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def aws_params(root: Path, **overrides: object) -> Params:
    return lab_params(
        root,
        platform="aws",
        lake_storage="s3",
        catalog_engine="glue",
        query_engine="athena",
        s3_bucket=BUCKET,
        s3_prefix="lab",
        aws_region=REGION,
        **overrides,
    )


@pytest.fixture
def glue(aws_env: boto3.Session) -> boto3.Session:
    aws_env.client("glue").create_database(DatabaseInput={"Name": "smartcity"})
    return aws_env


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    """The default run's events (the same for every profile of these tests: seed and fleet are shared)."""
    return simulation.simulate_journey(lab_params(tmp_path_factory.mktemp("journey")).fleet)


def glue_catalog_of(cfg: Params, session: boto3.Session) -> GlueCatalog:
    """The profile's Glue catalog (as steps.crawl_lake builds it), its ledger in the profile's catalog file."""
    return GlueCatalog(cfg.aws, cfg.profile, cfg.paths.catalog, session)


def glue_table(session: boto3.Session, name: str) -> dict[str, object]:
    return session.client("glue").get_table(DatabaseName="smartcity", Name=name)["Table"]


def glue_partitions(session: boto3.Session, name: str) -> dict[str, dict[str, object]]:
    pages = session.client("glue").get_paginator("get_partitions").paginate(DatabaseName="smartcity", TableName=name)
    return {p["Values"][0]: p for page in pages for p in page["Partitions"]}


def shifted(events: list[Event], days: int) -> list[Event]:
    """The same events, some days later (so they land in other event_date partitions)."""

    def later(stamp: str) -> str:
        return (datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(days=days)).isoformat()

    return [e._replace(value={**e.value, "timestamp": later(e.value["timestamp"])}) for e in events]


def lake_partitions(cfg: Params, table: str) -> set[str]:
    return {k.split("=", 1)[1] for k in lake.partitions(lake.data_files(cfg.paths.lake / table))}


# -- the Glue catalog ---------------------------------------------------------------------------------
def test_glue_registers_every_table_with_lowercase_columns_partitions_and_locations(
    journey: list[Event], tmp_path: Path, glue: boto3.Session
) -> None:
    cfg = aws_params(tmp_path)
    counts = write_lake(cfg, list(journey))
    summary = glue_catalog_of(cfg, glue).crawl(S3NamedStore(cfg.paths.data))
    assert list(summary.columns) == ["location", "partition_keys", "files", "row_count", "files read"]
    assert summary["row_count"].to_dict() == {**counts, "quarantine": 0}
    assert (summary["files read"] == summary["files"]).all(), "a first crawl reads every footer once"
    names = {t["Name"] for t in glue.client("glue").get_tables(DatabaseName="smartcity")["TableList"]}
    assert names == set(table_names()) == {*TOPICS, "quarantine"}

    vehicles = glue_table(glue, "vehicle_data")
    columns = {c["Name"]: c["Type"] for c in vehicles["StorageDescriptor"]["Columns"]}
    assert list(columns)[:4] == ["id", "schemaversion", "deviceid", "timestamp"]
    assert columns["timestamp"] == "timestamp" and columns["speed"] == "double" and columns["edgeid"] == "string"
    assert "event_date" not in columns
    assert vehicles["PartitionKeys"] == [{"Name": "event_date", "Type": "date"}]
    assert vehicles["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/lab/lake/vehicle_data/"
    parts = glue_partitions(glue, "vehicle_data")
    assert set(parts) == lake_partitions(cfg, "vehicle_data")
    day = sorted(parts)[0]
    assert parts[day]["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/lab/lake/vehicle_data/event_date={day}/"

    quarantine = glue_table(glue, "quarantine")  # no message quarantined: the contract's schema, no partitions
    assert quarantine["PartitionKeys"] == [{"Name": "topic", "Type": "string"}]
    assert {c["Name"]: c["Type"] for c in quarantine["StorageDescriptor"]["Columns"]}[
        "headers"
    ] == "array<struct<key:string,value:binary>>"
    assert quarantine["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/lab/lake/_quarantine/"
    assert glue_partitions(glue, "quarantine") == {}
    assert (
        crawler.describe(cfg.paths.catalog, "tables").set_index("table_name").at["gps_data", "location"]
        == f"s3://{BUCKET}/lab/lake/gps_data/"
    )


def test_glue_crawl_again_reads_no_footer_and_adds_only_new_partitions(
    journey: list[Event], tmp_path: Path, glue: boto3.Session
) -> None:
    cfg = aws_params(tmp_path)
    store = S3NamedStore(cfg.paths.data)
    events = list(journey)
    write_lake(cfg, events)
    glue_catalog = glue_catalog_of(cfg, glue)
    glue_catalog.crawl(store)
    before = glue_partitions(glue, "gps_data")
    with mock.patch.object(wr.catalog, "add_parquet_partitions", wraps=wr.catalog.add_parquet_partitions) as added:
        again = glue_catalog.crawl(store)
        assert (again["files read"] == 0).all() and not added.called, "nothing new: no footer, no partition call"
        write_lake(cfg, shifted([e for e in events if e.topic == "gps_data"], days=2))
        third = glue_catalog.crawl(store)
    assert third.at["gps_data", "files read"] > 0 and third.at["vehicle_data", "files read"] == 0
    new = {tuple(v) for call in added.call_args_list for v in call.kwargs["partitions_values"].values()}
    assert new == {(d,) for d in lake_partitions(cfg, "gps_data") - set(before)} and new
    assert set(glue_partitions(glue, "gps_data")) == lake_partitions(cfg, "gps_data")


def test_glue_v1_then_v2_appends_the_new_column_and_old_partitions_keep_theirs(
    journey: list[Event], tmp_path: Path, glue: boto3.Session
) -> None:
    cfg = aws_params(tmp_path)
    store = S3NamedStore(cfg.paths.data)
    events = [e for e in journey if e.topic == "vehicle_data"]
    write_lake(cfg, events, version=1)
    glue_catalog = glue_catalog_of(cfg, glue)
    glue_catalog.crawl(store)
    v1_columns = [c["Name"] for c in glue_table(glue, "vehicle_data")["StorageDescriptor"]["Columns"]]
    assert "edgeid" not in v1_columns
    old_days = set(glue_partitions(glue, "vehicle_data"))
    write_lake(cfg, shifted(events, days=3), version=2)
    glue_catalog.crawl(store)
    v2_columns = [c["Name"] for c in glue_table(glue, "vehicle_data")["StorageDescriptor"]["Columns"]]
    assert v2_columns == [*v1_columns, "edgeid"], "appended at the end, existing columns untouched"
    parts = glue_partitions(glue, "vehicle_data")
    assert set(parts) == lake_partitions(cfg, "vehicle_data") and old_days < set(parts)
    for day, part in parts.items():
        has_edge = "edgeid" in [c["Name"] for c in part["StorageDescriptor"]["Columns"]]
        assert has_edge == (day not in old_days)


def test_a_new_lake_generation_drops_partitions_and_recreates_the_table(
    journey: list[Event], tmp_path: Path, glue: boto3.Session
) -> None:
    cfg = aws_params(tmp_path)
    store = S3NamedStore(cfg.paths.data)
    events = list(journey)
    write_lake(cfg, events, version=2)
    glue_catalog = glue_catalog_of(cfg, glue)
    glue_catalog.crawl(store)
    old_days = set(glue_partitions(glue, "vehicle_data"))
    lake.reset(store, cfg.paths.data)  # a new run, of an older contract, on other days, without incidents
    counts = write_lake(cfg, shifted([e for e in events if e.topic != "emergency_data"], days=10), version=1)
    summary = glue_catalog.crawl(store)
    assert summary["row_count"].to_dict() == {**counts, "quarantine": 0}
    parts = glue_partitions(glue, "vehicle_data")
    assert set(parts) == lake_partitions(cfg, "vehicle_data") and not set(parts) & old_days
    columns = [c["Name"] for c in glue_table(glue, "vehicle_data")["StorageDescriptor"]["Columns"]]
    assert "edgeid" not in columns, "the table was created afresh from the new generation's files"
    emergency = glue_table(glue, "emergency_data")  # empty now: the contract's schema, no partitions
    assert {"incidentid", "severity"} <= {c["Name"] for c in emergency["StorageDescriptor"]["Columns"]}
    assert glue_partitions(glue, "emergency_data") == {}


def test_a_lost_ledger_rereads_the_footers_and_glue_follows_the_lake(
    journey: list[Event], tmp_path: Path, glue: boto3.Session
) -> None:
    """The DuckDB ledger is only a cache: without it, a crawl reads every footer again and drops
    the partitions Glue still has but the lake no longer does."""
    cfg = aws_params(tmp_path)
    store = S3NamedStore(cfg.paths.data)
    events = list(journey)
    write_lake(cfg, events)
    glue_catalog = glue_catalog_of(cfg, glue)
    glue_catalog.crawl(store)
    old_days = set(glue_partitions(glue, "gps_data"))
    cfg.paths.catalog.unlink()
    lake.reset(store, cfg.paths.data)
    write_lake(cfg, shifted(events, days=5))
    summary = glue_catalog.crawl(store)
    assert (summary["files read"] == summary["files"]).all()
    assert set(glue_partitions(glue, "gps_data")) == lake_partitions(cfg, "gps_data")
    assert not set(glue_partitions(glue, "gps_data")) & old_days


def test_glue_reset_drops_every_partition(journey: list[Event], tmp_path: Path, glue: boto3.Session) -> None:
    cfg = aws_params(tmp_path)
    write_lake(cfg, list(journey))
    glue_catalog = glue_catalog_of(cfg, glue)
    glue_catalog.crawl(S3NamedStore(cfg.paths.data))
    assert glue_partitions(glue, "gps_data")
    glue_catalog.reset()
    assert all(glue_partitions(glue, name) == {} for name in table_names())


def test_a_missing_glue_database_is_named(tmp_path: Path, aws_env: boto3.Session) -> None:
    cfg = aws_params(tmp_path)
    with pytest.raises(CatalogError, match="Glue database 'smartcity' does not exist"):
        glue_catalog_of(cfg, aws_env).crawl(S3NamedStore(cfg.paths.data))


def test_the_optional_crawler_gets_the_lab_tables_as_a_catalog_target(
    journey: list[Event], tmp_path: Path, glue: boto3.Session
) -> None:
    cfg = aws_params(tmp_path, glue_crawler=True)
    write_lake(cfg, journey[:300])
    glue_catalog = glue_catalog_of(cfg, glue)
    with pytest.raises(CatalogError, match="no Glue crawler 'smartcity-test'"):
        glue_catalog.crawl(S3NamedStore(cfg.paths.data))
    glue_catalog.create_crawler("arn:aws:iam::123456789012:role/smartcity-crawler")
    glue_catalog.create_crawler("arn:aws:iam::123456789012:role/smartcity-crawler")  # idempotent
    glue_catalog.crawl(S3NamedStore(cfg.paths.data))
    crawler = glue.client("glue").get_crawler(Name="smartcity-test")["Crawler"]
    assert crawler["Targets"]["CatalogTargets"] == [{"DatabaseName": "smartcity", "Tables": table_names()}]
    assert crawler["SchemaChangePolicy"] == {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"}
    assert crawler["State"] != "READY", "crawl started it"


# -- Athena -------------------------------------------------------------------------------------------
def test_athena_engine_runs_the_shipped_sql_in_the_profiles_workgroup(tmp_path: Path, aws_env: boto3.Session) -> None:
    cfg = aws_params(tmp_path, athena_workgroup="lab-wg")
    answer = pd.DataFrame({"table_name": ["gps_data"], "row_count": [3]})
    with mock.patch("awswrangler.athena.read_sql_query", return_value=answer) as read:
        result = athena.AthenaEngine(cfg.aws, aws_env).run("row_counts")
    assert result is answer
    read.assert_called_once_with(
        athena.athena_sql("row_counts"),
        database="smartcity",
        workgroup="lab-wg",
        ctas_approach=False,
        boto3_session=aws_env,
    )


def test_athena_engine_refuses_a_database_the_queries_do_not_name(tmp_path: Path, aws_env: boto3.Session) -> None:
    with pytest.raises(ValueError, match="set glue_database: smartcity"):
        athena.AthenaEngine(aws_params(tmp_path, glue_database="other").aws, aws_env)


def test_duckdb_engine_is_todays_local_query(journey: list[Event], tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    write_lake(cfg, list(journey))
    lab = steps.open_lab(cfg)
    steps.crawl_lake(lab)
    engine: athena.QueryEngine = athena.DuckDBEngine(lambda: crawler.connect(cfg.paths.catalog, read_only=True))
    pd.testing.assert_frame_equal(engine.run("journey_times"), steps.query_lake(lab, "journey_times"))


@pytest.mark.parametrize("name", athena.list_queries())
def test_each_athena_query_parses_as_trino_and_reads_only_catalogued_tables(name: str) -> None:
    tables = athena.referenced_tables(athena.athena_sql(name))
    assert tables and tables <= {("smartcity", t) for t in table_names()}


def test_the_table_check_catches_unknown_tables_and_bad_sql() -> None:
    assert athena.referenced_tables("WITH x AS (SELECT 1 AS a) SELECT * FROM x JOIN smartcity.nope ON true") == {
        ("smartcity", "nope")
    }
    with pytest.raises(sqlglot.errors.ParseError):
        athena.referenced_tables("SELECT count(* FROM smartcity.gps_data")


# -- Redshift: which files, manifests, COPY --------------------------------------------------------
def info(key: str, size: int = 100) -> ObjectInfo:
    return ObjectInfo(key, size)


def test_manifest_entries_are_mandatory_with_content_length() -> None:
    manifest = redshift.copy_manifest(
        [
            ("s3://b/p/lake/gps_data/event_date=2026-01-05/a.parquet", 1234),
            ("s3://b/p/lake/gps_data/event_date=2026-01-06/b.parquet", 99),
        ]
    )
    assert manifest == {
        "entries": [
            {
                "url": "s3://b/p/lake/gps_data/event_date=2026-01-05/a.parquet",
                "mandatory": True,
                "meta": {"content_length": 1234},
            },
            {
                "url": "s3://b/p/lake/gps_data/event_date=2026-01-06/b.parquet",
                "mandatory": True,
                "meta": {"content_length": 99},
            },
        ]
    }
    with pytest.raises(ValueError, match="at least one file"):
        redshift.copy_manifest([])
    with pytest.raises(ValueError, match="s3:// objects with a positive size"):
        redshift.copy_manifest([("/data/lake/a.parquet", 10)])


def test_part_names_give_batch_and_writer() -> None:
    assert redshift.part_batch("lake/gps_data/event_date=2026-01-05/part-0000000012-003-ab12cd34.parquet") == (
        12,
        "ab12cd34",
    )
    assert redshift.part_batch("lake/gps_data/event_date=2026-01-05/3f2a-0.parquet") is None


def test_files_to_load_skip_loaded_files_and_the_current_writers_batches_in_flight() -> None:
    prefix = "lake/gps_data/"
    day = f"{prefix}event_date=2026-01-05/"
    listing = [
        info(f"{day}part-0000000003-000-aaaa1111.parquet"),
        info(f"{day}part-0000000004-000-aaaa1111.parquet"),
        info(f"{day}part-0000000005-000-aaaa1111.parquet"),
        info(f"{day}part-0000000005-001-aaaa1111.parquet"),
        info(f"{day}part-0000000009-000-bbbb2222.parquet"),
        info(f"{day}written-by-hand.parquet"),
    ]
    loaded = {"event_date=2026-01-05/part-0000000003-000-aaaa1111.parquet"}
    chosen = redshift.files_to_load(listing, loaded, prefix=prefix, writer="aaaa1111", last_done=4)
    assert [i.key.rsplit("/", 1)[1] for i in chosen] == [
        "part-0000000004-000-aaaa1111.parquet",
        "part-0000000009-000-bbbb2222.parquet",
        "written-by-hand.parquet",
    ]
    nothing_done = redshift.files_to_load(listing, set(), prefix=prefix, writer="aaaa1111", last_done=None)
    assert [i.key.rsplit("/", 1)[1] for i in nothing_done] == [
        "part-0000000009-000-bbbb2222.parquet",
        "written-by-hand.parquet",
    ], "no batch of the writer is done yet"
    no_log = redshift.files_to_load(listing, set(), prefix=prefix, writer=None, last_done=None)
    assert len(no_log) == len(listing)
    with pytest.raises(ValueError, match="not under"):
        redshift.files_to_load([info("lake/other/x.parquet")], set(), prefix=prefix, writer=None, last_done=None)


def test_writer_progress_reads_the_commit_log(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert commits.writer_progress(store) == (None, None)
    log = commits.CommitLog(store)
    assert commits.writer_progress(store) == (log.writer, None)
    for batch in (2, 7, 11):
        store.put(log.done_key(batch), b"{}")
    store.put(f"{lake.COMMITS}/0000000012.manifest.json", b"{}")  # planned, not done
    assert commits.writer_progress(store) == (log.writer, 11)


def test_copy_statement_loads_a_parquet_manifest_with_the_copy_role() -> None:
    text = redshift.copy_statement(
        "smartcity_stage.gps_data_0123456789", "s3://b/p/warehouse/manifests/g/l/m.json", ROLE
    )
    assert text.split("\n") == [
        "COPY smartcity_stage.gps_data_0123456789",
        "FROM 's3://b/p/warehouse/manifests/g/l/m.json'",
        f"IAM_ROLE '{ROLE}'",
        "FORMAT AS PARQUET",
        "MANIFEST",
    ]
    nested = redshift.copy_statement("s.q", "s3://b/it's.json", ROLE, serialize_to_json=True)
    assert "FROM 's3://b/it''s.json'" in nested and nested.endswith("FORMAT AS PARQUET\nSERIALIZETOJSON\nMANIFEST")
    with pytest.raises(ValueError, match="s3://"):
        redshift.copy_statement("s.t", "/tmp/m.json", ROLE)
    with pytest.raises(ValueError, match="ARN of the role"):
        redshift.copy_statement("s.t", "s3://b/m.json", "")


def test_each_file_layout_gets_its_own_staging_table_shaped_like_the_file() -> None:
    v1 = redshift.file_layout(
        "vehicle_data",
        staging._file_schema("vehicle_data").remove(staging._file_schema("vehicle_data").get_field_index("edgeId")),
    )
    v2 = redshift.file_layout("vehicle_data", staging._file_schema("vehicle_data"))
    assert v1.stage_table != v2.stage_table and v1.stage_table.startswith("smartcity_stage.vehicle_data_")
    ddl = redshift.staging_table_sql(v2, "redshift")
    columns = [c.strip().split(" ", 1) for c in ddl[ddl.index("(") + 1 : -1].split(", ")]
    assert [name.strip('"') for name, _ in columns] == [contracts.sql_name(n, "redshift") for n in v2.names]
    assert dict(columns)['"timestamp"'] == "TIMESTAMPTZ" and dict(columns)['"deviceid"'] == "VARCHAR(512)"
    assert '"event_date"' not in dict(columns), "no file holds its partition column"
    insert, params = redshift.stage_insert_sql(v1, "stage_vehicle_data")
    target = target_of("vehicle_data").columns
    select = insert[insert.index(" SELECT ") + 8 : insert.index(f" FROM {v1.stage_table}")].split(", ")
    exprs = dict(zip(target, select))
    assert exprs["edgeid"] == "NULL" and exprs["deviceid"] == 's."deviceid"' and params == []
    assert exprs["event_date"] == "CAST(s.\"timestamp\" AT TIME ZONE 'UTC' AS DATE)"

    quarantine = redshift.file_layout(lake.QUARANTINE, staging._file_schema(lake.QUARANTINE))
    assert quarantine.nested and not v2.nested
    q_ddl = redshift.staging_table_sql(quarantine, "redshift")
    assert '"headers" SUPER' in q_ddl and '"key" VARBYTE(1024000)' in q_ddl and '"topic"' not in q_ddl
    q_insert, q_params = redshift.stage_insert_sql(quarantine, "stage_quarantine", "gps_data")
    assert q_params == ["gps_data"] and "%s" in q_insert
    with pytest.raises(ValueError, match="one topic partition at a time"):
        redshift.stage_insert_sql(quarantine, "stage_quarantine")
    odd = redshift.file_layout("gps_data", pa.schema([("id", pa.string()), ("mystery", pa.string())]))
    with pytest.raises(redshift.WarehouseError, match="no contract knows: \\['mystery'\\]"):
        redshift.staging_table_sql(odd)


class RecordingSession:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, query: str, params: object = None) -> None:
        self.statements.append(query)


def test_manifests_are_written_beside_the_lake_on_s3_and_copied(aws_env: boto3.Session) -> None:
    aws_env.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    store = S3Store(BUCKET, "lab", aws_env)
    keys = [
        "lake/_quarantine/topic=gps_data/part-0000000001-000-aaaa1111.parquet",
        "lake/_quarantine/topic=gps_data/part-0000000002-000-aaaa1111.parquet",
    ]
    for n, key in enumerate(keys):
        store.put(key, b"x" * (10 + n))
    session = RecordingSession()
    copy = redshift._manifest_copier(session, store, "warehouse/manifests/gen1/load1/", ROLE)
    layout = redshift.file_layout(lake.QUARANTINE, staging._file_schema(lake.QUARANTINE))
    copy(layout, store.list("lake/_quarantine"))
    [written] = store.list("warehouse/manifests/gen1/load1")
    manifest = json.loads(store.get(written.key))
    assert manifest["entries"] == [
        {"url": f"s3://{BUCKET}/lab/{k}", "mandatory": True, "meta": {"content_length": 10 + n}}
        for n, k in enumerate(keys)
    ]
    assert session.statements == [
        redshift.copy_statement(layout.stage_table, store.uri(written.key), ROLE, serialize_to_json=True)
    ]


def test_redshift_serverless_credentials_come_from_get_credentials(tmp_path: Path, aws_env: boto3.Session) -> None:
    cfg = aws_params(
        tmp_path,
        warehouse_engine="redshift",
        redshift_copy_role_arn=ROLE,
        redshift_workgroup="lab-wg",
        redshift_database="dev",
    )
    warehouse = redshift.RedshiftWarehouse(cfg.warehouse, aws_env)
    client = aws_env.client("redshift-serverless")
    with Stubber(client) as stub:
        stub.add_response(
            "get_workgroup",
            {
                "workgroup": {
                    "workgroupName": "lab-wg",
                    "endpoint": {
                        "address": "lab-wg.123456789012.eu-west-2.redshift-serverless.amazonaws.com",
                        "port": 5439,
                    },
                }
            },
            {"workgroupName": "lab-wg"},
        )
        stub.add_response(
            "get_credentials",
            {"dbUser": "IAMR:runner", "dbPassword": "temporary"},
            {"workgroupName": "lab-wg", "dbName": "dev", "durationSeconds": 3600},
        )
        stub.add_client_error("get_workgroup", "ResourceNotFoundException", http_status_code=404)
        with mock.patch.object(warehouse, "_serverless", return_value=client):
            args = warehouse.connection_args()
            with pytest.raises(redshift.WarehouseError, match="no Redshift Serverless workgroup 'lab-wg'"):
                warehouse.connection_args()
        stub.assert_no_pending_responses()
    assert args == {
        "host": "lab-wg.123456789012.eu-west-2.redshift-serverless.amazonaws.com",
        "port": 5439,
        "database": "dev",
        "user": "IAMR:runner",
        "password": "temporary",
        "ssl": True,
    }
    assert "temporary" not in repr(warehouse)


# -- staging, INSERT ... SELECT and merge, executed on PostgreSQL --------------------------------------
def _write_part(store: LocalStore, table: str, rows: list[dict[str, object]], name: str, version: int) -> ObjectInfo:
    """One lake file as the commit log names it, in a contract version's columns (no partition column)."""
    schema = contracts.arrow_schema(table, version=version)
    schema = pa.schema([f.with_nullable(True) for f in schema if f.name != "event_date"])
    day = str(rows[0]["event_date"])
    key = f"lake/{table}/event_date={day}/{name}"
    path = store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in rows], schema=schema), path)
    return ObjectInfo(key, path.stat().st_size)


def _postgres_copier(conn: object, store: LocalStore) -> redshift.CopyFiles:
    """What COPY ... FORMAT AS PARQUET does on Redshift, done on PostgreSQL: each file's columns, by position."""

    def copy(layout: redshift.FileLayout, files: list[ObjectInfo]) -> None:
        with conn.cursor() as cur, cur.copy(f"COPY {layout.stage_table} FROM STDIN (FORMAT csv)") as out:
            for f in files:
                table = pq.read_table(store.root / f.key)
                assert table.column_names == layout.names
                buffer = pa.BufferOutputStream()
                pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
                out.write(buffer.getvalue().to_pybytes())

    return copy


@pytest.mark.integration
def test_per_layout_staging_and_the_shared_merge_on_postgresql(
    journey: list[Event], tmp_path: Path, warehouse: object
) -> None:
    cfg = lab_params(tmp_path)
    store = LocalStore(cfg.paths.data)
    events = [e for e in journey if e.topic == "vehicle_data"]
    rows = [to_row(e, n) for n, e in enumerate(events)]
    third = len(rows) // 3
    v1 = _write_part(store, "vehicle_data", rows[:third], "part-0000000000-000-aaaa1111.parquet", version=1)
    v2 = _write_part(store, "vehicle_data", rows[third : 2 * third], "part-0000000001-000-aaaa1111.parquet", version=2)
    late = _write_part(store, "vehicle_data", rows[2 * third :], "part-0000000002-000-aaaa1111.parquet", version=2)
    resent = [{**r, "kafka_offset": r["kafka_offset"] + 100_000} for r in rows[third : third + 5]]  # sent twice
    again = _write_part(store, "vehicle_data", resent, "part-0000000007-000-bbbb2222.parquet", version=2)
    listing = lake.list_data_files(store, "vehicle_data")
    assert {i.key for i in listing} == {v1.key, v2.key, late.key, again.key}
    footers = crawler.footer_reader(store, "lake/vehicle_data/")

    with warehouse.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {STAGE_SCHEMA} CASCADE")
        with conn.transaction():
            ensure_tables(conn, ["vehicle_data"])
            first = redshift.load_table_from_files(
                conn,
                "vehicle_data",
                listing,
                footers,
                _postgres_copier(conn, store),
                dialect="postgres",
                writer="aaaa1111",
                last_done=1,
            )
        stages = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", [STAGE_SCHEMA]
        ).fetchone()[0]
        null_edges = conn.execute("SELECT count(*) FROM smartcity.vehicle_data WHERE edgeid IS NULL").fetchone()[0]
        wrong_day = conn.execute(
            "SELECT count(*) FROM smartcity.vehicle_data "
            "WHERE event_date <> CAST(\"timestamp\" AT TIME ZONE 'UTC' AS DATE)"
        ).fetchone()[0]
        with conn.transaction():
            second = redshift.load_table_from_files(
                conn,
                "vehicle_data",
                listing,
                footers,
                _postgres_copier(conn, store),
                dialect="postgres",
                writer="aaaa1111",
                last_done=2,
            )
        days = {str(d) for (d,) in conn.execute("SELECT DISTINCT event_date FROM smartcity.vehicle_data").fetchall()}
    assert stages == 2, "one staging table per file layout (v1, v2)"
    assert first["files in flight"] == 1 and first["new files"] == 3
    assert first["rows copied"] == 2 * third + 5 and first["duplicate ids"] == 5
    v2_null_edges = sum(r.get("edgeId") is None for r in rows[third : 2 * third])
    assert first["rows in warehouse"] == 2 * third and null_edges == third + v2_null_edges and wrong_day == 0
    assert second["new files"] == 1 and second["files in flight"] == 0 and second["reloaded"] == 0
    assert second["rows in warehouse"] == len(rows) == second["rows in lake"] - 5
    assert days == {v.split("=", 1)[1] for v in lake.partitions(lake.data_files(cfg.paths.lake / "vehicle_data"))}
