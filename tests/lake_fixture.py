"""A lake written without Spark (pyarrow, same layout), for fast tests of every reader of the lake,
and the two stores (a folder, moto's S3) the lake's tests run on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartcity.fleet import contracts
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.params import Params
from smartcity.stream import lake
from smartcity.stream.store import LakeStore, LocalStore, S3Store
from tests.conftest import use_fake_aws


def to_row(event: Event, offset: int) -> dict[str, object]:
    row = dict(event.value)
    stamp = datetime.fromisoformat(str(row["timestamp"]).replace("Z", "+00:00"))
    row["timestamp"] = stamp
    row.update(
        event_date=date(stamp.year, stamp.month, stamp.day),
        kafka_partition=0,
        kafka_offset=offset,
        kafka_timestamp=stamp,
    )
    return row


def write_lake(cfg: Params, events: list[Event], version: int = contracts.SCHEMA_VERSION) -> dict[str, int]:
    """Write events as the stream would (one table per topic, partitioned by event_date).

    ``version`` writes the columns of an older contract, as a lake made by an older lab holds them.
    """
    counts = {}
    for topic in TOPICS:
        rows = [to_row(e, n) for n, e in enumerate(e for e in events if e.topic == topic)]
        schema = contracts.arrow_schema(topic, version=version)
        table = pa.Table.from_pylist(rows, schema=pa.schema([f.with_nullable(True) for f in schema]))
        pq.write_to_dataset(table, str(cfg.paths.lake / topic), partition_cols=["event_date"])
        counts[topic] = len(rows)
    return counts


def write_lake_objects(store: LakeStore, events: list[Event]) -> dict[str, int]:
    """Write events into any store's lake as the stream publishes them: one file per table and date,
    each one put, under ``lake/<topic>/event_date=<date>/``."""
    counts = {}
    for topic in TOPICS:
        rows = [to_row(e, n) for n, e in enumerate(e for e in events if e.topic == topic)]
        schema = lake.table_schema(topic)
        by_day: dict[date, list[dict[str, object]]] = {}
        for row in rows:
            by_day.setdefault(row.pop("event_date"), []).append(row)  # the partition lives in the key
        for day, day_rows in sorted(by_day.items()):
            table = pa.Table.from_pylist(day_rows, schema=schema.remove(schema.get_field_index("event_date")))
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            store.put(
                f"{lake.LAKE}/{topic}/event_date={day}/part-0000000000-000-fixture.parquet",
                sink.getvalue().to_pybytes(),
            )
        counts[topic] = len(rows)
    return counts


# -- the two stores a test runs on ---------------------------------------------------------------------
#: A bucket and prefix of moto's in-process S3 (nothing leaves the process).
TEST_BUCKET = "smartcity-unit"
TEST_PREFIX = "runs/unit"
TEST_REGION = "us-east-1"


@contextmanager
def open_test_store(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LakeStore]:
    """A LocalStore under tmp_path, or an S3Store on a fresh bucket of moto's in-process S3."""
    if kind == "local":
        yield LocalStore(tmp_path / "data")
        return
    import boto3
    from moto import mock_aws

    use_fake_aws(monkeypatch, tmp_path)
    with mock_aws():
        session = boto3.Session(region_name=TEST_REGION)
        session.client("s3").create_bucket(Bucket=TEST_BUCKET)
        yield S3Store(TEST_BUCKET, TEST_PREFIX, session)


def objects_under(store: LakeStore, prefix: str) -> dict[str, bytes]:
    """Every object under a prefix, read without the lab's code: a folder walk, or boto3's own listing.

    This is how Athena or a crawler sees a table location: everything below it, hidden names included.
    """
    if isinstance(store, LocalStore):
        folder = store.root / prefix
        return (
            {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
            if folder.is_dir()
            else {}
        )
    import boto3

    client = boto3.client("s3", region_name=TEST_REGION)
    full = f"{TEST_PREFIX}/{prefix}/"
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=TEST_BUCKET, Prefix=full):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(full) :]] = client.get_object(Bucket=TEST_BUCKET, Key=obj["Key"])["Body"].read()
    return found
