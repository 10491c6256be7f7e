"""The embedded Kafka broker: started for real, found again, and refused when the port lies."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from smartcity import steps
from smartcity.fleet.contracts import TOPICS, Event
from smartcity.ingest.producer import produce
from smartcity.params import Params
from smartcity.platform import broker as kraft
from smartcity.platform import topics
from smartcity.platform.broker import KafkaBroker
from smartcity.platform.processes import EngineError
from smartcity.steps import Lab
from tests.conftest import lab_params, read_topics

pytestmark = pytest.mark.integration


def topic_ids(bootstrap: str, names: tuple[str, ...]) -> dict[str, str]:
    """Kafka's id of each topic: a topic deleted and created again under the same name gets a new one."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {d["name"]: str(d["topic_id"]) for d in admin.describe_topics(list(names))}
    finally:
        admin.close()


def test_the_session_broker_answers_kafka_api_calls(broker: KafkaBroker) -> None:
    assert kraft.is_kafka(broker.bootstrap)


def test_a_running_broker_is_reused_not_restarted(broker: KafkaBroker, lab_cfg: Params) -> None:
    again = steps.open_broker(lab_cfg)
    assert not again.owned
    again.stop()  # stopping a broker we did not start leaves it running
    assert kraft.is_kafka(broker.bootstrap)


def test_another_data_dirs_broker_at_the_address_is_a_clear_error(
    broker: KafkaBroker, lab_cfg: Params, tmp_path: Path
) -> None:
    # a second lab (or profile) configured with the address the session's broker already serves
    other = lab_params(tmp_path, kafka_bootstrap=broker.bootstrap)
    theirs = kraft.data_cluster_id(lab_cfg.paths.kafka)
    with pytest.raises(EngineError) as fresh:
        steps.open_broker(other)
    message = str(fresh.value)
    assert f"the Kafka broker at {broker.bootstrap} is not this profile's: it is cluster {theirs}" in message
    assert str(lab_cfg.paths.kafka / "logs") in message and str(other.paths.kafka) in message
    assert "no broker formatted yet" in message and "stop that broker, or give this profile a free port" in message
    # the same once the other data dir has a broker of its own (formatted, not running)
    (other.paths.kafka / "logs").mkdir(parents=True)
    props = other.paths.kafka / "server.properties"
    props.write_text(kraft._server_properties(9, 10, other.paths.kafka / "logs", 1))
    mine = kraft.format_storage(props)
    with pytest.raises(EngineError, match=f"is cluster {theirs} .* has cluster id {mine}"):
        steps.open_broker(other)
    with pytest.raises(EngineError, match="is not this profile's"):  # nor would it empty that broker's topics
        steps.reset_run(steps.open_lab(other))


def test_an_external_broker_is_used_but_never_emptied(broker: KafkaBroker, tmp_path: Path) -> None:
    topics.ensure_topics(broker.bootstrap, TOPICS, partitions=3)
    produce(broker.bootstrap, [Event(TOPICS[0], "k", {"n": 1})])
    held = topics.topic_counts(broker.bootstrap, TOPICS)
    external = lab_params(tmp_path, kafka_bootstrap=broker.bootstrap, kafka_embedded=False)
    found = steps.open_broker(external)
    assert found.external and not found.owned
    with pytest.raises(
        EngineError, match="a broker the lab does not own .* empty the topics yourself .* reset_run: false"
    ):
        steps.reset_run(steps.open_lab(external))
    assert topics.topic_counts(broker.bootstrap, TOPICS) == held
    kept = lab_params(tmp_path, kafka_bootstrap=broker.bootstrap, kafka_embedded=False, reset_run=False)
    assert steps.reset_run(steps.open_lab(kept))["partitions"].to_dict() == {t: 3 for t in TOPICS}
    assert topics.topic_counts(broker.bootstrap, TOPICS) == held


def test_a_reset_empties_this_profiles_own_broker(broker: KafkaBroker, lab: Lab) -> None:
    topics.ensure_topics(broker.bootstrap, TOPICS, partitions=3)
    produce(broker.bootstrap, [Event(TOPICS[0], "k", {"n": 1})])
    assert steps.reset_run(lab)["partitions"].to_dict() == {t: 3 for t in TOPICS}
    assert set(topics.topic_counts(broker.bootstrap, TOPICS).values()) == {0}


@pytest.fixture()
def not_kafka() -> Iterator[int]:
    """A TCP server on a free port that accepts connections and answers garbage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_something_else_on_the_port_is_a_clear_error(tmp_path: Path, not_kafka: int) -> None:
    cfg = lab_params(tmp_path, kafka_bootstrap=f"127.0.0.1:{not_kafka}")
    with pytest.raises(EngineError, match=f"127.0.0.1:{not_kafka} is in use by something that is not a Kafka broker"):
        steps.open_broker(cfg)


def test_no_broker_and_embedding_off_is_a_clear_error(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path, kafka_embedded=False)
    with pytest.raises(EngineError, match="no Kafka broker answers .* kafka_embedded is false"):
        steps.open_broker(cfg)


def test_topics_are_created_and_emptied_without_being_deleted(broker: KafkaBroker) -> None:
    names = ("it_topic_a", "it_topic_b")
    table = topics.ensure_topics(broker.bootstrap, names, partitions=2)
    assert table["partitions"].to_dict() == {"it_topic_a": 2, "it_topic_b": 2}
    events = [Event("it_topic_a", f"k{n}", {"n": n}) for n in range(50)]
    report = produce(broker.bootstrap, events)
    assert report.acked["it_topic_a"] == 50 and not report.failed
    assert topics.topic_counts(broker.bootstrap, names) == {"it_topic_a": 50, "it_topic_b": 0}
    ids_before = topic_ids(broker.bootstrap, names)
    topics.ensure_topics(broker.bootstrap, names, partitions=2, empty=True)
    assert topics.topic_counts(broker.bootstrap, names) == {"it_topic_a": 0, "it_topic_b": 0}
    assert topic_ids(broker.bootstrap, names) == ids_before, "emptied in place, not deleted and re-created"
    # the next run's records are all a reader sees, from the new log start on
    produce(broker.bootstrap, events[:7])
    assert topics.topic_counts(broker.bootstrap, names) == {"it_topic_a": 7, "it_topic_b": 0}
    assert sorted(r.key for r in read_topics(broker.bootstrap, names)) == sorted(e.key.encode() for e in events[:7])
    assert topics.truncate_topics(broker.bootstrap, names) == {"it_topic_a": 7, "it_topic_b": 0}


def test_topics_grow_to_the_partitions_asked_and_keep_more(broker: KafkaBroker) -> None:
    topics.ensure_topics(broker.bootstrap, ("it_grow", "it_wide"), partitions=1)
    topics.ensure_topics(broker.bootstrap, ("it_wide",), partitions=5)
    table = topics.ensure_topics(broker.bootstrap, ("it_grow", "it_wide"), partitions=3, empty=True)
    assert table["partitions"].to_dict() == {"it_grow": 3, "it_wide": 5}
    report = produce(broker.bootstrap, [Event("it_grow", f"k{n}", {"n": n}) for n in range(60)])
    assert report.acked["it_grow"] == 60
    assert {r.partition for r in read_topics(broker.bootstrap, ("it_grow",))} == {0, 1, 2}


def test_cluster_ids_that_look_like_options_are_formatted(tmp_path: Path) -> None:
    # a random base64 cluster id starts with "-" one time in 64; it must not be read as an option
    (tmp_path / "logs").mkdir()
    props = tmp_path / "server.properties"
    props.write_text(kraft._server_properties(9, 10, tmp_path / "logs", 1))
    kraft.format_storage(props, cluster_id="-7dNjk2aTXa3hZ0rgQnJTw")
    assert "cluster.id=-7dNjk2aTXa3hZ0rgQnJTw" in (tmp_path / "logs" / "meta.properties").read_text()
