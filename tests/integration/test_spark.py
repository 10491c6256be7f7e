"""The lab's Spark session on the real JVM: bound to loopback only."""

from __future__ import annotations

import ipaddress

import psutil
import pytest

from smartcity import steps
from smartcity.params import Params
from smartcity.platform.spark import spark_conf

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
