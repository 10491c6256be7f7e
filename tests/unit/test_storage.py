"""The lake's storage primitives on both stores: a local folder and S3 (moto in-process; a moto server for pyarrow)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber

from smartcity import steps
from smartcity.stream import store as storage
from smartcity.stream.store import LakeStore, LocalStore, ObjectInfo, S3Store, StoreError
from tests.conftest import lab_params
from tests.lake_fixture import TEST_BUCKET, TEST_PREFIX, TEST_REGION, open_test_store, use_fake_aws


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LakeStore]:
    with open_test_store(request.param, tmp_path, monkeypatch) as opened:
        yield opened


def parquet_bytes(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(rows))}), sink)
    return sink.getvalue()


def test_put_get_head_delete(store: LakeStore) -> None:
    store.put("a/b/c.json", b'{"x": 1}')
    assert store.get("a/b/c.json") == b'{"x": 1}'
    info = store.head("a/b/c.json")
    assert info is not None and (info.key, info.size) == ("a/b/c.json", 8)
    store.put("a/b/c.json", b"{}")  # a plain put replaces
    assert store.get("a/b/c.json") == b"{}"
    store.delete("a/b/c.json")
    store.delete("a/b/c.json")  # a missing object is no error
    assert store.head("a/b/c.json") is None
    with pytest.raises(FileNotFoundError):
        store.get("a/b/c.json")


def test_a_conditional_put_never_replaces(store: LakeStore) -> None:
    store.put("log/writer.json", b"first", if_absent=True)
    with pytest.raises(FileExistsError):
        store.put("log/writer.json", b"second", if_absent=True)
    assert store.get("log/writer.json") == b"first"
    if isinstance(store, LocalStore):  # no temporary file is left beside it
        assert [p.name for p in (store.root / "log").iterdir()] == ["writer.json"]


def test_listing_is_sorted_and_stops_at_the_folder(store: LakeStore) -> None:
    for key in ("t/b/2.parquet", "t/a.parquet", "t/b/1.parquet", "t2/x.parquet", "t/c/d/e.parquet"):
        store.put(key, b"12345")
    assert [o.key for o in store.list("t")] == ["t/a.parquet", "t/b/1.parquet", "t/b/2.parquet", "t/c/d/e.parquet"]
    assert store.list("t/") == store.list("t")
    assert store.list("t", delimiter="/") == [
        ObjectInfo("t/a.parquet", 5, store.list("t")[0].etag),
        ObjectInfo("t/b/", 0),
        ObjectInfo("t/c/", 0),
    ]
    assert store.list("nothing") == [] and store.list("nothing", delimiter="/") == []


def test_publish_moves_once_and_is_idempotent(store: LakeStore) -> None:
    data = parquet_bytes(3)
    store.put("staging/part.parquet", data)
    store.publish("staging/part.parquet", "lake/t/k=1/part-1.parquet", len(data))
    assert store.get("lake/t/k=1/part-1.parquet") == data and store.head("staging/part.parquet") is None
    store.publish("staging/part.parquet", "lake/t/k=1/part-1.parquet", len(data))  # a retry after the move: done
    with pytest.raises(FileExistsError, match="holds"):  # ... unless the lake's object is another one
        store.publish("staging/part.parquet", "lake/t/k=1/part-1.parquet", len(data) + 1)
    with pytest.raises(FileNotFoundError):
        store.publish("staging/other.parquet", "lake/t/k=1/part-2.parquet", len(data))


def test_a_publish_cut_between_copy_and_delete_finishes(store: LakeStore) -> None:
    data = parquet_bytes(2)
    store.put("staging/part.parquet", data)
    store.put("lake/t/part-1.parquet", data)  # the copy happened, the delete did not
    store.publish("staging/part.parquet", "lake/t/part-1.parquet", len(data))
    assert store.get("lake/t/part-1.parquet") == data and store.list("staging") == []


def test_delete_prefix_removes_a_folder_and_only_that(store: LakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"big/k{n:04d}" for n in range(234)]
    calls: list[int] = []
    if isinstance(store, S3Store):  # the load for which DeleteObjects takes 1000 keys at most (100 here)
        monkeypatch.setattr(storage, "DELETE_OBJECTS_MAX_KEYS", 100)
        import concurrent.futures

        client = store.client
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=TEST_BUCKET, Key=f"{TEST_PREFIX}/{k}", Body=b"x"), keys))
        delete_objects = client.delete_objects

        def counted(**kwargs: Any) -> Any:
            calls.append(len(kwargs["Delete"]["Objects"]))
            return delete_objects(**kwargs)

        monkeypatch.setattr(client, "delete_objects", counted)
    else:
        for key in keys:
            store.put(key, b"x")
    store.put("big2/keep", b"x")
    store.put("big/sub/deeper/z", b"x")
    store.delete_prefix("big")
    assert store.list("big") == [] and store.get("big2/keep") == b"x"
    if isinstance(store, S3Store):
        assert calls == [100, 100, 35]
    store.delete_prefix("never-there")
    with pytest.raises(StoreError, match="refuses the store's root"):
        store.delete_prefix("")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a"])
def test_keys_are_relative_and_plain(store: LakeStore, key: str) -> None:
    with pytest.raises(StoreError, match="not a store key"):
        store.put(key, b"x")


def test_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalStore(tmp_path)
    assert (
        local.spark_uri("checkpoints/lake") == str(tmp_path / "checkpoints" / "lake") == local.uri("checkpoints/lake")
    )
    use_fake_aws(monkeypatch, tmp_path)
    session = boto3.Session(region_name=TEST_REGION)
    s3 = S3Store("bkt", "/p/q/", session)
    assert (
        s3.spark_uri("checkpoints/lake/_staging/0000000001/_raw")
        == "s3a://bkt/p/q/checkpoints/lake/_staging/0000000001/_raw"
    )
    assert s3.uri("lake/gps_data") == "s3://bkt/p/q/lake/gps_data"
    assert S3Store("bkt", "", session).uri("lake/x") == "s3://bkt/lake/x"


def test_open_store_follows_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = steps.open_store(lab_params(tmp_path))
    assert isinstance(local, LocalStore) and local.root == lab_params(tmp_path).paths.data
    use_fake_aws(monkeypatch, tmp_path)
    cfg = lab_params(
        tmp_path,
        lake_storage="s3",
        catalog_engine="glue",
        s3_bucket="smartcity-lab",
        s3_prefix="team/run",
        aws_region="eu-west-2",
    )
    s3 = steps.open_store(cfg)
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("smartcity-lab", "team/run")
    assert s3.client.meta.region_name == "eu-west-2"
    session = boto3.Session(region_name="us-west-2")
    assert steps.open_store(cfg, boto3_session=session).session is session


# -- the S3 answers moto does not give: a conditional copy refused (412), a conflict (409) ----------------
@pytest.fixture
def stubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Store, Stubber]]:
    use_fake_aws(monkeypatch, tmp_path)
    s3 = S3Store("bkt", "p", boto3.Session(region_name=TEST_REGION))
    monkeypatch.setattr(storage.time, "sleep", lambda _s: None)
    with Stubber(s3.client) as stubber:
        yield s3, stubber
        stubber.assert_no_pending_responses()


COPY = {
    "Bucket": "bkt",
    "Key": "p/lake/t/part-1.parquet",
    "IfNoneMatch": "*",
    "CopySource": {"Bucket": "bkt", "Key": "p/staging/part.parquet"},
}
HEAD = {"Bucket": "bkt", "Key": "p/lake/t/part-1.parquet"}
DELETE = {"Bucket": "bkt", "Key": "p/staging/part.parquet"}


def test_a_refused_copy_of_the_same_size_counts_as_done(stubbed: tuple[S3Store, Stubber]) -> None:
    s3, stub = stubbed
    stub.add_client_error("copy_object", "PreconditionFailed", http_status_code=412, expected_params=COPY)
    stub.add_response("head_object", {"ContentLength": 321, "ETag": '"abc"'}, HEAD)
    stub.add_response("delete_object", {}, DELETE)
    s3.publish("staging/part.parquet", "lake/t/part-1.parquet", 321)


def test_a_refused_copy_of_another_size_is_named(stubbed: tuple[S3Store, Stubber]) -> None:
    s3, stub = stubbed
    stub.add_client_error("copy_object", "PreconditionFailed", http_status_code=412, expected_params=COPY)
    stub.add_response("head_object", {"ContentLength": 999, "ETag": '"abc"'}, HEAD)
    with pytest.raises(FileExistsError, match="s3://bkt/p/lake/t/part-1.parquet holds 999 bytes, not the 321"):
        s3.publish("staging/part.parquet", "lake/t/part-1.parquet", 321)


def test_a_refused_copy_without_a_recorded_size_is_named(stubbed: tuple[S3Store, Stubber]) -> None:
    s3, stub = stubbed
    stub.add_client_error("copy_object", "PreconditionFailed", http_status_code=412, expected_params=COPY)
    stub.add_response("head_object", {"ContentLength": 321, "ETag": '"abc"'}, HEAD)
    with pytest.raises(StoreError, match="recorded no size"):
        s3.publish("staging/part.parquet", "lake/t/part-1.parquet", -1)


def test_a_conflicting_copy_is_retried(stubbed: tuple[S3Store, Stubber]) -> None:
    s3, stub = stubbed
    stub.add_client_error("copy_object", "ConditionalRequestConflict", http_status_code=409, expected_params=COPY)
    stub.add_response("copy_object", {}, COPY)
    stub.add_response("delete_object", {}, DELETE)
    s3.publish("staging/part.parquet", "lake/t/part-1.parquet", 321)


def test_a_conflict_that_persists_is_raised(stubbed: tuple[S3Store, Stubber]) -> None:
    from botocore.exceptions import ClientError

    s3, stub = stubbed
    put = {"Bucket": "bkt", "Key": "p/log/writer.json", "Body": b"x", "IfNoneMatch": "*"}
    for _ in range(storage.CONFLICT_ATTEMPTS):
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409, expected_params=put)
    with pytest.raises(ClientError, match="ConditionalRequestConflict"):
        s3.put("log/writer.json", b"x", if_absent=True)


def test_other_s3_errors_are_not_swallowed(stubbed: tuple[S3Store, Stubber]) -> None:
    from botocore.exceptions import ClientError

    s3, stub = stubbed
    stub.add_client_error("copy_object", "AccessDenied", http_status_code=403, expected_params=COPY)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.publish("staging/part.parquet", "lake/t/part-1.parquet", 321)


# -- pyarrow over S3: a moto server, since pyarrow speaks HTTP itself ----------------------------------------
@pytest.fixture
def moto_endpoint(moto_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's moto server, for this test only (its environment goes with the test)."""
    use_fake_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    return moto_server_url


def test_pyarrow_reads_the_lake_through_arrow(moto_endpoint: str) -> None:
    session = boto3.Session(region_name=TEST_REGION)
    session.client("s3").create_bucket(Bucket=TEST_BUCKET)
    s3 = S3Store(TEST_BUCKET, TEST_PREFIX, session)
    assert s3.endpoint_url() == moto_endpoint
    s3.put("lake/t/k=1/part-a.parquet", parquet_bytes(3))
    s3.put("lake/t/k=2/part-b.parquet", parquet_bytes(2))
    fs, root = s3.arrow()
    assert isinstance(fs, pafs.S3FileSystem) and root == f"{TEST_BUCKET}/{TEST_PREFIX}"
    assert pq.read_table(f"{root}/lake/t/k=1/part-a.parquet", filesystem=fs).column("x").to_pylist() == [0, 1, 2]
    table = ds.dataset(f"{root}/lake/t", filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert sorted(zip(table.column("k").to_pylist(), table.column("x").to_pylist())) == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 1),
    ]


def test_the_endpoint_for_s3_alone_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws(monkeypatch, tmp_path)
    session = boto3.Session(region_name=TEST_REGION)
    assert S3Store("bkt", "p", session).endpoint_url() is None  # AWS's own
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    assert S3Store("bkt", "p", boto3.Session(region_name=TEST_REGION)).endpoint_url() == "http://127.0.0.1:2"


def test_arrow_without_credentials_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws(monkeypatch, tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(StoreError, match="no AWS credentials"):
        S3Store("bkt", "p", boto3.Session(region_name=TEST_REGION)).arrow()


def test_local_arrow_reads_the_folder(tmp_path: Path) -> None:
    local = LocalStore(tmp_path)
    local.put("lake/t/k=1/a.parquet", parquet_bytes(4))
    fs, root = local.arrow()
    assert pq.read_table(f"{root}/lake/t/k=1/a.parquet", filesystem=fs).num_rows == 4
