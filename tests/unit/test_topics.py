"""The lab's topic admin without a broker: what a quorum's momentarily stale metadata must not break."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import InvalidPartitionsError, OffsetNotAvailableError, TopicAuthorizationFailedError

from smartcity.platform import topics


class _StaleQuorum:
    """An admin client whose first descriptions list 1 partition of topics that already have 3."""

    def __init__(self) -> None:
        self.describes = 0
        self.grown: list[dict[str, int]] = []

    def list_topics(self) -> list[str]:
        return ["a", "b"]

    def wait_for_topics(self, names: list[str], timeout_ms: int) -> None:
        pass

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.describes += 1
        listed = 1 if self.describes == 1 else 3
        return [{"name": n, "partitions": [{"partition_index": i} for i in range(listed)]} for n in names]

    def create_partitions(self, wanted: dict[str, int], timeout_ms: int) -> None:
        self.grown.append(wanted)
        raise InvalidPartitionsError("Topic already has 3 partition(s).")

    def close(self) -> None:
        pass


def test_a_refused_growth_of_topics_that_already_have_their_partitions_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = _StaleQuorum()
    monkeypatch.setattr(topics, "admin_client", lambda bootstrap: admin)
    table = topics.ensure_topics("127.0.0.1:9", ["a", "b"], partitions=3)
    assert admin.grown == [{"a": 3, "b": 3}], "it asked to grow what a stale description showed"
    assert table["partitions"].to_dict() == {"a": 3, "b": 3}


class _MovingLeader:
    """An admin client whose offsets requests fail ``failures`` times first with ``error``."""

    def __init__(self, failures: int, error: type[Exception]) -> None:
        self.failures, self.error, self.asked = failures, error, 0

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "partitions": [{"partition_index": i} for i in range(2)]} for n in names]

    def list_partition_offsets(self, specs: dict[Any, Any]) -> dict[Any, Any]:
        self.asked += 1
        if self.asked <= self.failures:
            raise self.error("ListOffsetsRequest failed for TopicPartition(topic='a', partition=1)")
        return {tp: type("Offset", (), {"offset": 10 * tp.partition})() for tp in specs}


def test_offsets_asked_again_while_a_partition_leader_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics, "OFFSETS_BACKOFF_S", 0.0)
    admin = _MovingLeader(2, OffsetNotAvailableError)
    assert topics.partition_offsets(admin, ["a"]) == {("a", 0): 0, ("a", 1): 10}  # type: ignore[arg-type]
    assert admin.asked == 3
    with pytest.raises(OffsetNotAvailableError):
        topics.partition_offsets(_MovingLeader(topics.OFFSETS_ATTEMPTS, OffsetNotAvailableError), ["a"])  # type: ignore[arg-type]
    refused = _MovingLeader(1, TopicAuthorizationFailedError)
    with pytest.raises(TopicAuthorizationFailedError):  # not retriable: said at once
        topics.partition_offsets(refused, ["a"])  # type: ignore[arg-type]
    assert refused.asked == 1
