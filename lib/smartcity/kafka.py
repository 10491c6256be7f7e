"""Kafka for the lab: a real single-node broker in KRaft mode, topics, a producer and offsets.

Since Kafka 4.0 there is no ZooKeeper: one JVM runs both the KRaft controller and the broker.
The lab starts it from jars resolved from Maven Central (see :mod:`smartcity.jvm`), with its logs
in ``<data_dir>/kafka``. A broker already answering at ``kafka_bootstrap`` is reused only when it
is the one of this data dir (same cluster id as ``kafka/logs/meta.properties``): another lab's or
another profile's broker at that address is an error, never written to or emptied. With
``kafka_embedded: false`` the broker is external: the lab produces to it and reads from it, and
never deletes anything on it.
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
    """The broker at ``bootstrap``; stopping it stops the JVM only if the lab started it.

    ``external`` marks a broker the lab does not own (``kafka_embedded: false``): it is used, but
    its topics are never emptied.
    """

    bootstrap: str
    process: ManagedProcess | None = None
    external: bool = False


def data_cluster_id(kafka_dir: Path) -> str | None:
    """The cluster id this data dir's broker was formatted with, None if it has none yet."""
    meta = kafka_dir / "logs" / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    raise EngineError(f"{meta} has no cluster.id: not a Kafka log directory the lab formatted")


def broker_identity(bootstrap: str, timeout_s: float = 10.0) -> tuple[str, str]:
    """(cluster id, log dirs) of the broker at bootstrap; the log dirs only when it says (else '?')."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smartcity-probe",
                             request_timeout_ms=int(timeout_s * 1000), bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        cluster_id = admin.describe_cluster()["cluster_id"]
        try:
            dirs = sorted({d["log_dir"] for b in admin.describe_log_dirs(topic_partitions={}) for d in b["log_dirs"]})
        except (KafkaError, OSError, KeyError):  # a managed cluster may not tell: the id is what counts
            dirs = []
    except (KafkaError, OSError) as exc:
        raise EngineError(f"the Kafka broker at {bootstrap} did not describe its cluster: {exc}") from None
    finally:
        admin.close()
    return cluster_id, ", ".join(dirs) or "?"


def check_broker_is_ours(cfg: Params) -> None:
    """Refuse a broker at cfg.kafka_bootstrap that is not the one of this profile's data dir.

    Two labs (or two profiles) configured with the same address would otherwise write into, and
    reset, each other's topics; the cluster id in the data dir's meta.properties tells them apart.
    """
    kafka_dir = cfg.data_path / "kafka"
    ours = data_cluster_id(kafka_dir)
    theirs, their_dirs = broker_identity(cfg.kafka_bootstrap)
    if theirs == ours:
        return
    mine = f"cluster id {ours}" if ours else "no broker formatted yet"
    raise EngineError(
        f"the Kafka broker at {cfg.kafka_bootstrap} is not this profile's: it is cluster {theirs} with its data in "
        f"{their_dirs}, while this profile's data dir {kafka_dir} has {mine}. Another lab or profile uses this "
        "address: stop that broker, or give this profile a free port in kafka_bootstrap (or set "
        "kafka_embedded: false to use that broker as an external one, which the lab never empties)"
    )


def ensure_broker(cfg: Params) -> KafkaBroker:
    """The broker at cfg.kafka_bootstrap: this data dir's if running, an external one, or a new embedded one."""
    host, port = cfg.kafka_host_port
    if port_open(host, port):
        if not is_kafka(cfg.kafka_bootstrap):
            raise EngineError(
                f"{host}:{port} is in use by something that is not a Kafka broker: stop it, or point "
                f"kafka_bootstrap at a free port or at a real broker"
            )
        if not cfg.kafka_embedded:
            log.info("using the external Kafka broker at %s", cfg.kafka_bootstrap)
            return KafkaBroker(cfg.kafka_bootstrap, external=True)
        check_broker_is_ours(cfg)
        log.info("using this profile's Kafka broker, already running at %s", cfg.kafka_bootstrap)
        return KafkaBroker(cfg.kafka_bootstrap)
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
    empty: bool = False,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """Create missing topics, grow those with fewer partitions, optionally empty them; name -> partitions.

    A topic with more partitions than asked keeps them (Kafka cannot remove partitions) and the
    table shows it. Emptying truncates the records (:func:`truncate_topics`): topics are never
    deleted and re-created, which races the controller on a busy machine.
    """
    admin = _admin(bootstrap)
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics({t: {"num_partitions": partitions, "replication_factor": 1} for t in missing},
                                    timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                pass  # another client created one meanwhile: it exists, which is all we need
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
        counts = _partition_counts(admin, topics)
        fewer = {t: partitions for t, n in counts.items() if n < partitions}
        if fewer:
            admin.create_partitions(fewer, timeout_ms=int(timeout_s * 1000))
            deadline = time.monotonic() + timeout_s
            counts = _partition_counts(admin, topics)
            while any(n < partitions for n in counts.values()):
                if time.monotonic() > deadline:
                    raise EngineError(f"topics {sorted(fewer)} did not reach {partitions} partitions within {timeout_s:.0f} s")
                time.sleep(0.2)
                counts = _partition_counts(admin, topics)
            admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))  # new partitions have leaders
        for topic, n in counts.items():
            if n > partitions:
                log.warning("topic %s keeps its %d partitions (kafka_partitions is %d)", topic, n, partitions)
    finally:
        admin.close()
    if empty:
        truncate_topics(bootstrap, topics, timeout_s=timeout_s)
    return pd.DataFrame({"topic": list(topics), "partitions": [counts[t] for t in topics]}).set_index("topic")


def _partition_counts(admin: KafkaAdminClient, topics: Sequence[str]) -> dict[str, int]:
    return {d["name"]: len(d["partitions"]) for d in admin.describe_topics(list(topics))}


def truncate_topics(bootstrap: str, topics: Sequence[str] = TOPICS, *, timeout_s: float = 60.0) -> dict[str, int]:
    """Delete every record the topics hold now (Kafka DeleteRecords up to the end offsets); returns how many.

    The topics, their partitions and their configs stay: nothing waits for a deletion to finish.
    Offsets go on from where they were (a new run's first record is not at offset 0).
    """
    admin = _admin(bootstrap)
    try:
        parts = [TopicPartition(d["name"], p["partition_index"])
                 for d in admin.describe_topics(list(topics)) for p in d["partitions"]]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in parts})
        upto = {tp: ends[tp].offset for tp in parts if ends[tp].offset > starts[tp].offset}
        if upto:
            done = admin.delete_records(upto, timeout_ms=int(timeout_s * 1000))
            short = {f"{tp.topic}[{tp.partition}]": r["low_watermark"] for tp, r in done.items()
                     if r["low_watermark"] < upto[tp]}
            if short:
                raise EngineError(f"Kafka did not delete the records of {short} up to their end offsets")
    except UnknownTopicOrPartitionError as exc:
        raise EngineError(f"a topic is missing on {bootstrap}: {exc}") from None
    finally:
        admin.close()
    removed: Counter[str] = Counter({t: 0 for t in topics})
    for tp, offset in upto.items():
        removed[tp.topic] += offset - starts[tp].offset
    return dict(removed)


def prepare_topics(cfg: Params) -> pd.DataFrame:
    """The run's topics with their partitions; with reset_run, emptied of earlier runs' records.

    Emptying happens only on this profile's own broker: an external one (kafka_embedded: false)
    or another data dir's is an error, raised before anything is deleted.
    """
    if cfg.reset_run:
        if not cfg.kafka_embedded:
            raise EngineError(
                f"reset_run would delete every record of the run's topics on {cfg.kafka_bootstrap}, a broker the "
                "lab does not own (kafka_embedded: false), and the lab never deletes data there: empty the topics "
                "yourself (e.g. kafka-delete-records.sh), or set reset_run: false"
            )
        check_broker_is_ours(cfg)
    return ensure_topics(cfg.kafka_bootstrap, partitions=cfg.kafka_partitions, empty=cfg.reset_run)


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
