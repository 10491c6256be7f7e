"""The Kafka broker the lab runs: a real broker in KRaft mode, one node or a quorum on loopback ports.

Since Kafka 4.0 there is no ZooKeeper: one JVM runs both the KRaft controller and the broker.
The lab starts it from jars resolved from Maven Central (see :mod:`smartcity.platform.jvm`), with
its logs in ``<data_dir>/kafka``. A broker already answering at ``kafka_bootstrap`` is reused only
when it is the one of this data dir (same cluster id as ``kafka/logs/meta.properties``): another
lab's or another profile's broker at that address is an error, never written to or emptied. With
``kafka_embedded: false`` the broker is external: the lab produces to it and reads from it, and
never deletes anything on it. Topics and offsets: :mod:`smartcity.platform.topics`.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaConnectionError, KafkaError, NodeNotReadyError

from smartcity.platform import jvm
from smartcity.platform.engine_params import LOCAL_HOSTS, KafkaParams
from smartcity.platform.params import project_root
from smartcity.platform.processes import (
    EngineError,
    EngineHandle,
    ManagedProcess,
    free_port,
    port_open,
    run_checked,
    stop_together,
)

log = logging.getLogger(__name__)

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
        _describe_cluster(admin, timeout_s)
        return True
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        admin.close()


@dataclass
class KafkaBroker(EngineHandle):
    """The broker (or quorum) at ``bootstrap``; stopping it stops the JVMs only if the lab started them.

    ``external`` marks a broker the lab does not own (``kafka_embedded: false``): it is used, but
    its topics are never emptied. ``nodes`` are the nodes the lab started, by node id.
    """

    bootstrap: str
    external: bool = False
    nodes: dict[int, ManagedProcess] = field(default_factory=dict)

    @property
    def process(self) -> ManagedProcess | None:  # type: ignore[override]
        """The JVM of a broker the lab started alone (a quorum has ``nodes``)."""
        return next(iter(self.nodes.values())) if len(self.nodes) == 1 else None

    @property
    def owned(self) -> bool:
        return bool(self.nodes)

    def stop(self) -> None:
        """Stop every node the lab started, all at once.

        One by one, the last nodes would lose their controller majority and wait out a controlled
        shutdown that cannot complete; signalled together, they all leave within seconds.
        """
        stop_together(list(self.nodes.values()))


def node_dir(kafka_dir: Path, node_id: int, nodes: int) -> Path:
    """Where a node keeps its logs and config: kafka/ for a single broker, kafka/node-<id>/ in a quorum."""
    return kafka_dir if nodes == 1 else kafka_dir / f"node-{node_id}"


def data_cluster_id(kafka_dir: Path) -> str | None:
    """The cluster id this data dir's broker (or quorum) was formatted with, None if it has none yet."""
    metas = [kafka_dir / "logs" / "meta.properties", *sorted(kafka_dir.glob("node-*/logs/meta.properties"))]
    found = [m for m in metas if m.is_file()]
    if not found:
        return None
    meta = found[0]
    for line in meta.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    raise EngineError(f"{meta} has no cluster.id: not a Kafka log directory the lab formatted")


def _describe_cluster(admin: KafkaAdminClient, timeout_s: float) -> dict:
    """DescribeCluster, asked again of another node if the one asked has just died.

    The client sends it to any broker the metadata lists; a quorum node killed a moment ago is
    listed until its session expires (about 9 s), and refuses the connection.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.describe_cluster()
        except (KafkaConnectionError, NodeNotReadyError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def broker_identity(bootstrap: str, timeout_s: float = 10.0) -> tuple[str, str]:
    """(cluster id, log dirs) of the broker at bootstrap; the log dirs only when it says (else '?')."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="smartcity-probe",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )
    try:
        cluster_id = _describe_cluster(admin, timeout_s)["cluster_id"]
        try:
            dirs = sorted({d["log_dir"] for b in admin.describe_log_dirs(topic_partitions={}) for d in b["log_dirs"]})
        except (KafkaError, OSError, KeyError):  # a managed cluster may not tell: the id is what counts
            dirs = []
    except (KafkaError, OSError) as exc:
        raise EngineError(f"the Kafka broker at {bootstrap} did not describe its cluster: {exc}") from None
    finally:
        admin.close()
    return cluster_id, ", ".join(dirs) or "?"


def check_broker_is_ours(kafka: KafkaParams, kafka_dir: Path, bootstrap: str | None = None) -> None:
    """Refuse a broker at kafka_bootstrap that is not the one of this profile's data dir (``kafka_dir``).

    Two labs (or two profiles) configured with the same address would otherwise write into, and
    reset, each other's topics; the cluster id in the data dir's meta.properties tells them apart.
    """
    ours = kafka.cluster_id or data_cluster_id(kafka_dir)
    theirs, their_dirs = broker_identity(bootstrap or kafka.bootstrap)
    if theirs == ours:
        return
    if kafka.cluster_id:
        raise EngineError(
            f"the Kafka cluster at {kafka.bootstrap} has id {theirs}, not this profile's kafka_cluster_id "
            f"{kafka.cluster_id}: it is another cluster, and the lab does not write to or empty it; fix "
            "kafka_cluster_id (the CLUSTER_ID of your compose file) or point kafka_bootstrap at this profile's brokers"
        )
    mine = f"cluster id {ours}" if ours else "no broker formatted yet"
    raise EngineError(
        f"the Kafka broker at {kafka.bootstrap} is not this profile's: it is cluster {theirs} with its data in "
        f"{their_dirs}, while this profile's data dir {kafka_dir} has {mine}. Another lab or profile uses this "
        "address: stop that broker, or give this profile a free port in kafka_bootstrap (or set "
        "kafka_embedded: false to use that broker as an external one, which the lab never empties)"
    )


def ensure_broker(kafka: KafkaParams, kafka_dir: Path) -> KafkaBroker:
    """The broker at kafka_bootstrap: this data dir's (``kafka_dir``) if running, an external one, or a new embedded one.

    With several addresses the lab's own brokers are a KRaft quorum, one node per address; nodes of
    it that are down (say, killed) are started again on their data.
    """
    addresses = kafka.addresses
    up = [port_open(host, port) for host, port in addresses]
    if any(up):
        answering = ",".join(f"{host}:{port}" for (host, port), is_up in zip(addresses, up, strict=True) if is_up)
        if not is_kafka(answering):  # asked of the nodes that are up: a dead one would time the probe out
            raise EngineError(
                f"{answering} is in use by something that is not a Kafka broker: stop it, or point "
                "kafka_bootstrap at free ports or at real brokers"
            )
        if not kafka.embedded:
            log.info("using the external Kafka broker(s) at %s", kafka.bootstrap)
            return KafkaBroker(kafka.bootstrap, external=True)
        check_broker_is_ours(kafka, kafka_dir, answering)
        if all(up):
            log.info("using this profile's Kafka broker(s), already running at %s", kafka.bootstrap)
            return KafkaBroker(kafka.bootstrap)
    elif not kafka.embedded:
        raise EngineError(f"no Kafka broker answers at {kafka.bootstrap} (and kafka_embedded is false)")
    if any(host not in LOCAL_HOSTS for host, _ in addresses):
        raise EngineError(
            f"no Kafka broker answers at every address of {kafka.bootstrap}; the lab starts brokers only on 127.0.0.1"
        )
    if kafka.replication > len(addresses):
        raise EngineError(
            f"kafka_replication is {kafka.replication}, but kafka_bootstrap names only "
            f"{len(addresses)} brokers: a topic cannot have more replicas than brokers"
        )
    ports = [port for _, port in addresses]
    # a single broker's controller listener is internal to its JVM: any free port will do on each start
    quorum = Quorum(
        kafka_dir,
        ports,
        partitions=kafka.partitions,
        replication=kafka.replication,
        cluster_id=kafka.cluster_id or None,
        controller_ports=[free_port()] if len(ports) == 1 else None,
    )
    return quorum.start(only=[i for i, is_up in enumerate(up, 1) if not is_up])


#: A quorum node's controller listens on its broker port plus this (static controller.quorum.voters).
CONTROLLER_PORT_OFFSET = 1000


def _server_properties(
    port: int,
    controller_port: int,
    log_dir: Path,
    partitions: int,
    *,
    node_id: int = 1,
    voters: str | None = None,
    replication: int = 1,
) -> str:
    min_isr = min(2, replication)
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={voters or f'1@127.0.0.1:{controller_port}'}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={log_dir}",
            f"num.partitions={partitions}",
            "auto.create.topics.enable=false",
            f"default.replication.factor={replication}",
            f"min.insync.replicas={min_isr}",
            "unclean.leader.election.enable=false",
            f"offsets.topic.replication.factor={replication}",
            "offsets.topic.num.partitions=3",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replication}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
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
    """Format (first time only) and start a single KRaft broker+controller on 127.0.0.1:port."""
    return Quorum(
        data_dir, [port], partitions=default_partitions, replication=1, controller_ports=[free_port()]
    ).start()


class Quorum:
    """A KRaft quorum on 127.0.0.1: node i listens on ports[i-1], its controller on that + 1000.

    Every node is broker and controller, formatted once with the same cluster id (static voters, so
    no ``--standalone``); a node can be killed and started again on its data (the failure tests do).
    """

    def __init__(
        self,
        kafka_dir: Path,
        ports: list[int],
        *,
        partitions: int,
        replication: int,
        cluster_id: str | None = None,
        controller_ports: list[int] | None = None,
    ) -> None:
        self.kafka_dir = kafka_dir
        self.ports = ports
        self.controller_ports = controller_ports or [p + CONTROLLER_PORT_OFFSET for p in ports]
        self.partitions = partitions
        self.replication = replication
        self.cluster_id = cluster_id or data_cluster_id(kafka_dir)
        self.voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(self.controller_ports, 1))
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)

    def _props(self, node_id: int) -> Path:
        home = node_dir(self.kafka_dir, node_id, len(self.ports))
        (home / "logs").mkdir(parents=True, exist_ok=True)
        port = self.ports[node_id - 1]
        props = home / "server.properties"
        props.write_text(
            _server_properties(
                port,
                self.controller_ports[node_id - 1],
                home / "logs",
                self.partitions,
                node_id=node_id,
                voters=self.voters,
                replication=self.replication,
            )
        )
        if not (home / "logs" / "meta.properties").exists():
            self.cluster_id = format_storage(props, self.cluster_id)
        return props

    def start_node(self, node_id: int) -> ManagedProcess:
        """Launch one node (formatting its log dir the first time); readiness is the caller's to wait for."""
        port = self.ports[node_id - 1]
        for busy in (port, self.controller_ports[node_id - 1]):
            if port_open("127.0.0.1", busy, 0.2):
                raise EngineError(f"port {busy} (Kafka node {node_id}) is in use by another program")
        props = self._props(node_id)
        name = f"Kafka broker 127.0.0.1:{port}" if len(self.ports) == 1 else f"Kafka node {node_id} 127.0.0.1:{port}"
        return ManagedProcess(
            name,
            [
                *_java_command(),
                "-Xms256m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                "kafka.Kafka",
                str(props),
            ],
            log_path=props.parent / "broker.log",
            cwd=project_root(),
        )

    def start(self, only: list[int] | None = None) -> KafkaBroker:
        """Start the given nodes (default: all) and wait until each answers and the quorum serves requests."""
        handle = KafkaBroker(self.bootstrap)
        try:
            for node_id in only or range(1, len(self.ports) + 1):
                handle.nodes[node_id] = self.start_node(node_id)
            for node_id, proc in handle.nodes.items():
                port = self.ports[node_id - 1]
                proc.wait_ready(
                    lambda p=port: port_open("127.0.0.1", p, 0.2) and is_kafka(f"127.0.0.1:{p}", 2.0),
                    timeout=START_TIMEOUT_S,
                )
        except BaseException:
            handle.stop()
            raise
        log.info(
            "started Kafka (KRaft) nodes %s at %s, data in %s", sorted(handle.nodes), self.bootstrap, self.kafka_dir
        )
        return handle
