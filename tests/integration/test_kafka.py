"""The embedded Kafka broker: started for real, found again, and refused when the port lies."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartcity import kafka, simulate
from smartcity.config import TOPICS, Params
from smartcity.engines import EngineError
from smartcity.producer import produce
from tests.conftest import lab_params

pytestmark = pytest.mark.integration


def test_the_session_broker_answers_kafka_api_calls(broker: kafka.KafkaBroker) -> None:
    assert kafka.is_kafka(broker.bootstrap)


def test_a_running_broker_is_reused_not_restarted(broker: kafka.KafkaBroker, lab_cfg: Params) -> None:
    again = kafka.ensure_broker(lab_cfg)
    assert not again.owned
    again.stop()  # stopping a broker we did not start leaves it running
    assert kafka.is_kafka(broker.bootstrap)


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
        kafka.ensure_broker(cfg)


def test_no_broker_and_embedding_off_is_a_clear_error(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path, kafka_embedded=False)
    with pytest.raises(EngineError, match="no Kafka broker answers .* kafka_embedded is false"):
        kafka.ensure_broker(cfg)


def test_topics_are_created_and_recreated_empty(broker: kafka.KafkaBroker) -> None:
    names = ("it_topic_a", "it_topic_b")
    table = kafka.ensure_topics(broker.bootstrap, names, partitions=2)
    assert table["partitions"].to_dict() == {"it_topic_a": 2, "it_topic_b": 2}
    events = [simulate.Event("it_topic_a", f"k{n}", {"n": n}) for n in range(50)]
    report = produce(broker.bootstrap, events)
    assert report.acked["it_topic_a"] == 50 and not report.failed
    assert kafka.topic_counts(broker.bootstrap, names) == {"it_topic_a": 50, "it_topic_b": 0}
    kafka.ensure_topics(broker.bootstrap, names, partitions=2, recreate=True)
    assert kafka.topic_counts(broker.bootstrap, names) == {"it_topic_a": 0, "it_topic_b": 0}


def test_broker_restarts_on_its_data(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    with kafka.ensure_broker(cfg) as first:
        kafka.ensure_topics(first.bootstrap, TOPICS[:1], partitions=1)
        produce(first.bootstrap, [simulate.Event(TOPICS[0], "k", {"n": 1})])
    assert not kafka.is_kafka(cfg.kafka_bootstrap, timeout_s=1)
    with kafka.ensure_broker(cfg) as second:
        assert second.owned
        assert kafka.topic_counts(second.bootstrap, TOPICS[:1]) == {TOPICS[0]: 1}


def test_cluster_ids_that_look_like_options_are_formatted(tmp_path: Path) -> None:
    # a random base64 cluster id starts with "-" one time in 64; it must not be read as an option
    (tmp_path / "logs").mkdir()
    props = tmp_path / "server.properties"
    props.write_text(kafka._server_properties(9, 10, tmp_path / "logs", 1))
    kafka.format_storage(props, cluster_id="-7dNjk2aTXa3hZ0rgQnJTw")
    assert "cluster.id=-7dNjk2aTXa3hZ0rgQnJTw" in (tmp_path / "logs" / "meta.properties").read_text()
