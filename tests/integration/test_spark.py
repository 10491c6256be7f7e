"""The lab's Spark session on the real JVM: bound to loopback only, and the stream's warm-up on it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import psutil
import pytest

from smartcity import steps
from smartcity.fleet.contracts import TOPICS
from smartcity.params import Params
from smartcity.platform import topics
from smartcity.platform.spark import spark_conf
from smartcity.stream import warm_up

pytestmark = pytest.mark.integration


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, also written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1), as Java binds."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_the_driver_listens_on_loopback_only(spark: object, lab_cfg: Params) -> None:
    from pyspark import SparkContext

    conf = spark_conf(steps.session_spec(lab_cfg))
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"  # type: ignore[attr-defined]
    jvm = psutil.Process(SparkContext._gateway.proc.pid)  # type: ignore[union-attr]
    listening = [
        c.laddr
        for p in (jvm, *jvm.children(recursive=True))
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "the driver JVM listens somewhere (block manager, RPC)"
    exposed = [f"{a.ip}:{a.port}" for a in listening if not is_loopback(a.ip)]
    assert exposed == [], f"the Spark driver listens beyond loopback: {exposed}"


def test_the_warm_up_runs_the_streams_path_on_scratch_topics_and_leaves_nothing(
    broker: object, spark: object, lab_cfg: Params, tmp_path: Path
) -> None:
    """What ``smartcity live`` does before the fleet starts (stream_warm_up_events), on the session's engines."""
    scratch = [warm_up.PREFIX + t for t in TOPICS]
    lake_before = sorted(lab_cfg.paths.data.rglob("*.parquet"))
    warm_up.warm_up_stream(spark, lab_cfg.kafka, lab_cfg.fleet, tmp_path, events=2000, rounds=2)  # type: ignore[arg-type]
    assert topics.topic_counts(lab_cfg.kafka.bootstrap, scratch) == dict.fromkeys(scratch, 0), "scratch topics emptied"
    assert list(tmp_path.iterdir()) == [], "its staged files are gone"
    assert sorted(lab_cfg.paths.data.rglob("*.parquet")) == lake_before, "nothing reached the lake"
