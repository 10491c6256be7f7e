"""Kafka for the lab: a real single-node broker in KRaft mode, topics, a producer and offsets.

Since Kafka 4.0 there is no ZooKeeper: one JVM runs both the KRaft controller and the broker.
The lab starts it from jars resolved from Maven Central (see :mod:`smartcity.jvm`) unless a
broker already answers at ``kafka_bootstrap``, in which case it is used and left running.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from smartcity import jvm
from smartcity.config import TOPICS, Params, project_root
from smartcity.engines import EngineError, EngineHandle, ManagedProcess, free_port, port_open, run_checked

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost")
START_TIMEOUT_S = 90.0
_LOG4J = Path(__file__).with_name("conf") / "log4j2-kafka.properties"


def is_kafka(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a Kafka broker answers an API call (DescribeCluster) at bootstrap."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            client_id="smartcity-probe",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        admin.close()


@dataclass
class KafkaBroker(EngineHandle):
    """The broker at ``bootstrap``; stopping it stops the JVM only if the lab started it."""

    bootstrap: str
    process: ManagedProcess | None = None


def ensure_broker(cfg: Params) -> KafkaBroker:
    """The broker at cfg.kafka_bootstrap: reuse one that answers, else start the embedded one."""
    host, port = cfg.kafka_host_port
    if port_open(host, port):
        if is_kafka(cfg.kafka_bootstrap):
            log.info("using the Kafka broker already running at %s", cfg.kafka_bootstrap)
            return KafkaBroker(cfg.kafka_bootstrap)
        raise EngineError(
            f"{host}:{port} is in use by something that is not a Kafka broker: stop it, or point "
            f"kafka_bootstrap at a free port or at a real broker"
        )
    if not cfg.kafka_embedded:
        raise EngineError(f"no Kafka broker answers at {cfg.kafka_bootstrap} (and kafka_embedded is false)")
    if host not in LOCAL_HOSTS:
        raise EngineError(f"no Kafka broker answers at {cfg.kafka_bootstrap}; the lab starts one only on 127.0.0.1")
    return start_broker(port, cfg.data_path / "kafka", default_partitions=cfg.kafka_partitions)


def _server_properties(port: int, controller_port: int, log_dir: Path, partitions: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={log_dir}",
            f"num.partitions={partitions}",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.ms=-1",
            "",
        ]
    )


def _java_command() -> list[str]:
    classpath = ":".join(str(j) for j in jvm.resolve_jars("kafka-broker"))
    return [str(jvm.check_java()), "-cp", classpath, f"-Dlog4j2.configurationFile={_LOG4J}"]


def format_storage(props: Path, cluster_id: str | None = None) -> str:
    """Write the KRaft metadata of a new log directory (once per data folder); returns the cluster id."""
    cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    run_checked(
        # "--cluster-id=": a base64 id may start with "-", which would otherwise read as an option
        [*_java_command(), "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)],
        what=f"formatting the Kafka log directory of {props}",
    )
    return cluster_id


def start_broker(port: int, data_dir: Path, *, default_partitions: int = 3) -> KafkaBroker:
    """Format (first time only) and start a KRaft broker+controller on 127.0.0.1:port."""
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    props = data_dir / "server.properties"
    # The controller listener is internal to this one JVM: any free port will do on each start.
    props.write_text(_server_properties(port, free_port(), log_dir, default_partitions))
    if not (log_dir / "meta.properties").exists():
        format_storage(props)
    base = _java_command()
    bootstrap = f"127.0.0.1:{port}"
    proc = ManagedProcess(
        f"Kafka broker {bootstrap}",
        [*base, "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true", "kafka.Kafka", str(props)],
        log_path=data_dir / "broker.log",
        cwd=project_root(),
    )
    proc.wait_ready(lambda: port_open("127.0.0.1", port, 0.2) and is_kafka(bootstrap, 2.0), timeout=START_TIMEOUT_S)
    log.info("started Kafka (KRaft) at %s, data in %s", bootstrap, data_dir)
    return KafkaBroker(bootstrap, proc)


def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smartcity-admin", request_timeout_ms=30000)


def ensure_topics(
    bootstrap: str,
    topics: Sequence[str] = TOPICS,
    *,
    partitions: int,
    recreate: bool = False,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """Create the topics if missing (or drop and create them empty); return name -> partitions."""
    admin = _admin(bootstrap)
    try:
        if recreate:
            existing = [t for t in topics if t in set(admin.list_topics())]
            if existing:
                admin.delete_topics(existing, timeout_ms=int(timeout_s * 1000))
        spec = {t: {"num_partitions": partitions, "replication_factor": 1} for t in topics}
        deadline = time.monotonic() + timeout_s
        pending = dict(spec)
        while pending:
            missing = {t: s for t, s in pending.items() if t not in set(admin.list_topics())}
            if not missing:
                break
            try:
                admin.create_topics(missing, timeout_ms=int(timeout_s * 1000))
                pending = {}
            except TopicAlreadyExistsError:
                # a deleted topic lingers until the controller has removed it: try again shortly
                if time.monotonic() > deadline:
                    raise EngineError(f"topics {sorted(missing)} were not re-created within {timeout_s:.0f} s") from None
                time.sleep(0.2)
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
        described = admin.describe_topics(list(topics))
    finally:
        admin.close()
    rows = [{"topic": d["name"], "partitions": len(d["partitions"])} for d in described]
    return pd.DataFrame(rows).set_index("topic").loc[list(topics)]


def topic_counts(bootstrap: str, topics: Sequence[str] = TOPICS) -> dict[str, int]:
    """Messages held per topic (end offset minus start offset, summed over partitions)."""
    admin = _admin(bootstrap)
    try:
        described = admin.describe_topics(list(topics))
        parts = [TopicPartition(d["name"], p["partition_index"]) for d in described for p in d["partitions"]]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in parts})
    except UnknownTopicOrPartitionError as exc:
        raise EngineError(f"a topic is missing on {bootstrap}: {exc}") from None
    finally:
        admin.close()
    counts: Counter[str] = Counter({t: 0 for t in topics})
    for tp in parts:
        counts[tp.topic] += ends[tp].offset - starts[tp].offset
    return dict(counts)
